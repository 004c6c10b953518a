"""The user's residual function as the solvers see it: flat device vectors in, the cost and
the Gauss-Newton normal equations out.

Two ways to get the Jacobian, both vectorized by the backend:

* *general*: ``r(flat)`` as a whole, by forward mode when residuals outnumber parameters and
  by reverse mode otherwise (:meth:`Backend.jacfwd_fn`, :meth:`Backend.jacobian_fn`);
* *per sample*: the user declares which arguments hold independent samples (``in_axes``);
  Jacobian rows come from vmapped reverse mode over row chunks of those arguments, and only
  ``JᵀWJ``, ``JᵀWr`` and ``diag(JᵀWJ)`` are kept, so the full J never exists.

Above a parameter count the dense ``JᵀWJ`` is not formed at all (matrix-free): products with
it come from one Jacobian-vector and one vector-Jacobian product.

Compiled once per call signature. Every function the backend builds (the residuals, the
Jacobians, the products) takes the tensor arguments as inputs instead of closing over them,
and is kept in :data:`_CACHE` per residual function and call signature (see
:func:`_compiled_for`): a later ``least_squares`` call with the same function, layout and
argument shapes runs the programs JAX and TensorFlow compiled for the first one. Row chunks
all have one shape (the last one overlaps the one before it), so one chunk program serves
every chunk.
"""

from __future__ import annotations

import functools
import math
import types
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dict_minimize._errors import InvalidOptionError, ObjectiveError
from dict_minimize._tree import TreeSpec
from dict_minimize._weak_cache import PerFunctionCache
from dict_minimize.backends._protocol import FLOATING, Backend
from dict_minimize.solvers.losses import Loss

#: Default bound on the elements of one Jacobian chunk (256 MiB in float64).
CHUNK_ELEMENTS = 1 << 25

#: Call signatures whose compiled functions are kept per residual function (least recently
#: used dropped first).
SIGNATURES_PER_FUNCTION = 8


@dataclass
class Linearization:
    """The Gauss-Newton model at one point; every field stays on the device.

    Attributes
    ----------
    r : tensor
        Residuals (m,).
    cost : scalar tensor
        The (robust) cost.
    g : tensor
        Gradient of the cost, ``Jᵀ (ρ' r)`` (n,).
    diag : tensor or None
        ``diag(JᵀWJ)`` (n,), None when it cannot be had without J (matrix-free, general mode).
    A : tensor or None
        ``JᵀWJ`` (n, n), None in matrix-free mode.
    matvec : callable or None
        ``v -> JᵀWJ v`` in matrix-free mode.
    fs_norm : scalar tensor
        Norm of the IRLS-scaled residual (``‖r‖`` for the linear loss), for MINPACK's gtol.
    jac : tensor or None
        The whole J (m, n) where it exists anyway: in general mode, and in per-sample mode
        when it is one small chunk.
    jvp, vjp : callable or None
        ``v -> J v`` and ``u -> Jᵀ u``, made on demand by :meth:`ResidualProblem.products`.
    source : tuple or None
        For a host copy of a framework's model (:mod:`._host_algebra`): the framework's flat
        point and its own linearization.
    """

    r: Any
    cost: Any
    g: Any
    diag: Any
    A: Any
    matvec: Callable[[Any], Any] | None
    fs_norm: Any
    jac: Any = None
    jvp: Callable[[Any], Any] | None = None
    vjp: Callable[[Any], Any] | None = None
    source: tuple[Any, Linearization] | None = None


class _Compiled:
    """``residual_fn`` as a function of the flat vector and the tensor args, and what the
    backend builds from it (compiled where the framework compiles), for one call signature.

    The residual function is held weakly: a cached entry keeps neither the function nor what
    its closure holds alive (a run holds the function itself while it lasts). Arguments that
    are not tensors (numbers, strings, None) are part of the signature and closed over.
    """

    def __init__(
        self,
        backend: Backend[Any],
        spec: TreeSpec,
        residual_fn: Callable[..., Any],
        args: tuple[Any, ...],
        dtype: Any,
        weak: bool,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.dtype = dtype
        self.tensor_at = tuple(i for i, arg in enumerate(args) if backend.is_leaf(arg))
        self.statics: tuple[Any, ...] = tuple(None if backend.is_leaf(arg) else arg for arg in args)
        self._fn: Callable[[], Callable[..., Any] | None] = (
            weakref.ref(residual_fn) if weak else (lambda: residual_fn)
        )
        self._built: dict[Hashable, Any] = {}
        self.keepalive: tuple[Any, ...] = ()

    # -- the function every builder differentiates ---------------------------------------
    def _all_args(self, tensors: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(tensors) == len(self.statics):
            return tensors
        merged = list(self.statics)
        for i, tensor in zip(self.tensor_at, tensors):
            merged[i] = tensor
        return tuple(merged)

    def as_flat(self, out: Any) -> Any:
        """Check what residual_fn returned and ravel it in the flat dtype."""
        backend = self.backend
        if not backend.is_leaf(out):
            raise ObjectiveError(
                f"residual_fn must return a {backend.name} tensor of residuals, got "
                f"{type(out).__name__}"
            )
        shape, dtype, _ = backend.leaf_meta(out)
        if backend.dtype_name(dtype) not in FLOATING:
            raise ObjectiveError(
                f"residual_fn returned dtype {backend.dtype_name(dtype)}; residuals must be "
                f"floating point (compute them from params)"
            )
        return backend.cast(backend.reshape(out, (math.prod(shape),)), self.dtype)

    def __call__(self, flat: Any, *tensors: Any) -> Any:
        """The raveled residuals at a flat point (differentiable by the backend's builders)."""
        fn = self._fn()
        if fn is None:  # unreachable: only a run, which holds the function, calls this
            raise RuntimeError("the residual function of a cached program was collected")
        params = self.spec.unflatten(self.backend.unravel(flat, self.spec))
        return self.as_flat(fn(params, *self._all_args(tensors)))

    # -- what is built from it, once per signature ---------------------------------------
    def _get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def residuals(self) -> Callable[..., Any]:
        """``(flat, *tensors) -> r``, compiled, never recording gradients."""
        return self._get("residuals", lambda: self.backend.pure_fn(self))  # type: ignore[no-any-return]

    def evaluation(self, loss: Loss) -> Callable[..., tuple[Any, Any]]:
        """``(flat, *tensors) -> (r, cost)`` in one compiled call."""

        def evaluate(flat: Any, *tensors: Any) -> tuple[Any, Any]:
            r = self(flat, *tensors)
            return r, loss.cost(r)

        key = ("evaluation", loss.name, loss.f_scale)
        return self._get(key, lambda: self.backend.pure_fn(evaluate))  # type: ignore[no-any-return]

    def linearization(
        self, forward: bool, loss: Loss, matrix_free: bool
    ) -> Callable[..., tuple[Any, ...]]:
        """``(flat, *tensors) -> (r, J, *chunk_terms(r, J))`` of the whole residual (general
        mode) in one compiled call."""
        b = self.backend
        builder = b.jacfwd_fn if forward else b.jacobian_fn
        post = functools.partial(chunk_terms, loss, matrix_free)
        key = ("linearization", forward, loss.name, loss.f_scale, matrix_free)
        return self._get(key, lambda: builder(self, post))  # type: ignore[no-any-return]

    def jacobian(self, forward: bool) -> Callable[..., tuple[Any, Any]]:
        """``(flat, *tensors) -> (r, J)`` of the whole residual (general mode)."""
        b = self.backend
        builder = b.jacfwd_fn if forward else b.jacobian_fn
        return self._get(("jacobian", forward), lambda: builder(self))  # type: ignore[no-any-return]

    def rows(self, in_axes: tuple[int | None, ...], chunk: int) -> Callable[..., tuple[Any, Any]]:
        """``(flat, *chunk tensors) -> (r, J)`` for chunks of ``chunk`` samples, by per-sample
        reverse mode."""
        build = self.backend.per_sample_jacobian_fn
        return self._get(("rows", in_axes, chunk), lambda: build(self, in_axes))  # type: ignore[no-any-return]

    def products(self) -> tuple[Any, Any]:
        """The jvp and vjp builders' products of the whole residual."""
        b = self.backend
        return self._get("products", lambda: (b.jvp_fn(self), b.vjp_fn(self)))  # type: ignore[no-any-return]


# residual_fn -> {call signature: its compiled functions}.
_CACHE: PerFunctionCache[_Compiled] = PerFunctionCache(SIGNATURES_PER_FUNCTION)


def _referenced(fn: types.FunctionType) -> tuple[Any, ...]:
    """What ``fn`` reads from its closure and its module's globals (nested code included).

    A tracing framework bakes these into its programs, so they belong to the signature: a
    closure or global rebound between calls compiles anew instead of running stale code.
    """
    found: list[Any] = []
    for cell in fn.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell (a name assigned after the function was made)
            found.append(None)
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        found.extend(fn.__globals__[n] for n in code.co_names if n in fn.__globals__)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return tuple(obj for obj in found if obj is not fn)


def _signature(backend: Backend[Any], arg: Any) -> Hashable | None:
    """What a compiled program depends on in one argument; None when it cannot be keyed."""
    if backend.is_leaf(arg):
        shape, dtype, device = backend.leaf_meta(arg)
        return ("tensor", tuple(shape), backend.dtype_name(dtype), device)
    if arg is None or isinstance(arg, bool | int | float | complex | str | bytes):
        return (type(arg), arg)
    return None  # a mutable object (a list, an array of another library): never cached


def _compiled_for(
    backend: Backend[Any],
    spec: TreeSpec,
    residual_fn: Callable[..., Any],
    args: tuple[Any, ...],
    dtype: Any,
    in_axes: tuple[int | None, ...] | None,
) -> _Compiled:
    """The compiled functions of this call signature: cached ones, or new ones (cached).

    Cached per plain Python function (a ``def`` or ``lambda``), keyed by the backend, x0's
    layout (:class:`TreeSpec`: nesting, shapes, dtypes, device), the shapes, dtypes and
    devices of the tensor args and the values of the others, ``in_axes``, and the identity
    of what the function reads from its closure and globals. Other callables (bound methods,
    modules, ``functools.partial``) can change behind an unchanged identity: each call builds
    anew, as does a call with an argument that cannot be keyed. As with ``jax.jit``, state
    reached *through* those objects (an attribute, a dict's entry) is fixed in the traced
    program: data that changes between calls belongs in ``args``.
    """
    signature = tuple(_signature(backend, arg) for arg in args)
    if not isinstance(residual_fn, types.FunctionType) or any(s is None for s in signature):
        return _Compiled(backend, spec, residual_fn, args, dtype, weak=False)
    referenced = _referenced(residual_fn)
    try:
        key = (
            type(backend),
            spec,
            str(dtype),
            signature,
            in_axes,
            tuple(id(obj) for obj in referenced),
        )
        hash(key)
    except TypeError:  # an unhashable device or dtype: build anew
        return _Compiled(backend, spec, residual_fn, args, dtype, weak=False)

    def build() -> _Compiled:
        compiled = _Compiled(backend, spec, residual_fn, args, dtype, weak=True)
        compiled.keepalive = referenced  # the ids in the key stay unique while it lives
        return compiled

    return _CACHE.get(residual_fn, key, build)


class ResidualProblem:
    """Evaluate and linearize ``residual_fn`` at flat points on the device.

    Parameters
    ----------
    backend : Backend
        The framework adapter.
    spec : TreeSpec
        Layout of x0.
    residual_fn : callable
        ``residual_fn(params, *args)`` returning a tensor of residuals (any shape).
    args : tuple
        Extra arguments.
    device : object
        Where x0 lives.
    loss : Loss
        The (robust) loss.
    in_axes : sequence of int or None, optional
        For each of ``args``, the axis along which it holds samples (None: shared). None
        selects the general mode.
    chunk_size : int, optional
        Samples per Jacobian chunk in per-sample mode (default: chunks of at most
        :data:`CHUNK_ELEMENTS` Jacobian elements).
    matrix_free : bool
        Never form ``JᵀWJ``; use Jacobian-vector products.
    """

    def __init__(
        self,
        backend: Backend[Any],
        spec: TreeSpec,
        residual_fn: Callable[..., Any],
        args: tuple[Any, ...],
        device: Any,
        loss: Loss,
        in_axes: Sequence[int | None] | None,
        chunk_size: int | None,
        matrix_free: bool,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.residual_fn = residual_fn
        self.args = args
        self.device = device
        self.loss = loss
        self.in_axes = None if in_axes is None else tuple(in_axes)
        self.chunk_size = chunk_size
        self.matrix_free = matrix_free
        self.dtype = backend.flat_dtype(device)
        self.n = spec.size
        self.m = 0
        self.samples = 0
        self.chunk_rows = 0
        self.nfev = 0
        self.njev = 0
        self._mask: tuple[int, Any] | None = None
        if self.in_axes is not None:
            self.samples = self._check_batched()
        self.fns = _compiled_for(backend, spec, residual_fn, args, self.dtype, self.in_axes)
        # The compiled functions take the tensor args only (the others are in self.fns).
        self.tensors = tuple(args[i] for i in self.fns.tensor_at)
        self.tensor_axes = (
            None if self.in_axes is None else tuple(self.in_axes[i] for i in self.fns.tensor_at)
        )

    # -- the residual function ------------------------------------------------------------
    def _chunk_tensors(self, start: int, stop: int) -> tuple[Any, ...]:
        if start == 0 and stop == self.samples:  # one chunk: the args themselves, no slicing
            return self.tensors
        return tuple(
            arg if axis is None else self.backend.slice_axis(arg, start, stop, axis)
            for arg, axis in zip(self.tensors, self.tensor_axes or ())
        )

    def _chunks(self) -> list[tuple[int, int, int]]:
        """``(start, stop, drop)`` per chunk, each ``chunk_rows`` samples long: a short last
        chunk is the window ending at the last sample, and its first ``drop`` samples (the
        previous chunk's) are dropped from what it returns. One shape for every chunk means
        one compiled program, and every row evaluated is a real sample."""
        samples = self.samples
        rows = min(self.chunk_rows, samples) or samples
        chunks = []
        for start in range(0, samples, rows):
            stop = start + rows
            if stop <= samples:
                chunks.append((start, stop, 0))
            else:
                chunks.append((samples - rows, samples, stop - samples))
        return chunks

    def _chunked(self) -> bool:
        return self.in_axes is not None and 0 < self.chunk_rows < self.samples

    def _drop(self, out: Any, drop: int, length: int) -> Any:
        """``out`` (the residuals or Jacobian rows of ``length`` samples) without the rows of
        its first ``drop`` samples."""
        if not drop:
            return out
        b = self.backend
        shape = b.leaf_meta(out)[0]
        start = drop * (shape[0] // length)
        if len(shape) == 1:
            return b.slice(out, start, shape[0])
        return b.slice_axis(out, start, shape[0], 0)

    # -- set-up at x0 -------------------------------------------------------------------------
    def _check_batched(self) -> int:
        in_axes = self.in_axes or ()
        if len(in_axes) != len(self.args):
            raise InvalidOptionError(
                f"options['in_axes'] has {len(in_axes)} entries but there are "
                f"{len(self.args)} args; give one axis (or None) per argument"
            )
        sizes: list[tuple[int, int]] = []
        for i, (arg, axis) in enumerate(zip(self.args, in_axes)):
            if axis is None:
                continue
            if not self.backend.is_leaf(arg):
                raise InvalidOptionError(
                    f"args[{i}] is declared batched but is a {type(arg).__name__}, not a "
                    f"{self.backend.name} tensor"
                )
            shape = self.backend.leaf_meta(arg)[0]
            if not (isinstance(axis, int) and 0 <= axis < len(shape)):
                raise InvalidOptionError(
                    f"args[{i}] has shape {tuple(shape)}; batch axis {axis!r} is not one of its "
                    f"axes"
                )
            sizes.append((i, int(shape[axis])))
        if not sizes:
            raise InvalidOptionError("options['in_axes'] declares no batched argument")
        counts = {size for _, size in sizes}
        if len(counts) > 1:
            listed = ", ".join(f"args[{i}]: {size}" for i, size in sizes)
            raise InvalidOptionError(f"batched args hold different numbers of samples ({listed})")
        return sizes[0][1]

    def start(self, flat0: Any) -> tuple[Any, Any]:
        """Evaluate at x0, check the residuals, and size the row chunks."""
        backend = self.backend
        if self.in_axes is not None and self.chunk_size is not None:
            self.chunk_rows = self.chunk_size  # known before the first evaluation
        r, cost = self._evaluate_raw(flat0)
        self.m = int(backend.leaf_meta(r)[0][0])
        if self.m == 0:
            raise ObjectiveError("residual_fn returned no residuals at x0")
        host = backend.to_numpy(r)
        bad = np.flatnonzero(~np.isfinite(host))
        if bad.size:
            raise ObjectiveError(
                f"residual_fn is not finite at x0: {bad.size} of {self.m} residual(s), first at "
                f"flat index {int(bad[0])} = {host[bad[0]]}; start from a point where every "
                f"residual is finite"
            )
        if self.in_axes is not None:
            if self.m % self.samples:
                raise ObjectiveError(
                    f"residual_fn returned {self.m} residuals for {self.samples} samples; with "
                    f"batched args it must return the residuals of each sample along axis 0"
                )
            if self.chunk_size is None:
                k = self.m // self.samples
                self.chunk_rows = max(1, CHUNK_ELEMENTS // max(1, k * self.n))
        return r, cost

    # -- evaluations ------------------------------------------------------------------------
    def _evaluate_raw(self, flat: Any) -> tuple[Any, Any]:
        """Residuals and cost, in one compiled call when the residuals are not chunked."""
        if not self._chunked():
            return self.fns.evaluation(self.loss)(flat, *self.tensors)  # type: ignore[no-any-return]
        r = self._evaluate_chunks(flat)
        return r, self.loss.cost(r)

    def _evaluate_chunks(self, flat: Any) -> Any:
        b, evaluate = self.backend, self.fns.residuals()
        parts = []
        for start, stop, drop in self._chunks():
            r = evaluate(flat, *self._chunk_tensors(start, stop))
            if b.leaf_meta(r)[0][0] % (stop - start):
                raise ObjectiveError(
                    f"residual_fn returned {b.leaf_meta(r)[0][0]} residuals for the "
                    f"{stop - start} samples {start}..{stop - 1}; with batched args it must "
                    f"return the residuals of each sample along axis 0"
                )
            parts.append(self._drop(r, drop, stop - start))
        return b.concat(parts)

    def evaluate(self, flat: Any) -> tuple[Any, Any]:
        """Residuals and cost at a trial point (one function evaluation)."""
        self.nfev += 1
        return self._evaluate_raw(flat)

    def _jacobian_parts(self, flat: Any) -> Iterator[tuple[Any, Any, int]]:
        """``(r, J, drop)`` per row chunk (one part in general mode); the first ``drop``
        samples of a chunk belong to the chunk before it."""
        if self.in_axes is None:
            r, jac = self.fns.jacobian(self.m >= self.n)(flat, *self.tensors)
            yield r, jac, 0
            return
        chunks = self._chunks()
        rows = self.fns.rows(self.tensor_axes or (), chunks[0][1] - chunks[0][0])
        for start, stop, drop in chunks:
            r, jac = rows(flat, *self._chunk_tensors(start, stop))
            yield r, jac, drop

    def linearize(self, flat: Any) -> Linearization:
        """The Gauss-Newton model at ``flat`` (one Jacobian evaluation)."""
        self.njev += 1
        if self.matrix_free and self.in_axes is None:
            return self._matrix_free(flat, Linearization(None, None, None, None, None, None, None))
        if self.in_axes is None:  # one compiled call: J and its terms in the model
            r, jac, cost, g, a, fs_sq = self.fns.linearization(
                self.m >= self.n, self.loss, self.matrix_free
            )(flat, *self.tensors)
            return self._assemble([r], cost, g, a, fs_sq, jac)
        parts = list(self._jacobian_parts(flat)) if self._keeps_jacobian() else None
        total = self._accumulate(parts if parts is not None else self._jacobian_parts(flat))
        if self.matrix_free:
            return self._matrix_free(flat, total)
        if parts is not None:
            total.jac = parts[0][1]
        return total

    def _keeps_jacobian(self) -> bool:
        """Whether a per-sample model keeps J (for ``J v`` and ``Jᵀu`` in geodesic steps):
        when it is one chunk and two of them fit in the chunk budget (the next linearization
        forms one before this one is dropped). The general mode always keeps it."""
        return self.chunk_rows >= self.samples and 2 * self.m * self.n <= CHUNK_ELEMENTS

    def products(self, flat: Any, lin: Linearization) -> tuple[Any, Any]:
        """``(v -> J v, u -> Jᵀ u)`` at the point of ``lin``: from J where it is held, else
        from one linearization of the whole residual by the framework's autodiff."""
        b = self.backend
        if lin.jvp is None or lin.vjp is None:
            if lin.jac is not None:
                lin.jvp, lin.vjp = jacobian_products(b, lin.jac)
            elif not b.has_autodiff:
                raise InvalidOptionError(
                    f"this option needs Jacobian-vector products, which {b.name} (no "
                    f"autodiff) has only without batched args"
                )
            else:
                jvp, vjp_at = self.fns.products()
                tensors = self.tensors
                _, lin.vjp = vjp_at(flat, *tensors)
                lin.jvp = lambda v: jvp(flat, v, *tensors)
        return lin.jvp, lin.vjp

    def host_jacobian(self, flat: Any) -> np.ndarray:
        """The whole Jacobian (m, n) as a float64 host array (for scipy's solvers)."""
        b = self.backend
        self.njev += 1
        length = min(self.chunk_rows, self.samples) if self.in_axes is not None else 1
        blocks = [
            b.to_numpy(self._drop(jac, drop, length)) for _, jac, drop in self._jacobian_parts(flat)
        ]
        return np.asarray(np.concatenate(blocks, axis=0), dtype=np.float64)

    def _accumulate(self, parts: Any) -> Linearization:
        """Sum ``JᵀWJ``, ``Jᵀ(ρ'r)``, the cost and ``diag(JᵀWJ)`` over row chunks."""
        b = self.backend
        terms = _terms_fn(b, self.loss.name, self.loss.f_scale, self.matrix_free)
        rs: list[Any] = []
        A = g = diag = cost = fs_sq = None
        for r, jac, drop in parts:
            if drop:  # rows of the chunk before: out of r, and zero in every sum below
                rs.append(self._drop(r, drop, self.chunk_rows))
                mask = self._overlap_mask(drop)
                r, jac = r * mask, jac * b.reshape(mask, (-1, 1))
            else:
                rs.append(r)
            c_part, g_part, big_part, fs_part = terms(r, jac)
            a_part, d_part = (None, big_part) if self.matrix_free else (big_part, None)
            A = a_part if A is None else A + a_part
            diag = d_part if diag is None else diag + d_part
            g = g_part if g is None else g + g_part
            cost = c_part if cost is None else cost + c_part
            fs_sq = fs_part if fs_sq is None else fs_sq + fs_part
        if not rs:
            return Linearization(None, None, None, None, None, None, None)
        big = diag if self.matrix_free else A
        return self._assemble(rs, cost, g, big, fs_sq)

    def _assemble(
        self, rs: list[Any], cost: Any, g: Any, big: Any, fs_sq: Any, jac: Any = None
    ) -> Linearization:
        """The model from the summed terms (``big``: ``JᵀWJ``, or its diagonal matrix-free)."""
        b = self.backend
        r_all = rs[0] if len(rs) == 1 else b.concat(rs)
        A, diag = (None, big) if self.matrix_free else (big, b.diagonal(big))
        return Linearization(r_all, cost, g, diag, A, None, b.sqrt(fs_sq), jac)

    def _overlap_mask(self, drop: int) -> Any:
        """0 on the residuals of the first ``drop`` samples of a chunk, 1 elsewhere (made
        once per run: only the last chunk overlaps)."""
        if self._mask is None or self._mask[0] != drop:
            k = self.m // self.samples
            mask = np.ones(self.chunk_rows * k)
            mask[: drop * k] = 0.0
            self._mask = (drop, self.backend.from_numpy(mask, self.device, self.dtype))
        return self._mask[1]

    def _matrix_free(self, flat: Any, lin: Linearization) -> Linearization:
        """Attach ``v -> JᵀWJ v`` built from one jvp and one vjp of the whole residual."""
        b = self.backend
        jvp, vjp_at = self.fns.products()
        tensors = self.tensors
        r, vjp = vjp_at(flat, *tensors)
        w = self.loss.weights(r)
        if lin.g is None:  # general mode: the gradient from the vjp
            gr = r if w.grad is None else w.grad * r
            fs = gr if w.rows is None else gr / w.rows
            lin = Linearization(r, w.cost, vjp(gr), None, None, None, b.norm(fs))
        row_w = None if w.rows is None else w.rows * w.rows

        def matvec(v: Any) -> Any:
            jv = jvp(flat, v, *tensors)
            return vjp(jv if row_w is None else row_w * jv)

        lin.matvec = matvec
        lin.jvp, lin.vjp = (lambda v: jvp(flat, v, *tensors)), vjp
        return lin


def jacobian_products(b: Backend[Any], jac: Any) -> tuple[Any, Any]:
    """``(v -> J v, u -> Jᵀ u)`` from a held Jacobian."""
    return (lambda v: b.matmul(jac, v)), (lambda u: b.gram(jac, u))


@functools.lru_cache(maxsize=64)
def _terms_fn(
    backend: Backend[Any], loss: str, f_scale: float, matrix_free: bool
) -> Callable[..., tuple[Any, Any, Any, Any]]:
    """:func:`chunk_terms` for one loss, compiled (once per chunk shape) and shared by every
    residual function."""
    bound = functools.partial(chunk_terms, Loss(backend, loss, f_scale), matrix_free)
    return backend.pure_fn(bound)  # type: ignore[no-any-return]


def chunk_terms(loss: Loss, matrix_free: bool, r: Any, jac: Any) -> tuple[Any, Any, Any, Any]:
    """One row chunk's share of the model: ``(cost, Jᵀ(ρ'r), B, ‖IRLS residual‖²)`` where
    ``B`` is ``JᵀWJ``, or ``diag(JᵀWJ)`` when ``matrix_free``."""
    b = loss.backend
    w = loss.weights(r)
    js, gr = jac, r
    if w.rows is not None:
        js = jac * b.reshape(w.rows, (-1, 1))
        gr = w.grad * r
        fs = gr / w.rows
        fs_part = b.sum(fs * fs)
    else:
        fs_part = 2.0 * w.cost
    if matrix_free:
        big = b.gram(js * js, b.zeros(b.leaf_meta(gr)[0], gr) + 1.0)
    else:
        big = b.gram(js, js)
    return w.cost, b.gram(jac, gr), big, fs_part
