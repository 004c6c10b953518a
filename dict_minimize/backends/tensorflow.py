"""TensorFlow backend: ``tf.GradientTape`` derivatives inside ``tf.function`` graphs.

Each builder wraps its computation in a ``tf.function`` whose input signature is fixed on the
first call (the flat vector's exact shape and dtype), so the objective is traced once per
``minimize`` call and every later evaluation runs the same graph. The objective may be a plain
Python function or a ``tf.function``; either way it runs in graph mode when ``jac=False``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from dict_minimize.backends._protocol import Backend, FlatFn

_ZERO = tf.UnconnectedGradients.ZERO


def _traced_once(body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` as a ``tf.function`` whose signature is that of its first call's tensors.

    A fixed signature means TensorFlow never retraces, whatever it would infer from later
    calls, and the exact shape keeps every slice and reshape in the graph static.
    """
    compiled: list[Any] = []

    def call(*tensors: tf.Tensor) -> Any:
        if compiled:
            return compiled[0](*tensors)
        signature = [tf.TensorSpec(t.shape, t.dtype) for t in tensors]
        fn = tf.function(body, input_signature=signature)
        try:
            out = fn(*tensors)  # traces
        except (TypeError, AttributeError, NotImplementedError) as exc:
            exc.add_note(
                "dict_minimize: with jac=False tensorflow_api runs the objective inside "
                "tf.function (graph mode): use TensorFlow ops on params (no .numpy(), no Python "
                "bool of a tensor), or pass jac=True and return (loss, grad_dict)"
            )
            raise
        compiled.append(fn)
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
    """The axis argument 0 (cached when eager)."""
    return _host_scalar_zero() if tf.executing_eagerly() else 0


@functools.lru_cache(maxsize=1)
def _host_scalar_zero() -> tf.Tensor:
    with tf.device("/device:CPU:0"):
        return tf.constant(0, dtype=tf.int32)


def _scalar(f: FlatFn, flat: tf.Tensor) -> tf.Tensor:
    """``f(flat)`` reshaped to ``()`` (a loss of shape ``(1,)`` is accepted)."""
    return tf.reshape(f(flat), [])


class TensorflowBackend(Backend[tf.Tensor]):
    """Parameters are ``tf.Tensor`` or ``tf.Variable`` (read, never assigned) on one device."""

    name = "tensorflow"

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
        if tuple(tensor.shape) == shape:  # a static no-op: skip the eager op
            return tensor
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

    def jacobian_fn(self, f: FlatFn) -> Callable[[tf.Tensor], tuple[Any, Any]]:
        def jacobian(flat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                value = f(flat)
            return value, tape.jacobian(value, flat, unconnected_gradients=_ZERO)

        return _traced_once(jacobian)
