"""Entry points for TensorFlow tensors and variables, on any device and in any floating dtype.

``x0`` may hold ``tf.Tensor`` or ``tf.Variable``; variables are read, never assigned (the
result holds tensors; :func:`dict_minimize.models.keras.dict_to_model` writes them back). With
``jac=False`` the objective runs in a ``tf.function`` traced once, which later calls with the same
function, layout of x0 and ``args`` tensors reuse (Python state read while tracing is fixed
then; see ``dict_minimize/_compiled.py``).
"""

from dict_minimize._api import bind_least_squares, bind_minimize
from dict_minimize.backends.tensorflow import TensorflowBackend
from dict_minimize.training.keras import fit

_BACKEND = TensorflowBackend()

minimize = bind_minimize(
    _BACKEND,
    autodiff="``tf.GradientTape`` differentiates it inside a ``tf.function`` traced once and "
    "reused by later calls with the same function, layout and args (the objective may itself "
    "be a ``tf.function``)",
    hessp_default="with ``jac=False`` TensorFlow supplies products (forward over reverse) and "
    "the Hessian itself.",
    constraint_jac="come from ``tf.GradientTape``",
    example="""    >>> import tensorflow as tf
    >>> from dict_minimize.tensorflow_api import minimize
    >>> x0 = {"w": tf.Variable(tf.zeros(3)), "b": tf.ones((), dtype=tf.float64)}
    >>> target = tf.constant([1.0, 2.0, 3.0])
    >>> def loss(params):
    ...     b = tf.cast(params["b"], tf.float32)
    ...     return tf.reduce_sum((params["w"] - target) ** 2) + b**2
    >>> res = minimize(loss, x0, jac=False, method="trust-ncg", full_output=True)
    >>> res.success, res.x["w"].dtype.name, [round(v, 4) for v in res.x["w"].numpy().tolist()]
    (True, 'float32', [1.0, 2.0, 3.0])
    >>> x0["w"].numpy().tolist()  # the variable is not assigned
    [0.0, 0.0, 0.0]""",
)

least_squares = bind_least_squares(
    _BACKEND,
    jacobian="``tf.GradientTape``: per sample by ``tf.vectorized_map`` of reverse mode when "
    "batched args are declared, else ``tape.jacobian``, each traced once",
    jacobian_short="tf.GradientTape",
    matrix_free="Products come from ``tf.autodiff.ForwardAccumulator`` and "
    "``tf.GradientTape``, each traced once.",
    example="""    >>> import tensorflow as tf
    >>> from dict_minimize.tensorflow_api import least_squares
    >>> t = tf.linspace(tf.constant(0.0, tf.float64), 3.0, 20)
    >>> y = 2.0 * tf.exp(-1.5 * t)
    >>> def residual_fn(p, t, y):
    ...     return p["a"] * tf.exp(-p["k"] * t) - y
    >>> x0 = {"a": tf.ones((), tf.float64), "k": tf.ones((), tf.float64)}
    >>> res = least_squares(residual_fn, x0, args=(t, y), options={"batched_args": (0, 1)})
    >>> res.success, round(float(res.x["a"]), 6), round(float(res.x["k"]), 6)
    (True, 2.0, 1.5)""",
)

__all__ = ["fit", "least_squares", "minimize"]
