"""Turn a results JSON of ``adapter_overhead.py`` into Markdown, target verdicts and a plot."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

#: Issue targets: (API label, size, bound on the time ratio to raw scipy). ``None`` as the bound
#: means "below dict-minimize 0.0.4's API of the same framework".
TARGETS: tuple[tuple[str, int | None, float | None], ...] = (
    ("numpy_api", 10, 1.3),
    ("torch_api", 10, 2.5),
    ("numpy_api", 1_000_000, 1.05),
    ("torch_api", 1_000_000, 1.05),
    ("tensorflow_api", None, None),
    ("jax_api", None, None),
    ("tensorflow_api", 1_000_000, 1.10),
    ("jax_api", 1_000_000, 1.10),
)
PEER = "dict-minimize 0.0.4"
BEGIN, END = "<!-- BEGIN adapter_overhead -->", "<!-- END adapter_overhead -->"


def size_label(n: int) -> str:
    """10 -> "10", 10000 -> "1e4"."""
    exponent = round(math.log10(n)) if n > 0 else 0
    return f"1e{exponent}" if n >= 1000 and 10**exponent == n else str(n)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _rows(results: dict[str, Any]) -> tuple[list[int], list[str], dict[tuple[str, int], Any]]:
    sizes = sorted(int(n) for n in results["sizes"])
    names: list[str] = []
    cells: dict[tuple[str, int], Any] = {}
    for n in sizes:
        for row in results["sizes"][str(n)]["rows"]:
            if row["name"] not in names:
                names.append(row["name"])
            cells[row["name"], n] = row
    return sizes, names, cells


def table(results: dict[str, Any]) -> str:
    """Median seconds per 100-iteration run and the ratio to raw scipy, per size."""
    sizes, names, cells = _rows(results)
    head = "| contender | " + " | ".join(
        f"{size_label(n)}: ms | {size_label(n)}: × scipy" for n in sizes
    )
    lines = [head + " |", "|---|" + "---:|---:|" * len(sizes)]
    for name in names:
        parts = []
        for n in sizes:
            row = cells.get((name, n))
            if row is None:
                parts += ["", ""]
                continue
            lo, hi = row["ratio_q1"], row["ratio_q3"]
            parts += [_ms(row["median_s"]), f"**{row['ratio']:.2f}** ({lo:.2f}–{hi:.2f})"]
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def checks(results: dict[str, Any]) -> str:
    """nit/nfev of every contender (they must agree for the times to be comparable)."""
    sizes, names, cells = _rows(results)
    head = "| contender | " + " | ".join(f"{size_label(n)}: nit / nfev / max abs Δx" for n in sizes)
    lines = [head + " |", "|---|" + "---|" * len(sizes)]
    for name in names:
        parts = []
        for n in sizes:
            row = cells.get((name, n))
            parts.append(
                ""
                if row is None
                else f"{row['nit']} / {row['nfev']} / {row['x_maxdiff']:.1e}"
                + ("" if row["same_path"] else " ≠")
            )
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def _find(results: dict[str, Any], n: int, kind: str, label: str) -> Any:
    for row in results["sizes"].get(str(n), {}).get("rows", []):
        if row["kind"] == kind and row["name"].endswith(label):
            return row
    return None


def _per_eval(results: dict[str, Any], n: int, row: dict[str, Any]) -> tuple[float, str]:
    """The ratio, normalized per evaluation where the run took a different path than scipy.

    Rounding differences (a framework's reductions) can change the line searches of a long
    run, so a contender may make a few more or fewer evaluations than raw scipy; its ratio per
    evaluation then measures the overhead, and the note says so.
    """
    base = _find(results, n, "scipy", "(flat NumPy)")
    if base is None or row["nfev"] == base["nfev"]:
        return row["ratio"], ""
    ratio = row["ratio"] * base["nfev"] / row["nfev"]
    return ratio, f" per evaluation ({row['nfev']} evaluations vs scipy's {base['nfev']})"


def _floor(results: dict[str, Any], n: int, framework: str) -> Any:
    """The "scipy + minimal glue" row of ``framework`` at size ``n``, if measured."""
    for row in results["sizes"].get(str(n), {}).get("rows", []):
        if row["kind"] == "glue" and row["framework"] == framework:
            return row
    return None


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool]]:
    """``(description, met)`` for every target the results can judge."""
    out: list[tuple[str, bool]] = []
    sizes = sorted(int(n) for n in results["sizes"])
    for label, n, bound in TARGETS:
        if bound is not None and n is not None:
            row = _find(results, n, "ours", label)
            if row is not None:
                ratio, note = _per_eval(results, n, row)
                desc = f"{label} at {size_label(n)}: {ratio:.3f}x scipy{note} (target ≤ {bound}x)"
                floor = _floor(results, n, row["framework"])
                if ratio > bound and floor is not None:
                    # Below the floor no adapter around this objective can go: say where it is.
                    desc += (
                        f"; the floor, scipy + minimal {row['framework']} glue, is "
                        f"{floor['ratio']:.3f}x ({floor['ratio_q1']:.2f}–{floor['ratio_q3']:.2f})"
                        + (" — the target is below it" if floor["ratio"] > bound else "")
                    )
                out.append((desc, ratio <= bound))
            continue
        for size in sizes:
            ours = _find(results, size, "ours", label)
            peer = _find(results, size, PEER, label)
            if ours is not None and peer is not None:
                desc = (
                    f"{label} at {size_label(size)}: {ours['ratio']:.3f}x vs {PEER} "
                    f"{peer['ratio']:.3f}x (target: below)"
                )
                out.append((desc, ours["ratio"] < peer["ratio"]))
    return out


def markdown(results: dict[str, Any]) -> str:
    """The generated section of docs/benchmarks.md."""
    m, v = results["machine"], results["versions"]
    lines = [
        f"Measured {results['date']} on {m['cpu']} ({m['cores']} cores, {m['platform']}), "
        f"every library pinned to one thread ({results['threads']}).",
        "",
        "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v["main"].items())
        + (
            "; peer environment: " + ", ".join(f"{k} {val}" for k, val in v["peer"].items())
            if v.get("peer")
            else ""
        )
        + ".",
        "",
        f"Median time of one {results['config']['method']} run of exactly "
        f"{results['config']['maxiter']} iterations (ms), and the median of the per-round ratios "
        "to raw scipy (interquartile range in parentheses); rounds: "
        + ", ".join(
            f"{size_label(int(n))}: {s['repeats']} × {s['number']} run(s)"
            for n, s in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
        )
        + ".",
        "",
        table(results),
        "",
        "Targets:",
        "",
    ]
    lines += [f"- {'met' if ok else '**missed**'}: {desc}" for desc, ok in verdicts(results)]
    lines += [
        "",
        "Every contender's verification run (nit / nfev / max |x − x_scipy| at the end; ≠ marks "
        "a path that differs from raw scipy's):",
        "",
        checks(results),
    ]
    return "\n".join(lines)


def update_docs(results: dict[str, Any], doc: Path, image: str) -> bool:
    """Replace the generated section of ``doc`` (between the markers); False if it has none."""
    text = doc.read_text() if doc.exists() else ""
    if BEGIN not in text or END not in text:
        return False
    body = markdown(results) + f"\n\n![ratio to raw scipy vs size]({image})\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{body}{END}", text))
    return True


def plot(results: dict[str, Any], path: Path) -> None:
    """Ratio to raw scipy against problem size (log-log), one panel per framework."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda y, _: f"{y:g}")
    sizes, names, cells = _rows(results)
    frameworks = []
    for name in names:
        row = next(cells[name, n] for n in sizes if (name, n) in cells)
        if row["kind"] != "scipy" and row["framework"] not in frameworks:
            frameworks.append(row["framework"])
    cols = 2 if len(frameworks) > 1 else 1
    rows_ = (len(frameworks) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows_, cols, figsize=(5.2 * cols, 3.6 * rows_), squeeze=False, sharex=True
    )
    style = {
        "ours": ("tab:blue", "-", "o"),
        PEER: ("tab:red", "--", "s"),
        "glue": ("tab:gray", ":", "^"),
    }
    for ax, fw in zip(axes.flat, frameworks):
        for name in names:
            points = [(n, cells[name, n]) for n in sizes if (name, n) in cells]
            kind, framework = points[0][1]["kind"], points[0][1]["framework"]
            if framework != fw or kind == "scipy":
                continue
            color, line, marker = style.get(kind, ("black", "-", "o"))
            if "jac=False" in name:
                color, marker = "tab:green", "D"
            label = name.replace(f"{PEER} ", "dict-minimize ").replace(" (floor)", "")
            xs = [n for n, _ in points]
            ys = [row["ratio"] for _, row in points]
            ax.plot(xs, ys, line, color=color, marker=marker, label=label, linewidth=1.5)
        for label, n, bound in TARGETS:
            if label.startswith(fw) and n is not None and bound is not None and n in sizes:
                ax.plot([n], [bound], "k_", markersize=18, markeredgewidth=2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(fw)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylabel("time / raw scipy time")
    for ax in axes.flat[len(frameworks) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("parameters (4 tensors)")
    fig.suptitle(
        f"Adapter overhead: {results['config']['method']}, {results['config']['maxiter']} "
        "iterations, hand-written gradient (black bars: targets)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
