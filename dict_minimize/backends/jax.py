"""JAX backend: ``jax.jit``-compiled value-and-grad, Hessian-vector products and Hessians.

Each builder jit-compiles once: the objective is traced on the first evaluation and every later
evaluation (and later calls with the same function and layout: ``dict_minimize/_compiled.py``)
reuses the compiled program.

Precision: the flat vector is float64 only when ``jax_enable_x64`` is on (``JAX_ENABLE_X64=1``
or ``jax.config.update("jax_enable_x64", True)`` before creating arrays; ``with
jax.enable_x64(True):`` around the call also works). Otherwise JAX computes in float32 (scipy
still works in float64 on the host) and float64 parameters cannot exist. The backend reads the
flag and never changes it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dict_minimize._errors import InvalidDtypeError
from dict_minimize._tree import Leaf, Path, TreeSpec, format_path
from dict_minimize.backends._host import HostLeaves
from dict_minimize.backends._protocol import Backend, FlatFn

_reshape = jax.jit(jnp.reshape, static_argnums=1)
_cast = jax.jit(lambda tensor, dtype: tensor.astype(dtype), static_argnums=1)
_concat = jax.jit(lambda tensors: jax.lax.concatenate(tensors, 0))
_slice = jax.jit(lambda tensor, start, stop: tensor[start:stop], static_argnums=(1, 2))
_split = jax.jit(lambda flat, sizes: jax.lax.split(flat, sizes), static_argnums=1)


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit`` with a type mypy can see."""
    compiled: Callable[..., Any] = jax.jit(fn)
    return compiled


def _scalar(f: FlatFn) -> FlatFn:
    """``f`` with its loss reshaped to ``()`` (a loss of shape ``(1,)`` is accepted)."""
    return lambda flat: jnp.reshape(f(flat), ())


@functools.lru_cache(maxsize=256)
def _device_of(sharding: jax.sharding.Sharding) -> Any:
    """The one device of an array's sharding; a replicated sharding for a multi-device one."""
    devices = sharding.device_set
    if len(devices) == 1:
        return next(iter(devices))
    # A sharded leaf: the flat vector is replicated over the same devices, which any shape
    # accepts; the result leaves come back replicated there.
    ordered = sorted(devices, key=lambda d: d.id)
    mesh = jax.sharding.Mesh(np.array(ordered), ("devices",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


@functools.lru_cache(maxsize=128)
def _compiled_packer(
    backend: JaxBackend, kind: str, layout: tuple[tuple[tuple[int, ...], Any], ...], dtype: Any
) -> Callable[..., Any]:
    """The protocol's ravel/unravel for one layout, jit-compiled."""
    spec = _layout_spec(layout)
    if kind == "ravel":
        return _jit(functools.partial(Backend.ravel, backend, spec=spec, dtype=dtype))
    return _jit(functools.partial(Backend.unravel, backend, spec=spec))


def _layout_spec(layout: tuple[tuple[tuple[int, ...], Any], ...]) -> TreeSpec:
    """A flat spec with this layout: all that ravel/unravel read are shapes, sizes and dtypes."""
    leaves, offset = [], 0
    for i, (shape, dtype) in enumerate(layout):
        size = math.prod(shape)
        leaves.append(Leaf((i,), shape, dtype, None, offset, size))
        offset += size
    root = (dict, tuple((i, i) for i in range(len(layout))))
    return TreeSpec(root, tuple(leaves), offset, True)


class JaxBackend(Backend[jax.Array]):
    """Parameters are ``jax.Array`` on any one device (or replicated over several)."""

    name = "jax"
    compiles = True

    def __init__(self) -> None:
        self._layouts: dict[int, tuple[TreeSpec, tuple[Any, ...]]] = {}

    def is_leaf(self, value: Any) -> bool:
        return isinstance(value, jax.Array)  # tracers included

    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        device = None if isinstance(value, jax.core.Tracer) else _device_of(value.sharding)
        return tuple(value.shape), value.dtype, device

    def dtype_name(self, dtype: Any) -> str:
        return str(jnp.dtype(dtype).name)

    def flat_dtype(self, device: Any) -> Any:
        # float64 when jax_enable_x64 is on (read, never set), else float32.
        return jax.dtypes.canonicalize_dtype(jnp.float64)

    def describe(self, path: Path, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        shape, dtype, device = super().describe(path, value)
        if jnp.dtype(dtype) == jnp.float64 and self.flat_dtype(device) != jnp.float64:
            raise InvalidDtypeError(
                f"{format_path(path)} is float64 but jax_enable_x64 is off here, so JAX would "
                f"compute in float32; call minimize inside `with jax.enable_x64(True):` (or set "
                f"JAX_ENABLE_X64=1), or cast x0 to float32"
            )
        return shape, dtype, device

    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> jax.Array:
        host = np.asarray(array, dtype=dtype)  # a cast (bfloat16 too) happens on the host
        # On CPU device_put may alias the host buffer: forbid it when `host` is the caller's
        # array (scipy's iterate or a callback point must not change under the result).
        return jax.device_put(host, device, may_alias=host is not array)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        host = np.asarray(tensor)
        # NumPy's own dtypes only: bfloat16 (an ml_dtypes extension) becomes float32.
        return host.astype(np.float32) if host.dtype.kind == "V" else host

    # Eager jnp calls pay Python-side dispatch (12-30 us each); a jitted call takes the C++
    # fast path (about 4 us), so the primitives the core calls per evaluation are jitted.
    def reshape(self, tensor: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return tensor if tensor.shape == shape else _reshape(tensor, tuple(shape))

    def cast(self, tensor: jax.Array, dtype: Any) -> jax.Array:
        return tensor if tensor.dtype == dtype else _cast(tensor, jnp.dtype(dtype))

    def concat(self, tensors: Sequence[jax.Array]) -> jax.Array:
        return _concat(list(tensors))

    def slice(self, tensor: jax.Array, start: int, stop: int) -> jax.Array:
        return _slice(tensor, start, stop)

    def split(self, flat: jax.Array, sizes: tuple[int, ...]) -> list[jax.Array]:
        return list(_split(flat, tuple(sizes)))

    def is_compiled(self, fun: Callable[..., Any]) -> bool:
        # jax.jit's wrappers (and pjit's) have lower() and trace(): tracing one inside another
        # jit inlines it, the same computation.
        return callable(getattr(fun, "lower", None)) and callable(getattr(fun, "trace", None))

    def compiled_input(self, x: np.ndarray, device: Any, dtype: Any) -> Any:
        # A jitted program takes a NumPy array itself, transferred on jit's C++ path
        # (~5 us; device_put from Python costs ~40 us), to the default device only.
        if x.dtype == dtype and device == _default_device():
            return x
        return self.from_numpy(x, device, dtype)

    def loss_and_flat_to_host(
        self, value: jax.Array, flat: jax.Array, dtype: Any
    ) -> tuple[float, np.ndarray]:
        if getattr(_device_of(flat.sharding), "platform", None) == "cpu":
            # Host memory already: two zero-copy views instead of a concatenation.
            return float(self.to_numpy(value).reshape(())), self.to_numpy(flat)
        return super().loss_and_flat_to_host(value, flat, dtype)

    # The host fast path puts one array per leaf (a dispatch each) but saves two copies of the
    # point per evaluation (the flat device vector and the gradient's concatenation on the
    # device): on the CPU 0.72x the device path's time per evaluation at 1e6 parameters, 0.9x
    # at 1e5, 1.15x at 1e4 and 1.4x at 10. Smaller layouts keep the device path.
    host_min_size = 1 << 16

    def host_leaves(self, spec: TreeSpec, device: Any) -> HostLeaves | None:
        if getattr(device, "platform", None) != "cpu":
            return None  # a sharded leaf's device is a sharding: the device path too
        dtypes = [np.dtype(leaf.dtype) for leaf in spec.leaves]
        if any(d.name not in ("float16", "float32", "float64") for d in dtypes):
            return None  # bfloat16: the device path casts
        return _JaxHostLeaves(spec, dtypes, self.is_leaf, device)

    # Packing and unpacking compile once per layout (shapes and dtypes), shared by every call
    # with that layout: one dispatch per evaluation instead of one per leaf.
    def _packer(self, kind: str, spec: TreeSpec, dtype: Any = None) -> Callable[..., Any]:
        layout = self._layouts.get(id(spec))
        if layout is None or layout[0] is not spec:  # the spec is held, so its id stays unique
            if len(self._layouts) >= 64:
                self._layouts.clear()
            key = tuple((leaf.shape, jnp.dtype(leaf.dtype)) for leaf in spec.leaves)
            layout = self._layouts[id(spec)] = (spec, key)
        return _compiled_packer(self, kind, layout[1], dtype)

    def ravel(self, leaves: Sequence[jax.Array], spec: TreeSpec, dtype: Any) -> jax.Array:
        flat: jax.Array = self._packer("ravel", spec, jnp.dtype(dtype))(list(leaves))
        return flat

    def unravel(self, flat: jax.Array, spec: TreeSpec) -> list[jax.Array]:
        leaves: list[jax.Array] = self._packer("unravel", spec)(flat)
        return leaves

    # -- autodiff builders: each jit-compiles once, on its first call ----------------------
    def value_fn(self, f: FlatFn) -> FlatFn:
        return _jit(f)

    def value_and_grad_fn(self, f: FlatFn) -> Callable[[jax.Array], tuple[Any, Any]]:
        return _jit(jax.value_and_grad(_scalar(f)))

    def hvp_fn(self, f: FlatFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
        grad = jax.grad(_scalar(f))

        def hvp(flat: jax.Array, v: jax.Array) -> jax.Array:
            # Forward over reverse: one gradient pass carrying a tangent, no n x n matrix.
            return jax.jvp(grad, (flat,), (v,))[1]

        return _jit(hvp)

    def hessian_fn(self, f: FlatFn) -> Callable[[jax.Array], jax.Array]:
        return _jit(jax.hessian(_scalar(f)))

    def jacobian_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        def jacobian(flat: jax.Array, *args: Any) -> tuple[Any, ...]:
            def at(z: jax.Array) -> Any:
                return f(z, *args)

            value, pullback = jax.vjp(at, flat)
            m, n = value.shape[0], flat.shape[0]
            if m <= n:  # few outputs (the usual constraint): one reverse pass per row
                (jac,) = jax.vmap(pullback)(jnp.eye(m, dtype=value.dtype))
            else:  # more outputs than parameters: one forward pass per column
                jac = jax.jacfwd(at)(flat)
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return _jit(jacobian)

    def jacfwd_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        def jacobian(flat: jax.Array, *args: Any) -> tuple[Any, ...]:
            def both(z: jax.Array) -> tuple[Any, Any]:
                value = f(z, *args)  # traced once: the value rides along as aux
                return value, value

            j, value = jax.jacfwd(both, has_aux=True)(flat)
            return (value, j) if post is None else (value, j, *post(value, j))

        return _jit(jacobian)

    def per_sample_jacobian_fn(
        self, f: Callable[..., Any], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[Any, Any]]:
        axes = tuple(in_axes)

        def one_sample(flat: jax.Array, *args: Any) -> tuple[Any, Any]:
            # vmap strips the batch axis; put back a batch of one so f sees its usual layout.
            batch = [a if ax is None else jnp.expand_dims(a, ax) for a, ax in zip(args, axes)]
            r = f(flat, *batch)
            return r, r

        jac = jax.vmap(jax.jacrev(one_sample, has_aux=True), in_axes=(None, *axes))

        def rows(flat: jax.Array, *args: Any) -> tuple[jax.Array, jax.Array]:
            j, r = jac(flat, *args)
            r = jnp.reshape(r, (-1,))
            return r, jnp.reshape(j, (r.size, -1)).astype(r.dtype)

        return _jit(rows)  # every chunk has one shape: compiled once

    def jvp_fn(self, f: Callable[..., Any]) -> Callable[..., jax.Array]:
        def jvp(flat: jax.Array, v: jax.Array, *args: Any) -> jax.Array:
            return jax.jvp(lambda z: f(z, *args), (flat,), (v,))[1]

        return _jit(jvp)

    def vjp_fn(self, f: Callable[..., Any]) -> Callable[..., tuple[Any, Callable[[Any], Any]]]:
        # jax.vjp's pullback is a pytree (its leaves are the linearization's residuals), so
        # linearizing and applying are each compiled once and products reuse the residuals.
        linearize = _jit(lambda flat, *args: jax.vjp(lambda z: f(z, *args), flat))
        apply = _jit(lambda pullback, u: pullback(u)[0])

        def vjp(flat: jax.Array, *args: Any) -> tuple[jax.Array, Callable[[Any], Any]]:
            value, pullback = linearize(flat, *args)
            return value, lambda u: apply(pullback, u)

        return vjp

    def shard_over(self, devices: Any) -> Any:
        from dict_minimize.distributed.jax import JaxDeviceMesh

        return JaxDeviceMesh(devices)

    def process_group(self, device: Any, group: Any = None) -> Any:
        from dict_minimize.distributed.jax import process_group

        return process_group(device, group)

    # -- solver primitives (eager; the solvers call each a few times per iteration) ----------
    def zeros(self, shape: tuple[int, ...], like: jax.Array) -> jax.Array:
        return jnp.zeros(shape, like.dtype, device=_placement(like))

    def eye(self, n: int, like: jax.Array) -> jax.Array:
        return jnp.eye(n, dtype=like.dtype, device=_placement(like))

    def matmul(self, a: jax.Array, b: jax.Array) -> jax.Array:
        return a @ b

    def gram(self, a: jax.Array, b: jax.Array) -> jax.Array:
        return _gram(a, b)

    def diagonal(self, a: jax.Array) -> jax.Array:
        return jnp.diagonal(a)

    def sum(self, a: jax.Array) -> jax.Array:
        return jnp.sum(a)

    def amax(self, a: jax.Array) -> jax.Array:
        return jnp.max(a)  # NaN propagates

    def sqrt(self, a: jax.Array) -> jax.Array:
        return jnp.sqrt(a)

    def abs(self, a: jax.Array) -> jax.Array:
        return jnp.abs(a)

    def log1p(self, a: jax.Array) -> jax.Array:
        return jnp.log1p(a)

    def arctan(self, a: jax.Array) -> jax.Array:
        return jnp.arctan(a)

    def where(self, cond: jax.Array, a: Any, b: Any) -> jax.Array:
        return jnp.where(cond, a, b)

    def maximum(self, a: jax.Array, b: Any) -> jax.Array:
        return jnp.maximum(a, b)  # NaN propagates

    def minimum(self, a: jax.Array, b: Any) -> jax.Array:
        return jnp.minimum(a, b)

    def cholesky_solve(self, a: jax.Array, b: jax.Array) -> jax.Array:
        return _cholesky_solve(a, b)

    def eigh(self, a: jax.Array) -> tuple[jax.Array, jax.Array]:
        w, q = jnp.linalg.eigh(a)
        return w, q

    def slice_axis(self, tensor: jax.Array, start: int, stop: int, axis: int) -> jax.Array:
        return jax.lax.slice_in_dim(tensor, start, stop, axis=axis)

    def host(self, *scalars: jax.Array) -> np.ndarray:
        if all(getattr(_device_of(s.sharding), "platform", None) == "cpu" for s in scalars):
            # Host memory already: zero-copy views instead of a reshape and a concatenation
            # dispatched per solver iteration.
            return np.concatenate([np.ravel(np.asarray(s)) for s in scalars]).astype(np.float64)
        return super().host(*scalars)

    # -- random search primitives -----------------------------------------------------------
    def random_generator(self, seed: int, like: jax.Array) -> Any:
        return _KeyChain(jax.device_put(jax.random.key(seed), _placement(like)))

    def random_normal(self, generator: Any, shape: tuple[int, ...], like: jax.Array) -> jax.Array:
        return jax.random.normal(generator.next(), shape, like.dtype)

    def random_integers(
        self, generator: Any, high: int, shape: tuple[int, ...], like: jax.Array
    ) -> jax.Array:
        return jax.random.randint(generator.next(), shape, 0, high)

    def take(self, tensor: jax.Array, indices: jax.Array) -> jax.Array:
        return jnp.take(tensor, indices, axis=0)

    def add_at(self, tensor: jax.Array, index: Any, value: jax.Array) -> jax.Array:
        return jnp.reshape(jnp.reshape(tensor, (-1,)).at[index].add(value), tensor.shape)

    def stack(self, tensors: Sequence[jax.Array]) -> jax.Array:
        return jnp.stack(list(tensors))

    def vmap_fn(self, f: Callable[..., Any]) -> Callable[..., jax.Array]:
        def batched(stacked: jax.Array, *rest: Any) -> jax.Array:
            out: jax.Array = jax.vmap(f, in_axes=(0,) + (None,) * len(rest))(stacked, *rest)
            return out

        return batched

    def pure_fn(self, f: Callable[..., Any], compiled: bool = True) -> Callable[..., Any]:
        if compiled:
            return _jit(f)

        def run(*args: Any) -> Any:
            # Python ints as arrays: eager indexing compiles once per static index value.
            return f(*(jnp.asarray(a) if type(a) is int else a for a in args))

        return run


def _placement(like: jax.Array) -> Any:
    """Where a new array beside ``like`` goes (None inside a trace: the trace decides)."""
    return None if isinstance(like, jax.core.Tracer) else _device_of(like.sharding)


class _KeyChain:
    """A stateful generator over JAX's stateless keys: each draw takes a fresh subkey."""

    def __init__(self, key: jax.Array) -> None:
        self.key = key

    def next(self) -> jax.Array:
        self.key, sub = jax.random.split(self.key)
        return sub


# aᵀb without materializing the transpose (XLA contracts over the first axes).
_gram = jax.jit(lambda a, b: jnp.tensordot(a, b, axes=((0,), (0,))))


def _cholesky_solve_impl(a: jax.Array, b: jax.Array) -> jax.Array:
    # A matrix that is not positive definite gives a NaN factor, hence a NaN solution: JAX's
    # Cholesky reports failure that way instead of raising, as the protocol asks.
    factor = jnp.linalg.cholesky(a)
    return jax.scipy.linalg.cho_solve((factor, True), b)


_cholesky_solve = jax.jit(_cholesky_solve_impl)


@functools.cache
def _default_device() -> Any:
    """Where jit puts host arguments (looked up on first use: importing starts no backend)."""
    return jax.devices()[0]


class _JaxHostLeaves(HostLeaves):
    """Leaves put from slices of scipy's point (``device_put`` copies them, so the immutable
    leaves also record the point: no other copy); gradients read back as host views."""

    def __init__(self, spec: TreeSpec, dtypes: Any, is_leaf: Any, device: Any) -> None:
        super().__init__(spec, dtypes, is_leaf)
        self._device = device

    def leaves(
        self, x: np.ndarray, owned: bool = False
    ) -> tuple[tuple[jax.Array, ...], list[jax.Array]]:
        # An owned x is nobody else's: on the CPU the leaves may alias it instead of copying.
        leaves: list[jax.Array] = jax.device_put(self.arrays(x), self._device, may_alias=owned)
        return tuple(leaves), leaves

    def host_arrays(self, values: Sequence[Any]) -> list[np.ndarray] | None:
        arrays = [np.asarray(v) for v in values if isinstance(v, jax.Array)]
        return arrays if len(arrays) == len(values) else None

    def scalar(self, value: Any) -> float | None:
        if isinstance(value, jax.Array) and value.ndim == 0 and value.dtype.kind == "f":
            return float(np.asarray(value))
        return None
