"""``fit`` for JAX apply functions and Keras models: the same trainlm loop as for PyTorch."""

from __future__ import annotations

import numpy as np
import pytest


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Case A's Rosenbrock data, mapped to [-1, 1] (these helpers do not normalize)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-2, 2, (n, 2))
    z = (2.5 - xy[:, 0]) ** 2 + 2.5 * (xy[:, 1] - xy[:, 0] ** 2) ** 2
    z = 2 * (z - z.min()) / (z.max() - z.min()) - 1
    return xy / 2, z.reshape(-1, 1)


def test_jax_fit_trains_and_stops_on_validation() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from dict_minimize.training.jax import fit

    if not jax.config.jax_enable_x64:  # conftest turns it on for the suite
        pytest.skip("needs jax_enable_x64")

    def apply_fn(p: dict[str, object], x: object) -> object:
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    p0 = {
        "w1": jax.random.normal(k1, (2, 10)) / 2,
        "b1": jnp.zeros(10),
        "w2": jax.random.normal(k2, (10, 1)) / 3,
        "b2": jnp.zeros(1),
    }
    x, z = (jnp.asarray(a) for a in _data(0, 500))
    out = fit(apply_fn, p0, x, z, epochs=100, min_grad=0.0)
    mse = float(jnp.mean((apply_fn(out.params, x) - z) ** 2))
    assert mse == pytest.approx(out.history["loss"][-1], rel=1e-9)
    assert mse < 1e-3 < out.history["loss"][0]  # 1e-3 here is ~0.005 in case A's raw units

    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.uniform(-1, 1, (30, 2)))
    zs = jnp.asarray(np.sin(3 * np.asarray(xs[:, :1])) + 0.3 * rng.standard_normal((30, 1)))
    xv = jnp.asarray(rng.uniform(-1, 1, (60, 2)))
    zv = jnp.sin(3 * xv[:, :1])
    out = fit(apply_fn, p0, xs, zs, val_data=(xv, zv), epochs=200, max_fail=3, min_grad=0.0)
    assert out.stop_reason.startswith("validation stop"), out.stop_reason
    best = float(jnp.mean((apply_fn(out.params, xv) - zv) ** 2))
    assert best == pytest.approx(min(out.history["val_loss"]), rel=1e-9)


def test_keras_fit_assigns_the_trained_weights() -> None:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"Keras runs on {keras.backend.backend()}; this test builds TF tensors")
    tf = pytest.importorskip("tensorflow")
    from dict_minimize.training.keras import fit

    keras.utils.set_random_seed(0)
    x_np, z_np = _data(0, 300)
    x, z = tf.constant(x_np), tf.constant(z_np)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(10, "tanh", dtype="float64"),
         keras.layers.Dense(1, dtype="float64")]
    )  # fmt: skip
    out = fit(model, x, z, epochs=60, min_grad=0.0)
    mse = float(np.mean((model.predict(x, verbose=0) - z_np) ** 2))
    assert mse == pytest.approx(out.history["loss"][-1], rel=1e-6)
    assert mse < 0.2 * out.history["loss"][0]
