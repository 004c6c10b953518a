"""The least-squares benchmark: cases A, B and C against every peer, side by side.

Each case runs in its own process (all its contenders in that one process, pinned to one
thread, on the same float64 data from the same initial weights, interleaved round by round);
this parent process collects the results, prints the tables and target verdicts, and with
``--docs`` writes docs/img/ls_case_*.png and the generated part of the "Least squares" section
of docs/benchmarks.md.

    python benchmarks/least_squares_cases.py --docs     # full run (about 25 minutes)
    python benchmarks/least_squares_cases.py --quick    # smoke run (< 60 s), touches nothing
    python benchmarks/least_squares_cases.py --device cuda --cases B C   # on the first GPU

With ``--device cuda`` the framework contenders (ours, torch-levenberg-marquardt, the JAX
peers) put their data and parameters on the first GPU and the JᵀJ reference is timed there
(synchronized); scipy and pyrenn stay on the host. Results go to
``benchmarks/results/least_squares_cases_cuda.json``.

The peers (torch-levenberg-marquardt, tf-levenberg-marquardt, optimistix, jaxopt, pyrenn) are
benchmark extras, never dependencies: they live in ``.peers-venv`` (git-ignored; ``--setup-peers``
creates it), and the case processes run under its interpreter when it exists. A peer that is
missing or fails is recorded with the reason, and the other contenders still run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _threads

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEERS_VENV = ROOT / ".peers-venv"
RESULTS = BENCH_DIR / "results" / "least_squares_cases.json"
DATE = "2026-11-22"
#: Distributions whose versions the report lists.
DISTRIBUTIONS = (
    "numpy",
    "scipy",
    "torch",
    "tensorflow-cpu",
    "keras",
    "jax",
    "jaxlib",
    "torch-levenberg-marquardt",
    "tf-levenberg-marquardt",
    "optimistix",
    "equinox",
    "lineax",
    "jaxopt",
    "pyrenn",
)


#: What ``.peers-venv`` holds (frameworks pinned by constraints.txt); tf-levenberg-marquardt
#: comes after, with ``--no-deps``: it requires ``tensorflow``, which would pull the non-CPU
#: wheel beside ``tensorflow-cpu``.
PEER_REQUIREMENTS = (
    "torch==2.13.0",
    "tensorflow-cpu==2.21.*",
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "torch-levenberg-marquardt==1.2.3",
    "optimistix==0.1.0",
    "jaxopt==0.8.5",
    "pyrenn==0.1",
    "numpy",
    "scipy",
    "matplotlib",
    "tqdm",
)


def peer_python() -> Path | None:
    """The interpreter of ``.peers-venv``, or None when it has not been created."""
    python = PEERS_VENV / "bin" / "python"
    return python if python.exists() else None


def create_peers_venv() -> Path:
    """Create ``.peers-venv``: the frameworks, the peers, and this project (editable)."""
    if peer_python() is None:
        subprocess.run(["python3", "-m", "venv", str(PEERS_VENV)], check=True)
    python = peer_python()
    assert python is not None
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), *PEER_REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", "tf-levenberg-marquardt==1.0.3"], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    return python


# -- measuring (in the case process) --------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, wall, cpu)`` of one call, the garbage collector paused as in ``_timing``."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()


def _import_frameworks() -> None:
    """Import the frameworks that are installed (thread pools read the pinned environment),
    switch JAX to float64, then pin their runtime threads."""
    import contextlib

    os.environ["JAX_ENABLE_X64"] = "1"
    for name in ("torch", "jax") if _QUICK_MODE[0] else ("torch", "tensorflow", "jax"):
        with contextlib.suppress(ImportError):
            __import__(name)
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_enable_x64", True)
    _threads.pin_frameworks()


#: What ``--quick`` runs (the rest takes seconds per call or imports TensorFlow).
QUICK = frozenset(
    {
        "ours torch fit",
        "ours torch",
        "ours torch batched",
        "ours jax",
        "ours numpy",
        "scipy lm",
        "torch-levenberg-marquardt",
        "jaxopt",
        "scipy lm analytic",
        "Adam",
    }
)
_QUICK_MODE = [False]


def _build(builders: list[Callable[[], Any]], unavailable: dict[str, str]) -> list[Any]:
    """Call each builder; record the ones that cannot run (with why) instead of failing."""
    import _ls_contenders as C

    built = []
    for make in builders:
        label = getattr(make, "label", repr(make))
        if _QUICK_MODE[0] and label not in QUICK:
            unavailable[label] = "skipped in --quick"
            continue
        try:
            built.append(make())
        except C.Unavailable as exc:
            unavailable[label] = str(exc)
        except Exception as exc:
            unavailable[label] = f"setup failed: {type(exc).__name__}: {exc}"
    return built


def _named(label: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    fn.label = label  # type: ignore[attr-defined]
    return fn


def _run_safely(contender: Any, failures: dict[str, str]) -> tuple[Any, float, float] | None:
    """A timed run (after the contender's warm-up); a failure is recorded, not raised."""
    if contender.name in failures:
        return None
    try:
        if getattr(contender, "warmup", None) is not None:
            contender.warmup()
        return timed(contender.run)
    except Exception as exc:
        failures[contender.name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
        return None


def case_a(quick: bool) -> dict[str, Any]:
    """MLP 2-10-1 on 500 Rosenbrock points, seeds 0/1/2: final MSE after 100 Jacobians."""
    import _ls_contenders as C
    import _ls_problems as P

    seeds = (0,) if quick else (0, 1, 2)
    jacobians = 10 if quick else 100
    adam_steps = 1_000 if quick else 40_000
    rows: dict[str, dict[str, Any]] = {}
    unavailable: dict[str, str] = {}
    failures: dict[str, str] = {}
    for index, seed in enumerate(seeds):
        builders = _builders_a(C.NetCase(P.case_a(seed), jacobians, normalized=True), adam_steps)
        contenders = _build(builders, unavailable)
        shift = index % len(contenders)  # a different order in each round
        for contender in contenders[shift:] + contenders[:shift]:
            out = _run_safely(contender, failures)
            if out is None:
                continue
            run, wall, cpu = out
            row = rows.setdefault(contender.name, _row(contender))
            row["seeds"][str(seed)] = {
                "final_mse": run.final_mse,
                "mse": run.mse,
                "njev": run.njev,
                "wall": wall,
                "cpu": cpu,
                **run.extra,
            }
            print(f"A seed {seed}: {contender.name}: MSE {run.final_mse:.3g}, {wall:.2f} s")
    return {
        "config": {"seeds": list(seeds), "jacobians": jacobians, "adam_steps": adam_steps},
        "rows": list(rows.values()),
        "unavailable": unavailable,
        "failures": failures,
    }


def _builders_a(case: Any, adam_steps: int) -> list[Callable[[], Any]]:
    """Case A's contenders for one seed."""
    import _ls_contenders as C

    return [
        _named("ours torch fit", lambda: C.ours_torch_fit(case)),
        _named("ours jax", lambda: C.ours_ls_fit_settings("jax", case)),
        _named("ours tensorflow", lambda: C.ours_ls_fit_settings("tensorflow", case)),
        _named("torch-levenberg-marquardt", lambda: C.torch_lm(case, False)),
        _named("torch-levenberg-marquardt (normalized)", lambda: C.torch_lm(case, True)),
        _named("tf-levenberg-marquardt", lambda: C.tf_lm(case, 1000)),
        _named("optimistix", lambda: C.optimistix_net(case)),
        _named("jaxopt", lambda: C.jaxopt_net(case)),
        _named("pyrenn", lambda: C.pyrenn_net(case)),
        _named("scipy lm", lambda: C.scipy_net(case, "lm")),
        _named("scipy trf", lambda: C.scipy_net(case, "trf")),
        _named("Adam", lambda: C.adam_torch(case, adam_steps)),
    ]


def _row(contender: Any) -> dict[str, Any]:
    return {
        "name": contender.name,
        "kind": contender.kind,
        "framework": contender.framework,
        "note": contender.note,
        "seeds": {},
        "rounds": [],
    }


def _jtj_samplers(rows: int, number: int) -> dict[str, Callable[[], tuple[float, float]]]:
    """Per framework, a timer of the plain ``JᵀJ`` product for a ``rows`` × 311 float64 J
    on the benchmark's device: median wall and CPU time of ``number`` products, after one
    untimed (each waits for the device)."""
    import _ls_contenders as C
    import numpy as np

    j = np.random.default_rng(0).standard_normal((rows, 311))
    products: dict[str, Callable[[], Any]] = {"numpy": lambda: j.T @ j}
    if "torch" in sys.modules:
        import torch

        jt = C._torch(j)

        def torch_product() -> Any:
            out = jt.mT @ jt
            if jt.is_cuda:
                torch.cuda.synchronize()
            return out

        products["torch"] = torch_product
    if "jax" in sys.modules:
        import jax

        jj = C._jax(j)
        gram = jax.jit(lambda a: a.T @ a)
        products["jax"] = lambda: gram(jj).block_until_ready()
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        jf = C._tf(j)
        products["tensorflow"] = lambda: tf.linalg.matmul(jf, jf, transpose_a=True).numpy()

    def sampler(product: Callable[[], Any]) -> Callable[[], tuple[float, float]]:
        def sample() -> tuple[float, float]:
            product()
            times = [timed(product)[1:] for _ in range(number)]
            return float(np.median([w for w, _ in times])), float(np.median([c for _, c in times]))

        return sample

    return {name: sampler(p) for name, p in products.items()}


def case_b(quick: bool) -> dict[str, Any]:
    """MLP 6-12-10-8-1 on 10,000 Rosenbrock samples: s per Jacobian, MSE after 50."""
    import _ls_contenders as C
    import _ls_problems as P

    jacobians = 2 if quick else 50
    rounds = 1 if quick else 2
    samples = 2_000 if quick else 10_000
    case = C.NetCase(P.case_b(0, samples), jacobians, normalized=False)
    # The slowest peers (seconds per Jacobian): a few Jacobians, for their time per Jacobian.
    short = C.NetCase(P.case_b(0, samples), 5, normalized=False)
    unavailable: dict[str, str] = {}
    failures: dict[str, str] = {}
    builders = [
        _named("ours torch", lambda: C.ours_ls_default("torch", case)),
        _named("ours torch +geodesic", lambda: C.ours_ls_default("torch", case, geodesic=True)),
        _named("ours torch fit", lambda: C.ours_torch_fit(case)),
        _named("ours jax", lambda: C.ours_ls_default("jax", case)),
        _named("ours tensorflow", lambda: C.ours_ls_default("tensorflow", case)),
        _named("torch-levenberg-marquardt", lambda: C.torch_lm(case, False)),
        _named("jaxopt", lambda: C.jaxopt_net(case)),
    ]
    slow = [
        _named("scipy lm", lambda: C.scipy_net(case, "lm")),
        _named("scipy trf", lambda: C.scipy_net(case, "trf")),
        _named("optimistix", lambda: C.optimistix_net(short)),
        _named("pyrenn", lambda: C.pyrenn_net(short)),
        _named("tf-levenberg-marquardt", lambda: C.tf_lm(short, 1000)),
    ]
    fast_contenders = _build(builders, unavailable)
    slow_contenders = _build(slow, unavailable)
    jtj = _jtj_samplers(samples, 1 if quick else 5)
    rows: dict[str, dict[str, Any]] = {}
    jtj_rounds: dict[str, list[float]] = {name: [] for name in jtj}
    for index in range(rounds):
        contenders = fast_contenders + (slow_contenders if index == 0 else [])
        shift = index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            sampled = {name: sample() for name, sample in jtj.items()}  # JᵀJ alone, just before
            beside = {name: wall for name, (wall, _) in sampled.items()}
            beside_cpu = {name: cpu for name, (_, cpu) in sampled.items()}
            for name, value in beside.items():
                jtj_rounds[name].append(value)
            out = _run_safely(contender, failures)
            if out is None:
                continue
            run, wall, cpu = out
            row = rows.setdefault(contender.name, _row(contender))
            row["rounds"].append(
                {
                    "final_mse": run.final_mse,
                    "mse": run.mse,
                    "njev": run.njev,
                    "wall": wall,
                    "cpu": cpu,
                    "s_per_jac": wall / max(run.njev, 1),
                    "cpu_per_jac": cpu / max(run.njev, 1),
                    "jtj": beside,
                    "jtj_cpu": beside_cpu,
                    **run.extra,
                }
            )
            print(
                f"B round {index}: {contender.name}: {wall / max(run.njev, 1):.3f} s/J, "
                f"MSE {run.final_mse:.3g} after {run.njev} J",
                flush=True,
            )
    return {
        "config": {"jacobians": jacobians, "rounds": rounds, "samples": samples, "params": 311},
        "rows": list(rows.values()),
        "jtj": jtj_rounds,
        "unavailable": unavailable,
        "failures": failures,
    }


def case_c(quick: bool) -> dict[str, Any]:
    """Sum of exponentials and Gaussians, 10,000 points, 10 parameters: wall time of a
    second (and later) complete call, compile included."""
    import _ls_contenders as C
    import _ls_problems as P
    import numpy as np

    rounds = 2 if quick else 15
    data = P.case_c()
    unavailable: dict[str, str] = {}
    failures: dict[str, str] = {}
    reference = C.scipy_curve(data, "lm", analytic=True).run()
    optimum = reference.cost
    builders = [
        _named("ours numpy", lambda: C.ours_curve("numpy", data)),
        _named("ours torch", lambda: C.ours_curve("torch", data)),
        _named("ours jax", lambda: C.ours_curve("jax", data)),
        _named("ours tensorflow", lambda: C.ours_curve("tensorflow", data)),
        # The same fit with the samples declared independent (per-sample Jacobians).
        _named("ours torch batched", lambda: C.ours_curve("torch", data, batched=True)),
        _named("ours jax batched", lambda: C.ours_curve("jax", data, batched=True)),
        _named("ours tensorflow batched", lambda: C.ours_curve("tensorflow", data, batched=True)),
        _named("scipy lm", lambda: C.scipy_curve(data, "lm", analytic=False)),
        _named("scipy lm analytic", lambda: C.scipy_curve(data, "lm", analytic=True)),
        _named("scipy trf", lambda: C.scipy_curve(data, "trf", analytic=False)),
        _named("jaxopt", lambda: C.jaxopt_curve(data)),
        _named("optimistix", lambda: C.optimistix_curve(data)),
        _named("torch-levenberg-marquardt", lambda: C.torch_lm_curve(data, optimum)),
        _named("tf-levenberg-marquardt", lambda: C.tf_lm_curve(data, optimum)),
    ]
    unavailable["pyrenn"] = "not applicable: pyrenn trains only its own MLPs (no curve models)"
    contenders = _build(builders, unavailable)
    rows: dict[str, dict[str, Any]] = {}
    for contender in contenders:  # the first call (compiles), and the answer it gives
        try:
            first, wall, _ = timed(contender.run)
        except Exception as exc:
            failures[contender.name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            traceback.print_exc()
            continue
        row = _row(contender)
        row.update(
            first_call_s=wall,
            cost=first.cost,
            rel_cost=(first.cost - optimum) / optimum,
            max_dx=float(np.max(np.abs(first.x - reference.x))),
            nfev=first.nfev,
            njev=first.njev,
        )
        rows[contender.name] = row
    live = [c for c in contenders if c.name in rows]
    for index in range(rounds):
        shift = index % max(len(live), 1)
        for contender in live[shift:] + live[:shift]:
            row = rows[contender.name]
            if len(row["rounds"]) >= 2 and row["rounds"][-1]["wall"] > SLOW_CALL_S:
                continue  # seconds per later call: two are enough
            _, wall, cpu = timed(contender.run)
            row["rounds"].append({"wall": wall, "cpu": cpu})
    return {
        "config": {"rounds": rounds, "samples": int(data.t.size), "params": 10, "tol": C.TOL_C},
        "optimum_cost": optimum,
        "rows": list(rows.values()),
        "unavailable": unavailable,
        "failures": failures,
    }


#: Case C contenders whose later calls take longer than this get two timed calls only (the
#: first call, which compiles, does not count: later calls reuse what it compiled).
SLOW_CALL_S = 3.0

CASES: dict[str, Callable[[bool], dict[str, Any]]] = {"A": case_a, "B": case_b, "C": case_c}


def run_case(name: str, quick: bool, out: Path) -> None:
    """The body of a case process: measure, then write the case's JSON to ``out``."""
    _QUICK_MODE[0] = quick
    _import_frameworks()
    sys.path.insert(0, str(BENCH_DIR))
    import _ls_contenders as C

    result = CASES[name](quick)
    result["versions"] = {d: C.version(d) for d in DISTRIBUTIONS}
    result["python"] = sys.executable
    out.write_text(json.dumps(result) + "\n")


# -- the parent process ---------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, cores and OS."""
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


def measure(cases: list[str], quick: bool, python: Path, device: str = "cpu") -> dict[str, Any]:
    """Run each case in its own process under ``python``; the combined results."""
    results: dict[str, Any] = {
        "date": DATE,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "device": device,
        "python": str(python),
        "threads": "1 (OMP/MKL/OpenBLAS, TF intra/inter-op, XLA, torch)",
        "quick": quick,
        "cases": {},
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LS_BENCH_DEVICE"] = device
    if device != "cpu":
        env.pop("JAX_PLATFORMS", None)  # let JAX find the GPU (the pinned default is CPU only)
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            out = Path(tmp) / f"case_{name}.json"
            command = [str(python), str(Path(__file__).resolve()), "--case", name]
            command += ["--out", str(out)]
            command += ["--quick"] if quick else []
            start = time.perf_counter()
            code = subprocess.call(command, env=env, cwd=str(BENCH_DIR))
            elapsed = time.perf_counter() - start
            print(f"case {name}: exit {code} after {elapsed:.0f} s", flush=True)
            if code == 0 and out.exists():
                results["cases"][name] = json.loads(out.read_text())
                results["cases"][name]["elapsed_s"] = elapsed
            else:
                results["cases"][name] = {"error": f"the case process exited with {code}"}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s), no docs")
    parser.add_argument("--docs", action="store_true", help="update docs/benchmarks.md and plots")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the framework contenders run (cuda: the first GPU)",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="interpreter of the case processes (default: .peers-venv's when it exists)",
    )
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS})")
    parser.add_argument("--from-json", type=Path, help="measure nothing: report this JSON")
    parser.add_argument(
        "--setup-peers", action="store_true", help="create .peers-venv first (needs PyPI)"
    )
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _threads.pin_env()
    if os.environ.get("LS_BENCH_DEVICE", "cpu") != "cpu":
        os.environ.pop("JAX_PLATFORMS", None)  # a case process on a GPU (set by measure)
    if args.case is not None:  # a case process
        run_case(args.case, args.quick, args.out)
        return 0

    import _ls_report as report

    if args.setup_peers:
        print(f"peer environment: {create_peers_venv()}")
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
        path = args.from_json
    else:
        python = args.python or peer_python() or Path(sys.executable)
        results = measure(args.cases, args.quick, python, args.device)
        quick_path = Path(tempfile.gettempdir()) / "least_squares_cases.quick.json"
        full_path = (
            RESULTS
            if args.device == "cpu"
            else RESULTS.with_name(f"least_squares_cases_{args.device}.json")
        )
        path = args.out or (quick_path if args.quick else full_path)
        if not args.quick and args.cases != sorted(CASES) and path.exists():
            earlier = json.loads(path.read_text())  # a partial rerun keeps the other cases
            earlier["cases"].update(results["cases"])
            results = {**earlier, **{k: v for k, v in results.items() if k != "cases"}}
            results["cases"] = earlier["cases"]
            results["partial_rerun"] = sorted(args.cases)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
    print(report.text(results))
    print(f"\nresults: {path}")
    if args.docs and not results.get("quick") and results.get("device", "cpu") == "cpu":
        report.publish(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img")
    failed = [n for n, c in results["cases"].items() if "error" in c]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
