"""Levenberg-Marquardt in the framework: the iteration loop shared by ``"lm"`` and ``"trf"``.

Each iteration linearizes once (``JᵀWJ``, ``Jᵀ(ρ'r)``; see :mod:`._problem`), then tries steps
``(Â + μI) ŝ = -ĝ`` in scaled variables ``x = x_k + d·ŝ`` until one reduces the cost or a
stopping rule fires; rejected trials reuse the linearization (see :mod:`._linear`). With
``x_scale="jac"`` the scaling is Marquardt's ``D = diag(JᵀWJ)`` (kept as a running maximum, as
MINPACK and scipy do), which makes the iteration invariant to the units of each parameter;
``x_scale=1`` gives Levenberg's ``D = I`` (MATLAB ``trainlm``).

The bounded method (:mod:`.trust_region`) subclasses :class:`LevenbergMarquardt` and overrides
only the scaling and the choice of step. Three small transfers reach the host per trial at
most (the model's scalars, the step's norm, the trial's cost), so the loop suits a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dict_minimize._errors import CheckpointError, ObjectiveError
from dict_minimize._progress import Progress
from dict_minimize._result import STATUS_NOT_FINITE
from dict_minimize.backends._protocol import Backend
from dict_minimize.solvers import checkpoint as ckpt
from dict_minimize.solvers._linear import CGSteps, DenseSteps
from dict_minimize.solvers._problem import Linearization, ResidualProblem
from dict_minimize.solvers.damping import DampingRule

#: Termination statuses, as scipy.optimize.least_squares numbers them (plus -4).
STATUS_MAX_NFEV = 0
STATUS_GTOL = 1
STATUS_FTOL = 2
STATUS_XTOL = 3
STATUS_FTOL_XTOL = 4
STATUS_CALLBACK = -2
STATUS_DAMPING_LIMIT = -4
# STATUS_NOT_FINITE = -5 (shared with minimize): every trial point had non-finite residuals
# (or Jacobian) up to the damping limit or down to steps below xtol.

_EPS = float(np.finfo(np.float64).eps)

MESSAGES = {
    STATUS_MAX_NFEV: "The maximum number of function evaluations is exceeded.",
    STATUS_GTOL: "`gtol` termination condition is satisfied.",
    STATUS_FTOL: "`ftol` termination condition is satisfied.",
    STATUS_XTOL: "`xtol` termination condition is satisfied.",
    STATUS_FTOL_XTOL: "Both `ftol` and `xtol` termination conditions are satisfied.",
    STATUS_CALLBACK: "Stopped because `callback` raised StopIteration or returned True.",
    STATUS_DAMPING_LIMIT: "The damping reached its limit (mu_max or max_retries) without "
    "reducing the cost; no further progress is possible from this point.",
    STATUS_NOT_FINITE: "The residuals or the Jacobian were not finite at every trial point, "
    "down to the damping limit or to steps below xtol; x is the best finite point and no "
    "finite progress is possible from it.",
}


@dataclass
class Settings:
    """Everything that configures one run of the loop (validated by the caller)."""

    ftol: float
    xtol: float
    gtol: float
    max_nfev: int
    damping: DampingRule
    x_scale: Any = "jac"  # "jac" or a device tensor of positive characteristic scales
    max_iter: int | None = None
    max_retries: int = 20
    eigh_after: int | None = 2
    cg_tol: float = 1e-2
    cg_maxiter: int = 100
    callback: Callable[[dict[str, Any]], bool] | None = None
    progress: bool = False
    geodesic: bool = False
    geodesic_alpha: float = 0.75
    checkpoint: ckpt.Checkpointer | None = None


def _new_history() -> dict[str, list[float]]:
    return {"cost": [], "damping": [], "nfev": []}


@dataclass
class LoopState:
    """What the loop carries from one iteration to the next: exactly what a checkpoint holds
    (with the damping rule's state and the problem's counters).

    The loop saves it after an accepted step, before the new point is linearized; a resumed
    run linearizes that point again, which gives the same bits, and goes on as the saved run
    would have.
    """

    x: Any  # the current point (the best so far), a flat device tensor
    nit: int = 0
    started: bool = False  # the damping was initialized from the first model
    pending: int | None = None  # a stopping rule that fired on the last accepted step
    d_run: Any = None  # running max of diag(JᵀWJ) (x_scale="jac"), a device tensor
    previous_x: Any = None  # the point before the last accepted step (to step back to)
    history: dict[str, list[float]] = field(default_factory=_new_history)

    def save(
        self, backend: Backend[Any], damping: DampingRule, problem: ResidualProblem
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able scalars and host arrays for :class:`~.checkpoint.Checkpointer`."""
        scalars = {
            "nit": self.nit,
            "started": self.started,
            "pending": self.pending,
            "nfev": problem.nfev,
            "njev": problem.njev,
            "damping": damping.state(),
        }
        arrays = {
            "x": backend.to_numpy(self.x),
            **{f"history.{k}": ckpt.floats(v) for k, v in self.history.items()},
        }
        if self.d_run is not None:
            arrays["d_run"] = backend.to_numpy(self.d_run)
        if self.previous_x is not None:
            arrays["previous_x"] = backend.to_numpy(self.previous_x)
        return scalars, arrays

    @classmethod
    def load(
        cls,
        checkpoint: ckpt.Checkpoint,
        path: ckpt.PathLike,
        n: int,
        to_device: Callable[[np.ndarray], Any],
        damping: DampingRule,
        problem: ResidualProblem,
    ) -> LoopState:
        """The state saved by :meth:`save` (checked), restoring damping and counters too."""
        s = checkpoint.state
        try:
            nit, nfev, njev = (int(s[k]) for k in ("nit", "nfev", "njev"))
            pending = None if s["pending"] is None else int(s["pending"])
            started = bool(s["started"])
            damping.load_state(s["damping"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has an invalid loop state: {exc!r}"
            ) from None
        arrays = checkpoint.arrays

        def optional(name: str) -> Any:
            if name not in arrays:
                return None
            return to_device(ckpt.require_array(checkpoint, name, (n,), path))

        history = {k: ckpt.as_list(arrays.get(f"history.{k}")) for k in _new_history()}
        problem.nfev, problem.njev = nfev, njev
        return cls(
            to_device(ckpt.require_array(checkpoint, "x", (n,), path)),
            nit,
            started,
            pending,
            optional("d_run"),
            optional("previous_x"),
            history,
        )


@dataclass
class Model:
    """The scaled Gauss-Newton model at the current point: ``q(ŝ) = ĝᵀŝ + ½ ŝᵀÂŝ``."""

    lin: Linearization
    sigma: Any  # characteristic scale of each variable (1/sqrt(D) for x_scale="jac")
    d: Any  # x = x_k + d·ŝ: sigma times the bounded method's affine scaling
    g_hat: Any
    a_hat: Any  # dense Â, or None when matrix-free
    diag_hat: Any
    extra_diag: Any  # the bounded method's diag(g·dv·σ²) term, or None
    backend: Backend[Any]
    optimality: float = math.nan  # host copy, set once the model's scalars are fetched

    def apply(self, v: Any) -> Any:
        """``Â v``."""
        b = self.backend
        if self.a_hat is not None:
            return b.matmul(self.a_hat, v)
        matvec = self.lin.matvec
        if matvec is None:
            raise RuntimeError("a model without JᵀWJ needs the matrix-free products")
        out = self.d * matvec(self.d * v)
        return out if self.extra_diag is None else out + self.extra_diag * v

    def quad(self, s: Any) -> Any:
        """``ĝᵀs + ½ sᵀÂs``, a device scalar (negative for a descent step)."""
        b = self.backend
        return b.dot(self.g_hat, s) + 0.5 * b.dot(s, self.apply(s))


@dataclass
class Outcome:
    """How a run ended; the caller turns it into a LeastSquaresResult."""

    x: Any
    lin: Linearization
    cost: float
    optimality: float
    status: int
    message: str
    nit: int
    scale: Any = None
    history: dict[str, list[float]] = field(default_factory=dict)


class LevenbergMarquardt:
    """The unbounded method (``method="lm"``).

    Parameters
    ----------
    problem : ResidualProblem
        Evaluations and linearizations of the residual function.
    settings : Settings
        Tolerances, damping rule, scaling and linear-solver choices.
    """

    def __init__(self, problem: ResidualProblem, settings: Settings) -> None:
        self.problem = problem
        self.backend = problem.backend
        self.settings = settings
        self._eye: Any = None
        self.state = LoopState(None)
        # The current (always the best) point, readable if the run is cut short.
        self.x: Any = None
        self.cost = math.nan
        self.nit = 0

    # -- hooks of the bounded method ---------------------------------------------------------
    def affine_scaling(self, x: Any, g: Any) -> tuple[Any, Any] | None:
        """Coleman-Li ``(v, dv)`` at ``x``; None without bounds."""
        return None

    def select_step(self, x: Any, p: Any, s: Any, model: Model) -> tuple[Any, Any]:
        """The step actually taken from ``x`` (and its scaled form) given the LM step."""
        return p, s

    def project(self, x: Any) -> Any:
        """Keep a trial point inside the bounds (nothing to do without bounds)."""
        return x

    def gtol_measure(self, model: Model, aff: tuple[Any, Any] | None) -> tuple[Any, bool]:
        """(device scalar, is_cosine): MINPACK's cosine measure without bounds."""
        b = self.backend
        lin = model.lin
        if lin.diag is None:  # matrix-free without column norms: scipy trf's ‖g‖∞
            return b.amax(b.abs(lin.g)), False
        col = b.sqrt(b.where(lin.diag > 0, lin.diag, 1.0))
        return b.amax(b.abs(lin.g) / col), True

    def optimality(self, model: Model, aff: tuple[Any, Any] | None) -> Any:
        """scipy's first-order optimality: ``‖g‖∞`` (``‖v·g‖∞`` with bounds)."""
        return self.backend.amax(self.backend.abs(model.lin.g))

    # -- the scaled model -------------------------------------------------------------------
    def _model(self, x: Any, lin: Linearization) -> tuple[Model, Any, tuple[Any, Any] | None]:
        b, st = self.backend, self.settings
        if isinstance(st.x_scale, str):  # "jac": D = running max of diag(JᵀWJ)
            prior = self.state.d_run
            d_run = lin.diag if prior is None else b.maximum(prior, lin.diag)
            sigma = 1.0 / b.sqrt(b.where(d_run > 0, d_run, 1.0))
        else:
            d_run, sigma = None, st.x_scale
        aff = self.affine_scaling(x, lin.g)
        d = sigma if aff is None else sigma * b.sqrt(aff[0])
        extra = None if aff is None else lin.g * aff[1] * sigma * sigma
        g_hat = d * lin.g
        a_hat = diag_hat = None
        if lin.A is not None:
            n = self.problem.n
            a_hat = lin.A * (b.reshape(d, (n, 1)) * b.reshape(d, (1, n)))
            if extra is not None:
                a_hat = a_hat + self._identity(lin.A) * b.reshape(extra, (1, n))
            diag_hat = b.diagonal(a_hat)
        elif lin.diag is not None:
            diag_hat = lin.diag * d * d if extra is None else lin.diag * d * d + extra
        model = Model(lin, sigma, d, g_hat, a_hat, diag_hat, extra, b)
        return model, d_run, aff

    def _diag_max(self, model: Model) -> Any:
        """The largest diagonal of Â (Nielsen's initial damping is relative to it)."""
        b = self.backend
        if model.diag_hat is not None:
            return b.amax(model.diag_hat)
        # Matrix-free without diag(JᵀWJ): a Rayleigh quotient along ĝ, a lower bound on λmax.
        g = model.g_hat
        return b.dot(g, model.apply(g)) / (b.dot(g, g) + 1e-300)

    def _identity(self, like: Any) -> Any:
        if self._eye is None:
            self._eye = self.backend.eye(self.problem.n, like)
        return self._eye

    def _steps(self, model: Model) -> DenseSteps | CGSteps:
        st = self.settings
        if model.a_hat is not None:
            eye = self._identity(model.a_hat)
            return DenseSteps(self.backend, model.a_hat, model.g_hat, eye, st.eigh_after)
        return CGSteps(
            self.backend, model.apply, model.g_hat, model.diag_hat, st.cg_tol, st.cg_maxiter
        )

    # -- the loop ---------------------------------------------------------------------------
    def run(self, x: Any, cost0: float, resume: LoopState | None = None) -> Outcome:
        """Iterate from ``x`` (already evaluated by ``problem.start``) until a stopping rule;
        or, given ``resume`` (a checkpoint's state, at ``x``), continue that run."""
        b, st, problem, damping = self.backend, self.settings, self.problem, self.settings.damping
        state = self.state = resume if resume is not None else LoopState(x)
        lin: Linearization | None = None  # the linearization at state.x, once computed
        previous_lin: Linearization | None = None  # the one at state.previous_x, if kept
        history = state.history
        bar = Progress(st.progress, st.max_iter, "least_squares")
        status: int | None = None
        cost, optimality = cost0, math.nan
        self.x, self.cost, self.nit = state.x, cost0, state.nit
        # Trial points may overflow (that is what rejection is for); NumPy would warn.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while True:
                    if lin is None:
                        lin = problem.linearize(state.x)
                    model, d_run, aff = self._model(state.x, lin)
                    measure, cosine = self.gtol_measure(model, aff)
                    # The scalars this iteration needs on the host, fetched in one transfer.
                    wanted = {
                        "cost": lin.cost,
                        "measure": measure,
                        "fs_norm": lin.fs_norm,
                        "optimality": self.optimality(model, aff),
                    }
                    if not state.started:  # Nielsen's scale, and scipy trf's initial radius ‖x0‖
                        wanted["diag_max"] = self._diag_max(model)
                        wanted["g_norm"] = b.norm(model.g_hat)
                        wanted["radius"] = b.norm(state.x / model.sigma)
                    if d_run is not None and state.d_run is not None:  # growth of D = diag(JᵀWJ)
                        wanted["d_old"], wanted["d_new"] = b.amax(state.d_run), b.amax(d_run)
                    got = dict(zip(wanted, (float(v) for v in b.host(*wanted.values()))))
                    if not all(math.isfinite(v) for v in got.values()):
                        if state.previous_x is None:
                            raise ObjectiveError(
                                "the Jacobian of residual_fn is not finite at x0; start from a "
                                "point where the residuals are differentiable"
                            )
                        # The accepted point has a non-finite Jacobian: step back, damp harder.
                        if previous_lin is None:  # resumed from a checkpoint: not kept in it
                            previous_lin = problem.linearize(state.previous_x)
                            problem.njev -= 1  # the saved run had it already
                        state.x, lin = state.previous_x, previous_lin
                        state.previous_x, previous_lin, state.pending = None, None, None
                        state.nit -= 1
                        if not damping.on_reject():
                            status = STATUS_NOT_FINITE
                            model, d_run, aff = self._model(state.x, lin)
                            optimality = float(b.host(self.optimality(model, aff))[0])
                            break
                        continue
                    if d_run is not None:
                        if "d_new" in got and got["d_new"] > 0:
                            damping.rescale(got["d_old"] / got["d_new"])
                        state.d_run = d_run
                    cost, optimality = got["cost"], got["optimality"]
                    self.x, self.cost, self.nit = state.x, cost, state.nit
                    model.optimality = optimality
                    if not state.started:
                        radius = got["radius"] if got["radius"] > 0 else 1.0
                        damping.start(got["diag_max"], got["g_norm"] / radius)
                        state.started = True
                    history["cost"].append(cost)
                    history["damping"].append(damping.mu)
                    history["nfev"].append(problem.nfev)
                    if state.nit > 0:
                        bar.update(cost)
                        if st.callback is not None and st.callback(
                            {
                                "x": state.x,
                                "cost": cost,
                                "nit": state.nit,
                                "optimality": optimality,
                                "mu": damping.mu,
                                "nfev": problem.nfev,
                            }
                        ):
                            status = STATUS_CALLBACK
                            break
                    if state.pending is not None:
                        status = state.pending
                        break
                    fs_norm = got["fs_norm"]
                    g_measure = (
                        got["measure"] / fs_norm if cosine and fs_norm > 0 else got["measure"]
                    )
                    if (cosine and fs_norm == 0) or g_measure <= st.gtol:
                        status = STATUS_GTOL
                        break
                    if st.max_iter is not None and state.nit >= st.max_iter:
                        status = STATUS_MAX_NFEV
                        break
                    status, accepted = self._trials(state.x, model, cost)
                    if accepted is None:
                        break
                    state.previous_x, previous_lin = state.x, lin
                    state.x, lin = accepted, None
                    state.nit += 1
                    self.nit = state.nit
                    state.pending, status = status, None
                    if st.checkpoint is not None and st.checkpoint.due(state.nit):
                        st.checkpoint.save(*state.save(b, damping, problem))
        finally:
            bar.close()
        if status is None:  # unreachable: every exit of the loop sets a status
            raise RuntimeError("the iteration ended without a status")
        if lin is None:  # unreachable: the loop linearizes before any exit
            raise RuntimeError("the iteration ended without a linearization")
        nit = state.nit
        message = MESSAGES[status]
        if status == STATUS_MAX_NFEV and st.max_iter is not None and nit >= st.max_iter:
            message = f"The maximum number of iterations ({st.max_iter}) is reached."
        return Outcome(state.x, lin, cost, optimality, status, message, nit, state.d_run, history)

    def _trials(self, x: Any, model: Model, cost: float) -> tuple[int | None, Any]:
        """Try damped steps from ``x``: ``(pending status, new x)`` on success, or
        ``(final status, None)`` when the run must stop here."""
        b, st, problem, damping = self.backend, self.settings, self.problem, self.settings.damping
        steps = self._steps(model)
        limit = STATUS_DAMPING_LIMIT  # or STATUS_NOT_FINITE while the last trial was not finite
        for _ in range(st.max_retries + 1):
            if problem.nfev >= st.max_nfev:
                return STATUS_MAX_NFEV, None
            s = steps.solve(damping.mu)
            if st.geodesic:
                s = self._accelerate(x, s, model, steps)
            if s is None:  # the acceleration is too large (or not finite): not trusted
                if not damping.on_reject():
                    return limit, None
                continue
            p, s = self.select_step(x, model.d * s, s, model)
            p_norm, x_norm = (
                float(v) for v in b.host(b.norm(p / model.sigma), b.norm(x / model.sigma))
            )
            term: int | None = None
            if not math.isfinite(p_norm):  # the factorization failed
                if steps.fallback():
                    continue
                accepted = False
            else:
                x_new = self.project(x + p)
                r_new, cost_new = problem.evaluate(x_new)
                new_cost, pred, bad = (
                    float(v) for v in b.host(cost_new, -model.quad(s), b.sum(r_new * 0.0))
                )
                actual = cost - new_cost
                if math.isfinite(new_cost) and bad == 0.0:
                    ratio = actual / pred if pred > 0 else (1.0 if actual > 0 else -1.0)
                    accepted = damping.accepts(actual, ratio)
                    term = _check_termination(actual, pred, cost, p_norm, x_norm, ratio, st)
                    limit = STATUS_DAMPING_LIMIT
                else:  # a non-finite residual at the trial point: reject, damp harder
                    accepted = False
                    # Down to xtol, steps still reach non-finite residuals: no finite progress.
                    small = p_norm < st.xtol * (st.xtol + x_norm)
                    term = STATUS_NOT_FINITE if small else None
                    limit = STATUS_NOT_FINITE
                if accepted:
                    damping.on_accept(ratio)
                    self.x, self.cost = x_new, new_cost  # the best point, should the run stop
                    return term, x_new
            if term is not None:
                return term, None
            if not damping.on_reject():
                return limit, None
        return limit, None

    def _accelerate(self, x: Any, s: Any, model: Model, steps: Any) -> Any:
        """Add Transtrum and Sethna's geodesic acceleration to the LM step ``s``.

        The second directional derivative of the residuals along the step comes from one
        extra evaluation: ``r_vv ≈ (2/h)·((r(x + h·v) - r)/h - J v)``; the acceleration solves
        the same damped system with ``Jᵀ W r_vv``. With the dense ``JᵀWJ`` at hand that is
        ``(2/h)·(JᵀW (r(x + h·v) - r)/h - JᵀWJ v)``: one pass over J instead of two, and no
        ``J v`` (the same value in exact arithmetic). The step ``s + a/2`` follows the curved
        valley that LM steps cut across (M. K. Transtrum and J. P. Sethna, "Improvements to
        the Levenberg-Marquardt algorithm for nonlinear least-squares minimization",
        arXiv:1201.5885, 2012). Returns None when ``2‖a‖ > alpha·‖s‖``.
        """
        b, problem, st = self.backend, self.problem, self.settings
        h = 0.1
        lin = model.lin
        jvp, vjp = problem.products(x, lin)
        v = model.d * s
        r_h, _ = problem.evaluate(x + h * v)
        w = problem.loss.weights(lin.r)
        if lin.A is not None:
            diff = (r_h - lin.r) / h
            if w.rows is not None:
                diff = w.rows * w.rows * diff
            jt_r_vv = (2.0 / h) * (vjp(diff) - b.matmul(lin.A, v))
        else:  # matrix-free
            r_vv = (2.0 / h) * ((r_h - lin.r) / h - jvp(v))
            if w.rows is not None:
                r_vv = w.rows * w.rows * r_vv
            jt_r_vv = vjp(r_vv)
        a = steps.solve(st.damping.mu, -(model.d * jt_r_vv))
        a_norm, s_norm = (float(t) for t in b.host(b.norm(a), b.norm(s)))
        if not (math.isfinite(a_norm) and 2.0 * a_norm <= st.geodesic_alpha * s_norm):
            return None
        return s + 0.5 * a


def _check_termination(
    actual: float,
    pred: float,
    cost: float,
    p_norm: float,
    x_norm: float,
    ratio: float,
    st: Settings,
) -> int | None:
    """scipy's rule: ftol on the actual reduction with a trusted model, xtol on the step;
    also MINPACK's ftol rule (actual and predicted reductions both tiny), which ends a run
    whose cost can no longer decrease in floating point."""
    floor = max(st.ftol, _EPS) * cost
    ftol_ok = (actual < st.ftol * cost and ratio > 0.25) or (
        abs(actual) <= floor and abs(pred) <= floor
    )
    xtol_ok = p_norm < st.xtol * (st.xtol + x_norm)
    if ftol_ok and xtol_ok:
        return STATUS_FTOL_XTOL
    if ftol_ok:
        return STATUS_FTOL
    if xtol_ok:
        return STATUS_XTOL
    return None
