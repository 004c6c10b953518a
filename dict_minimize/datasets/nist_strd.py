"""The 27 NIST StRD nonlinear least-squares reference problems, shipped with the package.

NIST's Statistical Reference Datasets (https://www.itl.nist.gov/div898/strd/) certify, for
each problem, the least-squares parameters to 11 significant digits and the residual sum of
squares; each comes with two starting points, the first far from the solution. The data
files in ``data/nist_strd`` are NIST's own (public domain), read without any download; the
models below were transcribed by hand from the "Model:" section of each file. Every model is
written against an array namespace ``xp`` so that the same code runs under ``numpy``,
``torch``, ``jax.numpy`` and ``tensorflow.experimental.numpy``: it uses only ``xp.exp``,
``xp.sin``, ``xp.cos``, ``xp.arctan``, Python operators and ``math.pi``.

Examples
--------
>>> import numpy as np
>>> from dict_minimize.datasets.nist_strd import load
>>> prob = load("Misra1a")
>>> r = prob.residual(prob.certified, prob.x, prob.y, np)
>>> bool(abs(np.sum(r**2) / prob.certified_rss - 1.0) < 1e-6)
True
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DATA_DIR",
    "PROBLEM_NAMES",
    "NistProblem",
    "load",
    "load_all",
    "parse_dat",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "nist_strd"

# NIST's listing order: lower, then average, then higher difficulty.
PROBLEM_NAMES: tuple[str, ...] = (
    "Misra1a",
    "Chwirut2",
    "Chwirut1",
    "Lanczos3",
    "Gauss1",
    "Gauss2",
    "DanWood",
    "Misra1b",
    "Kirby2",
    "Hahn1",
    "Nelson",
    "MGH17",
    "Lanczos1",
    "Lanczos2",
    "Gauss3",
    "Misra1c",
    "Misra1d",
    "Roszman1",
    "ENSO",
    "MGH09",
    "Thurber",
    "BoxBOD",
    "Rat42",
    "MGH10",
    "Eckerle4",
    "Rat43",
    "Bennett5",
)

# Problems whose NIST model is stated for log(y) rather than y.
_LOG_RESPONSE = frozenset({"Nelson"})

ModelFn = Callable[[Mapping[str, Any], Any, Any], Any]
FloatArray = npt.NDArray[np.float64]


# ---------------------------------------------------------------------------
# Models, one per file, written from the file's "Model:" formula.
# ---------------------------------------------------------------------------


def _misra1a(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*(1-exp[-b2*x])
    return b["b1"] * (1 - xp.exp(-b["b2"] * x))


def _chwirut(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = exp[-b1*x]/(b2+b3*x)   (Chwirut1 and Chwirut2)
    return xp.exp(-b["b1"] * x) / (b["b2"] + b["b3"] * x)


def _lanczos(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)   (Lanczos1-3)
    return (
        b["b1"] * xp.exp(-b["b2"] * x)
        + b["b3"] * xp.exp(-b["b4"] * x)
        + b["b5"] * xp.exp(-b["b6"] * x)
    )


def _gauss(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)
    return (
        b["b1"] * xp.exp(-b["b2"] * x)
        + b["b3"] * xp.exp(-((x - b["b4"]) ** 2) / b["b5"] ** 2)
        + b["b6"] * xp.exp(-((x - b["b7"]) ** 2) / b["b8"] ** 2)
    )


def _danwood(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*x**b2
    return b["b1"] * x ** b["b2"]


def _misra1b(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 * (1-(1+b2*x/2)**(-2))
    return b["b1"] * (1 - (1 + b["b2"] * x / 2) ** (-2))


def _kirby2(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = (b1 + b2*x + b3*x**2) / (1 + b4*x + b5*x**2)
    num = b["b1"] + b["b2"] * x + b["b3"] * x**2
    den = 1 + b["b4"] * x + b["b5"] * x**2
    return num / den


def _cubic_over_cubic(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = (b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3)
    # (Hahn1 and Thurber)
    num = b["b1"] + b["b2"] * x + b["b3"] * x**2 + b["b4"] * x**3
    den = 1 + b["b5"] * x + b["b6"] * x**2 + b["b7"] * x**3
    return num / den


def _nelson(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # log[y] = b1 - b2*x1 * exp[-b3*x2]; this returns the log[y] prediction.
    x1 = x[:, 0]
    x2 = x[:, 1]
    return b["b1"] - b["b2"] * x1 * xp.exp(-b["b3"] * x2)


def _mgh17(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 + b2*exp[-x*b4] + b3*exp[-x*b5]
    return b["b1"] + b["b2"] * xp.exp(-x * b["b4"]) + b["b3"] * xp.exp(-x * b["b5"])


def _misra1c(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 * (1-(1+2*b2*x)**(-.5))
    return b["b1"] * (1 - (1 + 2 * b["b2"] * x) ** (-0.5))


def _misra1d(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*b2*x*((1+b2*x)**(-1))
    return b["b1"] * b["b2"] * x * ((1 + b["b2"] * x) ** (-1))


def _roszman1(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 - b2*x - arctan[b3/(x-b4)]/pi; the file's 31-digit pi rounds
    # to math.pi in float64.
    return b["b1"] - b["b2"] * x - xp.arctan(b["b3"] / (x - b["b4"])) / math.pi


def _enso(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 + b2*cos(2*pi*x/12) + b3*sin(2*pi*x/12)
    #        + b5*cos(2*pi*x/b4) + b6*sin(2*pi*x/b4)
    #        + b8*cos(2*pi*x/b7) + b9*sin(2*pi*x/b7)
    t = 2 * math.pi * x
    return (
        b["b1"]
        + b["b2"] * xp.cos(t / 12)
        + b["b3"] * xp.sin(t / 12)
        + b["b5"] * xp.cos(t / b["b4"])
        + b["b6"] * xp.sin(t / b["b4"])
        + b["b8"] * xp.cos(t / b["b7"])
        + b["b9"] * xp.sin(t / b["b7"])
    )


def _mgh09(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*(x**2+x*b2) / (x**2+x*b3+b4)
    return b["b1"] * (x**2 + x * b["b2"]) / (x**2 + x * b["b3"] + b["b4"])


def _boxbod(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1*(1-exp[-b2*x])
    return b["b1"] * (1 - xp.exp(-b["b2"] * x))


def _rat42(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 / (1+exp[b2-b3*x])
    return b["b1"] / (1 + xp.exp(b["b2"] - b["b3"] * x))


def _mgh10(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 * exp[b2/(x+b3)]
    return b["b1"] * xp.exp(b["b2"] / (x + b["b3"]))


def _eckerle4(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = (b1/b2) * exp[-0.5*((x-b3)/b2)**2]
    return (b["b1"] / b["b2"]) * xp.exp(-0.5 * ((x - b["b3"]) / b["b2"]) ** 2)


def _rat43(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 / ((1+exp[b2-b3*x])**(1/b4))
    return b["b1"] / ((1 + xp.exp(b["b2"] - b["b3"] * x)) ** (1 / b["b4"]))


def _bennett5(b: Mapping[str, Any], x: Any, xp: Any) -> Any:
    # y = b1 * (b2+x)**(-1/b3)
    return b["b1"] * (b["b2"] + x) ** (-1 / b["b3"])


_MODELS: dict[str, ModelFn] = {
    "Misra1a": _misra1a,
    "Chwirut2": _chwirut,
    "Chwirut1": _chwirut,
    "Lanczos3": _lanczos,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": _danwood,
    "Misra1b": _misra1b,
    "Kirby2": _kirby2,
    "Hahn1": _cubic_over_cubic,
    "Nelson": _nelson,
    "MGH17": _mgh17,
    "Lanczos1": _lanczos,
    "Lanczos2": _lanczos,
    "Gauss3": _gauss,
    "Misra1c": _misra1c,
    "Misra1d": _misra1d,
    "Roszman1": _roszman1,
    "ENSO": _enso,
    "MGH09": _mgh09,
    "Thurber": _cubic_over_cubic,
    "BoxBOD": _boxbod,
    "Rat42": _rat42,
    "MGH10": _mgh10,
    "Eckerle4": _eckerle4,
    "Rat43": _rat43,
    "Bennett5": _bennett5,
}


# ---------------------------------------------------------------------------
# Problem container
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NistProblem:
    """One NIST StRD nonlinear regression problem.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"Misra1a"``.
    difficulty : str
        NIST's grade: ``"lower"``, ``"average"`` or ``"higher"``.
    x : numpy.ndarray
        Predictor values, float64, read-only; shape ``(m,)`` for one
        predictor, ``(m, k)`` for ``k`` predictors (only Nelson, ``k = 2``).
    y : numpy.ndarray
        Response values, float64, read-only, shape ``(m,)``.
    start1, start2 : dict of str to float
        NIST's two starting points, keys ``"b1"`` ... ``"bp"`` in order.
    certified : dict of str to float
        Certified parameter values (11 significant digits).
    certified_std : dict of str to float
        Certified standard deviations of the parameters.
    certified_rss : float
        Certified residual sum of squares.
    formula : str
        The model formula as printed in the file.

    Notes
    -----
    Instances are shared by the cache of :func:`load`; treat the arrays and
    dicts as read-only.
    """

    name: str
    difficulty: str
    x: FloatArray
    y: FloatArray
    start1: dict[str, float]
    start2: dict[str, float]
    certified: dict[str, float]
    certified_std: dict[str, float]
    certified_rss: float
    formula: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names ``("b1", ..., "bp")`` in order."""
        return tuple(self.certified)

    @property
    def n_params(self) -> int:
        """Number of parameters ``p``."""
        return len(self.certified)

    @property
    def n_obs(self) -> int:
        """Number of observations ``m``."""
        return int(self.y.shape[0])

    @property
    def log_response(self) -> bool:
        """Whether NIST's model (and its certified RSS) is for ``log(y)``."""
        return self.name in _LOG_RESPONSE

    def model(self, b: Mapping[str, Any], x: Any, xp: Any) -> Any:
        """Evaluate the model.

        Parameters
        ----------
        b : Mapping[str, Any]
            Maps ``"b1"`` ... ``"bp"`` to scalars (Python floats or 0-d
            arrays/tensors of the framework of ``x``).
        x : array_like
            Predictors in the layout of :attr:`x`, as an array of the
            framework that ``xp`` belongs to.
        xp : module
            Array namespace: ``numpy``, ``torch``, ``jax.numpy`` or
            ``tensorflow.experimental.numpy``.

        Returns
        -------
        array_like
            Model prediction, shape ``(m,)``. For Nelson this predicts
            ``log(y)``, as the file's model does.
        """
        return _MODELS[self.name](b, x, xp)

    def residual(self, b: Mapping[str, Any], x: Any, y: Any, xp: Any) -> Any:
        """Residual whose sum of squares NIST certifies.

        This is ``y - model(b, x, xp)``, except for problems whose model is
        stated for ``log(y)`` (Nelson), where it is
        ``log(y) - model(b, x, xp)``.

        Parameters
        ----------
        b, x, xp
            As for :meth:`model`.
        y : array_like
            Response values (raw ``y``, as in :attr:`y`), shape ``(m,)``.

        Returns
        -------
        array_like
            Residuals, shape ``(m,)``.
        """
        target = xp.log(y) if self.log_response else y
        return target - self.model(b, x, xp)

    def rss(self, b: Mapping[str, float]) -> float:
        """Residual sum of squares at ``b``, computed with numpy.

        Parameters
        ----------
        b : Mapping[str, float]
            Parameter values, keys ``"b1"`` ... ``"bp"``.

        Returns
        -------
        float
            ``sum(residual(b) ** 2)``.
        """
        r = self.residual(b, self.x, self.y, np)
        return float(np.sum(r * r))


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------

_RANGE_RE = re.compile(r"(Starting Values|Certified Values|Data)\s+\(lines\s+(\d+)\s+to\s+(\d+)\)")
_PARAM_RE = re.compile(r"^\s*(b\d+)\s*=\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_DIFFICULTY_RE = re.compile(r"\b(Lower|Average|Higher) Level of Difficulty")


def _search_int(pattern: str, text: str, what: str) -> int:
    match = re.search(pattern, text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"no {what} found")
    return int(match.group(1))


def parse_dat(text: str) -> NistProblem:
    """Parse the text of a NIST StRD nonlinear regression ``.dat`` file.

    Numbers are converted with :func:`float`, i.e. correctly rounded to
    float64 from their decimal text. The header's line ranges locate the
    parameter table and the data block; the counts stated in the header
    (parameters, predictors, observations, degrees of freedom) are checked
    against what is parsed.

    Parameters
    ----------
    text : str
        Full contents of the file.

    Returns
    -------
    NistProblem

    Raises
    ------
    ValueError
        If the file does not have the expected layout or its stated counts
        disagree with its contents.
    """
    lines = text.splitlines()

    name_match = re.search(r"^Dataset Name:\s+(\S+)", text, flags=re.MULTILINE)
    if name_match is None:
        raise ValueError("no 'Dataset Name:' line")
    name = name_match.group(1)

    # Line ranges (1-based, inclusive) from the "File Format:" section.
    ranges: dict[str, tuple[int, int]] = {}
    for match in _RANGE_RE.finditer(text):
        ranges.setdefault(match.group(1), (int(match.group(2)), int(match.group(3))))
    if set(ranges) != {"Starting Values", "Certified Values", "Data"}:
        raise ValueError(f"{name}: incomplete 'File Format' line ranges: {ranges}")

    diff_match = _DIFFICULTY_RE.search(text)
    if diff_match is None:
        raise ValueError(f"{name}: no 'Level of Difficulty' line")
    difficulty = diff_match.group(1).lower()

    n_params = _search_int(r"^\s+(\d+) Parameters", text, "parameter count")
    n_pred = _search_int(r"^\s+(\d+) Predictors?\b", text, "predictor count")
    n_obs = _search_int(r"^\s+(\d+) Observations", text, "observation count")
    n_obs2 = _search_int(r"^Number of Observations:\s+(\d+)", text, "observations")
    # "Degrees of Freedom" is not checked: Rat43.dat states 9 where m - p = 11
    # (its residual standard deviation does use 11).
    if n_obs != n_obs2:
        raise ValueError(f"{name}: inconsistent observation counts")

    # Parameter table: "bi = start1 start2 certified std".
    first, last = ranges["Starting Values"]
    start1: dict[str, float] = {}
    start2: dict[str, float] = {}
    certified: dict[str, float] = {}
    certified_std: dict[str, float] = {}
    for lineno in range(first, last + 1):
        row = _PARAM_RE.match(lines[lineno - 1])
        if row is None:
            raise ValueError(f"{name}: line {lineno} is not a parameter row")
        key = row.group(1)
        start1[key] = float(row.group(2))
        start2[key] = float(row.group(3))
        certified[key] = float(row.group(4))
        certified_std[key] = float(row.group(5))
    expected_keys = [f"b{i}" for i in range(1, n_params + 1)]
    if list(certified) != expected_keys:
        raise ValueError(f"{name}: parameters {list(certified)} != {expected_keys}")

    # The certified block also holds the RSS and the summary lines.
    first, last = ranges["Certified Values"]
    certified_block = "\n".join(lines[first - 1 : last])
    rss_match = re.search(r"Residual Sum of Squares:\s+(\S+)", certified_block)
    if rss_match is None:
        raise ValueError(f"{name}: no 'Residual Sum of Squares' line")
    certified_rss = float(rss_match.group(1))

    # Data block, preceded by its "Data:  y  x ..." column-name line.
    first, last = ranges["Data"]
    columns = lines[first - 2].split()
    if columns[:2] != ["Data:", "y"] or len(columns) != 2 + n_pred:
        raise ValueError(f"{name}: unexpected data header {lines[first - 2]!r}")
    if any(line.strip() for line in lines[last:]):
        raise ValueError(f"{name}: text after the stated data block")
    rows = [[float(tok) for tok in lines[i].split()] for i in range(first - 1, last)]
    if len(rows) != n_obs or any(len(row) != 1 + n_pred for row in rows):
        raise ValueError(f"{name}: data block does not hold {n_obs} rows")
    data = np.array(rows, dtype=np.float64)
    y = data[:, 0].copy()
    x = data[:, 1].copy() if n_pred == 1 else data[:, 1:].copy()
    x.setflags(write=False)
    y.setflags(write=False)

    # Model formula: the lines between "N Parameters" and the table heading.
    model_at = next(i for i, line in enumerate(lines) if line.startswith("Model:"))
    table_at = next(i for i, line in enumerate(lines) if "Starting" in line and "Certified" in line)
    formula = "\n".join(ln.strip() for ln in lines[model_at + 2 : table_at] if ln.strip())

    return NistProblem(
        name=name,
        difficulty=difficulty,
        x=x,
        y=y,
        start1=start1,
        start2=start2,
        certified=certified,
        certified_std=certified_std,
        certified_rss=certified_rss,
        formula=formula,
    )


@functools.cache
def load(name: str) -> NistProblem:
    """Load one problem from the package's ``data/nist_strd`` (cached).

    Parameters
    ----------
    name : str
        One of :data:`PROBLEM_NAMES`.

    Returns
    -------
    NistProblem
    """
    if name not in _MODELS:
        raise KeyError(f"unknown NIST StRD problem {name!r}")
    problem = parse_dat((DATA_DIR / f"{name}.dat").read_text(encoding="ascii"))
    if problem.name != name:
        raise ValueError(f"{name}.dat declares dataset name {problem.name!r}")
    return problem


def load_all() -> tuple[NistProblem, ...]:
    """Load all 27 problems, in the order of :data:`PROBLEM_NAMES`.

    Returns
    -------
    tuple of NistProblem
    """
    return tuple(load(name) for name in PROBLEM_NAMES)
