"""Peer worker: times dict-minimize 0.0.4 in its own virtual environment.

twitter's dict-minimize 0.0.4 has this project's import name (``dict_minimize``), so it lives in
``.bench-venv`` and runs in this separate process. Started by ``benchmarks/_peers.py`` with the
bench venv's interpreter, it serves JSON requests, one a line on stdin, one answer a line on
stdout, so the main process can interleave its own contenders with these, run by run::

    {"cmd": "hello"}                               -> versions, frameworks
    {"cmd": "setup", "n": 10, "frameworks": [...], "raw": true, "xdir": "/tmp/..."}
                                                -> per contender nit, nfev, final point file
    {"cmd": "time", "name": "...", "number": 5}     -> seconds per run
    {"cmd": "quit"}

Standalone (``--standalone``), it times its contenders interleaved by itself and prints one JSON
object of medians and ratios against raw scipy measured in the same process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from typing import Any, TextIO

import _threads

_threads.pin_env()

import _contenders as C  # noqa: E402  (the thread environment must be set first)
import _problems as P  # noqa: E402
import _timing  # noqa: E402
import numpy as np  # noqa: E402

PEER = "dict-minimize 0.0.4"


def digest(x: np.ndarray) -> str:
    """A short fingerprint of a final point (bit-identical runs give equal fingerprints)."""
    return hashlib.sha1(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()[:16]


def peer_module(framework: str) -> Any:
    """dict-minimize 0.0.4's API module for a framework (checked to be the peer, not ours)."""
    import importlib

    import dict_minimize

    version = getattr(dict_minimize, "__version__", "?")
    if version != "0.0.4":
        raise RuntimeError(
            f"the peer interpreter imports dict_minimize {version} from {dict_minimize.__file__}; "
            f"it must be dict-minimize 0.0.4 (see benchmarks/README.md)"
        )
    return importlib.import_module(f"dict_minimize.{framework}_api")


class Worker:
    """The contenders of one problem size, built on request."""

    def __init__(self) -> None:
        self.contenders: dict[str, C.Contender] = {}

    def hello(self) -> dict[str, Any]:
        import dict_minimize

        versions = C.versions()
        versions["dict-minimize"] = getattr(dict_minimize, "__version__", "?")
        frameworks = [fw for fw in C.FRAMEWORKS if C.available(fw)]
        return {"versions": versions, "frameworks": frameworks, "prefix": sys.prefix}

    def setup(self, n: int, frameworks: list[str], raw: bool, xdir: str) -> dict[str, Any]:
        """Build and verify the size-``n`` contenders (raw scipy too if ``raw``).

        Each verification run's final point is saved as ``<xdir>/<i>.npy`` so the main process
        compares it with its own raw scipy run, without a second raw run here (or a 1e6-element
        JSON answer).
        """
        problem = P.make_problem(n)
        if "jax" in frameworks:
            P.enable_jax_x64()
        contenders = []
        if raw:
            contenders.append(C.raw_scipy(problem))
            contenders[0].name = "scipy.optimize.minimize (flat NumPy, peer process)"
        for fw in frameworks:
            module = peer_module(fw)
            label = f"{PEER} {fw}_api"
            contenders.append(C.api(module, fw, problem, label=label, kind=PEER, full_output=False))
        _threads.pin_frameworks()
        self.contenders = {c.name: c for c in contenders}
        checks: dict[str, Any] = {}
        for i, c in enumerate(contenders):
            check = c.verify()
            x_file = os.path.join(xdir, f"{i}.npy")
            np.save(x_file, check.x)
            checks[c.name] = {
                "kind": c.kind,
                "framework": c.framework,
                "nit": check.nit,
                "nfev": check.nfev,
                "x_file": x_file,
                "x_digest": digest(check.x),
            }
        return {"contenders": checks}

    def time(self, name: str, number: int) -> dict[str, Any]:
        wall, cpu = _timing.sample(self.contenders[name].run, number)
        return {"wall": wall, "cpu": cpu}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "hello":
            return self.hello()
        if cmd == "setup":
            return self.setup(
                int(request["n"]),
                list(request["frameworks"]),
                bool(request.get("raw", True)),
                str(request["xdir"]),
            )
        if cmd == "time":
            return self.time(str(request["name"]), int(request["number"]))
        raise ValueError(f"unknown command {cmd!r}")


def serve(stdin: TextIO, stdout: TextIO) -> None:
    """Answer requests until ``quit`` or end of input; errors are answered, not raised."""
    worker = Worker()
    for line in stdin:
        request = json.loads(line)
        if request.get("cmd") == "quit":
            break
        try:
            answer = worker.handle(request)
        except Exception as exc:  # report to the main process, which raises it there
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


def standalone(sizes: list[int], frameworks: list[str] | None, repeats: int, number: int) -> None:
    """Time the peer contenders interleaved in this process and print JSON medians (CPU time)."""
    worker = Worker()
    info = worker.hello()
    chosen = frameworks or info["frameworks"]
    report: dict[str, Any] = {"versions": info["versions"], "sizes": {}}
    with tempfile.TemporaryDirectory() as xdir:
        for n in sizes:
            checks = worker.setup(n, chosen, True, xdir)["contenders"]
            names = list(worker.contenders)
            reference = np.load(checks[names[0]].pop("x_file"))
            for name in names[1:]:
                x = np.load(checks[name].pop("x_file"))
                checks[name]["x_maxdiff"] = float(np.max(np.abs(x - reference)))
            samples: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(repeats):
                for name in names:
                    samples[name].append(worker.time(name, number)["cpu"])
            base = samples[names[0]]
            report["sizes"][str(n)] = {
                name: {
                    **checks[name],
                    "median_s": _timing.median(samples[name]),
                    "ratio_vs_scipy": _timing.paired_ratio(samples[name], base),
                }
                for name in names
            }
    print(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standalone", action="store_true", help="time and print JSON medians")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--frameworks", nargs="+", choices=C.FRAMEWORKS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=1, help="runs per timed sample")
    args = parser.parse_args()
    if args.standalone:
        standalone(args.sizes, args.frameworks, args.repeats, args.number)
        return
    # Only JSON answers go to the real stdout; anything a library prints goes to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    serve(sys.stdin, out)


if __name__ == "__main__":
    main()
