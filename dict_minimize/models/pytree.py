"""JAX pytrees (Equinox modules, dataclasses, tuples...) <-> an OrderedDict of their arrays.

:func:`partition` takes the floating-point array leaves of any pytree into a flat dict keyed
by their path (``"layers.0.weight"``) and keeps everything else (integer arrays, activation
functions, ints, the tree structure) aside; :func:`combine` puts a params dict back, also on
traced values inside ``jax.jit``. No Equinox import is needed: an Equinox module is a pytree.

Nested dicts of parameters (Flax ``variables["params"]``, Haiku params) need neither: pass
them to ``minimize`` as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from dict_minimize._errors import InvalidParamsError
from dict_minimize.models._common import check_keys, check_shape


def is_float_array(leaf: Any) -> bool:
    """The default test for a parameter: a JAX array of a floating dtype."""
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.floating)


@dataclass(frozen=True)
class Static:
    """What :func:`partition` keeps aside: the structure and the non-parameter leaves."""

    treedef: Any
    leaves: tuple[Any, ...]  # the non-parameter leaves; None where a parameter goes
    keys: tuple[str | None, ...]  # the parameter's key at each leaf position, else None
    shapes: tuple[tuple[int, ...] | None, ...]


def partition(
    tree: Any, *, is_param: Callable[[Any], bool] = is_float_array
) -> tuple[OrderedDict[str, jax.Array], Static]:
    """Split a pytree into a dict of its parameters and the rest.

    Parameters
    ----------
    tree : pytree
        An Equinox module, a dataclass registered as a pytree, nested tuples/lists/dicts...
        It is not modified.
    is_param : callable
        Which leaves to optimize; by default floating-point JAX arrays.

    Returns
    -------
    params : OrderedDict
        ``path -> array`` in leaf order; paths read like attribute access (``"mlp.layers.0.b"``).
    static : Static
        Everything else, for :func:`combine`.

    Raises
    ------
    InvalidParamsError
        When the tree has no parameter, or two parameters would get the same key.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from dict_minimize.models.pytree import combine, partition
    >>> model = {"layers": [(jnp.ones((2, 2)), jnp.zeros(2)), jnp.tanh], "n_steps": 3}
    >>> params, static = partition(model)
    >>> list(params)
    ['layers.0.0', 'layers.0.1']
    >>> rebuilt = combine(params, static)
    >>> rebuilt["layers"][1] is jnp.tanh, rebuilt["n_steps"]
    (True, 3)
    """
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    keys: list[str | None] = []
    shapes: list[tuple[int, ...] | None] = []
    rest: list[Any] = []
    params: OrderedDict[str, jax.Array] = OrderedDict()
    for path, leaf in with_path:
        if is_param(leaf):
            key = jax.tree_util.keystr(path, simple=True, separator=".")
            if key in params:
                raise InvalidParamsError(
                    f"two parameters of the tree get the key {key!r}; rename one of them"
                )
            params[key] = leaf
            keys.append(key)
            shapes.append(tuple(leaf.shape))
            rest.append(None)
        else:
            keys.append(None)
            shapes.append(None)
            rest.append(leaf)
    if not params:
        raise InvalidParamsError(
            "the tree has no parameter leaf (no floating-point JAX array); convert the "
            "parameters with jnp.asarray or pass is_param="
        )
    return params, Static(treedef, tuple(rest), tuple(keys), tuple(shapes))


def combine(params: Mapping[str, Any], static: Static) -> Any:
    """Rebuild the pytree that :func:`partition` split, with the arrays of ``params``.

    Parameters
    ----------
    params : Mapping
        ``path -> array`` with exactly the keys :func:`partition` returned (e.g. the result of
        minimize, or the traced params inside an objective).
    static : Static
        The second result of :func:`partition`.

    Returns
    -------
    pytree
        The tree with its parameters replaced; the other leaves are the originals.

    Raises
    ------
    InvalidParamsError
        A missing or unknown key, or a wrong shape.
    """
    names = [k for k in static.keys if k is not None]
    check_keys(params, names, names, "parameter")
    leaves = []
    for key, shape, leaf in zip(static.keys, static.shapes, static.leaves):
        if key is None:
            leaves.append(leaf)
            continue
        value = params[key]
        check_shape(key, tuple(jnp.shape(value)), shape or ())
        leaves.append(value)
    return jax.tree_util.tree_unflatten(static.treedef, leaves)
