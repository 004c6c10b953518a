"""NumPy backend: no autodiff, so gradients come from the user or scipy's finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from dict_minimize.backends._protocol import Backend, FlatFn


class NumpyBackend(Backend[np.ndarray]):
    """Parameters are ``numpy.ndarray`` (or NumPy scalars); everything lives on the host."""

    name = "numpy"
    has_autodiff = False

    def is_leaf(self, value: Any) -> bool:
        return isinstance(value, np.ndarray | np.generic)

    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        return np.shape(value), np.asarray(value).dtype, "cpu"

    def dtype_name(self, dtype: Any) -> str:
        return str(np.dtype(dtype).name)

    def flat_dtype(self, device: Any) -> Any:
        return np.float64

    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> np.ndarray:
        return np.array(array, dtype=dtype, copy=True)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def reshape(self, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.reshape(tensor, shape)

    def cast(self, tensor: np.ndarray, dtype: Any) -> np.ndarray:
        return tensor if tensor.dtype == dtype else tensor.astype(dtype)

    def concat(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(tensors)

    def slice(self, tensor: np.ndarray, start: int, stop: int) -> np.ndarray:
        return tensor[start:stop]

    def _no_autodiff(self, *_: Any) -> NoReturn:
        raise NotImplementedError("numpy has no autodiff")

    value_and_grad_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hvp_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    hessian_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
    jacobian_fn: Callable[[FlatFn], Any] = _no_autodiff  # type: ignore[assignment]
