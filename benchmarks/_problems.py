"""The benchmark problem, written once per framework with hand-written gradients.

A Rosenbrock-type objective over two blocks of pairs, split into four tensors::

    f = sum_k sum_i 100 (y_k[i] - x_k[i]**2)**2 + (1 - x_k[i])**2,   k = 1, 2

``x1``/``y1`` are vectors and ``x2``/``y2`` matrices, so unflattening exercises reshapes. The
flat layout is ``[x1, y1, x2, y2]``; the raw-scipy contender works on that vector directly with
views. Every framework's objective performs the same element-wise arithmetic, so the contenders
follow the same L-BFGS-B path (the benchmark checks ``nit``/``nfev``).

This module is imported both by the main benchmark (with this project installed) and by the
peer worker (with dict-minimize 0.0.4 installed), so it must not import ``dict_minimize``.
Frameworks are imported only by the functions that need them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: What every contender runs: exactly ``MAXITER`` L-BFGS-B iterations (no tolerance can stop
#: it earlier) from the same start.
METHOD = "L-BFGS-B"
MAXITER = 100
OPTIONS: dict[str, Any] = {"maxiter": MAXITER, "ftol": 0.0, "gtol": 0.0}
KEYS = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class Problem:
    """Layout and start point of the ``n``-parameter problem."""

    n: int
    shapes: dict[str, tuple[int, ...]]
    x0: np.ndarray  # flat float64 start, layout [x1, y1, x2, y2]

    @property
    def slices(self) -> dict[str, slice]:
        """Where each tensor sits in the flat vector."""
        out, start = {}, 0
        for key in KEYS:
            size = int(np.prod(self.shapes[key]))
            out[key] = slice(start, start + size)
            start += size
        return out

    def x0_numpy(self) -> OrderedDict[str, np.ndarray]:
        """x0 as an OrderedDict of float64 NumPy arrays (copies)."""
        return OrderedDict(
            (key, self.x0[sl].reshape(self.shapes[key]).copy()) for key, sl in self.slices.items()
        )


def make_problem(n: int, seed: int = 0) -> Problem:
    """The ``n``-parameter problem (``n`` even, at least 4); start uniform in [-2, 2]."""
    if n < 4 or n % 2:
        raise ValueError(f"n must be even and at least 4, got {n}")
    half = n // 2
    m1 = (half + 1) // 2  # pairs in block 1 (vectors)
    m2 = half - m1  # pairs in block 2 (matrices)
    rows = 2 if m2 % 2 == 0 else 1
    shapes = {"x1": (m1,), "y1": (m1,), "x2": (rows, m2 // rows), "y2": (rows, m2 // rows)}
    x0 = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    return Problem(n, shapes, x0)


# -- NumPy ------------------------------------------------------------------------------------
def _pair_numpy(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    d = y - x * x
    e = 1.0 - x
    return 100.0 * float(np.vdot(d, d)) + float(np.vdot(e, e)), -400.0 * x * d - 2.0 * e, 200.0 * d


def numpy_fun(p: dict[str, np.ndarray]) -> tuple[float, OrderedDict[str, np.ndarray]]:
    """Loss and gradient dict of a dict of NumPy arrays (dict-minimize's calling convention)."""
    f1, gx1, gy1 = _pair_numpy(p["x1"], p["y1"])
    f2, gx2, gy2 = _pair_numpy(p["x2"], p["y2"])
    return f1 + f2, OrderedDict(x1=gx1, y1=gy1, x2=gx2, y2=gy2)


def flat_fun(problem: Problem) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The same objective on the flat vector, as one would write it for raw scipy."""
    s = problem.slices
    s_x1, s_y1, s_x2, s_y2 = s["x1"], s["y1"], s["x2"], s["y2"]

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty_like(v)
        f1, g[s_x1], g[s_y1] = _pair_numpy(v[s_x1], v[s_y1])
        f2, g[s_x2], g[s_y2] = _pair_numpy(v[s_x2], v[s_y2])
        return f1 + f2, g

    return fun


# -- PyTorch ----------------------------------------------------------------------------------
def torch_x0(problem: Problem) -> OrderedDict[str, Any]:
    import torch

    return OrderedDict((k, torch.from_numpy(v)) for k, v in problem.x0_numpy().items())


def _pair_torch(x: Any, y: Any) -> tuple[Any, Any, Any]:
    d = y - x * x
    e = 1.0 - x
    dd, ee = d.reshape(-1), e.reshape(-1)
    return 100.0 * (dd @ dd) + ee @ ee, -400.0 * x * d - 2.0 * e, 200.0 * d


def torch_fun(p: dict[str, Any]) -> tuple[Any, OrderedDict[str, Any]]:
    """Hand-written gradient in PyTorch (no autograd graph is recorded)."""
    import torch

    with torch.no_grad():
        f1, gx1, gy1 = _pair_torch(p["x1"], p["y1"])
        f2, gx2, gy2 = _pair_torch(p["x2"], p["y2"])
        return f1 + f2, OrderedDict(x1=gx1, y1=gy1, x2=gx2, y2=gy2)


def torch_loss(p: dict[str, Any]) -> Any:
    """The loss alone, for autograd (``jac=False``)."""
    total = 0.0
    for x, y in ((p["x1"], p["y1"]), (p["x2"], p["y2"])):
        d = y - x * x
        e = 1.0 - x
        total = total + (100.0 * (d * d) + e * e).sum()
    return total


# -- TensorFlow -------------------------------------------------------------------------------
def tf_x0(problem: Problem) -> OrderedDict[str, Any]:
    import tensorflow as tf

    return OrderedDict((k, tf.constant(v, dtype=tf.float64)) for k, v in problem.x0_numpy().items())


def make_tf_fun() -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    """Hand-written gradient in TensorFlow, compiled with ``tf.function`` (traced once)."""
    import tensorflow as tf

    def pair(x: Any, y: Any) -> tuple[Any, Any, Any]:
        d = y - x * x
        e = 1.0 - x
        return (
            100.0 * tf.reduce_sum(d * d) + tf.reduce_sum(e * e),
            -400.0 * x * d - 2.0 * e,
            (200.0 * d),
        )

    @tf.function  # type: ignore[untyped-decorator]
    def fun(p: dict[str, Any]) -> tuple[Any, Any]:
        f1, gx1, gy1 = pair(p["x1"], p["y1"])
        f2, gx2, gy2 = pair(p["x2"], p["y2"])
        return f1 + f2, OrderedDict(x1=gx1, y1=gy1, x2=gx2, y2=gy2)

    return fun  # type: ignore[no-any-return]


def tf_loss(p: dict[str, Any]) -> Any:
    """The loss alone, for ``tf.GradientTape`` (``jac=False``)."""
    import tensorflow as tf

    total = 0.0
    for x, y in ((p["x1"], p["y1"]), (p["x2"], p["y2"])):
        d = y - x * x
        e = 1.0 - x
        total = total + tf.reduce_sum(100.0 * (d * d) + e * e)
    return total


# -- JAX --------------------------------------------------------------------------------------
def enable_jax_x64() -> None:
    """float64 in JAX (the benchmark runs every framework in float64)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def jax_x0(problem: Problem) -> OrderedDict[str, Any]:
    import jax.numpy as jnp

    enable_jax_x64()
    return OrderedDict((k, jnp.asarray(v)) for k, v in problem.x0_numpy().items())


def make_jax_fun() -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    """Hand-written gradient in JAX, compiled with ``jax.jit`` (once per input structure)."""
    import jax
    import jax.numpy as jnp

    def pair(x: Any, y: Any) -> tuple[Any, Any, Any]:
        d = y - x * x
        e = 1.0 - x
        return 100.0 * jnp.vdot(d, d) + jnp.vdot(e, e), -400.0 * x * d - 2.0 * e, 200.0 * d

    @jax.jit  # type: ignore[untyped-decorator]
    def fun(p: dict[str, Any]) -> tuple[Any, Any]:
        f1, gx1, gy1 = pair(p["x1"], p["y1"])
        f2, gx2, gy2 = pair(p["x2"], p["y2"])
        return f1 + f2, OrderedDict(x1=gx1, y1=gy1, x2=gx2, y2=gy2)

    return fun  # type: ignore[no-any-return]


def jax_loss(p: dict[str, Any]) -> Any:
    """The loss alone, for ``jax.grad`` (``jac=False``)."""
    import jax.numpy as jnp

    total = 0.0
    for x, y in ((p["x1"], p["y1"]), (p["x2"], p["y2"])):
        d = y - x * x
        e = 1.0 - x
        total = total + jnp.sum(100.0 * (d * d) + e * e)
    return total
