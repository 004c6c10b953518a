"""The runs that tests/test_checkpoint.py kills with SIGKILL, and their problems.

Run as ``python tests/_checkpoint_worker.py BACKEND KIND PATH KILL_AT``: it starts the
KIND run (``least_squares`` or ``fit``) on BACKEND with checkpoints written to PATH, and
sends itself SIGKILL at the KILL_AT-th evaluation once a checkpoint exists. The test imports
the same problem builders, so the resumed and the uninterrupted runs solve the same problem.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cases import FACTORIES, Case

#: Backends whose residual function is compiled (its Python body runs only while tracing):
#: their worker kills itself from the callback, called once per iteration, instead.
COMPILED = ("jax", "tensorflow")

_T = np.linspace(0.0, 3.0, 60)
_Y = (
    2.5 * np.exp(-1.3 * _T)
    + 0.4 * np.sin(3.1 * _T)
    + 0.01 * np.random.default_rng(0).standard_normal(60)
)


def least_squares_problem(case: Case) -> tuple[Callable[..., Any], Any, dict[str, Any]]:
    """``(residual_fn, x0, kwargs)``: a 4-parameter exponential-plus-sine fit (Nielsen, per
    sample, geodesic acceleration, so that every piece of the loop state matters)."""
    xp = case.xp

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["amp"]["a"] * xp.exp(-p["k"] * t) + p["amp"]["b"] * xp.sin(p["w"] * t) - y

    x0 = {
        "amp": {"a": case.tensor(1.0), "b": case.tensor(0.1)},
        "k": case.tensor(0.5),
        "w": case.tensor(2.6),
    }
    kwargs = {
        "args": (case.tensor(_T), case.tensor(_Y)),
        "ftol": 1e-15,
        "xtol": 1e-15,
        "gtol": 1e-15,
        "max_nfev": 80,
        "options": {"batched_args": (0, 1), "geodesic": True},
    }
    return residual_fn, x0, kwargs


def fit_problem() -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(model, inputs, targets, kwargs)`` for torch's ``fit``: a 1-6-1 tanh MLP with
    normalization and validation early stopping."""
    import torch

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(60, 1, generator=gen, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * x) + 0.2 * torch.randn(60, 1, generator=gen, dtype=torch.float64)
    xv = torch.linspace(-2, 2, 40, dtype=torch.float64).reshape(-1, 1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()
    kwargs = {
        "val_data": (xv, torch.sin(2 * xv)),
        "epochs": 40,
        "max_fail": 8,
        "min_grad": 0.0,
        "normalize": True,
    }
    return net, x, y, kwargs


def _kill_when(path: str, kill_at: int) -> Callable[[], None]:
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] >= kill_at and os.path.exists(path):
            os.kill(os.getpid(), signal.SIGKILL)

    return tick


def main(backend: str, kind: str, path: str, kill_at: int) -> None:
    case = FACTORIES[backend][1]()
    tick = _kill_when(path, kill_at)
    if kind == "least_squares":
        residual_fn, x0, kwargs = least_squares_problem(case)
        compiled = backend in COMPILED

        def killing_residual(p: Any, t: Any, y: Any) -> Any:
            if not compiled:
                tick()
            return residual_fn(p, t, y)

        options = {**kwargs.pop("options"), "checkpoint": path, "checkpoint_every": 2}
        case.api.least_squares(
            killing_residual,
            x0,
            callback=(lambda params: tick()) if compiled else None,
            options=options,
            **kwargs,
        )
    else:
        from dict_minimize.torch_api import fit

        net, x, y, kwargs = fit_problem()
        net.register_forward_pre_hook(lambda module, inputs: tick())
        fit(net, x, y, checkpoint=path, checkpoint_every=3, **kwargs)
    raise SystemExit("the run ended before it was killed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
