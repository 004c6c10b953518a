"""What a framework must provide: the backend protocol.

The core (trees, bounds, the scipy bridge, the solvers) is written once against
:class:`Backend`. A framework implements the abstract primitives below: transfers, a few
array operations, and autodiff builders. Everything built from them (packing a tree into one
flat vector, the flat objective's derivatives) is implemented here once. The in-framework
least-squares solvers need a second, separate set (:data:`SOLVER_PRIMITIVES` and
:data:`SOLVER_AUTODIFF`): dense linear algebra, reductions and Jacobian builders.

Conventions
-----------
* A *flat* tensor is 1-D, of dtype :meth:`Backend.flat_dtype` (float64 unless the framework or
  device lacks it), on the parameters' device. The core differentiates functions of the flat
  tensor, so gradients, Hessian-vector products and Jacobians come out flat with no per-leaf
  bookkeeping.
* Autodiff builders are called once per solver run and return callables that the solver calls
  many times; a tracing framework compiles there (and only there). The least-squares solvers
  keep what they build across runs, per residual function and call signature (see
  dict_minimize/solvers/_problem.py), so those builders take the data as inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from dict_minimize._errors import InvalidDtypeError, InvalidParamsError
from dict_minimize._tree import Path, TreeSpec, format_path
from dict_minimize.backends._host import HostLeaves

T = TypeVar("T")

#: dtype names a parameter may have; anything else is refused with a clear error.
FLOATING = ("float16", "bfloat16", "float32", "float64")

FlatFn = Callable[[Any], Any]

#: What the least-squares solvers need beyond the core protocol; every backend must override
#: each (tests/test_least_squares.py checks this for every backend in tests/cases.py).
SOLVER_PRIMITIVES = (
    "zeros",
    "eye",
    "matmul",
    "gram",
    "diagonal",
    "sum",
    "amax",
    "sqrt",
    "abs",
    "log1p",
    "arctan",
    "where",
    "maximum",
    "minimum",
    "cholesky_solve",
    "eigh",
    "slice_axis",
)
#: Autodiff builders the solvers use on a backend with ``has_autodiff`` (``jacfwd_fn`` has a
#: reverse-mode default; ``jacobian_fn`` is part of the core protocol).
SOLVER_AUTODIFF = ("per_sample_jacobian_fn", "jvp_fn", "vjp_fn")
#: What the random search (``method="rso"``, dict_minimize/solvers/rso.py) needs beyond the core
#: protocol; every backend must override each (tests/test_rso.py checks this). ``vmap_fn`` and
#: ``pure_fn`` have defaults (no vectorization; no compilation).
RSO_PRIMITIVES = (
    "random_generator",
    "random_normal",
    "random_integers",
    "take",
    "add_at",
    "stack",
)


def _missing(backend: Any, name: str) -> NotImplementedError:
    return NotImplementedError(
        f"the {backend.name} backend does not implement {name}(), which the in-framework "
        f"least-squares solvers need; see SOLVER_PRIMITIVES in dict_minimize/backends/_protocol.py"
    )


class Backend(ABC, Generic[T]):
    """Framework adapter; subclasses implement the abstract methods.

    Attributes
    ----------
    name : str
        Short name used in messages (``"torch"``).
    has_autodiff : bool
        False for NumPy: the core then uses scipy's finite differences where a derivative is
        missing, and refuses what cannot be approximated.
    compiles : bool
        True where the autodiff builders trace and compile (JAX, TensorFlow): the core then
        reuses what they build across calls with the same objective and layout
        (``dict_minimize/_compiled.py``).
    """

    name: str = "abstract"
    has_autodiff: bool = True
    compiles: bool = False
    #: Layouts with fewer scalars keep the device path even where :meth:`host_leaves` offers a
    #: host one (JAX: a dispatch per leaf outweighs the copies saved on small layouts).
    host_min_size: int = 0
    #: Whether ``least_squares`` runs the step algebra of small dense CPU problems in NumPy by
    #: default (``options["host_algebra"]="auto"``): where one eager operation costs tens of
    #: microseconds of dispatch (TensorFlow), against a few in NumPy, PyTorch and JAX.
    small_algebra_on_host: bool = False

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

    def host_leaves(self, spec: TreeSpec, device: Any) -> HostLeaves | None:
        """The host fast path of a ``jac=True`` objective for x0's layout, or None.

        Where tensors on ``device`` live in host memory, a backend returns a
        :class:`~dict_minimize.backends._host.HostLeaves`: leaves are then made from slices of
        scipy's point and gradients joined on the host, skipping the flat device vector, its
        split and its concatenation (several framework operations per evaluation). The
        default None keeps the device path: :meth:`from_numpy`, :meth:`unravel`,
        :meth:`detached`, :meth:`ravel` and :meth:`loss_and_flat_to_host`.
        """
        return None

    def bind_objective(
        self, fun: Callable[..., Any], params: Any, args: tuple[Any, ...]
    ) -> Callable[..., Any] | None:
        """A cheaper callable that computes ``fun(params, *args)`` for every later evaluation
        (params of the same structure, shapes and dtypes; the same ``args``), or None.

        Called once, before the first evaluation of a user objective that computes its own
        gradient. TensorFlow returns the concrete function of a ``tf.function`` objective,
        which skips matching the arguments to a trace on every call.
        """
        return None

    def is_compiled(self, fun: Callable[..., Any]) -> bool:
        """Whether ``fun`` is a compiled function of the framework that can be called inside
        another compiled program with the same result (``jax.jit``'s wrappers). ``minimize``
        then compiles a ``jac=True`` objective together with the unflattening of the point
        and the flattening of its gradient: one program per evaluation."""
        return False

    def compiled_input(self, x: np.ndarray, device: Any, dtype: Any) -> Any:
        """The flat host point ``x`` as the argument of a compiled program on ``device``: a
        device copy (:meth:`from_numpy`) unless the program takes host arrays itself."""
        return self.from_numpy(x, device, dtype)

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
    def jacobian_fn(
        self, f: Callable[..., T], post: Callable[[T, T], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        """``(flat, *args) -> (f(flat, *args), ∂f/∂flat)`` for a vector-valued ``f``: (m,)
        and (m, n). ``args`` are tensors, passed through as inputs of the compiled program
        (not baked into it), so that it serves any values of that shape. With ``post``,
        ``post(value, jac)`` is computed in the same program and its outputs follow."""

    # -- solver primitives ----------------------------------------------------------------
    # The in-framework least-squares solvers (dict_minimize/solvers) run on these alone, so
    # that one Levenberg-Marquardt serves every framework. Each is a one-liner in a framework;
    # the defaults raise, and tests/test_least_squares.py checks that every backend overrides
    # all of SOLVER_PRIMITIVES. Arguments are flat-dtype tensors on one device; "scalar" means
    # a 0-d tensor that stays on the device until :meth:`host` brings a few of them back.

    def zeros(self, shape: tuple[int, ...], like: T) -> T:
        """Zeros of ``shape`` with the dtype and device of ``like``."""
        raise _missing(self, "zeros")

    def eye(self, n: int, like: T) -> T:
        """The (n, n) identity with the dtype and device of ``like``."""
        raise _missing(self, "eye")

    def matmul(self, a: T, b: T) -> T:
        """``a @ b`` for a matrix ``a`` and a matrix or vector ``b``."""
        raise _missing(self, "matmul")

    def gram(self, a: T, b: T) -> T:
        """``aᵀ @ b`` without forming the transpose; ``gram(J, J)`` is JᵀJ (a syrk where the
        framework has one), ``gram(J, r)`` is Jᵀr."""
        raise _missing(self, "gram")

    def diagonal(self, a: T) -> T:
        """The diagonal of a square matrix, as a vector."""
        raise _missing(self, "diagonal")

    def sum(self, a: T) -> T:
        """The sum of all elements, a scalar."""
        raise _missing(self, "sum")

    def amax(self, a: T) -> T:
        """The largest element, a scalar (NaN if any element is NaN)."""
        raise _missing(self, "amax")

    def sqrt(self, a: T) -> T:
        """Elementwise square root."""
        raise _missing(self, "sqrt")

    def abs(self, a: T) -> T:
        """Elementwise absolute value."""
        raise _missing(self, "abs")

    def log1p(self, a: T) -> T:
        """Elementwise ``log(1 + a)``."""
        raise _missing(self, "log1p")

    def arctan(self, a: T) -> T:
        """Elementwise arctangent."""
        raise _missing(self, "arctan")

    def where(self, cond: T, a: T | float, b: T | float) -> T:
        """Elementwise ``a if cond else b``; ``cond`` is a boolean tensor and at least one of
        ``a``, ``b`` a tensor (the other may be a Python float)."""
        raise _missing(self, "where")

    def maximum(self, a: T, b: T | float) -> T:
        """Elementwise maximum (propagating NaN)."""
        raise _missing(self, "maximum")

    def minimum(self, a: T, b: T | float) -> T:
        """Elementwise minimum (propagating NaN)."""
        raise _missing(self, "minimum")

    def cholesky_solve(self, a: T, b: T) -> T:
        """Solve ``a x = b`` for a symmetric positive definite ``a`` by Cholesky.

        Must not raise when ``a`` is not positive definite: return a tensor holding NaN
        instead, so the caller learns of the failure with the next :meth:`host` transfer.
        """
        raise _missing(self, "cholesky_solve")

    def cholesky_factor(self, a: T) -> Any:
        """A factorization of the symmetric positive definite ``a`` for :meth:`factor_solve`,
        so that several right-hand sides share one factorization.

        Must not raise when ``a`` is not positive definite (:meth:`factor_solve` then returns
        NaN). The default keeps ``a`` itself and factors it again per solve.
        """
        return a

    def factor_solve(self, factor: Any, b: T) -> T:
        """Solve ``a x = b`` with ``factor = cholesky_factor(a)``; NaN where ``a`` is not
        positive definite."""
        return self.cholesky_solve(factor, b)

    def eigh(self, a: T) -> tuple[T, T]:
        """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix."""
        raise _missing(self, "eigh")

    def slice_axis(self, tensor: T, start: int, stop: int, axis: int) -> T:
        """``tensor[start:stop]`` along ``axis`` (row chunks of batched arguments)."""
        raise _missing(self, "slice_axis")

    # -- autodiff builders of the least-squares solvers (called once per run) -------------
    def jacfwd_fn(
        self, f: Callable[..., T], post: Callable[[T, T], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        """Like :meth:`jacobian_fn` at a cost that grows with the parameters, not the
        residuals (forward mode, or PyTorch's reverse-over-reverse), which the solvers pick
        when the residuals outnumber the parameters. Defaults to :meth:`jacobian_fn`."""
        return self.jacobian_fn(f, post)

    def per_sample_jacobian_fn(
        self, f: Callable[..., T], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[T, T]]:
        """Jacobian rows of residuals that come from independent samples.

        ``f(flat, *args)`` returns residuals with samples along axis 0, where ``args[i]``
        (a tensor) holds samples along axis ``in_axes[i]`` (``None``: shared by all samples).
        Return ``g(flat, *args) -> (r, J)``: ``r`` the flat residuals (c·k,) and ``J``
        (c·k, n) their Jacobian with respect to ``flat``, both in the dtype of
        :meth:`flat_dtype`. ``J`` must be built per sample by vectorized reverse mode
        (``vmap`` of a gradient), calling ``f`` on batches of one sample, never by a Python
        loop over samples. ``g`` is called once per row chunk, every chunk of one shape.
        """
        raise _missing(self, "per_sample_jacobian_fn")

    def jvp_fn(self, f: Callable[..., T]) -> Callable[..., T]:
        """``(flat, v, *args) -> J(flat) @ v``, a Jacobian-vector product of the vector
        function ``f(flat, *args)``."""
        raise _missing(self, "jvp_fn")

    def vjp_fn(self, f: Callable[..., T]) -> Callable[..., tuple[T, Callable[[T], T]]]:
        """``(flat, *args) -> (f(flat, *args), u -> J(flat)ᵀ @ u)``: linearize once, then
        many products."""
        raise _missing(self, "vjp_fn")

    # -- random search primitives (method="rso") ------------------------------------------
    # Random draws stay on the device, from a generator seeded once per run, so that a run is
    # reproducible and no per-weight draw crosses to the host.

    def random_generator(self, seed: int, like: T) -> Any:
        """A random generator seeded with ``seed`` that draws on the device of ``like``."""
        raise _missing(self, "random_generator")

    def random_normal(self, generator: Any, shape: tuple[int, ...], like: T) -> T:
        """Standard normal draws of ``shape`` in the dtype and on the device of ``like``;
        advances ``generator``."""
        raise _missing(self, "random_normal")

    def random_integers(self, generator: Any, high: int, shape: tuple[int, ...], like: T) -> T:
        """Uniform integers in ``[0, high)`` of ``shape`` (an index dtype) on the device of
        ``like``; advances ``generator``."""
        raise _missing(self, "random_integers")

    def take(self, tensor: T, indices: T) -> T:
        """The rows ``indices`` (a 1-D integer tensor) of ``tensor`` along axis 0."""
        raise _missing(self, "take")

    def add_at(self, tensor: T, index: Any, value: T) -> T:
        """A copy of ``tensor`` whose element ``index`` (in row-major order; a Python int, or a
        0-d integer tensor inside :meth:`pure_fn`) is increased by the scalar ``value``."""
        raise _missing(self, "add_at")

    def stack(self, tensors: Sequence[T]) -> T:
        """Tensors of one shape stacked along a new leading axis."""
        raise _missing(self, "stack")

    def vmap_fn(self, f: Callable[..., Any]) -> Callable[..., T] | None:
        """Vectorize ``f(w, *rest) -> scalar`` over a stack of ``w``.

        Return ``g(stacked, *rest)``: the 1-D tensor of ``f(stacked[i], *rest)`` over the leading
        axis, computed in one vectorized call (``vmap``), or None when the framework has no
        vectorizing map (the caller then calls ``f`` once per row).
        """
        return None

    def pure_fn(self, f: Callable[..., Any], compiled: bool = True) -> Callable[..., Any]:
        """``f``, a pure function of tensors (and lists of them, None and Python ints), run
        the fastest way the framework runs such code: compiled (``jax.jit``, ``tf.function``)
        when ``compiled``, and never recording gradients (PyTorch)."""
        return f

    # -- scaling out (optional; see dict_minimize/distributed) ------------------------------
    def process_group(self, device: Any, group: Any = None) -> Any:
        """A :class:`~dict_minimize.distributed.Reducer` over the framework's initialized
        process group (``group``, or the default one), or None when there is none. Only
        called when a run may be data-parallel."""
        return None

    def shard_over(self, devices: Any) -> Any:
        """A :class:`~dict_minimize.distributed.DeviceMesh` placing samples over ``devices``
        (``options["devices"]``); frameworks that cannot shard arrays refuse."""
        from dict_minimize._errors import InvalidOptionError

        raise InvalidOptionError(
            f"options['devices'] shards the samples over the devices of one process, which "
            f"the {self.name} backend cannot do (JAX can; PyTorch scales out over "
            f"torch.distributed processes instead, see options['distributed'])"
        )

    # -- built from the primitives ---------------------------------------------------------
    def loss_and_flat_to_host(self, value: T, flat: T, dtype: Any) -> tuple[float, np.ndarray]:
        """A scalar loss and a flat ``dtype`` vector (the gradient) to the host in one transfer.

        The default concatenates them on the device (one copy of ``flat``) so that a device
        syncs once; a backend whose tensors already live in host memory overrides it to skip
        that copy.
        """
        both = self.concat([self.cast(self.reshape(value, (1,)), dtype), flat])
        host = self.to_numpy(both)
        return float(host[0]), host[1:]

    def host(self, *scalars: T) -> np.ndarray:
        """Bring several device scalars to the host in one transfer (one sync), as float64."""
        parts = [self.reshape(s, (1,)) for s in scalars]
        joined = parts[0] if len(parts) == 1 else self.concat(parts)
        return np.asarray(self.to_numpy(joined), dtype=np.float64)

    def dot(self, a: T, b: T) -> T:
        """``aᵀb`` of two vectors, a scalar."""
        return self.sum(a * b)  # type: ignore[operator]

    def norm(self, a: T) -> T:
        """Euclidean norm of a vector, a scalar."""
        return self.sqrt(self.sum(a * a))  # type: ignore[operator]

    def std(self, a: T, size: int) -> T:
        """Standard deviation (population, ``ddof=0``) of the ``size`` elements of ``a``, a
        scalar in ``a``'s dtype."""
        centered: Any = a - self.sum(a) / size  # type: ignore[operator]
        total: Any = self.sum(centered * centered)
        return self.sqrt(total / size)

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
        # A 1-D leaf already has shape (size,) (checked against the spec): no reshape op.
        parts = [
            self.cast(value if len(leaf.shape) == 1 else self.reshape(value, (leaf.size,)), dtype)
            for leaf, value in zip(spec.leaves, leaves)
        ]
        return parts[0] if len(parts) == 1 else self.concat(parts)

    def unravel(self, flat: T, spec: TreeSpec) -> list[T]:
        """Split a flat tensor into leaves with x0's shapes and dtypes (differentiably)."""
        if len(spec.leaves) == 1:
            leaf = spec.leaves[0]
            return [self.cast(self.reshape(flat, leaf.shape), leaf.dtype)]
        parts = self.split(flat, tuple(leaf.size for leaf in spec.leaves))
        return [  # pieces are 1-D already: only other ranks need a reshape op
            self.cast(part if len(leaf.shape) == 1 else self.reshape(part, leaf.shape), leaf.dtype)
            for leaf, part in zip(spec.leaves, parts)
        ]

    def split(self, flat: T, sizes: tuple[int, ...]) -> list[T]:
        """Consecutive pieces of a 1-D tensor; a framework with one split op overrides this
        (one eager op instead of one per piece)."""
        pieces: list[T] = []
        start = 0
        for size in sizes:  # plain ints: np.cumsum costs more than the slices here
            pieces.append(self.slice(flat, start, start + size))
            start += size
        return pieces
