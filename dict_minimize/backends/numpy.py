"""NumPy backend: no autodiff, so gradients come from the user or finite differences.

``minimize`` uses scipy's finite differences. The least-squares solvers get Jacobians from
central differences here (:func:`central_differences`): relative error about ``eps^(2/3)``
(1e-11), 2n residual evaluations per Jacobian.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import scipy.linalg

from dict_minimize._tree import TreeSpec
from dict_minimize.backends._host import _PLAIN_DICTS, HostLeaves, is_plain_float64
from dict_minimize.backends._protocol import Backend, FlatFn

# A tuple, not ``np.ndarray | np.generic``: an inline union is rebuilt on every isinstance.
_LEAF_TYPES = (np.ndarray, np.generic)


@functools.cache  # np.dtype(...).name is computed in Python on every access
def _dtype_name(dtype: Any) -> str:
    return str(np.dtype(dtype).name)


class NumpyBackend(Backend[np.ndarray]):
    """Parameters are ``numpy.ndarray`` (or NumPy scalars); everything lives on the host."""

    name = "numpy"
    has_autodiff = False

    def is_leaf(self, value: Any) -> bool:
        return isinstance(value, _LEAF_TYPES)

    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        if isinstance(value, _LEAF_TYPES):  # attribute reads: per-evaluation path
            return value.shape, value.dtype, "cpu"
        return np.shape(value), np.asarray(value).dtype, "cpu"

    def dtype_name(self, dtype: Any) -> str:
        return _dtype_name(dtype)

    def flat_dtype(self, device: Any) -> Any:
        return np.float64

    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> np.ndarray:
        return np.array(array, dtype=dtype, copy=True)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def reshape(self, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if isinstance(tensor, np.ndarray):  # the method skips np.reshape's dispatch wrapper
            return tensor.reshape(shape)
        return np.reshape(tensor, shape)

    def cast(self, tensor: np.ndarray, dtype: Any) -> np.ndarray:
        return tensor if tensor.dtype == dtype else tensor.astype(dtype)

    def concat(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(tensors)

    def slice(self, tensor: np.ndarray, start: int, stop: int) -> np.ndarray:
        return tensor[start:stop]

    # ravel/unravel run on every evaluation; with NumPy the per-leaf method calls of the
    # generic versions cost more than the array operations, so these are written out.
    def ravel(self, leaves: Sequence[np.ndarray], spec: TreeSpec, dtype: Any) -> np.ndarray:
        parts = [value.reshape(-1) for value in leaves]  # ndarray or NumPy scalar leaves
        if len(parts) == 1:
            return parts[0] if parts[0].dtype == dtype else parts[0].astype(dtype)
        return np.concatenate(parts, dtype=dtype, casting="unsafe")  # casts like astype

    def unravel(self, flat: np.ndarray, spec: TreeSpec) -> list[np.ndarray]:
        out = []
        for leaf in spec.leaves:
            part = flat[leaf.offset : leaf.offset + leaf.size]
            if len(leaf.shape) != 1:
                part = part.reshape(leaf.shape)
            out.append(part if part.dtype == leaf.dtype else part.astype(leaf.dtype))
        return out

    def host_leaves(self, spec: TreeSpec, device: Any) -> HostLeaves:
        return _NumpyHostLeaves(spec, [np.dtype(leaf.dtype) for leaf in spec.leaves], self.is_leaf)

    def _no_autodiff(self, *_: Any) -> NoReturn:
        raise NotImplementedError("numpy has no autodiff")

    value_and_grad_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hvp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hessian_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    jvp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    vjp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]

    def jacobian_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        """Central differences (the least-squares solvers' Jacobian; ``minimize`` and the
        constraints keep scipy's own finite differences since ``has_autodiff`` is False)."""

        def jacobian(flat: np.ndarray, *args: Any) -> tuple[Any, ...]:
            value, jac = f(flat, *args), central_differences(lambda z: f(z, *args), flat)
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return jacobian

    def per_sample_jacobian_fn(
        self, f: Callable[..., Any], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        # Without autodiff the rows come from central differences of the whole chunk.
        return self.jacobian_fn(f)

    # -- solver primitives --------------------------------------------------------------------
    def zeros(self, shape: tuple[int, ...], like: np.ndarray) -> np.ndarray:
        return np.zeros(shape, dtype=like.dtype)

    def eye(self, n: int, like: np.ndarray) -> np.ndarray:
        return np.eye(n, dtype=like.dtype)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(a @ b)

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(a.T @ b)

    def diagonal(self, a: np.ndarray) -> np.ndarray:
        return np.diagonal(a).copy()

    def sum(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.sum(a))

    def amax(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.max(a))

    def sqrt(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(a))

    def abs(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.abs(a))

    def log1p(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.log1p(a))

    def arctan(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(np.arctan(a))

    def where(self, cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
        return np.asarray(np.where(cond, a, b))

    def maximum(self, a: np.ndarray, b: Any) -> np.ndarray:
        return np.asarray(np.maximum(a, b))

    def minimum(self, a: np.ndarray, b: Any) -> np.ndarray:
        return np.asarray(np.minimum(a, b))

    def cholesky_solve(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        try:
            factor = scipy.linalg.cho_factor(a, check_finite=False)
        except np.linalg.LinAlgError:
            return np.full_like(b, np.nan)
        return np.asarray(scipy.linalg.cho_solve(factor, b, check_finite=False))

    def eigh(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, q = np.linalg.eigh(a)
        return w, q

    def slice_axis(self, tensor: np.ndarray, start: int, stop: int, axis: int) -> np.ndarray:
        index = [slice(None)] * np.ndim(tensor)
        index[axis] = slice(start, stop)
        return np.asarray(tensor)[tuple(index)]

    # -- random search primitives (no vmap: the trial points are evaluated one by one) -------
    def random_generator(self, seed: int, like: np.ndarray) -> Any:
        return np.random.default_rng(seed)

    def random_normal(self, generator: Any, shape: tuple[int, ...], like: np.ndarray) -> np.ndarray:
        return np.asarray(generator.standard_normal(shape), dtype=like.dtype)

    def random_integers(
        self, generator: Any, high: int, shape: tuple[int, ...], like: np.ndarray
    ) -> np.ndarray:
        return np.asarray(generator.integers(high, size=shape))

    def take(self, tensor: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return np.take(tensor, indices, axis=0)

    def add_at(self, tensor: np.ndarray, index: Any, value: np.ndarray) -> np.ndarray:
        out = np.array(tensor, copy=True)
        out.reshape(-1)[index] += value  # a view of the fresh contiguous copy
        return out

    def stack(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(tensors)


_FLOAT_SCALARS = (np.float64, np.float32, np.float16)


class _NumpyHostLeaves(HostLeaves):
    """Leaves are views of one copy of scipy's point; gradients are the user's arrays."""

    def leaves(self, x: np.ndarray, owned: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        point = x if owned and is_plain_float64(x) else np.array(x, dtype=np.float64)
        if self._views:  # float64 leaves: views of the point, written out (every evaluation)
            return point, [
                point[start:stop] if shape is None else point[start:stop].reshape(shape)
                for start, stop, shape, _ in self._plan
            ]
        return point, self.arrays(point)

    def scalar(self, value: Any) -> float | None:
        # A float loss skips this; NumPy's float scalars (np.vdot, .sum()) come here.
        return float(value) if type(value) in _FLOAT_SCALARS else None

    def host_arrays(self, values: Sequence[Any]) -> list[np.ndarray] | None:
        for value in values:
            if type(value) is not np.ndarray:  # NumPy scalars, subclasses: the validating path
                return None
        return list(values)

    def gradient(self, tree: Any) -> np.ndarray | None:
        # The base class's steps in one pass: this runs on every evaluation.
        get = self._get
        values: Sequence[Any] | None
        if get is not None and type(tree) in _PLAIN_DICTS and len(tree) == self._nkeys:
            try:
                values = get(tree)
            except KeyError:
                return None
        else:
            values = self.values(tree)
            if values is None:
                return None
        for value, shape in zip(values, self._shapes):
            if type(value) is not np.ndarray or value.shape != shape:
                return None
        try:
            joined: np.ndarray = np.concatenate(values, axis=None, dtype=np.float64)
        except TypeError:
            return None
        return joined


def central_differences(f: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    """The Jacobian (m, n) of ``f`` at ``x`` by central differences, one column per parameter.

    The step ``eps^(1/3)·|x_i|`` (``eps^(1/3)`` at zero) balances truncation against rounding
    relative to each parameter's own magnitude; it is rounded so that ``x + h`` is exact.
    """
    x = np.asarray(x, dtype=np.float64)
    scale = np.where(x == 0.0, 1.0, np.abs(x))
    steps = np.cbrt(np.finfo(np.float64).eps) * scale
    steps = (x + steps) - x
    columns = []
    for i in range(x.size):  # finite differences need one perturbation per parameter
        up, down = x.copy(), x.copy()
        up[i] += steps[i]
        down[i] -= steps[i]
        diff = np.ravel(np.asarray(f(up), dtype=np.float64) - np.asarray(f(down), dtype=np.float64))
        columns.append(diff / (2.0 * steps[i]))
    return np.stack(columns, axis=1)
