"""Checks shared by the model helpers (framework-free)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dict_minimize._errors import InvalidParamsError


def check_keys(params: Any, known: Iterable[str], required: Iterable[str], what: str) -> None:
    """Refuse a non-mapping, keys not in ``known``, and missing ``required`` keys.

    Raises
    ------
    InvalidParamsError
        Naming the first offending keys and what the model has.
    """
    if not isinstance(params, Mapping):
        raise InvalidParamsError(
            f"params must be a mapping from {what} names to tensors, got {type(params).__name__}"
        )
    known = list(known)
    known_set = set(known)
    unknown = [k for k in params if k not in known_set]
    if unknown:
        raise InvalidParamsError(
            f"params has key(s) {_show(unknown)} that are not {what}s of the model; "
            f"its {what}s are {_show(known)}"
        )
    missing = [k for k in required if k not in params]
    if missing:
        raise InvalidParamsError(
            f"params is missing {what}(s) {_show(missing)}; pass strict=False to write only "
            f"the keys given"
        )


def check_shape(key: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Refuse a value whose shape differs from the model's."""
    if tuple(shape) != tuple(expected):
        raise InvalidParamsError(
            f"params[{key!r}] has shape {tuple(shape)} but the model's {key!r} has shape "
            f"{tuple(expected)}"
        )


def _show(keys: list[Any]) -> str:
    return "[" + ", ".join(repr(k) for k in keys[:6]) + (", ...]" if len(keys) > 6 else "]")
