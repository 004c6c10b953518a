"""The package's exceptions and warnings.

Every error raised at the public boundary is one of these; each subclasses the builtin
(``ValueError`` or ``TypeError``) a caller would catch anyway, so ``except ValueError`` keeps
working, while ``except DictMinimizeError`` catches exactly what this package raises.
"""

from __future__ import annotations

from typing import Any


class DictMinimizeError(Exception):
    """Base class of every exception raised by dict_minimize."""


class InvalidParamsError(DictMinimizeError, ValueError):
    """The parameter dict (x0, a gradient, a bound or a direction) is malformed.

    Raised for an empty or non-mapping x0, missing or extra keys, wrong shapes, NaN/Inf in x0,
    or tensors living on different devices.
    """


class InvalidDtypeError(DictMinimizeError, TypeError):
    """A tensor has a dtype that cannot be optimized (integer, bool, complex, ...)."""


class InvalidBoundsError(DictMinimizeError, ValueError):
    """``lb_dict``/``ub_dict`` are malformed, crossed, or given to a method without bounds."""


class InvalidOptionError(DictMinimizeError, ValueError):
    """An unknown method or option, or a method whose needs the call does not meet."""


class ObjectiveError(DictMinimizeError, ValueError):
    """The objective returned something unusable (wrong type or shape, non-finite at x0)."""


class CheckpointError(DictMinimizeError, ValueError):
    """A checkpoint file cannot be resumed from: missing, truncated, corrupt, written by a
    different version of the format, or saved by a run of a different problem (other keys,
    shapes, dtypes, method or residual count). A run never silently starts afresh instead."""


class DistributedError(DictMinimizeError, RuntimeError):
    """A data-parallel run stopped on every rank because one or more ranks failed.

    ``ranks`` lists the failing ranks. On a failing rank the original exception is chained
    (``__cause__``); the other ranks get the same error naming the failing ranks and their
    messages, instead of waiting forever for a collective the failed rank never joins.
    """

    def __init__(self, message: str, ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.ranks = ranks


class OptimizationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``result`` holds the best point found before the interrupt.

    It is a ``KeyboardInterrupt``, so scripts stop as usual, while an interactive session can
    keep the work done so far::

        try:
            res = minimize(fun, x0, full_output=True)
        except KeyboardInterrupt as exc:
            res = exc.result
    """

    def __init__(self, result: Any) -> None:
        super().__init__("optimization interrupted; the best point so far is in .result")
        self.result = result


class DictMinimizeWarning(UserWarning):
    """Warnings emitted by dict_minimize (for example a fallback to finite differences)."""
