"""``fit`` for a JAX model given as an apply function and a params tree (Flax, Haiku, Equinox
partitions, or plain dicts): Levenberg-Marquardt training like MATLAB ``trainlm``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from dict_minimize.backends.jax import JaxBackend
from dict_minimize.training._core import FitResult, fit_params

_BACKEND = JaxBackend()


def fit(
    apply_fn: Callable[[Any, Any], Any],
    params: Mapping[str, Any],
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
    devices: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Train ``params`` of ``apply_fn(params, inputs) -> outputs`` by LM on the mean squared
    error; the trained tree is ``result.params`` (JAX arrays are immutable).

    Same algorithm and arguments as :func:`dict_minimize.torch_api.fit` (see there), except
    that there is no ``normalize``: scale ``inputs`` and ``targets`` yourself, since a params
    tree has no first and last layer to fold the scaling into. ``apply_fn`` is called per
    sample under ``jax.vmap`` (on batches of one sample) and on whole batches. ``devices``
    (a list of jax devices or a one-axis ``Mesh``) shards the training samples over those
    devices, as ``least_squares``' option of that name.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from dict_minimize.training.jax import fit
    >>> jax.config.update("jax_enable_x64", True)
    >>> x = jnp.linspace(-1.0, 1.0, 100).reshape(-1, 1)
    >>> y = jnp.sin(3.0 * x)
    >>> def apply_fn(p, x):
    ...     return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    >>> key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    >>> p0 = {"w1": jax.random.normal(key1, (1, 8)), "b1": jnp.zeros(8),
    ...       "w2": jax.random.normal(key2, (8, 1)) / 3, "b2": jnp.zeros(1)}
    >>> out = fit(apply_fn, p0, x, y, epochs=100, goal=1e-8)
    >>> bool(jnp.mean((apply_fn(out.params, x) - y) ** 2) < 1e-6)
    True
    """
    return fit_params(
        _BACKEND, apply_fn, params, inputs, targets, val_data=val_data, epochs=epochs,
        goal=goal, min_grad=min_grad, mu=mu, mu_dec=mu_dec, mu_inc=mu_inc, mu_max=mu_max,
        max_fail=max_fail, normalize=False, progress=progress, chunk_size=chunk_size,
        fold=None, damping=damping, geodesic=geodesic, devices=devices,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
    )  # fmt: skip
