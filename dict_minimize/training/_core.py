"""The framework-free part of ``fit``: data normalization, the least-squares call, validation
early stopping and the history. A framework adapter supplies the model as a pure function
``apply(params, inputs)`` of a params dict, and writes the result back into its model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult

from dict_minimize import _least_squares
from dict_minimize._errors import InvalidOptionError, InvalidParamsError, OptimizationInterrupted
from dict_minimize.backends._protocol import Backend
from dict_minimize.distributed._collective import resolve as resolve_collective


@dataclass(frozen=True)
class Scaling:
    """``x_normalized = (x - offset) * gain``, per feature (MATLAB ``mapminmax`` to [-1, 1])."""

    offset: np.ndarray
    gain: np.ndarray

    @staticmethod
    def fit(
        data: np.ndarray,
        extrema: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Scaling:
        """The map taking each column of ``data`` (samples along axis 0) onto [-1, 1];
        ``extrema`` combines the columns' (min, max) with other shards' in a data-parallel fit."""
        flat = data.reshape(data.shape[0], -1)
        low, high = flat.min(axis=0), flat.max(axis=0)
        if extrema is not None:
            low, high = extrema(low, high)
        span = high - low
        # A constant feature is left unscaled (mapminmax passes it through too).
        gain = np.where(span > 0, 2.0 / np.where(span > 0, span, 1.0), 1.0)
        offset = np.where(span > 0, low + span / 2.0, 0.0)
        shape = data.shape[1:]
        return Scaling(offset.reshape(shape), gain.reshape(shape))


class FitResult(OptimizeResult):  # type: ignore[misc]
    """What ``fit`` returns.

    Attributes
    ----------
    params : OrderedDict
        The trained parameters (already written into the model), in the model's dtypes.
    history : dict of list
        Per epoch (the start included): ``"loss"`` (training MSE in the targets' units),
        ``"val_loss"`` (with validation data) and ``"mu"``.
    best_epoch : int
        The epoch whose weights were kept (the best validation loss, else the last).
    stop_reason : str
        Why training stopped (goal met, min_grad, max_fail, epochs, or the solver's message).
    result : LeastSquaresResult
        The underlying least-squares result.
    input_scaling, target_scaling : Scaling or None
        The normalizations used (folded into the model's first and last layers).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


@dataclass
class _Tracker:
    """Validation early stopping and the history, updated after each epoch."""

    val: Callable[[Any], float] | None
    goal: float
    min_grad: float
    max_fail: int
    mse_factor: float
    bar: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    best_val: float = math.inf
    best_x: Any = None
    best_epoch: int = 0
    fails: int = 0
    reason: str = ""

    def update(self, x: Any, cost: float, epoch: int, mu: float, optimality: float) -> bool:
        """Record an epoch; True to stop."""
        mse = cost * self.mse_factor
        self.history.setdefault("loss", []).append(mse)
        self.history.setdefault("mu", []).append(mu)
        if self.val is not None:
            val = self.val(x)
            self.history.setdefault("val_loss", []).append(val)
            if val < self.best_val:
                self.best_val, self.best_x, self.best_epoch, self.fails = val, x, epoch, 0
            else:
                self.fails += 1
        if self.bar is not None:
            shown = {"mse": f"{mse:.4g}", "mu": f"{mu:.1e}"}
            if self.val is not None:
                shown["val"] = f"{self.history['val_loss'][-1]:.4g}"
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1 if epoch else 0)
        if mse <= self.goal:
            self.reason = f"performance goal met (training MSE {mse:.4g} <= goal {self.goal:g})"
        elif optimality <= self.min_grad:
            self.reason = f"minimum gradient reached ({optimality:.3g} <= min_grad)"
        elif self.val is not None and self.fails >= self.max_fail:
            self.reason = (
                f"validation stop: the validation MSE did not improve for {self.max_fail} "
                f"epochs; the weights of epoch {self.best_epoch} are restored"
            )
        return bool(self.reason)


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (float(value) >= 0 if allow_zero else float(value) > 0)
    )
    if not ok or not math.isfinite(float(value)):
        raise InvalidOptionError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )
    return float(value)


def fit_params(
    backend: Backend[Any],
    apply: Callable[[Any, Any], Any],
    params0: Mapping[str, Any],
    inputs: Any,
    targets: Any,
    *,
    val_data: tuple[Any, Any] | None,
    epochs: int,
    goal: float,
    min_grad: float,
    mu: float,
    mu_dec: float,
    mu_inc: float,
    mu_max: float,
    max_fail: int,
    normalize: bool,
    progress: bool,
    chunk_size: int | None,
    fold: Callable[[Any, Scaling | None, Scaling | None], Any] | None,
    damping: str = "marquardt",
    geodesic: bool = True,
    distributed: Any = None,
    devices: Any = None,
    checkpoint: Any = None,
    checkpoint_every: int = 1,
    resume: Any = None,
) -> FitResult:
    """Train ``params0`` so that ``apply(params, inputs)`` matches ``targets`` (MSE, LM).

    ``fold(params, input_scaling, target_scaling)`` turns parameters trained on normalized
    data into parameters for raw data (the adapter knows the model's first and last layers).
    ``distributed`` and ``devices`` are ``least_squares``' options of those names: in a
    data-parallel fit each rank's data (training and validation) is its shard, and the
    scalings, the MSE and the validation MSE are taken over all shards.
    """
    if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 1:
        raise InvalidOptionError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(max_fail, numbers.Integral) or max_fail < 1:
        raise InvalidOptionError(f"max_fail must be a positive integer, got {max_fail!r}")
    goal = _positive("goal", goal, allow_zero=True)
    min_grad = _positive("min_grad", min_grad, allow_zero=True)
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not backend.is_leaf(value):
            raise InvalidParamsError(
                f"{name} must be a {backend.name} tensor, got {type(value).__name__}"
            )
    n_in, n_out = backend.leaf_meta(inputs)[0], backend.leaf_meta(targets)[0]
    if len(n_in) == 0 or len(n_out) == 0 or n_in[0] != n_out[0]:
        raise InvalidParamsError(
            f"inputs {tuple(n_in)} and targets {tuple(n_out)} must hold the same number of "
            f"samples along axis 0"
        )
    device = backend.leaf_meta(inputs)[2]
    collective = resolve_collective(
        backend, distributed, per_sample=True, method="lm", device=device
    )

    def total(compute: Callable[[], Any]) -> float:
        """A device scalar summed over the ranks (this process's alone when not distributed)."""
        if collective is None:
            return float(backend.host(compute())[0])
        return collective.total(compute)

    def count(value: float) -> float:
        return value if collective is None else float(collective.host_sum(np.array([value]))[0])

    in_dtype, out_dtype = backend.leaf_meta(inputs)[1], backend.leaf_meta(targets)[1]

    def on_device(array: np.ndarray, dtype: Any) -> Any:
        return backend.from_numpy(array, device, dtype)

    x_scale = y_scale = None
    x_train = inputs
    predict: Callable[[Any, Any], Any] = apply
    if normalize:
        if fold is None:
            raise InvalidOptionError("normalize=True is not available for this model")
        extrema = None if collective is None else collective.host_extrema
        x_scale = Scaling.fit(np.asarray(backend.to_numpy(inputs), dtype=np.float64), extrema)
        y_scale = Scaling.fit(np.asarray(backend.to_numpy(targets), dtype=np.float64), extrema)
        x_off, x_gain = on_device(x_scale.offset, in_dtype), on_device(x_scale.gain, in_dtype)
        y_off = on_device(y_scale.offset, out_dtype)
        y_inv_gain = on_device(1.0 / y_scale.gain, out_dtype)
        x_train = (inputs - x_off) * x_gain

        def predict(params: Any, x: Any) -> Any:
            # Errors in the targets' units, as trainlm computes them through mapminmax.
            return apply(params, x) * y_inv_gain + y_off

    def residual_fn(params: Any, x: Any, y: Any) -> Any:
        return predict(params, x) - y

    # cost = ½ Σ r², so the MSE is cost · 2 / (samples · outputs).
    mse_factor = 2.0 / count(float(math.prod(n_out)))

    val_fn = None
    if val_data is not None:
        if not (isinstance(val_data, tuple | list) and len(val_data) == 2):
            raise InvalidOptionError("val_data must be a pair (inputs, targets)")
        xv, yv = val_data
        if not (backend.is_leaf(xv) and backend.is_leaf(yv)):
            raise InvalidParamsError(f"val_data must hold two {backend.name} tensors")
        if normalize:
            xv = (xv - x_off) * x_gain
        val_count = count(float(math.prod(backend.leaf_meta(yv)[0])))

        def val_fn(params: Any) -> float:
            def squares() -> Any:
                r = predict(params, xv) - yv
                return backend.sum(r * r)

            return total(squares) / val_count

    if damping == "marquardt":  # trainlm: (JᵀJ + mu·I), mu absolute
        damping_options: dict[str, Any] = {
            "damping": "marquardt",
            "x_scale": 1.0,
            "mu": mu,
            "mu_dec": mu_dec,
            "mu_inc": mu_inc,
            "mu_max": mu_max,
        }
    elif damping == "nielsen":  # (JᵀJ + mu·diag(JᵀJ)), mu relative
        damping_options = {"damping": "nielsen", "x_scale": "jac", "mu": mu}
    else:
        raise InvalidOptionError(f"damping must be 'marquardt' or 'nielsen', got {damping!r}")

    bar = None
    if progress and (collective is None or collective.rank == 0):
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="fit (LM)", unit="epoch", dynamic_ncols=True)
    tracker = _Tracker(val_fn, goal, min_grad, int(max_fail), mse_factor, bar)

    def squares0() -> Any:
        r0 = residual_fn(params0, x_train, targets)
        return backend.sum(r0 * r0)

    fit_state = None
    if checkpoint is not None or resume is not None:  # the tracker goes into the checkpoints
        from dict_minimize._minimize import prepare
        from dict_minimize.training._checkpoint import FitCheckpoint

        spec, _, params_device = prepare(backend, params0)
        fit_state = FitCheckpoint(tracker, backend, spec, params_device)
    # Resumed, the tracker's state (epoch 0 included) comes from the checkpoint.
    cost0 = 0.5 * total(squares0) if resume is None else math.inf
    if resume is None and tracker.update(params0, cost0, 0, mu, math.inf):  # goal met already
        if bar is not None:
            bar.close()
        start = fold(params0, x_scale, y_scale) if normalize and fold is not None else params0
        return FitResult(
            params=start,
            history=tracker.history,
            best_epoch=0,
            stop_reason=tracker.reason,
            result=None,
            input_scaling=None,
            target_scaling=None,
        )

    # The group resolved above (or none: the run must not find one by itself), or the devices.
    scale_out: dict[str, Any] = {"distributed": False if collective is None else distributed}
    if devices is not None:
        scale_out["devices"] = devices

    def callback(intermediate_result: Any) -> bool:
        res = intermediate_result
        return tracker.update(res.x, res.cost, res.nit, res.damping, res.optimality)

    try:
        result = _least_squares.least_squares(
            backend,
            residual_fn,
            params0,
            args=(x_train, targets),
            ftol=0.0,
            xtol=1e-15,
            gtol=0.0,
            max_nfev=100 * epochs + 100,
            callback=callback,
            options={
                "in_axes": (0, 0),
                "chunk_size": chunk_size,
                "max_iter": int(epochs),
                "max_retries": 1000,
                "geodesic": bool(geodesic),
                **damping_options,
                **scale_out,
                **({} if checkpoint is None else {"checkpoint": checkpoint}),
                **({} if checkpoint is None else {"checkpoint_every": checkpoint_every}),
                **({} if resume is None else {"resume": resume}),
            },
            checkpoint_extra=fit_state,
        )
    except (Exception, OptimizationInterrupted) as exc:
        # The error carries the fit so far: the best weights (folded), history and result.
        partial = getattr(exc, "result", None)
        if partial is not None and hasattr(partial, "cost"):
            best = tracker.best_x if tracker.best_x is not None else partial.x
            if normalize and fold is not None:
                best = fold(best, x_scale, y_scale)
            exc.result = FitResult(  # type: ignore[union-attr]
                params=best,
                history=tracker.history,
                best_epoch=tracker.best_epoch if tracker.best_x is not None else partial.nit,
                stop_reason=partial.message,
                result=partial,
                input_scaling=x_scale,
                target_scaling=y_scale,
            )
        raise
    finally:
        if bar is not None:
            bar.close()
    params = result.x
    if val_fn is not None and tracker.best_x is not None:
        params = tracker.best_x
        best_epoch = tracker.best_epoch
    else:
        best_epoch = result.nit
    reason = tracker.reason or (
        f"maximum epochs ({epochs}) reached" if result.nit >= epochs else result.message
    )
    if normalize and fold is not None:
        params = fold(params, x_scale, y_scale)
    return FitResult(
        params=params,
        history=tracker.history,
        best_epoch=best_epoch,
        stop_reason=reason,
        result=result,
        input_scaling=x_scale,
        target_scaling=y_scale,
    )
