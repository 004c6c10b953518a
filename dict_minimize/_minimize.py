"""The bridge to ``scipy.optimize.minimize``: dicts of tensors in, a dict (or result) out."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize as so

from dict_minimize._bounds import flat_bounds
from dict_minimize._constraints import build_constraints
from dict_minimize._errors import (
    DictMinimizeWarning,
    InvalidBoundsError,
    InvalidOptionError,
    InvalidParamsError,
    OptimizationInterrupted,
)
from dict_minimize._methods import (
    BOUNDED_METHODS,
    FRAMEWORK_METHODS,
    MethodInfo,
    check_options,
    method_info,
)
from dict_minimize._objective import Objective, check_x0_finite
from dict_minimize._option_values import scipy_refusal
from dict_minimize._progress import Progress
from dict_minimize._result import (
    STATUS_INTERRUPTED,
    STATUS_NOT_FINITE,
    STATUS_OBJECTIVE_RAISED,
    MinimizeResult,
)
from dict_minimize._tree import TreeSpec, format_path, tree_spec
from dict_minimize.backends._protocol import Backend

# The signature scipy reads from the iteration counter on every call (inspect.signature of a
# function costs ~10 us; a given __signature__ is returned as is).
_COUNT_SIGNATURE = inspect.Signature(
    [inspect.Parameter("intermediate_result", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
)

# Methods that take jac="2-point" (scipy's finite differences with a relative step).
_FD_GRADIENT = ("trust-constr", "bfgs", "cg", "l-bfgs-b", "tnc", "slsqp")


def as_args(args: Any) -> tuple[Any, ...]:
    """``args`` as a tuple: a list becomes a tuple, anything else a 1-tuple (scipy's rule)."""
    if isinstance(args, tuple):
        return args
    return tuple(args) if isinstance(args, list) else (args,)


def prepare(backend: Backend[Any], x0_dict: Any) -> tuple[TreeSpec, list[Any], Any]:
    """Spec, leaves and common device of x0; clear errors for anything unusable."""
    spec, leaves = tree_spec(x0_dict, backend.describe, backend.is_leaf)
    device = spec.leaves[0].device
    for leaf in spec.leaves[1:]:
        if leaf.device != device:
            raise InvalidParamsError(
                f"{format_path(leaf.path)} is on {leaf.device} but "
                f"{format_path(spec.leaves[0].path)} is on {device}; put all tensors on one device"
            )
    return spec, leaves, device


def _check_call(
    backend: Backend[Any],
    info: MethodInfo,
    fun: Any,
    jac: Any,
    hessp: Any,
    callback: Any,
) -> None:
    if not callable(fun):
        raise InvalidOptionError(f"fun must be callable, got {type(fun).__name__}")
    if not isinstance(jac, bool):
        raise InvalidOptionError(
            f"jac must be True (fun returns (loss, grad_dict)) or False (fun returns the loss "
            f"and {backend.name} differentiates it), got {jac!r}"
        )
    if hessp is not None and not callable(hessp):
        raise InvalidOptionError("hessp must be callable: hessp(params, p_dict, *args) -> dict")
    if callback is not None and not callable(callback):
        raise InvalidOptionError("callback must be callable: callback(params_dict)")
    if hessp is not None and info.second_order == "none":
        raise InvalidOptionError(
            f"method {info.name!r} does not use Hessian information; drop hessp or choose "
            f"Newton-CG, trust-ncg, trust-krylov, trust-constr, dogleg or trust-exact"
        )
    has_second = hessp is not None or (not jac and backend.has_autodiff)
    if info.second_order_required and not has_second:
        need = "the Hessian" if info.second_order == "hess" else "Hessian-vector products"
        how = (
            "pass jac=False so they come from autodiff, or hessp=..."
            if backend.has_autodiff
            else "numpy_api has no autodiff: pass hessp(params, p_dict, *args) -> dict "
            "(with jac=True)"
        )
        raise InvalidOptionError(f"method {info.name!r} needs {need}: {how}")
    if (
        info.gradient
        and not jac
        and not backend.has_autodiff
        and info.name.lower() not in _FD_GRADIENT
    ):
        raise InvalidOptionError(
            f"method {info.name!r} needs an exact gradient and numpy_api has no autodiff: "
            f"pass jac=True with fun returning (loss, grad_dict)"
        )


# Options already found valid, by method and (name, type, value) of each: checking them reads
# scipy's signature defaults and judges every value (~8 us), a few percent of a small run.
_VALID_OPTIONS: dict[tuple[Any, ...], None] = {}


def _check_options(info: MethodInfo, options: dict[str, Any]) -> None:
    """:func:`check_options`, remembered for options of hashable values."""
    try:
        key = (info.name, *[(name, type(value), value) for name, value in options.items()])
        hash(key)
    except TypeError:  # an array, a list...: checked every time
        check_options(info, options)
        return
    if key not in _VALID_OPTIONS:
        check_options(info, options)  # raises for invalid ones, which are not remembered
        if len(_VALID_OPTIONS) >= 256:
            _VALID_OPTIONS.clear()
        _VALID_OPTIONS[key] = None


def _clip_into(spec: TreeSpec, x0: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    outside = (x0 < lb) | (x0 > ub)
    if not outside.any():
        return x0
    from dict_minimize._bounds import leaf_at

    warnings.warn(
        f"x0 lies outside its bounds at {int(outside.sum())} element(s), first at "
        f"{leaf_at(spec, int(np.flatnonzero(outside)[0]))}; starting from the clipped point",
        DictMinimizeWarning,
        stacklevel=4,
    )
    clipped: np.ndarray = np.clip(x0, lb, ub)
    return clipped


def minimize(
    backend: Backend[Any],
    fun: Callable[..., Any],
    x0_dict: Mapping[Any, Any],
    *,
    lb_dict: Mapping[Any, Any] | None = None,
    ub_dict: Mapping[Any, Any] | None = None,
    args: Sequence[Any] = (),
    method: str | None = "L-BFGS-B",
    tol: float | None = None,
    callback: Callable[[Any], Any] | None = None,
    options: Mapping[str, Any] | None = None,
    jac: bool = True,
    hessp: Callable[..., Any] | None = None,
    constraints: Any = (),
    full_output: bool = False,
) -> Any:
    """Implementation behind every ``*_api.minimize``; see the docstring there."""
    if method is None:  # dict-minimize 0.0.4's default: scipy's own choice
        bounded = lb_dict is not None or ub_dict is not None
        method = "SLSQP" if constraints else "L-BFGS-B" if bounded else "BFGS"
    if isinstance(method, str) and method.lower() in FRAMEWORK_METHODS:
        from dict_minimize.solvers import rso  # imported on use: the scipy path never needs it

        return rso.minimize(
            backend,
            fun,
            x0_dict,
            lb_dict=lb_dict,
            ub_dict=ub_dict,
            args=args,
            tol=tol,
            callback=callback,
            options=options,
            hessp=hessp,
            constraints=constraints,
            full_output=full_output,
        )
    info = method_info(method)
    _check_call(backend, info, fun, jac, hessp, callback)
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptionError(f"options must be a dict, got {type(options).__name__}")
    options = dict(options or {})
    _check_options(info, options)
    progress_opt = options.pop("progress", False)
    if tol is not None and not (isinstance(tol, int | float) and tol > 0):
        raise InvalidOptionError(f"tol must be a positive number, got {tol!r}")
    args = as_args(args)

    spec, leaves, device = prepare(backend, x0_dict)
    obj = Objective(backend, spec, fun, args, jac, hessp, device)
    x0 = obj.flat_x0(leaves)
    check_x0_finite(spec, x0)

    bounds = None
    flat = flat_bounds(spec, lb_dict, ub_dict, backend.to_numpy, backend.is_leaf)
    if flat is not None:
        lb, ub = flat
        if np.isfinite(lb).any() or np.isfinite(ub).any():
            if not info.bounds:
                raise InvalidBoundsError(
                    f"method {info.name!r} cannot handle bounds; use one of "
                    f"{', '.join(BOUNDED_METHODS)} (or trust-constr for a bounded Newton method)"
                )
            x0 = _clip_into(spec, x0, lb, ub)
            bounds = so.Bounds(lb, ub)

    scipy_constraints = build_constraints(constraints, info, obj)

    kwargs: dict[str, Any] = {}
    if info.gradient:
        if jac or backend.has_autodiff:
            fun_flat: Callable[..., Any] = obj.value_and_grad
            kwargs["jac"] = True
            # scipy's wrappers pass each call a copy of x of its own (the guarantee of
            # scipy >= 1.7; tests/test_isolation.py checks it for every gradient method).
            obj.x_is_fresh = True
        else:
            fun_flat, kwargs["jac"] = obj.value, "2-point"
        if obj.has_hessp:
            if info.second_order == "hessp":
                kwargs["hessp"] = obj.hessp
            elif info.second_order == "hess":
                kwargs["hess"] = obj.hess
        elif info.name == "Newton-CG":
            warnings.warn(
                "Newton-CG without Hessian-vector products: scipy approximates them by finite "
                "differences of the gradient; pass jac=False (autodiff) or hessp= for exact ones",
                DictMinimizeWarning,
                stacklevel=3,
            )
    else:
        fun_flat = obj.value

    bar = Progress(bool(progress_opt), options.get("maxiter"), info.name)
    nit = 0

    def scipy_callback(xk: np.ndarray, *_: Any) -> None:
        nonlocal nit
        nit += 1
        bar.update(obj.best_fun)
        if callback is not None:
            callback(obj.tree(np.asarray(xk)))

    def count(intermediate_result: Any) -> None:
        # By this parameter name scipy passes its intermediate result as is (no copy of x per
        # iteration): a counter that costs well under 1% of a small run.
        nonlocal nit
        nit += 1

    count.__signature__ = _COUNT_SIGNATURE  # type: ignore[attr-defined]

    # Iterations are always counted: COBYLA reports no nit, and neither does an interrupted
    # run. Only the user's callback and the bar need the point. scipy prints the callback when
    # it removes variables fixed by lb == ub with this signature: keep the other one then.
    fixed = bounds is not None and bool(np.any(bounds.lb == bounds.ub))
    needs_point = callback is not None or bar.bar is not None or fixed

    def partial(status: int, message: str) -> MinimizeResult:
        x = obj.best_x(x0)
        return _result(obj, info, x, obj.best_fun, None, nit, status, False, message, None)

    try:
        with warnings.catch_warnings():
            # scipy warns "delta_grad == 0.0" etc. on exactly-quadratic problems; not actionable.
            warnings.filterwarnings("ignore", message="delta_grad == 0.0", category=UserWarning)
            res = so.minimize(
                fun_flat,
                x0,
                method=info.name,
                bounds=bounds,
                constraints=scipy_constraints,
                tol=tol,
                callback=scipy_callback if needs_point else count,
                options=options,
                **kwargs,
            )
    except KeyboardInterrupt:
        raise OptimizationInterrupted(
            partial(STATUS_INTERRUPTED, "interrupted by KeyboardInterrupt; x is the best point")
        ) from None
    except Exception as exc:
        refusal = scipy_refusal(exc, info.name, options)
        if refusal is not None:  # raised inside scipy itself: a package error instead
            if obj.nfev > 0:
                refusal.result = partial(STATUS_OBJECTIVE_RAISED, str(refusal))  # type: ignore[attr-defined]
            raise refusal from exc
        if obj.nfev > 0:
            best = partial(STATUS_OBJECTIVE_RAISED, f"the objective raised {exc!r}")
            if not hasattr(exc, "result"):
                try:
                    exc.result = best  # type: ignore[attr-defined]
                    exc.add_note(
                        "dict_minimize: the best point found before this error is in the "
                        "exception's .result attribute"
                    )
                except AttributeError:  # exceptions with __slots__
                    pass
        raise
    finally:
        bar.close()

    x = np.asarray(res.x, dtype=np.float64)
    fun_value = float(res.fun) if np.ndim(res.fun) == 0 else math.nan
    success, status, message = bool(res.success), int(res.status), str(res.message)
    if not math.isfinite(fun_value) or not np.isfinite(x).all() or obj.was_rejected(x):
        # Never hand back a NaN point (or one whose loss or gradient was not finite) as an answer.
        x, fun_value = obj.best_x(x0), obj.best_fun
        success, status = False, STATUS_NOT_FINITE
        message = f"{message} (the final point was not finite; x is the best finite point seen)"
    elif not success and obj.nonfinite_since_best:
        # The method gave up after non-finite trials beyond its best point: say so.
        if not scipy_constraints:  # (with constraints the best loss may be infeasible)
            x, fun_value = obj.best_x(x0), obj.best_fun
        status = STATUS_NOT_FINITE
        message = (
            f"no finite progress: the loss or its gradient was not finite at "
            f"{obj.nonfinite_since_best} trial point(s) beyond the best point, which x holds "
            f"(scipy: {message})"
        )
    elif obj.nonfinite:
        message = (
            f"{message} ({obj.nonfinite} trial point(s) where the loss or its gradient was not "
            f"finite were rejected)"
        )
    if not full_output:  # only the dict: skip the gradient dict and the result object
        return obj.tree(x)
    # trust-constr keeps the objective's gradient in ``grad`` (its ``jac`` is the constraints').
    grad_field = "grad" if info.name == "trust-constr" else "jac"
    grad = getattr(res, grad_field, None) if info.gradient else None
    grad_tree = None
    if grad is not None and np.shape(grad) == (spec.size,) and np.array_equal(x, res.x):
        grad_tree = obj.tree(np.asarray(grad, dtype=np.float64))
    result = _result(
        obj,
        info,
        x,
        fun_value,
        grad_tree,
        int(getattr(res, "nit", nit)),
        status,
        success,
        message,
        res,
    )
    if full_output:
        return result
    return result.x


def _result(
    obj: Objective,
    info: MethodInfo,
    x: np.ndarray,
    fun: float,
    jac: Any,
    nit: int,
    status: int,
    success: bool,
    message: str,
    scipy_result: Any,
) -> MinimizeResult:
    fields: dict[str, Any] = {
        "x": obj.tree(x),
        "fun": fun,
        "jac": jac,
        "nit": nit,
        "nfev": obj.nfev,
        "njev": obj.njev,
        "success": success,
        "status": status,
        "message": message,
        "best_fun": obj.best_fun,
        "method": info.name,
        "scipy_result": scipy_result,
    }
    if info.second_order != "none":
        fields["nhev"] = obj.nhev
    return MinimizeResult(fields)
