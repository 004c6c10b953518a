"""``fit``'s own state in the checkpoints of its least-squares run.

The loop's checkpoint (:mod:`dict_minimize.solvers.checkpoint`) holds the solver state; a
``fit`` adds what its validation early stopping carries across epochs: the history, the best
validation MSE, its epoch and weights, and the count of epochs without improvement. ``fit``
draws no random numbers, so there is no RNG state to keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dict_minimize._errors import CheckpointError
from dict_minimize._tree import TreeSpec
from dict_minimize.backends._protocol import Backend
from dict_minimize.solvers.checkpoint import as_list, floats


class FitCheckpoint:
    """Saves and restores a ``fit`` tracker (see ``training._core._Tracker``).

    Parameters
    ----------
    tracker : _Tracker
        The early-stopping state, updated in place by :meth:`load`.
    backend : Backend
        The framework adapter.
    spec : TreeSpec
        Layout of the model's parameters (the best weights are stored flat).
    device : object
        Where the parameters live.
    """

    kind = "fit"

    def __init__(self, tracker: Any, backend: Backend[Any], spec: TreeSpec, device: Any) -> None:
        self.tracker = tracker
        self.backend = backend
        self.spec = spec
        self.device = device
        self.dtype = backend.flat_dtype(device)

    def save(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        t, b = self.tracker, self.backend
        meta = {
            "best_val": float(t.best_val),
            "best_epoch": int(t.best_epoch),
            "fails": int(t.fails),
            "reason": str(t.reason),
            "history": sorted(t.history),
        }
        arrays = {f"history.{k}": floats(v) for k, v in t.history.items()}
        if t.best_x is not None:  # the best validation weights, raveled in x0's layout
            leaves = self.spec.match(t.best_x, "best weights", is_leaf=b.is_leaf)
            arrays["best_x"] = np.asarray(b.to_numpy(b.ravel(leaves, self.spec, self.dtype)))
        return meta, arrays

    def load(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        t, b = self.tracker, self.backend
        try:
            best_val, best_epoch = float(meta["best_val"]), int(meta["best_epoch"])
            fails, reason = int(meta["fails"]), str(meta["reason"])
            history = {str(k): as_list(arrays[f"history.{k}"]) for k in meta["history"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint's fit state is invalid: {exc!r}") from None
        best_x = None
        if "best_x" in arrays:
            flat = np.asarray(arrays["best_x"])
            if flat.shape != (self.spec.size,) or flat.dtype.kind != "f":
                raise CheckpointError(
                    f"the checkpoint's best weights have shape {flat.shape}, expected "
                    f"({self.spec.size},)"
                )
            device_flat = b.from_numpy(flat, self.device, self.dtype)
            best_x = self.spec.unflatten(b.unravel(device_flat, self.spec))
        t.history, t.best_val, t.best_epoch = history, best_val, best_epoch
        t.fails, t.reason, t.best_x = fails, reason, best_x
