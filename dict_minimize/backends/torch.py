"""PyTorch backend: autograd for gradients, double backward for Hessian-vector products."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.linalg import blas
from torch.utils._python_dispatch import TorchDispatchMode

from dict_minimize._tree import TreeSpec
from dict_minimize.backends._host import HostLeaves, is_plain_float64
from dict_minimize.backends._protocol import Backend, FlatFn

#: BLAS's symmetric rank-k update per dtype, for ``gram(J, J)`` of CPU tensors.
_SYRK = {torch.float32: blas.ssyrk, torch.float64: blas.dsyrk}

_NUMPY_DTYPES = {
    torch.float16: np.dtype(np.float16),
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
}


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
        host = torch.from_numpy(np.asarray(array))
        if host.dtype == dtype and torch.device(device).type == "cpu":
            return host.clone()  # one copy, without .to()'s dispatch (per-evaluation path)
        return host.to(device=device, dtype=dtype, copy=True)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16
            tensor = tensor.float()
        host: np.ndarray = tensor.cpu().numpy()
        return host

    def reshape(self, tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return tensor.reshape(shape)

    def cast(self, tensor: torch.Tensor, dtype: Any) -> torch.Tensor:
        return tensor if tensor.dtype == dtype else tensor.to(dtype)

    def concat(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(tensors))

    def slice(self, tensor: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return tensor[start:stop]

    def split(self, flat: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
        return list(flat.split_with_sizes(list(sizes)))  # one op for all pieces

    def loss_and_flat_to_host(
        self, value: torch.Tensor, flat: torch.Tensor, dtype: Any
    ) -> tuple[float, np.ndarray]:
        if flat.device.type == "cpu":  # nothing to transfer: skip concatenating (copying) flat
            return float(value.detach()), self.to_numpy(flat)
        return super().loss_and_flat_to_host(value, flat, dtype)

    def detached(self, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
        # dict-minimize handed leaves with requires_grad=True so objectives could call
        # torch.autograd.grad(loss, params[k]) themselves; keep that contract.
        return [leaf.detach().requires_grad_(True) for leaf in leaves]

    def host_leaves(self, spec: TreeSpec, device: Any) -> HostLeaves | None:
        if torch.device(device).type != "cpu":
            return None
        dtypes = [_NUMPY_DTYPES.get(leaf.dtype) for leaf in spec.leaves]
        if any(d is None for d in dtypes):  # bfloat16: NumPy has none, the device path casts
            return None
        return _TorchHostLeaves(spec, dtypes, self.is_leaf)  # type: ignore[arg-type]

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

    def jacobian_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        def jacobian(flat: torch.Tensor, *args: Any) -> tuple[Any, ...]:
            flat = flat.detach()
            with torch.no_grad():
                value = f(flat, *args)
            jac = torch.autograd.functional.jacobian(lambda z: f(z, *args), flat, vectorize=True)
            jac = jac.reshape(value.numel(), flat.numel())
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return jacobian

    # -- solver primitives --------------------------------------------------------------------
    def zeros(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    def eye(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.eye(n, dtype=like.dtype, device=like.device)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def gram(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a is not b or a.ndim != 2 or a.shape[1] < 128:
            return a.mT @ b
        syrk = _SYRK.get(a.dtype) if a.device.type == "cpu" else None
        if syrk is not None and not (a.requires_grad or a.is_neg()):
            # BLAS syrk forms the upper triangle only: half the flops of a.mT @ a (scipy's
            # BLAS, with its own thread pool). A row-major J is a column-major Jᵀ, so the
            # NumPy view's transpose goes in without a copy.
            upper = torch.from_numpy(syrk(1.0, a.numpy().T, trans=0, lower=0)).triu()
            return (upper + upper.triu(1).mT).contiguous()
        # JᵀJ is symmetric: compute the block upper triangle only (torch has no syrk), in a
        # few wide column blocks so each product stays a large efficient matmul.
        n = a.shape[1]
        k = min(8, n // 64)
        cuts = [n * i // k for i in range(k + 1)]
        out = torch.empty((n, n), dtype=a.dtype, device=a.device)
        for lo, hi in itertools.pairwise(cuts):
            row = a[:, lo:hi].mT @ a[:, lo:]
            out[lo:hi, lo:] = row
            out[hi:, lo:hi] = row[:, hi - lo :].mT
        return out

    def diagonal(self, a: torch.Tensor) -> torch.Tensor:
        return torch.diagonal(a)

    def sum(self, a: torch.Tensor) -> torch.Tensor:
        return torch.sum(a)

    def amax(self, a: torch.Tensor) -> torch.Tensor:
        return torch.amax(a)

    def sqrt(self, a: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(a)

    def abs(self, a: torch.Tensor) -> torch.Tensor:
        return torch.abs(a)

    def log1p(self, a: torch.Tensor) -> torch.Tensor:
        return torch.log1p(a)

    def arctan(self, a: torch.Tensor) -> torch.Tensor:
        return torch.arctan(a)

    def where(self, cond: torch.Tensor, a: Any, b: Any) -> torch.Tensor:
        return torch.where(cond, a, b)

    def maximum(self, a: torch.Tensor, b: Any) -> torch.Tensor:
        return torch.clamp(a, min=b) if isinstance(b, int | float) else torch.maximum(a, b)

    def minimum(self, a: torch.Tensor, b: Any) -> torch.Tensor:
        return torch.clamp(a, max=b) if isinstance(b, int | float) else torch.minimum(a, b)

    def cholesky_solve(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.factor_solve(self.cholesky_factor(a), b)

    def cholesky_factor(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # cholesky_ex reports failure in `info` instead of raising (and without a host sync).
        factor, info = torch.linalg.cholesky_ex(a)
        return factor, info

    def factor_solve(self, factor: Any, b: torch.Tensor) -> torch.Tensor:
        lower, info = factor
        x = torch.cholesky_solve(b.unsqueeze(-1), lower).squeeze(-1)
        return torch.where(info == 0, x, torch.nan)

    def eigh(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, q = torch.linalg.eigh(a)
        return w, q

    def slice_axis(self, tensor: torch.Tensor, start: int, stop: int, axis: int) -> torch.Tensor:
        return tensor.narrow(axis, start, stop - start)

    # -- random search primitives -----------------------------------------------------------
    def random_generator(self, seed: int, like: torch.Tensor) -> Any:
        return torch.Generator(device=like.device).manual_seed(seed)

    def random_normal(
        self, generator: Any, shape: tuple[int, ...], like: torch.Tensor
    ) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)

    def random_integers(
        self, generator: Any, high: int, shape: tuple[int, ...], like: torch.Tensor
    ) -> torch.Tensor:
        return torch.randint(high, shape, generator=generator, device=like.device)

    def take(self, tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return tensor.index_select(0, indices.to(tensor.device))

    def add_at(self, tensor: torch.Tensor, index: Any, value: torch.Tensor) -> torch.Tensor:
        out = tensor.reshape(-1).clone()
        out[index] += value  # an int index selects a view: no host sync
        return out.reshape(tensor.shape)

    def stack(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(tensors))

    def vmap_fn(self, f: Callable[..., Any]) -> Callable[..., torch.Tensor]:
        def batched(stacked: torch.Tensor, *rest: Any) -> torch.Tensor:
            # rest closed over rather than passed with in_dims=None: vmap then flattens one
            # tensor instead of every leaf of rest on each call.
            out: torch.Tensor = torch.func.vmap(lambda w: f(w, *rest))(stacked)
            return out

        return batched

    def pure_fn(self, f: Callable[..., Any], compiled: bool = True) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            with torch.no_grad():
                return f(*args)

        return run

    def process_group(self, device: Any, group: Any = None) -> Any:
        from dict_minimize.distributed.torch import process_group

        return process_group(device, group)

    # -- autodiff builders of the least-squares solvers ------------------------------------
    def jacfwd_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        # Forward mode under vmap runs PyTorch's Python decompositions op by op (~9 ms for 10
        # columns of a 20-op curve at m = 10,000); reverse-over-reverse stays in the C++
        # autograd engine (~3 ms): g(u) = Jᵀu is linear in u, so batched backward passes of g
        # with the n unit vectors give Jᵀ's rows, J's columns, exactly. Functions whose
        # backward cannot be differentiated again (checked on the first call) fall back to
        # forward mode.
        state = {"double_backward": True, "checked": False}

        def forward_mode(flat: torch.Tensor, args: tuple[Any, ...]) -> tuple[Any, Any]:
            with torch.no_grad():
                value = f(flat, *args)
            jac = torch.autograd.functional.jacobian(
                lambda z: f(z, *args), flat, vectorize=True, strategy="forward-mode"
            )
            return value, jac.reshape(value.numel(), flat.numel())

        def jacobian(flat: torch.Tensor, *args: Any) -> tuple[Any, ...]:
            flat = flat.detach()
            out = None
            if state["double_backward"]:
                out = _reverse_over_reverse(f, flat, args, check=not state["checked"])
                state["checked"] = True
            if out is None:
                state["double_backward"] = False
                out = forward_mode(flat, args)
            value, jac = out
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return jacobian

    def per_sample_jacobian_fn(
        self, f: Callable[..., Any], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[Any, Any]]:
        axes = tuple(in_axes)

        def one_sample(flat: torch.Tensor, *args: Any) -> tuple[Any, Any]:
            # vmap strips the batch axis; put back a batch of one so f sees its usual layout.
            batch = [a if ax is None else a.unsqueeze(ax) for a, ax in zip(args, axes)]
            r, pullback = torch.func.vjp(lambda z: f(z, *batch), flat)
            k = r.numel()
            if k == 1:  # one residual per sample: its gradient is the row (no basis to vmap)
                return pullback(torch.ones_like(r))[0].unsqueeze(0), r
            basis = torch.eye(k, dtype=r.dtype, device=r.device).reshape(k, *r.shape)
            return torch.func.vmap(lambda e: pullback(e)[0])(basis), r

        # Rows with respect to the flat vector: J comes out whole (no per-leaf blocks to join).
        jac = torch.func.vmap(one_sample, in_dims=(None, *axes))

        batched = next((i for i, ax in enumerate(axes) if ax is not None), None)

        def rows(flat: torch.Tensor, *args: Any) -> tuple[Any, Any]:
            samples = 0 if batched is None else args[batched].shape[axes[batched]]
            big = flat.device.type == "cpu" and samples * flat.numel() >= _OUTER_PRODUCTS_FROM
            with _OuterProducts() if big else contextlib.nullcontext():
                j, r = jac(flat.detach(), *args)
            r = r.reshape(-1)
            return r, j.reshape(r.numel(), -1).to(r.dtype)

        return rows

    def jvp_fn(self, f: Callable[..., Any]) -> Callable[..., torch.Tensor]:
        def jvp(flat: torch.Tensor, v: torch.Tensor, *args: Any) -> torch.Tensor:
            return torch.func.jvp(lambda z: f(z, *args), (flat.detach(),), (v,))[1].detach()

        return jvp

    def vjp_fn(self, f: Callable[..., Any]) -> Callable[..., tuple[Any, Any]]:
        def linearize(flat: torch.Tensor, *args: Any) -> tuple[torch.Tensor, Callable[[Any], Any]]:
            value, pullback = torch.func.vjp(lambda z: f(z, *args), flat.detach())
            return value.detach(), lambda u: pullback(u)[0].detach()

        return linearize


#: Elements of one batch of tangents in the CPU's reverse-over-reverse Jacobian (512 KiB of
#: float64 per intermediate: within a core's L2 cache on current CPUs).
_TANGENT_ELEMENTS = 1 << 16

#: Jacobian elements from which :class:`_OuterProducts` pays for its Python dispatch
#: (~0.4 ms per call for a 4-layer MLP; even at 1,000 samples × 311 weights, 0.7x the time
#: at 10,000).
_OUTER_PRODUCTS_FROM = 1 << 20


class _OuterProducts(TorchDispatchMode):  # type: ignore[misc]
    """Batched outer products as broadcast products, on the CPU.

    Per sample, the gradient of a layer's weight is an outer product: ``vmap`` of the
    backward of ``x @ W.T`` over a batch of one turns it into ``bmm`` of ``(B, m, 1)`` by
    ``(B, 1, n)``, which CPU kernels run as ``B`` tiny matrix products (4-7x slower than
    the broadcast product of the same shape at B = 10,000: ~7 ms of a 6-12-10-8-1 MLP's
    ~20 ms Jacobian). With a contraction of length one each element is one product either
    way, so the values are identical. Every other operation passes through unchanged.
    """

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if func is torch.ops.aten.bmm.default and not kwargs:
            a, b = args
            if a.shape[2] == 1 and b.shape[1] == 1 and a.dtype == b.dtype:
                return a * b
        return func(*args, **(kwargs or {}))


def _reverse_over_reverse(
    f: Callable[..., Any], flat: torch.Tensor, args: tuple[Any, ...], check: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(f(flat, *args), J)`` from a backward pass of the backward pass (J's columns as
    ``Jᵀu``'s derivative along each unit vector); None when ``f``'s backward is not twice
    differentiable.

    A backward that is not differentiable need not raise (a custom Function's backward under
    ``once_differentiable``, one that detaches): it silently drops terms. With ``check``, J is
    compared with the plain gradient ``Jᵀr``, which any backward gets right.
    """
    x = flat.requires_grad_(True)
    with torch.enable_grad():  # the user's errors (forward, backward) propagate from here
        value = f(x, *args)
        if not value.requires_grad:  # residuals independent of the parameters
            return value.detach(), value.new_zeros((value.numel(), x.numel()))
        u = value.detach().reshape(-1).requires_grad_(True)
        try:
            (g,) = torch.autograd.grad(
                value.reshape(-1), x, u, create_graph=True, allow_unused=True
            )
        except NotImplementedError:  # a custom Function with a jvp but no backward
            return None
        if g is None or not g.requires_grad:  # some residuals do not reach x
            return None
        n = x.numel()
        eye = torch.eye(n, dtype=g.dtype, device=g.device)
        # On the CPU the batched pass is memory-bound: a batch of unit vectors whose
        # intermediates stay in cache is faster than one batch of all n (per Jacobian in a fit:
        # 0.71x at 10 × 10,000, 0.49x for 100 parameters through a 50 × 10,000 intermediate).
        step = n if x.device.type != "cpu" else max(1, _TANGENT_ELEMENTS // max(u.numel(), 1))
        blocks = []
        try:
            for start in range(0, n, step):
                (block,) = torch.autograd.grad(
                    g,
                    u,
                    eye[start : start + step],
                    is_grads_batched=True,
                    allow_unused=True,
                    retain_graph=start + step < n,
                )
                if block is None:
                    return None
                blocks.append(block)
        except (RuntimeError, NotImplementedError):  # no double backward (or batching) rule
            return None
    jac_t = (torch.cat(blocks) if len(blocks) > 1 else blocks[0]).reshape(n, -1)
    if check:  # Jᵀr two ways: equal up to rounding, or terms went missing in the second pass
        r = u.detach()
        scale = jac_t.abs() @ r.abs()
        tol = (scale + torch.finfo(scale.dtype).tiny) * torch.finfo(scale.dtype).eps ** 0.5
        if not bool(((jac_t @ r - g.detach()).abs() <= tol).all()):
            return None
    return value.detach(), jac_t.mT


class _TorchHostLeaves(HostLeaves):
    """CPU leaves share one copy of scipy's point (``torch.from_numpy``: no copy, no dispatch)
    and require grad, as :meth:`TorchBackend.detached` gives them on the device path."""

    def leaves(self, x: np.ndarray, owned: bool = False) -> tuple[np.ndarray, list[torch.Tensor]]:
        point = x if owned and is_plain_float64(x) else np.array(x, dtype=np.float64)
        from_numpy = torch.from_numpy
        if self._views:  # float64 leaves: views of the point, written out (every evaluation)
            leaves = [
                from_numpy(point[start:stop] if shape is None else point[start:stop].reshape(shape))
                for start, stop, shape, _ in self._plan
            ]
        else:
            leaves = [from_numpy(a) for a in self.arrays(point)]
        for leaf in leaves:  # the attribute: cheaper than requires_grad_(True) on a new tensor
            leaf.requires_grad = True
        return point, leaves

    def host_arrays(self, values: Sequence[Any]) -> list[np.ndarray] | None:
        try:  # .numpy() is a view (~0.3 us cheaper than with force=True, every evaluation)
            arrays = [v.numpy() for v in values if type(v) is torch.Tensor]
        except (TypeError, RuntimeError):  # requires grad, conjugate, or a dtype NumPy lacks
            try:  # force: a gradient that requires grad is detached (a view on the CPU)
                arrays = [v.numpy(force=True) for v in values if type(v) is torch.Tensor]
            except (TypeError, RuntimeError):  # bfloat16 and other dtypes NumPy lacks
                return None
        return arrays if len(arrays) == len(values) else None

    def loss(self, value: Any) -> float:
        return float(value.item())

    def scalar(self, value: Any) -> float | None:
        if type(value) is torch.Tensor and value.dim() == 0 and value.is_floating_point():
            return float(value.item())
        return None
