"""Keras 3 model <-> an OrderedDict of its trainable variables, keyed by variable path.

Works with any Keras backend; pair it with the matching entry point (``tensorflow_api`` for
the TensorFlow backend, ``jax_api`` for JAX, ``torch_api`` for PyTorch). Keys are the
variables' paths (``"sequential/dense/kernel"``). :func:`stateless_call` runs the model on a
params dict without assigning anything, which is what a ``jac=False`` objective needs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import keras

from dict_minimize._errors import InvalidParamsError
from dict_minimize.models._common import check_keys, check_shape


def model_to_dict(model: keras.layers.Layer) -> OrderedDict[str, Any]:
    """The model's trainable variables as an OrderedDict of tensor copies, for ``x0_dict``.

    Parameters
    ----------
    model : keras.Model or keras.layers.Layer
        A built model; it is not modified. Non-trainable variables (batch-norm statistics,
        frozen layers) are left out.

    Returns
    -------
    OrderedDict
        ``variable.path -> tensor`` in ``model.trainable_variables`` order; the tensors are
        copies in the Keras backend's type (``tf.Tensor`` on TensorFlow) and the variables'
        dtypes.

    Examples
    --------
    >>> import keras
    >>> from dict_minimize.models.keras import model_to_dict
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")])
    >>> {k: tuple(v.shape) for k, v in model_to_dict(model).items()}  # doctest: +ELLIPSIS
    {'sequential.../out/kernel': (2, 1), 'sequential.../out/bias': (1,)}
    """
    variables = _trainable(model)
    return OrderedDict(
        (v.path, keras.ops.stop_gradient(keras.ops.copy(v.value))) for v in variables
    )


def dict_to_model(
    model: keras.layers.Layer, params: Mapping[str, Any], *, strict: bool = True
) -> None:
    """Assign ``params`` to the model's trainable variables (``variable.assign``).

    Parameters
    ----------
    model : keras.Model or keras.layers.Layer
        The model to update; its variables keep their identity, so a compiled model and its
        optimizer keep working.
    params : Mapping
        ``path -> tensor``, as :func:`model_to_dict` returns (e.g. the result of minimize).
    strict : bool
        Require every trainable variable to be present.

    Raises
    ------
    InvalidParamsError
        An unknown or (with ``strict``) missing path, or a wrong shape; nothing is assigned
        then.

    Examples
    --------
    >>> import keras, numpy as np
    >>> from dict_minimize.models.keras import dict_to_model, model_to_dict, stateless_call
    >>> from dict_minimize.tensorflow_api import minimize
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> x = np.array([[0.0], [1.0], [2.0]], "float32")
    >>> y = np.array([[1.0], [3.0], [5.0]], "float32")
    >>> def loss(params):
    ...     return keras.ops.mean((stateless_call(model, params, x) - y) ** 2)
    >>> dict_to_model(model, minimize(loss, model_to_dict(model), jac=False))
    >>> np.round(model.predict(np.array([[3.0]], "float32"), verbose=0), 3).tolist()
    [[7.0]]
    """
    variables = {v.path: v for v in _trainable(model)}
    check_keys(params, variables, variables if strict else (), "trainable variable")
    for path, value in params.items():
        check_shape(path, tuple(keras.ops.shape(value)), tuple(variables[path].shape))
    for path, value in params.items():
        variables[path].assign(value)


def stateless_call(
    model: keras.layers.Layer, params: Mapping[str, Any], *args: Any, **kwargs: Any
) -> Any:
    """Run the model with its trainable variables taken from ``params``; assigns nothing.

    Differentiable with respect to ``params`` in the Keras backend's framework (and usable
    inside ``tf.function``/``jax.jit``), so a ``jac=False`` objective can call it.
    Non-trainable variables keep their current values; pass ``training=True`` only if the
    model's training-mode updates (batch-norm statistics) may be discarded.

    Parameters
    ----------
    model : keras.Model or keras.layers.Layer
        A built model.
    params : Mapping
        ``path -> tensor`` for every trainable variable.
    *args, **kwargs
        The model's inputs and call arguments.

    Returns
    -------
    The model's outputs.

    Examples
    --------
    >>> import keras, numpy as np
    >>> from dict_minimize.models.keras import model_to_dict, stateless_call
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    >>> params = model_to_dict(model)
    >>> params = {k: keras.ops.ones_like(v) for k, v in params.items()}
    >>> keras.ops.convert_to_numpy(stateless_call(model, params, np.ones((1, 2), "float32")))
    array([[2.]], dtype=float32)
    """
    variables = _trainable(model)
    check_keys(
        params, [v.path for v in variables], [v.path for v in variables], "trainable variable"
    )
    trainable = [params[v.path] for v in variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    outputs, _ = model.stateless_call(trainable, non_trainable, *args, **kwargs)
    return outputs


def _trainable(model: Any) -> list[Any]:
    if not isinstance(model, keras.layers.Layer):
        raise InvalidParamsError(
            f"expected a keras.Model or keras.layers.Layer, got {type(model).__name__}"
        )
    if not model.built:
        raise InvalidParamsError(
            "the model is not built, so it has no variables yet; build it first (give it an "
            "keras.Input, call it once on data, or call model.build(input_shape))"
        )
    variables = list(model.trainable_variables)
    paths = [v.path for v in variables]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise InvalidParamsError(
            f"two trainable variables share the path {dup!r}; give the layers unique names"
        )
    return variables
