"""The example scripts in examples/, run in their --quick mode, with assertions on their results.

Each example's ``main(argv)`` runs in this process (the frameworks are imported once for the
whole suite) and returns what it printed as data. The fixture puts back what an example sets
globally: thread counts and the random generators' states.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples import their helpers as top-level modules)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


@pytest.fixture
def restore_globals() -> Iterator[None]:
    """Undo the examples' global settings: thread counts and random states."""
    from threadpoolctl import threadpool_limits

    torch = pytest.importorskip("torch")
    threads, torch_rng = torch.get_num_threads(), torch.random.get_rng_state()
    # keras.utils.set_random_seed seeds NumPy's legacy global generator: put it back too
    numpy_rng, python_rng = np.random.get_state(), random.getstate()  # noqa: NPY002
    with threadpool_limits(limits=None):  # restores the BLAS/OpenMP limits on exit
        yield
    torch.set_num_threads(threads)
    torch.random.set_rng_state(torch_rng)
    np.random.set_state(numpy_rng)  # noqa: NPY002
    random.setstate(python_rng)


def assert_pngs(out_dir: Path, names: list[str]) -> None:
    for name in names:
        path = out_dir / name
        assert path.is_file(), f"{name} was not written"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < path.stat().st_size < 200_000


@pytest.mark.usefixtures("restore_globals")
def test_beta_calibration_improves_log_loss(tmp_path: Path) -> None:
    example = load_example("beta_calibration")
    summary = example.main(["--quick", "--out-dir", str(tmp_path)])

    log_loss = {name: values[:, 0] for name, values in summary.metrics.items()}
    brier = {name: values[:, 1] for name, values in summary.metrics.items()}
    before, after = log_loss[example.UNCALIBRATED], log_loss[example.BETA]
    assert len(after) == 5
    # better on every test split, and by a wide margin on average
    assert np.all(after < before), (before, after)
    assert after.mean() < 0.5 * before.mean()
    assert brier[example.BETA].mean() < brier[example.UNCALIBRATED].mean()
    # the fitted maps are monotone: the bounds hold
    for split in summary.splits:
        assert split.beta["a"] >= 0 and split.beta["b"] >= 0
        assert np.all(
            (split.probabilities[example.BETA] > 0) & (split.probabilities[example.BETA] < 1)
        )
    assert_pngs(tmp_path, ["beta_calibration.png"])


def test_beta_calibration_bounds_bind(restore_globals: None) -> None:
    """Under-confident AdaBoost: on these two splits (of the 6 in 50 where it happens) the
    unbounded fit is non-monotone, and L-BFGS-B stops a or b at its bound 0 instead."""
    example = load_example("beta_calibration")
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    for seed, at_bound in [(8, "a"), (22, "b")]:
        split = example.run_split(data.data, data.target, "adaboost", seed)
        assert split.unbounded[at_bound] < -1.0
        assert split.beta[at_bound] == 0.0
        other = "b" if at_bound == "a" else "a"
        assert split.beta[other] > 1.0


def check_dream(comparison: Any, out_dir: Path, framework: str) -> None:
    """L-BFGS-B beats the tuned clipped gradient ascent at equal gradient evaluations."""
    budget = comparison.config.evaluations
    lbfgsb = comparison.lbfgsb
    tuned = comparison.ascent[comparison.best_step]
    for run in [*lbfgsb, *(r for runs in comparison.ascent.values() for r in runs)]:
        assert len(run.values) == budget
        assert run.image is not None and run.image.min() >= -1.0 and run.image.max() <= 1.0
    final_lbfgsb = np.array([run.best[-1] for run in lbfgsb])
    final_tuned = np.array([run.best[-1] for run in tuned])
    assert final_lbfgsb.mean() > final_tuned.mean()
    assert np.sum(final_lbfgsb > final_tuned + 1e-9) > len(final_tuned) / 2
    # every run improved on its start
    assert all(run.best[-1] > run.values[0] for run in lbfgsb)
    assert_pngs(
        out_dir, [f"deep_dream_{framework}_curves.png", f"deep_dream_{framework}_images.png"]
    )


@pytest.mark.usefixtures("restore_globals")
def test_deep_dream_torch_lbfgsb_beats_gradient_ascent(tmp_path: Path) -> None:
    example = load_example("deep_dream_torch")
    check_dream(example.main(["--quick", "--out-dir", str(tmp_path)]), tmp_path, "torch")


@pytest.mark.slow
@pytest.mark.usefixtures("restore_globals")
def test_deep_dream_tf_lbfgsb_beats_gradient_ascent(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("dict_minimize.tensorflow_api")
    example = load_example("deep_dream_tf")
    # --threads 0: TensorFlow's thread pools are process-wide and fixed at first use, so
    # leave them to whatever the rest of the suite uses.
    argv = ["--quick", "--threads", "0", "--out-dir", str(tmp_path)]
    check_dream(example.main(argv), tmp_path, "tf")
