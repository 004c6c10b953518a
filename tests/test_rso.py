"""Random search optimization (``method="rso"``) on every backend.

The reference is the algorithm's own contract, checked on every evaluation: called one trial
point at a time (``vectorize=False``), the loss at ``w``, ``w + Δ`` and ``w - Δ`` is recorded
for every weight, and the next weight starts from the best of the three. On a noiseless linear
regression RSO must also reach a stated loss.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import (
    DictMinimizeWarning,
    InvalidBoundsError,
    InvalidOptionError,
    MinimizeResult,
    ObjectiveError,
    OptimizationInterrupted,
)
from dict_minimize.backends._protocol import RSO_PRIMITIVES, Backend

# y = X W + b, exactly: the minimum is 0. Start: loss 8.58.
_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(40, 3))
W, B = _RNG.normal(size=(3, 2)), _RNG.normal(size=2)
Y = X @ W + B
W0, B0 = _RNG.normal(size=(3, 2)), _RNG.normal(size=2)
START = float(np.mean((X @ W0 + B0 - Y) ** 2))


def host_loss(params: Any, case: Case) -> float:
    r = X @ case.numpy(params["w"]) + case.numpy(params["b"]) - Y
    return float(np.mean(r * r))


def x0(case: Case, dtype: str = "float64") -> OrderedDict[str, Any]:
    return OrderedDict(w=case.tensor(W0, dtype), b=case.tensor(B0, dtype))


def loss_fn(case: Case, record: list[float] | None = None) -> Any:
    def loss(params: Any, x: Any, y: Any) -> Any:
        r = x @ params["w"] + params["b"] - y
        value = case.xp.mean(r * r)
        if record is not None:
            record.append(float(case.numpy(value)))
        return value

    return loss


def data(case: Case, dtype: str = "float64") -> tuple[Any, Any]:
    return case.tensor(X, dtype), case.tensor(Y, dtype)


def flat(case: Case, tree: Any) -> np.ndarray:
    return np.concatenate([case.numpy(v).reshape(-1) for v in tree.values()])


def test_backend_implements_rso_primitives(case: Case) -> None:
    cls = type(case.backend)
    missing = [name for name in RSO_PRIMITIVES if getattr(cls, name) is getattr(Backend, name)]
    assert not missing, f"{case.name} backend lacks {missing}"


def test_every_move_improves_and_reaches_the_stated_loss(case: Case) -> None:
    """Full batch, one trial point per call: each weight's three losses are recorded; the next
    weight starts exactly at the best of them, so the loss never increases."""
    record: list[float] = []
    sweeps: list[float] = []
    res = case.api.minimize(
        loss_fn(case, record),
        x0(case),
        args=data(case),
        method="rso",
        callback=lambda p: sweeps.append(host_loss(p, case)),
        options={"rounds": 20, "seed": 0, "vectorize": False},
        full_output=True,
    )
    assert isinstance(res, MinimizeResult) and res.method == "rso"
    assert res.status == 0 and res.success and res.nit == 20
    n = 20 * 8  # 8 weights per round, three evaluations each, plus the start
    assert res.nfev == len(record) == 1 + 3 * n
    assert record[0] == pytest.approx(START, rel=1e-12)
    current = record[0]
    for i in range(n):
        now, plus, minus = record[1 + 3 * i : 4 + 3 * i]
        assert now == current  # the point the previous weight chose, bit for bit
        current = min(now, plus, minus)
    assert res.fun == current == pytest.approx(host_loss(res.x, case), rel=1e-12)
    assert len(sweeps) == 40 and all(b <= a for a, b in zip([START, *sweeps], sweeps))
    assert res.fun < 0.02  # from 8.58
    hist = res.history
    assert hist["nfev"][0] == 1 and hist["nfev"][-1] == res.nfev
    assert hist["loss"][0] == pytest.approx(START, rel=1e-12)
    # last tensor first; σ is each tensor's standard deviation at the start of its sweep
    assert hist["key"][:3] == [None, ("b",), ("w",)] and hist["round"][1:5] == [1, 1, 2, 2]
    assert hist["sigma"][1] == pytest.approx(np.std(B0), rel=1e-12)
    assert hist["sigma"][2] == pytest.approx(np.std(W0), rel=1e-12)
    assert sum(hist["moved"]) > 0.2 * n


def test_vectorized_trials_and_seeds(case: Case) -> None:
    """Mini-batches of 16 rows: the three trial points in one vectorized call (where the
    framework has vmap) take the same decisions as three plain calls; the same seed gives the
    same result bit for bit, another seed another result."""
    loss = loss_fn(case)
    options = {"rounds": 20, "seed": 1, "batched_args": (0, 1), "batch_size": 16}

    def run(**changes: Any) -> Any:
        return case.api.minimize(
            loss,
            x0(case),
            args=data(case),
            method="rso",
            options={**options, **changes},
            full_output=True,
        )

    vectorized, again, plain = run(), run(), run(vectorize=False)
    assert vectorized.history["moved"] == plain.history["moved"]
    np.testing.assert_allclose(flat(case, vectorized.x), flat(case, plain.x), rtol=1e-12)
    assert vectorized.nfev == 1 + 3 * 8 * 20 and vectorized.seed == 1
    assert host_loss(vectorized.x, case) < 0.05
    np.testing.assert_array_equal(flat(case, vectorized.x), flat(case, again.x))
    assert vectorized.history == again.history
    # another seed: other mini-batches and steps from the start on
    short = {"vectorize": False, "maxfev": 1 + 3 * 2}
    first, other = run(**short), run(seed=2, **short)
    assert first.history["loss"][0] != other.history["loss"][0]
    assert not np.array_equal(flat(case, first.x), flat(case, other.x))


def test_sampler_option(case: Case) -> None:
    """A callable that returns each mini-batch, drawn from the generator RSO passes it."""
    calls = 0

    def sampler(rng: np.random.Generator) -> tuple[Any, Any]:
        nonlocal calls
        calls += 1
        rows = rng.integers(0, len(X), 16)
        return case.tensor(X[rows]), case.tensor(Y[rows])

    options = {"rounds": 20, "seed": 2, "sampler": sampler}
    res = case.api.minimize(loss_fn(case), x0(case), method="rso", options=options)
    assert host_loss(res, case) < 0.05
    assert calls == 1 + 8 * 20  # the start, then one mini-batch per weight


def test_skip_bias(case: Case) -> None:
    """Tensors of fewer than two dimensions, or named like a bias, are never touched."""
    params = OrderedDict(
        w=case.tensor(W0),
        bias_matrix=case.tensor(np.ones((2, 2)) * [[1.0], [2.0]]),
        b=case.tensor(B0),
        scale=case.tensor(1.5),
    )

    def loss(p: Any, x: Any, y: Any) -> Any:
        r = x @ p["w"] + p["b"] * p["scale"] - y
        return case.xp.mean(r * r) + case.xp.sum(p["bias_matrix"] ** 2)

    res = case.api.minimize(
        loss,
        params,
        args=data(case),
        method="rso",
        options={"rounds": 2, "seed": 0, "skip_bias": True},
        full_output=True,
    )
    for key in ("bias_matrix", "b", "scale"):
        np.testing.assert_array_equal(case.numpy(res.x[key]), case.numpy(params[key]))
    assert not np.array_equal(case.numpy(res.x["w"]), W0)
    assert set(res.history["key"]) == {None, ("w",)} and res.nfev == 1 + 2 * 3 * 6


def test_sigma_scale_and_floor(case: Case) -> None:
    """σ = max(sigma_scale(round) · std, min_sigma), per tensor and round; a constant tensor
    (σ = 0) is not swept unless min_sigma lifts it."""
    start = OrderedDict(w=case.tensor(W0), b=case.tensor([0.0, 0.0]))
    options = {"rounds": 2, "seed": 0, "vectorize": False, "sigma_scale": lambda r: 0.5 / r}
    res = case.api.minimize(
        loss_fn(case), start, args=data(case), method="rso", options=options, full_output=True
    )
    hist = res.history
    assert hist["key"][1:] == [("b",), ("w",), ("b",), ("w",)]
    assert hist["sigma"][1] == 0.0 and hist["moved"][1] == 0  # zero biases stay put
    assert hist["sigma"][2] == pytest.approx(0.5 * np.std(W0), rel=1e-12)
    assert hist["sigma"][4] == pytest.approx(0.25 * np.std(case.numpy(res.x["w"])), rel=0.5)
    assert res.nfev == 1 + 3 * 6 * 2
    np.testing.assert_array_equal(case.numpy(res.x["b"]), [0.0, 0.0])
    floored = case.api.minimize(
        loss_fn(case),
        start,
        args=data(case),
        method="rso",
        options={**options, "min_sigma": 0.3, "maxfev": 1 + 3 * 2},
        full_output=True,
    )
    assert floored.history["sigma"][1] == 0.3 and floored.history["key"][1] == ("b",)
    with pytest.raises(InvalidOptionError, match=r"sigma_scale.*\(1\)"):
        case.api.minimize(
            loss_fn(case), start, args=data(case), method="rso",
            options={"sigma_scale": lambda r: -1.0},
        )  # fmt: skip


def test_gaussian_init(case: Case) -> None:
    """He's initialization, N(0, 2/fan_in) with fan_in = size / shape[out_axis], in x0's
    dtype; x0 itself is untouched."""
    start = OrderedDict(w=case.tensor(np.zeros((40, 50)), "float32"))

    def loss(p: Any) -> Any:
        return case.xp.sum(p["w"] ** 2)

    for axis, fan_in in ((0, 50), (-1, 40)):
        res = case.api.minimize(
            loss,
            start,
            method="rso",
            options={"init": "gaussian", "out_axis": axis, "maxfev": 1, "seed": 0},
            full_output=True,
        )
        assert res.status == 1 and res.nfev == 1
        assert case.backend.dtype_name(case.backend.leaf_meta(res.x["w"])[1]) == "float32"
        drawn = case.numpy(res.x["w"])
        assert abs(drawn.mean()) < 0.1 * math.sqrt(2 / fan_in)
        assert drawn.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
        assert res.fun == pytest.approx(float(np.sum(drawn**2)), rel=1e-5)
    assert not case.numpy(start["w"]).any()


def test_interrupt_and_failure_carry_the_point(case: Case) -> None:
    seen: list[np.ndarray] = []

    def stop_on_second_sweep(params: Any) -> None:
        seen.append(flat(case, params))
        if len(seen) == 2:
            raise KeyboardInterrupt

    options = {"rounds": 5, "seed": 0, "vectorize": False}
    with pytest.raises(OptimizationInterrupted) as info:
        case.api.minimize(
            loss_fn(case),
            x0(case),
            args=data(case),
            method="rso",
            callback=stop_on_second_sweep,
            options=options,
        )
    res = info.value.result
    assert res.status == -2 and not res.success and res.nfev == 1 + 3 * 8
    np.testing.assert_array_equal(flat(case, res.x), seen[-1])
    assert res.fun == pytest.approx(host_loss(res.x, case), rel=1e-12) and res.fun < START

    calls = 0

    def failing(params: Any, x: Any, y: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 20:
            raise RuntimeError("lost the data")
        return loss_fn(case)(params, x, y)

    with pytest.raises(RuntimeError, match="lost the data") as error:
        case.api.minimize(failing, x0(case), args=data(case), method="rso", options=options)
    partial = error.value.result  # type: ignore[attr-defined]
    assert partial.status == -3 and partial.nfev == 19  # six whole weights and the start
    assert partial.fun == pytest.approx(host_loss(partial.x, case), rel=1e-12)


def test_stops_on_budget_and_callback(case: Case) -> None:
    options = {"rounds": 50, "seed": 0, "maxfev": 100, "vectorize": False}
    res = case.api.minimize(
        loss_fn(case), x0(case), args=data(case), method="rso", options=options, full_output=True
    )
    assert res.status == 1 and not res.success and res.nfev == 100 and res.nit == 4
    assert "maxfev=100" in res.message

    results: list[MinimizeResult] = []

    def callback(intermediate_result: MinimizeResult) -> bool:
        results.append(intermediate_result)
        return len(results) == 3

    res = case.api.minimize(
        loss_fn(case),
        x0(case),
        args=data(case),
        method="rso",
        callback=callback,
        options={"seed": 0, "progress": True, "vectorize": False},
        full_output=True,
    )
    assert res.status == -2 and res.nit == 1 and res.nfev == results[-1].nfev == 1 + 3 * 10
    assert [r.key for r in results] == [("b",), ("w",), ("b",)]
    assert [r.round for r in results] == [1, 1, 2]
    assert results[-1].fun == res.fun


def test_fallback_when_fun_cannot_be_vectorized(case: Case) -> None:
    """A loss computed on the host (here: via NumPy) cannot be vmapped or compiled: RSO
    notices on the first weight, warns once and calls it per trial point."""

    def host(params: Any, x: Any, y: Any) -> float:
        return host_loss(params, case)

    options = {"rounds": 2, "seed": 0}
    if case.backend.vmap_fn(lambda w: w) is None:
        res = case.api.minimize(host, x0(case), args=data(case), method="rso", options=options)
    else:
        with pytest.warns(DictMinimizeWarning, match="could not be vectorized"):
            res = case.api.minimize(host, x0(case), args=data(case), method="rso", options=options)
    plain = case.api.minimize(
        loss_fn(case), x0(case), args=data(case), method="rso", options=options
    )
    np.testing.assert_allclose(flat(case, res), flat(case, plain), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"options": {"round": 3}}, InvalidOptionError, "no option.*'round'"),
        ({"options": {"rounds": 0}}, InvalidOptionError, "rounds"),
        ({"options": {"batch_size": 8}}, InvalidOptionError, "batch_size.*needs.*batched_args"),
        ({"options": {"batched_args": (0,)}}, InvalidOptionError, "needs.*batch_size"),
        ({"options": {"batched_args": (2,), "batch_size": 4}}, InvalidOptionError, "indices"),
        ({"options": {"sampler": 3}}, InvalidOptionError, "sampler"),
        ({"options": {"seed": -1}}, InvalidOptionError, "seed"),
        ({"options": {"init": "he"}}, InvalidOptionError, "init"),
        ({"options": {"sigma_scale": 0}}, InvalidOptionError, "sigma_scale"),
        ({"options": {"vectorize": "yes"}}, InvalidOptionError, "vectorize"),
        ({"options": {"init": "gaussian", "out_axis": 2}}, InvalidOptionError, r"x0\['w'\]"),
        ({"options": {"skip_bias": True}, "x0": {"b": B0}}, InvalidOptionError, "nothing"),
        ({"lb_dict": {"w": 0.0}}, InvalidBoundsError, "rso"),
        ({"tol": 1e-3}, InvalidOptionError, "tolerance"),
        ({"constraints": {"type": "eq", "fun": len}}, InvalidOptionError, "constraints"),
        ({"fun": lambda p, x, y: x @ p["w"]}, ObjectiveError, "scalar"),
        ({"fun": lambda p, x, y: np.nan * np.sum(p["w"])}, ObjectiveError, "nan at x0"),
    ],
)
def test_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    from dict_minimize.numpy_api import minimize

    def loss(p: Any, x: Any, y: Any) -> Any:
        return np.mean((x @ p["w"] + p["b"] - y) ** 2)

    call: dict[str, Any] = {"fun": loss, "x0": {"w": W0, "b": B0}, "args": (X, Y), **kwargs}
    with pytest.raises(error, match=match):
        minimize(call.pop("fun"), call.pop("x0"), method="rso", **call)


def test_docstring_example() -> None:
    import doctest

    from dict_minimize.solvers import rso

    result = doctest.testmod(rso, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
