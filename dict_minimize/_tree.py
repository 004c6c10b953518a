"""Parameter trees: (nested) mappings of tensors <-> one flat vector.

A :class:`TreeSpec` records, once per call, the key paths, shapes, dtypes, offsets and the
container types of ``x0``. Everything after that (evaluations, gradients, bounds, results)
is matched against the spec, so a key-order change or a shape mismatch is caught with the
offending key named, and rebuilding a dict costs one pass over the leaves.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from dict_minimize._errors import InvalidParamsError

Path = tuple[Any, ...]
# A container node: its type and its children, each a leaf index or a nested node.
Node = tuple[type, tuple[tuple[Any, Union[int, "Node"]], ...]]


def format_path(path: Path, root: str = "x0") -> str:
    """``('layer1', 'w')`` -> ``x0['layer1']['w']``: the spelling a user would index with."""
    return root + "".join(f"[{key!r}]" for key in path)


@dataclass(frozen=True)
class Leaf:
    """One tensor of the tree: where it sits, its shape/dtype/device, and its flat slice."""

    path: Path
    shape: tuple[int, ...]
    dtype: Any
    device: Any
    offset: int
    size: int


def _rebuild(cls: type, items: list[tuple[Any, Any]]) -> Mapping[Any, Any]:
    if cls is dict or cls is OrderedDict:
        return cls(items)
    try:  # other mappings (FrozenDict, defaultdict subclasses...) mostly accept pairs or a dict
        built: Mapping[Any, Any] = cls(items)
    except TypeError:
        try:
            built = cls(dict(items))
        except TypeError:
            built = dict(items)
    return built


@dataclass(frozen=True)
class TreeSpec:
    """The layout of a parameter tree, built by :func:`tree_spec`.

    Attributes
    ----------
    leaves : tuple of Leaf
        The tensors in depth-first key order; ``offset``/``size`` locate each in the flat vector.
    size : int
        Total number of scalars.
    flat : bool
        True when the tree is a single-level mapping (the dict-minimize case, with fast paths).
    """

    root: Node
    leaves: tuple[Leaf, ...]
    size: int
    flat: bool

    @functools.cached_property  # read on every evaluation (unflatten)
    def keys(self) -> tuple[Any, ...]:
        """Top-level keys in order."""
        return tuple(key for key, _ in self.root[1])

    def unflatten(self, values: Sequence[Any]) -> OrderedDict[Any, Any]:
        """Put per-leaf values back into x0's nesting; the top level is an ``OrderedDict``."""
        if self.flat:
            return OrderedDict(zip(self.keys, values))

        def build(node: Node) -> Mapping[Any, Any]:
            cls, children = node
            items = [(k, values[c] if isinstance(c, int) else build(c)) for k, c in children]
            return _rebuild(cls, items)

        return OrderedDict(build(self.root).items())

    def match(
        self,
        tree: Any,
        what: str,
        *,
        allow_missing: bool = False,
        is_leaf: Callable[[Any], bool] | None = None,
    ) -> list[Any]:
        """Values of ``tree`` in the spec's leaf order, checking its keys against x0's.

        Parameters
        ----------
        tree : Mapping
            A tree shaped like x0 (a gradient, a bound, a direction).
        what : str
            How to call the tree in error messages (``"gradient"``, ``"lb_dict"``).
        allow_missing : bool
            Allow keys (or whole sub-trees) to be absent; their slots hold ``None``.
        is_leaf : callable, optional
            Tells a leaf from a nested mapping; by default anything that is not a Mapping.

        Raises
        ------
        InvalidParamsError
            On a non-mapping, an unknown key, or (unless ``allow_missing``) a missing key.
        """
        if self.flat and isinstance(tree, Mapping) and len(tree) == len(self.leaves):
            try:  # fast path (every evaluation's gradient): same keys, any order
                return [tree[key] for key in self.keys]
            except KeyError:
                pass
        out: list[Any] = [None] * len(self.leaves)
        leaf_test = is_leaf or (lambda v: not isinstance(v, Mapping))

        def visit(sub: Any, node: Node, path: Path) -> None:
            if not isinstance(sub, Mapping) or leaf_test(sub):
                raise InvalidParamsError(
                    f"{format_path(path, what)} must be a mapping like {format_path(path)}, "
                    f"got {type(sub).__name__}"
                )
            children = dict(node[1])
            extra = [k for k in sub if k not in children]
            if extra:
                raise InvalidParamsError(
                    f"{what} has key(s) {_keys(extra, path)} that x0 does not have; "
                    f"x0's keys there are {_keys(list(children), path)}"
                )
            for key, child in node[1]:
                if key not in sub:
                    if allow_missing:
                        continue
                    raise InvalidParamsError(
                        f"{what} is missing {format_path(path + (key,), what)}; "
                        f"it must have the same keys as x0"
                    )
                value = sub[key]
                if isinstance(child, int):
                    if isinstance(value, Mapping) and not leaf_test(value):
                        raise InvalidParamsError(
                            f"{format_path(path + (key,), what)} is a mapping but "
                            f"{format_path(path + (key,))} is a tensor"
                        )
                    out[child] = value
                else:
                    visit(value, child, path + (key,))

        visit(tree, self.root, ())
        return out

    def __iter__(self) -> Iterator[Leaf]:
        return iter(self.leaves)


def _keys(keys: Sequence[Any], path: Path) -> str:
    shown = ", ".join(repr(k) for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
    return f"[{shown}]" + (f" (under {format_path(path)})" if path else "")


def tree_spec(
    tree: Any,
    describe: Callable[[Path, Any], tuple[tuple[int, ...], Any, Any]],
    is_leaf: Callable[[Any], bool],
    what: str = "x0",
) -> tuple[TreeSpec, list[Any]]:
    """Build the spec of ``tree`` and return it with the leaves in order.

    Parameters
    ----------
    tree : Mapping
        The (nested) mapping of tensors.
    describe : callable
        ``describe(path, leaf) -> (shape, dtype, device)``; raises a clear error for a value
        that cannot be a parameter.
    is_leaf : callable
        True for a tensor of the framework (a Mapping that is a tensor stays a leaf).

    Examples
    --------
    >>> import numpy as np
    >>> spec, leaves = tree_spec({"a": np.zeros((2, 3)), "b": {"c": np.ones(())}},
    ...                          lambda p, v: (v.shape, v.dtype, "cpu"),
    ...                          lambda v: isinstance(v, np.ndarray))
    >>> spec.size, [leaf.offset for leaf in spec.leaves]
    (7, [0, 6])
    """
    if not isinstance(tree, Mapping) or is_leaf(tree):
        raise InvalidParamsError(
            f"{what} must be a mapping (dict or OrderedDict) from names to tensors, "
            f"got {type(tree).__name__}; wrap a single tensor as {{'x': tensor}}"
        )
    leaves: list[Leaf] = []
    values: list[Any] = []
    offset = 0

    def visit(sub: Mapping[Any, Any], path: Path) -> Node:
        nonlocal offset
        if len(sub) == 0:
            where = f" at {format_path(path, what)}" if path else ""
            raise InvalidParamsError(f"{what} is empty{where}: there is nothing to optimize")
        children: list[tuple[Any, int | Node]] = []
        for key, value in sub.items():
            child_path = path + (key,)
            if not is_leaf(value) and isinstance(value, Mapping):  # the cheap test first
                children.append((key, visit(value, child_path)))
                continue
            shape, dtype, device = describe(child_path, value)
            size = math.prod(shape)
            children.append((key, len(leaves)))
            leaves.append(Leaf(child_path, tuple(shape), dtype, device, offset, size))
            values.append(value)
            offset += size
        return (type(sub), tuple(children))

    root = visit(tree, ())
    if offset == 0:
        raise InvalidParamsError(
            f"every tensor in {what} has zero elements: there is nothing to optimize"
        )
    flat = all(len(leaf.path) == 1 for leaf in leaves)
    return TreeSpec(root, tuple(leaves), offset, flat), values
