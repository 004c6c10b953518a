"""Compiled derivatives of ``jac=False`` objectives, shared by the calls that can reuse them.

A tracing framework (JAX, TensorFlow) traces and compiles the value and gradient (and the
Hessian-vector product, the Hessian) of an objective the first time a call evaluates it: tens
of milliseconds, more than a whole small run. A later call with the same function, the same
layout of x0 (keys, nesting, shapes, dtypes, device), the same flat dtype and the same ``args``
tensors reuses them. As with ``jax.jit``, Python state that the objective reads while it is
traced (a global, a closure variable rebound later) is fixed in the compiled code; pass data
that changes between calls through ``args`` or ``params``.

The cache holds each function weakly, and the compiled code reaches it only through that weak
reference: an entry goes when its function does. Only calls whose ``args`` are all tensors of
the framework are cached (other arguments could hold the function alive, or change under an
equal-looking key), at most :data:`PER_FUNCTION` layouts per function.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from dict_minimize._tree import TreeSpec
from dict_minimize._weak_cache import PerFunctionCache
from dict_minimize.backends._protocol import Backend, FlatFn

#: Most layouts (and ``args``) kept per function: the most recently used ones.
PER_FUNCTION = 8

# How each derivative is built from the flat loss.
_BUILDERS = {
    "own_value_and_grad": "pure_fn",  # a jac=True objective's own (loss, flat gradient)
    "value": "value_fn",
    "value_and_grad": "value_and_grad_fn",
    "hvp": "hvp_fn",
    "hessian": "hessian_fn",
}

_cache: PerFunctionCache[Derivatives] = PerFunctionCache(PER_FUNCTION)


class Derivatives:
    """The compiled derivatives of one flat loss, each built on first use.

    Parameters
    ----------
    backend : Backend
        Builds them (:meth:`Backend.value_and_grad_fn` and the like).
    loss : callable
        ``flat -> loss``, the objective as a function of the flat vector.
    args : tuple
        The ``args`` the loss closes over, held so that their ids in the cache key stay unique
        while the entry lives.
    """

    def __init__(self, backend: Backend[Any], loss: FlatFn, args: tuple[Any, ...]) -> None:
        self._backend = backend
        self._loss = loss
        self._args = args
        self._built: dict[str, Callable[..., Any]] = {}

    def get(self, kind: str) -> Callable[..., Any]:
        """The derivative ``kind`` (``"value"``, ``"value_and_grad"``, ``"hvp"``,
        ``"hessian"``), built from the loss the first time it is asked for."""
        fn = self._built.get(kind)
        if fn is None:
            fn = self._built[kind] = getattr(self._backend, _BUILDERS[kind])(self._loss)
        return fn


def derivatives(
    backend: Backend[Any],
    spec: TreeSpec,
    fun: Callable[..., Any],
    args: tuple[Any, ...],
    dtype: Any,
    make_loss: Callable[[Callable[[], Any]], FlatFn],
) -> Derivatives:
    """The derivatives of ``fun`` for this layout, shared with earlier calls where possible.

    ``make_loss(get_fun)`` builds the flat loss, which must reach ``fun`` through
    ``get_fun()`` only (a weak reference when cached).

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from dict_minimize._tree import tree_spec
    >>> from dict_minimize.backends.jax import JaxBackend
    >>> backend = JaxBackend()
    >>> spec, _ = tree_spec({"w": jnp.zeros(2)}, backend.describe, backend.is_leaf)
    >>> def fun(params):
    ...     return jnp.sum(params["w"] ** 2)
    >>> def make_loss(get_fun):
    ...     return lambda flat: get_fun()({"w": flat})
    >>> first = derivatives(backend, spec, fun, (), jnp.float32, make_loss)
    >>> first is derivatives(backend, spec, fun, (), jnp.float32, make_loss)
    True
    """
    if not backend.compiles or not all(backend.is_leaf(arg) for arg in args):
        return Derivatives(backend, make_loss(lambda: fun), args)
    try:
        ref = weakref.ref(fun)
        key = (
            type(backend),
            spec.root,
            tuple((leaf.shape, leaf.dtype, leaf.device) for leaf in spec.leaves),
            dtype,
            tuple(id(arg) for arg in args),
        )
        hash(key)
    except TypeError:  # a function that cannot be weakly referenced, an unhashable key
        return Derivatives(backend, make_loss(lambda: fun), args)
    return _cache.get(fun, key, lambda: Derivatives(backend, make_loss(_dereference(ref)), args))


def _dereference(ref: weakref.ref[Any]) -> Callable[[], Any]:
    def get() -> Any:
        fun = ref()
        if fun is None:  # only reachable through a compiled function kept by hand
            raise ReferenceError("the objective of this compiled derivative no longer exists")
        return fun

    return get
