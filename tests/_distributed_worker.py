"""One rank of a two-process gloo run, started by tests/test_distributed.py.

Every scenario is also runnable on one process and the whole data (``shard=None``): the test
runs that reference itself and compares. Each rank saves what it got to
``<out>/<scenario>_rank<r>.npz`` (arrays) and ``.json`` (errors, timings).

Usage: ``RANK=r WORLD_SIZE=2 MASTER_ADDR=... MASTER_PORT=... python _distributed_worker.py OUT``
"""

from __future__ import annotations

import datetime
import faulthandler
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dict_minimize import DistributedError
from dict_minimize.datasets.nist_strd import load
from dict_minimize.torch_api import fit, least_squares

#: Unequal shards: rank 0 holds the first ``CUT`` samples of each data set, rank 1 the rest.
CUT = {"nist": 15, "train": 35, "val": 15, "misra": 5}


def _part(array: np.ndarray, name: str, shard: int | None) -> torch.Tensor:
    """The whole array (shard None) or one rank's part of it."""
    if shard is not None:
        array = array[: CUT[name]] if shard == 0 else array[CUT[name] :]
    return torch.tensor(np.ascontiguousarray(array), dtype=torch.float64)


def _flat(params: Any) -> np.ndarray:
    return np.concatenate([np.asarray(v.detach(), np.float64).ravel() for v in params.values()])


def _thurber(
    shard: int | None, callback: Callable[[Any], Any] | None = None, **options: Any
) -> Any:
    """Thurber (37 points, 7 parameters) from NIST's first start, default tolerances."""
    prob = load("Thurber")
    x0 = {k: torch.tensor(v, dtype=torch.float64) for k, v in prob.start1.items()}
    return least_squares(
        lambda b, x, y: prob.residual(b, x, y, torch),
        x0,
        args=(_part(np.array(prob.x), "nist", shard), _part(np.array(prob.y), "nist", shard)),
        callback=callback,
        options={"batched_args": (0, 1), **options},
    )


def nist(shard: int | None) -> dict[str, Any]:
    """Thurber on two ranks; the parameters after every iteration too."""
    iterates: list[np.ndarray] = []
    res = _thurber(shard, lambda p: iterates.append(_flat(p)))
    return {
        "x": _flat(res.x),
        "cost": np.array([res.cost]),
        "iterates": np.array(iterates),
        "counts": np.array([res.nfev, res.njev, res.nit, res.status]),
        "fun": np.asarray(res.fun),
    }


def misra_robust(shard: int | None) -> dict[str, Any]:
    """Misra1a with the Cauchy loss and an active bound: method "trf", reflective steps."""
    prob = load("Misra1a")
    x0 = {k: torch.tensor(v, dtype=torch.float64) for k, v in prob.start2.items()}
    x0["b1"] = torch.tensor(200.0, dtype=torch.float64)  # inside the box; the optimum is not
    res = least_squares(
        lambda b, x, y: prob.residual(b, x, y, torch),
        x0,
        args=(_part(np.array(prob.x), "misra", shard), _part(np.array(prob.y), "misra", shard)),
        ub_dict={"b1": 230.0},
        method="trf",
        loss="cauchy",
        f_scale=0.05,
        options={"batched_args": (0, 1)},
    )
    return {"x": _flat(res.x), "cost": np.array([res.cost]), "nfev": np.array([res.nfev])}


def _mlp_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (130, 2))
    y = (2.5 - x[:, :1]) ** 2 + 2.5 * (x[:, 1:] - x[:, :1] ** 2) ** 2
    return {"x": x[:90], "y": y[:90], "xv": x[90:], "yv": y[90:]}


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank
    return torch.nn.Sequential(
        torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()


def mlp_fit(shard: int | None) -> dict[str, Any]:
    """The torch fit helper: normalization, validation MSE and geodesic steps all global."""
    data = _mlp_data()
    model = _mlp()
    out = fit(
        model,
        _part(data["x"], "train", shard),
        _part(data["y"], "train", shard),
        val_data=(_part(data["xv"], "val", shard), _part(data["yv"], "val", shard)),
        epochs=12,
        normalize=True,
        max_fail=100,
    )
    return {
        "x": _flat(dict(model.named_parameters())),
        "loss": np.array(out.history["loss"]),
        "val_loss": np.array(out.history["val_loss"]),
        "best_epoch": np.array([out.best_epoch]),
    }


def mlp_matrix_free(shard: int | None) -> dict[str, Any]:
    """least_squares on the MLP by conjugate gradients: JᵀJv products all-reduced."""
    data = _mlp_data()
    model = _mlp()
    x0 = {k: v.detach().clone() for k, v in model.named_parameters()}

    def residual_fn(p: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, p, (x,)) - y

    res = least_squares(
        residual_fn,
        x0,
        args=(_part(data["x"], "train", shard), _part(data["y"], "train", shard)),
        options={"batched_args": (0, 1), "linear_solver": "cg", "max_iter": 8, "geodesic": True},
    )
    return {"x": _flat(res.x), "cost": np.array([res.cost]), "nfev": np.array([res.nfev])}


def failure(rank: int) -> dict[str, Any]:
    """residual_fn raises on rank 1 at its fourth evaluation: both ranks must stop."""
    calls = [0]

    def residual_fn(p: Any, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if rank == 1 and calls[0] == 4:
            raise ValueError("rank 1 cannot evaluate its residuals")
        return p["a"] * torch.exp(-p["k"] * t) - y

    t = torch.linspace(0, 3, 30, dtype=torch.float64)[rank * 12 :]
    x0 = {k: torch.tensor(1.0, dtype=torch.float64) for k in ("a", "k")}
    start = time.perf_counter()
    try:
        least_squares(
            residual_fn,
            x0,
            args=(t, 2 * torch.exp(-1.5 * t) + 0.1),
            options={"batched_args": (0, 1)},
        )
    except DistributedError as exc:
        return {
            "error": type(exc).__name__,
            "message": str(exc),
            "ranks": list(exc.ranks),
            "cause": repr(exc.__cause__),
            "has_result": hasattr(exc, "result"),
            "seconds": time.perf_counter() - start,
        }
    return {"error": None, "seconds": time.perf_counter() - start}


def checkpoint_resume(rank: int, out: Path) -> dict[str, Any]:
    """Thurber stopped after 5 iterations with a checkpoint every 2, then resumed by both
    ranks from rank 0's file. Each rank names its own file: only rank 0's may exist."""
    calls = [0]

    def stop_at_5(_: Any) -> bool:
        calls[0] += 1
        return calls[0] >= 5

    mine = out / f"checkpoint_rank{rank}.npz"
    first = _thurber(rank, stop_at_5, checkpoint=str(mine), checkpoint_every=2)
    wrote = mine.exists()
    torch.distributed.barrier()  # rank 0's file is complete before anyone reads it
    res = _thurber(rank, resume=str(out / "checkpoint_rank0.npz"))
    return {
        "x": _flat(res.x),
        "first_nit": np.array([first.nit]),
        "wrote": np.array([wrote]),
        "counts": np.array([res.nfev, res.njev, res.nit, res.status]),
    }


SCENARIOS: dict[str, Callable[[int | None], dict[str, Any]]] = {
    "nist": nist,
    "misra_robust": misra_robust,
    "mlp_fit": mlp_fit,
    "mlp_matrix_free": mlp_matrix_free,
}


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = torch.distributed.get_rank()
    for name, scenario in SCENARIOS.items():
        np.savez(out / f"{name}_rank{rank}.npz", **scenario(rank))
    np.savez(out / f"resume_rank{rank}.npz", **checkpoint_resume(rank, out))
    (out / f"failure_rank{rank}.json").write_text(json.dumps(failure(rank)))
    torch.distributed.barrier()  # both ranks done before the group goes
    torch.distributed.destroy_process_group()
    # Everything is saved. torch 2.13's gloo can abort at interpreter finalization ("terminate
    # called without an active exception", no Python frame; about 1 run in 20 here), after
    # destroy_process_group: leave without running the finalizers.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    faulthandler.enable()  # a native abort (gloo) still shows where Python was
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
