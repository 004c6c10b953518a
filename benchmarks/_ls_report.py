"""Tables, target verdicts, plots and the docs section of ``least_squares_cases.py``."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- BEGIN least_squares_cases -->", "<!-- END least_squares_cases -->"
SECTION = "## Least squares: cases A, B, C"
#: Peers, in table order: (short column label, row name prefix).
PEERS = (
    ("torch-LM", "torch-levenberg-marquardt"),
    ("tf-LM", "tf-levenberg-marquardt"),
    ("optimistix", "optimistix"),
    ("jaxopt", "jaxopt"),
    ("pyrenn", "pyrenn"),
    ("scipy lm", "scipy least_squares lm"),
    ("scipy trf", "scipy least_squares trf"),
)
#: Targets of the least-squares benchmark.
A_MEDIAN, A_MAX = 0.005, 0.01
B_JTJ_FACTOR = 1.5
C_FACTOR = 2.0


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _g(value: float, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def _peer_row(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    """The peer's row (the first whose name starts with ``prefix``, not a variant)."""
    for row in rows:
        if row["name"] == prefix or (
            row["name"].startswith(prefix) and "normalized" not in row["name"]
        ):
            if prefix.startswith("scipy least_squares lm") and "analytic" in row["name"]:
                continue
            return row
    return None


# -- per-case summaries ---------------------------------------------------------------------------
def summary_a(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row: final MSE per seed, median, max, median wall time and Jacobians."""
    out = []
    for row in case["rows"]:
        seeds = row["seeds"]
        finals = [seeds[s]["final_mse"] for s in sorted(seeds)]
        out.append(
            {
                "name": row["name"],
                "kind": row["kind"],
                "framework": row["framework"],
                "note": row["note"],
                "finals": finals,
                "median": _median(finals),
                "max": max(finals) if finals else math.nan,
                "wall": _median([seeds[s]["wall"] for s in seeds]),
                "njev": _median([seeds[s]["njev"] for s in seeds]),
            }
        )
    return out


def _mse_at(history: list[float], k: int) -> float:
    return history[k] if len(history) > k else math.nan


def summary_b(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row: median s per Jacobian, the MSE after the budget, and the JᵀJ ratio."""
    jtj = {fw: _median(v) for fw, v in case["jtj"].items()}
    budget = case["config"]["jacobians"]
    out = []
    for row in case["rows"]:
        rounds = row["rounds"]
        spj = _median([r["s_per_jac"] for r in rounds])
        first = rounds[0]
        fw = row["framework"]
        out.append(
            {
                "name": row["name"],
                "kind": row["kind"],
                "framework": fw,
                "note": row["note"],
                "s_per_jac": spj,
                "cpu_per_jac": _median([r["cpu_per_jac"] for r in rounds]),
                "rounds": len(rounds),
                "njev": first["njev"],
                "mse_budget": _mse_at(first["mse"], budget),
                "final_mse": first["final_mse"],
                "history": first["mse"],
                "jtj": jtj.get(fw, math.nan),
                "jtj_ratio": _jtj_ratio(rounds, fw, spj, jtj),
                "jtj_cpu_ratio": _median(
                    [
                        r["cpu_per_jac"] / r["jtj_cpu"][fw]
                        for r in rounds
                        if fw in r.get("jtj_cpu", {})
                    ]
                ),
            }
        )
    return out


def _jtj_ratio(
    rounds: list[dict[str, Any]], framework: str, spj: float, jtj: dict[str, float]
) -> float:
    """Seconds per Jacobian over the JᵀJ time of the same framework: the median of the
    per-run ratios to the product timed just before each run, else the ratio of medians."""
    paired = [r["s_per_jac"] / r["jtj"][framework] for r in rounds if framework in r.get("jtj", {})]
    if paired:
        return _median(paired)
    return spj / jtj[framework] if framework in jtj else math.nan


def summary_c(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row: median wall time of the later calls, the first call, the cost reached."""
    out = []
    for row in case["rows"]:
        out.append(
            {
                "name": row["name"],
                "kind": row["kind"],
                "framework": row["framework"],
                "note": row["note"],
                "wall": _median([r["wall"] for r in row["rounds"]]),
                "cpu": _median([r["cpu"] for r in row["rounds"]]),
                "calls": len(row["rounds"]),
                "first": row["first_call_s"],
                "rel_cost": row["rel_cost"],
                "max_dx": row["max_dx"],
                "nfev": row["nfev"],
            }
        )
    return out


# -- tables ---------------------------------------------------------------------------------------
def _ours(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in summary if s["kind"] == "ours"]


def ratio_table(results: dict[str, Any]) -> str:
    """One table: each of our rows against every peer (ours ÷ peer; below 1 favours ours)."""
    cases = results["cases"]
    lines = [
        "| case · measure (ours ÷ peer) | ours | " + " | ".join(label for label, _ in PEERS) + " |",
        "|---|---|" + "---:|" * len(PEERS),
    ]

    def add(label: str, summary: list[dict[str, Any]], key: str, value_fmt: Any) -> None:
        for s in _ours(summary):
            cells = []
            for _, prefix in PEERS:
                peer = _peer_row_summary(summary, prefix)
                if peer is None or not math.isfinite(peer[key]) or not math.isfinite(s[key]):
                    cells.append("—")
                else:
                    cells.append(f"{s[key] / peer[key]:.2g}")
            ours = f"{s['name']} ({value_fmt(s[key])})"
            lines.append(f"| {label} | {ours} | " + " | ".join(cells) + " |")

    if "rows" in cases.get("A", {}):
        a = summary_a(cases["A"])
        add("A · median final MSE", a, "median", _g)
    if "rows" in cases.get("B", {}):
        b = summary_b(cases["B"])
        budget = cases["B"]["config"]["jacobians"]
        add("B · s per Jacobian", b, "s_per_jac", lambda v: f"{_g(v)} s")
        add(f"B · MSE after {budget} Jacobians", b, "mse_budget", _g)
    if "rows" in cases.get("C", {}):
        c = summary_c(cases["C"])
        add("C · wall time, later call", c, "wall", lambda v: f"{_ms(v)} ms")
    return "\n".join(lines)


def _peer_row_summary(summary: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    for s in summary:
        name = s["name"]
        if not name.startswith(prefix) or "normalized" in name or "analytic" in name:
            continue
        return s
    return None


def table_a(case: dict[str, Any]) -> str:
    seeds = case["config"]["seeds"]
    lines = [
        "| contender | "
        + " | ".join(f"MSE seed {s}" for s in seeds)
        + " | median | Jacobians | wall s (median) | notes |",
        "|---|" + "---:|" * (len(seeds) + 3) + "---|",
    ]
    for s in summary_a(case):
        finals = " | ".join(_g(v) for v in s["finals"])
        jac = "—" if s["kind"] == "baseline" else f"{s['njev']:.0f}"
        lines.append(
            f"| {s['name']} | {finals} | **{_g(s['median'])}** | {jac} | {s['wall']:.3g} | "
            f"{s['note']} |"
        )
    return "\n".join(lines)


def table_b(case: dict[str, Any]) -> str:
    budget = case["config"]["jacobians"]
    lines = [
        f"| contender | s per Jacobian | ÷ JᵀJ alone (same framework) | same, CPU time | "
        f"MSE after {budget} J | Jacobians run | rounds | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary_b(case):
        lines.append(
            f"| {s['name']} | {_g(s['s_per_jac'])} | {_g(s['jtj_ratio'])} | "
            f"{_g(s['jtj_cpu_ratio'])} | {_g(s['mse_budget'])} | {s['njev']} | {s['rounds']} | "
            f"{s['note']} |"
        )
    jtj = ", ".join(f"{fw} {_g(_median(v))} s" for fw, v in case["jtj"].items())
    lines += [
        "",
        f"JᵀJ alone ({case['config']['samples']:,} × 311 float64, median over the run; the "
        f"÷ columns are the medians of each run's ratio to the product timed just before it, "
        f"in wall time and in CPU time; every contender runs on one thread, so CPU time is "
        f"the measure least disturbed by other processes on this shared machine): {jtj}.",
    ]
    return "\n".join(lines)


def table_c(case: dict[str, Any]) -> str:
    lines = [
        "| contender | later call, ms (median) | ÷ scipy lm | CPU ms | ÷ scipy lm, CPU | "
        "first call, ms | calls timed | cost − optimum (rel.) | max abs Δx vs scipy | nfev | "
        "notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    summary = summary_c(case)
    ref = _peer_row_summary(summary, "scipy least_squares lm")
    for s in summary:
        ratio = s["wall"] / ref["wall"] if ref else math.nan
        cpu_ratio = s["cpu"] / ref["cpu"] if ref else math.nan
        lines.append(
            f"| {s['name']} | {_ms(s['wall'])} | {_g(ratio)} | {_ms(s['cpu'])} | {_g(cpu_ratio)} | "
            f"{_ms(s['first'])} | {s['calls']} | {s['rel_cost']:.1e} | {s['max_dx']:.1e} | "
            f"{s['nfev']} | {s['note']} |"
        )
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool]]:
    """(description, met) for every target and each of our rows it concerns."""
    cases = results["cases"]
    out: list[tuple[str, bool]] = []
    if "rows" in cases.get("A", {}):
        for s in _ours(summary_a(cases["A"])):
            ok = s["median"] <= A_MEDIAN and s["max"] <= A_MAX
            out.append(
                (
                    f"A, {s['name']}: median final MSE {_g(s['median'])} ≤ {A_MEDIAN} and no seed "
                    f"above {A_MAX} (worst {_g(s['max'])})",
                    ok,
                )
            )
    if "rows" in cases.get("B", {}):
        b = summary_b(cases["B"])
        budget = cases["B"]["config"]["jacobians"]
        minpack = _peer_row_summary(b, "scipy least_squares lm")
        for s in _ours(b):
            out.append(
                (
                    f"B, {s['name']}: {_g(s['s_per_jac'])} s per Jacobian ≤ {B_JTJ_FACTOR} × the "
                    f"{s['framework']} JᵀJ product alone ({_g(s['jtj'])} s): "
                    f"{_g(s['jtj_ratio'])}×",
                    s["jtj_ratio"] <= B_JTJ_FACTOR,
                )
            )
            if minpack is not None:
                out.append(
                    (
                        f"B, {s['name']}: MSE after {budget} Jacobians {_g(s['mse_budget'])} ≤ "
                        f"MINPACK's {_g(minpack['mse_budget'])}",
                        s["mse_budget"] <= minpack["mse_budget"],
                    )
                )
    if "rows" in cases.get("C", {}):
        c = summary_c(cases["C"])
        ref = _peer_row_summary(c, "scipy least_squares lm")
        for s in _ours(c):
            if ref is None:
                continue
            ratio = s["wall"] / ref["wall"]
            out.append(
                (
                    f"C, {s['name']}: {_ms(s['wall'])} ms ≤ {C_FACTOR} × scipy lm's "
                    f"{_ms(ref['wall'])} ms (second call, compile included): {ratio:.2g}×",
                    ratio <= C_FACTOR,
                )
            )
    return out


def _missing(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, case in results["cases"].items():
        if "error" in case:
            lines.append(f"- case {name}: {case['error']}")
            continue
        for label, why in {**case.get("unavailable", {}), **case.get("failures", {})}.items():
            lines.append(f"- case {name}, {label}: {why}")
    return lines


def text(results: dict[str, Any]) -> str:
    """Everything, as Markdown (also what the terminal shows)."""
    cases = results["cases"]
    parts = ["### Ratios against every peer", "", ratio_table(results), ""]
    for name, table in (("A", table_a), ("B", table_b), ("C", table_c)):
        if "rows" in cases.get(name, {}):
            parts += [f"### Case {name}", "", table(cases[name]), ""]
    parts += ["### Targets", ""]
    if results.get("quick"):
        parts += ["(`--quick`: reduced budgets and data, so these verdicts mean nothing)", ""]
    parts += [f"- {'met' if ok else '**missed**'}: {desc}" for desc, ok in verdicts(results)]
    missing = _missing(results)
    if missing:
        parts += ["", "### Contenders that did not run", "", *missing]
    return "\n".join(parts)


# -- plots ----------------------------------------------------------------------------------------
_STYLE = {"ours": "-", "peer": "--", "baseline": ":"}


def plot_a(case: dict[str, Any], path: Path) -> None:
    """MSE against Jacobians, one panel per seed (Adam's final MSE as a dotted line)."""
    import matplotlib.pyplot as plt

    seeds = case["config"]["seeds"]
    fig, axes = plt.subplots(1, len(seeds), figsize=(5.2 * len(seeds), 4.4), squeeze=False)
    for ax, seed in zip(axes[0], seeds):
        for row in case["rows"]:
            run = row["seeds"].get(str(seed))
            if run is None:
                continue
            if row["kind"] == "baseline":
                ax.axhline(run["final_mse"], color="gray", linestyle=":", label=row["name"])
                continue
            ax.plot(run["mse"], _STYLE[row["kind"]], label=row["name"], linewidth=1.3)
        ax.axhline(A_MEDIAN, color="black", linewidth=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("Jacobians")
        ax.set_ylabel("training MSE")
        ax.set_title(f"Case A, seed {seed}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=6.5, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_b(case: dict[str, Any], path: Path) -> None:
    """Left: MSE against Jacobians; right: seconds per Jacobian, JᵀJ alone for reference."""
    import matplotlib.pyplot as plt

    summary = summary_b(case)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.0))
    for s in summary:
        left.plot(s["history"], _STYLE[s["kind"]], label=s["name"], linewidth=1.3)
    left.set_yscale("log")
    left.set_xlabel("Jacobians")
    left.set_ylabel("training MSE (normalized targets)")
    left.set_title("Case B: 6-12-10-8-1 tanh MLP, 10,000 samples")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=6.5)
    names = [s["name"] for s in summary] + [f"JᵀJ alone ({fw})" for fw in case["jtj"]]
    values = [s["s_per_jac"] for s in summary] + [_median(v) for v in case["jtj"].values()]
    colors = [
        {"ours": "tab:blue", "peer": "tab:orange"}.get(s["kind"], "gray") for s in summary
    ] + ["tab:green"] * len(case["jtj"])
    right.barh(range(len(names)), values, color=colors)
    right.set_yticks(range(len(names)), names, fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("seconds per Jacobian (median; green: the JᵀJ product alone)")
    right.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_c(case: dict[str, Any], path: Path) -> None:
    """Wall time of a later call per contender, with 2 × scipy lm marked."""
    import matplotlib.pyplot as plt

    summary = summary_c(case)
    fig, ax = plt.subplots(figsize=(8, 4.6))
    names = [s["name"] for s in summary]
    values = [s["wall"] * 1e3 for s in summary]
    colors = [{"ours": "tab:blue", "peer": "tab:orange"}.get(s["kind"], "gray") for s in summary]
    ax.barh(range(len(names)), values, color=colors)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ref = _peer_row_summary(summary, "scipy least_squares lm")
    if ref is not None:
        ax.axvline(C_FACTOR * ref["wall"] * 1e3, color="black", linewidth=0.8, label="2 × scipy lm")
        ax.legend(fontsize=7)
    ax.set_xlabel("ms per complete call after the first (median), compile included")
    ax.set_title("Case C: 2 exponentials + 2 Gaussians, 10,000 points, 10 parameters")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- docs -----------------------------------------------------------------------------------------
def markdown(results: dict[str, Any], images: dict[str, str]) -> str:
    """The generated part of the docs section."""
    m = results["machine"]
    versions = next((c["versions"] for c in results["cases"].values() if "versions" in c), {})
    device = results.get("device", "cpu")
    where = "on the CPU" if device == "cpu" else f"the framework contenders on {device}"
    rerun = results.get("partial_rerun")
    head = [
        f"Measured {results['date']} on {m['cpu']} ({m['cores']} cores, shared), "
        f"{m['platform']}, {where}; every library pinned to one thread (OMP/MKL/OpenBLAS, TF "
        "intra/inter-op, XLA, torch); float64 throughout."
        + (
            f" Case(s) {', '.join(rerun)} from a rerun (`--cases {' '.join(rerun)}`), the "
            "others from the run before it."
            if rerun
            else ""
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Ratios are ours ÷ peer: below 1 means fewer seconds or a lower MSE for ours.",
        "",
        "",
    ]
    body = text(results)
    figs = [f"![{label}]({image})" for label, image in images.items()]
    return "\n".join(head) + body + "\n\n" + "\n\n".join(figs) + "\n"


def publish(results: dict[str, Any], doc: Path, img_dir: Path) -> None:
    """Write the plots and replace (or append) the generated part of the docs section."""
    import matplotlib

    matplotlib.use("Agg")
    img_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    plots = (
        ("A", plot_a, "ls_case_a.png"),
        ("B", plot_b, "ls_case_b.png"),
        ("C", plot_c, "ls_case_c.png"),
    )
    for name, plot, file in plots:
        if "rows" in results["cases"].get(name, {}):
            plot(results["cases"][name], img_dir / file)
            images[f"case {name}"] = f"img/{file}"
    body = markdown(results, images)
    text_now = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text_now and END in text_now:
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
        text_now = pattern.sub(lambda _: f"{BEGIN}\n{body}{END}", text_now)
    else:
        text_now = text_now.rstrip("\n") + f"\n\n{SECTION}\n\n{BEGIN}\n{body}{END}\n"
    doc.write_text(text_now)
    print(f"updated {doc} and {', '.join(images.values())}")
