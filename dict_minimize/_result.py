"""Result objects: scipy's ``OptimizeResult`` holding dicts instead of flat vectors."""

from __future__ import annotations

from typing import Any

from scipy.optimize import OptimizeResult

#: ``status`` of a run stopped by Ctrl-C (scipy uses small non-negative codes).
STATUS_INTERRUPTED = -2
#: ``status`` of a run whose objective raised; the exception carries the result.
STATUS_OBJECTIVE_RAISED = -3


class MinimizeResult(OptimizeResult):  # type: ignore[misc]
    """The outcome of :func:`minimize` with ``full_output=True``.

    Attributes
    ----------
    x : OrderedDict
        The solution, with x0's keys, nesting, shapes, dtypes and device.
    fun : float
        Objective value at ``x``.
    jac : OrderedDict or None
        Gradient at ``x`` as a dict like ``x`` (None for derivative-free methods).
    success : bool
        Whether the optimizer exited successfully.
    status : int
        scipy's termination code; ``-2`` interrupted (Ctrl-C), ``-3`` the objective raised.
    message : str
        Description of the cause of termination.
    nit, nfev, njev, nhev : int
        Iterations and evaluations of the objective, gradient and Hessian (products).
    best_fun : float
        The lowest finite objective value seen during the run (equals ``fun`` unless the
        method ends at a worse point, e.g. after a non-finite trial).
    method : str
        The method that ran.
    scipy_result : OptimizeResult
        scipy's own result on the flat float64 vector (``x`` is a NumPy array there).
    """

    def __getattr__(self, name: str) -> Any:  # give a clear error rather than KeyError
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc
