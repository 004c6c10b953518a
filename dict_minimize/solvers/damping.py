"""Damping rules of Levenberg-Marquardt: how μ in ``(JᵀJ + μD) δ = -Jᵀr`` evolves.

A rule sees only host floats: the gain ratio ρ (actual over predicted reduction) of each
trial step. Two rules are provided:

* :class:`Nielsen` (the default): μ starts at ``mu · max(diag(JᵀJ)/D)`` and shrinks smoothly
  with ρ; a rejection multiplies it by ν, which doubles on each further rejection.
  H. B. Nielsen, "Damping parameter in Marquardt's method", IMM-REP-1999-05, DTU.
* :class:`Marquardt`: multiply/divide with MATLAB ``trainlm``'s parameters ``mu`` (absolute),
  ``mu_dec``, ``mu_inc`` and ``mu_max``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from dict_minimize._errors import InvalidOptionError

#: Defaults of each rule's options (``mu`` means the relative τ for Nielsen).
NIELSEN_DEFAULTS = {"mu": 1e-3, "accept_ratio": 1e-4}
MARQUARDT_DEFAULTS = {"mu": 1e-3, "mu_dec": 0.1, "mu_inc": 10.0, "mu_max": 1e10}

#: A gain ratio above this is a step the quadratic model predicted well (the ratio at which a
#: trust region would grow).
GOOD_RATIO = 0.75


class DampingRule(ABC):
    """The state of μ across one run."""

    mu: float

    @abstractmethod
    def start(self, diag_max: float, step_floor: float) -> None:
        """Set the initial μ; ``diag_max`` is the largest diagonal of the scaled JᵀJ and
        ``step_floor`` the μ below which the first step could exceed the initial radius."""

    #: The attributes on the scale of ``μ``, which :meth:`rescale` scales together.
    _SCALED: tuple[str, ...] = ("mu",)

    def rescale(self, factor: float) -> None:
        """The scaling D grew: keep the damping ``μ·D`` of the original variables as it was."""
        if math.isfinite(factor) and 0 < factor < 1:
            for name in self._SCALED:
                setattr(self, name, max(getattr(self, name) * factor, 1e-300))

    @abstractmethod
    def accepts(self, actual: float, ratio: float) -> bool:
        """Whether a trial with this actual reduction and gain ratio is taken."""

    @abstractmethod
    def on_accept(self, ratio: float) -> None:
        """Update μ after an accepted step."""

    @abstractmethod
    def on_reject(self) -> bool:
        """Update μ after a rejected step; False when μ can grow no further."""

    def state(self) -> dict[str, float]:
        """What evolves during a run (for checkpoints); the options are not part of it."""
        return {"mu": self.mu}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (from a checkpoint)."""
        values = {key: float(state[key]) for key in self.state()}
        if set(state) != set(values) or not all(v > 0 for v in values.values()):
            raise ValueError(
                f"a {type(self).__name__.lower()} damping state needs positive "
                f"{', '.join(sorted(values))}, got {state!r}"
            )
        for key, value in values.items():
            setattr(self, key, value)


def _positive(name: str, value: object) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidOptionError(f"options[{name!r}] must be a positive number, got {value!r}")
    return float(value)


class Nielsen(DampingRule):
    """Nielsen's rule: ``μ ← μ · max(1/3, 1 - (2ρ - 1)³)`` on success, ``μ ← μν, ν ← 2ν``
    on failure.

    μ starts at ``τ · max diag``, or higher where that would let the first step leave scipy
    trf's initial trust radius; the first step with ρ > 0.75 brings it down to at most
    ``τ · max diag``.
    """

    _SCALED = ("mu", "relative")

    def __init__(self, mu: float = 1e-3, accept_ratio: float = 1e-4) -> None:
        self.tau = _positive("mu", mu)
        if not (isinstance(accept_ratio, int | float) and 0 <= accept_ratio < 0.25):
            raise InvalidOptionError(
                f"options['accept_ratio'] must be in [0, 0.25), got {accept_ratio!r}"
            )
        self.accept_ratio = float(accept_ratio)
        self.mu = self.tau
        self.nu = 2.0
        self.relative = math.inf  # Nielsen's scale τ·max diag while the start's floor holds

    def start(self, diag_max: float, step_floor: float) -> None:
        # ‖ŝ‖ <= ‖ĝ‖/μ: the floor keeps the first step within the trust radius scipy's trf
        # starts with, where JᵀWJ has almost no curvature (e.g. robust losses, all outliers).
        # Nielsen's own scale takes over after the first step the model predicted well: a
        # floor far above it would otherwise shrink by only 3x per step (case C of the
        # benchmarks: 9 Jacobians instead of 7, and fewer evaluations over the NIST problems).
        self.relative = self.tau * (diag_max if diag_max > 0 else 1.0)
        self.mu = max(self.relative, step_floor)

    def accepts(self, actual: float, ratio: float) -> bool:
        return actual > 0 and ratio > self.accept_ratio

    def on_accept(self, ratio: float) -> None:
        self.mu *= max(1.0 / 3.0, 1.0 - (2.0 * min(ratio, 1.0) - 1.0) ** 3)
        if ratio > GOOD_RATIO:  # the first good step lifts the start's floor (inf: lifted)
            self.mu, self.relative = min(self.mu, self.relative), math.inf
        self.mu = max(self.mu, 1e-300)
        self.nu = 2.0

    def on_reject(self) -> bool:
        self.mu *= self.nu
        self.nu *= 2.0
        return math.isfinite(self.mu) and self.mu < 1e300

    def state(self) -> dict[str, float]:
        return {"mu": self.mu, "nu": self.nu, "relative": self.relative}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state({"relative": math.inf, **state})  # older checkpoints: floor lifted


class Marquardt(DampingRule):
    """trainlm's rule: ``μ ← μ·mu_dec`` on success, ``μ ← μ·mu_inc`` on failure, stop above
    ``mu_max``."""

    def __init__(
        self, mu: float = 1e-3, mu_dec: float = 0.1, mu_inc: float = 10.0, mu_max: float = 1e10
    ) -> None:
        self.mu = _positive("mu", mu)
        self.mu_dec = _positive("mu_dec", mu_dec)
        self.mu_inc = _positive("mu_inc", mu_inc)
        self.mu_max = _positive("mu_max", mu_max)
        if self.mu_dec >= 1 or self.mu_inc <= 1:
            raise InvalidOptionError(
                f"options need mu_dec < 1 < mu_inc, got mu_dec={mu_dec!r}, mu_inc={mu_inc!r}"
            )

    def start(self, diag_max: float, step_floor: float) -> None:
        pass  # trainlm's mu is absolute

    def accepts(self, actual: float, ratio: float) -> bool:
        return actual > 0

    def on_accept(self, ratio: float) -> None:
        self.mu = max(self.mu * self.mu_dec, 1e-300)

    def on_reject(self) -> bool:
        self.mu *= self.mu_inc
        return self.mu <= self.mu_max


def make_damping(name: str, options: dict[str, object]) -> DampingRule:
    """Build the rule ``name`` from the options it knows (removing them from ``options``)."""
    if name == "nielsen":
        keys = NIELSEN_DEFAULTS
        cls: type[DampingRule] = Nielsen
    elif name == "marquardt":
        keys, cls = MARQUARDT_DEFAULTS, Marquardt
    else:
        raise InvalidOptionError(
            f"options['damping'] must be 'nielsen' or 'marquardt', got {name!r}"
        )
    given = {k: options.pop(k) for k in list(options) if k in keys}
    return cls(**given)  # type: ignore[arg-type]
