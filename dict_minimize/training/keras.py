"""``fit`` for a Keras 3 model: Levenberg-Marquardt training like MATLAB ``trainlm``, on
whichever framework Keras runs (TensorFlow, JAX or PyTorch)."""

from __future__ import annotations

import os
from typing import Any

import keras

from dict_minimize._errors import InvalidOptionError
from dict_minimize.backends._protocol import Backend
from dict_minimize.models.keras import dict_to_model, model_to_dict, stateless_call
from dict_minimize.training._core import FitResult, fit_params


def _backend() -> Backend[Any]:
    """The adapter of the framework Keras runs on."""
    name = keras.backend.backend()
    if name == "tensorflow":
        from dict_minimize.backends.tensorflow import TensorflowBackend

        return TensorflowBackend()
    if name == "jax":
        from dict_minimize.backends.jax import JaxBackend

        return JaxBackend()
    if name == "torch":
        from dict_minimize.backends.torch import TorchBackend

        return TorchBackend()
    raise InvalidOptionError(f"Keras runs on {name!r}; fit supports tensorflow, jax and torch")


def fit(
    model: keras.Model,
    inputs: Any,
    targets: Any,
    *,
    val_data: tuple[Any, Any] | None = None,
    epochs: int = 1000,
    goal: float = 0.0,
    min_grad: float = 1e-7,
    mu: float = 1e-3,
    mu_dec: float = 0.1,
    mu_inc: float = 10.0,
    mu_max: float = 1e10,
    max_fail: int = 6,
    damping: str = "marquardt",
    geodesic: bool = True,
    progress: bool = False,
    chunk_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Train a built Keras model by LM on the mean squared error and assign the trained
    weights to its variables (the best validation weights when validation stops the run).

    Same algorithm and arguments as :func:`dict_minimize.torch_api.fit` (see there), except
    that there is no ``normalize`` (scale the data yourself). ``inputs``/``targets`` are
    tensors of the framework Keras runs on; the model is called through
    ``model.stateless_call``, per sample under that framework's ``vmap``.

    Examples
    --------
    >>> import keras, numpy as np, tensorflow as tf
    >>> from dict_minimize.training.keras import fit
    >>> keras.utils.set_random_seed(0)
    >>> x = tf.constant(np.linspace(-1, 1, 100).reshape(-1, 1), tf.float32)
    >>> y = tf.sin(3.0 * x)
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(8, "tanh"),
    ...                           keras.layers.Dense(1)])
    >>> out = fit(model, x, y, epochs=100, goal=1e-6)
    >>> float(np.mean((model.predict(x, verbose=0) - y.numpy()) ** 2)) < 1e-4
    True
    """
    params0 = model_to_dict(model)

    def apply(params: Any, x: Any) -> Any:
        return stateless_call(model, params, x)

    result = fit_params(
        _backend(), apply, params0, inputs, targets, val_data=val_data, epochs=epochs,
        goal=goal, min_grad=min_grad, mu=mu, mu_dec=mu_dec, mu_inc=mu_inc, mu_max=mu_max,
        max_fail=max_fail, normalize=False, progress=progress, chunk_size=chunk_size,
        fold=None, damping=damping, geodesic=geodesic,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
    )  # fmt: skip
    dict_to_model(model, result.params)
    return result
