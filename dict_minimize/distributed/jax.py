"""JAX: samples sharded over devices with ``jax.sharding``, and processes reduced over
``jax.distributed``.

``options["devices"]`` is a sequence of this process's devices (``jax.local_devices()``) or a
one-axis ``jax.sharding.Mesh`` of them. The batched args are placed with a ``NamedSharding``
that splits their batch axis over the mesh; x0 and the shared args are replicated. XLA then
partitions every jitted computation of the solver by the data: each device forms the Jacobian
rows and the partial ``JᵀJ``, ``Jᵀr`` and cost of its samples, and the contraction over
samples becomes an all-reduce (see :mod:`._sharding`).

Across processes (hosts), call ``jax.distributed.initialize()`` in every process first: each
process then holds its own samples, and :class:`JaxProcesses` reduces the processes' sums as
:mod:`._problem` describes (with ``devices``, within each process over its devices too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dict_minimize._errors import DistributedError, InvalidOptionError
from dict_minimize.distributed._collective import Reducer
from dict_minimize.distributed._sharding import DeviceMesh


class JaxProcesses(Reducer):
    """All-reduce across the processes of a ``jax.distributed`` run.

    A buffer is gathered from every process (``multihost_utils.process_allgather``, an
    all-gather over the processes' devices) and reduced on the host in rank order, so every
    process gets the same bytes. It moves ``processes ×`` the buffer, more than a ring
    all-reduce; the buffers are ``n² + n + 3`` floats once per Jacobian.
    """

    def __init__(self) -> None:
        self.rank = jax.process_index()
        self.world_size = jax.process_count()
        self.name = "jax.distributed"

    def all_reduce(self, buffer: Any, op: str) -> Any:
        from jax.experimental import multihost_utils

        host = np.asarray(buffer)
        try:
            stacked = np.asarray(multihost_utils.process_allgather(host, tiled=False))
        except Exception as exc:  # a process died or the collectives failed
            raise DistributedError(
                f"process {self.rank}: the all-gather across the jax.distributed processes "
                f"failed ({exc})"
            ) from exc
        out = stacked.sum(axis=0) if op == "sum" else stacked.max(axis=0)
        return jax.device_put(out.astype(host.dtype), buffer.sharding)


def process_group(device: Any, group: Any = None) -> JaxProcesses | None:
    """The reducer over the processes of ``jax.distributed`` (None with one process)."""
    if group is not None:
        raise InvalidOptionError(
            "options['distributed'] must be True, False or None with JAX (its processes are "
            "those of jax.distributed.initialize)"
        )
    return JaxProcesses() if jax.process_count() > 1 else None


class JaxDeviceMesh(DeviceMesh):
    """A one-axis device mesh over which samples are split."""

    def __init__(self, devices: Any) -> None:
        if isinstance(devices, Mesh):
            if len(devices.axis_names) != 1:
                raise InvalidOptionError(
                    f"options['devices'] must be a one-axis Mesh (the samples' axis), got axes "
                    f"{devices.axis_names}"
                )
            mesh = devices
        else:
            if isinstance(devices, jax.Device):
                devices = [devices]
            if not (
                isinstance(devices, Sequence)
                and devices
                and all(isinstance(d, jax.Device) for d in devices)
            ):
                raise InvalidOptionError(
                    f"options['devices'] must be a non-empty sequence of jax devices (e.g. "
                    f"jax.devices()) or a jax.sharding.Mesh, got {type(devices).__name__}"
                )
            if len(set(devices)) != len(devices):
                raise InvalidOptionError("options['devices'] lists a device twice")
            mesh = Mesh(np.array(list(devices)), ("samples",))
        if any(d.process_index != jax.process_index() for d in mesh.devices.flat):
            raise InvalidOptionError(
                "options['devices'] must be devices of this process (jax.local_devices()); "
                "several processes (jax.distributed) each shard their own samples over their "
                "own devices, and the processes' sums are reduced between them"
            )
        self.mesh = mesh
        self.axis = mesh.axis_names[0]
        self.size = int(mesh.devices.size)
        self.replicated = NamedSharding(mesh, PartitionSpec())

    def _split(self, ndim: int, axis: int) -> NamedSharding:
        spec = [None] * ndim
        spec[axis] = self.axis
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def shard(self, tensor: Any, axis: int, rows: int) -> Any:
        have = tensor.shape[axis]
        if rows != have:  # repeat the last sample: valid inputs, masked out of every sum
            last = jax.lax.slice_in_dim(tensor, have - 1, have, axis=axis)
            reps = [1] * tensor.ndim
            reps[axis] = rows - have
            tensor = jnp.concatenate([tensor, jnp.tile(last, reps)], axis=axis)
        return jax.device_put(tensor, self._split(tensor.ndim, axis))

    def replicate(self, tensor: Any) -> Any:
        return jax.device_put(tensor, self.replicated)

    def mask(self, real: int, rows: int, dtype: Any) -> Any:
        host = np.zeros(rows, dtype=np.dtype(dtype))
        host[:real] = 1.0
        return jax.device_put(host, self._split(1, 0))

    def restore(self, tensor: Any, like: Any) -> Any:
        if isinstance(like, jax.core.Tracer):
            return tensor
        return jax.device_put(tensor, like.sharding)
