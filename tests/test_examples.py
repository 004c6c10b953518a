"""The example scripts in examples/, run in their --quick mode, with assertions on their results.

Each example's ``main(argv)`` runs in this process (the frameworks are imported once for the
whole suite) and returns what it printed as data. The fixture puts back what an example sets
globally: thread counts and the random generators' states.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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


def _lm_and_adam(summary: Any, framework: str) -> tuple[Any, Any]:
    runs = [run for run in summary.runs if run.framework == framework]
    lm = next(run for run in runs if run.method.startswith("LM"))
    adam = next(run for run in runs if run.method.startswith("Adam"))
    return lm, adam


@pytest.mark.usefixtures("restore_globals")
def test_lm_vs_adam_lm_beats_adam(tmp_path: Path) -> None:
    example = load_example("lm_vs_adam")
    summary = example.main(["--quick", "--out-dir", str(tmp_path)])

    assert [run.framework for run in summary.runs] == ["torch", "torch"]
    lm, adam = _lm_and_adam(summary, "torch")
    assert (lm.iterations, adam.iterations) == (30, 2000)
    assert len(lm.curve) == 31 and len(adam.curve) == 2001
    # 30 LM epochs beat 2,000 tuned Adam steps by a wide margin, on both sets
    assert lm.train_mse < 0.2 * adam.train_mse, (lm.train_mse, adam.train_mse)
    assert lm.val_mse < 0.2 * adam.val_mse, (lm.val_mse, adam.val_mse)
    assert lm.train_mse == pytest.approx(lm.curve[-1]) and lm.curve[-1] < 1e-3 * lm.curve[0]
    # the 6-D surrogate: validation MSE tracked, the best epoch's weights kept
    surrogate = summary.surrogate
    val = surrogate.history["val_loss"]
    assert surrogate.val_mse == pytest.approx(min(val), rel=1e-9)
    assert val[surrogate.best_epoch] == min(val)
    assert surrogate.val_mse < 0.05 * val[0] and surrogate.test_mse < 0.05 * val[0]
    assert_pngs(tmp_path, ["lm_vs_adam.png", "lm_surrogate.png"])


@pytest.mark.slow
@pytest.mark.usefixtures("restore_globals")
def test_lm_vs_adam_every_framework(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Keras/TensorFlow and JAX trainers: same weights and data, so the same results."""
    torch = pytest.importorskip("torch")
    # imported first, so that they start with the suite's settings, not the example's; the
    # variables the example sets only where unset are set here and put back afterwards
    pytest.importorskip("tensorflow")
    pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    for name in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras does not run on TensorFlow")
    from threadpoolctl import threadpool_limits

    example = load_example("lm_vs_adam")
    # --threads 0: TensorFlow's and XLA's thread settings are process-wide (see above); PyTorch
    # and BLAS are pinned here instead (restore_globals puts them back)
    torch.set_num_threads(1)
    threadpool_limits(1)
    argv = ["--quick", "--frameworks", "torch", "tensorflow", "jax", "--threads", "0"]
    summary = example.main([*argv, "--out-dir", str(tmp_path)])
    torch_lm, torch_adam = _lm_and_adam(summary, "torch")
    for framework in ("tensorflow", "jax"):
        lm, adam = _lm_and_adam(summary, framework)
        assert lm.train_mse < 0.2 * adam.train_mse
        assert lm.train_mse == pytest.approx(torch_lm.train_mse, rel=1e-3)
        # each framework's own Adam (fused in PyTorch, ε placed differently in Keras)
        assert adam.train_mse == pytest.approx(torch_adam.train_mse, rel=0.1)
    assert_pngs(tmp_path, ["lm_vs_adam.png", "lm_surrogate.png"])


@pytest.mark.usefixtures("restore_globals")
def test_nist_fit_matches_certified_values(tmp_path: Path) -> None:
    example = load_example("nist_fit")
    from nist_strd import load

    summary = example.main(["--quick", "--out-dir", str(tmp_path)])
    assert [(f.problem, f.start) for f in summary.fits] == [
        ("MGH09", 1), ("MGH09", 2), ("Thurber", 1), ("Thurber", 2),
    ]  # fmt: skip
    for fit in summary.fits:
        problem = load(fit.problem)
        for key, certified in problem.certified.items():  # 6 significant digits or more
            assert abs(fit.params[key] - certified) <= 1e-6 * abs(certified), (fit, key)
        assert min(fit.digits.values()) >= 6.0
        assert fit.rss == pytest.approx(problem.certified_rss, rel=1e-9)
    assert_pngs(tmp_path, ["nist_fit.png"])


@pytest.mark.usefixtures("restore_globals")
def test_conv_lm_matches_the_hessian_baseline_faster(tmp_path: Path) -> None:
    example = load_example("conv_lm")
    summary = example.main(["--quick", "--out-dir", str(tmp_path)])

    classic, lm = summary.classic, summary.lm
    assert classic.iterations == lm.iterations == 3
    assert classic.mse[0] == pytest.approx(lm.mse[0], rel=1e-5)  # the same start
    # the same fit quality: after as many iterations, LM's training MSE is at most 1.5x the
    # baseline's (it is usually lower), and both improved on the start by 2x or more
    assert lm.mse[-1] <= 1.5 * classic.mse[-1], (lm.mse, classic.mse)
    assert max(lm.mse[-1], classic.mse[-1]) < 0.5 * lm.mse[0]
    # in a fraction of the time (about 1/50 here; asked: 1/5)
    assert 5 * lm.cost.seconds < classic.cost.seconds, (lm.cost, classic.cost)
    # and of the memory of the vectorized Hessian
    vectorized = summary.curvature["Hessian, torch.func.hessian"].peak_mb
    ours = summary.curvature["one LM iteration (J by vmap, JᵀJ)"].peak_mb
    assert vectorized > 3 * ours + 20, summary.curvature
    assert_pngs(tmp_path, ["conv_lm.png"])


@pytest.mark.usefixtures("restore_globals")
def test_rso_digits_trains_without_gradients(tmp_path: Path) -> None:
    example = load_example("rso_digits")
    summary = example.main(["--quick", "--out-dir", str(tmp_path)])

    rso, sgd, result = summary.rso, summary.sgd, summary.result
    # one round over the 968 weights, last tensor first, biases left alone
    assert result.status == 0 and result.nit == 1 and result.nfev == 1 + 3 * 968
    assert result.history["key"][1:] == [("fc.weight",), ("conv2.weight",), ("conv1.weight",)]
    assert rso.evaluations[-1] == result.nfev and len(rso.accuracy) == 5
    # without a gradient: the training loss fell by a third and the accuracy (chance: 0.1) rose
    assert rso.loss[-1] < 0.67 * rso.loss[0], rso.loss
    assert rso.accuracy[-1] > 0.3 and rso.accuracy[-1] > rso.accuracy[0] + 0.15
    assert summary.batch_size == 128
    # SGD got the same training time (it stops at the first checkpoint past it) and did better
    assert rso.seconds[-1] <= sgd.seconds[-1] < rso.seconds[-1] + 1.0
    assert sgd.accuracy[-1] > max(0.9, rso.accuracy[-1])
    assert_pngs(tmp_path, ["rso_digits.png"])


@pytest.mark.usefixtures("restore_globals")
def test_distributed_torch_runs_alone() -> None:
    """Without torchrun it is a one-process fit (test_distributed.py runs two ranks)."""
    summary = load_example("distributed_torch").main(["--quick"])
    assert summary["world"] == 1.0 and summary["agree"] == 1.0
    assert summary["train_mse"] < 0.5 * summary["first_mse"]
