"""Data, initial weights and models of the least-squares benchmark (cases A, B, C).

Everything here is framework-free NumPy in float64; the contenders (``_ls_contenders.py``)
turn it into tensors of their framework, so every contender starts from the same numbers.

* Case A: a 2-10-1 tanh MLP fitting 500 points of ``z = (a - x)² + b (y - x²)²``,
  ``a = b = 2.5``, ``x, y ~ U(-2, 2)``, on raw data (the solvers that normalize do so
  themselves, see :func:`mapminmax`).
* Case B: a 6-12-10-8-1 tanh MLP (311 weights) fitting 10,000 samples of the 6-D Rosenbrock
  function (sum form), ``x ~ U(-2, 2)⁶``; inputs and targets mapped to [-1, 1] up front, so
  every contender fits the same numbers and MSEs are in those units.
* Case C: 10,000 points of two decaying exponentials plus two Gaussian peaks (10 parameters)
  with fixed noise, from a start 10-25 % off the truth.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: Layer widths of the two networks.
SIZES_A = (2, 10, 1)
SIZES_B = (6, 12, 10, 8, 1)


@dataclass(frozen=True)
class Scaling:
    """``normalized = (raw - offset) * gain`` per column (MATLAB ``mapminmax`` onto [-1, 1])."""

    offset: np.ndarray
    gain: np.ndarray

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Map raw data to [-1, 1]."""
        return np.asarray((raw - self.offset) * self.gain)


def mapminmax(data: np.ndarray) -> Scaling:
    """The scaling that takes each column of ``data`` onto [-1, 1] (as ``fit(normalize=True)``)."""
    low, high = data.min(axis=0), data.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return Scaling(offset=low + span / 2.0, gain=2.0 / span)


@dataclass(frozen=True)
class FitData:
    """One network-training problem: raw data, its normalization and initial weights."""

    x: np.ndarray  # (samples, inputs)
    y: np.ndarray  # (samples, 1)
    sizes: tuple[int, ...]
    weights: dict[str, np.ndarray]  # "w0" (in, out), "b0" (out,), ... for normalized inputs

    @property
    def x_scaling(self) -> Scaling:
        """mapminmax of the inputs."""
        return mapminmax(self.x)

    @property
    def y_scaling(self) -> Scaling:
        """mapminmax of the targets."""
        return mapminmax(self.y)

    @property
    def n_params(self) -> int:
        """Number of weights."""
        return sum(w.size for w in self.weights.values())

    def flat_weights(self) -> np.ndarray:
        """The weights as one vector, in the order w0, b0, w1, b1, ..."""
        return np.concatenate([self.weights[k].ravel() for k in weight_keys(self.sizes)])


def weight_keys(sizes: tuple[int, ...]) -> list[str]:
    """``["w0", "b0", "w1", "b1", ...]``: the layout of flat weight vectors."""
    return [f"{kind}{i}" for i in range(len(sizes) - 1) for kind in ("w", "b")]


def unflatten(flat: np.ndarray, sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Inverse of :meth:`FitData.flat_weights`."""
    out, start = {}, 0
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        out[f"w{i}"] = flat[start : start + a * b].reshape(a, b)
        start += a * b
        out[f"b{i}"] = flat[start : start + b]
        start += b
    return out


def init_weights(sizes: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """PyTorch's default ``nn.Linear`` initialization, U(±1/√fan_in), drawn with NumPy."""
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / np.sqrt(a)
        out[f"w{i}"] = rng.uniform(-bound, bound, (a, b))
        out[f"b{i}"] = rng.uniform(-bound, bound, b)
    return out


def mlp(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The tanh MLP (linear output layer) in NumPy; other frameworks mirror it."""
    layers = len(weights) // 2
    h = x
    for i in range(layers):
        h = h @ weights[f"w{i}"] + weights[f"b{i}"]
        if i < layers - 1:
            h = np.tanh(h)
    return h


def case_a(seed: int, samples: int = 500) -> FitData:
    """Case A for one seed: data and initial weights both depend on it."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-2.0, 2.0, (samples, 2))
    a = b = 2.5
    z = (a - xy[:, 0]) ** 2 + b * (xy[:, 1] - xy[:, 0] ** 2) ** 2
    return FitData(xy, z.reshape(-1, 1), SIZES_A, init_weights(SIZES_A, seed))


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """Sum-form Rosenbrock of each row: Σ 100 (x_{i+1} - x_i²)² + (1 - x_i)²."""
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)


def case_b(seed: int = 0, samples: int = 10_000) -> FitData:
    """Case B, already mapped to [-1, 1] (inputs and targets)."""
    rng = np.random.default_rng(100 + seed)
    x = rng.uniform(-2.0, 2.0, (samples, 6))
    y = rosenbrock(x).reshape(-1, 1)
    xn, yn = mapminmax(x).apply(x), mapminmax(y).apply(y)
    return FitData(xn, yn, SIZES_B, init_weights(SIZES_B, seed))


#: Case C's parameters: two exponentials (amplitude, rate) and two Gaussians (amplitude,
#: centre, width); ``C_KEYS`` is the dict layout the contenders of this project use.
C_KEYS = ("amp_exp", "rate", "amp_gauss", "center", "width")
C_TRUE = {
    "amp_exp": np.array([3.0, 1.0]),
    "rate": np.array([1.5, 0.2]),
    "amp_gauss": np.array([2.0, 1.2]),
    "center": np.array([3.0, 6.5]),
    "width": np.array([0.5, 0.8]),
}
C_START_FACTOR = {
    "amp_exp": np.array([0.8, 1.2]),
    "rate": np.array([1.2, 0.8]),
    "amp_gauss": np.array([0.8, 1.25]),
    "center": np.array([1.1, 0.95]),
    "width": np.array([1.25, 0.8]),
}


@dataclass(frozen=True)
class CurveData:
    """Case C: abscissae, noisy observations and the start point."""

    t: np.ndarray
    y: np.ndarray
    x0: dict[str, np.ndarray]

    def flat_x0(self) -> np.ndarray:
        """The start as a flat vector in ``C_KEYS`` order."""
        return np.concatenate([self.x0[k] for k in C_KEYS])


def curve(p: dict[str, np.ndarray], t: np.ndarray) -> np.ndarray:
    """The model of case C in NumPy (the frameworks mirror it)."""
    out = np.zeros_like(t)
    for k in range(2):
        out = out + p["amp_exp"][k] * np.exp(-p["rate"][k] * t)
        out = out + p["amp_gauss"][k] * np.exp(-0.5 * ((t - p["center"][k]) / p["width"][k]) ** 2)
    return out


def curve_jacobian(flat: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The analytic Jacobian of ``curve`` (m, 10), columns in flat ``C_KEYS`` order."""
    p = unflatten_c(flat)
    jac = np.empty((t.size, 10))
    for k in range(2):
        e = np.exp(-p["rate"][k] * t)
        jac[:, 0 + k] = e
        jac[:, 2 + k] = -p["amp_exp"][k] * t * e
        u = (t - p["center"][k]) / p["width"][k]
        g = np.exp(-0.5 * u**2)
        jac[:, 4 + k] = g
        jac[:, 6 + k] = p["amp_gauss"][k] * g * u / p["width"][k]
        jac[:, 8 + k] = p["amp_gauss"][k] * g * u**2 / p["width"][k]
    return jac


def unflatten_c(flat: np.ndarray) -> dict[str, np.ndarray]:
    """Flat case-C parameters to the dict layout."""
    return {k: flat[2 * i : 2 * i + 2] for i, k in enumerate(C_KEYS)}


def case_c(samples: int = 10_000) -> CurveData:
    """Case C: 10,000 points on [0, 10], noise σ = 0.02."""
    t = np.linspace(0.0, 10.0, samples)
    rng = np.random.default_rng(7)
    y = curve(C_TRUE, t) + 0.02 * rng.standard_normal(samples)
    x0 = {k: C_TRUE[k] * C_START_FACTOR[k] for k in C_KEYS}
    return CurveData(t, y, x0)
