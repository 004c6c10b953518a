"""least_squares on every backend: agreement with scipy, bounds, robust losses, stopping
rules, non-finite values, row chunks, the matrix-free mode and the scipy-delegating methods."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.optimize as so

from cases import Case
from dict_minimize import (
    DictMinimizeWarning,
    InvalidBoundsError,
    InvalidOptionError,
    ObjectiveError,
    OptimizationInterrupted,
)
from dict_minimize._tree import tree_spec
from dict_minimize.backends._protocol import SOLVER_AUTODIFF, SOLVER_PRIMITIVES, Backend
from dict_minimize.solvers._problem import ResidualProblem
from dict_minimize.solvers.losses import Loss

TIGHT = {"ftol": 1e-14, "xtol": 1e-14, "gtol": 1e-14}

# y = a·exp(-k·t) + c with noise: a well-conditioned problem with a nonzero residual.
_RNG = np.random.default_rng(0)
T = np.linspace(0.0, 4.0, 40)
Y = 2.5 * np.exp(-1.3 * T) + 0.5 + 0.05 * _RNG.standard_normal(T.size)
X0 = {"a": 1.0, "kc": [1.0, 0.0]}
# Outliers for the robust losses.
Y_OUT = Y.copy()
Y_OUT[[3, 17, 30]] += [2.0, -1.5, 3.0]


def _residual(xp: Any) -> Any:
    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["a"] * xp.exp(-p["kc"][0] * t) + p["kc"][1] - y

    return residual_fn


def _flat_residual(x: np.ndarray, y: np.ndarray = Y) -> np.ndarray:
    return np.asarray(x[0] * np.exp(-x[1] * T) + x[2] - y)


def _x0(case: Case, dtype: str = "float64") -> dict[str, Any]:
    return {k: case.tensor(v, dtype) for k, v in X0.items()}


def _flat(case: Case, x: dict[str, Any]) -> np.ndarray:
    return np.concatenate([case.numpy(x["a"]).ravel(), case.numpy(x["kc"]).ravel()])


def _scipy(**kwargs: Any) -> np.ndarray:
    y = kwargs.pop("y", Y)
    res = so.least_squares(
        _flat_residual, np.array([1.0, 1.0, 0.0]), kwargs=dict(y=y), **{**TIGHT, **kwargs}
    )
    return np.asarray(res.x)


def _call(case: Case, *, y: np.ndarray = Y, x0: Any = None, **kwargs: Any) -> Any:
    return case.api.least_squares(
        _residual(case.xp),
        _x0(case) if x0 is None else x0,
        args=(case.tensor(T), case.tensor(y)),
        **{**TIGHT, **kwargs},
    )


def _close(actual: np.ndarray, expected: np.ndarray, tol: float = 1e-8) -> None:
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


# -- the protocol ---------------------------------------------------------------------------


def test_backend_implements_solver_primitives(case: Case) -> None:
    """Every backend in tests/cases.py overrides each primitive the solvers use."""
    cls = type(case.backend)
    needed = SOLVER_PRIMITIVES + (SOLVER_AUTODIFF if case.autodiff else ())
    missing = [name for name in needed if getattr(cls, name) is getattr(Backend, name)]
    assert not missing, f"{case.name} backend lacks {missing}"


def test_solver_primitives_behave(case: Case) -> None:
    """The primitives do what the protocol says, including Cholesky failure without raising."""
    b = case.backend
    a = case.tensor([[4.0, 1.0], [1.0, 3.0]])
    v = case.tensor([1.0, 2.0])
    _close(case.numpy(b.cholesky_solve(a, v)), np.linalg.solve([[4, 1], [1, 3]], [1, 2]))
    bad = b.cholesky_solve(case.tensor([[1.0, 2.0], [2.0, 1.0]]), v)  # indefinite
    assert np.isnan(case.numpy(bad)).any()
    w, _ = b.eigh(a)
    _close(case.numpy(w), np.linalg.eigvalsh([[4, 1], [1, 3]]))
    j = case.tensor(np.arange(12.0).reshape(6, 2))
    _close(
        case.numpy(b.gram(j, j)), np.arange(12.0).reshape(6, 2).T @ np.arange(12.0).reshape(6, 2)
    )
    _close(case.numpy(b.gram(j, case.tensor(np.ones(6)))), np.arange(12.0).reshape(6, 2).sum(0))
    big = case.tensor(np.random.default_rng(1).standard_normal((50, 300)))
    _close(case.numpy(b.gram(big, big)), case.numpy(big).T @ case.numpy(big), 1e-12)
    _close(b.host(b.amax(v), b.sum(v), b.norm(v)), [2.0, 3.0, math.sqrt(5.0)])
    rows = b.slice_axis(case.tensor(np.arange(12.0).reshape(3, 4)), 1, 3, 1)
    _close(case.numpy(rows), np.arange(12.0).reshape(3, 4)[:, 1:3])


# -- agreement with scipy ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lm", "trf", "scipy-trf", "scipy-dogbox", "scipy-lm"])
@pytest.mark.parametrize("batched", [False, True], ids=["general", "per-sample"])
def test_agrees_with_scipy(case: Case, method: str, batched: bool) -> None:
    options = {"batched_args": (0, 1)} if batched else {}
    res = _call(case, method=method, options=options)
    assert res.success, res.message
    expected = _scipy(method="lm")
    _close(_flat(case, res.x), expected)
    assert res.x["kc"].dtype == _x0(case)["kc"].dtype
    _close(res.cost, 0.5 * float(np.sum(_flat_residual(expected) ** 2)), 1e-12)
    _close(case.numpy(res.fun), _flat_residual(expected), 1e-7)
    assert res.nfev >= 1 and res.njev >= 1 and res.optimality < 1e-6
    assert set(res.grad) == {"a", "kc"}


@pytest.mark.parametrize(
    "options",
    [
        {"damping": "marquardt"},
        {"x_scale": 1.0},
        {"x_scale": {"a": 2.0, "kc": 0.5}},
        {"geodesic": True},
        {"eigh_after": 0},
        {"linear_solver": "cg", "cg_tol": 1e-10, "x_scale": 1.0},
        {"linear_solver": "cg", "cg_tol": 1e-10, "batched_args": (0, 1)},
    ],
    ids=["marquardt", "levenberg", "x_scale-dict", "geodesic", "eigh", "cg", "cg-per-sample"],
)
def test_variants_reach_the_same_optimum(case: Case, options: dict[str, Any]) -> None:
    if options.get("linear_solver") == "cg" and not case.autodiff:
        with pytest.raises(InvalidOptionError, match="matrix-free"):
            _call(case, options=options)
        return
    res = _call(case, options={**options, "max_retries": 40}, max_nfev=2000)
    assert res.status > 0, res.message
    _close(_flat(case, res.x), _scipy(method="lm"))


def _peaks(xp: Any, p: Any, t: Any) -> Any:
    """Two exponentials and two Gaussians: badly conditioned, a nonzero residual."""
    out = p["amp"][0] * xp.exp(-p["rate"][0] * t) + p["amp"][1] * xp.exp(-p["rate"][1] * t)
    for k in range(2):
        out = out + p["gauss"][k] * xp.exp(-0.5 * ((t - p["center"][k]) / p["width"][k]) ** 2)
    return out


def test_nielsen_start_floor_is_lifted_by_a_good_step(case: Case) -> None:
    """μ starts above Nielsen's ``τ·max diag`` (= τ with Marquardt scaling) where the first
    step must stay within scipy trf's initial radius; the first well-predicted step brings it
    back to that scale, so the fit needs no more Jacobians than MINPACK's iterations."""
    true = {"amp": [1.0, 0.6], "rate": [1.5, 0.2], "gauss": [0.8, 0.5]}
    true |= {"center": [3.0, 7.0], "width": [0.5, 1.0]}
    start = {"amp": [1.2, 0.8], "rate": [0.8, 1.25], "gauss": [0.8, 1.25]}
    start |= {"center": [1.1, 0.95], "width": [1.25, 0.8]}
    t = np.linspace(0.0, 10.0, 500)
    host = {k: np.array(v) for k, v in true.items()}
    y = _peaks(np, host, t) + 0.02 * np.random.default_rng(7).standard_normal(t.size)
    x0 = {k: case.tensor(np.array(true[k]) * start[k]) for k in true}

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return _peaks(case.xp, p, t) - y

    res = case.api.least_squares(residual_fn, x0, args=(case.tensor(t), case.tensor(y)))
    keys = list(true)

    def flat_residual(x: np.ndarray) -> np.ndarray:
        return np.asarray(_peaks(np, {k: x[2 * i : 2 * i + 2] for i, k in enumerate(keys)}, t) - y)

    ref = so.least_squares(flat_residual, np.concatenate([case.numpy(x0[k]) for k in keys]))
    damping = res.history["damping"]
    assert damping[0] > 10 * 1e-3 >= damping[1], damping  # the floor, then τ or below
    assert res.njev <= ref.nfev, (res.njev, ref.nfev)
    assert math.isclose(res.cost, ref.cost, rel_tol=1e-9)


def test_nielsen_state_round_trip() -> None:
    """The checkpointed state carries the pending scale; a state without it (an older
    checkpoint) resumes with the floor lifted."""
    from dict_minimize.solvers.damping import Nielsen

    rule = Nielsen(mu=1e-3)
    rule.start(diag_max=2.0, step_floor=0.5)
    assert rule.mu == 0.5
    rule.on_accept(0.5)  # a mediocre step keeps the floor's trajectory
    assert rule.mu > 2e-3
    copy = Nielsen()
    copy.load_state(rule.state())
    assert copy.state() == rule.state()
    copy.on_accept(0.9)
    assert copy.mu <= 2e-3 and copy.state()["relative"] == math.inf
    old = Nielsen()
    old.load_state({"mu": 0.4, "nu": 4.0})
    old.on_accept(0.9)
    assert math.isclose(old.mu, 0.4 * max(1 / 3, 1 - 0.8**3))


def test_float32_and_nested_params(case: Case) -> None:
    x0 = {"a": case.tensor(1.0, "float32"), "inner": {"kc": case.tensor([1.0, 0.0], "float32")}}

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        kc = p["inner"]["kc"]
        return p["a"] * case.xp.exp(-kc[0] * t) + kc[1] - y

    res = case.api.least_squares(
        residual_fn, x0, args=(case.tensor(T, "float32"), case.tensor(Y, "float32"))
    )
    assert res.x["inner"]["kc"].dtype == x0["inner"]["kc"].dtype
    got = np.concatenate([case.numpy(res.x["a"]).ravel(), case.numpy(res.x["inner"]["kc"])])
    _close(got, _scipy(method="lm"), 1e-3)
    _close(case.numpy(x0["inner"]["kc"]), [1.0, 0.0], 0)  # x0 untouched


# -- bounds and robust losses ----------------------------------------------------------------


def test_bounds_match_scipy(case: Case) -> None:
    lb, ub = {"a": 0.0, "kc": [1.5, -1.0]}, {"kc": [3.0, 0.4]}
    x0 = {"a": case.tensor(1.0), "kc": case.tensor([1.5, 0.0])}
    res = _call(
        case,
        x0=x0,
        method="trf",
        lb_dict={"a": 0.0, "kc": case.tensor(lb["kc"])},
        ub_dict={"kc": case.tensor(ub["kc"])},
    )
    assert res.success, res.message
    expected = so.least_squares(
        _flat_residual,
        np.array([1.0, 1.5, 0.0]),
        method="trf",
        bounds=([0.0, 1.5, -1.0], [np.inf, 3.0, 0.4]),
        **TIGHT,
    ).x
    _close(_flat(case, res.x), expected, 1e-7)
    assert list(np.ravel(res.active_mask["kc"])) == [-1, 1]
    assert int(res.active_mask["a"]) == 0
    for method in ("scipy-trf", "scipy-dogbox"):
        other = _call(
            case,
            x0=x0,
            method=method,
            lb_dict={"kc": case.tensor(lb["kc"])},
            ub_dict={"kc": case.tensor(ub["kc"])},
        )
        _close(_flat(case, other.x), expected, 1e-7)


def test_bounds_errors_and_clipping(case: Case) -> None:
    with pytest.raises(InvalidBoundsError, match="trf"):
        _call(case, method="lm", lb_dict={"a": 0.0})
    with pytest.warns(DictMinimizeWarning, match="outside its bounds"):
        res = _call(case, method="trf", lb_dict={"a": 1.5})
    assert float(case.numpy(res.x["a"])) >= 1.5


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
@pytest.mark.parametrize("method", ["lm", "trf"])
def test_robust_losses_match_scipy(case: Case, loss: str, method: str) -> None:
    res = _call(case, y=Y_OUT, loss=loss, f_scale=0.3, method=method, max_nfev=3000)
    assert res.status > 0, res.message
    expected = _scipy(method="trf", loss=loss, f_scale=0.3, y=Y_OUT)
    _close(_flat(case, res.x), expected, 1e-7)
    ref = so.least_squares(
        _flat_residual, expected, loss=loss, f_scale=0.3, kwargs=dict(y=Y_OUT), max_nfev=1
    )
    _close(res.cost, ref.cost, 1e-10)


def test_robust_loss_beats_linear_on_outliers(case: Case) -> None:
    linear = _flat(case, _call(case, y=Y_OUT).x)
    robust = _flat(case, _call(case, y=Y_OUT, loss="soft_l1", f_scale=0.1).x)
    clean = _scipy(method="lm")
    assert np.abs(robust - clean).max() < 0.3 * np.abs(linear - clean).max()


# -- stopping rules ---------------------------------------------------------------------------


def test_stopping_statuses(case: Case) -> None:
    at_opt = dict(zip(("a", "kc"), (case.tensor(v) for v in _split(_scipy(method="lm")))))
    res = _call(case, x0=at_opt, gtol=1e-6)
    assert res.status == 1 and res.success and res.nit == 0
    res = case.api.least_squares(
        _residual(case.xp),
        _x0(case),
        args=(case.tensor(T), case.tensor(Y)),
        ftol=1e-4,
        xtol=1e-15,
        gtol=1e-15,
    )
    assert res.status in (2, 4) and res.success
    res = _call(case, xtol=1e-3, ftol=1e-15, gtol=1e-15)
    assert res.status in (3, 4) and res.success
    res = _call(case, max_nfev=3)
    assert res.status == 0 and not res.success and res.nfev <= 3
    res = _call(case, options={"max_iter": 2, "progress": True})
    assert res.status == 0 and res.nit == 2 and "iterations" in res.message
    assert len(res.history["cost"]) == 3 and res.history["cost"][-1] <= res.history["cost"][0]
    seen: list[float] = []

    def stop(intermediate_result: Any) -> bool:
        seen.append(intermediate_result.cost)
        return len(seen) == 2

    res = _call(case, callback=stop)
    assert res.status == -2 and res.nit == 2 and len(seen) == 2
    with pytest.raises(InvalidOptionError, match="epsilon"):
        _call(case, ftol=0.0, xtol=0.0, gtol=0.0)


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x[0]), np.asarray(x[1:])


def test_callback_gets_params_dict(case: Case) -> None:
    keys: list[set[str]] = []
    _call(case, callback=lambda params: keys.append(set(params)), options={"max_iter": 3})
    assert keys == [{"a", "kc"}] * 3


# -- bad input and non-finite values ----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_nonfinite_residual_at_x0_is_an_error(case: Case) -> None:
    def residual_fn(p: Any) -> Any:
        return case.xp.log(p["x"]) - 1.0

    with pytest.raises(ObjectiveError, match="not finite at x0"):
        case.api.least_squares(residual_fn, {"x": case.tensor([1.0, -1.0])})


def test_nonfinite_trial_points_are_rejected(case: Case) -> None:
    """log(x) is NaN for x < 0, where the first full step lands; LM must back off."""
    target = case.tensor([math.log(1e-3), math.log(50.0)])

    def residual_fn(p: Any) -> Any:
        return case.xp.log(p["x"]) - target

    for method in ("lm", "trf"):
        res = case.api.least_squares(
            residual_fn,
            {"x": case.tensor([1.0, 1.0])},
            method=method,
            **TIGHT,
            options={"mu": 1e-12} if method == "lm" else None,
        )
        assert res.success, res.message
        _close(case.numpy(res.x["x"]), [1e-3, 50.0], 1e-8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "bogus"}, InvalidOptionError, "unknown method"),
        ({"loss": "l1"}, InvalidOptionError, "unknown loss"),
        ({"f_scale": -1.0}, InvalidOptionError, "f_scale"),
        ({"options": {"nope": 1}}, InvalidOptionError, "no option"),
        ({"options": {"mu_dec": 0.5}}, InvalidOptionError, "other damping"),
        ({"options": {"damping": "fast"}}, InvalidOptionError, "damping"),
        ({"options": {"in_axes": (0,)}}, InvalidOptionError, "one axis"),
        ({"options": {"in_axes": (0, 3)}}, InvalidOptionError, "batch axis"),
        ({"options": {"batched_args": (5,)}}, InvalidOptionError, "indices"),
        ({"options": {"x_scale": -1.0}}, InvalidOptionError, "positive"),
        ({"max_nfev": 0}, InvalidOptionError, "max_nfev"),
        ({"method": "scipy-lm", "loss": "huber"}, InvalidOptionError, "linear"),
    ],
)
def test_bad_options(case: Case, kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _call(case, **kwargs)


def test_bad_residuals(case: Case) -> None:
    with pytest.raises(ObjectiveError, match="must return"):
        case.api.least_squares(lambda p: [1.0, 2.0], {"x": case.tensor([1.0])})
    with pytest.raises(InvalidOptionError, match="different numbers of samples"):
        _call(case, y=Y[:10], options={"batched_args": (0, 1)})
    with pytest.raises(ObjectiveError, match="along axis 0"):
        case.api.least_squares(
            lambda p, t: case.xp.sum(p["x"] * t) + case.tensor([0.0, 1.0, 2.0]),
            {"x": case.tensor(1.0)},
            args=(case.tensor([1.0, 2.0]),),
            options={"batched_args": (0,)},
        )


def test_exception_keeps_best_point(case: Case) -> None:
    """An error (here from the callback: compiled backends run residual_fn only while tracing)
    or Ctrl-C mid-run carries the best point found so far."""
    start_cost = 0.5 * float(np.sum(_flat_residual(np.array([1.0, 1.0, 0.0])) ** 2))

    def failing(after: int, error: BaseException) -> Any:
        seen: list[int] = []

        def callback(params: Any) -> None:
            seen.append(1)
            if len(seen) == after:
                raise error

        return callback

    with pytest.raises(RuntimeError, match="sensor offline") as info:
        _call(case, callback=failing(3, RuntimeError("sensor offline")))
    best = info.value.result  # type: ignore[attr-defined]
    assert best.status == -3 and not best.success and best.nit == 3
    assert "sensor offline" in repr(best)
    assert best.cost < start_cost
    _close(0.5 * float(np.sum(_flat_residual(_flat(case, best.x)) ** 2)), best.cost, 1e-10)

    with pytest.raises(OptimizationInterrupted) as stop:
        _call(case, callback=failing(2, KeyboardInterrupt()))
    assert stop.value.result.status == -2 and stop.value.result.cost < start_cost

    def raises_at_x0(p: Any, t: Any, y: Any) -> Any:
        raise ValueError("bad sensor")

    with pytest.raises(ValueError, match="bad sensor"):
        case.api.least_squares(raises_at_x0, _x0(case), args=(case.tensor(T), case.tensor(Y)))


# -- row chunks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["linear", "cauchy"])
def test_row_chunked_normal_equations_equal_full(case: Case, loss: str) -> None:
    """JᵀWJ, JᵀWr and the cost summed over row chunks equal those of the whole J."""
    rng = np.random.default_rng(3)
    x = case.tensor(rng.standard_normal((23, 3)))
    y = case.tensor(rng.standard_normal((23, 2)))
    x0 = {"w": case.tensor(rng.standard_normal((3, 2))), "b": case.tensor([0.1, -0.2])}
    xp = case.xp

    def residual_fn(p: Any, x: Any, y: Any) -> Any:
        return xp.tanh(x @ p["w"] + p["b"]) - y

    b = case.backend
    spec, leaves = tree_spec(x0, b.describe, b.is_leaf)
    device = spec.leaves[0].device
    flat = b.ravel(leaves, spec, b.flat_dtype(device))
    out = []
    for in_axes, chunk in ((None, None), ((0, 0), None), ((0, 0), 5), ((0, 0), 1)):
        problem = ResidualProblem(
            b, spec, residual_fn, (x, y), device, Loss(b, loss, 0.7), in_axes, chunk, False
        )
        problem.start(flat)
        lin = problem.linearize(flat)
        out.append([case.numpy(v) for v in (lin.A, lin.g, lin.r, lin.cost)])
    tol = 1e-6 if not case.autodiff else 1e-12  # central differences on numpy
    for other in out[1:]:
        for got, want in zip(other, out[0]):
            _close(got, want, tol)


def test_chunked_run_equals_unchunked(case: Case) -> None:
    full = _call(case, options={"batched_args": (0, 1)})
    chunked = _call(case, options={"batched_args": (0, 1), "chunk_size": 7})
    # Central differences (numpy) leave noise of about 1e-9 in where the run stops.
    _close(_flat(case, chunked.x), _flat(case, full.x), 1e-10 if case.autodiff else 1e-8)
