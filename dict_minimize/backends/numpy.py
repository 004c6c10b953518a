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

    def _no_autodiff(self, *_: Any) -> NoReturn:
        raise NotImplementedError("numpy has no autodiff")

    value_and_grad_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hvp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hessian_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    jvp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    vjp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]

    def jacobian_fn(self, f: FlatFn) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Central differences (the least-squares solvers' Jacobian; ``minimize`` and the
        constraints keep scipy's own finite differences since ``has_autodiff`` is False)."""

        def jacobian(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return f(flat), central_differences(f, flat)

        return jacobian

    def per_sample_jacobian_fn(
        self, f: Callable[..., Any], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        def rows(leaves: Sequence[np.ndarray], *args: Any) -> tuple[np.ndarray, np.ndarray]:
            shapes = [np.shape(leaf) for leaf in leaves]
            dtypes = [np.asarray(leaf).dtype for leaf in leaves]
            sizes = [int(np.prod(s)) for s in shapes]
            cuts = np.cumsum(sizes)[:-1]

            def flat_f(flat: np.ndarray) -> Any:
                parts = np.split(flat, cuts)
                return f([p.reshape(s).astype(d) for p, s, d in zip(parts, shapes, dtypes)], *args)

            flat0 = np.concatenate([np.ravel(leaf).astype(np.float64) for leaf in leaves])
            return np.asarray(flat_f(flat0)), central_differences(flat_f, flat0)

        return rows

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
