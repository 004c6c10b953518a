"""The PyTorch reducer: ``torch.distributed.all_reduce`` over a process group.

Gloo reduces CPU tensors, NCCL CUDA tensors: the buffers live on the parameters' device, so
with NCCL put x0 and each rank's data on that rank's GPU (``torch.cuda.set_device``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from dict_minimize._errors import DistributedError, InvalidOptionError
from dict_minimize.distributed._collective import Reducer

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX} if dist.is_available() else {}


class TorchProcessGroup(Reducer):
    """All-reduce over a ``torch.distributed`` process group (the default group if None)."""

    def __init__(self, group: Any = None, device: Any = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.engine = str(dist.get_backend(group))
        self.name = f"torch.distributed/{self.engine}"
        if device is not None and "nccl" in self.engine and torch.device(device).type != "cuda":
            raise InvalidOptionError(
                f"the process group uses NCCL, which reduces CUDA tensors only, but x0 is on "
                f"{device}; put x0 and this rank's data on its GPU, or use a gloo group"
            )

    def all_reduce(self, buffer: Any, op: str) -> Any:
        try:
            dist.all_reduce(buffer, op=_OPS[op], group=self.group)
        except RuntimeError as exc:  # a peer died, or the group's timeout passed
            raise DistributedError(
                f"rank {self.rank}: the all-reduce over {self.name} failed ({exc}); another rank "
                f"has probably died or stopped responding (the wait is bounded by the timeout "
                f"given to init_process_group)"
            ) from exc
        return buffer


def process_group(device: Any, group: Any = None) -> TorchProcessGroup | None:
    """The reducer over ``group`` (default: the initialized default group), or None."""
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise InvalidOptionError(
                "options['distributed'] names a process group, but torch.distributed is not "
                "initialized in this process"
            )
        return None
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise InvalidOptionError(
            f"options['distributed'] must be True, False, None or a "
            f"torch.distributed.ProcessGroup, got {type(group).__name__}"
        )
    return TorchProcessGroup(group, device)
