"""Helpers shared by the example scripts: the command line, printed tables and PNG figures.

Nothing here is needed to use dict_minimize; it only keeps the examples short and alike.
Figures are drawn with matplotlib's object-oriented API (``matplotlib.figure.Figure``), so
no display or global backend is involved and the scripts run the same headless.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

#: Resolution of saved figures; with the sizes used by the examples each PNG stays < 200 KB.
FIGURE_DPI = 100


def example_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes.

    ``--quick`` (a few-second run, what the test suite executes), ``--seed``, ``--out-dir``
    (where the PNG figures go; created if needed) and ``--threads`` (threads of the framework
    and of BLAS; 1, the default, is the fastest for these small models on a small shared CPU;
    0 leaves every library's default).
    """
    summary = (doc or "").strip().splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--quick", action="store_true", help="a small, fast run (the tests')")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    parser.add_argument(
        "--out-dir", type=Path, default=Path("."), help="directory for the PNG figures (.)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads of the framework and of BLAS (1; 0 leaves the libraries' defaults)",
    )
    return parser


def format_number(value: object) -> str:
    """Floats with 4 decimals (scientific below 1e-3), anything else as ``str``."""
    if isinstance(value, float) and math.isfinite(value):
        if value == 0:
            return "0"
        return f"{value:.2e}" if abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [list(headers)] + [[format_number(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``title`` and the table below it."""
    print(f"\n{title}\n{format_table(headers, rows)}")


def save_figure(fig: Figure, out_dir: Path, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name`` (PNG) and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    print(f"wrote {path}")
    return path


def limit_threads(n: int) -> None:
    """Use ``n`` threads in the BLAS/OpenMP libraries that NumPy, SciPy and scikit-learn load.

    On a small, shared CPU, idle BLAS threads spinning against other processes can make
    each small solver step (scipy's L-BFGS-B included) ten times slower. The frameworks
    have their own setting (``torch.set_num_threads``, TensorFlow's threading config).
    ``n = 0`` changes nothing.
    """
    if n > 0:
        threadpool_limits(n)


@contextmanager
def stopwatch(label: str) -> Iterator[None]:
    """Print how long the enclosed block took."""
    start = time.perf_counter()
    yield
    print(f"{label}: {time.perf_counter() - start:.1f} s")
