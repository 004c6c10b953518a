"""Checks of the NIST StRD parser and the hand-written models."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nist_strd import DATA_DIR, PROBLEM_NAMES, NistProblem, load, load_all

# (parameters, observations, predictors, difficulty), typed from each file's
# header and NIST's difficulty grading.
EXPECTED: dict[str, tuple[int, int, int, str]] = {
    "Misra1a": (2, 14, 1, "lower"),
    "Chwirut2": (3, 54, 1, "lower"),
    "Chwirut1": (3, 214, 1, "lower"),
    "Lanczos3": (6, 24, 1, "lower"),
    "Gauss1": (8, 250, 1, "lower"),
    "Gauss2": (8, 250, 1, "lower"),
    "DanWood": (2, 6, 1, "lower"),
    "Misra1b": (2, 14, 1, "lower"),
    "Kirby2": (5, 151, 1, "average"),
    "Hahn1": (7, 236, 1, "average"),
    "Nelson": (3, 128, 2, "average"),
    "MGH17": (5, 33, 1, "average"),
    "Lanczos1": (6, 24, 1, "average"),
    "Lanczos2": (6, 24, 1, "average"),
    "Gauss3": (8, 250, 1, "average"),
    "Misra1c": (2, 14, 1, "average"),
    "Misra1d": (2, 14, 1, "average"),
    "Roszman1": (4, 25, 1, "average"),
    "ENSO": (9, 168, 1, "average"),
    "MGH09": (4, 11, 1, "higher"),
    "Thurber": (7, 37, 1, "higher"),
    "BoxBOD": (2, 6, 1, "higher"),
    "Rat42": (3, 9, 1, "higher"),
    "MGH10": (3, 16, 1, "higher"),
    "Eckerle4": (3, 35, 1, "higher"),
    "Rat43": (4, 15, 1, "higher"),
    "Bennett5": (3, 154, 1, "higher"),
}

names = pytest.mark.parametrize("name", PROBLEM_NAMES)


def _header_count(text: str, pattern: str) -> int:
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match is not None, pattern
    return int(match.group(1))


def test_problem_list() -> None:
    """All 27 files are present, listed and loadable."""
    assert sorted(PROBLEM_NAMES) == sorted(EXPECTED)
    assert sorted(p.stem for p in DATA_DIR.glob("*.dat")) == sorted(PROBLEM_NAMES)
    assert [p.name for p in load_all()] == list(PROBLEM_NAMES)
    assert load("Misra1a") is load("Misra1a")  # cached


@names
def test_parsed_shapes(name: str) -> None:
    """Parsed sizes match the header's stated counts."""
    prob = load(name)
    n_params, n_obs, n_pred, difficulty = EXPECTED[name]
    text = (DATA_DIR / f"{name}.dat").read_text(encoding="ascii")

    # Counts as the file's header states them.
    assert _header_count(text, r"^\s+(\d+) Parameters") == n_params
    assert _header_count(text, r"^\s+(\d+) Observations") == n_obs
    assert _header_count(text, r"^Number of Observations:\s+(\d+)") == n_obs
    assert _header_count(text, r"^\s+(\d+) Predictors?\b") == n_pred

    assert prob.name == name
    assert prob.difficulty == difficulty
    keys = [f"b{i}" for i in range(1, n_params + 1)]
    for table in (prob.start1, prob.start2, prob.certified, prob.certified_std):
        assert list(table) == keys
        assert all(isinstance(v, float) for v in table.values())
    assert prob.param_names == tuple(keys)
    assert all(v > 0 for v in prob.certified_std.values())

    assert prob.y.dtype == np.float64
    assert prob.y.shape == (n_obs,)
    assert prob.x.dtype == np.float64
    assert prob.x.shape == ((n_obs,) if n_pred == 1 else (n_obs, n_pred))
    assert np.all(np.isfinite(prob.x))
    assert np.all(np.isfinite(prob.y))
    assert prob.certified_rss > 0

    # The residual standard deviation is sqrt(RSS / (m - p)); this also
    # cross-checks m and p (Rat43's stated "Degrees of Freedom" is a typo).
    rsd = float(re.findall(r"Residual Standard Deviation:\s+(\S+)", text)[0])
    assert rsd**2 * (n_obs - n_params) == pytest.approx(prob.certified_rss, rel=1e-9)


def test_parsed_values_spot_check() -> None:
    """A few values compare exactly with the file text."""
    prob = load("Nelson")
    assert prob.start2["b2"] == 5e-9
    assert prob.certified["b3"] == -5.7701013174e-02
    assert prob.x[0].tolist() == [1.0, 180.0]
    assert prob.y[0] == 15.0
    assert prob.x[-1].tolist() == [64.0, 275.0]
    assert prob.y[-1] == 1.2
    prob = load("Hahn1")
    assert prob.y[0] == 0.591  # written ".591E0" in the file
    assert prob.start1["b4"] == -0.00001


def _gauss_newton_step(prob: NistProblem, b: dict[str, float]) -> dict[str, float]:
    """One Gauss-Newton step with a central-difference Jacobian."""
    keys = prob.param_names
    v = np.array([b[k] for k in keys])

    def res(u: np.ndarray) -> np.ndarray:
        return np.asarray(prob.residual(dict(zip(keys, u, strict=True)), prob.x, prob.y, np))

    cols = []
    for i in range(len(v)):
        h = np.zeros_like(v)
        h[i] = 1e-7 * abs(v[i])
        cols.append((res(v + h) - res(v - h)) / (2 * h[i]))
    step = np.linalg.lstsq(np.stack(cols, axis=1), -res(v), rcond=None)[0]
    return dict(zip(keys, (v + step).tolist(), strict=True))


@names
def test_certified_rss(name: str) -> None:
    """The numpy RSS at the certified point is the certified RSS."""
    prob = load(name)
    rss = prob.rss(prob.certified)
    if name != "Lanczos1":
        assert rss == pytest.approx(prob.certified_rss, rel=1e-6)
        return
    # Lanczos1's certified RSS (1.4e-25) is far below what its parameters,
    # printed to 11 digits, can reproduce (~4e-21). One Gauss-Newton step
    # from the printed point must reach it without leaving the rounding.
    assert rss < 1e-19
    refined = _gauss_newton_step(prob, prob.certified)
    for key, value in prob.certified.items():
        assert refined[key] == pytest.approx(value, rel=1e-10)
    assert prob.rss(refined) == pytest.approx(prob.certified_rss, rel=1e-2)


@names
def test_residual_form(name: str) -> None:
    """Residual is y - model (log(y) - model for Nelson)."""
    prob = load(name)
    r = prob.residual(prob.certified, prob.x, prob.y, np)
    f = prob.model(prob.certified, prob.x, np)
    assert r.shape == f.shape == prob.y.shape
    target = np.log(prob.y) if name == "Nelson" else prob.y
    np.testing.assert_array_equal(r, target - f)
    assert prob.log_response == (name == "Nelson")


@names
def test_torch_matches_numpy(name: str) -> None:
    """The model gives the same values under torch as under numpy."""
    torch = pytest.importorskip("torch")
    prob = load(name)
    b_np = prob.certified
    b_t = {k: torch.tensor(v, dtype=torch.float64) for k, v in b_np.items()}
    x_t = torch.tensor(np.array(prob.x), dtype=torch.float64)
    y_t = torch.tensor(np.array(prob.y), dtype=torch.float64)

    f_t = prob.model(b_t, x_t, torch)
    assert isinstance(f_t, torch.Tensor)
    assert f_t.dtype == torch.float64
    f_np = prob.model(b_np, prob.x, np)
    np.testing.assert_allclose(f_t.numpy(), f_np, rtol=1e-12, atol=0)

    r_t = prob.residual(b_t, x_t, y_t, torch)
    r_np = prob.residual(b_np, prob.x, prob.y, np)
    rss_t = float(torch.sum(r_t * r_t))
    assert rss_t == pytest.approx(float(np.sum(r_np * r_np)), rel=1e-9)
