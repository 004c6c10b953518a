"""PyTorch backend: autograd for gradients, double backward for Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dict_minimize.backends._protocol import Backend, FlatFn


class TorchBackend(Backend[torch.Tensor]):
    """Parameters are ``torch.Tensor`` (or ``nn.Parameter``) on any one device."""

    name = "torch"

    def is_leaf(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor)

    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        return tuple(value.shape), value.dtype, value.device

    def dtype_name(self, dtype: Any) -> str:
        return str(dtype).removeprefix("torch.")

    def flat_dtype(self, device: Any) -> Any:
        # Apple's MPS has no float64; everything else does.
        return torch.float32 if torch.device(device).type == "mps" else torch.float64

    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array)).to(device=device, dtype=dtype, copy=True)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16
            tensor = tensor.float()
        host: np.ndarray = tensor.cpu().numpy()
        return host

    def reshape(self, tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return tensor.reshape(shape)

    def cast(self, tensor: torch.Tensor, dtype: Any) -> torch.Tensor:
        return tensor.to(dtype)

    def concat(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(tensors))

    def slice(self, tensor: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return tensor[start:stop]

    def detached(self, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
        # dict-minimize handed leaves with requires_grad=True so objectives could call
        # torch.autograd.grad(loss, params[k]) themselves; keep that contract.
        return [leaf.detach().requires_grad_(True) for leaf in leaves]

    def value_and_grad_fn(self, f: FlatFn) -> Callable[[torch.Tensor], tuple[Any, Any]]:
        def value_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            flat = flat.detach().requires_grad_(True)
            with torch.enable_grad():
                value = f(flat)
                (grad,) = torch.autograd.grad(value, flat, allow_unused=True)
            if grad is None:  # the loss does not depend on the parameters
                grad = torch.zeros_like(flat)
            return value.detach(), grad

        return value_and_grad

    def hvp_fn(self, f: FlatFn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        # Newton-CG and trust-ncg ask for many products at one point: keep the gradient's
        # graph of the last point and only run the second backward pass per product.
        cache: dict[str, Any] = {"x": None}

        def hvp(flat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            x = cache["x"]
            if x is None or x.shape != flat.shape or not torch.equal(x, flat):
                x = flat.detach().requires_grad_(True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(f(x), x, create_graph=True, allow_unused=True)
                cache.update(x=x, grad=grad)
            grad = cache["grad"]
            if grad is None or not grad.requires_grad:  # linear or constant loss
                return torch.zeros_like(flat)
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(grad, x, v, retain_graph=True, allow_unused=True)
            return torch.zeros_like(flat) if hv is None else hv.detach()

        return hvp

    def hessian_fn(self, f: FlatFn) -> Callable[[torch.Tensor], torch.Tensor]:
        def hessian(flat: torch.Tensor) -> torch.Tensor:
            h = torch.autograd.functional.hessian(f, flat.detach(), vectorize=True)
            return h.reshape(flat.numel(), flat.numel())

        return hessian

    def jacobian_fn(self, f: FlatFn) -> Callable[[torch.Tensor], tuple[Any, Any]]:
        def jacobian(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            flat = flat.detach()
            value = f(flat)
            jac = torch.autograd.functional.jacobian(f, flat, vectorize=True)
            return value.detach(), jac.reshape(value.numel(), flat.numel())

        return jacobian
