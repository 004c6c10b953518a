"""The contenders of the least-squares benchmark, one function per (library, case).

Each builder takes the case's NumPy data and returns a :class:`Contender`: a callable doing
one complete run from the shared initial weights, plus a short warm-up (a tracing framework
compiles there when it can cache across calls). A run returns a :class:`Run`: the MSE after
each Jacobian (index 0 is the start), the number of Jacobians and the final MSE. Builders of
libraries that are not installed raise :class:`Unavailable` with the reason, which the
benchmark records instead of a result.

Counting: one *Jacobian* is one evaluation of the full Jacobian (or of ``JᵀJ`` and ``Jᵀr``
from it). Rejected trial steps cost only residual evaluations for every contender except
optimistix, whose every step re-linearizes and materializes J; its steps are counted as
Jacobians.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _ls_problems as P
import numpy as np

#: Settings of ``fit`` (MATLAB trainlm's algorithm plus geodesic acceleration), for the
#: frameworks that call ``least_squares`` directly with them.
FIT_OPTIONS: dict[str, Any] = {
    "damping": "marquardt",
    "x_scale": 1.0,
    "mu": 1e-3,
    "mu_dec": 0.1,
    "mu_inc": 10.0,
    "mu_max": 1e10,
    "max_retries": 1000,
    "geodesic": True,
}
#: Tolerances that never stop a fixed-budget run (cases A and B).
NO_STOP = {"ftol": 0.0, "xtol": 1e-15, "gtol": 0.0}
#: Tolerances of every contender of case C (scipy's defaults).
TOL_C = 1e-8
#: Where the framework contenders (ours, torch-levenberg-marquardt, the JAX peers) put their
#: tensors: "cpu", or "cuda" for the first GPU (``least_squares_cases.py --device``).
DEVICE = os.environ.get("LS_BENCH_DEVICE", "cpu")


class Unavailable(Exception):
    """A contender that cannot run here; the message says why."""


@dataclass
class Run:
    """What one run produced."""

    mse: list[float]  # MSE after 0, 1, 2, ... Jacobians
    njev: int
    final_mse: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Contender:
    """One library configured for one case."""

    name: str
    kind: str  # "ours", "peer" or "baseline"
    framework: str
    run: Callable[[], Run]
    warmup: Callable[[], Any] | None = None
    note: str = ""


def need(module: str) -> Any:
    """Import ``module`` or raise :class:`Unavailable`."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install failing at import
        raise Unavailable(f"`import {module}` fails: {type(exc).__name__}: {exc}") from exc


def version(dist: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- framework mirrors of the models --------------------------------------------------------------
def torch_mlp(p: dict[str, Any], x: Any) -> Any:
    """The tanh MLP on torch tensors."""
    import torch

    layers = len(p) // 2
    h = x
    for i in range(layers):
        h = h @ p[f"w{i}"] + p[f"b{i}"]
        if i < layers - 1:
            h = torch.tanh(h)
    return h


def jax_mlp(p: dict[str, Any], x: Any) -> Any:
    """The tanh MLP on JAX arrays."""
    import jax.numpy as jnp

    layers = len(p) // 2
    h = x
    for i in range(layers):
        h = h @ p[f"w{i}"] + p[f"b{i}"]
        if i < layers - 1:
            h = jnp.tanh(h)
    return h


def tf_mlp(p: dict[str, Any], x: Any) -> Any:
    """The tanh MLP on TensorFlow tensors."""
    import tensorflow as tf

    layers = len(p) // 2
    h = x
    for i in range(layers):
        h = tf.matmul(h, p[f"w{i}"]) + p[f"b{i}"]
        if i < layers - 1:
            h = tf.tanh(h)
    return h


def torch_sequential(data: P.FitData) -> Any:
    """``nn.Sequential`` of Linear/Tanh in float64 holding ``data.weights``."""
    import torch

    layers: list[Any] = []
    count = len(data.sizes) - 1
    for i in range(count):
        lin = torch.nn.Linear(data.sizes[i], data.sizes[i + 1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(data.weights[f"w{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(data.weights[f"b{i}"].copy()))
        layers.append(lin)
        if i < count - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).to(DEVICE)


def torch_curve(p: dict[str, Any], t: Any) -> Any:
    """Case C's model on torch tensors (a dict of length-2 tensors)."""
    import torch

    out = torch.zeros_like(t)
    for k in range(2):
        out = out + p["amp_exp"][k] * torch.exp(-p["rate"][k] * t)
        out = out + p["amp_gauss"][k] * torch.exp(
            -0.5 * ((t - p["center"][k]) / p["width"][k]) ** 2
        )
    return out


def jax_curve(p: dict[str, Any], t: Any) -> Any:
    """Case C's model on JAX arrays."""
    import jax.numpy as jnp

    out = jnp.zeros_like(t)
    for k in range(2):
        out = out + p["amp_exp"][k] * jnp.exp(-p["rate"][k] * t)
        out = out + p["amp_gauss"][k] * jnp.exp(-0.5 * ((t - p["center"][k]) / p["width"][k]) ** 2)
    return out


def tf_curve(p: dict[str, Any], t: Any) -> Any:
    """Case C's model on TensorFlow tensors."""
    import tensorflow as tf

    out = tf.zeros_like(t)
    for k in range(2):
        out = out + p["amp_exp"][k] * tf.exp(-p["rate"][k] * t)
        out = out + p["amp_gauss"][k] * tf.exp(-0.5 * ((t - p["center"][k]) / p["width"][k]) ** 2)
    return out


# -- how each network case is posed ---------------------------------------------------------------
@dataclass(frozen=True)
class NetCase:
    """A network case as the contenders see it.

    ``normalized``: solvers without their own normalization get mapminmax-scaled inputs and
    a model whose output is mapped back to the targets' units, as ``fit(normalize=True)``
    trains (case A). Case B's data are normalized already (``normalized=False``).
    """

    data: P.FitData
    jacobians: int
    normalized: bool

    @property
    def x_in(self) -> np.ndarray:
        """Inputs as the solver sees them."""
        return self.data.x_scaling.apply(self.data.x) if self.normalized else self.data.x

    @property
    def out_map(self) -> tuple[float, float]:
        """``(1/gain, offset)``: network output to target units."""
        if not self.normalized:
            return 1.0, 0.0
        s = self.data.y_scaling
        return float(1.0 / s.gain[0]), float(s.offset[0])

    def mse_of(self, flat: np.ndarray) -> float:
        """MSE (targets' units) of flat weights, in NumPy."""
        inv, off = self.out_map
        pred = P.mlp(P.unflatten(flat, self.data.sizes), self.x_in) * inv + off
        return float(np.mean((pred - self.data.y) ** 2))


def _samples(case: NetCase) -> int:
    return int(case.data.y.shape[0])


# -- this project ---------------------------------------------------------------------------------
def ours_torch_fit(case: NetCase) -> Contender:
    """``torch_api.fit`` on an ``nn.Sequential``; ``normalize`` when the case is normalized."""
    need("torch")
    from dict_minimize.torch_api import fit

    data = case.data

    def run(epochs: int = case.jacobians) -> Run:
        net = torch_sequential(data)
        x, y = _torch(data.x), _torch(data.y)
        out = fit(net, x, y, epochs=epochs, normalize=case.normalized, min_grad=0.0)
        hist = [float(v) for v in out.history["loss"]]
        return Run(hist, int(out.result.njev), hist[-1], {"nfev": int(out.result.nfev)})

    return Contender("ours torch fit", "ours", "torch", run, lambda: run(2), "trainlm + geodesic")


def _torch(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(DEVICE)


def _jax(a: np.ndarray) -> Any:
    """A float64 JAX array on :data:`DEVICE`."""
    import jax

    return jax.device_put(np.asarray(a, dtype=np.float64), jax.devices(DEVICE)[0])


def _tf(a: np.ndarray) -> Any:
    """A float64 TensorFlow tensor on :data:`DEVICE`."""
    import tensorflow as tf

    with tf.device("/GPU:0" if DEVICE == "cuda" else "/CPU:0"):
        return tf.constant(np.asarray(a, dtype=np.float64))


def host(tensor: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor of any framework, on any device."""
    if hasattr(tensor, "detach"):  # torch
        tensor = tensor.detach().cpu()
    return np.asarray(tensor, dtype=np.float64)


def _ours_ls(
    framework: str, case: NetCase, options: dict[str, Any], label: str, note: str
) -> Contender:
    """``<framework>_api.least_squares`` with per-sample Jacobians (``in_axes``)."""
    module = need(f"dict_minimize.{framework}_api")
    inv, off = case.out_map
    data = case.data
    if framework == "torch":
        conv, model = _torch, torch_mlp
    elif framework == "jax":
        conv, model = _jax, jax_mlp
    else:
        conv, model = _tf, tf_mlp
    x, y = conv(case.x_in), conv(data.y)

    def residual_fn(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        return model(p, xb) * inv + off - yb

    def run(iters: int = case.jacobians) -> Run:
        x0 = {k: conv(v) for k, v in data.weights.items()}
        mses: list[float] = []
        m = _samples(case)

        def callback(intermediate_result: Any) -> None:
            mses.append(2.0 * intermediate_result.cost / m)

        res = module.least_squares(
            residual_fn,
            x0,
            args=(x, y),
            callback=callback,
            max_nfev=100 * iters + 100,
            **NO_STOP,
            options={"in_axes": (0, 0), "max_iter": iters, **options},
        )
        hist = [2.0 * res.history["cost"][0] / m, *mses]
        return Run(hist, int(res.njev), 2.0 * res.cost / m, {"nfev": int(res.nfev)})

    return Contender(label, "ours", framework, run, lambda: run(2), note)


def ours_ls_fit_settings(framework: str, case: NetCase) -> Contender:
    """``least_squares`` with ``fit``'s settings (trainlm damping, geodesic acceleration)."""
    return _ours_ls(
        framework,
        case,
        dict(FIT_OPTIONS),
        f"ours {framework} least_squares (fit settings)",
        "trainlm + geodesic",
    )


def ours_ls_default(framework: str, case: NetCase, geodesic: bool = False) -> Contender:
    """``least_squares`` with its defaults (Nielsen damping, Marquardt scaling)."""
    label = f"ours {framework} least_squares" + (" +geodesic" if geodesic else "")
    options = {"geodesic": True} if geodesic else {}
    note = "Nielsen, D=diag(JᵀJ)" + (" + geodesic" if geodesic else "")
    return _ours_ls(framework, case, options, label, note)


# -- scipy (host), Jacobian from torch per-sample reverse mode ------------------------------------
class _Budget(Exception):
    """Raised from the Jacobian callback once the budget of Jacobians is spent."""


def scipy_net(case: NetCase, method: str) -> Contender:
    """``scipy.optimize.least_squares`` (MINPACK ``lm`` or ``trf``) on the flat weights; J by
    ``torch.func.vmap(jacrev)`` per sample, handed over as a host array."""
    torch = need("torch")
    from scipy.optimize import least_squares

    inv, off = case.out_map
    sizes = case.data.sizes
    x, y = _torch(case.x_in).cpu(), _torch(case.data.y).cpu()  # scipy works on the host
    keys = P.weight_keys(sizes)
    shapes = [P.unflatten(case.data.flat_weights(), sizes)[k].shape for k in keys]
    splits = [math.prod(s) for s in shapes]

    def residual(flat: Any, xb: Any, yb: Any) -> Any:
        parts = torch.split(flat, splits)
        p = {k: t.reshape(s) for k, t, s in zip(keys, parts, shapes)}
        return (torch_mlp(p, xb) * inv + off - yb).reshape(-1)

    per_sample = torch.func.vmap(
        torch.func.jacrev(lambda f, xs, ys: residual(f, xs[None], ys[None])),
        in_dims=(None, 0, 0),
    )

    def fun(flat: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return residual(torch.from_numpy(flat), x, y).numpy()

    def run(budget: int = case.jacobians) -> Run:
        m = _samples(case)
        best = [math.inf]
        hist: list[float] = []
        count = [0]

        def tracked(flat: np.ndarray) -> np.ndarray:
            r = fun(flat)
            best[0] = min(best[0], float(r @ r) / m)
            return r

        def jac(flat: np.ndarray) -> np.ndarray:
            hist.append(best[0])  # the MSE reached with the Jacobians so far
            if count[0] >= budget:
                raise _Budget
            count[0] += 1
            return per_sample(torch.from_numpy(flat), x, y).reshape(m, -1).numpy()

        status = "budget"
        with contextlib.suppress(_Budget):
            res = least_squares(
                tracked,
                case.data.flat_weights(),
                jac=jac,
                method=method,
                ftol=1e-15,
                xtol=1e-15,
                gtol=1e-15,
                max_nfev=100 * budget + 100,
            )
            status = f"stopped: {res.message}"
            hist.append(best[0])
        return Run(hist, count[0], best[0], {"status": status})

    return Contender(
        f"scipy least_squares {method}{' (MINPACK)' if method == 'lm' else ''}",
        "peer",
        "scipy",
        run,
        lambda: run(2),
        "J from torch vmap(jacrev)",
    )


# -- torch-levenberg-marquardt --------------------------------------------------------------------
def torch_lm(case: NetCase, normalized: bool) -> Contender:
    """torch-levenberg-marquardt's ``LevenbergMarquardtModule`` with its defaults (QR solve,
    standard damping), one ``training_step`` per Jacobian on the whole batch."""
    need("torch")
    tlm = need("torch_levenberg_marquardt")
    data = case.data
    if normalized:
        xs, ys = data.x_scaling, data.y_scaling
        x, y = _torch(xs.apply(data.x)), _torch(ys.apply(data.y))
        to_raw = float(1.0 / ys.gain[0] ** 2)
    else:
        x, y = _torch(data.x), _torch(data.y)
        to_raw = 1.0

    def run(steps: int = case.jacobians) -> Run:
        net = torch_sequential(data)
        module = tlm.training.LevenbergMarquardtModule(net)
        hist = [float(((net(x) - y) ** 2).mean().detach()) * to_raw]
        for _ in range(steps):
            _, loss, stop, _ = module.training_step(x, y)
            hist.append(float(loss) * to_raw)
            if stop:
                break
        return Run(hist, len(hist) - 1, hist[-1])

    label = "torch-levenberg-marquardt" + (" (normalized data)" if normalized else "")
    note = "QR" if normalized else "QR, raw data"
    return Contender(label, "peer", "torch", run, lambda: run(2), note)


# -- tf-levenberg-marquardt -----------------------------------------------------------------------
def tf_lm(case: NetCase, max_rows: int) -> Contender:
    """tf-levenberg-marquardt's ``Trainer`` on a float64 Keras model (its defaults but
    ``jacobian_max_num_rows``)."""
    tf = need("tensorflow")
    keras = need("keras")
    tflm = need("tf_levenberg_marquardt")
    data = case.data
    x = tf.constant(data.x, tf.float64)
    y = tf.constant(data.y, tf.float64)

    def build() -> Any:
        # The trainer allocates JᵀJ in ``model.dtype``, the float policy when the model was
        # built: float64 must be Keras's floatx then.
        floatx = keras.config.floatx()
        keras.config.set_floatx("float64")
        try:
            return _build()
        finally:
            keras.config.set_floatx(floatx)

    def _build() -> Any:
        layers: list[Any] = [keras.Input((data.sizes[0],), dtype="float64")]
        count = len(data.sizes) - 1
        for i in range(count):
            layers.append(
                keras.layers.Dense(
                    data.sizes[i + 1], activation="tanh" if i < count - 1 else None, dtype="float64"
                )
            )
        model = keras.Sequential(layers)
        model.set_weights([data.weights[k] for k in P.weight_keys(data.sizes)])
        return model

    def run(steps: int = case.jacobians) -> Run:
        model = build()
        trainer = tflm.training.Trainer(
            model,
            # A fresh optimizer per model: the default argument is one SGD instance made at
            # import, which Keras 3 binds to the first model's variables only.
            optimizer=keras.optimizers.SGD(learning_rate=1.0),
            loss=tflm.loss.MeanSquaredError(),
            jacobian_max_num_rows=max_rows,
        )
        trainer.backup_variables()
        hist = [float(tf.reduce_mean((model(x) - y) ** 2))]
        for _ in range(steps):
            loss, _, _, stop = trainer.train_step(x, y)
            hist.append(float(loss))
            if bool(stop):
                break
        return Run(hist, len(hist) - 1, hist[-1])

    return Contender(
        "tf-levenberg-marquardt",
        "peer",
        "tensorflow",
        run,
        lambda: run(2),
        f"QR, {max_rows} Jacobian rows at a time, raw data",
    )


# -- JAX peers ------------------------------------------------------------------------------------
def _jax_net(case: NetCase) -> tuple[Any, Any, Any, Any]:
    """(residual(flat, x, y), per-sample Jacobian(flat, x, y), x, y) in JAX."""
    import jax
    import jax.numpy as jnp

    inv, off = case.out_map
    sizes = case.data.sizes
    keys = P.weight_keys(sizes)
    shapes = [P.unflatten(case.data.flat_weights(), sizes)[k].shape for k in keys]
    cuts = np.cumsum([math.prod(s) for s in shapes])[:-1].tolist()

    def residual(flat: Any, xb: Any, yb: Any) -> Any:
        parts = jnp.split(flat, cuts)
        p = {k: t.reshape(s) for k, t, s in zip(keys, parts, shapes)}
        return (jax_mlp(p, xb) * inv + off - yb).reshape(-1)

    one = jax.grad(lambda f, xs, ys: residual(f, xs[None], ys[None])[0])
    per_sample = jax.vmap(one, in_axes=(None, 0, 0))
    return residual, per_sample, _jax(case.x_in), _jax(case.data.y)


def jaxopt_net(case: NetCase) -> Contender:
    """jaxopt's ``LevenbergMarquardt`` with a per-sample reverse-mode ``jac_fun``, a
    materialized Jacobian and Cholesky; its jitted ``update`` is stepped from Python so the
    Jacobians can be counted (one per accepted step, plus the start)."""
    jax = need("jax")
    jaxopt = need("jaxopt")
    import jax.numpy as jnp

    residual, per_sample, x, y = _jax_net(case)
    solver = jaxopt.LevenbergMarquardt(
        residual_fun=residual,
        jac_fun=per_sample,
        materialize_jac=True,
        solver="cholesky",
        maxiter=10 * case.jacobians,
        xtol=1e-15,
        gtol=1e-15,
    )
    # jaxopt 0.8.5 sets its private ``_jac_fun`` only when ``jac_fun`` is None (with
    # ``materialize_jac=True``), so a given ``jac_fun`` fails with AttributeError; set it as
    # jaxopt's own ``__post_init__`` would.
    solver._jac_fun = per_sample
    init = jax.jit(solver.init_state)
    update = jax.jit(solver.update)
    m = _samples(case)

    def run(budget: int = case.jacobians) -> Run:
        params = _jax(case.data.flat_weights())
        state = init(params, x, y)
        hist = [2.0 * float(state.value) / m]
        jacobians = 1
        for _ in range(20 * budget):
            if jacobians > budget:
                break
            new, state = update(params, state, x, y)
            if bool(jnp.any(new != params)):  # accepted: a new Jacobian was formed
                jacobians += 1
                hist.append(2.0 * float(state.value) / m)
            params = new
        return Run(hist, jacobians, hist[-1])

    note = "per-sample jac_fun, Cholesky"
    return Contender("jaxopt LevenbergMarquardt", "peer", "jax", run, lambda: run(2), note)


def optimistix_net(case: NetCase) -> Contender:
    """optimistix's ``LevenbergMarquardt`` (defaults: QR, forward-mode linearization) run for
    as many steps as the others get Jacobians (each step re-linearizes and materializes J)."""
    jax = need("jax")
    optx = need("optimistix")
    import jax.numpy as jnp

    residual, _, x, y = _jax_net(case)
    m = _samples(case)
    losses: list[float] = []

    def record(**kwargs: Any) -> None:
        loss = kwargs["loss_last_accepted_step"][1]
        jax.debug.callback(lambda v: losses.append(2.0 * float(v) / m), loss)

    def fn(flat: Any, args: Any) -> Any:
        return residual(flat, *args)

    solver = optx.LevenbergMarquardt(rtol=1e-15, atol=1e-15, verbose=record)
    y0 = _jax(case.data.flat_weights())

    def run(steps: int = case.jacobians) -> Run:
        losses.clear()
        sol = optx.least_squares(fn, solver, y0, args=(x, y), max_steps=steps, throw=False)
        final = 2.0 * float(0.5 * jnp.sum(residual(sol.value, x, y) ** 2)) / m
        hist = [*losses[1:], final] if losses else [final]
        hist = [2.0 * float(0.5 * jnp.sum(residual(y0, x, y) ** 2)) / m, *hist]
        stats = {k: int(v) for k, v in sol.stats.items() if np.ndim(v) == 0}
        return Run(hist, int(stats.get("num_steps", steps)), final, stats)

    return Contender(
        "optimistix LevenbergMarquardt",
        "peer",
        "jax",
        run,
        lambda: run(case.jacobians),
        "QR, jax.linearize per step",
    )


# -- pyrenn ---------------------------------------------------------------------------------------
def pyrenn_net(case: NetCase) -> Contender:
    """pyrenn's ``train_LM`` (NumPy; it scales inputs and targets by their largest magnitude)
    from the same weights, reordered into its layout."""
    pyrenn = need("pyrenn")
    data = case.data
    n_layers = len(data.sizes) - 1

    def weights_vector() -> np.ndarray:
        parts = []
        for i in range(n_layers):  # pyrenn: (out, in) matrices in Fortran order, then bias
            parts.append(data.weights[f"w{i}"].T.flatten("F"))
            parts.append(data.weights[f"b{i}"])
        return np.concatenate(parts)

    def run(iters: int = case.jacobians) -> Run:
        net = pyrenn.CreateNN(list(data.sizes))
        net["w"] = weights_vector()
        with contextlib.redirect_stdout(io.StringIO()):
            net = pyrenn.train_LM(data.x.T, data.y.T, net, k_max=iters, E_stop=1e-300)
        scale = float(net["normY"][0]) ** 2 / _samples(case)
        out = pyrenn.NNOut(data.x.T, net)
        final = float(np.mean((out.reshape(-1, 1) - data.y) ** 2))
        hist = [float(e) * scale for e in net["ErrorHistory"]] + [final]
        return Run(hist, len(hist) - 1, final)

    return Contender("pyrenn train_LM", "peer", "numpy", run, None, "NumPy, own max-abs scaling")


# -- Adam -----------------------------------------------------------------------------------------
def adam_torch(case: NetCase, steps: int, lr: float = 1e-3) -> Contender:
    """``torch.optim.Adam`` full-batch on the same normalized model as ``fit``."""
    torch = need("torch")
    inv, off = case.out_map
    data = case.data
    x, y = _torch(case.x_in), _torch(data.y)

    def run() -> Run:
        p = {k: _torch(v).clone().requires_grad_(True) for k, v in data.weights.items()}
        opt = torch.optim.Adam(list(p.values()), lr=lr)
        hist = []
        for step in range(steps):
            opt.zero_grad()
            loss = torch.mean((torch_mlp(p, x) * inv + off - y) ** 2)
            if step % 100 == 0:
                hist.append(float(loss.detach()))
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(torch.mean((torch_mlp(p, x) * inv + off - y) ** 2))
        return Run(hist + [final], 0, final, {"steps": steps, "every": 100})

    return Contender(f"Adam (torch, lr={lr:g}, {steps:,} steps)", "baseline", "torch", run)


# -- case C ---------------------------------------------------------------------------------------
@dataclass
class CurveRun:
    """What one case-C run produced."""

    cost: float
    x: np.ndarray
    nfev: int
    njev: int


@dataclass
class CurveContender:
    """One library on case C: ``run`` is a complete call, made once before timing."""

    name: str
    kind: str
    framework: str
    run: Callable[[], CurveRun]
    note: str = ""


def ours_curve(framework: str, data: P.CurveData, batched: bool = False) -> CurveContender:
    """``<framework>_api.least_squares`` on the dict of case-C parameters, default settings."""
    module = need(f"dict_minimize.{framework}_api")
    if framework == "torch":
        conv, model = _torch, torch_curve
    elif framework == "jax":
        conv, model = _jax, jax_curve
    elif framework == "tensorflow":
        conv, model = _tf, tf_curve
    else:

        def conv(a: np.ndarray) -> Any:
            return np.array(a, dtype=np.float64)

        model = P.curve
    t, y = conv(data.t), conv(data.y)
    x0 = {k: conv(v) for k, v in data.x0.items()}

    def residual_fn(p: dict[str, Any], tb: Any, yb: Any) -> Any:
        return model(p, tb) - yb

    options = {"batched_args": (0, 1)} if batched else None

    def run() -> CurveRun:
        res = module.least_squares(
            residual_fn, x0, args=(t, y), ftol=TOL_C, xtol=TOL_C, gtol=TOL_C, options=options
        )
        flat = np.concatenate([host(res.x[k]) for k in P.C_KEYS])
        return CurveRun(float(res.cost), flat, int(res.nfev), int(res.njev))

    label = f"ours {framework} least_squares" + (" (batched_args)" if batched else "")
    jac = "finite differences" if framework == "numpy" else "autodiff"
    return CurveContender(label, "ours", framework, run, f"J by {jac}")


def scipy_curve(data: P.CurveData, method: str, analytic: bool) -> CurveContender:
    """``scipy.optimize.least_squares`` on the flat vector in NumPy."""
    from scipy.optimize import least_squares

    t, y = data.t, data.y

    def fun(flat: np.ndarray) -> np.ndarray:
        return P.curve(P.unflatten_c(flat), t) - y

    jac: Any = (lambda flat: P.curve_jacobian(flat, t)) if analytic else "2-point"

    def run() -> CurveRun:
        res = least_squares(
            fun, data.flat_x0(), jac=jac, method=method, ftol=TOL_C, xtol=TOL_C, gtol=TOL_C
        )
        return CurveRun(float(res.cost), res.x, int(res.nfev), int(res.njev or 0))

    label = f"scipy least_squares {method}" + (" (MINPACK)" if method == "lm" else "")
    label += ", analytic J" if analytic else ", 2-point J"
    return CurveContender(label, "peer", "scipy", run, "NumPy residual")


def _jax_curve_flat(data: P.CurveData) -> tuple[Any, Any, Any, Any]:

    t, y = _jax(data.t), _jax(data.y)

    def residual(flat: Any, tb: Any, yb: Any) -> Any:
        p = {k: flat[2 * i : 2 * i + 2] for i, k in enumerate(P.C_KEYS)}
        return jax_curve(p, tb) - yb

    return residual, t, y, _jax(data.flat_x0())


def jaxopt_curve(data: P.CurveData) -> CurveContender:
    """jaxopt's ``LevenbergMarquardt.run`` (materialized J by ``jacfwd``, Cholesky), the
    solver object built once so its jit cache serves later calls."""
    need("jax")
    jaxopt = need("jaxopt")
    residual, t, y, x0 = _jax_curve_flat(data)
    solver = jaxopt.LevenbergMarquardt(
        residual_fun=residual,
        materialize_jac=True,
        solver="cholesky",
        stop_criterion="madsen-nielsen",
        xtol=TOL_C,
        gtol=TOL_C,
        maxiter=100,
    )

    solve = need("jax").jit(solver.run)  # compiled once, reused by every later call

    def run() -> CurveRun:
        sol = solve(x0, t, y)
        x = np.asarray(sol.params)
        return CurveRun(float(sol.state.value), x, int(sol.state.iter_num), 0)

    return CurveContender("jaxopt LevenbergMarquardt", "peer", "jax", run, "jacfwd, Cholesky")


def optimistix_curve(data: P.CurveData) -> CurveContender:
    """``optimistix.least_squares`` with its ``LevenbergMarquardt`` (QR)."""
    need("jax")
    optx = need("optimistix")
    residual, t, y, x0 = _jax_curve_flat(data)
    solver = optx.LevenbergMarquardt(rtol=TOL_C, atol=TOL_C)

    def fn(flat: Any, args: Any) -> Any:
        return residual(flat, *args)

    def run() -> CurveRun:
        sol = optx.least_squares(fn, solver, x0, args=(t, y), max_steps=256, throw=False)
        x = np.asarray(sol.value)
        r = P.curve(P.unflatten_c(x), data.t) - data.y
        return CurveRun(0.5 * float(r @ r), x, int(sol.stats["num_steps"]), 0)

    return CurveContender("optimistix LevenbergMarquardt", "peer", "jax", run, "QR")


def steps_to(history: list[float], target: float) -> int:
    """The first step whose cost is within 1e-9 (relative) of ``target``."""
    for i, c in enumerate(history):
        if c <= target * (1 + 1e-9):
            return i
    return len(history) - 1


def torch_lm_curve(data: P.CurveData, optimum: float) -> CurveContender:
    """torch-levenberg-marquardt on an ``nn.Module`` holding the 10 parameters. It has no
    convergence test, so it runs the number of steps its verification run needed to reach
    the optimum's cost (to 1e-9, relative)."""
    torch = need("torch")
    tlm = need("torch_levenberg_marquardt")

    class Curve(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(_torch(v).clone()) for k, v in data.x0.items()}
            )

        def forward(self, t: Any) -> Any:
            return torch_curve(dict(self.p.items()), t)

    t, y = _torch(data.t), _torch(data.y)
    m = data.t.size

    def steps(count: int) -> tuple[list[float], Any]:
        model = Curve()
        module = tlm.training.LevenbergMarquardtModule(model)
        hist = [0.5 * float(((model(t) - y) ** 2).sum().detach())]
        for _ in range(count):
            _, loss, stop, _ = module.training_step(t, y)
            hist.append(0.5 * m * float(loss))
            if stop:
                break
        return hist, model

    hist, _ = steps(100)
    needed = max(1, steps_to(hist, optimum))

    def run() -> CurveRun:
        _, model = steps(needed)
        x = np.concatenate([host(model.p[k]) for k in P.C_KEYS])
        r = P.curve(P.unflatten_c(x), data.t) - data.y
        return CurveRun(0.5 * float(r @ r), x, needed, needed)

    return CurveContender(
        "torch-levenberg-marquardt", "peer", "torch", run, f"{needed} training steps"
    )


def tf_lm_curve(data: P.CurveData, optimum: float) -> CurveContender:
    """tf-levenberg-marquardt on a Keras model whose one layer holds the 10 parameters; a
    fixed number of steps, found as for torch-levenberg-marquardt."""
    tf = need("tensorflow")
    keras = need("keras")
    tflm = need("tf_levenberg_marquardt")

    class CurveLayer(keras.layers.Layer):  # type: ignore[misc]
        def build(self, input_shape: Any) -> None:
            self.w = {
                k: self.add_weight(
                    name=k,
                    shape=(2,),
                    dtype="float64",
                    initializer=keras.initializers.Constant(data.x0[k]),
                )
                for k in P.C_KEYS
            }

        def call(self, t: Any) -> Any:
            return tf_curve(self.w, t)

    t = tf.constant(data.t.reshape(-1, 1), tf.float64)
    y = tf.constant(data.y.reshape(-1, 1), tf.float64)

    def build() -> Any:
        floatx = keras.config.floatx()
        keras.config.set_floatx("float64")  # the trainer works in model.dtype
        try:
            model = keras.Sequential([keras.Input((1,)), CurveLayer()])
            model(t[:1])
        finally:
            keras.config.set_floatx(floatx)
        return model

    def steps(count: int) -> tuple[list[float], Any]:
        model = build()
        trainer = tflm.training.Trainer(
            model,
            optimizer=keras.optimizers.SGD(learning_rate=1.0),  # fresh, see tf_lm
            loss=tflm.loss.MeanSquaredError(),
            jacobian_max_num_rows=data.t.size,
        )
        trainer.backup_variables()
        hist = [0.5 * float(tf.reduce_sum((model(t) - y) ** 2))]
        for _ in range(count):
            loss, _, _, stop = trainer.train_step(t, y)
            hist.append(0.5 * data.t.size * float(loss))
            if bool(stop):
                break
        return hist, model

    hist, _ = steps(100)
    needed = max(1, steps_to(hist, optimum))

    def run() -> CurveRun:
        _, model = steps(needed)
        weights = {w.name.split("/")[-1].split(":")[0]: np.asarray(w) for w in model.weights}
        x = np.concatenate([weights[k] for k in P.C_KEYS])
        r = P.curve(P.unflatten_c(x), data.t) - data.y
        return CurveRun(0.5 * float(r @ r), x, needed, needed)

    return CurveContender(
        "tf-levenberg-marquardt", "peer", "tensorflow", run, f"{needed} training steps"
    )
