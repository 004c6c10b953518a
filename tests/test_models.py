"""Model helpers: torch.nn.Module, Keras 3 models and JAX pytrees to dicts and back."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
from typing import Any

import numpy as np
import pytest

from dict_minimize import InvalidParamsError

_rng = np.random.default_rng(3)
X = _rng.uniform(-1.0, 1.0, (32, 2))
Y = np.tanh(X @ np.array([[1.5], [-0.5]]) + 0.25) * 2.0 - 0.5


# -- torch.nn.Module ---------------------------------------------------------------------------
torch_case = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"
)


def _net() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)
    ).double()


@torch_case
def test_torch_module_to_dict_copies_in_order() -> None:
    import torch

    from dict_minimize.models.torch import module_to_dict

    net = _net()
    params = module_to_dict(net)
    assert list(params) == [name for name, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        value = params[name]
        assert value.dtype == torch.float64 and not value.requires_grad
        assert value.data_ptr() != p.data_ptr()
        torch.testing.assert_close(value, p.detach())
    params["0.weight"].zero_()  # a copy: the module is untouched
    assert net[0].weight.abs().sum() > 0

    net[0].bias.requires_grad_(False)  # frozen
    assert "0.bias" not in module_to_dict(net)
    assert "0.bias" in module_to_dict(net, trainable_only=False)


@torch_case
def test_torch_fit_and_write_back_keeps_parameters() -> None:
    """jac=False through functional_call; the optimum written back keeps identity and grads."""
    import torch

    from dict_minimize.models.torch import dict_to_module, module_to_dict
    from dict_minimize.torch_api import minimize

    net = _net()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    before = {name: p for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)

    def loss(params: Any) -> Any:
        return ((torch.func.functional_call(net, params, (x,)) - y) ** 2).mean()

    res = minimize(loss, module_to_dict(net), jac=False, method="BFGS", full_output=True)
    assert res.fun < 1e-6
    dict_to_module(net, res.x)
    for name, p in net.named_parameters():
        assert p is before[name] and p.requires_grad
        torch.testing.assert_close(p.detach(), res.x[name], rtol=0, atol=0)
    # training still works on the same parameters
    optimizer.zero_grad()
    ((net(x) - y) ** 2).mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    optimizer.step()
    torch.testing.assert_close(net(x), torch.func.functional_call(net, res.x, (x,)))


@torch_case
def test_torch_write_back_errors_write_nothing() -> None:
    import torch

    from dict_minimize.models.torch import dict_to_module, module_to_dict

    net = _net()
    params = module_to_dict(net)
    original = {k: v.clone() for k, v in params.items()}
    bad_shape = {**params, "2.bias": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(InvalidParamsError, match=r"'2.bias'.*shape \(2,\).*\(1,\)"):
        dict_to_module(net, bad_shape)
    with pytest.raises(InvalidParamsError, match=r"'1.weight'"):
        dict_to_module(net, {**params, "1.weight": torch.zeros(1)})
    with pytest.raises(InvalidParamsError, match=r"missing.*'2.weight'.*strict=False"):
        dict_to_module(net, {k: v for k, v in params.items() if k != "2.weight"})
    with pytest.raises(InvalidParamsError, match=r"torch.Tensor"):
        dict_to_module(net, {**params, "2.bias": [0.0]})
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), original[name])
    dict_to_module(net, {"2.bias": torch.ones(1, dtype=torch.float64)}, strict=False)
    assert net[2].bias.item() == 1.0


# -- Keras 3 -----------------------------------------------------------------------------------
def _keras() -> Any:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("these tests run Keras on its TensorFlow backend")
    return keras


def _model(keras: Any, norm: bool = False) -> Any:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((2,)), keras.layers.Dense(3, activation="tanh")]
    if norm:
        layers.append(keras.layers.BatchNormalization())
    return keras.Sequential([*layers, keras.layers.Dense(1)])


def test_keras_model_to_dict_keys_and_copies() -> None:
    keras = _keras()
    import tensorflow as tf

    from dict_minimize.models.keras import model_to_dict

    model = _model(keras, norm=True)
    params = model_to_dict(model)
    assert list(params) == [v.path for v in model.trainable_variables]
    assert not any("moving" in k for k in params)  # non-trainable statistics stay out
    kernel = model.trainable_variables[0]
    assert isinstance(params[kernel.path], tf.Tensor)
    np.testing.assert_array_equal(params[kernel.path].numpy(), kernel.numpy())
    kernel.assign(tf.zeros_like(kernel))  # a copy: the dict is untouched
    assert np.abs(params[kernel.path].numpy()).sum() > 0


def test_keras_fit_with_stateless_call_and_write_back() -> None:
    keras = _keras()

    from dict_minimize.models.keras import dict_to_model, model_to_dict, stateless_call
    from dict_minimize.tensorflow_api import minimize

    model = _model(keras, norm=True)
    x, y = X.astype("float32"), Y.astype("float32")
    variables = list(model.trainable_variables)
    stats = [v.numpy().copy() for v in model.non_trainable_variables]

    def loss(params: Any) -> Any:
        return keras.ops.mean((stateless_call(model, params, x) - y) ** 2)

    start = model_to_dict(model)
    res = minimize(loss, start, jac=False, method="L-BFGS-B", full_output=True)
    assert res.fun < 1e-3
    assert float(loss(start)) > 10 * res.fun  # nothing was assigned during the run
    dict_to_model(model, res.x)
    assert all(a is b for a, b in zip(model.trainable_variables, variables))
    for v in variables:
        np.testing.assert_array_equal(v.numpy(), res.x[v.path].numpy())
    for v, s in zip(model.non_trainable_variables, stats):
        np.testing.assert_array_equal(v.numpy(), s)
    np.testing.assert_allclose(
        model(x, training=False).numpy(), stateless_call(model, res.x, x).numpy(), rtol=1e-6
    )


def test_keras_errors() -> None:
    keras = _keras()
    import tensorflow as tf

    from dict_minimize.models.keras import dict_to_model, model_to_dict, stateless_call

    model = _model(keras)
    params = model_to_dict(model)
    path = model.trainable_variables[-1].path
    with pytest.raises(InvalidParamsError, match="shape"):
        dict_to_model(model, {**params, path: tf.zeros((5,))})
    with pytest.raises(InvalidParamsError, match="'nope'"):
        dict_to_model(model, {**params, "nope": tf.zeros(1)})
    with pytest.raises(InvalidParamsError, match="missing"):
        stateless_call(model, {k: v for k, v in params.items() if k != path}, X)
    with pytest.raises(InvalidParamsError, match="not built"):
        model_to_dict(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(InvalidParamsError, match=r"keras.Model"):
        model_to_dict(object())


# -- JAX pytrees (Equinox-style modules) ---------------------------------------------------------
def _mlp() -> Any:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    @dataclasses.dataclass
    class Linear:  # an Equinox-like module: arrays are leaves, the rest is structure
        weight: Any
        bias: Any

        def __call__(self, x: Any) -> Any:
            return x @ self.weight + self.bias

    @dataclasses.dataclass
    class MLP:
        layers: list[Linear]
        activation: Any
        steps: Any  # an integer array: not a parameter

        def __call__(self, x: Any) -> Any:
            return self.layers[1](self.activation(self.layers[0](x)))

    for cls, data in ((Linear, ["weight", "bias"]), (MLP, ["layers", "activation", "steps"])):
        jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=[])
    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    return MLP(
        [
            Linear(jax.random.normal(key1, (2, 3)) * 0.5, jnp.zeros(3)),
            Linear(jax.random.normal(key2, (3, 1)) * 0.5, jnp.zeros(1)),
        ],
        jnp.tanh,
        jnp.asarray(7),
    )


def test_pytree_partition_and_combine() -> None:
    from dict_minimize.models.pytree import combine, partition

    model = _mlp()
    params, static = partition(model)
    assert list(params) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert params["layers.0.weight"] is model.layers[0].weight
    rebuilt = combine(params, static)
    assert type(rebuilt) is type(model) and rebuilt.activation is model.activation
    assert rebuilt.steps is model.steps
    np.testing.assert_array_equal(np.asarray(rebuilt(X)), np.asarray(model(X)))


def test_pytree_fit_with_jax_api() -> None:
    """combine() inside a jitted jac=False objective; the solution rebuilds the module."""
    import jax.numpy as jnp

    from dict_minimize.jax_api import minimize
    from dict_minimize.models.pytree import combine, partition

    model = _mlp()
    x, y = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
    params, static = partition(model)

    def loss(p: Any) -> Any:
        return jnp.mean((combine(p, static)(x) - y) ** 2)

    res = minimize(loss, params, jac=False, method="BFGS", full_output=True)
    assert res.fun < 1e-4 and float(loss(params)) > 100 * res.fun
    fitted = combine(res.x, static)
    assert fitted.layers[0].weight.dtype == model.layers[0].weight.dtype
    np.testing.assert_allclose(np.asarray(fitted(x)), np.asarray(y), atol=2e-2)


def test_pytree_errors() -> None:
    import jax.numpy as jnp

    from dict_minimize.models.pytree import combine, partition

    params, static = partition(_mlp())
    with pytest.raises(InvalidParamsError, match=r"missing.*'layers.1.bias'"):
        combine({k: v for k, v in params.items() if k != "layers.1.bias"}, static)
    with pytest.raises(InvalidParamsError, match=r"'layers.1.bias'.*shape \(2,\)"):
        combine({**params, "layers.1.bias": jnp.zeros(2)}, static)
    with pytest.raises(InvalidParamsError, match="no parameter"):
        partition({"n": jnp.arange(3), "f": jnp.tanh})


@pytest.mark.parametrize(
    ("module", "framework"),
    [("torch", "torch"), ("keras", "tensorflow"), ("pytree", "jax")],
)
def test_docstring_examples(module: str, framework: str) -> None:
    """The examples in the helpers' docstrings run as written."""
    pytest.importorskip(framework)
    mod = importlib.import_module(f"dict_minimize.models.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
