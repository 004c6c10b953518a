"""Values of scipy's method options, checked before scipy sees them.

scipy answers ``options={"maxiter": "10"}`` with a ``TypeError`` from deep inside a method
(or a ``ZeroDivisionError``, or a Fortran error code), sometimes after minutes of work. The
rules here follow each option's default in scipy's signature (a bool must stay a bool, an
int an int, a float a number), plus the ranges scipy documents for the few options whose
bad values break it.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

from dict_minimize._errors import DictMinimizeError, InvalidOptionError

#: Options whose value must be > 0 (a radius or a norm order).
_POSITIVE = frozenset(
    {
        "norm",
        "rhobeg",
        "initial_tr_radius",
        "final_tr_radius",
        "initial_trust_radius",
        "max_trust_radius",
        "initial_constr_penalty",
        "initial_barrier_parameter",
        "initial_barrier_tolerance",
    }
)
#: Wolfe line-search constants: 0 < c1 < c2 < 1.
_WOLFE = frozenset({"c1", "c2"})


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and not math.isnan(float(value))
    )


def _is_count(name: str) -> bool:
    """maxiter, maxfun, maxfev, maxls, maxcor, maxCGit, subproblem_maxiter..."""
    return (name.startswith("max") and not name.endswith("radius")) or name.endswith("maxiter")


def _expected(method: str, name: str, default: Any, value: Any) -> str | None:
    """What ``value`` should have been, or None when it is acceptable (or not judged)."""
    if value is default or (_is_real(value) and _is_real(default) and value == default):
        return None  # scipy's own default (TNC's -1 means "automatic", for example)
    if name in _WOLFE:
        ok = _is_real(value) and 0 < float(value) < 1
        return None if ok else "a number strictly between 0 and 1"
    if name == "eta" and (method.startswith("trust") or method == "dogleg"):
        ok = _is_real(value) and 0 <= float(value) < 0.25
        return None if ok else "a number in [0, 0.25)"
    if name == "disp" or isinstance(default, bool):
        ok = isinstance(value, bool) or (_is_int(value) and 0 <= value <= 3)
        return None if ok else "True or False (or a verbosity level 0-3)"
    if _is_count(name):
        if value is None and default is None:
            return None
        floor = min(1, default) if _is_int(default) else 1
        return None if _is_int(value) and value >= floor else "a positive integer"
    numeric = _is_real(default) or (default is None and name.endswith("tol"))
    if not numeric:
        return None  # arrays, callables, choices: scipy checks them (see _minimize)
    if value is None and default is None:
        return None
    if not _is_real(value):
        return "a number (not NaN)"
    if name in _POSITIVE and not float(value) > 0:
        return "a positive number"
    if name.endswith("tol") and float(value) < 0:
        return "a non-negative number"
    return None


def check_option_values(
    method: str, options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> None:
    """Raise :class:`InvalidOptionError` for a value scipy's ``method`` cannot use.

    Parameters
    ----------
    method : str
        The method's name, for the message.
    options : Mapping
        The options given (names already checked).
    defaults : Mapping
        Each option's default in scipy's signature (``inspect.Parameter.empty`` if none).

    Examples
    --------
    >>> check_option_values("L-BFGS-B", {"maxiter": 10}, {"maxiter": 15000})
    >>> check_option_values("L-BFGS-B", {"maxiter": "10"}, {"maxiter": 15000})
    Traceback (most recent call last):
    ...
    dict_minimize._errors.InvalidOptionError: options['maxiter'] of method 'L-BFGS-B' must ...
    """
    for name, value in options.items():
        default = defaults.get(name, inspect.Parameter.empty)
        if default is inspect.Parameter.empty:
            continue
        expected = _expected(method, name, default, value)
        if expected is not None:
            raise InvalidOptionError(
                f"options[{name!r}] of method {method!r} must be {expected}, got {value!r}"
            )
    for low, high in (("c1", "c2"), ("final_tr_radius", "initial_tr_radius")):
        a, b = options.get(low, defaults.get(low)), options.get(high, defaults.get(high))
        given = low in options or high in options
        if given and _is_real(a) and _is_real(b) and not float(a) <= float(b):  # type: ignore[arg-type]
            raise InvalidOptionError(
                f"options[{low!r}] of method {method!r} must not exceed {high} ({b!r}), got {a!r}"
            )


def _package_dirs() -> tuple[str, ...]:
    import numpy
    import scipy

    import dict_minimize

    return tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (scipy, numpy, dict_minimize))


def scipy_refusal(exc: BaseException, method: str, options: Mapping[str, Any]) -> Exception | None:
    """An :class:`InvalidOptionError` for an error raised inside scipy's own code.

    Everything else a call holds is validated before scipy runs, so an exception raised
    inside scipy (no frame of user or framework code in its traceback) is scipy refusing an
    option value the rules above do not judge (an ``initial_simplex`` or ``hess_inv0`` of the
    wrong shape, an unknown ``factorization_method``...). Returns None for any other
    exception, which then propagates as it is.
    """
    if isinstance(exc, DictMinimizeError) or not isinstance(exc, Exception):
        return None
    roots = _package_dirs()
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        # Compiled modules name their sources relatively ("_moduleTNC.pyx"); user code has
        # an absolute path or a pseudo-name such as "<stdin>".
        compiled = not (os.path.isabs(filename) or filename.startswith("<"))
        inside = compiled or filename.startswith((*roots, "<frozen", "<__array_function__"))
        if not inside:
            return None  # user or framework code was running
        tb = tb.tb_next
    names = ", ".join(sorted(map(str, options))) or "none"
    return InvalidOptionError(
        f"scipy's {method!r} failed inside its own code ({type(exc).__name__}: {exc}); "
        f"an option value it cannot use is the likely cause (options given: {names})"
    )
