"""The bounded method (``method="trf"``): Levenberg-Marquardt in Coleman-Li scaled variables
with reflective steps, after the trust-region-reflective algorithm of scipy's ``"trf"``.

The iterates stay strictly inside the box. Variables are scaled by the Coleman-Li vector
``v`` (the distance to the bound the gradient points at, 1 for a free direction), which turns
the first-order conditions of the bounded problem into a smooth system; its Newton matrix
adds ``diag(g·dv)`` to ``JᵀWJ``. The damping μ plays the trust radius' role. When the
damped step leaves the box, the best of three candidates by the quadratic model is taken:
the step truncated just before the bound, the step reflected off the bound it hits, and the
scaled gradient step. References: M. A. Branch, T. F. Coleman and Y. Li, SIAM J. Sci. Comput.
21(1), 1999; T. F. Coleman and Y. Li, SIAM J. Optim. 6(2), 1996.
"""

from __future__ import annotations

import math
from typing import Any

from dict_minimize.solvers._problem import ResidualProblem
from dict_minimize.solvers.levenberg_marquardt import LevenbergMarquardt, Model, Settings


class BoundedTrustRegion(LevenbergMarquardt):
    """Bounds ``lb <= x <= ub`` (device vectors, ±inf where free) on the LM loop."""

    def __init__(self, problem: ResidualProblem, settings: Settings, lb: Any, ub: Any) -> None:
        super().__init__(problem, settings)
        self.lb, self.ub = lb, ub

    def affine_scaling(self, x: Any, g: Any) -> tuple[Any, Any]:
        b = self.backend
        toward_ub = (g < 0) & (self.ub < math.inf)
        toward_lb = (g > 0) & (self.lb > -math.inf)
        v = b.where(toward_ub, self.ub - x, b.where(toward_lb, x - self.lb, 1.0))
        dv = b.where(toward_ub, -1.0, b.where(toward_lb, 1.0, 0.0 * g))
        return b.maximum(v, 0.0), dv

    def optimality(self, model: Model, aff: tuple[Any, Any] | None) -> Any:
        b = self.backend
        g = model.lin.g
        return b.amax(b.abs(g if aff is None else aff[0] * g))

    def gtol_measure(self, model: Model, aff: tuple[Any, Any] | None) -> tuple[Any, bool]:
        return self.optimality(model, aff), False  # scipy trf: ‖v·g‖∞ < gtol

    def project(self, x: Any) -> Any:
        return self.backend.minimum(self.backend.maximum(x, self.lb), self.ub)

    def _to_bound(self, x: Any, p: Any) -> tuple[Any, Any]:
        """The largest t with ``x + t·p`` inside the box (a device scalar), and which bounds
        stop it (a boolean vector)."""
        b = self.backend
        up, down = p > 0, p < 0
        safe = b.where(up | down, p, 1.0)
        steps = b.where(up, (self.ub - x) / safe, b.where(down, (self.lb - x) / safe, math.inf))
        t = -b.amax(-steps)
        return t, steps == t

    def select_step(self, x: Any, p: Any, s: Any, model: Model) -> tuple[Any, Any]:
        b = self.backend
        alpha_t, hits = self._to_bound(x, p)
        alpha, delta, s_g, s_as = (
            float(v)
            for v in b.host(alpha_t, b.norm(s), b.dot(model.g_hat, s), b.dot(s, model.apply(s)))
        )
        if alpha > 1.0 or not math.isfinite(delta):
            return p, s
        theta = max(0.995, 1.0 - model.optimality)
        # Candidate 1: the damped step stopped just short of the bound.
        best_t, best_q = theta * alpha, theta * alpha * s_g + 0.5 * (theta * alpha) ** 2 * s_as
        best_dir, best_from = s, None
        # Candidate 2: the step reflected off the bound it hits, from the point where it hits.
        r = b.where(hits, -s, s)
        to_bound_r, _ = self._to_bound(x + alpha * p, model.d * r)
        ar = model.apply(r)
        to_bound_r_h, rr, rs, g_r, r_ar, s_ar = (
            float(v)
            for v in b.host(
                to_bound_r,
                b.dot(r, r),
                b.dot(r, s),
                b.dot(model.g_hat, r),
                b.dot(r, ar),
                b.dot(s, ar),
            )
        )
        # Distance along r to the trust sphere ‖alpha·s + t·r‖ = delta.
        qa, qb, qc = rr, 2.0 * alpha * rs, alpha * alpha * delta * delta - delta * delta
        disc = qb * qb - 4.0 * qa * qc
        to_tr = (-qb + math.sqrt(disc)) / (2.0 * qa) if qa > 0 and disc >= 0 else 0.0
        r_stride = min(to_bound_r_h, to_tr)
        if r_stride > 0:
            lo = (1.0 - theta) * alpha / r_stride
            hi = theta * to_bound_r_h if r_stride == to_bound_r_h else to_tr
            if lo <= hi:
                # q(alpha·s + t·r) = q(alpha·s) + t·(ĝ + alpha·Âs)ᵀr + ½ t² rᵀÂr
                q0 = alpha * s_g + 0.5 * alpha * alpha * s_as
                t, q = _min_quadratic_1d(0.5 * r_ar, g_r + alpha * s_ar, lo, hi)
                if q0 + q < best_q:
                    best_t, best_q, best_dir, best_from = t, q0 + q, r, alpha
        # Candidate 3: the scaled gradient step.
        ag = -model.g_hat
        to_bound_g, _ = self._to_bound(x, model.d * ag)
        aag = model.apply(ag)
        to_bound_g_h, gg, g_ag = (
            float(v) for v in b.host(to_bound_g, b.dot(ag, ag), b.dot(ag, aag))
        )
        if gg > 0:
            to_tr_g = delta / math.sqrt(gg)
            hi = theta * to_bound_g_h if to_bound_g_h < to_tr_g else to_tr_g
            t, q = _min_quadratic_1d(0.5 * g_ag, -gg, 0.0, hi)
            if q < best_q:
                best_t, best_q, best_dir, best_from = t, q, ag, None
        step = best_t * best_dir if best_from is None else best_from * s + best_t * best_dir
        return model.d * step, step


def _min_quadratic_1d(a: float, b: float, lo: float, hi: float) -> tuple[float, float]:
    """Minimize ``a t² + b t`` over ``[lo, hi]``: the argmin and the value."""
    candidates = [lo, hi]
    if a > 0:
        t = -b / (2.0 * a)
        if lo < t < hi:
            candidates.append(t)
    values = [a * t * t + b * t for t in candidates]
    i = min(range(len(values)), key=values.__getitem__)
    return candidates[i], values[i]
