"""Nested parameter trees on every backend: x0, bounds, gradients, callbacks and results.

A nested tree is only a layout: the same problem on the flattened ``OrderedDict`` must run
the same iterations to the same bits. The result mirrors x0 (key order, nesting, container
types), and flat ``OrderedDict`` inputs behave as they always did.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize import DictMinimizeError, InvalidBoundsError, InvalidParamsError


class Frozen(Mapping[Any, Any]):
    """An immutable mapping, like Flax's FrozenDict: nesting must keep its type."""

    def __init__(self, items: Any) -> None:
        self._data = dict(items)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


#: Keys deliberately unsorted; dict, OrderedDict and Frozen containers; a 0-d leaf.
LAYOUT: list[tuple[tuple[str, ...], tuple[int, ...]]] = [
    (("head", "w"), (3,)),
    (("head", "b"), ()),
    (("body", "layer2", "w"), (2, 3)),
    (("body", "layer1", "w"), (2, 2)),
    (("body", "layer1", "b"), (2,)),
    (("scale",), ()),
]
SIZES = [int(np.prod(shape)) for _, shape in LAYOUT]
_rng = np.random.default_rng(7)
X0 = _rng.uniform(-1.0, 1.0, sum(SIZES))
TARGET = _rng.uniform(-1.5, 1.5, sum(SIZES))


def _pieces(flat: np.ndarray) -> list[np.ndarray]:
    bounds = np.cumsum([0, *SIZES])
    return [flat[a:b].reshape(shape) for (_, shape), a, b in zip(LAYOUT, bounds, bounds[1:])]


def nested(case: Case, flat: np.ndarray = X0, dtype: str = "float64") -> OrderedDict[str, Any]:
    """The nested tree holding ``flat``."""
    t = [case.tensor(v, dtype) for v in _pieces(flat)]
    return OrderedDict(
        [
            ("head", {"w": t[0], "b": t[1]}),
            (
                "body",
                OrderedDict([("layer2", Frozen({"w": t[2]})), ("layer1", {"w": t[3], "b": t[4]})]),
            ),
            ("scale", t[5]),
        ]
    )


def flattened(case: Case, flat: np.ndarray = X0) -> OrderedDict[str, Any]:
    """The same tensors in a flat OrderedDict keyed ``"body.layer1.w"``."""
    return OrderedDict(
        (".".join(path), case.tensor(v)) for (path, _), v in zip(LAYOUT, _pieces(flat))
    )


def leaves(tree: Mapping[Any, Any], case: Case) -> list[Any]:
    """Leaves in depth-first key order (either layout)."""
    out: list[Any] = []
    for value in tree.values():
        if isinstance(value, Mapping) and not case.backend.is_leaf(value):
            out.extend(leaves(value, case))
        else:
            out.append(value)
    return out


def rebuild(tree: Mapping[Any, Any], values: Iterator[Any], case: Case) -> dict[Any, Any]:
    """Plain dicts shaped like ``tree`` (gradients need not repeat x0's container types)."""
    return {
        k: rebuild(v, values, case)
        if isinstance(v, Mapping) and not case.backend.is_leaf(v)
        else next(values)
        for k, v in tree.items()
    }


def make_objective(case: Case, jac: bool) -> Callable[[Any], Any]:
    """A coupled quartic over all leaves; the same arithmetic whatever the layout."""
    targets = [case.tensor(t) for t in _pieces(TARGET)]
    xp = case.xp

    def fun(params: Any) -> Any:
        diffs = [p - t for p, t in zip(leaves(params, case), targets)]
        loss = 0
        for d in diffs:
            loss = loss + xp.sum(0.5 * d**2 + 0.25 * d**4)
        # couple the 0-d "scale" to the first leaf so the problem does not separate
        loss = loss + 0.5 * (diffs[-1] - xp.sum(diffs[0])) ** 2
        if not jac:
            return loss
        c = diffs[-1] - xp.sum(diffs[0])
        grads = [d + d**3 for d in diffs]
        grads[0] = grads[0] - c
        grads[-1] = grads[-1] + c
        return loss, rebuild(params, iter(grads), case)

    return fun


def flat_of(case: Case, tree: Mapping[Any, Any]) -> np.ndarray:
    return np.concatenate([case.numpy(v).reshape(-1) for v in leaves(tree, case)])


def assert_mirrors(case: Case, got: Any, want: Mapping[Any, Any], top: bool = True) -> None:
    """Same key order and nesting, same container types below the top, same leaf metadata."""
    assert isinstance(got, OrderedDict) if top else type(got) is type(want)
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, Mapping) and not case.backend.is_leaf(value):
            assert_mirrors(case, got[key], value, top=False)
        else:
            assert case.backend.is_leaf(got[key])
            shape, dtype, device = case.backend.leaf_meta(got[key])
            assert (tuple(shape), dtype, device) == case.backend.leaf_meta(value)


def test_nested_run_equals_flat_run(case: Case) -> None:
    """Nesting is only a layout: the flattened problem runs the same iterations, bit for bit."""
    fun = make_objective(case, jac=True)
    x0 = nested(case)
    res = case.api.minimize(fun, x0, method="L-BFGS-B", full_output=True)
    ref = case.api.minimize(fun, flattened(case), method="L-BFGS-B", full_output=True)
    assert res.success and res.nit > 3
    assert (res.nit, res.nfev) == (ref.nit, ref.nfev)
    np.testing.assert_array_equal(flat_of(case, res.x), flat_of(case, ref.x))
    assert_mirrors(case, res.x, x0)
    assert_mirrors(case, res.jac, x0)
    np.testing.assert_array_equal(flat_of(case, res.jac), flat_of(case, ref.jac))
    np.testing.assert_array_equal(flat_of(case, x0), X0)  # x0 untouched


def test_nested_autodiff_and_second_order(autodiff_case: Case) -> None:
    """jac=False differentiates through the nesting; Hessian products too (trust-ncg)."""
    case, x0, tight = autodiff_case, nested(autodiff_case), {"gtol": 1e-10}
    minimize = case.api.minimize
    hand = minimize(make_objective(case, jac=True), x0, method="BFGS", full_output=True)
    auto = minimize(make_objective(case, jac=False), x0, method="BFGS", jac=False, full_output=True)
    assert (auto.nit, auto.nfev) == (hand.nit, hand.nfev)
    np.testing.assert_allclose(flat_of(case, auto.x), flat_of(case, hand.x), atol=1e-12)
    newton = minimize(
        make_objective(case, jac=False),
        x0,
        method="trust-ncg",
        jac=False,
        options=tight,
        full_output=True,
    )
    ref = minimize(make_objective(case, jac=True), x0, method="BFGS", options=tight)
    assert newton.success and newton.nhev > 0
    assert_mirrors(case, newton.x, x0)
    np.testing.assert_allclose(flat_of(case, newton.x), flat_of(case, ref), atol=1e-9)


@pytest.mark.filterwarnings("ignore:x0 lies outside its bounds")
def test_nested_bounds_with_tensors(case: Case) -> None:
    """Bounds may be nested, name some sub-trees only, and mix numbers and tensors."""
    fun = make_objective(case, jac=True)
    lb = {"body": {"layer1": {"w": case.tensor(np.full((2, 2), -0.1))}}, "scale": -0.2}
    ub = {"head": {"w": 0.3}, "body": {"layer2": Frozen({"w": case.tensor(np.full((2, 3), 0.2))})}}
    res = case.api.minimize(fun, nested(case), lb_dict=lb, ub_dict=ub, full_output=True)
    x = res.x
    assert case.numpy(x["body"]["layer1"]["w"]).min() >= -0.1
    assert case.numpy(x["scale"]) >= -0.2
    assert case.numpy(x["head"]["w"]).max() <= 0.3
    assert case.numpy(x["body"]["layer2"]["w"]).max() <= 0.2
    # the same bounds written flat give the same run
    flat_lb = {"body.layer1.w": case.tensor(np.full((2, 2), -0.1)), "scale": -0.2}
    flat_ub = {"head.w": 0.3, "body.layer2.w": case.tensor(np.full((2, 3), 0.2))}
    ref = case.api.minimize(
        fun, flattened(case), lb_dict=flat_lb, ub_dict=flat_ub, full_output=True
    )
    np.testing.assert_array_equal(flat_of(case, x), flat_of(case, ref.x))


def test_callback_sees_nested_params(case: Case) -> None:
    seen: list[Any] = []
    x0 = nested(case)
    case.api.minimize(
        make_objective(case, jac=True), x0, callback=seen.append, options={"maxiter": 3}
    )
    assert len(seen) == 3
    for params in seen:
        assert_mirrors(case, params, x0)


def test_gradient_with_wrong_nesting_is_named(case: Case) -> None:
    """A gradient missing a nested key, or nested where x0 has a tensor, names the path."""
    x0 = nested(case)
    good = make_objective(case, jac=True)

    def missing(params: Any) -> Any:
        loss, grad = good(params)
        del grad["body"]["layer1"]["b"]
        return loss, grad

    def too_deep(params: Any) -> Any:
        loss, grad = good(params)
        grad["scale"] = {"x": grad["scale"]}
        return loss, grad

    with pytest.raises(InvalidParamsError) as info:
        case.api.minimize(missing, x0)
    assert "gradient['body']['layer1']['b']" in str(info.value)
    with pytest.raises(DictMinimizeError, match=r"gradient\['scale'\]"):
        case.api.minimize(too_deep, x0)


def test_bounds_with_unknown_nested_key_are_named(case: Case) -> None:
    with pytest.raises(InvalidBoundsError, match=r"'layer3'.*under x0\['body'\]"):
        case.api.minimize(
            make_objective(case, jac=True), nested(case), lb_dict={"body": {"layer3": 0.0}}
        )


def test_flat_ordered_dict_unchanged(case: Case) -> None:
    """dict-minimize's case: an OrderedDict in, an OrderedDict with the same key order out."""
    x0 = flattened(case)
    keys = list(x0)
    assert keys != sorted(keys)
    res = case.api.minimize(make_objective(case, jac=True), x0)
    assert type(res) is OrderedDict and list(res) == keys
    assert_mirrors(case, res, x0)
    np.testing.assert_array_equal(flat_of(case, x0), X0)
