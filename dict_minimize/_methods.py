"""What each ``scipy.optimize.minimize`` method needs and accepts.

One table drives validation (bounds, constraints, second derivatives), the derivatives the
scipy bridge hands over, and the method table in the README.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dict_minimize._errors import InvalidOptionError

#: ``"hessp"``: Hessian-vector products; ``"hess"``: the full Hessian matrix.
SecondOrder = Literal["none", "hessp", "hess"]


@dataclass(frozen=True)
class MethodInfo:
    """Capabilities of one scipy method.

    Attributes
    ----------
    name : str
        The canonical spelling scipy documents (``"L-BFGS-B"``).
    gradient : bool
        Whether the method uses the gradient.
    second_order : {"none", "hessp", "hess"}
        Which second-derivative information it uses.
    second_order_required : bool
        Whether scipy refuses to run without it (dogleg, trust-ncg, trust-exact, trust-krylov);
        Newton-CG falls back to finite differences of the gradient and trust-constr to BFGS.
    bounds : bool
        Whether scipy's implementation honours ``bounds``.
    constraints : bool
        Whether it accepts general constraints.
    """

    name: str
    gradient: bool
    second_order: SecondOrder
    second_order_required: bool
    bounds: bool
    constraints: bool


def _m(
    name: str,
    gradient: bool,
    second: SecondOrder = "none",
    required: bool = False,
    bounds: bool = False,
    constraints: bool = False,
) -> tuple[str, MethodInfo]:
    return name.lower(), MethodInfo(name, gradient, second, required, bounds, constraints)


#: Every method of ``scipy.optimize.minimize``, keyed by lower-case name.
METHODS: dict[str, MethodInfo] = dict(
    [
        _m("Nelder-Mead", False, bounds=True),
        _m("Powell", False, bounds=True),
        _m("CG", True),
        _m("BFGS", True),
        _m("Newton-CG", True, "hessp"),
        _m("L-BFGS-B", True, bounds=True),
        _m("TNC", True, bounds=True),
        _m("COBYLA", False, bounds=True, constraints=True),
        _m("COBYQA", False, bounds=True, constraints=True),
        _m("SLSQP", True, bounds=True, constraints=True),
        _m("trust-constr", True, "hessp", bounds=True, constraints=True),
        _m("dogleg", True, "hess", required=True),
        _m("trust-ncg", True, "hessp", required=True),
        _m("trust-exact", True, "hess", required=True),
        _m("trust-krylov", True, "hessp", required=True),
    ]
)

BOUNDED_METHODS = tuple(info.name for info in METHODS.values() if info.bounds)
CONSTRAINED_METHODS = tuple(info.name for info in METHODS.values() if info.constraints)


#: Methods that run in the framework instead of scipy (``dict_minimize/solvers``), each with
#: the options it accepts; ``minimize`` dispatches them before :func:`method_info`.
FRAMEWORK_METHODS: dict[str, frozenset[str]] = {
    "rso": frozenset(
        {
            "rounds",
            "batch_size",
            "batched_args",
            "sampler",
            "skip_bias",
            "sigma_scale",
            "min_sigma",
            "init",
            "out_axis",
            "seed",
            "maxfev",
            "vectorize",
            "progress",
        }
    ),
}


def method_info(method: object) -> MethodInfo:
    """Look up ``method`` case-insensitively, with an error listing the valid names."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        names = ", ".join([*(info.name for info in METHODS.values()), *FRAMEWORK_METHODS])
        raise InvalidOptionError(f"unknown method {method!r}; choose one of: {names}")
    return METHODS[method.lower()]


def check_framework_options(method: str, options: Mapping[str, object]) -> None:
    """Raise a clear error for an option the in-framework ``method`` does not know."""
    known = FRAMEWORK_METHODS[method]
    unknown = sorted(set(options) - known, key=str)
    if unknown:
        raise InvalidOptionError(
            f"method {method!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(known))}"
        )


# Options that dict_minimize consumes itself before handing the rest to scipy.
OWN_OPTIONS = frozenset({"progress"})


@functools.cache
def _scipy_option_names(info: MethodInfo) -> frozenset[str] | None:
    """The option names scipy's implementation of the method accepts, or None if unknown."""
    defaults = _scipy_option_defaults(info)
    return None if defaults is None else frozenset(defaults)


@functools.cache  # inspect.signature is slow; scipy's signatures do not change
def _scipy_option_defaults(info: MethodInfo) -> dict[str, object] | None:
    """Each option scipy's implementation of the method accepts, with its default value."""
    from scipy.optimize import _minimize as scipy_minimize_module

    impl = {
        "nelder-mead": "_minimize_neldermead",
        "powell": "_minimize_powell",
        "cg": "_minimize_cg",
        "bfgs": "_minimize_bfgs",
        "newton-cg": "_minimize_newtoncg",
        "l-bfgs-b": "_minimize_lbfgsb",
        "tnc": "_minimize_tnc",
        "cobyla": "_minimize_cobyla",
        "cobyqa": "_minimize_cobyqa",
        "slsqp": "_minimize_slsqp",
        "trust-constr": "_minimize_trustregion_constr",
        "dogleg": "_minimize_dogleg",
        "trust-ncg": "_minimize_trust_ncg",
        "trust-exact": "_minimize_trustregion_exact",
        "trust-krylov": "_minimize_trust_krylov",
    }[info.name.lower()]
    func = getattr(scipy_minimize_module, impl, None)
    if func is None:  # a future scipy renamed its private functions: let scipy judge
        return None
    params = dict(inspect.signature(func).parameters)
    if any(p.kind is p.VAR_KEYWORD and name != "unknown_options" for name, p in params.items()):
        # dogleg, trust-ncg, trust-exact, trust-krylov forward their options to one loop.
        from scipy.optimize import _trustregion

        loop = inspect.signature(_trustregion._minimize_trust_region).parameters
        params.update((k, v) for k, v in loop.items() if k not in ("subproblem", "inexact"))
    # Positional problem arguments are not options.
    skip = {"fun", "func", "x0", "args", "jac", "grad", "hess", "hessp", "bounds", "constraints"}
    return {
        name: p.default
        for name, p in params.items()
        if p.kind is not p.VAR_KEYWORD and name not in skip | {"callback"}
    }


def check_options(info: MethodInfo, options: dict[str, object]) -> None:
    """Raise a clear error for an option the method does not know (scipy only warns)."""
    known = _scipy_option_names(info)
    if known is None:
        return
    unknown = sorted(set(options) - known - OWN_OPTIONS, key=str)
    if unknown:
        raise InvalidOptionError(
            f"method {info.name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(known | OWN_OPTIONS))}"
        )
    from dict_minimize._option_values import check_option_values

    check_option_values(info.name, options, _scipy_option_defaults(info) or {})
