"""``least_squares`` for dicts of tensors: validation, dispatch and results.

The in-framework methods (``"lm"``, ``"trf"``) run :mod:`dict_minimize.solvers` on x0's
device; the ``"scipy-*"`` methods hand the flat float64 problem to scipy with the Jacobian
from the framework. Both share the residual wrapper (:class:`~.solvers._problem.ResidualProblem`),
the result type and the conventions of ``minimize``: a failure or Ctrl-C never loses the best
point found.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dict_minimize._bounds import flat_bounds
from dict_minimize._errors import (
    DictMinimizeWarning,
    InvalidBoundsError,
    InvalidOptionError,
    OptimizationInterrupted,
)
from dict_minimize._minimize import as_args, prepare
from dict_minimize._objective import check_x0_finite
from dict_minimize._result import (
    STATUS_INTERRUPTED,
    STATUS_NOT_FINITE,
    STATUS_OBJECTIVE_RAISED,
    LeastSquaresResult,
)
from dict_minimize._tree import TreeSpec, format_path
from dict_minimize.backends._protocol import Backend
from dict_minimize.backends.numpy import NumpyBackend
from dict_minimize.distributed._collective import resolve as resolve_collective
from dict_minimize.distributed._problem import DistributedResidualProblem
from dict_minimize.solvers import checkpoint as ckpt
from dict_minimize.solvers import scipy_least_squares
from dict_minimize.solvers._host_algebra import (
    HOST_ALGEBRA_MAX_N,
    HostAlgebra,
    device_linearization,
)
from dict_minimize.solvers._problem import Linearization, ResidualProblem
from dict_minimize.solvers.damping import MARQUARDT_DEFAULTS, NIELSEN_DEFAULTS, make_damping
from dict_minimize.solvers.levenberg_marquardt import (
    MESSAGES,
    STATUS_CALLBACK,
    LevenbergMarquardt,
    LoopState,
    Settings,
)
from dict_minimize.solvers.losses import Loss
from dict_minimize.solvers.trust_region import BoundedTrustRegion

IN_FRAMEWORK = ("lm", "trf")
METHODS = IN_FRAMEWORK + tuple(scipy_least_squares.METHODS)

#: Above this many parameters ``linear_solver="auto"`` goes matrix-free (n² no longer fits).
MATRIX_FREE_ABOVE = 10_000

_COMMON_OPTIONS = frozenset(
    {"in_axes", "batched_args", "chunk_size", "x_scale", "distributed", "devices"}
)
_OWN_OPTIONS = _COMMON_OPTIONS | {
    "damping",
    *NIELSEN_DEFAULTS,
    *MARQUARDT_DEFAULTS,
    "max_retries",
    "eigh_after",
    "linear_solver",
    "host_algebra",
    "cg_tol",
    "cg_maxiter",
    "max_iter",
    "progress",
    "geodesic",
    "checkpoint",
    "checkpoint_every",
    "resume",
}
_SCIPY_OPTIONS = _COMMON_OPTIONS | {"tr_solver", "tr_options", "verbose"}


def _tolerance(name: str, value: Any) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)) or not (
        0 <= float(value) < math.inf
    ):
        raise InvalidOptionError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _count(name: str, value: Any, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _in_axes(options: dict[str, Any], nargs: int) -> tuple[int | None, ...] | None:
    """``in_axes`` (one axis or None per arg) or ``batched_args`` (indices batched on axis 0)."""
    in_axes = options.pop("in_axes", None)
    batched = options.pop("batched_args", None)
    if in_axes is not None and batched is not None:
        raise InvalidOptionError("give options['in_axes'] or options['batched_args'], not both")
    if batched is not None:
        if isinstance(batched, int):
            batched = (batched,)
        if not isinstance(batched, Sequence) or not all(
            isinstance(i, int) and 0 <= i < nargs for i in batched
        ):
            raise InvalidOptionError(
                f"options['batched_args'] must list indices into args (there are {nargs}), "
                f"got {batched!r}"
            )
        return tuple(0 if i in batched else None for i in range(nargs))
    if in_axes is None:
        return None
    if not isinstance(in_axes, Sequence) or not all(
        a is None or (isinstance(a, int) and a >= 0) for a in in_axes
    ):
        raise InvalidOptionError(
            f"options['in_axes'] must give, per argument, its batch axis (an int) or None; "
            f"got {in_axes!r}"
        )
    return tuple(in_axes)


def _x_scale(backend: Backend[Any], spec: TreeSpec, value: Any) -> np.ndarray | str:
    """``"jac"``, or positive characteristic scales (a number or a dict like x0) as a flat
    float64 host vector."""
    if isinstance(value, str):
        if value != "jac":
            raise InvalidOptionError(
                f"options['x_scale'] must be 'jac', a number or a dict, got {value!r}"
            )
        return value
    out = np.ones(spec.size)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        out[:] = float(value)
    elif isinstance(value, Mapping):
        values = spec.match(value, "x_scale", allow_missing=True, is_leaf=backend.is_leaf)
        for leaf, v in zip(spec.leaves, values):
            if v is None:
                continue
            try:
                arr = np.asarray(backend.to_numpy(v) if backend.is_leaf(v) else v, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidOptionError(
                    f"{format_path(leaf.path, 'x_scale')} is {v!r}; give positive numbers"
                ) from None
            if arr.shape not in ((), leaf.shape):
                raise InvalidOptionError(
                    f"{format_path(leaf.path, 'x_scale')} has shape {arr.shape} but "
                    f"{format_path(leaf.path)} has shape {leaf.shape}"
                )
            out[leaf.offset : leaf.offset + leaf.size] = np.broadcast_to(arr, leaf.shape).ravel()
    else:
        raise InvalidOptionError(
            f"options['x_scale'] must be 'jac', a positive number or a dict like x0, got "
            f"{type(value).__name__}"
        )
    if not (np.isfinite(out).all() and (out > 0).all()):
        raise InvalidOptionError("options['x_scale'] must be positive and finite everywhere")
    return out


def _host_algebra(
    value: Any, backend: Backend[Any], spec: TreeSpec, device: Any, dtype: Any, in_framework: bool
) -> bool:
    """Whether the loop runs its step algebra in NumPy (see :mod:`.solvers._host_algebra`):
    ``options["host_algebra"]`` True or False, or "auto" (the default): for a dense problem
    of at most ``HOST_ALGEBRA_MAX_N`` parameters on the CPU, on a backend whose eager
    operations cost more than NumPy's (``Backend.small_algebra_on_host``)."""
    if value not in ("auto", True, False):
        raise InvalidOptionError(
            f"options['host_algebra'] must be 'auto', True or False, got {value!r}"
        )
    if value is True and not in_framework:
        raise InvalidOptionError(
            "options['host_algebra']=True needs method 'lm' or 'trf' with the dense JᵀWJ "
            "(not the matrix-free mode, not a distributed run)"
        )
    if value == "auto":
        return (
            in_framework
            and backend.small_algebra_on_host
            and spec.size <= HOST_ALGEBRA_MAX_N
            and backend.dtype_name(dtype) == "float64"
            and backend.host_leaves(spec, device) is not None  # CPU tensors NumPy can view
        )
    return bool(value) and backend.name != "numpy"


def _strictly_inside(spec: TreeSpec, x0: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Clip x0 into the box (with a warning) and off the bounds, as an interior method needs."""
    outside = (x0 < lb) | (x0 > ub)
    if outside.any():
        from dict_minimize._bounds import leaf_at

        warnings.warn(
            f"x0 lies outside its bounds at {int(outside.sum())} element(s), first at "
            f"{leaf_at(spec, int(np.flatnonzero(outside)[0]))}; starting from the clipped point",
            DictMinimizeWarning,
            stacklevel=4,
        )
    x = np.clip(x0, lb, ub)
    step = 1e-10 * np.maximum(1.0, np.abs(x))
    with np.errstate(invalid="ignore"):  # the midpoint of a half-infinite box is NaN, unused
        middle = 0.5 * (lb + ub)
        x = np.where((x <= lb) & (lb < ub), np.fmin(lb + step, middle), x)
        x = np.where((x >= ub) & (lb < ub), np.fmax(ub - step, middle), x)
    return np.asarray(x)


def _wants_result(callback: Callable[..., Any]) -> bool:
    """scipy's convention: a single parameter named ``intermediate_result`` gets the result."""
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
    return "intermediate_result" in params


def least_squares(
    backend: Backend[Any],
    residual_fn: Callable[..., Any],
    x0_dict: Mapping[Any, Any],
    *,
    args: Sequence[Any] = (),
    lb_dict: Mapping[Any, Any] | None = None,
    ub_dict: Mapping[Any, Any] | None = None,
    method: str = "lm",
    loss: str = "linear",
    f_scale: float = 1.0,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    max_nfev: int | None = None,
    callback: Callable[[Any], Any] | None = None,
    options: Mapping[str, Any] | None = None,
    checkpoint_extra: ckpt.CheckpointExtra | None = None,
) -> LeastSquaresResult:
    """Implementation behind every ``*_api.least_squares``; see the docstring there.

    ``checkpoint_extra`` (not public) adds a caller's state to each checkpoint and restores
    it on resume: ``fit`` saves its early-stopping state there.
    """
    if not callable(residual_fn):
        raise InvalidOptionError(f"residual_fn must be callable, got {type(residual_fn).__name__}")
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise InvalidOptionError(
            f"unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}"
        )
    method = method.lower()
    tols = [_tolerance(k, v) for k, v in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol))]
    if max(tols) < np.finfo(np.float64).eps:
        raise InvalidOptionError("at least one of ftol, xtol, gtol must exceed machine epsilon")
    max_nfev = _count("max_nfev", max_nfev)
    if callback is not None and not callable(callback):
        raise InvalidOptionError(
            "callback must be callable: callback(params) or callback(intermediate_result)"
        )
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptionError(f"options must be a dict, got {type(options).__name__}")
    opts = dict(options or {})
    known = _SCIPY_OPTIONS if method.startswith("scipy-") else _OWN_OPTIONS
    unknown = sorted(set(opts) - known, key=str)
    if unknown:
        raise InvalidOptionError(
            f"method {method!r} has no option(s) {', '.join(map(repr, unknown))}; its options "
            f"are: {', '.join(sorted(known))}"
        )
    args = as_args(args)
    if opts.get("devices") is not None:  # samples sharded over devices: see distributed/
        from dict_minimize.distributed._sharding import least_squares_on_devices

        return least_squares_on_devices(
            least_squares,
            backend,
            residual_fn,
            x0_dict,
            args=args,
            in_axes=_in_axes(opts, len(args)),
            lb_dict=lb_dict,
            ub_dict=ub_dict,
            method=method,
            loss=loss,
            f_scale=f_scale,
            ftol=ftol,
            xtol=xtol,
            gtol=gtol,
            max_nfev=max_nfev,
            callback=callback,
            options=opts,
            checkpoint_extra=checkpoint_extra,
        )
    opts.pop("devices", None)
    loss_obj = Loss(backend, loss, f_scale)

    spec, leaves, device = prepare(backend, x0_dict)
    dtype = backend.flat_dtype(device)
    x0 = np.asarray(backend.to_numpy(backend.ravel(leaves, spec, dtype)), dtype=np.float64)
    check_x0_finite(spec, x0)
    bounds = flat_bounds(spec, lb_dict, ub_dict, backend.to_numpy, backend.is_leaf)
    if bounds is not None and not (np.isfinite(bounds[0]).any() or np.isfinite(bounds[1]).any()):
        bounds = None
    if bounds is not None:
        if method in ("lm", "scipy-lm"):
            raise InvalidBoundsError(
                f"method {method!r} does not handle bounds; use method='trf' (in the "
                f"framework) or 'scipy-trf' / 'scipy-dogbox'"
            )
        x0 = _strictly_inside(spec, x0, *bounds)

    in_axes = _in_axes(opts, len(args))
    collective = resolve_collective(
        backend,
        opts.pop("distributed", None),
        per_sample=in_axes is not None,
        method=method,
        device=device,
        in_framework=method in IN_FRAMEWORK,
    )
    chunk_size = _count("options['chunk_size']", opts.pop("chunk_size", None))
    x_scale = _x_scale(backend, spec, opts.pop("x_scale", "jac"))
    n = spec.size
    checkpoint_path, every, resume_path = _checkpoint_options(opts)
    linear_solver = opts.pop("linear_solver", "auto")
    if linear_solver not in ("auto", "cholesky", "cg"):
        raise InvalidOptionError(
            f"options['linear_solver'] must be 'auto', 'cholesky' or 'cg', got {linear_solver!r}"
        )
    matrix_free = linear_solver == "cg" or (
        linear_solver == "auto" and n > MATRIX_FREE_ABOVE and method in IN_FRAMEWORK
    )
    if matrix_free:
        if method not in IN_FRAMEWORK:
            raise InvalidOptionError(
                "the scipy-* methods need the whole Jacobian; use "
                "method='lm' or 'trf' for the matrix-free mode"
            )
        if not backend.has_autodiff:
            raise InvalidOptionError(
                f"the matrix-free mode needs Jacobian-vector products, which {backend.name} "
                f"(no autodiff) cannot give; use options['linear_solver']='cholesky'"
            )
        if in_axes is None and isinstance(x_scale, str) and "x_scale" in (options or {}):
            raise InvalidOptionError(
                "x_scale='jac' needs the column norms of J, which the matrix-free mode has only "
                "with batched args (options['in_axes']); give a number or a dict of scales"
            )
        if in_axes is None and isinstance(x_scale, str):
            x_scale = np.ones(n)  # no column norms without J: Levenberg's D = I

    host_algebra = _host_algebra(
        opts.pop("host_algebra", "auto"),
        backend,
        spec,
        device,
        dtype,
        in_framework=method in IN_FRAMEWORK and collective is None and not matrix_free,
    )
    problem = (
        ResidualProblem(
            backend, spec, residual_fn, args, device, loss_obj, in_axes, chunk_size, matrix_free
        )
        if collective is None
        else DistributedResidualProblem(
            collective,
            backend,
            spec,
            residual_fn,
            args,
            device,
            loss_obj,
            in_axes,
            chunk_size,
            matrix_free,
        )
    )

    def to_device(array: Any) -> Any:
        return backend.from_numpy(np.asarray(array, np.float64), device, dtype)

    # What the in-framework loop runs on: the framework, or NumPy for the host algebra.
    loop_problem: Any = problem
    loop_to_device = to_device
    if host_algebra:
        loop_problem = HostAlgebra(problem, NumpyBackend())

        def loop_to_device(array: Any) -> Any:
            return np.array(array, dtype=np.float64)

    def from_loop(flat: Any) -> Any:
        """A flat point of the loop as x0's framework tensor."""
        return to_device(flat) if host_algebra else flat

    signature = {
        "kind": "least_squares" if checkpoint_extra is None else checkpoint_extra.kind,
        "method": method,
        "loss": loss,
        "f_scale": float(f_scale),
        "damping": str(opts.get("damping", "nielsen")).lower(),
        "x_scale": "jac" if isinstance(x_scale, str) else "fixed",
        "flat_dtype": backend.dtype_name(dtype),
        "leaves": [
            [format_path(leaf.path), list(leaf.shape), backend.dtype_name(leaf.dtype)]
            for leaf in spec.leaves
        ],
        "n": n,
    }
    saved = None
    if resume_path is not None:  # never a silent fresh start: any problem raises
        saved = ckpt.read(resume_path)
        ckpt.check_problem(saved, signature, resume_path)
        x0 = ckpt.require_array(saved, "x", (n,), resume_path)
    x0_flat = to_device(x0)
    _, cost0_t = problem.start(x0_flat)
    problem.nfev = 1
    cost0 = float(backend.host(cost0_t)[0])
    # A data-parallel run's checkpoint (written by rank 0) holds every rank's residual count.
    m_all = problem.m_total if isinstance(problem, DistributedResidualProblem) else problem.m
    signature["m"] = m_all
    if saved is not None and resume_path is not None:
        ckpt.check_problem(saved, {"m": m_all}, resume_path)
    if max_nfev is None:
        max_nfev = 100 * n

    wants_result = callback is not None and _wants_result(callback)

    def tree(flat: Any) -> Any:
        return spec.unflatten(backend.unravel(flat, spec))

    def user_callback(x_flat: Any, cost: float, nit: int, extra: dict[str, Any]) -> bool:
        if callback is None:
            return False
        x_tree = tree(x_flat)
        arg = LeastSquaresResult(x=x_tree, cost=cost, nit=nit, **extra) if wants_result else x_tree
        try:
            return bool(callback(arg))
        except StopIteration:
            return True

    if isinstance(problem, DistributedResidualProblem) and callback is not None:
        user_callback = problem.agreeing(user_callback)  # every rank stops together

    if method in IN_FRAMEWORK:
        solver = _in_framework(
            method,
            loop_problem,
            opts,
            bounds,
            loop_to_device,
            x_scale,
            tols,
            max_nfev,
            None if callback is None else lambda x, *rest: user_callback(from_loop(x), *rest),
        )
        if collective is not None and collective.rank != 0:
            solver.settings.progress = False  # one bar, on rank 0
        if checkpoint_path is not None:
            solver.settings.checkpoint = ckpt.Checkpointer(
                checkpoint_path,
                every,
                signature,
                checkpoint_extra,
                is_writer=collective is None or collective.rank == 0,
            )
    else:
        solver = None
    resume_state = None
    if saved is not None and solver is not None and resume_path is not None:
        resume_state = LoopState.load(
            saved, resume_path, n, loop_to_device, solver.settings.damping, loop_problem
        )
        if checkpoint_extra is not None:
            checkpoint_extra.load(saved.extra, saved.extra_arrays())

    best = scipy_least_squares.BestPoint(x0, cost0)  # the scipy-* methods' best point

    def partial(status: int, message: str) -> LeastSquaresResult:
        if solver is not None and solver.x is not None:
            x_best, cost = from_loop(solver.x), solver.cost
        else:
            x_best, cost = to_device(best.x), best.cost
        return _result(
            backend,
            spec,
            method,
            x_best,
            cost,
            None,
            math.nan,
            status,
            False,
            message,
            problem,
            solver.nit if solver is not None else 0,
            None,
            solver.state.history if solver is not None and solver.x is not None else _no_history(),
            None,
            None,
        )

    try:
        if solver is not None:
            out = solver.run(loop_to_device(x0) if host_algebra else x0_flat, cost0, resume_state)
            result = _result(
                backend,
                spec,
                method,
                from_loop(out.x),
                out.cost,
                device_linearization(out.lin),
                out.optimality,
                out.status,
                out.status > 0,
                out.message,
                problem,
                out.nit,
                bounds,
                out.history,
                None,
                xtol,
            )
            if collective is not None:
                result["distributed"] = collective.stats()
            return result
        return _scipy(
            backend,
            spec,
            method,
            problem,
            x0,
            bounds,
            loss,
            f_scale,
            tols,
            max_nfev,
            x_scale,
            opts,
            user_callback if callback is not None else None,
            to_device,
            best,
        )
    except KeyboardInterrupt:
        raise OptimizationInterrupted(
            partial(STATUS_INTERRUPTED, "interrupted by KeyboardInterrupt; x is the best point")
        ) from None
    except Exception as exc:
        if not hasattr(exc, "result"):
            try:
                exc.result = partial(  # type: ignore[attr-defined]
                    STATUS_OBJECTIVE_RAISED, f"the run stopped on {exc!r}"
                )
                exc.add_note(
                    "dict_minimize: the best point found before this error is in the "
                    "exception's .result attribute"
                )
            except AttributeError:  # exceptions with __slots__
                pass
        raise


def _checkpoint_options(opts: dict[str, Any]) -> tuple[str | None, int, str | None]:
    """``checkpoint``, ``checkpoint_every`` and ``resume``, validated (and removed)."""
    path = opts.pop("checkpoint", None)
    every = opts.pop("checkpoint_every", None)
    resume = opts.pop("resume", None)
    if path is not None:
        path = ckpt.check_path("options['checkpoint']", path, must_exist=False)
    elif every is not None:
        raise InvalidOptionError(
            "options['checkpoint_every'] needs options['checkpoint'], the file to write"
        )
    if resume is not None:
        resume = ckpt.check_path("options['resume']", resume, must_exist=True)
    return (
        path,
        ckpt.check_every("options['checkpoint_every']", 1 if every is None else every),
        resume,
    )


def _in_framework(
    method: str,
    problem: ResidualProblem,
    opts: dict[str, Any],
    bounds: tuple[np.ndarray, np.ndarray] | None,
    to_device: Callable[[Any], Any],
    x_scale: np.ndarray | str,
    tols: list[float],
    max_nfev: int,
    callback: Callable[..., bool] | None,
) -> LevenbergMarquardt:
    damping_name = opts.pop("damping", "nielsen")
    if not isinstance(damping_name, str):
        raise InvalidOptionError(f"options['damping'] must be a string, got {damping_name!r}")
    damping = make_damping(damping_name.lower(), opts)
    stray = sorted(set(opts) & (set(NIELSEN_DEFAULTS) | set(MARQUARDT_DEFAULTS)))
    if stray:
        raise InvalidOptionError(
            f"option(s) {', '.join(map(repr, stray))} belong to the other damping rule; "
            f"options['damping'] is {damping_name!r}"
        )
    eigh_after = opts.pop("eigh_after", 2)
    if eigh_after is not None and (not isinstance(eigh_after, int) or eigh_after < 0):
        raise InvalidOptionError(
            f"options['eigh_after'] must be an int >= 0 or None, got {eigh_after!r}"
        )
    cg_tol = opts.pop("cg_tol", 1e-2)
    if not (isinstance(cg_tol, numbers.Real) and 0 < float(cg_tol) < 1):
        raise InvalidOptionError(f"options['cg_tol'] must be in (0, 1), got {cg_tol!r}")
    settings = Settings(
        ftol=tols[0],
        xtol=tols[1],
        gtol=tols[2],
        max_nfev=max_nfev,
        damping=damping,
        x_scale=x_scale if isinstance(x_scale, str) else to_device(x_scale),
        max_iter=_count("options['max_iter']", opts.pop("max_iter", None)),
        max_retries=_count("options['max_retries']", opts.pop("max_retries", 20), False) or 20,
        eigh_after=eigh_after,
        cg_tol=float(cg_tol),
        cg_maxiter=_count("options['cg_maxiter']", opts.pop("cg_maxiter", 100), False) or 100,
        progress=bool(opts.pop("progress", False)),
        geodesic=bool(opts.pop("geodesic", False)),
    )
    if callback is not None:

        def loop_callback(state: dict[str, Any]) -> bool:
            extra = {k: state[k] for k in ("optimality", "nfev")}
            extra["damping"] = state["mu"]
            return callback(state["x"], state["cost"], state["nit"], extra)

        settings.callback = loop_callback
    if method == "trf" and bounds is not None:
        return BoundedTrustRegion(problem, settings, to_device(bounds[0]), to_device(bounds[1]))
    return LevenbergMarquardt(problem, settings)


def _scipy(
    backend: Backend[Any],
    spec: TreeSpec,
    method: str,
    problem: ResidualProblem,
    x0: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    loss: str,
    f_scale: float,
    tols: list[float],
    max_nfev: int,
    x_scale: np.ndarray | str,
    opts: dict[str, Any],
    callback: Callable[..., bool] | None,
    to_device: Callable[[Any], Any],
    best: scipy_least_squares.BestPoint,
) -> LeastSquaresResult:
    if method == "scipy-lm":
        if loss != "linear":
            raise InvalidOptionError(
                "method 'scipy-lm' (MINPACK) supports only loss='linear'; "
                "use 'lm', 'trf' or 'scipy-trf' for robust losses"
            )
        if problem.m < problem.n:
            raise InvalidOptionError(
                f"method 'scipy-lm' needs at least as many residuals as parameters "
                f"({problem.m} < {problem.n}); use 'lm' or 'scipy-trf'"
            )
        if callback is not None:
            raise InvalidOptionError(
                "scipy's MINPACK 'lm' takes no callback; use 'scipy-trf' or the in-framework 'lm'"
            )
    host_cb = None
    if callback is not None:

        def host_cb(x: np.ndarray, cost: float, nit: int) -> bool:
            return callback(to_device(x), cost, nit, {"nfev": problem.nfev})

    nfev_before = problem.nfev
    res = scipy_least_squares.run(
        problem,
        method,
        x0,
        bounds,
        loss,
        f_scale,
        tols[0],
        tols[1],
        tols[2],
        max_nfev,
        x_scale,
        opts,
        host_cb,
        best,
    )
    if res is None:  # the Jacobian was not finite at an accepted point: scipy cannot go on
        return _result(
            backend,
            spec,
            method,
            to_device(best.x),
            best.cost,
            None,
            math.nan,
            STATUS_NOT_FINITE,
            False,
            "The Jacobian of residual_fn is not finite at an accepted point, from which "
            "scipy's solver cannot step; x is the best finite point (no finite progress).",
            problem,
            0,
            bounds,
            _no_history(),
            None,
            tols[1],
        )
    problem.nfev = nfev_before + int(res.nfev)
    x_flat = to_device(res.x)
    lin: Linearization | None = Linearization(
        to_device(res.fun), None, to_device(res.grad), None, None, None, None
    )
    status = int(res.status)
    message = str(res.message) if status != STATUS_CALLBACK else MESSAGES[STATUS_CALLBACK]
    cost, success = float(res.cost), bool(res.success)
    if not (math.isfinite(cost) and np.isfinite(res.x).all()) and best.x is not None:
        # MINPACK can end on a non-finite point: never hand it back as the answer.
        x_flat, cost, lin, success = to_device(best.x), best.cost, None, False
        status = STATUS_NOT_FINITE
        message = f"{message} (the final point was not finite; x is the best finite point)"
    out = _result(
        backend,
        spec,
        method,
        x_flat,
        cost,
        lin,
        float(res.optimality),
        status,
        success,
        message,
        problem,
        int(getattr(res, "nit", 0) or 0),
        bounds,
        _no_history(),
        res,
        tols[1],
    )
    out["nfev"], out["njev"] = int(res.nfev), int(res.njev or 0)
    return out


def _no_history() -> dict[str, list[float]]:
    # Empty lists, not an empty dict: scipy's OptimizeResult repr fails on an empty mapping.
    return {"cost": [], "damping": [], "nfev": []}


def _result(
    backend: Backend[Any],
    spec: TreeSpec,
    method: str,
    x_flat: Any,
    cost: float,
    lin: Linearization | None,
    optimality: float,
    status: int,
    success: bool,
    message: str,
    problem: ResidualProblem,
    nit: int,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    history: dict[str, list[float]],
    scipy_result: Any,
    xtol: float | None,
) -> LeastSquaresResult:
    def tree(flat: Any) -> Any:
        return spec.unflatten(backend.unravel(flat, spec))

    active = None
    if bounds is not None:
        x = np.asarray(backend.to_numpy(x_flat), dtype=np.float64)
        lb, ub = bounds
        rtol = xtol if xtol else 1e-10
        mask = np.zeros(spec.size)
        with np.errstate(invalid="ignore"):  # inf - inf where a bound is absent
            mask[np.isfinite(lb) & ((x - lb) <= rtol * np.maximum(1.0, np.abs(lb)))] = -1
            mask[np.isfinite(ub) & ((ub - x) <= rtol * np.maximum(1.0, np.abs(ub)))] = 1
        active = spec.unflatten(
            [
                mask[leaf.offset : leaf.offset + leaf.size].reshape(leaf.shape).astype(int)
                for leaf in spec.leaves
            ]
        )
    return LeastSquaresResult(
        x=tree(x_flat),
        cost=cost,
        fun=None if lin is None else lin.r,
        grad=None if lin is None or lin.g is None else tree(lin.g),
        optimality=optimality,
        active_mask=active,
        nfev=problem.nfev,
        njev=problem.njev,
        nit=nit,
        status=status,
        success=success,
        message=message,
        history=history,
        method=method,
        scipy_result=scipy_result,
    )
