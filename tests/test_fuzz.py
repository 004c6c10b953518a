"""Malformed input, fuzzed: every call ends in a package error naming the culprit, or in a
correct result; never an error from inside scipy or a framework, never a hang; x0 is never
modified.

hypothesis draws a call of ``minimize`` or ``least_squares`` on each backend, with zero or
more mutations: wrong containers, nesting, key sets, dtypes, shapes, NaN/Inf, crossed or
mis-shaped bounds, objectives that return the wrong type or shape or raise, unknown methods
and options, bad option values. Each mutation names the words an error about it must
contain. A call with no mutation must succeed; a call with some must succeed or raise a
:class:`~dict_minimize.DictMinimizeError` whose message holds a culprit word (or the
objective's own exception, carrying ``.result``).

The suite runs a bounded number of examples. ``DICT_MINIMIZE_FUZZ_EXAMPLES=N`` runs N per
backend and API, and ``DICT_MINIMIZE_FUZZ_REPORT=path.json`` writes the inputs tried and the
distinct error paths hit (exception type and message template) there; docs/reliability.md
records such a run.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import Case
from dict_minimize import METHODS, DictMinimizeError

EXAMPLES = int(os.environ.get("DICT_MINIMIZE_FUZZ_EXAMPLES", "0")) or None
REPORT = os.environ.get("DICT_MINIMIZE_FUZZ_REPORT")
#: Seconds one call may take before it counts as a hang (compiling included).
CALL_LIMIT = 60

#: (api, exception type, message template) -> count, and calls per api, over the session.
PATHS: Counter[tuple[str, str, str]] = Counter()
TRIED: Counter[str] = Counter()


class Boom(Exception):
    """What a raising objective raises: it must reach the caller, carrying ``.result``."""


# -- what a call is made of ------------------------------------------------------------------

SHAPES = st.sampled_from([(), (1,), (3,), (2, 2), (1, 3)])
LEAF_DTYPES = st.sampled_from(["float64", "float64", "float32"])

X0_MUTATIONS = {
    # name: culprit words (any one must appear in the error message)
    "list": ("x0 must be a mapping",),
    "none": ("x0 must be a mapping",),
    "str": ("x0 must be a mapping",),
    "bare tensor": ("x0 must be a mapping",),
    "empty": ("empty",),
    "nested empty": ("empty",),
    "zero size": ("zero elements",),
    "int dtype": ("dtype", "floating point"),
    "bool dtype": ("dtype", "floating point"),
    "list leaf": ("x0['p0']",),
    "python float leaf": ("x0['p0']",),
    "nan": ("non-finite", "finite"),
    "inf": ("non-finite", "finite"),
    "foreign leaf": ("x0['p0']",),
    "int keys": (),  # valid
    "tuple keys": (),  # valid
}
OBJECTIVE_MUTATIONS = {
    "returns None": ("NoneType", "must return", "scalar"),
    "returns str": ("str", "must return", "scalar"),
    "returns triple": ("(loss, grad_dict)", "scalar", "must return"),
    "non-scalar loss": ("scalar", "shape"),
    "grad not a dict": ("gradient", "mapping"),
    "grad missing key": ("gradient", "missing"),
    "grad extra key": ("gradient", "x0 does not have"),
    "grad wrong shape": ("gradient", "shape"),
    "grad wrong type": ("gradient", "tensor"),
    "nan at x0": ("at x0", "finite"),
    "raises": (),  # Boom itself
    "nan later": (),  # NaN beyond 0.75 (the optimum is 0.5): a correct result
}
RESIDUAL_MUTATIONS = {
    "returns None": ("residual_fn", "must return"),
    "returns list": ("residual_fn", "must return"),
    "returns python float": ("residual_fn", "must return"),
    "int dtype": ("residual_fn", "dtype", "floating point"),
    "empty": ("no residuals",),
    "nan at x0": ("at x0", "finite"),
    "raises": (),
    "nan later": (),
}
BOUND_MUTATIONS = {
    "crossed": ("lower bound above upper bound",),
    "wrong shape": ("shape",),
    "unknown key": ("x0 does not have", "'zz'"),
    "nan": ("NaN",),
    "str": ("str", "number"),
    "list": ("list", "number", "tensor"),
    "not a mapping": ("mapping",),
}
MINIMIZE_OPTION_MUTATIONS = {
    "unknown option": ("'bogus'",),
    "options not a dict": ("options must be a dict",),
    "bad tol": ("tol",),
    "unknown method": ("unknown method",),
    "method not a str": ("unknown method",),
    "jac not bool": ("jac must be",),
    "callback not callable": ("callback",),
    "fun not callable": ("fun must be callable",),
    "option value str": ("options[", "refused", "failed inside"),
    "option value negative": ("options[", "failed inside"),
    "option value nan": ("options[", "failed inside"),
    "option key not str": ("has no option",),
    "array option wrong shape": ("failed inside", "options["),
}
LS_OPTION_MUTATIONS = {
    "unknown option": ("'bogus'",),
    "options not a dict": ("options must be a dict",),
    "unknown method": ("unknown method",),
    "unknown loss": ("loss",),
    "bad f_scale": ("f_scale",),
    "bad ftol": ("ftol",),
    "nan xtol": ("xtol",),
    "bad max_nfev": ("max_nfev",),
    "bad chunk_size": ("chunk_size",),
    "bad x_scale": ("x_scale",),
    "x_scale wrong shape": ("x_scale", "shape"),
    "unknown damping": ("damping",),
    "bad mu": ("mu",),
    "bad max_iter": ("max_iter",),
    "bad in_axes": ("in_axes",),
    "bad batched_args": ("batched_args",),
    "bad linear_solver": ("linear_solver",),
    "bad host_algebra": ("host_algebra",),
    "bad checkpoint": ("checkpoint",),
    "resume missing": ("no checkpoint file",),
    "residual_fn not callable": ("residual_fn must be callable",),
    "x_scale not numbers": ("x_scale",),
    "option key not str": ("has no option",),
    "bad tr_options": ("failed inside", "tr_options", "has no option"),
    "bad tr_solver": ("failed inside", "tr_solver", "has no option"),
}


def _maybe(mutations: Mapping[str, Any]) -> st.SearchStrategy[str | None]:
    """No mutation half of the time, else one of ``mutations``."""
    return st.one_of(st.none(), st.none(), st.sampled_from(sorted(mutations)))


@st.composite
def minimize_calls(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "shapes": draw(st.lists(st.tuples(SHAPES, LEAF_DTYPES), min_size=1, max_size=3)),
        "nested": draw(st.booleans()),
        "x0": draw(_maybe(X0_MUTATIONS)),
        "objective": draw(_maybe(OBJECTIVE_MUTATIONS)),
        "bounds": draw(st.one_of(st.none(), st.just("valid"), _maybe(BOUND_MUTATIONS))),
        "options": draw(_maybe(MINIMIZE_OPTION_MUTATIONS)),
        "method": draw(st.sampled_from([info.name for info in METHODS.values()])),
        "jac": draw(st.booleans()),
    }


@st.composite
def least_squares_calls(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "shapes": draw(st.lists(st.tuples(SHAPES, LEAF_DTYPES), min_size=1, max_size=3)),
        "nested": draw(st.booleans()),
        "x0": draw(_maybe(X0_MUTATIONS)),
        "objective": draw(_maybe(RESIDUAL_MUTATIONS)),
        "bounds": draw(st.one_of(st.none(), st.just("valid"), _maybe(BOUND_MUTATIONS))),
        "options": draw(_maybe(LS_OPTION_MUTATIONS)),
        "method": draw(st.sampled_from(["lm", "trf", "scipy-trf", "scipy-dogbox", "scipy-lm"])),
        "loss": draw(st.sampled_from(["linear", "linear", "soft_l1", "cauchy"])),
        "batched": draw(st.booleans()),
    }


# -- building the call ------------------------------------------------------------------------


@dataclass
class Call:
    """One call to make, the culprit words its mutations allow, and x0's host copy."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    culprits: list[tuple[str, ...]] = field(default_factory=list)
    x0: Any = None
    snapshot: list[np.ndarray] = field(default_factory=list)
    raises_boom: bool = False
    rho: Callable[[np.ndarray], np.ndarray] = lambda z: z  # least_squares' loss
    copies: int = 1  # how many times the residuals repeat (batched samples)

    @property
    def mutated(self) -> bool:
        return bool(self.culprits) or self.raises_boom


def _leaves(tree: Any, case: Case) -> Iterator[Any]:
    if isinstance(tree, Mapping) and not case.backend.is_leaf(tree):
        for value in tree.values():
            yield from _leaves(value, case)
    else:
        yield tree


def _x0(case: Case, spec: dict[str, Any], culprits: list[tuple[str, ...]]) -> Any:
    rng = np.random.default_rng(len(spec["shapes"]))
    x0: dict[str, Any] = OrderedDict(
        (f"p{i}", case.tensor(rng.uniform(-1, 1, shape), dtype))
        for i, (shape, dtype) in enumerate(spec["shapes"])
    )
    if spec["nested"]:
        x0 = OrderedDict(outer=OrderedDict(x0)) if len(x0) == 1 else x0
        if len(x0) > 1:
            first = next(iter(x0))
            x0 = OrderedDict([(first, x0[first]), ("inner", OrderedDict(list(x0.items())[1:]))])
    mutation = spec["x0"]
    if mutation is None:
        return x0
    if mutation in ("int keys", "tuple keys"):  # valid: any hashable keys
        keys = [(i, "w") if mutation == "tuple keys" else i for i in range(len(x0))]
        return OrderedDict(zip(keys, x0.values()))
    culprits.append(X0_MUTATIONS[mutation])
    if mutation == "foreign leaf":  # another framework's array (numpy's: a torch-like list)
        return OrderedDict(p0=np.ones(2) if case.name != "numpy" else (1.0, 2.0))
    flat = OrderedDict(p0=case.tensor([1.0, 2.0]))
    if mutation == "list":
        return [case.tensor(1.0)]
    if mutation == "none":
        return None
    if mutation == "str":
        return "p0"
    if mutation == "bare tensor":
        return case.tensor([1.0, 2.0])
    if mutation == "empty":
        return OrderedDict()
    if mutation == "nested empty":
        return OrderedDict(p0=case.tensor(1.0), inner=OrderedDict())
    if mutation == "zero size":
        return OrderedDict(p0=case.tensor(np.zeros((0, 2))))
    if mutation in ("int dtype", "bool dtype"):
        kind = "int64" if mutation == "int dtype" else "bool"
        dtype = getattr(case.xp, kind, None) or getattr(case.xp, kind + "_")
        return OrderedDict(p0=case.backend.from_numpy(np.array([1.0, 0.0]), case.device, dtype))
    if mutation == "list leaf":
        return OrderedDict(p0=[1.0, 2.0])
    if mutation == "python float leaf":
        return OrderedDict(p0=1.5)
    bad = np.array([0.5, np.nan if mutation == "nan" else np.inf])
    flat["p0"] = case.tensor(bad)
    return flat


def _snapshot(case: Case, x0: Any) -> list[np.ndarray]:
    if not isinstance(x0, Mapping):
        return []
    out = []
    for leaf in _leaves(x0, case):
        if case.backend.is_leaf(leaf):
            out.append(np.array(case.backend.to_numpy(leaf), copy=True))
    return out


def _as_f64(case: Case, tensor: Any) -> Any:
    b = case.backend
    return b.cast(b.reshape(tensor, (-1,)), case.dtypes["float64"])


def _concat_residuals(case: Case, params: Any) -> Any:
    parts = [_as_f64(case, v) - 0.5 for v in _leaves(params, case)]
    return parts[0] if len(parts) == 1 else case.backend.concat(parts)


def _objective(case: Case, mutation: str | None, jac: bool) -> Callable[..., Any]:
    """The loss ``Σ (v - 0.5)²`` (with its gradient for jac=True), mutated."""
    xp = case.xp
    calls = [0]

    def fun(params: Any, *args: Any) -> Any:
        calls[0] += 1
        r = _concat_residuals(case, params)
        if mutation == "nan later":
            r = xp.where(r > _WALL - 0.5, case.tensor(np.nan), r)
        loss = xp.sum(r * r)
        if mutation == "nan at x0":
            loss = loss * case.tensor(np.nan)
        if mutation == "raises" and calls[0] > 2:
            raise Boom("the objective failed")
        if mutation == "returns None":
            return None
        if mutation == "returns str":
            return "loss"
        if mutation == "non-scalar loss":
            loss = r * r
        if not jac:
            return (loss, loss, loss) if mutation == "returns triple" else loss
        grad = _grad(case, params)
        if mutation == "returns triple":
            return loss, grad, grad
        if mutation == "grad not a dict":
            return loss, [1.0]
        if mutation == "grad missing key":
            grad.popitem()
            grad = grad or {}
        elif mutation == "grad extra key":
            grad["zz"] = case.tensor(0.0)
        elif mutation == "grad wrong shape":
            key = next(iter(grad))
            grad[key] = case.tensor(np.zeros((7,)))
        elif mutation == "grad wrong type":
            key = next(iter(grad))
            grad[key] = "zero"
        return loss, grad

    return fun


#: Where "nan later" objectives turn NaN: beyond the optimum (0.5), so x0 may lie past it.
_WALL = 0.75


def _beyond_wall(case: Case, x0: Any) -> bool:
    leaves = _snapshot(case, x0)
    return any((leaf.astype(np.float64) > _WALL - 1e-3).any() for leaf in leaves)


def _grad(case: Case, params: Any) -> OrderedDict[Any, Any]:
    out: OrderedDict[Any, Any] = OrderedDict()
    for key, value in params.items():
        if isinstance(value, Mapping) and not case.backend.is_leaf(value):
            out[key] = _grad(case, value)
        else:
            out[key] = 2 * (value - 0.5)
    return out


def _residual_fn(case: Case, mutation: str | None) -> Callable[..., Any]:
    calls = [0]

    def residual_fn(params: Any, *args: Any) -> Any:
        calls[0] += 1
        r = _concat_residuals(case, params)
        if mutation == "nan later":
            r = case.xp.where(r > _WALL - 0.5, case.tensor(np.nan), r)
        if args:  # batched samples: one residual per sample and parameter
            r = args[0] * 0.0 + case.backend.reshape(r, (1, -1))
        if mutation == "nan at x0":
            r = r * case.tensor(np.nan)
        if mutation == "raises" and calls[0] > 2 and not case.traced:
            raise Boom("the residuals failed")
        if mutation == "returns None":
            return None
        if mutation == "returns list":
            return [1.0, 2.0]
        if mutation == "returns python float":
            return 1.0
        if mutation == "int dtype":
            return case.backend.from_numpy(np.array([1, 2]), case.device, case.xp.int32)
        if mutation == "empty":
            return case.tensor(np.zeros(0))
        return r

    return residual_fn


def _first_leaf(case: Case, x0: Mapping[Any, Any]) -> tuple[Any, ...]:
    key = next(iter(x0))
    value = x0[key]
    if isinstance(value, Mapping) and not case.backend.is_leaf(value) and value:
        return (key, *_first_leaf(case, value))
    return (key,)


def _bounds(case: Case, x0: Any, mutation: str | None) -> tuple[Any, Any, tuple[str, ...]]:
    """``(lb_dict, ub_dict, culprit words)`` bounding x0's first leaf, mutated."""
    if not isinstance(x0, Mapping) or not x0:
        return {"p0": -2.0}, None, ()
    path = _first_leaf(case, x0)

    def at(value: Any) -> Any:
        for key in reversed(path):
            value = {key: value}
        return value

    if mutation == "valid":
        return at(-2.0), at(2.0), ()
    if mutation == "crossed":
        return at(1.0), at(0.0), BOUND_MUTATIONS[mutation]
    if mutation == "wrong shape":
        return at(case.tensor(np.zeros((5, 4)))), None, BOUND_MUTATIONS[mutation]
    if mutation == "unknown key":
        return {"zz": 1.0}, None, BOUND_MUTATIONS[mutation]
    if mutation == "nan":
        return at(float("nan")), None, BOUND_MUTATIONS[mutation]
    if mutation == "str":
        return None, at("1"), BOUND_MUTATIONS[mutation]
    if mutation == "list":
        return at([1.0]), None, BOUND_MUTATIONS[mutation]
    return [1.0], None, BOUND_MUTATIONS["not a mapping"]


#: A numeric scipy option of each method (for bad values), else the iteration limit.
_NUMERIC_OPTION = {
    "l-bfgs-b": "maxcor",
    "bfgs": "c1",
    "cg": "norm",
    "newton-cg": "xtol",
    "trust-ncg": "eta",
    "trust-krylov": "eta",
    "dogleg": "eta",
    "trust-exact": "subproblem_maxiter",
    "cobyqa": "initial_tr_radius",
    "cobyla": "rhobeg",
    "nelder-mead": "fatol",
    "slsqp": "ftol",
    "trust-constr": "initial_tr_radius",
}
#: An array-valued scipy option of each method that has one.
_ARRAY_OPTION = {
    "bfgs": "hess_inv0",
    "nelder-mead": "initial_simplex",
    "powell": "direc",
    "tnc": "scale",
}


def build_minimize(case: Case, spec: dict[str, Any]) -> Call:
    culprits: list[tuple[str, ...]] = []
    x0 = _x0(case, spec, culprits)
    method = spec["method"]
    info = METHODS[method.lower()]
    jac = spec["jac"]
    if (
        not case.autodiff
        and info.gradient
        and not jac
        and method.lower()
        not in (
            "bfgs",
            "cg",
            "l-bfgs-b",
            "tnc",
            "slsqp",
            "trust-constr",
        )
    ):
        jac = True  # numpy cannot give these an exact gradient (tested in test_errors)
    fun = _objective(case, spec["objective"], jac)
    if spec["objective"] not in (None, "raises", "nan later"):
        culprits.append(OBJECTIVE_MUTATIONS[spec["objective"]])
    elif spec["objective"] == "nan later" and _beyond_wall(case, x0):
        culprits.append(("at x0", "finite"))
    kwargs: dict[str, Any] = {"method": method, "jac": jac, "full_output": True}
    limit = "maxfun" if method == "TNC" else "maxiter"
    kwargs["options"] = {limit: 4}
    if info.second_order != "none" and (jac or not case.autodiff):

        def hessp(params: Any, p: Any) -> Any:
            return OrderedDict((k, 2 * v) if not isinstance(v, Mapping) else (k, hessp(v, v))
                               for k, v in p.items())  # fmt: skip

        kwargs["hessp"] = hessp
    if spec["bounds"] is not None:
        lb, ub, words = _bounds(case, x0, spec["bounds"])
        kwargs.update(lb_dict=lb, ub_dict=ub)
        if words:
            culprits.append(words)
        if not info.bounds:
            culprits.append((repr(info.name), "bounds"))
    option = spec["options"]
    if option is not None:
        culprits.append(MINIMIZE_OPTION_MUTATIONS[option])
        if option == "unknown option":
            kwargs["options"]["bogus"] = 1
        elif option == "options not a dict":
            kwargs["options"] = [("maxiter", 3)]
        elif option == "bad tol":
            kwargs["tol"] = -1.0
        elif option == "unknown method":
            kwargs["method"] = "lbfgs"
        elif option == "method not a str":
            kwargs["method"] = 3
        elif option == "jac not bool":
            kwargs["jac"] = "2-point"
        elif option == "callback not callable":
            kwargs["callback"] = 1
        elif option == "fun not callable":
            fun = {}  # type: ignore[assignment]
        elif option == "option key not str":
            kwargs["options"][7] = 1
        elif option in ("option value str", "option value negative", "option value nan"):
            value = {"option value str": "10", "option value negative": -1}.get(option, math.nan)
            name = _NUMERIC_OPTION.get(method.lower(), limit)
            kwargs["options"][name] = value
        elif option == "array option wrong shape":
            name = _ARRAY_OPTION.get(method.lower())
            if name is None:
                kwargs["options"]["bogus"] = 1
                culprits[-1] = ("has no option",)
            else:
                kwargs["options"][name] = np.ones((2, 7))
    call = Call(case.api.minimize, (fun, x0), kwargs, culprits, x0, _snapshot(case, x0))
    call.raises_boom = spec["objective"] == "raises"
    return call


def build_least_squares(case: Case, spec: dict[str, Any]) -> Call:
    culprits: list[tuple[str, ...]] = []
    x0 = _x0(case, spec, culprits)
    method = spec["method"]
    residual_fn = _residual_fn(case, spec["objective"])
    if spec["objective"] not in (None, "raises", "nan later"):
        culprits.append(RESIDUAL_MUTATIONS[spec["objective"]])
    elif spec["objective"] == "nan later" and _beyond_wall(case, x0):
        culprits.append(("at x0", "finite"))
    kwargs: dict[str, Any] = {"method": method, "max_nfev": 8, "loss": spec["loss"]}
    options: dict[str, Any] = {}
    if spec["batched"] and method != "scipy-lm":
        kwargs["args"] = (case.tensor(np.ones((4, 1))),)
        options["batched_args"] = (0,)
    if method == "scipy-lm" and spec["loss"] != "linear":
        culprits.append(("scipy-lm", "loss"))
    if spec["bounds"] is not None:
        lb, ub, words = _bounds(case, x0, spec["bounds"])
        kwargs.update(lb_dict=lb, ub_dict=ub)
        if words:
            culprits.append(words)
        if method in ("lm", "scipy-lm"):
            culprits.append((repr(method), "bounds"))
    option = spec["options"]
    if option is not None:
        culprits.append(LS_OPTION_MUTATIONS[option])
        own = method in ("lm", "trf")
        if option == "unknown option":
            options["bogus"] = 1
        elif option == "options not a dict":
            options = [("x_scale", 1.0)]  # type: ignore[assignment]
        elif option == "unknown method":
            kwargs["method"] = "levenberg"
        elif option == "unknown loss":
            kwargs["loss"] = "l1"
        elif option == "bad f_scale":
            kwargs["f_scale"] = -1.0
        elif option == "bad ftol":
            kwargs["ftol"] = -1e-3
        elif option == "nan xtol":
            kwargs["xtol"] = float("nan")
        elif option == "bad max_nfev":
            kwargs["max_nfev"] = 0
        elif option == "bad chunk_size":
            options["chunk_size"] = 0
        elif option == "bad x_scale":
            options["x_scale"] = -1.0
        elif option == "x_scale wrong shape":
            key = next(iter(x0)) if isinstance(x0, Mapping) and x0 else "p0"
            options["x_scale"] = {key: np.ones((6, 5))}
        elif option == "unknown damping":
            options["damping"] = "levenberg"
        elif option == "bad mu":
            options["mu"] = -1.0
        elif option == "bad max_iter":
            options["max_iter"] = 0
        elif option == "bad in_axes":
            options["in_axes"] = ("x",)
        elif option == "bad batched_args":
            options["batched_args"] = (5,)
        elif option == "bad linear_solver":
            options["linear_solver"] = "qr"
        elif option == "bad host_algebra":
            options["host_algebra"] = "sometimes"
        elif option == "bad checkpoint":
            options["checkpoint"] = "/nonexistent-dir/c.npz"
        elif option == "resume missing":
            options["resume"] = "/nonexistent-dir/c.npz"
        elif option == "residual_fn not callable":
            residual_fn = 3  # type: ignore[assignment]
        elif option == "x_scale not numbers":
            key = next(iter(x0)) if isinstance(x0, Mapping) and x0 else "p0"
            options["x_scale"] = {key: "big"}
        elif option == "option key not str":
            options[("a", 1)] = 1
        elif option == "bad tr_options":
            options["tr_options"] = {"bogus": 1}
        elif option == "bad tr_solver":
            options["tr_solver"] = "qr"
        if not own and option in (
            "bad mu",
            "unknown damping",
            "bad max_iter",
            "bad checkpoint",
            "resume missing",
            "bad linear_solver",
            "bad host_algebra",
        ):
            culprits[-1] = culprits[-1] + (repr(method),)  # "method 'scipy-trf' has no option"
    kwargs["options"] = options
    call = Call(case.api.least_squares, (residual_fn, x0), kwargs, culprits, x0)
    call.snapshot = _snapshot(case, x0)
    call.rho = {
        "linear": lambda z: z,
        "soft_l1": lambda z: 2 * (np.sqrt(1 + z) - 1),
        "cauchy": np.log1p,
    }.get(kwargs["loss"], lambda z: z)
    call.copies = 4 if "args" in kwargs else 1
    call.raises_boom = spec["objective"] == "raises" and not case.traced
    return call


# -- running and judging ------------------------------------------------------------------------


def _template(message: str) -> str:
    """A message with its particulars (names, numbers, shapes) blanked: its error path."""
    first = message.split("\n")[0].split("; its options are")[0]
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "<s>", first)
    first = re.sub(r"\(([-\d, ]*)\)", "<shape>", first)
    first = re.sub(r"[-+]?(\d+\.?\d*(e[-+]?\d+)?|inf|nan)", "<n>", first)
    # a key path of any depth, an element index of any rank: one template
    return re.sub(r"(\[(<s>|<n>|<n>, [<n>, ]*<n>|)\])+", "[<k>]", first)


def _run(call: Call, api: str) -> Any:
    """Make the call under a time limit; return the result or the exception."""
    TRIED[api] += 1

    def timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the call took more than {CALL_LIMIT} s: a hang")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(CALL_LIMIT)
    try:
        with warnings.catch_warnings():  # (x0 clipped into its bounds...: allowed, not judged)
            warnings.simplefilter("ignore")
            return call.fn(*call.args, **call.kwargs)
    except (Exception, KeyboardInterrupt) as exc:
        return exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def judge(case: Case, call: Call, outcome: Any, api: str) -> None:
    """Fail unless the outcome is an allowed error or a correct result; x0 untouched."""
    # x0 is never modified (compared bitwise, NaN included)
    after = _snapshot(case, call.x0)
    assert len(after) == len(call.snapshot)
    for before, now in zip(call.snapshot, after):
        np.testing.assert_array_equal(before, now)
    if isinstance(outcome, Boom):
        assert call.raises_boom
        assert hasattr(outcome, "result") and outcome.result.status == -3
        PATHS[(api, "Boom", "the objective's own exception, with .result")] += 1
        return
    if isinstance(outcome, BaseException):
        kind = type(outcome).__name__
        assert isinstance(outcome, DictMinimizeError), (
            f"{kind} from outside the package: {outcome!r} (culprits {call.culprits})"
        )
        message = str(outcome)
        assert call.culprits, f"a valid call raised {kind}: {message}"
        words = [w for group in call.culprits for w in group]
        assert any(w in message for w in words), (
            f"{kind}: {message!r} names none of {call.culprits}"
        )
        PATHS[(api, kind, _template(message))] += 1
        return
    # a result: it must be a correct one, in x0's layout
    PATHS[(api, "result", "success" if outcome.success else f"status {outcome.status}")] += 1
    assert isinstance(call.x0, Mapping)
    x_leaves = list(_leaves(outcome.x, case))
    x0_leaves = list(_leaves(call.x0, case))
    assert len(x_leaves) == len(x0_leaves)
    for got, start in zip(x_leaves, x0_leaves):
        shape, dtype, _ = case.backend.leaf_meta(got)
        assert (tuple(shape), dtype) == tuple(case.backend.leaf_meta(start)[:2])
        assert np.isfinite(case.numpy(got)).all()
    value = outcome.fun if api == "minimize" else outcome.cost
    assert math.isfinite(value)
    r0 = np.concatenate([case.numpy(v).astype(np.float64).ravel() - 0.5 for v in x0_leaves])
    if api == "minimize":
        start = float(r0 @ r0)
    else:
        start = 0.5 * call.copies * float(np.sum(call.rho(r0 * r0)))
    assert value <= start * (1 + 1e-6) + 1e-9  # never worse than x0


def _settings(default: int) -> Any:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,  # first calls compile (JAX, TensorFlow); hangs are caught by SIGALRM
        derandomize=EXAMPLES is None,  # the suite's run is the same every time
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


def _examples(case: Case) -> int:
    return 30 if not case.traced else 6  # (the compiled backends trace each new signature)


@pytest.mark.slow
def test_fuzz_minimize(case: Case) -> None:
    @_settings(_examples(case))
    @given(spec=minimize_calls())
    def run(spec: dict[str, Any]) -> None:
        call = build_minimize(case, spec)
        judge(case, call, _run(call, "minimize"), "minimize")

    run()


@pytest.mark.slow
def test_fuzz_least_squares(case: Case) -> None:
    @_settings(_examples(case))
    @given(spec=least_squares_calls())
    def run(spec: dict[str, Any]) -> None:
        call = build_least_squares(case, spec)
        judge(case, call, _run(call, "least_squares"), "least_squares")

    run()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if REPORT:
        by_api: dict[str, Any] = {}
        for (api, kind, template), count in sorted(PATHS.items()):
            entry = by_api.setdefault(api, {"tried": TRIED[api], "paths": []})
            entry["paths"].append({"type": kind, "template": template, "count": count})
        for entry in by_api.values():
            errors = [p for p in entry["paths"] if p["type"] != "result"]
            entry["distinct_error_paths"] = len(errors)
        path = f"{REPORT}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json"
        with open(path, "w") as handle:
            json.dump(by_api, handle, indent=1)
