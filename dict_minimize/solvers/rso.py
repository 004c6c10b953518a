"""Random search optimization (RSO): gradient-free training, one weight at a time.

After Tripathi & Singh, "RSO: A Gradient Free Sampling Based Approach For Training Deep Neural
Networks" (arXiv:2005.05955). A round sweeps the tensors of x0 from the last to the first (the
output layer first, in a model's usual key order) and, within a tensor, every element in
row-major order. For each weight ``w`` it draws a step ``Δ ~ N(0, σ²)``, with ``σ`` the
tensor's standard deviation at the start of its sweep, and a fresh mini-batch; it evaluates
the loss at ``w``, ``w + Δ`` and ``w - Δ`` on that mini-batch and keeps the best of the three
(ties keep ``w``; a NaN loss never wins). An accepted move therefore never increases the loss
on the mini-batch that judged it, and without mini-batches the loss never increases at all.

Written once on the backend protocol. The random draws (steps and mini-batch rows, in chunks
of weights), the trial tensors, the comparison and the update stay on the device: the host
issues one call per weight and sees a few scalars once per tensor sweep. The three losses of
a weight come from one vectorized call (``vmap`` of ``fun`` over the three versions of the
tensor, compiled once per tensor with ``jax.jit`` / ``tf.function``); when ``fun`` cannot be
vectorized (detected on its first call) they come from three plain calls.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dict_minimize._errors import (
    DictMinimizeWarning,
    InvalidBoundsError,
    InvalidOptionError,
    ObjectiveError,
    OptimizationInterrupted,
)
from dict_minimize._least_squares import _wants_result
from dict_minimize._methods import check_framework_options
from dict_minimize._minimize import as_args, prepare
from dict_minimize._objective import check_x0_finite
from dict_minimize._progress import Progress
from dict_minimize._result import STATUS_INTERRUPTED, STATUS_OBJECTIVE_RAISED, MinimizeResult
from dict_minimize._tree import Leaf, Path, TreeSpec, format_path
from dict_minimize.backends._protocol import Backend

#: ``status`` values of a run (plus the package's -2 interrupted and -3 fun raised).
STATUS_DONE = 0
STATUS_MAXFEV = 1
STATUS_CALLBACK = -2

#: Trial points per weight: w, w + Δ, w - Δ.
TRIALS = 3
#: Steps and mini-batch rows are drawn for at most this many weights at a time, and at most
#: this many row indices (8 MiB of int64).
CHUNK_WEIGHTS = 4096
CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class Settings:
    """The validated options of one run (see :func:`parse_options`)."""

    rounds: int = 10
    batch_size: int | None = None
    batched_args: tuple[int, ...] = ()
    sampler: Callable[[np.random.Generator], Any] | None = None
    skip_bias: bool = False
    sigma_scale: float | Callable[[int], float] = 1.0
    min_sigma: float = 0.0
    init: str | None = None
    out_axis: int = 0
    seed: int | None = None
    maxfev: int | None = None
    vectorize: bool = True
    progress: bool = False


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or int(value) < 1:
        raise InvalidOptionError(f"options[{name!r}] must be a positive integer, got {value!r}")
    return int(value)


def _number(name: str, value: Any, *, positive: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        raise InvalidOptionError(f"options[{name!r}] must be a finite number >= 0, got {value!r}")
    if positive and float(value) == 0:
        raise InvalidOptionError(f"options[{name!r}] must be positive, got {value!r}")
    return float(value)


def _scale(value: Any) -> float | Callable[[int], float]:
    """``sigma_scale``: a positive number, or a callable of the round (checked when called)."""
    return value if callable(value) else _number("sigma_scale", value, positive=True)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"options[{name!r}] must be True or False, got {value!r}")
    return value


def parse_options(options: Mapping[str, Any], nargs: int) -> Settings:
    """Validate ``options`` of ``method="rso"`` for a call with ``nargs`` extra arguments.

    Raises
    ------
    InvalidOptionError
        Naming the option, what it must be and what it got.
    """
    check_framework_options("rso", options)
    opts = dict(options)
    batched: Any = opts.pop("batched_args", None)
    batch_size = opts.pop("batch_size", None)
    sampler = opts.pop("sampler", None)
    if sampler is not None:
        if not callable(sampler):
            raise InvalidOptionError(
                f"options['sampler'] must be callable: sampler(rng) -> the batched arguments "
                f"of fun, got {type(sampler).__name__}"
            )
        if batched is not None or batch_size is not None:
            raise InvalidOptionError(
                "give options['sampler'] or options['batched_args'] with "
                "options['batch_size'], not both"
            )
    if batched is not None:
        if _is_int(batched):
            batched = (batched,)
        if (
            not isinstance(batched, Sequence)
            or not batched
            or not all(_is_int(i) and 0 <= int(i) < nargs for i in batched)
        ):
            raise InvalidOptionError(
                f"options['batched_args'] must list indices into args (there are {nargs}) of "
                f"the arguments that hold samples along axis 0, got {batched!r}"
            )
        if batch_size is None:
            raise InvalidOptionError(
                "options['batched_args'] needs options['batch_size']: the rows drawn per weight"
            )
    elif batch_size is not None:
        raise InvalidOptionError(
            "options['batch_size'] needs options['batched_args']: the indices of the args "
            "that hold samples along axis 0"
        )
    init = opts.pop("init", None)
    if init not in (None, "gaussian"):
        raise InvalidOptionError(f"options['init'] must be None or 'gaussian', got {init!r}")
    out_axis = opts.pop("out_axis", 0)
    if not _is_int(out_axis):
        raise InvalidOptionError(f"options['out_axis'] must be an int, got {out_axis!r}")
    seed = opts.pop("seed", None)
    if seed is not None and (not _is_int(seed) or not 0 <= int(seed) < 2**63):
        raise InvalidOptionError(
            f"options['seed'] must be None or an int in [0, 2**63), got {seed!r}"
        )
    maxfev = opts.pop("maxfev", None)
    return Settings(
        rounds=_positive_int("rounds", opts.pop("rounds", Settings.rounds)),
        batch_size=None if batch_size is None else _positive_int("batch_size", batch_size),
        batched_args=() if batched is None else tuple(sorted({int(i) for i in batched})),
        sampler=sampler,
        skip_bias=_flag("skip_bias", opts.pop("skip_bias", False)),
        sigma_scale=_scale(opts.pop("sigma_scale", 1.0)),
        min_sigma=_number("min_sigma", opts.pop("min_sigma", 0.0), positive=False),
        init=init,
        out_axis=int(out_axis),
        seed=None if seed is None else int(seed),
        maxfev=None if maxfev is None else _positive_int("maxfev", maxfev),
        vectorize=_flag("vectorize", opts.pop("vectorize", True)),
        progress=bool(opts.pop("progress", False)),
    )


def is_bias(leaf: Leaf) -> bool:
    """The rule of ``skip_bias``: fewer than two dimensions, or a last key naming a bias."""
    name = leaf.path[-1]
    return len(leaf.shape) < 2 or (isinstance(name, str) and "bias" in name.lower())


def _build_step(
    backend: Backend[Any],
    spec: TreeSpec,
    fun: Callable[..., Any],
    k: int,
    gather: tuple[bool, ...],
    dtype: Any,
    vectorized: bool,
) -> Callable[..., Any]:
    """The update of one weight of tensor ``k``, as one (compiled) call.

    ``step(leaf, leaves, deltas, rows, j, index, stats, *data)`` evaluates the loss at the
    three trial tensors on the rows ``rows[j]`` of the data arguments flagged in ``gather``
    (or on ``data`` as given when ``rows`` is None), and returns the tensor with its element
    ``index`` moved by ``-deltas[j]``, 0 or ``deltas[j]``, the running ``stats`` (sum of the
    chosen losses, number of moves) and the chosen loss, all on the device.
    """
    leaf_dtype, device = spec.leaves[k].dtype, spec.leaves[k].device

    def loss(w: Any, leaves: list[Any], *data: Any) -> Any:
        params = list(leaves)
        params[k] = w
        return fun(spec.unflatten(params), *data)

    def as_loss(value: Any) -> Any:  # one plain call's loss as a (1,) flat-dtype tensor
        if backend.is_leaf(value):
            return backend.cast(backend.reshape(value, (1,)), dtype)
        return backend.from_numpy(np.asarray([float(value)]), device, dtype)

    batched = backend.vmap_fn(loss) if vectorized else None

    def step(
        leaf: Any,
        leaves: list[Any],
        deltas: Any,
        rows: Any,
        j: Any,
        index: Any,
        stats: Any,
        *data: Any,
    ) -> tuple[Any, Any, Any]:
        if rows is not None:
            picked = rows[j]
            data = tuple(backend.take(a, picked) if g else a for a, g in zip(data, gather))
        delta = deltas[j]
        trials = [leaf, backend.add_at(leaf, index, delta), backend.add_at(leaf, index, -delta)]
        if batched is not None:
            losses = batched(backend.stack(trials), leaves, *data)
            losses = backend.cast(backend.reshape(losses, (TRIALS,)), dtype)
        else:
            losses = backend.concat([as_loss(loss(w, leaves, *data)) for w in trials])
        losses = backend.where(losses == losses, losses, math.inf)  # NaN never wins
        now, up, down = losses[0], losses[1], losses[2]
        sign = backend.cast((up < now) & (up <= down), dtype) - backend.cast(
            (down < now) & (down < up), dtype
        )
        chosen = backend.minimum(now, backend.minimum(up, down))
        moved = backend.add_at(leaf, index, backend.cast(sign, leaf_dtype) * delta)
        return moved, stats + backend.stack([chosen, backend.abs(sign)]), chosen

    return backend.pure_fn(step, compiled=vectorized)


class RandomSearch:
    """One RSO run: the parameters (x0's leaves, copied), the generators and the counters.

    The state is consistent between any two weights, so that an interrupted or failed run
    can always report its current point (see :meth:`result`).
    """

    def __init__(
        self,
        backend: Backend[Any],
        spec: TreeSpec,
        fun: Callable[..., Any],
        args: tuple[Any, ...],
        settings: Settings,
        device: Any,
    ) -> None:
        self.backend, self.spec, self.fun, self.args = backend, spec, fun, args
        self.settings = settings
        self.device = device
        self.dtype = backend.flat_dtype(device)
        self.like = backend.from_numpy(np.zeros(1), device, self.dtype)
        self.seed = (
            settings.seed
            if settings.seed is not None
            else int(np.random.SeedSequence().generate_state(1)[0])
        )
        self.generator = backend.random_generator(self.seed, self.like)
        # The sampler's stream, independent of the device generator's.
        self.host_rng = np.random.default_rng([self.seed, 1])
        self.gather = tuple(i in settings.batched_args for i in range(len(args)))
        self.n_rows = self._rows() if settings.batched_args else 0
        self.order = [
            k
            for k in reversed(range(len(spec.leaves)))
            if spec.leaves[k].size > 0 and not (settings.skip_bias and is_bias(spec.leaves[k]))
        ]
        if not self.order:
            raise InvalidOptionError(
                "skip_bias skips every tensor of x0 (tensors with fewer than 2 dimensions or a "
                "key containing 'bias'): there is nothing to optimize"
            )
        rows = settings.batch_size or 1
        self.chunk = max(1, min(CHUNK_WEIGHTS, CHUNK_ROWS // rows))
        self.vectorized = settings.vectorize and backend.vmap_fn(lambda w: w) is not None
        self._steps: dict[int, Callable[..., Any]] = {}
        self._proven: set[int] = set()  # tensors whose step has run once
        self.leaves: list[Any] = []
        self.nfev = self.nit = 0
        self.last: Any = math.nan  # loss at the current point, on the last mini-batch
        self.history: dict[str, list[Any]] = {
            k: [] for k in ("round", "key", "sigma", "moved", "loss", "nfev")
        }

    # -- setup ------------------------------------------------------------------------------
    def _rows(self) -> int:
        """The number of samples in the batched args, checked to agree."""
        backend, n = self.backend, None
        for i in self.settings.batched_args:
            arg = self.args[i]
            shape = tuple(backend.leaf_meta(arg)[0]) if backend.is_leaf(arg) else None
            if not shape:
                raise InvalidOptionError(
                    f"args[{i}] is declared in options['batched_args'] but is "
                    f"{'a 0-d tensor' if shape == () else 'a ' + type(arg).__name__}; it must "
                    f"be a {backend.name} tensor with its samples along axis 0"
                )
            if n is not None and shape[0] != n:
                raise InvalidOptionError(
                    f"the batched args disagree on the number of samples: args[{i}] has "
                    f"{shape[0]} along axis 0, args[{self.settings.batched_args[0]}] has {n}"
                )
            n = shape[0]
        assert n is not None  # batched_args is not empty here
        if n == 0:
            raise InvalidOptionError("the batched args hold no samples (axis 0 has length 0)")
        return n

    def start(self, x0_leaves: list[Any]) -> None:
        """Copy x0 (validated and finite), re-initialize it if asked, and evaluate it."""
        backend, spec, st = self.backend, self.spec, self.settings
        host = [np.asarray(backend.to_numpy(v)) for v in x0_leaves]
        check_x0_finite(spec, np.concatenate([h.reshape(-1).astype(np.float64) for h in host]))
        # Fresh tensors: the run never writes to (or hands back) the caller's own.
        self.leaves = [
            backend.from_numpy(h, self.device, leaf.dtype) for h, leaf in zip(host, spec.leaves)
        ]
        if st.init == "gaussian":
            self._reinitialize()
        value = backend.pure_fn(self._loss_at_start, compiled=False)(self.leaves)
        self.nfev = 1
        self.last = self._first_loss(value)
        self._record(0, None, math.nan, 0, self.last)

    def _reinitialize(self) -> None:
        """He's Gaussian initialization, as in the paper: N(0, 2 / fan_in) for every tensor of
        two or more dimensions that RSO sweeps; ``fan_in = size / shape[out_axis]``."""
        backend, axis = self.backend, self.settings.out_axis
        for k in self.order:
            leaf = self.spec.leaves[k]
            if len(leaf.shape) < 2:
                continue
            if not -len(leaf.shape) <= axis < len(leaf.shape):
                raise InvalidOptionError(
                    f"options['out_axis'] = {axis} is not an axis of {format_path(leaf.path)} "
                    f"(shape {leaf.shape})"
                )
            std = math.sqrt(2.0 * leaf.shape[axis] / leaf.size)
            draw = backend.random_normal(self.generator, leaf.shape, self.like)
            self.leaves[k] = backend.cast(draw * std, leaf.dtype)

    def _loss_at_start(self, leaves: list[Any]) -> Any:
        backend = self.backend
        if self.settings.sampler is not None:
            data = self._sample()
        elif self.n_rows:
            rows = backend.random_integers(
                self.generator, self.n_rows, (self.settings.batch_size or 1,), self.like
            )
            data = tuple(backend.take(a, rows) if g else a for a, g in zip(self.args, self.gather))
        else:
            data = self.args
        return self.fun(self.spec.unflatten(leaves), *data)

    def _first_loss(self, value: Any) -> float:
        backend = self.backend
        if backend.is_leaf(value):
            shape = tuple(backend.leaf_meta(value)[0])
            if shape not in ((), (1,)):
                raise ObjectiveError(
                    f"the objective must return a scalar loss, got a tensor of shape {shape}; "
                    f"reduce it (e.g. with .sum() or .mean())"
                )
            loss = float(backend.host(value)[0])
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            loss = float(value)
        else:
            raise ObjectiveError(
                f"the objective returned a {type(value).__name__} where a scalar loss was "
                f"expected; with method='rso' it returns only the loss (no gradient)"
            )
        if not math.isfinite(loss):
            raise ObjectiveError(
                f"the objective is {loss} at x0"
                + (" on the first mini-batch" if self.n_rows or self.settings.sampler else "")
                + "; start from a point where it is finite"
            )
        return loss

    def _sample(self) -> tuple[Any, ...]:
        sampler = self.settings.sampler
        assert sampler is not None
        return (*as_args(sampler(self.host_rng)), *self.args)

    # -- the per-weight step ------------------------------------------------------------------
    def _make_step(self, k: int, vectorized: bool) -> Callable[..., Any]:
        # Built (and compiled) per run: a cache across runs would keep fun alive, and with it
        # whatever data its closure holds on the device.
        return _build_step(
            self.backend, self.spec, self.fun, k, self.gather, self.dtype, vectorized
        )

    def _call_step(self, k: int, *inputs: Any) -> tuple[Any, Any, Any]:
        step = self._steps.get(k)
        if step is None:
            step = self._steps[k] = self._make_step(k, self.vectorized)
        if k in self._proven or not self.vectorized:
            return step(*inputs)  # type: ignore[no-any-return]
        try:
            out = step(*inputs)
        except Exception as exc:  # fun cannot be vectorized (or compiled): plain calls
            self.vectorized = False
            self._steps.clear()
            step = self._steps[k] = self._make_step(k, False)
            out = step(*inputs)  # an error of fun itself raises here, unmasked
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            warnings.warn(
                f"fun could not be vectorized over the {TRIALS} trial points ({reason}); "
                f"calling it once per trial point instead (options['vectorize'] = False "
                f"skips the attempt)",
                DictMinimizeWarning,
                stacklevel=5,
            )
        self._proven.add(k)
        return out  # type: ignore[no-any-return]

    # -- the sweeps -----------------------------------------------------------------------------
    def run(self, callback: Callable[..., bool] | None, bar: Progress) -> tuple[int, str]:
        """All rounds; returns ``(status, message)``."""
        st = self.settings
        for rnd in range(1, st.rounds + 1):
            for k in self.order:
                status = self._sweep(k, rnd, bar)
                if status is None and callback is not None:
                    status = STATUS_CALLBACK if callback(self, rnd, k) else None
                if status is not None:
                    return status, self._message(status)
            self.nit = rnd
        return STATUS_DONE, self._message(STATUS_DONE)

    def _sweep(self, k: int, rnd: int, bar: Progress) -> int | None:
        """Every weight of tensor ``k`` once; a status when the budget runs out."""
        backend, st, leaf_spec = self.backend, self.settings, self.spec.leaves[k]
        size = leaf_spec.size
        flat = backend.cast(backend.reshape(self.leaves[k], (size,)), self.dtype)
        scale = st.sigma_scale
        if callable(scale):
            scale = scale(rnd)
            if not (isinstance(scale, numbers.Real) and 0 < float(scale) < math.inf):
                raise InvalidOptionError(
                    f"options['sigma_scale']({rnd}) must return a positive number, got {scale!r}"
                )
        sigma_t = backend.std(flat, size) * float(scale)
        if st.min_sigma > 0:
            sigma_t = backend.maximum(sigma_t, st.min_sigma)
        sigma = float(backend.host(sigma_t)[0])
        if not (sigma > 0 and math.isfinite(sigma)):  # a constant tensor: Δ would be 0
            self._record(rnd, leaf_spec.path, sigma, 0, self.last)
            bar.update(self.last)
            return None
        rows_per_weight = st.batch_size or 1
        chunk = min(size, self.chunk)
        stats = backend.zeros((2,), self.like)
        done, status = 0, None
        for start in range(0, size, chunk):
            # Same-shaped draws for every chunk (the last one partly unused): one compiled step.
            deltas = backend.cast(
                backend.random_normal(self.generator, (chunk,), self.like) * sigma_t,
                leaf_spec.dtype,
            )
            rows = (
                backend.random_integers(
                    self.generator, self.n_rows, (chunk, rows_per_weight), self.like
                )
                if self.n_rows
                else None
            )
            for j in range(min(chunk, size - start)):
                if st.maxfev is not None and self.nfev + TRIALS > st.maxfev:
                    status = STATUS_MAXFEV
                    break
                data = self._sample() if st.sampler is not None else self.args
                leaf, stats, self.last = self._call_step(
                    k, self.leaves[k], self.leaves, deltas, rows, j, start + j, stats, *data
                )
                self.leaves[k] = leaf
                self.nfev += TRIALS
                done += 1
            if status is not None:
                break
        if done:
            total, moved, last = backend.host(stats[0], stats[1], self.last)
            self.last = float(last)
            self._record(rnd, leaf_spec.path, sigma, int(moved), float(total) / done)
            bar.update(float(total) / done)
        return status

    def _record(self, rnd: int, key: Path | None, sigma: float, moved: int, loss: float) -> None:
        for name, value in zip(
            ("round", "key", "sigma", "moved", "loss", "nfev"),
            (rnd, key, sigma, moved, loss, self.nfev),
        ):
            self.history[name].append(value)

    def _message(self, status: int) -> str:
        if status == STATUS_DONE:
            n = sum(self.spec.leaves[k].size for k in self.order)
            return (
                f"completed {self.settings.rounds} round(s) over {n} weight(s) in "
                f"{len(self.order)} tensor(s)"
            )
        if status == STATUS_MAXFEV:
            maxfev = self.settings.maxfev
            return f"the maximum number of function evaluations (maxfev={maxfev}) is reached"
        return "stopped because callback raised StopIteration or returned True"

    # -- results ------------------------------------------------------------------------------
    def current_loss(self) -> float:
        if isinstance(self.last, float):
            return self.last
        return float(self.backend.host(self.last)[0])

    def result(self, status: int, message: str) -> MinimizeResult:
        """The current point (the best the run knows: every move it made was an improvement)."""
        fun = self.current_loss() if self.leaves else math.nan
        return MinimizeResult(
            x=self.spec.unflatten(list(self.leaves)) if self.leaves else None,
            fun=fun,
            jac=None,
            nit=self.nit,
            nfev=self.nfev,
            njev=0,
            success=status == STATUS_DONE,
            status=status,
            message=message,
            best_fun=fun,
            method="rso",
            seed=self.seed,
            history={name: list(values) for name, values in self.history.items()},
            scipy_result=None,
        )


def minimize(
    backend: Backend[Any],
    fun: Callable[..., Any],
    x0_dict: Mapping[Any, Any],
    *,
    lb_dict: Mapping[Any, Any] | None = None,
    ub_dict: Mapping[Any, Any] | None = None,
    args: Sequence[Any] = (),
    tol: float | None = None,
    callback: Callable[..., Any] | None = None,
    options: Mapping[str, Any] | None = None,
    hessp: Callable[..., Any] | None = None,
    constraints: Any = (),
    full_output: bool = False,
) -> Any:
    """``minimize(..., method="rso")`` of every api module (the algorithm: module docstring).

    Parameters
    ----------
    backend : Backend
        The framework adapter (bound by the api module).
    fun : callable
        ``fun(params, *args)`` returns the scalar loss (no gradient; ``jac`` is not used). The
        args named in ``options["batched_args"]`` hold a mini-batch of their rows; with
        ``options["sampler"]`` the call is ``fun(params, *sampler(rng), *args)``.
    x0_dict : Mapping
        The start, a (nested) dict of floating-point tensors; never modified.
    args : tuple
        Extra arguments of ``fun``.
    callback : callable, optional
        After each tensor's sweep: ``callback(params)``, or ``callback(intermediate_result)``
        (a :class:`~dict_minimize.MinimizeResult` with ``x``, ``fun``, ``nfev``, ``nit``,
        ``round``, ``key``, ``loss``) when its parameter has that name. Returning True or
        raising ``StopIteration`` stops the run (status -2).
    options : dict, optional
        ``rounds`` (10)
            Sweeps over every weight.
        ``batched_args``, ``batch_size``
            Indices of the args that hold samples along axis 0, and the rows each weight's
            evaluations see (drawn on the device, uniformly with replacement).
        ``sampler``
            Instead: ``sampler(rng) -> batch`` (a tuple of arguments, or one argument), with
            ``rng`` a ``numpy.random.Generator`` seeded from ``seed``; called once per weight.
        ``seed`` (None)
            Seeds every draw: the same seed gives the same run, bit for bit, on one backend
            and device. None draws a seed (reported as ``result.seed``).
        ``skip_bias`` (False)
            Leave alone every tensor with fewer than two dimensions or whose last key contains
            ``"bias"`` (see :func:`is_bias`).
        ``sigma_scale`` (1.0), ``min_sigma`` (0.0)
            ``σ = max(sigma_scale · std(tensor), min_sigma)``; ``sigma_scale`` may be a
            function of the round (1, 2, ...) to anneal σ. A tensor with σ = 0 (a scalar, a
            constant tensor) is not swept.
        ``init`` (None), ``out_axis`` (0)
            ``"gaussian"``: first re-draw every swept tensor of two or more dimensions from
            ``N(0, 2 / fan_in)`` (the paper's He initialization), ``fan_in = size /
            shape[out_axis]``: 0 for PyTorch's layout, -1 for Keras and Flax kernels.
        ``maxfev`` (None)
            Loss evaluations at most: 3 per weight, plus 1 at the start.
        ``vectorize`` (True)
            Evaluate the three trial points in one vmapped, compiled call; False calls ``fun``
            once per trial point, eagerly.
        ``progress`` (False)
            A tqdm bar, one tick per tensor sweep, with the mean chosen loss.
    full_output : bool
        Return the :class:`~dict_minimize.MinimizeResult` instead of the dict.

    Returns
    -------
    OrderedDict or MinimizeResult
        ``x`` (x0's layout, dtypes and device), ``fun`` (the loss at ``x`` on the last
        mini-batch), ``nfev``, ``nit`` (completed rounds), ``status`` (0 done, 1 ``maxfev``,
        -2 callback), ``success``, ``message``, ``seed`` and ``history``: per tensor sweep
        (the start first) its ``round``, ``key``, ``sigma``, ``moved`` (accepted moves),
        ``loss`` (the mean chosen loss) and ``nfev``.

    Raises
    ------
    InvalidOptionError, InvalidBoundsError, ObjectiveError
        For an unknown or malformed option, bounds, constraints, ``hessp`` or ``tol``, or a
        loss that is not a finite scalar at x0.
    OptimizationInterrupted
        On Ctrl-C, with the point reached in ``.result`` (status -2); an exception of ``fun``
        propagates with it in ``.result`` (status -3).

    Examples
    --------
    >>> import numpy as np
    >>> from dict_minimize.numpy_api import minimize
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> def mse(params, X, y):
    ...     return float(np.mean((X @ params["w"] - y) ** 2))
    >>> res = minimize(mse, {"w": rng.normal(size=3)}, args=(X, y), method="rso",
    ...                options={"rounds": 60, "seed": 0}, full_output=True)
    >>> res.status, res.nfev, res.fun < 0.01, all(np.diff(res.history["loss"]) <= 0)
    (0, 541, True, True)
    """
    if not callable(fun):
        raise InvalidOptionError(f"fun must be callable, got {type(fun).__name__}")
    if lb_dict is not None or ub_dict is not None:
        raise InvalidBoundsError(
            "method 'rso' does not handle bounds; clip inside fun, or use a bounded method "
            "such as L-BFGS-B, Powell or Nelder-Mead"
        )
    if hessp is not None:
        raise InvalidOptionError("method 'rso' uses no derivatives; drop hessp")
    if not (constraints is None or (isinstance(constraints, tuple | list) and not constraints)):
        raise InvalidOptionError(
            "method 'rso' does not handle constraints; use SLSQP, trust-constr, COBYLA or COBYQA"
        )
    if tol is not None:
        raise InvalidOptionError(
            "method 'rso' has no tolerance: it runs options['rounds'] rounds, or stops at "
            "options['maxfev'] evaluations"
        )
    if callback is not None and not callable(callback):
        raise InvalidOptionError(
            "callback must be callable: callback(params) or callback(intermediate_result)"
        )
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptionError(f"options must be a dict, got {type(options).__name__}")
    args = as_args(args)
    settings = parse_options(options or {}, len(args))
    spec, leaves, device = prepare(backend, x0_dict)
    search = RandomSearch(backend, spec, fun, args, settings, device)

    wants_result = callback is not None and _wants_result(callback)

    def on_sweep(run: RandomSearch, rnd: int, k: int) -> bool:
        assert callback is not None
        x = spec.unflatten(list(run.leaves))
        if wants_result:
            arg: Any = MinimizeResult(
                x=x,
                fun=run.last,
                nfev=run.nfev,
                nit=run.nit,
                round=rnd,
                key=spec.leaves[k].path,
                loss=run.history["loss"][-1],
            )
        else:
            arg = x
        try:
            return bool(callback(arg))
        except StopIteration:
            return True

    bar = Progress(settings.progress, settings.rounds * len(search.order), "rso")
    try:
        search.start(leaves)
        status, message = search.run(on_sweep if callback is not None else None, bar)
    except KeyboardInterrupt:
        raise OptimizationInterrupted(
            search.result(
                STATUS_INTERRUPTED,
                "interrupted by KeyboardInterrupt; x is the point reached (each move it made "
                "lowered the loss on its mini-batch)",
            )
        ) from None
    except Exception as exc:
        if search.nfev > 0 and not hasattr(exc, "result"):
            try:
                exc.result = search.result(  # type: ignore[attr-defined]
                    STATUS_OBJECTIVE_RAISED, f"the objective raised {exc!r}"
                )
                exc.add_note(
                    "dict_minimize: the point reached before this error is in the exception's "
                    ".result attribute"
                )
            except AttributeError:  # exceptions with __slots__
                pass
        raise
    finally:
        bar.close()
    result = search.result(status, message)
    return result if full_output else result.x
