"""``lb_dict``/``ub_dict`` -> flat float64 bound vectors, validated once per call."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from dict_minimize._errors import InvalidBoundsError, InvalidParamsError
from dict_minimize._tree import TreeSpec, format_path


def _bound_values(
    spec: TreeSpec, bounds: Any, what: str, fill: float, leaf_to_numpy: Any, is_leaf: Any
) -> np.ndarray:
    out = np.full(spec.size, fill)
    if bounds is None:
        return out
    try:
        values = spec.match(bounds, what, allow_missing=True, is_leaf=is_leaf)
    except InvalidParamsError as exc:
        raise InvalidBoundsError(str(exc)) from None
    for leaf, value in zip(spec.leaves, values):
        if value is None:
            continue
        where = format_path(leaf.path, what)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            arr = np.full(leaf.shape, float(value))
        elif is_leaf(value) or isinstance(value, np.ndarray | np.generic):
            arr = np.asarray(leaf_to_numpy(value) if is_leaf(value) else value)
            if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
                raise InvalidBoundsError(f"{where} has dtype {arr.dtype}; bounds must be real")
            if arr.shape == ():
                arr = np.full(leaf.shape, float(arr))
            elif arr.shape != leaf.shape:
                raise InvalidBoundsError(
                    f"{where} has shape {arr.shape} but {format_path(leaf.path)} has shape "
                    f"{leaf.shape}; give a scalar (broadcast) or a tensor of shape {leaf.shape}"
                )
        else:
            raise InvalidBoundsError(
                f"{where} is a {type(value).__name__}; give a Python number, a tensor of shape "
                f"{leaf.shape}, or +-inf for no bound"
            )
        if np.isnan(arr).any():
            raise InvalidBoundsError(f"{where} contains NaN; use -inf/+inf for no bound")
        out[leaf.offset : leaf.offset + leaf.size] = arr.reshape(-1)
    return out


def flat_bounds(
    spec: TreeSpec, lb_dict: Any, ub_dict: Any, leaf_to_numpy: Any, is_leaf: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """Flatten bounds; ``None`` when neither is given.

    Either dict may name a subset of x0's keys (a missing key is unbounded). A value may be a
    Python number (broadcast to the key's shape), a tensor or array of the key's shape, or
    ``±inf``.

    Raises
    ------
    InvalidBoundsError
        Unknown keys, wrong shapes, NaN, or a lower bound above the upper one.
    """
    if lb_dict is None and ub_dict is None:
        return None
    lb = _bound_values(spec, lb_dict, "lb_dict", -np.inf, leaf_to_numpy, is_leaf)
    ub = _bound_values(spec, ub_dict, "ub_dict", np.inf, leaf_to_numpy, is_leaf)
    crossed = np.flatnonzero(lb > ub)
    if crossed.size:
        i = int(crossed[0])
        leaf = next(leaf for leaf in spec.leaves if leaf.offset <= i < leaf.offset + leaf.size)
        index = np.unravel_index(i - leaf.offset, leaf.shape) if leaf.shape else ()
        raise InvalidBoundsError(
            f"lower bound above upper bound at {format_path(leaf.path)}{list(map(int, index))}: "
            f"lb={lb[i]!r} > ub={ub[i]!r} ({crossed.size} crossed element(s) in all)"
        )
    return lb, ub


def leaf_at(spec: TreeSpec, index: int) -> str:
    """Name the key (and element) holding flat position ``index``, for messages."""
    for leaf in spec.leaves:
        if leaf.offset <= index < leaf.offset + leaf.size:
            inner = np.unravel_index(index - leaf.offset, leaf.shape) if leaf.shape else ()
            return format_path(leaf.path) + (str(list(map(int, inner))) if inner else "")
    raise IndexError(index)
