"""Property tests of parameter trees: TreeSpec and the backends' ravel/unravel round trips.

Trees are drawn with random key orders (strings, integers and tuples as keys), nesting in
``dict``/``OrderedDict``, shapes including 0-d and zero-size tensors, and every floating
dtype the case supports. Values are multiples of 1/8 below 16 in magnitude, exact in every
dtype, so each round trip must be exact.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import Case
from dict_minimize import InvalidParamsError
from dict_minimize._tree import TreeSpec, format_path, tree_spec

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KEYS = st.one_of(
    st.text(alphabet="abcxyz_", min_size=1, max_size=3),
    st.integers(-3, 40),
    st.tuples(st.integers(0, 2), st.sampled_from("pq")),
)
SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)
LEAF = st.tuples(SHAPES, st.integers(0, 3), st.integers(0, 2**31))  # shape, dtype pick, seed


def _layout(leaf: Any) -> Any:
    return st.dictionaries(KEYS, leaf, min_size=1, max_size=4).flatmap(
        lambda d: st.tuples(st.permutations(list(d.items())), st.booleans())
    )


LAYOUTS = st.recursive(LEAF, _layout, max_leaves=8).filter(lambda t: isinstance(t[0], list))


def _build(case: Case, layout: Any) -> tuple[Any, list[tuple[tuple[Any, ...], np.ndarray, str]]]:
    """A tree of tensors from a drawn layout, and its leaves as (path, values, dtype) in order."""
    dtypes = sorted(case.dtypes)
    leaves: list[tuple[tuple[Any, ...], np.ndarray, str]] = []

    def build(node: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(node[0], list):
            items, ordered = node
            cls = OrderedDict if ordered else dict
            return cls((k, build(child, (*path, k))) for k, child in items)
        shape, pick, seed = node
        values = np.random.default_rng(seed).integers(-127, 128, size=shape) / 8.0
        dtype = dtypes[pick % len(dtypes)]
        leaves.append((path, values, dtype))
        return case.tensor(values, dtype)

    return build(layout, ()), leaves


def _spec(case: Case, tree: Any) -> tuple[TreeSpec, list[Any]]:
    return tree_spec(tree, case.backend.describe, case.backend.is_leaf)


def _flat_dtype(case: Case) -> Any:
    return case.backend.flat_dtype(case.device)


def _assert_same_tree(case: Case, got: Any, want: Any, values: bool = True) -> None:
    """Same keys in the same order, same nesting, leaves equal in shape, dtype, device (value)."""
    assert isinstance(got, Mapping) and list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, Mapping) and not case.backend.is_leaf(value):
            assert type(got[key]) is type(value)
            _assert_same_tree(case, got[key], value, values)
            continue
        shape, dtype, device = case.backend.leaf_meta(got[key])
        assert (tuple(shape), dtype, device) == case.backend.leaf_meta(value)
        if values:
            np.testing.assert_array_equal(case.numpy(got[key]), case.numpy(value))


def _has_elements(layout: Any) -> bool:
    if isinstance(layout[0], list):
        return any(_has_elements(child) for _, child in layout[0])
    return int(np.prod(layout[0])) > 0


@SETTINGS
@given(layout=LAYOUTS.filter(_has_elements))
def test_spec_layout(case: Case, layout: Any) -> None:
    """Leaves in depth-first insertion order, contiguous offsets, x0's shapes and dtypes."""
    tree, expected = _build(case, layout)
    spec, leaves = _spec(case, tree)
    assert [leaf.path for leaf in spec.leaves] == [path for path, _, _ in expected]
    assert [leaf.shape for leaf in spec.leaves] == [v.shape for _, v, _ in expected]
    assert [case.backend.dtype_name(leaf.dtype) for leaf in spec.leaves] == [
        d for _, _, d in expected
    ]
    sizes = [v.size for _, v, _ in expected]
    assert [leaf.offset for leaf in spec.leaves] == list(np.cumsum([0, *sizes[:-1]]))
    assert [leaf.size for leaf in spec.leaves] == sizes
    assert spec.size == sum(sizes)
    assert spec.flat == all(len(path) == 1 for path, _, _ in expected)
    assert spec.keys == tuple(tree)
    assert len(leaves) == len(expected)


@SETTINGS
@given(layout=LAYOUTS.filter(_has_elements))
def test_ravel_unravel_round_trip(case: Case, layout: Any) -> None:
    """ravel is the concatenation of the leaves; unravel + unflatten gives the tree back."""
    tree, expected = _build(case, layout)
    spec, leaves = _spec(case, tree)
    flat = case.backend.ravel(leaves, spec, _flat_dtype(case))
    want = np.concatenate([v.reshape(-1) for _, v, _ in expected])
    np.testing.assert_array_equal(case.numpy(flat), want)
    back = spec.unflatten(case.backend.unravel(flat, spec))
    assert isinstance(back, OrderedDict)
    _assert_same_tree(case, back, tree)


@SETTINGS
@given(layout=LAYOUTS.filter(_has_elements), seed=st.integers(0, 2**31))
def test_unravel_ravel_round_trip(case: Case, layout: Any, seed: int) -> None:
    """Any flat vector survives unravel -> ravel up to the leaves' dtypes (exactly in float64)."""
    tree, _ = _build(case, layout)
    spec, _ = _spec(case, tree)
    vec = np.random.default_rng(seed).standard_normal(spec.size)
    parts = case.backend.unravel(case.tensor(vec), spec)
    again = case.numpy(case.backend.ravel(parts, spec, _flat_dtype(case)))
    for leaf, part in zip(spec.leaves, parts):
        piece = again[leaf.offset : leaf.offset + leaf.size]
        np.testing.assert_array_equal(piece, case.numpy(part).reshape(-1))
        if case.backend.dtype_name(leaf.dtype) == "float64":
            np.testing.assert_array_equal(piece, vec[leaf.offset : leaf.offset + leaf.size])


@SETTINGS
@given(layout=LAYOUTS.filter(_has_elements), order_seed=st.integers(0, 2**31))
def test_match_any_key_order(case: Case, layout: Any, order_seed: int) -> None:
    """A tree with x0's keys in another order matches leaf for leaf."""
    tree, _ = _build(case, layout)
    spec, leaves = _spec(case, tree)
    shuffler = random.Random(order_seed)

    def shuffled(node: Mapping[Any, Any]) -> dict[Any, Any]:
        items = list(node.items())
        shuffler.shuffle(items)
        return {
            k: shuffled(v) if isinstance(v, Mapping) and not case.backend.is_leaf(v) else v
            for k, v in items
        }

    matched = spec.match(shuffled(tree), "gradient", is_leaf=case.backend.is_leaf)
    assert all(a is b for a, b in zip(matched, leaves, strict=True))


@SETTINGS
@given(layout=LAYOUTS.filter(_has_elements), pick=st.integers(0, 2**31))
def test_match_names_missing_and_extra_keys(case: Case, layout: Any, pick: int) -> None:
    tree, _ = _build(case, layout)
    spec, _ = _spec(case, tree)
    path = spec.leaves[pick % len(spec.leaves)].path

    def without(node: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        out = dict(node)
        if depth == len(path) - 1:
            del out[path[depth]]
        else:
            out[path[depth]] = without(node[path[depth]], depth + 1)
        return out

    missing = without(tree, 0)
    if _nonempty(missing):
        with pytest.raises(InvalidParamsError, match=re.escape(format_path(path, "gradient"))):
            spec.match(missing, "gradient", is_leaf=case.backend.is_leaf)
        matched = spec.match(missing, "lb_dict", allow_missing=True, is_leaf=case.backend.is_leaf)
        assert matched[pick % len(spec.leaves)] is None
    extra = dict(tree)
    extra["__extra__"] = case.tensor(0.0)
    with pytest.raises(InvalidParamsError, match=r"'__extra__'.*x0 does not have"):
        spec.match(extra, "gradient", is_leaf=case.backend.is_leaf)


def _nonempty(node: Mapping[Any, Any]) -> bool:
    return all(not isinstance(v, Mapping) or _nonempty(v) for v in node.values())


@settings(SETTINGS, max_examples=10)
@given(layout=LAYOUTS.filter(_has_elements))
def test_minimize_returns_x0_layout(case: Case, layout: Any) -> None:
    """End to end: the solution of a random tree has its keys, nesting, shapes and dtypes."""
    tree, expected = _build(case, layout)
    spec, _ = _spec(case, tree)
    targets = [v + 0.5 for _, v, _ in expected]

    def fun(params: Any) -> Any:
        got = spec.match(params, "params", is_leaf=case.backend.is_leaf)
        loss = 0.0
        grads = []
        for value, target, (_, _, dtype) in zip(got, targets, expected):
            diff = case.numpy(value) - target
            loss += float(np.sum(diff**2))
            grads.append(case.tensor(2 * diff, dtype))
        return loss, spec.unflatten(grads)

    res = case.api.minimize(fun, tree, options={"maxiter": 2})
    assert isinstance(res, OrderedDict)
    _assert_same_tree(case, res, tree, values=False)
