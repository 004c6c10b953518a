"""Entry points for TensorFlow tensors and variables, on any device and in any floating dtype.

``x0`` may hold ``tf.Tensor`` or ``tf.Variable``; variables are read, never assigned (the
result holds tensors; :func:`dict_minimize.models.keras.dict_to_model` writes them back). With
``jac=False`` the objective runs in a ``tf.function`` traced once per call.
"""

from dict_minimize._api import bind_minimize
from dict_minimize.backends.tensorflow import TensorflowBackend

minimize = bind_minimize(
    TensorflowBackend(),
    autodiff="``tf.GradientTape`` differentiates it inside a ``tf.function`` traced once per "
    "call (the objective may itself be a ``tf.function``)",
    hessp_default="with ``jac=False`` TensorFlow supplies products (forward over reverse) and "
    "the Hessian itself.",
    constraint_jac="come from ``tf.GradientTape``",
    example="""    >>> import tensorflow as tf
    >>> from dict_minimize.tensorflow_api import minimize
    >>> x0 = {"w": tf.Variable(tf.zeros(3)), "b": tf.ones((), dtype=tf.float64)}
    >>> target = tf.constant([1.0, 2.0, 3.0])
    >>> def loss(params):
    ...     return tf.reduce_sum((params["w"] - target) ** 2) + tf.cast(params["b"] ** 2, tf.float32)
    >>> res = minimize(loss, x0, jac=False, method="trust-ncg", full_output=True)
    >>> res.success, res.x["w"].dtype.name, [round(v, 4) for v in res.x["w"].numpy().tolist()]
    (True, 'float32', [1.0, 2.0, 3.0])
    >>> x0["w"].numpy().tolist()  # the variable is not assigned
    [0.0, 0.0, 0.0]""",
)

__all__ = ["minimize"]
