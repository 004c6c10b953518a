"""Data-parallel Levenberg-Marquardt: time per iteration on 1 and 2 gloo processes, the measured
all-reduce cost, and the cost model for large runs on GPUs.

The problem is case B of the least-squares benchmark (a 6-12-10-8-1 tanh MLP, n = 311
weights, on 10,000 samples of the 6-D Rosenbrock function) with
``dict_minimize.torch_api.least_squares`` in float64. Each
process is pinned to one thread; with two processes each holds half of the samples (rank 0 the
first half). Rounds alternate the 1-process and 2-process runs, and the report gives medians.

    python benchmarks/distributed.py            # 5 rounds of 12 iterations (a few minutes)
    python benchmarks/distributed.py --quick    # 1 round of 4 iterations (smoke run)

Results go to ``benchmarks/results/distributed.json`` (not with ``--quick``); the tables are
printed as Markdown, as they appear in docs/benchmarks.md ("Scaling out").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _threads import pin_env  # noqa: E402

#: Assumptions of the cost model (stated in docs/benchmarks.md).
H100_FP64_FLOPS = 50e12  # sustained FP64 tensor-core rate for a large syrk/gemm (peak 67)
NVLINK_BUS_BYTES = 400e9  # NCCL all-reduce bus bandwidth within one 8-GPU NVSwitch node
IB_BUS_BYTES = 50e9  # per GPU across nodes: one 400 Gb/s InfiniBand NDR link per GPU


def cost_model(
    m: float = 1e6, n: int = 5000, gpus: tuple[int, ...] = (1, 8, 64)
) -> list[dict[str, float]]:
    """Per LM iteration: ``JᵀJ`` compute per GPU against the ring all-reduce of ``JᵀJ``,
    ``Jᵀr``, the cost and a flag (``n² + n + 3`` float64)."""
    sent = (n * n + n + 3) * 8.0
    rows = []
    for p in gpus:
        compute = 2.0 * (m / p) * n * n / H100_FP64_FLOPS  # a gemm: m·n² multiply-adds
        bus = NVLINK_BUS_BYTES if p <= 8 else IB_BUS_BYTES
        reduce = 0.0 if p == 1 else 2.0 * (p - 1) / p * sent / bus
        rows.append(
            {
                "gpus": p,
                "bytes_all_reduced": 0.0 if p == 1 else sent,
                "jtj_seconds": compute,
                "all_reduce_seconds": reduce,
                "ratio": reduce / compute,
            }
        )
    return rows


# -- one process of a run ----------------------------------------------------------------------
def worker(out: Path, iterations: int) -> None:
    """Fit case B for ``iterations`` LM iterations on this rank's half (all of it alone)."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from _ls_contenders import torch_mlp
    from _ls_problems import case_b, weight_keys

    from dict_minimize.torch_api import least_squares

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
        rank = dist.get_rank()
    data = case_b(0)
    half = data.x.shape[0] // world
    rows = slice(rank * half, (rank + 1) * half if rank < world - 1 else None)
    x = torch.tensor(data.x[rows])
    y = torch.tensor(data.y[rows])
    x0 = {k: torch.tensor(data.weights[k]) for k in weight_keys(data.sizes)}

    def residual_fn(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> Any:
        return torch_mlp(p, x) - y

    stamps: list[float] = []
    cpu: list[float] = []

    def stamp(_: Any) -> None:
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    cpu_start = time.process_time()
    start = time.perf_counter()
    res = least_squares(
        residual_fn,
        x0,
        args=(x, y),
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
        callback=stamp,
        options={"batched_args": (0, 1), "max_iter": iterations},
    )
    total = time.perf_counter() - start
    steps = np.diff([start, *stamps])
    info: dict[str, Any] = {
        "world": world,
        "rank": rank,
        "samples": int(x.shape[0]),
        "n": int(sum(v.numel() for v in x0.values())),
        "nit": int(res.nit),
        "nfev": int(res.nfev),
        "cost": float(res.cost),
        "iteration_seconds": steps.tolist(),
        "iteration_cpu_seconds": np.diff([cpu_start, *cpu]).tolist(),
        "total_seconds": total,
        "distributed": res.get("distributed"),
    }
    if world > 1:  # the all-reduce of one linearization's buffer, alone
        n = info["n"]
        buffer = torch.zeros(n * n + n + 3, dtype=torch.float64)
        times = []
        for _ in range(20):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buffer)
            times.append(time.perf_counter() - t0)
        info["all_reduce_jtj_seconds"] = statistics.median(times)
        info["all_reduce_jtj_bytes"] = buffer.numel() * 8
        dist.barrier()  # both ranks done before the group goes
        dist.destroy_process_group()
    (out / f"world{world}_rank{rank}.json").write_text(json.dumps(info))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(world: int, iterations: int, attempts: int = 2) -> list[dict[str, Any]]:
    """One run of ``world`` processes (retried once: a port taken meanwhile, say)."""
    for attempt in range(attempts):
        try:
            return _run_once(world, iterations)
        except RuntimeError as exc:
            if attempt == attempts - 1:
                raise
            print(f"retrying: {exc}", file=sys.stderr)
    raise AssertionError("unreachable")


def _run_once(world: int, iterations: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", tmp, "--iterations", str(iterations)],
                env={**env, "RANK": str(r)},
            )
            for r in range(world)
        ]
        for proc in procs:
            if proc.wait(timeout=1800) != 0:
                raise RuntimeError(f"a worker of the {world}-process run failed")
        return [
            json.loads((Path(tmp) / f"world{world}_rank{r}.json").read_text()) for r in range(world)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 4 iterations")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pin_env()
    if args.worker is not None:
        worker(args.worker, args.iterations)
        return
    rounds, iterations = (1, 4) if args.quick else (args.rounds, args.iterations)
    load_before = os.getloadavg()[0]
    runs: dict[int, list[list[dict[str, Any]]]] = {1: [], 2: []}
    for _ in range(rounds):
        for world in (1, 2):
            runs[world].append(_run(world, iterations))

    def per_iteration(world: int) -> float:
        # Iteration 1 includes building the vmapped Jacobian: the median of the others.
        return statistics.median(t for run in runs[world] for t in run[0]["iteration_seconds"][1:])

    def cpu_per_iteration(world: int) -> float:  # this process's CPU time, rank 0
        return statistics.median(
            t for run in runs[world] for t in run[0]["iteration_cpu_seconds"][1:]
        )

    one, two = per_iteration(1), per_iteration(2)
    cpu_one, cpu_two = cpu_per_iteration(1), cpu_per_iteration(2)
    last = runs[2][-1][0]
    stats = last["distributed"]
    nit = last["nit"]
    costs = {w: runs[w][-1][0]["cost"] for w in (1, 2)}
    summary = {
        "machine": f"{os.cpu_count()} cores, one thread per process",
        "load_average": [load_before, os.getloadavg()[0]],
        "rounds": rounds,
        "iterations": iterations,
        "n": last["n"],
        "samples": 10_000,
        "seconds_per_iteration": {"1 process": one, "2 processes": two},
        "speedup": one / two,
        "cpu_seconds_per_iteration_rank0": {"1 process": cpu_one, "2 processes": cpu_two},
        "all_reduces_per_iteration": stats["all_reduces"] / nit,
        "bytes_per_iteration": stats["bytes"] / nit,
        "all_reduce_seconds_per_iteration": statistics.median(
            run[0]["distributed"]["seconds"] / run[0]["nit"] for run in runs[2]
        ),
        "all_reduce_jtj_seconds": statistics.median(
            run[0]["all_reduce_jtj_seconds"] for run in runs[2]
        ),
        "all_reduce_jtj_bytes": last["all_reduce_jtj_bytes"],
        "final_cost": costs,
        "cost_model": cost_model(),
    }
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| processes | wall s per LM iteration | speed-up | CPU s per iteration (rank 0) |")
    print("|---|---|---|---|")
    print(f"| 1 | {one:.4f} | 1.00x | {cpu_one:.4f} |")
    print(f"| 2 | {two:.4f} | {one / two:.2f}x | {cpu_two:.4f} |")
    print()
    print(
        f"all-reduces per iteration {summary['all_reduces_per_iteration']:.1f}, "
        f"{summary['bytes_per_iteration'] / 1e6:.3f} MB per iteration, "
        f"{summary['all_reduce_seconds_per_iteration'] * 1e3:.2f} ms per iteration in all-reduce "
        f"(waiting included); one JᵀJ buffer ({summary['all_reduce_jtj_bytes'] / 1e6:.3f} MB) "
        f"alone: {summary['all_reduce_jtj_seconds'] * 1e3:.3f} ms; final cost 1 process "
        f"{costs[1]:.10g}, 2 processes {costs[2]:.10g}"
    )
    print()
    print("| GPUs | bytes all-reduced per iteration | JᵀJ per GPU | all-reduce | ratio |")
    print("|---|---|---|---|---|")
    for row in summary["cost_model"]:
        print(
            f"| {row['gpus']} | {row['bytes_all_reduced'] / 1e6:.0f} MB | "
            f"{row['jtj_seconds'] * 1e3:.1f} ms | {row['all_reduce_seconds'] * 1e3:.2f} ms | "
            f"{row['ratio']:.3f} |"
        )
    if not args.quick:
        path = HERE / "results" / "distributed.json"
        path.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
        print(f"\nwrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
