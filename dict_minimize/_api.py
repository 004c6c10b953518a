"""Binds a backend to the public functions; one docstring source for every framework."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dict_minimize import _minimize
from dict_minimize.backends._protocol import Backend

_MINIMIZE_DOC = """Minimize a scalar function of a dict of {framework} tensors with scipy.optimize.

    The dict is flattened to one float64 vector for ``scipy.optimize.minimize``; every
    evaluation calls ``fun`` in x0's dtypes and on x0's device, with one transfer each way.
    Call-compatible with dict-minimize 0.0.4.

    Parameters
    ----------
    fun : callable
        ``fun(params, *args)``, where ``params`` is a dict like ``x0_dict``. With ``jac=True``
        (the default, as in dict-minimize) it returns ``(loss, grad_dict)``; with
        ``jac=False`` it returns only the loss and {autodiff}.
    x0_dict : Mapping
        Initial point: an ``OrderedDict`` (or dict, possibly nested) of floating-point
        tensors (float16, bfloat16, float32 or float64). It is never modified.
    lb_dict, ub_dict : Mapping, optional
        Bounds for some or all keys: a Python number (broadcast), a tensor of the key's shape,
        or ``±inf`` for none. Only methods that support bounds accept them: Nelder-Mead, Powell,
        L-BFGS-B, TNC, COBYLA, COBYQA, SLSQP and trust-constr (the bounded Newton-type choice).
    args : tuple
        Extra arguments passed to ``fun``, ``hessp`` and constraint functions.
    method : str
        Any method of ``scipy.optimize.minimize`` (case-insensitive); default ``"L-BFGS-B"``.
    tol : float, optional
        Tolerance for termination, as in scipy.
    callback : callable, optional
        ``callback(params)`` after each iteration, with ``params`` a dict like ``x0_dict``.
    options : dict, optional
        scipy's options for the method (``maxiter``, ``disp``, ...); an unknown option is an
        error. ``"progress": True`` shows a tqdm bar with the best loss so far.
    jac : bool
        Whether ``fun`` returns its own gradient (see ``fun``).
    hessp : callable, optional
        ``hessp(params, p_dict, *args) -> dict``, the Hessian of the loss times ``p_dict``.
        Second-order methods (Newton-CG, trust-ncg, trust-krylov, trust-constr, and via one
        product per column dogleg and trust-exact) use it; {hessp_default}
    constraints : dict or sequence, optional
        ``{{"type": "eq" | "ineq", "fun": c}}`` with ``c(params, *args)`` returning a tensor
        (``== 0`` or ``>= 0``); Jacobians {constraint_jac}. scipy's ``LinearConstraint`` and
        ``NonlinearConstraint`` on the flat vector pass through. For SLSQP, trust-constr,
        COBYLA and COBYQA.
    full_output : bool
        Return a :class:`~dict_minimize.MinimizeResult` instead of only the solution dict.

    Returns
    -------
    OrderedDict or MinimizeResult
        The solution, with x0's keys, order, nesting, shapes, dtypes and device; or, with
        ``full_output=True``, the result object (``x``, ``fun``, ``jac``, ``nit``, ``nfev``,
        ``njev``, ``nhev``, ``success``, ``status``, ``message``).

    Raises
    ------
    dict_minimize.DictMinimizeError
        Subclasses of ``ValueError``/``TypeError`` naming the offending key, shape or option.
    dict_minimize.OptimizationInterrupted
        On Ctrl-C; a ``KeyboardInterrupt`` whose ``.result`` holds the best point so far. An
        exception raised by ``fun`` propagates with the best result so far in ``.result``.

    Examples
    --------
{example}
    """


def bind_minimize(
    backend: Backend[Any], *, autodiff: str, hessp_default: str, constraint_jac: str, example: str
) -> Callable[..., Any]:
    """Build the public ``minimize`` of one framework."""

    def minimize(
        fun: Callable[..., Any],
        x0_dict: Mapping[Any, Any],
        *,
        lb_dict: Mapping[Any, Any] | None = None,
        ub_dict: Mapping[Any, Any] | None = None,
        args: Sequence[Any] = (),
        method: str = "L-BFGS-B",
        tol: float | None = None,
        callback: Callable[[Any], Any] | None = None,
        options: Mapping[str, Any] | None = None,
        jac: bool = True,
        hessp: Callable[..., Any] | None = None,
        constraints: Any = (),
        full_output: bool = False,
    ) -> Any:
        return _minimize.minimize(
            backend,
            fun,
            x0_dict,
            lb_dict=lb_dict,
            ub_dict=ub_dict,
            args=args,
            method=method,
            tol=tol,
            callback=callback,
            options=options,
            jac=jac,
            hessp=hessp,
            constraints=constraints,
            full_output=full_output,
        )

    minimize.__doc__ = _MINIMIZE_DOC.format(
        framework=backend.name,
        autodiff=autodiff,
        hessp_default=hessp_default,
        constraint_jac=constraint_jac,
        example=example,
    )
    minimize.__qualname__ = "minimize"
    return minimize
