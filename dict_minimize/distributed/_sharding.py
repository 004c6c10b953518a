"""``options["devices"]``: the samples sharded over the devices of one process (JAX).

The batched args are split along their batch axis over the devices, x0 and the shared args
are replicated, and the run is the ordinary one: every array op of the solver is then a
computation over the device mesh, and the framework's compiler turns each sum over samples
(``JᵀJ``, ``Jᵀr``, the cost) into per-device partial sums and an all-reduce. Nothing in the
solver changes, so the result matches the one-device run on the same data to rounding.

Each device forms the Jacobian rows of all its samples at once (one row chunk: the slices of
a chunked pass would make the runtime move samples between devices in the middle of the
iteration, and XLA's CPU runtime can deadlock on such concurrent collectives). The sample
count is padded to a multiple of the device count by repeating the last sample; a mask
argument zeroes the padded samples' residuals (and with them their Jacobian rows), which
leaves every sum unchanged, and the padding is cut off ``fun`` afterwards.

Several processes (``jax.distributed``) compose with this: each process shards its own
samples over its own devices, and the processes' sums are reduced as PyTorch ranks' are
(:mod:`._problem`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dict_minimize._errors import InvalidOptionError
from dict_minimize._result import LeastSquaresResult
from dict_minimize.backends._protocol import Backend


class DeviceMesh(ABC):
    """How a framework places arrays over several devices.

    Attributes
    ----------
    size : int
        The number of devices.
    """

    size: int = 1

    @abstractmethod
    def shard(self, tensor: Any, axis: int, rows: int) -> Any:
        """``tensor`` split along ``axis`` over the devices, padded to ``rows`` along it by
        repeating its last entry."""

    @abstractmethod
    def replicate(self, tensor: Any) -> Any:
        """A copy of ``tensor`` on every device."""

    @abstractmethod
    def mask(self, real: int, rows: int, dtype: Any) -> Any:
        """``(rows,)`` ones then zeros (``real`` ones), split over the devices like samples."""

    @abstractmethod
    def restore(self, tensor: Any, like: Any) -> Any:
        """``tensor`` placed where ``like`` is (results go back to x0's device)."""


def _samples(backend: Backend[Any], args: Sequence[Any], in_axes: Sequence[int | None]) -> int:
    if len(in_axes) != len(args):
        raise InvalidOptionError(
            f"options['in_axes'] has {len(in_axes)} entries but there are {len(args)} args; "
            f"give one axis (or None) per argument"
        )
    for i, (arg, axis) in enumerate(zip(args, in_axes)):
        if axis is None:
            continue
        if not backend.is_leaf(arg):
            raise InvalidOptionError(
                f"args[{i}] is declared batched but is a {type(arg).__name__}, not a "
                f"{backend.name} tensor"
            )
        shape = backend.leaf_meta(arg)[0]
        if not 0 <= axis < len(shape):
            raise InvalidOptionError(
                f"args[{i}] has shape {tuple(shape)}; batch axis {axis!r} is not one of its axes"
            )
        return int(shape[axis])
    raise InvalidOptionError("options['in_axes'] declares no batched argument")


def _masked(backend: Backend[Any], residual_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``residual_fn`` with one more batched argument, a 0/1 weight per sample."""

    def masked(params: Any, *args: Any) -> Any:
        *data, mask = args
        r = residual_fn(params, *data)
        if not backend.is_leaf(r):
            return r  # let the solver name the problem
        shape = tuple(backend.leaf_meta(r)[0])
        rows = int(backend.leaf_meta(mask)[0][0])
        weighted = backend.reshape(r, (rows, -1)) * backend.reshape(mask, (rows, 1))
        return backend.reshape(weighted, shape)

    return masked


def least_squares_on_devices(
    run: Callable[..., LeastSquaresResult],
    backend: Backend[Any],
    residual_fn: Callable[..., Any],
    x0_dict: Mapping[Any, Any],
    *,
    args: tuple[Any, ...],
    in_axes: tuple[int | None, ...] | None,
    callback: Callable[[Any], Any] | None,
    options: dict[str, Any],
    **kwargs: Any,
) -> LeastSquaresResult:
    """Run ``run`` (``least_squares``) with the samples sharded over ``options["devices"]``."""
    from dict_minimize._least_squares import IN_FRAMEWORK, _wants_result
    from dict_minimize._minimize import prepare

    opts = dict(options)
    mesh: DeviceMesh = backend.shard_over(opts.pop("devices"))
    method = str(kwargs.get("method", "lm")).lower()
    if in_axes is None:
        raise InvalidOptionError(
            "options['devices'] shards the samples over the devices: declare which args hold "
            "samples with options['in_axes'] or options['batched_args']"
        )
    if method not in IN_FRAMEWORK:
        raise InvalidOptionError(
            f"options['devices'] is for the in-framework methods 'lm' and 'trf', not {method!r}"
        )
    if opts.pop("chunk_size", None) is not None:
        raise InvalidOptionError(
            "options['chunk_size'] does not combine with options['devices']: each device forms "
            "the Jacobian rows of its samples at once (samples / devices × parameters floats); "
            "spread the samples over more devices or processes to hold less per device"
        )
    spec, leaves, _ = prepare(backend, x0_dict)
    samples = _samples(backend, args, in_axes)
    if samples == 0:
        raise InvalidOptionError("the batched args hold no samples")
    rows = mesh.size * -(-samples // mesh.size)  # whole rows on every device
    sharded = [
        (mesh.replicate(a) if backend.is_leaf(a) else a) if ax is None else mesh.shard(a, ax, rows)
        for a, ax in zip(args, in_axes)
    ]
    fn, axes = residual_fn, tuple(in_axes)
    if rows != samples:
        fn = _masked(backend, residual_fn)
        dtype = backend.flat_dtype(backend.leaf_meta(leaves[0])[2])
        sharded.append(mesh.mask(samples, rows, dtype))
        axes = (*axes, 0)
    x0_mesh = spec.unflatten([mesh.replicate(leaf) for leaf in leaves])

    def home(tree: Any) -> Any:
        """A params tree from the mesh back to x0's placement."""
        return spec.unflatten(
            [
                mesh.restore(v, like)
                for v, like in zip(spec.match(tree, "x", is_leaf=backend.is_leaf), leaves)
            ]
        )

    cb = None
    if callback is not None:
        wants = _wants_result(callback)

        def cb(intermediate_result: Any) -> Any:
            res = intermediate_result
            res["x"] = home(res["x"])
            return callback(res if wants else res["x"])

    opts.pop("in_axes", None)
    opts.pop("batched_args", None)
    result = run(
        backend,
        fn,
        x0_mesh,
        args=tuple(sharded),
        callback=cb,
        options={**opts, "in_axes": axes, "chunk_size": rows},
        **kwargs,
    )
    result["x"] = home(result["x"])
    if result.get("grad") is not None:
        result["grad"] = home(result["grad"])
    fun = result.get("fun")
    if fun is not None and rows != samples:
        m = backend.leaf_meta(fun)[0][0]
        result["fun"] = backend.slice(fun, 0, m // rows * samples)
    result["devices"] = mesh.size
    return result
