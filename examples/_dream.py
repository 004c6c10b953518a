"""The framework-independent half of the deep-dream examples (deep_dream_torch.py, _tf.py).

Both scripts train the same small CNN on scikit-learn's 8x8 digits and then optimize an
image to excite one channel of its second convolution. The objective, maximized over images
x with every pixel in [-1, 1] (the range the network was trained on), is

    J(x) = mean over positions of the channel's activation − λ₂·mean(x²) − λ_tv·TV(x),

where TV(x) sums the mean squared differences of vertically and of horizontally adjacent
pixels: the L2 penalty of Simonyan, Vedaldi and Zisserman (2014) pulls most pixels of the
optimum inside the box (some stay on their bounds), the TV term keeps the dream smooth.
Each framework script supplies two runners, one per method, that report J at every
gradient evaluation; this module holds the data, the budget bookkeeping, the fair tuning of
the gradient-ascent step, the printed table and the figures.

Why the penalties: with λ₂ = λ_tv = 0 the activation, nearly linear in x, is largest at a
vertex of the box. A large clipped step (close to projected sign-gradient ascent) gets there
in a few steps, while L-BFGS-B, whose line search does not step past the nearest bound along
its direction, moves pixels onto their bounds a few per iteration: with ``--l2 0 --tv 0``
the tuned loop ends far ahead (PyTorch: mean J 2.54 against 1.36 after 100 evaluations).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from _common import print_table
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: Gap (J* − J) below which a run counts as converged, for the "evaluations to" column.
TOLERANCE = 1e-3


@dataclass(frozen=True)
class DreamConfig:
    """Sizes and weights of one run (defaults for the full run, smaller with --quick)."""

    epochs: int  # training epochs of the CNN
    channels: tuple[int, ...]  # channels of the second convolution to dream of
    evaluations: int  # gradient evaluations per optimization run (the budget)
    steps: tuple[float, ...]  # grid of gradient-ascent steps tried
    l2: float  # λ₂
    tv: float  # λ_tv
    tiles: int = 3  # the start image is a tiles x tiles mosaic of test digits


def add_dream_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by both deep-dream scripts."""
    parser.add_argument(
        "--evaluations", type=int, help="gradient evaluations per run (100; 40 with --quick)"
    )
    parser.add_argument("--l2", type=float, default=2.0, help="weight λ₂ of mean(x²) (2)")
    parser.add_argument("--tv", type=float, default=0.3, help="weight λ_tv of TV(x) (0.3)")


def dream_config(args: argparse.Namespace) -> DreamConfig:
    """The run's configuration from the parsed command line."""
    if args.quick:
        return DreamConfig(
            epochs=2,
            channels=(0, 8, 16),
            evaluations=args.evaluations or 40,
            steps=(0.01, 0.03, 0.1),
            l2=args.l2,
            tv=args.tv,
        )
    return DreamConfig(
        epochs=10,
        channels=tuple(range(0, 32, 4)),
        evaluations=args.evaluations or 100,
        steps=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        l2=args.l2,
        tv=args.tv,
    )


def load_digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 8x8 images scaled to [-1, 1]: train and test split."""
    digits = load_digits()
    images = (digits.images / 8.0 - 1.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, stratify=digits.target, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def start_canvas(x_test: np.ndarray, tiles: int) -> np.ndarray:
    """The first tiles² test digits as one (8·tiles, 8·tiles) float64 image."""
    grid = x_test[: tiles * tiles].reshape(tiles, tiles, 8, 8)
    return grid.transpose(0, 2, 1, 3).reshape(8 * tiles, 8 * tiles).astype(np.float64)


@dataclass
class Run:
    """One optimization run: J at each gradient evaluation, and the best image seen."""

    values: list[float] = field(default_factory=list)
    image: np.ndarray | None = None

    @property
    def best(self) -> np.ndarray:
        """The best J so far after each evaluation."""
        return np.maximum.accumulate(np.asarray(self.values))


class Recorder:
    """Counts gradient evaluations against a budget and keeps the best image within it.

    The runners call :meth:`record` once per gradient evaluation; evaluations past the budget
    (scipy may finish a line search beyond ``maxfun``) are ignored, so both methods are
    compared on exactly the same number of evaluations.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.run = Run()
        self._best = -math.inf

    @property
    def exhausted(self) -> bool:
        return len(self.run.values) >= self.budget

    def record(self, value: float, image: np.ndarray) -> None:
        """Note J (to maximize) of one evaluation at ``image`` (copied when it is the best)."""
        if self.exhausted:
            return
        if value > self._best:
            self._best, self.run.image = value, np.array(image, dtype=np.float64)
        self.run.values.append(value)


@dataclass
class Comparison:
    """L-BFGS-B against gradient ascent with clipping at each step of the grid."""

    config: DreamConfig
    lbfgsb: list[Run]  # one per channel
    ascent: dict[float, list[Run]]  # step -> one run per channel
    best_step: float  # the step with the highest mean J at the budget
    j_star: np.ndarray  # per channel: the best J any run reached

    def final(self, runs: Sequence[Run]) -> np.ndarray:
        return np.array([run.best[-1] for run in runs])

    def gaps(self, runs: Sequence[Run]) -> np.ndarray:
        """(channels, evaluations): J* − best J so far."""
        return np.array([self.j_star[i] - run.best for i, run in enumerate(runs)])


def compare(
    lbfgsb: Callable[[int, int], Run],
    ascent: Callable[[int, float, int], Run],
    config: DreamConfig,
) -> Comparison:
    """Run ``lbfgsb(channel, budget)`` and ``ascent(channel, step, budget)`` on every channel.

    The step of gradient ascent is tuned fairly: every step of the grid runs on every channel
    and the one with the best mean J at the budget is "the tuned step" (tuned on the very
    channels it is scored on, which favours gradient ascent if anything).
    """
    budget = config.evaluations
    runs_lbfgsb = [lbfgsb(c, budget) for c in config.channels]
    runs_ascent = {s: [ascent(c, s, budget) for c in config.channels] for s in config.steps}
    for run in [*runs_lbfgsb, *(r for runs in runs_ascent.values() for r in runs)]:
        if len(run.values) < budget:  # converged early: it stays where it is
            run.values += [run.values[-1]] * (budget - len(run.values))
    means = {s: np.mean([r.best[-1] for r in runs]) for s, runs in runs_ascent.items()}
    best_step = max(means, key=lambda s: means[s])
    every = [runs_lbfgsb, *runs_ascent.values()]
    j_star = np.max([[r.best[-1] for r in runs] for runs in every], axis=0)
    return Comparison(config, runs_lbfgsb, runs_ascent, best_step, j_star)


def _evals_to_tolerance(gaps: np.ndarray) -> str:
    """Median over channels of the first evaluation with gap <= TOLERANCE."""
    firsts = [
        int(np.argmax(g <= TOLERANCE)) + 1 if (g <= TOLERANCE).any() else math.inf for g in gaps
    ]
    median = float(np.median(firsts))
    return f"> {gaps.shape[1]}" if math.isinf(median) else str(round(median))


def print_comparison(comp: Comparison, framework: str) -> None:
    """The table: mean J at the budget, median gap, evaluations to converge, wins."""
    budget = comp.config.evaluations
    final_lbfgsb = comp.final(comp.lbfgsb)
    final_tuned = comp.final(comp.ascent[comp.best_step])
    rows: list[list[object]] = []
    for name, step, runs in [
        ("L-BFGS-B, bounds [-1, 1]", "-", comp.lbfgsb),
        *(
            (f"ascent + clip{' (tuned)' if s == comp.best_step else ''}", f"{s:g}", r)
            for s, r in comp.ascent.items()
        ),
    ]:
        final, gaps = comp.final(runs), comp.gaps(runs)
        rows.append(
            [
                name,
                step,
                float(final.mean()),
                float(np.median(gaps[:, -1])),
                _evals_to_tolerance(gaps),
            ]
        )
    print_table(
        f"{framework}: dream objective J (higher is better) after {budget} gradient evaluations,"
        f" {len(comp.config.channels)} channels",
        ["method", "step", "mean J", "median gap to best", f"evals to gap {TOLERANCE:g}"],
        rows,
    )
    difference = final_lbfgsb - final_tuned
    higher, lower = int(np.sum(difference > 1e-6)), int(np.sum(difference < -1e-6))
    print(
        f"L-BFGS-B against the tuned gradient ascent: higher J on {higher}, lower on {lower}, "
        f"equal (within 1e-6) on {len(difference) - higher - lower} of "
        f"{len(difference)} channels"
    )


def curves_figure(comp: Comparison, title: str) -> Figure:
    """Left: J of the first channel against gradient evaluations. Right: the median gap."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    fig.suptitle(title, fontsize=11)
    left, right = fig.subplots(1, 2)
    evals = np.arange(1, comp.config.evaluations + 1)
    faded = [s for s in comp.ascent if s != comp.best_step]
    for s in faded:
        left.plot(evals, comp.ascent[s][0].best, color="0.75", linewidth=0.8)
        right.semilogy(
            evals,
            np.maximum(np.median(comp.gaps(comp.ascent[s]), 0), 1e-9),
            color="0.75",
            linewidth=0.8,
        )
    series = [
        ("L-BFGS-B, bounds [-1, 1]", comp.lbfgsb, "C0", "-"),
        (f"ascent + clip, tuned step {comp.best_step:g}", comp.ascent[comp.best_step], "C3", "--"),
    ]
    for label, runs, color, style in series:
        left.plot(evals, runs[0].best, style, color=color, linewidth=2, label=label)
        gaps = np.maximum(comp.gaps(runs), 1e-9)
        right.semilogy(evals, np.median(gaps, 0), style, color=color, linewidth=2, label=label)
        right.fill_between(
            evals, np.quantile(gaps, 0.25, 0), np.quantile(gaps, 0.75, 0), color=color, alpha=0.15
        )
    left.plot([], [], color="0.75", linewidth=0.8, label="ascent + clip, other steps of the grid")
    left.set_title(f"channel {comp.config.channels[0]}: best J so far", fontsize=10)
    left.set_xlabel("gradient evaluations")
    left.set_ylabel("J (higher is better)")
    lo = min(r.best[0] for r in [comp.lbfgsb[0], comp.ascent[comp.best_step][0]])
    left.set_ylim(lo, comp.j_star[0] + 0.05 * (comp.j_star[0] - lo))
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    right.set_title(
        f"gap to the best J found, median and quartiles over {len(comp.config.channels)} channels",
        fontsize=10,
    )
    right.set_xlabel("gradient evaluations")
    right.set_ylabel("J* − J")
    right.grid(alpha=0.3, which="both")
    return fig


def images_figure(comp: Comparison, start: np.ndarray, title: str) -> Figure:
    """The start mosaic, then per channel the tuned ascent's dream above L-BFGS-B's."""
    channels = comp.config.channels
    fig = Figure(figsize=(1.25 * (len(channels) + 1), 3.0), layout="constrained")
    fig.suptitle(title, fontsize=10)
    axes = fig.subplots(2, len(channels) + 1)
    style = {"cmap": "gray", "vmin": -1.0, "vmax": 1.0, "interpolation": "nearest"}
    axes[0, 0].imshow(start, **style)
    axes[0, 0].set_title("start", fontsize=8)
    axes[1, 0].axis("off")
    for j, c in enumerate(channels, start=1):
        for i, (name, run) in enumerate(
            [("ascent", comp.ascent[comp.best_step][j - 1]), ("L-BFGS-B", comp.lbfgsb[j - 1])]
        ):
            assert run.image is not None
            axes[i, j].imshow(run.image, **style)
            axes[i, j].set_title(f"ch {c}, {name}\nJ = {run.best[-1]:.3f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
