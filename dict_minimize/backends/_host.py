"""The host fast path of an objective that computes its own gradient (``jac=True``).

When the parameters live in host memory (NumPy arrays, PyTorch and TensorFlow tensors on the
CPU), an evaluation needs no flat vector on a device: each leaf is made directly from a slice
of scipy's float64 point, and the gradient leaves come back as NumPy arrays joined by one
``np.concatenate``. A :class:`HostLeaves`, built once per call for the layout of x0, holds the
slices, shapes and dtypes, so that an evaluation costs one copy each way and a few attribute
reads per leaf. Backends return one from
:meth:`~dict_minimize.backends._protocol.Backend.host_leaves`.

Only the common case takes this path: anything it does not recognize (a gradient leaf of the
wrong type, shape or dtype) makes :meth:`HostLeaves.gradient` answer None, and the caller then
takes the validating device path, which raises the usual clear error or handles the rare case.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dict_minimize._tree import TreeSpec

_FLOAT64 = np.dtype(np.float64)
_PLAIN_DICTS = (dict, OrderedDict)


def is_plain_float64(x: np.ndarray) -> bool:
    """Whether ``x`` can serve as the recorded point as it is (an owned ``x`` then needs no
    copy): a writeable, C-contiguous float64 NumPy array."""
    return (
        type(x) is np.ndarray
        and x.dtype == np.float64
        and x.flags.c_contiguous
        and x.flags.writeable
    )


def _getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``tree -> tuple(tree[key] for key in keys)`` in one C call (``operator.itemgetter``)."""
    get = operator.itemgetter(*keys)
    if len(keys) == 1:  # itemgetter of one key returns the value itself
        return lambda tree: (get(tree),)
    return get


class HostLeaves(ABC):
    """Leaves from scipy's host point and gradients back to the host, for one layout.

    Parameters
    ----------
    spec : TreeSpec
        The layout of x0.
    dtypes : sequence of numpy.dtype
        Each leaf's dtype as a NumPy dtype (the backend checks that NumPy has it).
    is_leaf : callable
        The backend's leaf test, to match the keys of nested gradient trees.

    Examples
    --------
    >>> import numpy as np
    >>> from dict_minimize._tree import tree_spec
    >>> from dict_minimize.backends.numpy import NumpyBackend
    >>> backend = NumpyBackend()
    >>> spec, _ = tree_spec({"a": np.zeros(2), "b": np.zeros((1, 2), np.float32)},
    ...                     backend.describe, backend.is_leaf)
    >>> host = backend.host_leaves(spec, "cpu")
    >>> point, leaves = host.leaves(np.arange(4.0))
    >>> [leaf.tolist() for leaf in leaves], leaves[1].dtype
    ([[0.0, 1.0], [[2.0, 3.0]]], dtype('float32'))
    >>> host.gradient({"b": np.full((1, 2), 2.0, np.float32), "a": np.ones(2)})
    array([1., 1., 2., 2.])
    >>> host.gradient({"a": np.ones(3), "b": np.ones((1, 2))}) is None  # wrong shape
    True
    """

    def __init__(
        self, spec: TreeSpec, dtypes: Sequence[np.dtype[Any]], is_leaf: Callable[[Any], bool]
    ) -> None:
        self.spec = spec
        self._is_leaf = is_leaf
        # Per leaf: the slice of the flat point, the shape (None for 1-D: the slice has it
        # already), and the dtype (None for float64: the slice has it already).
        self._plan = tuple(
            (
                leaf.offset,
                leaf.offset + leaf.size,
                None if len(leaf.shape) == 1 else leaf.shape,
                None if d == _FLOAT64 else d,
            )
            for leaf, d in zip(spec.leaves, dtypes)
        )
        self._views = all(dtype is None for *_, dtype in self._plan)  # every leaf float64
        self._shapes = tuple(leaf.shape for leaf in spec.leaves)
        # One level: the values of x0's keys in one call (raises KeyError for a missing key).
        self._get = _getter(spec.keys) if spec.flat else None
        self._nkeys = len(spec.keys) if spec.flat else -1

    def arrays(self, point: np.ndarray) -> list[np.ndarray]:
        """The leaves of a float64 point as NumPy arrays in x0's shapes and dtypes: views of
        ``point`` for float64 leaves, copies for the others."""
        out = []
        for start, stop, shape, dtype in self._plan:
            part = point[start:stop] if shape is None else point[start:stop].reshape(shape)
            out.append(part if dtype is None else part.astype(dtype))
        return out

    @abstractmethod
    def leaves(self, x: np.ndarray, owned: bool = False) -> tuple[Any, list[Any]]:
        """``(point, leaves)`` at scipy's point ``x``.

        ``leaves`` are the framework tensors handed to the objective (x0's shapes and dtypes,
        sharing no memory with ``x``, which scipy may reuse, unless ``owned``: ``x`` is then a
        fresh array that nothing else holds, and the leaves may be views of it); ``point``
        records the point for :meth:`point_to_host` (the best point is only brought back when
        it is needed).
        """

    def point_to_host(self, point: Any) -> np.ndarray:
        """The float64 point recorded by :meth:`leaves`: a host copy, or a tuple of the leaves
        themselves where the framework's tensors are immutable copies (TensorFlow, JAX)."""
        if isinstance(point, tuple):
            return np.concatenate([np.asarray(leaf) for leaf in point], axis=None, dtype=np.float64)
        return np.asarray(point, dtype=np.float64)

    @abstractmethod
    def host_arrays(self, values: Sequence[Any]) -> list[np.ndarray] | None:
        """Gradient leaves as host NumPy arrays (views where the framework allows), or None
        when any of them is not a host tensor of the framework."""

    def loss(self, value: Any) -> float:
        """A loss tensor of shape ``()`` or ``(1,)`` (already checked) as a float."""
        return float(np.asarray(value).reshape(()))

    def scalar(self, value: Any) -> float | None:
        """The loss as a float where it is a scalar tensor of the framework as the objective
        usually returns it, or None (the caller then checks and converts it): a shortcut for
        the evaluations after the first."""
        return None

    def values(self, tree: Any) -> Sequence[Any] | None:
        """The leaves of a gradient tree in x0's order: None when the keys of a one-level
        tree differ from x0's (the caller's validating path then says how); other trees are
        matched by :meth:`TreeSpec.match`, which raises on a key mismatch."""
        get = self._get
        if get is not None and type(tree) in _PLAIN_DICTS and len(tree) == self._nkeys:
            try:
                return get(tree)
            except KeyError:
                return None
        return self.spec.match(tree, "gradient", is_leaf=self._is_leaf)

    def gradient(self, tree: Any) -> np.ndarray | None:
        """The gradient tree joined into one new float64 vector in x0's leaf order, or None
        when a key, type, shape or dtype is not as expected: the caller then validates it."""
        values = self.values(tree)
        return None if values is None else self.join(values)

    def join(self, values: Sequence[Any]) -> np.ndarray | None:
        """Tensors in x0's leaf order and shapes (a gradient's, or x0's own) joined into one
        new float64 vector, or None when a type, shape or dtype is not as expected."""
        arrays = self.host_arrays(values)
        if arrays is None:
            return None
        for array, shape in zip(arrays, self._shapes):
            if array.shape != shape:
                return None
        try:  # same_kind casting: a complex gradient is refused here, and explained there
            joined: np.ndarray = np.concatenate(arrays, axis=None, dtype=np.float64)
        except TypeError:
            return None
        return joined
