"""Reductions across the ranks of a data-parallel run, written once on the backend protocol.

A framework supplies a :class:`Reducer` (one all-reduce of a 1-D tensor). :class:`Collective`
builds everything the solvers need on it: several tensors packed into one buffer (one
all-reduce per linearization: ``JᵀJ``, ``Jᵀr``, the cost and an error flag together), the error
protocol that stops every rank when one fails, and host-side sums and extrema for the ``fit``
helpers.

The error protocol: a rank whose local work raised still joins the all-reduce it was heading
for, with zeros and its error flag set. Every rank reads the flags back (one scalar), and when
any is set all ranks learn which ranks failed (and their messages, in a second small
all-reduce) and raise :class:`~dict_minimize.DistributedError`; a failing rank chains its own
exception. So no rank waits forever on a collective that a failed rank never joins. A rank
that dies outright (killed, out of memory) cannot join: the others wait for the process
group's ``timeout`` (``torch.distributed.init_process_group(timeout=...)``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dict_minimize._errors import DistributedError, InvalidOptionError
from dict_minimize.backends._protocol import Backend

#: Bytes of each rank's message that reach the other ranks when it fails.
MESSAGE_BYTES = 240


class Reducer(ABC):
    """One framework's all-reduce across the ranks of a process group.

    Attributes
    ----------
    rank, world_size : int
        This process's rank and the number of ranks.
    name : str
        Shown in messages (``"torch.distributed/gloo"``).
    """

    rank: int = 0
    world_size: int = 1
    name: str = "abstract"

    @abstractmethod
    def all_reduce(self, buffer: Any, op: str) -> Any:
        """Reduce a 1-D tensor elementwise across ranks (``op``: ``"sum"`` or ``"max"``).

        Every rank must get the same bytes back, so that decisions taken from them agree.
        The buffer is fresh (the caller does not reuse it): reducing in place is allowed.
        """


class Collective:
    """Packed, error-aware reductions of flat-dtype tensors on one device.

    Parameters
    ----------
    backend : Backend
        The framework adapter (packing and host transfers).
    reducer : Reducer
        The framework's all-reduce.
    device, dtype
        Where and in which dtype the buffers live (the parameters' device, the flat dtype).

    Attributes
    ----------
    calls, bytes, seconds
        All-reduces made, bytes reduced (per rank, sent size of the buffers) and the wall time
        spent in them (waiting for slower ranks included).
    """

    def __init__(self, backend: Backend[Any], reducer: Reducer, device: Any, dtype: Any) -> None:
        self.backend = backend
        self.reducer = reducer
        self.device = device
        self.dtype = dtype
        self.rank = reducer.rank
        self.world_size = reducer.world_size
        self.itemsize = int(np.dtype(backend.dtype_name(dtype)).itemsize)
        self.calls = 0
        self.bytes = 0
        self.seconds = 0.0

    def stats(self) -> dict[str, Any]:
        """What the run reduced: ``rank``, ``world_size``, ``reducer``, ``all_reduces``,
        ``bytes`` and ``seconds``."""
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "reducer": self.reducer.name,
            "all_reduces": self.calls,
            "bytes": self.bytes,
            "seconds": self.seconds,
        }

    def _host_tensor(self, values: np.ndarray) -> Any:
        return self.backend.from_numpy(np.asarray(values, np.float64), self.device, self.dtype)

    def _all_reduce(self, buffer: Any, op: str, size: int) -> Any:
        start = time.perf_counter()
        out = self.reducer.all_reduce(buffer, op)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.bytes += size * self.itemsize
        return out

    def reduce(
        self,
        parts: Sequence[Any] | None,
        sizes: Sequence[int],
        error: BaseException | None = None,
        op: str = "sum",
    ) -> list[Any]:
        """All-reduce ``parts`` (tensors of ``sizes`` elements) in one buffer.

        A rank whose local work failed passes ``parts=None`` and its ``error``: it still takes
        part, and then every rank raises :class:`DistributedError`. Returns the reduced parts
        as 1-D tensors of ``sizes`` elements.
        """
        b = self.backend
        total = int(sum(sizes))
        if error is None and parts is not None:
            pieces = [
                b.cast(b.reshape(p, (int(size),)), self.dtype) for p, size in zip(parts, sizes)
            ]
            pieces.append(self._host_tensor(np.zeros(1)))
            buffer = b.concat(pieces)
        else:
            flagged = np.zeros(total + 1)
            flagged[total] = 1.0
            buffer = self._host_tensor(flagged)
        buffer = self._all_reduce(buffer, op, total + 1)
        failed = float(b.host(b.slice(buffer, total, total + 1))[0])
        if failed != 0.0:
            self._raise(error)
        if len(sizes) == 1:
            return [b.slice(buffer, 0, total)]
        return b.split(b.slice(buffer, 0, total), tuple(int(s) for s in sizes))

    def agree(self, stop: bool, error: BaseException | None = None) -> bool:
        """True on every rank when any rank asks to stop (a user callback's answer)."""
        (out,) = self.reduce(
            None if error else [self._host_tensor(np.array([float(stop)]))], [1], error
        )
        return float(self.backend.host(out)[0]) > 0.0

    def total(self, compute: Callable[[], Any]) -> float:
        """``compute()`` (a device scalar of this rank) summed over the ranks, as a float;
        if it raises on any rank, every rank raises :class:`DistributedError`."""
        try:
            value, error = compute(), None
        except Exception as exc:
            value, error = None, exc
        (out,) = self.reduce(None if error else [value], [1], error)
        return float(self.backend.host(out)[0])

    def host_sum(self, values: np.ndarray) -> np.ndarray:
        """Elementwise sum over ranks of a host array (counts, for example)."""
        values = np.asarray(values, np.float64)
        (out,) = self.reduce([self._host_tensor(values.ravel())], [values.size])
        return np.asarray(self.backend.to_numpy(out), np.float64).reshape(values.shape)

    def host_extrema(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Elementwise minimum of ``low`` and maximum of ``high`` over ranks (one all-reduce)."""
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        both = np.concatenate([-low.ravel(), high.ravel()])
        (out,) = self.reduce([self._host_tensor(both)], [both.size], op="max")
        host = np.asarray(self.backend.to_numpy(out), np.float64)
        return -host[: low.size].reshape(low.shape), host[low.size :].reshape(high.shape)

    def _raise(self, error: BaseException | None) -> None:
        """Every rank: learn who failed and why, then raise DistributedError."""
        b, world = self.backend, self.world_size
        text = b"" if error is None else f"{type(error).__name__}: {error}".encode()[:MESSAGE_BYTES]
        table = np.zeros((world, MESSAGE_BYTES + 1))
        table[self.rank, 0] = 0.0 if error is None else 1.0
        table[self.rank, 1 : 1 + len(text)] = np.frombuffer(text, np.uint8)
        host = np.asarray(
            b.to_numpy(self._all_reduce(self._host_tensor(table.ravel()), "sum", table.size)),
            np.float64,
        ).reshape(table.shape)
        ranks = tuple(int(r) for r in np.flatnonzero(host[:, 0] > 0))
        reasons = "; ".join(
            f"rank {r}: "
            + bytes(np.rint(host[r, 1:]).astype(np.uint8)).rstrip(b"\0").decode(errors="replace")
            for r in ranks
        )
        message = (
            f"rank(s) {', '.join(map(str, ranks))} of {world} ({self.reducer.name}) failed, so "
            f"the data-parallel run stopped on every rank: {reasons}"
        )
        if error is not None:
            message += f" (rank {self.rank}'s exception is chained as __cause__)"
            raise DistributedError(message, ranks) from error
        raise DistributedError(message, ranks)


def resolve(
    backend: Backend[Any],
    option: Any,
    *,
    per_sample: bool,
    method: str,
    device: Any,
    in_framework: bool = True,
) -> Collective | None:
    """The collective of a run, or None to run on this process's data alone.

    ``option`` is ``options["distributed"]``: None (default) uses the framework's initialized
    process group when the residuals are declared per sample; True requires it; False turns
    it off; a framework process-group object selects that group.
    """
    if option is False:
        return None
    if isinstance(option, bool) or option is None:
        group = None
    else:
        group = option
    reducer = backend.process_group(device, group)
    if reducer is None:
        if option is not None:
            raise InvalidOptionError(
                f"options['distributed'] = {option!r} needs processes started together, and "
                f"this {backend.name} run has none (PyTorch: torchrun or "
                f"torch.distributed.init_process_group; JAX: jax.distributed.initialize; NumPy "
                f"and TensorFlow do not scale out); pass False or leave it None"
            )
        return None
    if reducer.world_size == 1:  # nothing to reduce: the plain run, at no cost
        return None
    if not per_sample:
        if option is None:  # a process group run for other reasons: each rank solves alone
            return None
        raise InvalidOptionError(
            "options['distributed'] needs residuals declared per sample (options['in_axes'] "
            "or options['batched_args']): each rank's batched args are its shard of the data, "
            "and without them the ranks' residuals cannot be summed"
        )
    if not in_framework:
        raise InvalidOptionError(
            f"method {method!r} cannot run data-parallel, and a process group of "
            f"{reducer.world_size} ranks is initialized with per-sample residuals; use "
            f"method='lm' or 'trf', or pass options={{'distributed': False}} to fit each "
            f"rank's data alone"
        )
    dtype = backend.flat_dtype(device)
    return Collective(backend, reducer, device, dtype)
