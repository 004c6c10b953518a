"""Code written for dict-minimize 0.0.4 runs unchanged.

Its contract: with the default ``jac=True``, ``fun(params, *args)`` returns
``(value, grad_OrderedDict)``; PyTorch params have ``requires_grad=True`` so the objective can
call ``torch.autograd.grad`` itself; ``callback(params_dict)`` runs every iteration; bounds
are full-shape dicts given together; ``method=None`` lets scipy choose; the return value is an
``OrderedDict`` in x0's key order. The four README examples of dict-minimize 0.0.4 run below
as published, with only the imports completed (they used ``OrderedDict`` without importing it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from cases import Case

README_TORCH = """
import torch
from dict_minimize.torch_api import minimize

def rosen_obj(params, shift):
    \"\"\"Based on augmented Rosenbrock from botorch.\"\"\"
    X, Y = params["x_half_a"], params["x_half_b"]
    X = X - shift
    Y = Y - shift
    obj = 100 * (X[1] - X[0] ** 2) ** 2 + 100 * (Y[1] - Y[0] ** 2) ** 2
    return obj

def d_rosen_obj(params, shift):
    obj = rosen_obj(params, shift=shift)
    da, db = torch.autograd.grad(obj, [params["x_half_a"], params["x_half_b"]])
    d_obj = OrderedDict([("x_half_a", da), ("x_half_b", db)])
    return obj, d_obj

torch.manual_seed(123)

n_a = 2
n_b = 2
shift = -1.0

params = OrderedDict([("x_half_a", torch.randn((n_a,))), ("x_half_b", torch.randn((n_b,)))])

params = minimize(d_rosen_obj, params, args=(shift,), method="L-BFGS-B", options={"disp": True})
"""

README_TENSORFLOW = """
import tensorflow as tf
from dict_minimize.tensorflow_api import minimize

def rosen_obj(params, shift):
    \"\"\"Based on augmented Rosenbrock from botorch.\"\"\"
    X, Y = params["x_half_a"], params["x_half_b"]
    X = X - shift
    Y = Y - shift
    obj = 100 * (X[1] - X[0] ** 2) ** 2 + 100 * (Y[1] - Y[0] ** 2) ** 2
    return obj

def d_rosen_obj(params, shift):
    with tf.GradientTape(persistent=True) as t:
        t.watch(params["x_half_a"])
        t.watch(params["x_half_b"])

        obj = rosen_obj(params, shift=shift)

    da = t.gradient(obj, params["x_half_a"])
    db = t.gradient(obj, params["x_half_b"])
    d_obj = OrderedDict([("x_half_a", da), ("x_half_b", db)])
    del t  # Explicitly drop the reference to the tape
    return obj, d_obj

tf.random.set_seed(123)

n_a = 2
n_b = 2
shift = -1.0

params = OrderedDict([("x_half_a", tf.random.normal((n_a,))), ("x_half_b", tf.random.normal((n_b,)))])

params = minimize(d_rosen_obj, params, args=(shift,), method="L-BFGS-B", options={"disp": True})
"""  # noqa: E501 (as published)

README_NUMPY = """
import numpy as np
from scipy.optimize import rosen, rosen_der
from dict_minimize.numpy_api import minimize

def rosen_obj(params, shift):
    val = rosen(params["x_half_a"] - shift) + rosen(params["x_half_b"] - shift)

    dval = OrderedDict(
        [
            ("x_half_a", rosen_der(params["x_half_a"] - shift)),
            ("x_half_b", rosen_der(params["x_half_b"] - shift)),
        ]
    )
    return val, dval

np.random.seed(0)

n_a = 3
n_b = 5
shift = -1.0

params = OrderedDict([("x_half_a", np.random.randn(n_a)), ("x_half_b", np.random.randn(n_b))])

params = minimize(rosen_obj, params, args=(shift,), method="L-BFGS-B", options={"disp": True})
"""

README_JAX = """
from jax import random, value_and_grad
import jax.numpy as np
from dict_minimize.jax_api import minimize

def rosen(x):
    r = np.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0, axis=0)
    return r

def rosen_obj(params, shift):
    val = rosen(params["x_half_a"] - shift) + rosen(params["x_half_b"] - shift)
    return val

n_a = 3
n_b = 5
shift = -1.0

# Jax makes it this simple:
d_rosen_obj = value_and_grad(rosen_obj, argnums=0)

# Setup randomness in JAX
key = random.PRNGKey(0)
key, subkey_a = random.split(key)
key, subkey_b = random.split(key)

params = OrderedDict(
    [("x_half_a", random.normal(subkey_a, shape=(n_a,))), ("x_half_b", random.normal(subkey_b, shape=(n_b,)))]
)

params = minimize(d_rosen_obj, params, args=(shift,), method="L-BFGS-B", options={"disp": True})
"""  # noqa: E501 (as published)


def _run_readme(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme"}
    # The one adaptation: the examples use OrderedDict without importing it.
    code = compile("from collections import OrderedDict\n" + source, "README", "exec")
    exec(code, namespace)
    return namespace


def _check_readme_result(ns: dict[str, Any], to_numpy: Any, x0_dtype: Any) -> None:
    params = ns["params"]
    assert isinstance(params, OrderedDict) and list(params) == ["x_half_a", "x_half_b"]
    assert all(v.dtype == x0_dtype for v in params.values())
    value = ns["rosen_obj"](params, ns["shift"])
    value = value[0] if isinstance(value, tuple) else value  # numpy's returns the gradient too
    assert float(to_numpy(value)) < 1e-8  # a minimum of the objective


# scipy 1.17 deprecates L-BFGS-B's disp option (it prints nothing), which the examples pass.
pytestmark = pytest.mark.filterwarnings("ignore:.*disp.*:DeprecationWarning")


def test_readme_numpy() -> None:
    ns = _run_readme(README_NUMPY)
    _check_readme_result(ns, np.asarray, np.float64)
    np.testing.assert_allclose(np.concatenate(list(ns["params"].values())), 0.0, atol=1e-4)


def test_readme_torch() -> None:
    torch = pytest.importorskip("torch")
    ns = _run_readme(README_TORCH)
    _check_readme_result(ns, lambda t: t.detach().numpy(), torch.float32)


def test_readme_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    ns = _run_readme(README_TENSORFLOW)
    _check_readme_result(ns, lambda t: t.numpy(), tf.float32)


def test_readme_jax() -> None:
    pytest.importorskip("jax")
    ns = _run_readme(README_JAX)
    x0_dtype = ns["random"].normal(ns["key"], (1,)).dtype
    _check_readme_result(ns, np.asarray, x0_dtype)
    np.testing.assert_allclose(
        np.concatenate([np.asarray(v) for v in ns["params"].values()]), 0.0, atol=1e-4
    )


# -- the contract, on every backend ---------------------------------------------------------------


def _objective(case: Case, calls: list[Any]) -> Any:
    """0.0.4 style: ``fun(params, target, scale) -> (value, OrderedDict of gradients)``."""

    def fun(params: Any, target: Any, scale: float) -> Any:
        calls.append(params)
        diff = {k: v - target[k] for k, v in params.items()}
        value = scale * sum(case.xp.sum(d * d) for d in diff.values())
        return value, OrderedDict((k, 2 * scale * d) for k, d in diff.items())

    return fun


def _setup(case: Case) -> tuple[OrderedDict[str, Any], dict[str, Any]]:
    x0 = OrderedDict([("zeta", case.tensor(np.zeros((2, 2)))), ("alpha", case.tensor(0.0))])
    target = {"zeta": case.tensor([[1.0, 2.0], [3.0, 4.0]]), "alpha": case.tensor(-1.0)}
    return x0, target


@pytest.mark.parametrize("method", [None, "L-BFGS-B", "CG", "BFGS", "TNC", "SLSQP", "trust-constr"])
def test_default_contract(case: Case, method: str | None) -> None:
    """dict-minimize 0.0.4's methods, its positional args and its return value."""
    x0, target = _setup(case)
    calls: list[Any] = []
    its: list[Any] = []
    res = case.api.minimize(
        _objective(case, calls), x0, args=(target, 0.5), method=method, callback=its.append
    )
    assert isinstance(res, OrderedDict) and list(res) == ["zeta", "alpha"]
    for key in x0:
        np.testing.assert_allclose(case.numpy(res[key]), case.numpy(target[key]), atol=1e-5)
    assert all(isinstance(p, OrderedDict) and list(p) == ["zeta", "alpha"] for p in calls + its)
    assert its, "callback(params_dict) is called every iteration"


def test_callback_once_per_iteration(case: Case) -> None:
    x0, target = _setup(case)
    its: list[Any] = []
    res = case.api.minimize(
        _objective(case, []), x0, args=(target, 1.0), callback=its.append, full_output=True
    )
    assert len(its) == res.nit > 0
    np.testing.assert_array_equal(case.numpy(its[-1]["zeta"]), case.numpy(res.x["zeta"]))


def test_full_bounds_given_together(case: Case) -> None:
    """0.0.4 required full-shape lb_dict and ub_dict in x0's key order."""
    x0, target = _setup(case)
    lb = OrderedDict([("zeta", case.tensor(np.full((2, 2), -10.0))), ("alpha", case.tensor(0.0))])
    ub = OrderedDict([("zeta", case.tensor(np.full((2, 2), 2.5))), ("alpha", case.tensor(10.0))])
    res = case.api.minimize(_objective(case, []), x0, lb_dict=lb, ub_dict=ub, args=(target, 1.0))
    np.testing.assert_allclose(case.numpy(res["zeta"]), [[1.0, 2.0], [2.5, 2.5]], atol=1e-6)
    np.testing.assert_allclose(case.numpy(res["alpha"]), 0.0, atol=1e-6)


def test_method_none_is_scipys_choice(case: Case) -> None:
    """``method=None``, 0.0.4's default, picks as scipy does: BFGS, or L-BFGS-B with bounds."""
    x0, target = _setup(case)
    fun = _objective(case, [])
    free = case.api.minimize(fun, x0, args=(target, 1.0), method=None, full_output=True)
    assert free.method == "BFGS"
    bounded = case.api.minimize(
        fun, x0, args=(target, 1.0), method=None, lb_dict={"alpha": 0.0}, full_output=True
    )
    assert bounded.method == "L-BFGS-B"


def test_torch_params_require_grad() -> None:
    """With jac=True the objective can differentiate params itself, as in 0.0.4."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import minimize

    flags: list[bool] = []

    def fun(params: Any) -> Any:
        flags.extend(v.requires_grad and v.is_leaf for v in params.values())
        loss = ((params["a"] - 1) ** 2).sum() + (params["b"] ** 2).sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        return loss, OrderedDict(zip(params, grads))

    x0 = OrderedDict(a=torch.zeros(3), b=torch.ones(2, 2, dtype=torch.float64))
    res = minimize(fun, x0)
    assert flags and all(flags)
    torch.testing.assert_close(res["a"], torch.ones(3))
    assert res["b"].dtype == torch.float64
