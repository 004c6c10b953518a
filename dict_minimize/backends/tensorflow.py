"""TensorFlow backend: ``tf.GradientTape`` derivatives inside ``tf.function`` graphs.

Each builder wraps its computation in a ``tf.function`` whose input signature is fixed on the
first call (the flat vector's exact shape and dtype), so the objective is traced once and every
later evaluation runs the same graph (later calls may reuse it: ``dict_minimize/_compiled.py``).
The objective may be a plain Python function or a ``tf.function``; either way it runs in graph
mode when ``jac=False``. With ``jac=True`` and parameters on the CPU, evaluations take the host
fast path (``backends/_host.py``), and a ``tf.function`` objective is called through its
concrete function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from dict_minimize._tree import TreeSpec
from dict_minimize.backends._host import HostLeaves
from dict_minimize.backends._protocol import Backend, FlatFn

_ZERO = tf.UnconnectedGradients.ZERO
#: Forward-mode Jacobians with at most this many columns unroll their passes in the graph.
_UNROLLED_COLUMNS = 32
_NUMPY_DTYPES = {
    tf.float16: np.dtype(np.float16),
    tf.float32: np.dtype(np.float32),
    tf.float64: np.dtype(np.float64),
}
_EAGER_TENSOR = type(tf.constant(0.0))


def _traced_once(body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` as a ``tf.function`` whose signature is that of its first call's tensors.

    A fixed signature means TensorFlow never retraces, whatever it would infer from later
    calls, and the exact shape keeps every slice and reshape in the graph static. Later calls
    go to the traced concrete function directly: that skips the ``tf.function`` dispatch
    (binding and matching the arguments to a trace), about half the cost of a small call.
    """
    compiled: list[Any] = []

    def call(*tensors: tf.Tensor) -> Any:
        if compiled:
            return compiled[0](*tensors)
        signature = [tf.TensorSpec(t.shape, t.dtype) for t in tensors]
        fn = tf.function(body, input_signature=signature, autograph=False)
        try:
            out = fn(*tensors)  # traces
        except (TypeError, AttributeError, NotImplementedError) as exc:
            exc.add_note(
                "dict_minimize: tensorflow_api differentiates your function inside tf.function "
                "(graph mode): use TensorFlow ops on params (no .numpy(), no Python bool of a "
                "tensor), or let the objective return (loss, grad_dict) with jac=True"
            )
            raise
        compiled.append(fn.get_concrete_function())
        return out

    return call


@functools.lru_cache(maxsize=4096)
def _host_ints(values: tuple[int, ...]) -> tf.Tensor:
    """An eager int32 constant, made once: eager ops convert a Python list on every call."""
    with tf.device("/device:CPU:0"):  # shape and index arguments live in host memory
        return tf.constant(values, dtype=tf.int32)


def _ints(values: tuple[int, ...]) -> Any:
    """``values`` as an op argument: cached when eager, a plain list (a constant) in a graph."""
    return _host_ints(values) if tf.executing_eagerly() else list(values)


def _axis() -> Any:
    """The axis argument 0: cached when eager, a constant in a graph."""
    return _host_zero() if tf.executing_eagerly() else 0


@functools.lru_cache(maxsize=1)
def _host_zero() -> tf.Tensor:
    with tf.device("/device:CPU:0"):
        return tf.constant(0, dtype=tf.int32)


def _scalar(f: FlatFn, flat: tf.Tensor) -> tf.Tensor:
    """``f(flat)`` reshaped to ``()`` (a loss of shape ``(1,)`` is accepted)."""
    return tf.reshape(f(flat), [])


def _in_dtype(value: Any, dtype: Any) -> tf.Tensor:
    """A tensor cast to ``dtype``, or a Python number made in ``dtype`` directly (``tf.cast``
    of a Python float would round it through float32 first)."""
    if isinstance(value, tf.Tensor | tf.Variable):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def _as_index(value: Any) -> Any:
    """A Python int as an int64 tensor; anything else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool):
        return tf.constant(value, tf.int64)
    return value


class TensorflowBackend(Backend[tf.Tensor]):
    """Parameters are ``tf.Tensor`` or ``tf.Variable`` (read, never assigned) on one device."""

    name = "tensorflow"
    small_algebra_on_host = True  # ~20-50 µs per eager op: see solvers/_host_algebra.py
    compiles = True

    def is_leaf(self, value: Any) -> bool:
        return isinstance(value, tf.Tensor | tf.Variable)

    def leaf_meta(self, value: Any) -> tuple[tuple[int, ...], Any, Any]:
        return tuple(value.shape), value.dtype, value.device

    def dtype_name(self, dtype: Any) -> str:
        return str(tf.as_dtype(dtype).name)

    def flat_dtype(self, device: Any) -> Any:
        # TPUs have no float64; CPUs and GPUs do.
        return tf.float32 if "TPU" in str(device).upper() else tf.float64

    def from_numpy(self, array: np.ndarray, device: Any, dtype: Any) -> tf.Tensor:
        # tf.constant copies the host buffer onto the device named by the scope.
        with tf.device(device):
            return tf.constant(np.asarray(array, dtype=tf.as_dtype(dtype).as_numpy_dtype))

    def to_numpy(self, tensor: Any) -> np.ndarray:
        host = np.asarray(tensor.numpy())
        # NumPy's own dtypes only: bfloat16 (an ml_dtypes extension) becomes float32.
        return host.astype(np.float32) if host.dtype.kind == "V" else host

    # Raw ops skip tf.*'s Python dispatch layers: about a third cheaper per eager call, which
    # matters because every evaluation packs and unpacks the tree.
    def reshape(self, tensor: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
        if tuple(tensor.shape) == shape and not isinstance(tensor, tf.Variable):
            return tensor  # a static no-op: skip the eager op (a variable is read, not kept)
        return tf.raw_ops.Reshape(tensor=tensor, shape=_ints(tuple(shape)))

    def cast(self, tensor: tf.Tensor, dtype: Any) -> tf.Tensor:
        return tensor if tensor.dtype == dtype else tf.raw_ops.Cast(x=tensor, DstT=dtype)

    def concat(self, tensors: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.raw_ops.ConcatV2(values=list(tensors), axis=_axis())

    def slice(self, tensor: tf.Tensor, start: int, stop: int) -> tf.Tensor:
        return tf.raw_ops.Slice(input=tensor, begin=_ints((start,)), size=_ints((stop - start,)))

    def split(self, flat: tf.Tensor, sizes: tuple[int, ...]) -> list[tf.Tensor]:
        return tf.raw_ops.SplitV(  # type: ignore[no-any-return]
            value=flat, size_splits=_ints(sizes), axis=_axis(), num_split=len(sizes)
        )

    def loss_and_flat_to_host(
        self, value: tf.Tensor, flat: tf.Tensor, dtype: Any
    ) -> tuple[float, np.ndarray]:
        if "CPU" in flat.device.upper():  # host memory already: two views, no device concat
            return float(self.to_numpy(value).reshape(())), self.to_numpy(flat)
        return super().loss_and_flat_to_host(value, flat, dtype)

    def bind_objective(
        self, fun: Callable[..., Any], params: Any, args: tuple[Any, ...]
    ) -> Callable[..., Any] | None:
        # The trace this call would make (or find) anyway; calling it directly skips the
        # per-call binding of a dict of tensors to a trace (~40% of a small call).
        if not isinstance(fun, tf.types.experimental.PolymorphicFunction):
            return None
        if not all(isinstance(arg, tf.Tensor) for arg in args):  # Python values: keep TF's rules
            return None
        concrete: Callable[..., Any] = fun.get_concrete_function(params, *args)
        return concrete

    def host_leaves(self, spec: TreeSpec, device: Any) -> HostLeaves | None:
        # On the CPU one constant per leaf (from a slice of scipy's point) and one host
        # concatenation of the gradient replace about a dozen eager operations (split,
        # reshapes, casts, concat) of ~5-10 us each; other devices keep the device path.
        if "CPU" not in str(device).upper():
            return None
        dtypes = [_NUMPY_DTYPES.get(tf.as_dtype(leaf.dtype)) for leaf in spec.leaves]
        if any(d is None for d in dtypes):  # bfloat16: the device path casts
            return None
        return _TensorflowHostLeaves(spec, dtypes, self.is_leaf, device)  # type: ignore[arg-type]

    # -- autodiff builders: each traces once, on its first call ----------------------------
    def value_fn(self, f: FlatFn) -> FlatFn:
        return _traced_once(lambda flat: _scalar(f, flat))

    def value_and_grad_fn(self, f: FlatFn) -> Callable[[tf.Tensor], tuple[Any, Any]]:
        def value_and_grad(flat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                value = _scalar(f, flat)
            return value, tape.gradient(value, flat, unconnected_gradients=_ZERO)

        return _traced_once(value_and_grad)

    def hvp_fn(self, f: FlatFn) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
        def hvp(flat: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
            # Forward over reverse: the gradient pass carries the tangent v.
            with tf.autodiff.ForwardAccumulator(flat, v) as acc:
                with tf.GradientTape() as tape:
                    tape.watch(flat)
                    value = _scalar(f, flat)
                grad = tape.gradient(value, flat, unconnected_gradients=_ZERO)
            return acc.jvp(grad, unconnected_gradients=_ZERO)

        return _traced_once(hvp)

    def hessian_fn(self, f: FlatFn) -> Callable[[tf.Tensor], tf.Tensor]:
        def hessian(flat: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as outer:
                outer.watch(flat)
                with tf.GradientTape() as inner:
                    inner.watch(flat)
                    value = _scalar(f, flat)
                grad = inner.gradient(value, flat, unconnected_gradients=_ZERO)
            return outer.jacobian(grad, flat, unconnected_gradients=_ZERO)

        return _traced_once(hessian)

    def jacobian_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        def jacobian(flat: tf.Tensor, *args: Any) -> tuple[Any, ...]:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                value = f(flat, *args)
            jac = tape.jacobian(value, flat, unconnected_gradients=_ZERO)
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return _traced_once(jacobian)

    def jacfwd_fn(
        self, f: Callable[..., Any], post: Callable[[Any, Any], tuple[Any, ...]] | None = None
    ) -> Callable[..., tuple[Any, ...]]:
        # Forward mode, one tangent per parameter: n forward passes where tape.jacobian (the
        # protocol's default) makes one reverse pass per residual, which costs seconds when
        # residuals far outnumber parameters (when the solvers call this). Up to
        # _UNROLLED_COLUMNS the passes are written out in the graph (4.8x faster than pfor's
        # vectorized_map on a 10-parameter curve fit); beyond, vectorized_map keeps the graph
        # small.
        def jacobian(flat: tf.Tensor, *args: Any) -> tuple[Any, ...]:
            n = int(flat.shape[0])

            def column(v: tf.Tensor) -> tf.Tensor:
                with tf.autodiff.ForwardAccumulator(flat, v) as acc:
                    out = f(flat, *args)
                return acc.jvp(out, unconnected_gradients=_ZERO)

            tangents = tf.eye(n, dtype=flat.dtype)
            if n <= _UNROLLED_COLUMNS:
                jac = tf.stack([column(tangents[i]) for i in range(n)], axis=1)
            else:
                jac = tf.transpose(tf.vectorized_map(column, tangents))
            value = f(flat, *args)
            return (value, jac) if post is None else (value, jac, *post(value, jac))

        return _traced_once(jacobian)

    def per_sample_jacobian_fn(
        self, f: Callable[..., Any], in_axes: Sequence[int | None]
    ) -> Callable[..., tuple[Any, Any]]:
        axes = tuple(in_axes)

        def rows(flat: tf.Tensor, *args: Any) -> tuple[tf.Tensor, tf.Tensor]:
            samples = [tnp.moveaxis(a, ax, 0) for a, ax in zip(args, axes) if ax is not None]

            def per_sample(sample: list[tf.Tensor]) -> tuple[Any, Any]:
                # vectorized_map strips the batch axis; put back a batch of one so f sees its
                # usual layout.
                it = iter(sample)
                batch = [
                    a if ax is None else tf.expand_dims(next(it), ax) for a, ax in zip(args, axes)
                ]
                with tf.GradientTape() as tape:
                    tape.watch(flat)
                    r = f(flat, *batch)
                return r, tape.jacobian(r, flat, unconnected_gradients=_ZERO)

            # Reverse mode per sample, vectorized over the samples (pfor), as vmap(jacrev).
            r, jac = tf.vectorized_map(per_sample, samples)
            r = tf.reshape(r, [-1])
            return r, tf.cast(tf.reshape(jac, (tf.shape(r)[0], -1)), r.dtype)

        return _traced_once(rows)  # every chunk has one shape: traced once

    def jvp_fn(self, f: Callable[..., Any]) -> Callable[..., tf.Tensor]:
        def jvp(flat: tf.Tensor, v: tf.Tensor, *args: Any) -> tf.Tensor:
            with tf.autodiff.ForwardAccumulator(flat, v) as acc:
                value = f(flat, *args)
            return acc.jvp(value, unconnected_gradients=_ZERO)

        return _traced_once(jvp)

    def vjp_fn(self, f: Callable[..., Any]) -> Callable[..., tuple[Any, Callable[[Any], Any]]]:
        value_of = _traced_once(f)

        def pull(flat: tf.Tensor, u: tf.Tensor, *args: Any) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                value = f(flat, *args)
            return tape.gradient(value, flat, output_gradients=u, unconnected_gradients=_ZERO)

        # Each product re-runs f inside one graph: a traced forward and backward pass beats
        # replaying an eager tape op by op.
        pull_once = _traced_once(pull)

        def vjp(flat: tf.Tensor, *args: Any) -> tuple[tf.Tensor, Callable[[Any], Any]]:
            return value_of(flat, *args), lambda u: pull_once(flat, u, *args)

        return vjp

    # -- solver primitives (eager; the solvers call each a few times per iteration) ----------
    def zeros(self, shape: tuple[int, ...], like: tf.Tensor) -> tf.Tensor:
        with tf.device(like.device):
            return tf.zeros(shape, like.dtype)

    def eye(self, n: int, like: tf.Tensor) -> tf.Tensor:
        with tf.device(like.device):
            return tf.eye(n, dtype=like.dtype)

    def matmul(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.linalg.matvec(a, b) if len(b.shape) == 1 else tf.linalg.matmul(a, b)

    def gram(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        if len(b.shape) == 1:
            return tf.linalg.matvec(a, b, transpose_a=True)
        return tf.linalg.matmul(a, b, transpose_a=True)

    def diagonal(self, a: tf.Tensor) -> tf.Tensor:
        return tf.linalg.diag_part(a)

    def sum(self, a: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(a)

    def amax(self, a: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(a)  # NaN propagates

    def sqrt(self, a: tf.Tensor) -> tf.Tensor:
        return tf.sqrt(a)

    def abs(self, a: tf.Tensor) -> tf.Tensor:
        return tf.abs(a)

    def log1p(self, a: tf.Tensor) -> tf.Tensor:
        return tf.math.log1p(a)

    def arctan(self, a: tf.Tensor) -> tf.Tensor:
        return tf.math.atan(a)

    def where(self, cond: tf.Tensor, a: Any, b: Any) -> tf.Tensor:
        # Python numbers take the other branch's dtype, or the flat dtype when both are numbers.
        tensors = [t for t in (a, b) if isinstance(t, tf.Tensor)]
        dtype = tensors[0].dtype if tensors else self.flat_dtype(cond.device)
        return tf.where(cond, _in_dtype(a, dtype), _in_dtype(b, dtype))

    def maximum(self, a: tf.Tensor, b: Any) -> tf.Tensor:
        return tf.maximum(a, _in_dtype(b, a.dtype))  # NaN propagates

    def minimum(self, a: tf.Tensor, b: Any) -> tf.Tensor:
        return tf.minimum(a, _in_dtype(b, a.dtype))

    def cholesky_solve(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return self.factor_solve(self.cholesky_factor(a), b)

    def cholesky_factor(self, a: tf.Tensor) -> tf.Tensor | None:
        try:
            return tf.linalg.cholesky(a)  # NaN, not an error, for an indefinite matrix on CPU
        except tf.errors.InvalidArgumentError:  # kernels that raise instead
            return None

    def factor_solve(self, factor: Any, b: tf.Tensor) -> tf.Tensor:
        if factor is None:
            return tf.fill(tf.shape(b), tf.constant(np.nan, b.dtype))
        # Reshapes, not b[:, None] and [:, 0]: eager slicing costs ~0.1 ms of Python each.
        column = tf.linalg.cholesky_solve(factor, tf.reshape(b, (-1, 1)))
        return tf.reshape(column, (-1,))

    def eigh(self, a: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        w, q = tf.linalg.eigh(a)
        return w, q

    def slice_axis(self, tensor: tf.Tensor, start: int, stop: int, axis: int) -> tf.Tensor:
        # tf.slice is one op; indexing goes through Python slicing helpers (~0.1 ms eagerly).
        begin, size = [0] * len(tensor.shape), [-1] * len(tensor.shape)
        begin[axis], size[axis] = start, stop - start
        return tf.slice(tensor, begin, size)

    def host(self, *scalars: tf.Tensor) -> np.ndarray:
        if all("CPU" in s.device.upper() for s in scalars):
            # Host memory already: read each buffer (no op) instead of joining them with
            # reshape and concat ops (about 20 us each, several per solver iteration).
            return np.concatenate([np.ravel(s.numpy()) for s in scalars]).astype(np.float64)
        return super().host(*scalars)

    # -- random search primitives -----------------------------------------------------------
    def random_generator(self, seed: int, like: tf.Tensor) -> Any:
        with tf.device(like.device):
            return tf.random.Generator.from_seed(seed)

    def random_normal(self, generator: Any, shape: tuple[int, ...], like: tf.Tensor) -> tf.Tensor:
        with tf.device(like.device):
            return generator.normal(shape, dtype=like.dtype)

    def random_integers(
        self, generator: Any, high: int, shape: tuple[int, ...], like: tf.Tensor
    ) -> tf.Tensor:
        with tf.device(like.device):
            return generator.uniform(shape, minval=0, maxval=high, dtype=tf.int64)

    def take(self, tensor: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return tf.gather(tensor, indices)

    def add_at(self, tensor: tf.Tensor, index: Any, value: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tensor, [-1])
        where = tf.reshape(tf.cast(index, tf.int64), [1, 1])
        out = tf.tensor_scatter_nd_add(flat, where, tf.reshape(tf.cast(value, flat.dtype), [1]))
        shape = tensor.shape if tensor.shape.is_fully_defined() else tf.shape(tensor)
        return tf.reshape(out, shape)

    def stack(self, tensors: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.stack(list(tensors))

    def vmap_fn(self, f: Callable[..., Any]) -> Callable[..., tf.Tensor]:
        def batched(stacked: tf.Tensor, *rest: Any) -> tf.Tensor:
            return tf.vectorized_map(lambda w: f(w, *rest), stacked)

        return batched

    def pure_fn(self, f: Callable[..., Any], compiled: bool = True) -> Callable[..., Any]:
        if not compiled:
            return f
        traced = tf.function(f, autograph=False)

        def run(*args: Any) -> Any:
            # Python ints as tensors: tf.function would trace once per distinct value.
            return traced(*(_as_index(a) for a in args))

        return run


class _TensorflowHostLeaves(HostLeaves):
    """One constant per leaf from a slice of scipy's point; gradients read as host views."""

    def __init__(self, spec: TreeSpec, dtypes: Any, is_leaf: Any, device: Any) -> None:
        super().__init__(spec, dtypes, is_leaf)
        self._device = device

    def leaves(
        self, x: np.ndarray, owned: bool = False
    ) -> tuple[tuple[tf.Tensor, ...], list[tf.Tensor]]:
        # tf.constant copies, so the leaves (immutable) also record the point: no copy of x.
        # (An explicit device scope is also the faster way to create eager constants.)
        with tf.device(self._device):
            leaves = [tf.constant(a) for a in self.arrays(x)]
        return tuple(leaves), leaves

    def host_arrays(self, values: Sequence[Any]) -> list[np.ndarray] | None:
        # np.asarray of an eager CPU tensor is a view of its buffer (.numpy() copies).
        arrays = [np.asarray(v) for v in values if type(v) is _EAGER_TENSOR]
        return arrays if len(arrays) == len(values) else None

    def scalar(self, value: Any) -> float | None:
        if type(value) is _EAGER_TENSOR and value.ndim == 0 and value.dtype.is_floating:
            return float(np.asarray(value))
        return None
