"""Contenders: zero-argument callables that each run one full L-BFGS-B minimization.

Shared by the main process (raw scipy, this project's APIs, minimal hand-written glue) and the
peer worker (raw scipy, dict-minimize 0.0.4), so every contender solves exactly the same problem
with the same call. Nothing here imports ``dict_minimize``: the API modules are passed in.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import _problems as P
import _threads
import numpy as np
import scipy.optimize as so

FRAMEWORKS = ("numpy", "torch", "tensorflow", "jax")
#: The import each framework needs (besides NumPy).
FRAMEWORK_MODULE = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
#: What differentiates a loss-only objective (``jac=False``), for row labels.
AUTODIFF = {"torch": "autograd", "tensorflow": "GradientTape", "jax": "jax.grad"}


@dataclass
class Check:
    """What a verification run saw: iterations, evaluations, and the final flat point."""

    nit: int
    nfev: int
    x: np.ndarray


@dataclass
class Contender:
    """One row of the benchmark."""

    name: str
    kind: str  # "scipy", "ours", "dict-minimize 0.0.4" or "glue"
    framework: str
    run: Callable[[], Any]
    verify: Callable[[], Check]


def flat_numpy(tree: Any) -> np.ndarray:
    """A result dict of any framework -> one float64 vector in the problem's key order."""
    parts = []
    for key in P.KEYS:
        value = tree[key]
        if hasattr(value, "detach"):  # torch
            value = value.detach().cpu()
        parts.append(np.asarray(value, dtype=np.float64).reshape(-1))
    return np.concatenate(parts)


def available(framework: str) -> bool:
    """Whether the framework is installed in this interpreter (without importing it)."""
    return importlib.util.find_spec(FRAMEWORK_MODULE[framework]) is not None


def version(distribution: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Versions of Python, NumPy, SciPy and the installed frameworks."""
    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "torch", "tensorflow-cpu", "tensorflow", "jax", "jaxlib"):
        found = version(dist)
        if found is not None:
            out[dist] = found
    return out


def setup(framework: str, problem: P.Problem) -> tuple[Any, Callable[..., Any], Any]:
    """``(x0_dict, hand_fun, loss_fun)`` of the problem in one framework."""
    importlib.import_module(FRAMEWORK_MODULE[framework])
    _threads.pin_frameworks()  # before the framework creates its first tensor
    if framework == "numpy":
        return problem.x0_numpy(), P.numpy_fun, None
    if framework == "torch":
        return P.torch_x0(problem), P.torch_fun, P.torch_loss
    if framework == "tensorflow":
        return P.tf_x0(problem), P.make_tf_fun(), P.tf_loss
    if framework == "jax":
        return P.jax_x0(problem), P.make_jax_fun(), P.jax_loss
    raise ValueError(f"unknown framework {framework!r}")


# -- raw scipy ----------------------------------------------------------------------------------
def raw_scipy(problem: P.Problem) -> Contender:
    """``scipy.optimize.minimize`` on the flat NumPy problem: the baseline."""
    fun = P.flat_fun(problem)
    x0 = problem.x0

    def run() -> Any:
        return so.minimize(fun, x0, jac=True, method=P.METHOD, options=P.OPTIONS)

    def verify() -> Check:
        res = run()
        return Check(int(res.nit), int(res.nfev), np.asarray(res.x))

    return Contender("scipy.optimize.minimize (flat NumPy)", "scipy", "numpy", run, verify)


# -- a dict API: this project's or dict-minimize 0.0.4's -----------------------------------------
def api(
    module: ModuleType,
    framework: str,
    problem: P.Problem,
    *,
    label: str,
    kind: str,
    full_output: bool,
    autodiff: bool = False,
) -> Contender:
    """A dict API's ``minimize`` on the problem, with the hand-written gradient (``jac=True``).

    ``full_output`` says whether the API can report ``nit``/``nfev`` itself (this project) or
    whether the verification run counts them with a callback and a wrapped objective
    (dict-minimize 0.0.4). ``autodiff`` runs the loss alone with ``jac=False`` instead.
    """
    x0, hand, loss = setup(framework, problem)
    minimize = module.minimize
    if autodiff:
        kwargs: dict[str, Any] = {"jac": False}
        fun = loss
    else:
        kwargs, fun = {}, hand

    def run() -> Any:
        return minimize(fun, x0, method=P.METHOD, options=P.OPTIONS, **kwargs)

    def verify() -> Check:
        if full_output:
            res = minimize(fun, x0, method=P.METHOD, options=P.OPTIONS, full_output=True, **kwargs)
            return Check(int(res.nit), int(res.nfev), flat_numpy(res.x))
        calls = [0, 0]  # evaluations, iterations

        def counted(params: Any, *args: Any) -> Any:
            calls[0] += 1
            return fun(params, *args)

        def callback(_: Any) -> None:
            calls[1] += 1

        x = minimize(counted, x0, method=P.METHOD, options=P.OPTIONS, callback=callback, **kwargs)
        return Check(calls[1], calls[0], flat_numpy(x))

    return Contender(label, kind, framework, run, verify)


# -- the floor: scipy plus the least glue that can drive the framework objective ---------------
def glue(framework: str, problem: P.Problem) -> Contender:
    """Raw scipy calling the framework's objective through minimal hand-written glue.

    The glue does only what any adapter must (host vector -> framework tensors in x0's shapes,
    gradient dict -> host vector) with no validation; it is the floor for an adapter around
    that objective, and separates the framework's own cost from the adapter's.
    """
    _, hand, _ = setup(framework, problem)
    keys = list(P.KEYS)
    shapes = [problem.shapes[k] for k in keys]
    sizes = [int(np.prod(s)) for s in shapes]
    flat_fun = _glue_fun(framework, hand, keys, shapes, sizes)
    x0 = problem.x0

    def run() -> Any:
        return so.minimize(flat_fun, x0, jac=True, method=P.METHOD, options=P.OPTIONS)

    def verify() -> Check:
        res = run()
        return Check(int(res.nit), int(res.nfev), np.asarray(res.x))

    label = f"scipy + minimal {framework} glue (floor)"
    return Contender(label, "glue", framework, run, verify)


def _glue_fun(
    framework: str,
    hand: Callable[..., Any],
    keys: list[str],
    shapes: list[tuple[int, ...]],
    sizes: list[int],
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    if framework == "torch":
        import torch

        cuts = [int(o) for o in np.cumsum([0, *sizes])]
        pieces = list(zip(keys, cuts, cuts[1:], shapes))

        def torch_glue(v: np.ndarray) -> tuple[float, np.ndarray]:
            # NumPy slices wrapped by torch.from_numpy and the gradient joined by NumPy: no
            # torch operation at all (split/view/cat cost ~1-2 us each at small sizes).
            p = OrderedDict((k, torch.from_numpy(v[a:b].reshape(s))) for k, a, b, s in pieces)
            f, g = hand(p)
            return float(f), np.concatenate([g[k].numpy() for k in keys], axis=None)

        return torch_glue
    if framework == "tensorflow":
        import tensorflow as tf

        @tf.function  # type: ignore[untyped-decorator]
        def tf_flat(v: Any) -> tuple[Any, Any]:
            parts = tf.split(v, sizes)
            p = OrderedDict((k, tf.reshape(t, s)) for k, t, s in zip(keys, parts, shapes))
            f, g = hand(p)
            return f, tf.concat([tf.reshape(g[k], [-1]) for k in keys], 0)

        def tf_glue(v: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = tf_flat(tf.constant(v))
            return float(f), g.numpy()

        return tf_glue
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        offsets = [int(o) for o in np.cumsum([0, *sizes])]

        @jax.jit  # type: ignore[untyped-decorator]
        def jax_flat(v: Any) -> tuple[Any, Any]:
            p = OrderedDict(
                (k, v[a:b].reshape(s)) for k, a, b, s in zip(keys, offsets, offsets[1:], shapes)
            )
            f, g = hand(p)
            return f, jnp.concatenate([g[k].reshape(-1) for k in keys])

        def jax_glue(v: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = jax_flat(v)
            return float(f), np.asarray(g)

        return jax_glue
    raise ValueError(f"no glue for {framework!r}")
