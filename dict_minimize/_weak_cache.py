"""A cache of built things per user function, held weakly by the function.

The compiled derivatives of ``minimize(jac=False)`` (:mod:`dict_minimize._compiled`) and the
compiled residual programs of ``least_squares`` (:mod:`dict_minimize.solvers._problem`) are
both kept this way: an entry goes when its function does, and each function keeps its most
recently used call signatures only.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerFunctionCache(Generic[T]):
    """``function -> {key: value}``, weakly keyed by the function, at most ``size`` keys per
    function (the least recently used goes first); safe to use from several threads.

    Examples
    --------
    >>> cache: PerFunctionCache[str] = PerFunctionCache(size=1)
    >>> def f(x):
    ...     return x
    >>> cache.get(f, "a", lambda: "built a")
    'built a'
    >>> cache.get(f, "a", lambda: "never built")
    'built a'
    >>> f in cache
    True
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: weakref.WeakKeyDictionary[Any, OrderedDict[Hashable, T]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, function: Callable[..., Any], key: Hashable, build: Callable[[], T]) -> T:
        """The value cached for ``(function, key)``, or ``build()``'s, cached. Raises
        TypeError if ``function`` cannot be weakly referenced or ``key`` is unhashable."""
        with self._lock:
            entries = self._entries.get(function)
            if entries is None:
                entries = self._entries[function] = OrderedDict()
            value = entries.get(key)
            if value is not None:
                entries.move_to_end(key)
                return value
            value = entries[key] = build()
            while len(entries) > self.size:
                entries.popitem(last=False)
            return value

    def __contains__(self, function: object) -> bool:
        return function in self._entries
