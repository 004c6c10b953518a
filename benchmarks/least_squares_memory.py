"""Peak memory of ``least_squares`` at scale: one LM iteration with row chunks, against the
size of the full Jacobian it never forms.

A 6-H-H-1 tanh MLP (H = 40: 1,961 weights) on m = 1,000,000 samples of the 6-D Rosenbrock
function (inputs and targets mapped to [-1, 1], as case B), float64, per-sample Jacobians
(``options={"in_axes": (0, 0), "chunk_size": ...}``), ``max_nfev=2``: the evaluation at x0,
one Jacobian (``JᵀJ`` and ``Jᵀr`` summed over the row chunks) and one trial step. The full J
would be m × n × 8 bytes = 15.7 GB. Each framework runs in its own process, pinned to one
thread; the process reports its resident set before the call (framework and data) and its
peak (``VmHWM``), and the time of the call beside the time the ``JᵀJ`` products alone take
(one chunk's product, timed, times the number of chunks).

    python benchmarks/least_squares_memory.py                      # torch and jax, CPU
    python benchmarks/least_squares_memory.py --frameworks torch --samples 100000   # quicker
    python benchmarks/least_squares_memory.py --device cuda --hidden 68   # GPU: n ≈ 5,000

On a GPU (``--device cuda``) the peak is the framework's device allocator high-water mark
(torch ``max_memory_allocated``; JAX ``peak_bytes_in_use``), and the resident set is the
host's. Results go to ``benchmarks/results/least_squares_memory[_cuda].json``; the
least-squares section of docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _threads
from _ls_contenders import jax_mlp, torch_mlp

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "least_squares_memory.json"
GIB = 1024.0**3


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _problem(samples: int, hidden: int, seed: int = 0) -> dict[str, Any]:
    """Data and initial weights (NumPy, float64)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (samples, 6))
    y = np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)
    x /= 2.0  # U(-2, 2) onto [-1, 1]
    y = (2.0 * (y - y.min()) / (y.max() - y.min()) - 1.0).reshape(-1, 1)
    sizes = (6, hidden, hidden, 1)
    weights = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / math.sqrt(a)
        weights[f"w{i}"] = rng.uniform(-bound, bound, (a, b))
        weights[f"b{i}"] = rng.uniform(-bound, bound, b)
    return {"x": x, "y": y, "weights": weights, "sizes": sizes}


def _run_torch(problem: dict[str, Any], chunk: int, max_nfev: int, device: str) -> dict[str, Any]:
    import torch

    from dict_minimize.torch_api import least_squares

    def conv(a: Any) -> Any:
        return torch.from_numpy(a).to(device)

    x, y = conv(problem["x"]), conv(problem["y"])
    x0 = {k: conv(v) for k, v in problem["weights"].items()}

    def residual_fn(p: Any, xb: Any, yb: Any) -> Any:
        return torch_mlp(p, xb) - yb

    n = sum(v.numel() for v in x0.values())

    def make_product() -> Any:
        j = torch.randn(chunk, n, dtype=torch.float64, device=device)

        def product() -> None:
            j.mT @ j
            if j.is_cuda:
                torch.cuda.synchronize()

        return product

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = _measure(least_squares, residual_fn, x0, (x, y), chunk, max_nfev)
    if device == "cuda":
        out["device_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    out["chunk_product_s"], out["chunk_product_cpu_s"] = _time(make_product())
    return out


def _run_jax(problem: dict[str, Any], chunk: int, max_nfev: int, device: str) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from dict_minimize.jax_api import least_squares

    target = jax.devices("gpu" if device == "cuda" else "cpu")[0]

    def conv(a: Any) -> Any:
        return jax.device_put(a, target)

    x, y = conv(problem["x"]), conv(problem["y"])
    x0 = {k: conv(v) for k, v in problem["weights"].items()}

    def residual_fn(p: Any, xb: Any, yb: Any) -> Any:
        return jax_mlp(p, xb) - yb

    n = sum(v.size for v in x0.values())
    out = _measure(least_squares, residual_fn, x0, (x, y), chunk, max_nfev)
    if device == "cuda":
        out["device_peak_bytes"] = int(target.memory_stats()["peak_bytes_in_use"])
    j = conv(jax.random.normal(jax.random.key(0), (chunk, n), jnp.float64))
    gram = jax.jit(lambda a: a.T @ a)
    product = lambda: gram(j).block_until_ready()  # noqa: E731
    out["chunk_product_s"], out["chunk_product_cpu_s"] = _time(product)
    return out


def _time(product: Any) -> tuple[float, float]:
    """Median wall and CPU time of three calls of ``product``, after an untimed one."""
    product()
    walls, cpus = [], []
    for _ in range(3):
        start, cpu = time.perf_counter(), time.process_time()
        product()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return sorted(walls)[1], sorted(cpus)[1]


def _measure(
    least_squares: Any,
    residual_fn: Any,
    x0: dict[str, Any],
    args: tuple[Any, Any],
    chunk: int,
    max_nfev: int,
) -> dict[str, Any]:
    """RSS before the call, the timed call, and the peak RSS (VmHWM) after it."""
    rss_before = _status_kib("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    res = least_squares(
        residual_fn,
        x0,
        args=args,
        max_nfev=max_nfev,
        options={"in_axes": (0, 0), "chunk_size": chunk},
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _status_kib("VmHWM")
    history = res.history["cost"]
    return {
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "wall_s": wall,
        "cpu_s": cpu,  # one thread: the time the call took on the CPU, load aside
        "nfev": int(res.nfev),
        "njev": int(res.njev),
        "status": int(res.status),
        "message": str(res.message),
        "cost0": float(history[0]) if history else math.nan,
        "cost": float(res.cost),
    }


RUNNERS = {"torch": _run_torch, "jax": _run_jax}


def run_framework(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    """The body of one framework's process."""
    __import__(framework)
    _threads.pin_frameworks()
    problem = _problem(args.samples, args.hidden)
    n = sum(w.size for w in problem["weights"].values())
    out = RUNNERS[framework](problem, args.chunk_size, args.max_nfev, args.device)
    chunks = math.ceil(args.samples / args.chunk_size)
    out.update(
        framework=framework,
        samples=args.samples,
        params=n,
        sizes=list(problem["sizes"]),
        chunk_size=args.chunk_size,
        chunks=chunks,
        full_jacobian_bytes=args.samples * n * 8,
        chunk_jacobian_bytes=args.chunk_size * n * 8,
        jtj_alone_s=out["chunk_product_s"] * chunks,
        jtj_alone_cpu_s=out["chunk_product_cpu_s"] * chunks,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frameworks", nargs="+", choices=sorted(RUNNERS), default=["torch", "jax"]
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--hidden", type=int, default=40, help="width H of the 6-H-H-1 MLP")
    parser.add_argument("--chunk-size", type=int, default=16_384, help="samples per row chunk")
    parser.add_argument("--max-nfev", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, help="results JSON (default under results/)")
    parser.add_argument("--framework", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _threads.pin_env()
    os.environ["JAX_ENABLE_X64"] = "1"
    if args.device != "cpu":
        os.environ.pop("JAX_PLATFORMS", None)
    if args.framework is not None:  # a framework's process: one JSON line on stdout
        print(json.dumps(run_framework(args.framework, args)))
        return 0
    rows = []
    for framework in args.frameworks:
        command = [sys.executable, str(Path(__file__).resolve()), "--framework", framework]
        command += ["--samples", str(args.samples), "--hidden", str(args.hidden)]
        command += ["--chunk-size", str(args.chunk_size), "--max-nfev", str(args.max_nfev)]
        command += ["--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True, cwd=str(BENCH_DIR))
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            rows.append({"framework": framework, "error": f"exit {done.returncode}"})
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        peak = row.get("device_peak_bytes", row["peak_rss_kib"] * 1024)
        print(
            f"{framework}: m={row['samples']:,} n={row['params']:,}, full J "
            f"{row['full_jacobian_bytes'] / GIB:.1f} GiB; peak "
            f"{'device' if 'device_peak_bytes' in row else 'RSS'} {peak / GIB:.2f} GiB "
            f"(RSS before the call {row['rss_before_kib'] / 1024**2:.2f} GiB); call "
            f"{row['wall_s']:.1f} s ({row['cpu_s']:.1f} s CPU) for {row['njev']} Jacobian(s), "
            f"{row['nfev']} evaluations; "
            f"JᵀJ alone {row['jtj_alone_s']:.1f} s ({row['jtj_alone_cpu_s']:.1f} s CPU)",
            flush=True,
        )
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(terse=True), "cores": os.cpu_count()},
        "load_average": os.getloadavg(),
        "device": args.device,
        "threads": 1,
        "rows": rows,
    }
    path = args.out or (
        RESULTS if args.device == "cpu" else RESULTS.with_name("least_squares_memory_cuda.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {path}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
