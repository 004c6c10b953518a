"""Scaling ``least_squares`` and ``fit`` out over processes and devices (data parallelism).

Levenberg-Marquardt is data-parallel by nature: ``JᵀJ``, ``Jᵀr`` and the cost are sums over
samples. With per-sample residuals (``options["in_axes"]`` / ``["batched_args"]``) each rank
or device forms the partial sums of its samples, and only those sums (``n² + n + 3`` floats
per Jacobian) cross between them.

* Processes: when the framework's process group is initialized (PyTorch: ``torchrun`` or
  ``torch.distributed.init_process_group``, :mod:`.torch`; JAX: ``jax.distributed``,
  :mod:`.jax`), each rank's batched args are its shard; the partial sums are all-reduced
  (:class:`Collective`, :mod:`._problem`) and every accept/reject and damping decision comes
  from all-reduced values, so all ranks hold bit-identical parameters.
  ``options={"distributed": False}`` turns it off.
* Devices (JAX, :mod:`._sharding`): ``options={"devices": jax.local_devices()}`` shards the
  samples over the devices of one process and XLA computes the sums across them.

This package imports no framework; the framework parts load when a run uses them.
"""

from dict_minimize.distributed._collective import Collective, Reducer
from dict_minimize.distributed._sharding import DeviceMesh

__all__ = ["Collective", "DeviceMesh", "Reducer"]
