"""Run every benchmark (``make bench``); ``--quick`` is a smoke run.

Each benchmark runs in its own process, so each starts with a clean one-thread environment.
A full run rewrites the generated parts of docs/benchmarks.md and the plots in docs/img/; a
quick run writes its results to the temporary directory and touches nothing in the repository.

    python benchmarks/run_all.py                 # full run, updates docs/ (adapter_overhead
                                                 # alone takes about 30 minutes)
    python benchmarks/run_all.py --quick         # smoke run (adapter_overhead: ~15 s)
    python benchmarks/run_all.py --quick --only adapter_overhead
    python benchmarks/run_all.py --setup-peers   # first create .bench-venv (dict-minimize 0.0.4)

Options after ``--`` go to every benchmark run, e.g.
``--only adapter_overhead -- --sizes 10 10000 --repeats 5``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import _threads

BENCH_DIR = Path(__file__).resolve().parent
#: Benchmark scripts in this directory, run in this order.
BENCHMARKS = ("adapter_overhead.py", "least_squares_cases.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (no docs update)")
    parser.add_argument(
        "--setup-peers",
        action="store_true",
        help="create .bench-venv with dict-minimize 0.0.4 first (needs the package index)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[name.removesuffix(".py") for name in BENCHMARKS],
        help="run only these benchmarks",
    )
    parser.add_argument("extra", nargs="*", help="arguments passed on to every benchmark")
    args = parser.parse_args(argv)

    _threads.pin_env()  # inherited by every benchmark process
    if args.setup_peers:
        from _peers import create_bench_venv

        print(f"peer environment: {create_bench_venv()}")
    status = 0
    chosen = [s for s in BENCHMARKS if args.only is None or s.removesuffix(".py") in args.only]
    for script in chosen:
        command = [sys.executable, str(BENCH_DIR / script)]
        command += ["--quick"] if args.quick else ["--docs"]
        command += args.extra
        print(f"$ {' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command)
        print(f"{script}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
