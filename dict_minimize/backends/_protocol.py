"""What a framework must provide: the backend protocol.

The core (trees, bounds, the scipy bridge, the solvers) is written once against
:class:`Backend`. A framework implements the abstract primitives below: transfers, a few
array operations, and autodiff builders. Everything built from them (packing a tree into one
flat vector, the flat objective's derivatives) is implemented here once.

Conventions
-----------
* A *flat* tensor is 1-D, of dtype :meth:`Backend.flat_dtype` (float64 unless the framework or
  device lacks it), on the parameters' device. The core differentiates functions of the flat
  tensor, so gradients, Hessian-vector products and Jacobians come out flat with no per-leaf
  bookkeeping.
* Autodiff builders are called once per solver run and return callables that the solver calls
  many times; a tracing framework compiles there (and only there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from dict_minimize._errors import InvalidDtypeError, InvalidParamsError
from dict_minimize._tree import Path, TreeSpec, format_path

T = TypeVar("T")

#: dtype names a parameter may have; anything else is refused with a clear error.
FLOATING = ("float16", "bfloat16", "float32", "float64")

FlatFn = Callable[[Any], Any]


class Backend(ABC, Generic[T]):
    """Framework adapter; subclasses implement the abstract methods.

    Attributes
    ----------
    name : str
        Short name used in messages (``"torch"``).
    has_autodiff : bool
        False for NumPy: the core then uses scipy's finite differences where a derivative is
        missing, and refuses what cannot be approximated.
    """

    name: str = "abstract"
    has_autodiff: bool = True

    # -- leaves ---------------------------------------------------------------------------
    @abstractmethod
    def is_leaf(self, value: Any) -> bool:
        """True if ``value`` is a tensor of this framework."""

    @abstractmethod
    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        """``(shape, dtype, device)`` of a tensor."""

    @abstractmethod
    def dtype_name(self, dtype: Any) -> str:
        """Canonical name of a dtype (``"float32"``); used to validate and in messages."""

    @abstractmethod
    def flat_dtype(self, device: Any) -> Any:
        """dtype of flat vectors on ``device``: float64 where the device supports it."""

    # -- transfers: exactly one copy each way ---------------------------------------------
    @abstractmethod
    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> T:
        """A new tensor on ``device`` holding a copy of ``array``, cast to ``dtype``."""

    @abstractmethod
    def to_numpy(self, tensor: T) -> np.ndarray:
        """A host copy of ``tensor`` (detached from any autodiff graph)."""

    # -- array operations ---------------------------------------------------------------
    @abstractmethod
    def reshape(self, tensor: T, shape: tuple[int, ...]) -> T: ...

    @abstractmethod
    def cast(self, tensor: T, dtype: Any) -> T:
        """``tensor`` in ``dtype``; returns ``tensor`` itself when it already has it."""

    @abstractmethod
    def concat(self, tensors: Sequence[T]) -> T:
        """Concatenate 1-D tensors."""

    @abstractmethod
    def slice(self, tensor: T, start: int, stop: int) -> T:
        """``tensor[start:stop]`` of a 1-D tensor."""

    def detached(self, leaves: list[T]) -> list[T]:
        """Leaves handed to a user objective that computes its own gradient (``jac=True``).

        PyTorch overrides this to give leaves with ``requires_grad=True``, as dict-minimize did,
        so ``torch.autograd.grad(loss, params[k])`` works inside the objective.
        """
        return leaves

    # -- autodiff builders (called once per run) -------------------------------------------
    def value_fn(self, f: FlatFn) -> FlatFn:
        """``flat -> f(flat)``, compiled where the framework compiles."""
        return f

    @abstractmethod
    def value_and_grad_fn(self, f: FlatFn) -> Callable[[T], tuple[T, T]]:
        """``flat -> (f(flat), ∇f(flat))`` for a scalar ``f``."""

    @abstractmethod
    def hvp_fn(self, f: FlatFn) -> Callable[[T, T], T]:
        """``(flat, v) -> ∇²f(flat) @ v``."""

    @abstractmethod
    def hessian_fn(self, f: FlatFn) -> Callable[[T], T]:
        """``flat -> ∇²f(flat)``, an (n, n) tensor."""

    @abstractmethod
    def jacobian_fn(self, f: FlatFn) -> Callable[[T], tuple[T, T]]:
        """``flat -> (f(flat), ∂f/∂flat)`` for a vector-valued ``f``: (m,) and (m, n)."""

    # -- built from the primitives ---------------------------------------------------------
    def describe(self, path: Path, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        """Validate one x0 leaf and return ``(shape, dtype, device)``."""
        if not self.is_leaf(value):
            raise InvalidParamsError(
                f"{format_path(path)} is a {type(value).__name__}, not a {self.name} tensor; "
                f"convert it (and every value of x0) to a {self.name} floating-point tensor"
            )
        shape, dtype, device = self.leaf_meta(value)
        name = self.dtype_name(dtype)
        if name not in FLOATING:
            raise InvalidDtypeError(
                f"{format_path(path)} has dtype {name}; parameters must be floating point "
                f"({', '.join(FLOATING)}): cast it, e.g. to float32 or float64"
            )
        return shape, dtype, device

    def ravel(self, leaves: Sequence[T], spec: TreeSpec, dtype: Any) -> T:
        """Concatenate leaves (already matched to ``spec``) into one flat tensor."""
        parts = [
            self.cast(self.reshape(value, (leaf.size,)), dtype)
            for leaf, value in zip(spec.leaves, leaves)
        ]
        return parts[0] if len(parts) == 1 else self.concat(parts)

    def unravel(self, flat: T, spec: TreeSpec) -> list[T]:
        """Split a flat tensor into leaves with x0's shapes and dtypes (differentiably)."""
        if len(spec.leaves) == 1:
            leaf = spec.leaves[0]
            return [self.cast(self.reshape(flat, leaf.shape), leaf.dtype)]
        return [
            self.cast(
                self.reshape(self.slice(flat, leaf.offset, leaf.offset + leaf.size), leaf.shape),
                leaf.dtype,
            )
            for leaf in spec.leaves
        ]
