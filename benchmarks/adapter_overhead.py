"""Adapter overhead: this project's APIs and dict-minimize 0.0.4 against raw scipy.

Every contender runs exactly 100 L-BFGS-B iterations (``maxiter=100``, ``ftol=gtol=0``) of the
same Rosenbrock-type problem split over four tensors (``_problems.py``) with a hand-written
gradient, at several sizes:

* raw ``scipy.optimize.minimize`` on the flat NumPy problem (the baseline);
* this project's ``numpy_api``, ``torch_api`` (and ``tensorflow_api``, ``jax_api`` when they
  import), each with the gradient written in its framework (``jac=True``), plus a ``jac=False``
  row where the framework's autodiff supplies the gradient;
* dict-minimize 0.0.4's API of each framework, in its own virtual environment and process
  (``_peers.py``);
* "scipy + minimal glue": raw scipy driving the framework objective through the least glue
  code possible, the floor for any adapter around that objective.

A verification run of each contender checks that it performs the same iterations (``nit``,
``nfev``) and ends at the same point as raw scipy. Then rounds of timed samples interleave all
contenders (A, B, C, A, B, C, ...), in this process and in the peer worker alternately (never at
once), and the report gives medians and the median of the per-round ratios to raw scipy.

Run ``python benchmarks/adapter_overhead.py --help``; ``benchmarks/run_all.py`` runs it for
``make bench``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _threads

THREAD_ENV = _threads.pin_env()

import _contenders as C  # noqa: E402  (the thread environment must be set first)
import _problems as P  # noqa: E402
import _report  # noqa: E402
import _timing  # noqa: E402
import numpy as np  # noqa: E402
from _peers import ROOT, PeerWorker, peer_python  # noqa: E402

PEER = "dict-minimize 0.0.4"
SIZES = (10, 10_000, 1_000_000)
QUICK_SIZES = (10, 1_000)
RESULTS = ROOT / "benchmarks" / "results" / "adapter_overhead.json"
DOC = ROOT / "docs" / "benchmarks.md"
IMAGE = ROOT / "docs" / "img" / "adapter_overhead.png"


@dataclass
class Row:
    """A contender as the timing loop sees it: where it runs does not matter any more."""

    name: str
    kind: str
    framework: str
    sample: Callable[[int], tuple[float, float]]  # number of runs -> (wall, cpu) s per run
    check: dict[str, Any]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def machine() -> dict[str, Any]:
    """CPU model, core count and OS."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(terse=True)}


def our_module(framework: str) -> Any:
    """This project's API module for ``framework``, or None when it does not import."""
    name = f"dict_minimize.{framework}_api"
    if importlib.util.find_spec("dict_minimize") is None or not C.available(framework):
        return None
    if importlib.util.find_spec(name) is None:
        return None
    module = importlib.import_module(name)
    root = Path(sys.modules["dict_minimize"].__file__ or "").resolve().parent.parent
    if root != ROOT:
        raise RuntimeError(f"dict_minimize imports from {root}, not from this checkout {ROOT}")
    return module


def local_contenders(problem: P.Problem, frameworks: list[str], glue: bool) -> list[C.Contender]:
    """Raw scipy and this project's APIs (and the glue floors), in framework order."""
    out = [C.raw_scipy(problem)]
    for fw in frameworks:
        module = our_module(fw)
        if module is None:
            continue
        label = f"{fw}_api"
        out.append(C.api(module, fw, problem, label=label, kind="ours", full_output=True))
        if fw != "numpy":
            out.append(
                C.api(
                    module,
                    fw,
                    problem,
                    label=f"{label}, jac=False ({C.AUTODIFF[fw]})",
                    kind="ours",
                    full_output=True,
                    autodiff=True,
                )
            )
            if glue:
                out.append(C.glue(fw, problem))
    return out


def build_rows(
    problem: P.Problem, frameworks: list[str], peer: PeerWorker | None, glue: bool
) -> list[Row]:
    """Verify every contender (also its warm-up) and return the rows in timing order.

    ``glue`` adds the diagnostic rows: the glue floors and raw scipy timed in the peer process
    (a cross-check that both processes time alike).
    """
    local = local_contenders(problem, frameworks, glue)
    reference = local[0].verify()
    rows: list[Row] = []
    for c in local:
        check = reference if c is local[0] else c.verify()
        info: dict[str, Any] = {
            "nit": check.nit,
            "nfev": check.nfev,
            "x_maxdiff": float(np.max(np.abs(check.x - reference.x))),
        }
        rows.append(Row(c.name, c.kind, c.framework, _local_sampler(c), info))
    if peer is not None:
        shared = [fw for fw in frameworks if fw in peer.frameworks]
        for name, peer_info in peer.setup(problem.n, shared, raw=glue).items():
            kind, framework = peer_info.pop("kind"), peer_info.pop("framework")
            peer_info["x_maxdiff"] = float(np.max(np.abs(peer_info.pop("x") - reference.x)))
            rows.append(Row(name, kind, framework, _peer_sampler(peer, name), peer_info))
    for row in rows:
        row.check["same_path"] = (row.check["nit"], row.check["nfev"]) == (
            reference.nit,
            reference.nfev,
        )
    # Interleave by framework: ours, the peer's, the floor; the peer's raw scipy last.
    order = {fw: i for i, fw in enumerate(C.FRAMEWORKS)}
    rank = {"scipy": 0, "ours": 1, PEER: 2, "glue": 3}

    def key(row: Row) -> tuple[int, int, int]:
        in_peer = "peer" in row.name
        return (in_peer, order[row.framework] if row.kind != "scipy" else -1, rank[row.kind])

    return sorted(rows, key=key)


def _local_sampler(c: C.Contender) -> Callable[[int], tuple[float, float]]:
    return lambda number: _timing.sample(c.run, number)


def _peer_sampler(peer: PeerWorker, name: str) -> Callable[[int], tuple[float, float]]:
    return lambda number: peer.time(name, number)


def measure(
    n: int,
    frameworks: list[str],
    peer: PeerWorker | None,
    repeats: int,
    budget: float,
    glue: bool,
    clock: str,
) -> dict[str, Any]:
    """Verify, then time all contenders of size ``n`` in interleaved rounds."""
    problem = P.make_problem(n)
    print(f"\n== {n} parameters: verification runs", flush=True)
    rows = build_rows(problem, frameworks, peer, glue)
    base = rows[0]
    for row in rows:
        c = row.check
        flag = "" if c["same_path"] else "   <- different path than raw scipy"
        print(
            f"  {row.name:58s} nit {c['nit']:4d}  nfev {c['nfev']:4d}  "
            f"max|dx| {c['x_maxdiff']:.1e}{flag}"
        )
    # Runs per sample: enough back-to-back runs of raw scipy to fill `budget` seconds.
    one = base.sample(1)[0]
    number = max(1, round(budget / one))
    print(f"  timing: {repeats} rounds x {number} run(s) per contender", flush=True)
    for r in range(repeats):
        for row in rows:
            wall, cpu = row.sample(number)
            row.wall.append(wall)
            row.cpu.append(cpu)
        print(f"  round {r + 1}/{repeats} done", flush=True)
    peer_base = next((row for row in rows if row.kind == "scipy" and "peer" in row.name), None)
    out_rows = []
    for row in rows:
        entry: dict[str, Any] = {
            "name": row.name,
            "kind": row.kind,
            "framework": row.framework,
            **row.check,
        }
        for which in ("wall", "cpu"):
            samples, baseline = getattr(row, which), getattr(base, which)
            ratios = [s / b for s, b in zip(samples, baseline)]
            q1, q3 = _timing.spread(ratios)
            entry[which] = {
                "median_s": _timing.median(samples),
                "samples_s": samples,
                "ratio": _timing.median(ratios),
                "ratio_q1": q1,
                "ratio_q3": q3,
                "ratio_of_medians": _timing.median(samples) / _timing.median(baseline),
            }
            if row.kind == PEER and peer_base is not None:
                # The same ratio against the raw scipy timed inside the peer process.
                entry[which]["ratio_in_peer_process"] = _timing.paired_ratio(
                    samples, getattr(peer_base, which)
                )
        entry.update({k: entry[clock][k] for k in ("median_s", "ratio", "ratio_q1", "ratio_q3")})
        out_rows.append(entry)
    return {"number": number, "repeats": repeats, "clock": clock, "rows": out_rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description="Adapter overhead against raw scipy and dict-minimize 0.0.4 (L-BFGS-B)."
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, few rounds")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"default {SIZES}")
    parser.add_argument(
        "--frameworks",
        nargs="+",
        choices=C.FRAMEWORKS,
        help="default: every installed framework (numpy and torch with --quick)",
    )
    parser.add_argument("--repeats", type=int, help="rounds per size (default 15; 9 above 1e5)")
    parser.add_argument("--budget", type=float, help="seconds per timed sample (default 0.1)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="what the table reports (both are recorded): process CPU time (default; robust "
        "to other tenants of a shared machine, every contender being single-threaded) or wall",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip dict-minimize 0.0.4")
    parser.add_argument(
        "--diagnostics-max",
        type=int,
        default=100_000,
        help="largest size with the diagnostic rows (glue floors, raw scipy in the peer "
        "process); default 1e5: at 1e6 every run takes ~25 s and the rows add little",
    )
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS})")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="measure nothing: report (and with --docs publish) an earlier results JSON",
    )
    parser.add_argument(
        "--docs", action="store_true", help="rewrite the table in docs/benchmarks.md and the plot"
    )
    args = parser.parse_args(argv)

    if args.from_json is not None:
        results: dict[str, Any] = json.loads(args.from_json.read_text())
        select_clock(results, args.clock)
        report(results, args.from_json, args.docs)
        return results
    out = args.out or (
        Path(tempfile.gettempdir()) / "adapter_overhead.quick.json" if args.quick else RESULTS
    )
    results = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    report(results, out, args.docs)
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every size; the results as written to the JSON file."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    frameworks = args.frameworks or (
        ["numpy", "torch"] if args.quick else [fw for fw in C.FRAMEWORKS if C.available(fw)]
    )
    budget = args.budget or (0.02 if args.quick else 0.1)
    peer = None
    if not args.no_peers:
        python = peer_python()
        if python is None:
            print(f"note: no .bench-venv; skipping {PEER} (run_all.py --setup-peers makes it)")
        else:
            peer = PeerWorker(python)
    try:
        per_size = {}
        for n in sizes:
            # Above 1e5 a run takes seconds; 9 rounds keep the interquartile ranges tight.
            default = (3 if args.quick else 15) if n <= 100_000 else (1 if args.quick else 9)
            diagnostics = n <= args.diagnostics_max
            per_size[str(n)] = measure(
                n, frameworks, peer, args.repeats or default, budget, diagnostics, args.clock
            )
    finally:
        if peer is not None:
            peer.close()
    return {
        "benchmark": "adapter_overhead",
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "threads": "OMP/MKL/OpenBLAS=1, torch.set_num_threads(1), TF intra/inter-op 1, "
        "XLA_FLAGS single-threaded Eigen",
        "thread_env": THREAD_ENV,
        "versions": {
            "main": {**C.versions(), "dict_minimize (this project)": _our_version()},
            "peer": peer.versions if peer is not None else {},
        },
        "config": {
            "method": P.METHOD,
            "maxiter": P.MAXITER,
            "options": P.OPTIONS,
            "clock": args.clock,
        },
        "sizes": per_size,
    }


def select_clock(results: dict[str, Any], clock: str) -> None:
    """Make ``clock``'s medians and ratios the ones every report shows."""
    results["config"]["clock"] = clock
    for size in results["sizes"].values():
        size["clock"] = clock
        for row in size["rows"]:
            row.update({k: row[clock][k] for k in ("median_s", "ratio", "ratio_q1", "ratio_q3")})


def report(results: dict[str, Any], path: Path, docs: bool) -> None:
    """Print the table and target verdicts; with ``docs``, publish them and the plot."""
    print("\n" + _report.table(results))
    print("\nTargets:")
    for desc, ok in _report.verdicts(results):
        print(f"  {'met   ' if ok else 'MISSED'} {desc}")
    print(f"\nresults: {path}")
    if docs:
        _report.plot(results, IMAGE)
        image = os.path.relpath(IMAGE, DOC.parent)
        if _report.update_docs(results, DOC, image):
            print(f"updated {DOC.relative_to(ROOT)} and {IMAGE.relative_to(ROOT)}")
        else:
            print(f"{DOC} has no {_report.BEGIN} marker; wrote only {IMAGE}")


def _our_version() -> str:
    try:
        return str(importlib.import_module("dict_minimize").__version__)
    except (ImportError, AttributeError):
        return "?"


if __name__ == "__main__":
    main()
