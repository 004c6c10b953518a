"""Checkpoints of the least-squares loop: atomic, pickle-free ``.npz`` files.

A checkpoint holds everything the loop of :mod:`.levenberg_marquardt` carries from one
iteration to the next (the point, the damping state, the running Marquardt scaling, the
counters and the history), plus whatever a caller adds (``fit`` adds its early-stopping
state and best weights). A run resumed from it continues exactly where the saved run was:
on the CPU in float64 it ends at the same point, bit for bit, as a run never interrupted.

Format (version 1)
------------------
A NumPy ``.npz`` archive, written and read with ``allow_pickle=False`` (nothing in it is
ever unpickled):

* ``meta``: a ``uint8`` array holding UTF-8 JSON: ``{"format": "dict_minimize.checkpoint",
  "version": 1, "problem": {...}, "state": {...}, "extra": {...}, "sha256": ...}``. The
  problem signature (kind, method, loss, keys, shapes, dtypes, residual count...) is
  compared with the resuming call's; ``sha256`` covers every other array.
* every other entry is a numeric array of the state (``x``, ``history.cost``, ...; the
  caller's under ``extra.<name>``).

Writes are atomic: the archive goes to a temporary file in the target's directory, is
flushed and fsynced, then renamed over the target with :func:`os.replace` (and the directory
is fsynced), so a crash at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dict_minimize._errors import CheckpointError, InvalidOptionError

_savez: Callable[..., None] = np.savez  # (its stubs type **arrays as its own keywords)

FORMAT = "dict_minimize.checkpoint"
VERSION = 1

PathLike = str | os.PathLike[str]


class CheckpointExtra(Protocol):
    """State that a caller of the loop saves alongside it (``fit``'s early stopping)."""

    kind: str

    def save(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able scalars and numeric arrays to store."""

    def load(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`save` returned."""


@dataclass
class Checkpoint:
    """The content of one checkpoint file.

    Attributes
    ----------
    problem : dict
        The signature of the problem that wrote it (compared on resume).
    state : dict
        JSON-able scalars of the loop state (counters, damping).
    arrays : dict of numpy.ndarray
        The loop's arrays (``x``, ``history.cost``, ...).
    extra : dict
        The caller's scalars; its arrays are in ``arrays`` under ``extra.<name>``.
    """

    problem: dict[str, Any]
    state: dict[str, Any]
    arrays: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)

    def extra_arrays(self) -> dict[str, np.ndarray]:
        """The caller's arrays, without their ``extra.`` prefix."""
        return {k[6:]: v for k, v in self.arrays.items() if k.startswith("extra.")}


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write(path: PathLike, checkpoint: Checkpoint, *, is_writer: bool = True) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its directory must exist. An existing file is replaced.
    checkpoint : Checkpoint
        What to write.
    is_writer : bool
        False makes this a no-op: in a data-parallel run every rank keeps the same state but
        only one (rank 0) should write it, while all of them read it on resume.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
    >>> write(path, Checkpoint({"kind": "demo"}, {"nit": 3}, {"x": np.arange(3.0)}))
    >>> read(path).arrays["x"]
    array([0., 1., 2.])
    """
    if not is_writer:
        return
    arrays = {k: np.asarray(v) for k, v in checkpoint.arrays.items()}
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf" or name == "meta":
            raise ValueError(f"checkpoint array {name!r} must be numeric, got {array.dtype}")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "problem": checkpoint.problem,
        "state": checkpoint.state,
        "extra": checkpoint.extra,
        "sha256": _digest(arrays),
    }
    # Python floats round-trip exactly through JSON (shortest repr); inf/nan are allowed.
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            _savez(handle, meta=blob, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (POSIX; not on Windows)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read(path: PathLike) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`write`.

    Raises
    ------
    CheckpointError
        If the file is missing, is not such a checkpoint, is truncated or corrupt (bad zip,
        bad CRC, bad checksum), or was written by another version of the format.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise CheckpointError(
            f"no checkpoint file at {where!r}; to start afresh, do not pass resume"
        )
    try:
        archive = np.load(where, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{where!r} holds a single array, not a checkpoint")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{where!r} is not a readable checkpoint (truncated, corrupt or not written by "
            f"dict_minimize): {type(exc).__name__}: {exc}"
        ) from None
    blob = arrays.pop("meta", None)
    try:
        if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError("no metadata")
        meta = json.loads(blob.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a dict_minimize checkpoint")
    except ValueError as exc:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise CheckpointError(f"{where!r} is not a dict_minimize checkpoint: {exc}") from None
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{where!r} has checkpoint format version {meta.get('version')!r}; this version of "
            f"dict_minimize reads version {VERSION}"
        )
    if meta.get("sha256") != _digest(arrays):
        raise CheckpointError(f"{where!r} is corrupt: its arrays do not match their checksum")
    try:
        return Checkpoint(
            dict(meta["problem"]), dict(meta["state"]), arrays, dict(meta.get("extra") or {})
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where!r} is not a dict_minimize checkpoint: {exc}") from None


def check_problem(checkpoint: Checkpoint, expected: Mapping[str, Any], path: PathLike) -> None:
    """Refuse to resume a run of a different problem (another method, keys, shapes...)."""
    saved = checkpoint.problem
    for key, want in expected.items():
        have = saved.get(key)
        if have != want:
            raise CheckpointError(
                f"checkpoint {os.fspath(path)!r} was saved by a run with {key} = {have!r}, "
                f"but this run has {key} = {want!r}; resume with the same problem (or start "
                f"afresh without resume)"
            )


def require_array(
    checkpoint: Checkpoint, name: str, shape: tuple[int, ...], path: PathLike
) -> np.ndarray:
    """The array ``name`` of ``checkpoint``, which must be finite and have ``shape``."""
    array = checkpoint.arrays.get(name)
    if array is None or array.shape != shape or array.dtype.kind != "f":
        got = "missing" if array is None else f"{array.dtype} of shape {array.shape}"
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r}: {name!r} is {got}, expected floats of shape {shape}"
        )
    if not np.isfinite(array).all():
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {name!r} is not finite")
    return array


@dataclass
class Checkpointer:
    """Writes the loop's state every ``every`` accepted iterations.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (replaced atomically at each write).
    every : int
        Write after every ``every``-th accepted iteration.
    problem : dict
        The problem signature stored with the state (see :func:`check_problem`).
    extra : CheckpointExtra, optional
        The caller's state, saved with each checkpoint.
    is_writer : bool
        Whether this process writes (rank 0 of a data-parallel run); every process reads.
    """

    path: PathLike
    every: int
    problem: dict[str, Any]
    extra: CheckpointExtra | None = None
    is_writer: bool = True
    written: int = 0

    def due(self, nit: int) -> bool:
        """Whether the state after accepted iteration ``nit`` is to be written."""
        return nit % self.every == 0

    def save(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write the loop's state (and the caller's) to :attr:`path`."""
        extra: dict[str, Any] = {}
        all_arrays = dict(arrays)
        if self.extra is not None:
            extra, extra_arrays = self.extra.save()
            all_arrays.update({f"extra.{k}": v for k, v in extra_arrays.items()})
        write(
            self.path,
            Checkpoint(self.problem, state, all_arrays, extra),
            is_writer=self.is_writer,
        )
        self.written += 1


def check_path(name: str, value: Any, must_exist: bool) -> str:
    """Validate a checkpoint path option: a str or PathLike in an existing directory."""
    if not isinstance(value, str | os.PathLike):
        raise InvalidOptionError(f"{name} must be a file path (str or os.PathLike), got {value!r}")
    path = os.fspath(value)
    if must_exist:
        return path
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise InvalidOptionError(
            f"{name} = {path!r}: the directory {directory!r} does not exist; create it first"
        )
    if os.path.isdir(path):
        raise InvalidOptionError(f"{name} = {path!r} is a directory; give a file path")
    return path


def check_every(name: str, value: Any) -> int:
    """Validate ``checkpoint_every``: a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def floats(values: list[float]) -> np.ndarray:
    """A history list (Python floats, or ints for counters) as a float64 (int64) array;
    exact either way."""
    kind = np.int64 if values and all(type(v) is int for v in values) else np.float64
    return np.asarray(values, dtype=kind).reshape(-1)


def as_list(array: np.ndarray | None) -> list[Any]:
    """A history array back to a list of Python floats (or ints)."""
    return [] if array is None else [v.item() for v in np.asarray(array).reshape(-1)]
