"""One process of a two-process ``jax.distributed`` run, started by tests/test_distributed.py.

Each process has two host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``),
holds its shard of the samples, splits it over its two devices (``options["devices"]``) and
reduces with the other process: both mechanisms at once. The test runs every scenario on one
device and the whole data (``shard=None``, no ``devices``) and compares.

Usage: ``python _distributed_jax_worker.py OUT PROCESS_ID COORDINATOR_PORT``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Unequal shards: process 0 holds the first ``CUT`` samples, process 1 the rest.
CUT = {"nist": 16, "train": 37, "val": 9}


def _part(array: np.ndarray, name: str, shard: int | None) -> Any:
    import jax.numpy as jnp

    if shard is not None:
        array = array[: CUT[name]] if shard == 0 else array[CUT[name] :]
    return jnp.asarray(array)


def nist(shard: int | None, devices: Any = None) -> dict[str, np.ndarray]:
    """Thurber: 16 and 21 samples, each process's padded to an even count for two devices."""
    import jax.numpy as jnp

    from dict_minimize.datasets.nist_strd import load
    from dict_minimize.jax_api import least_squares

    prob = load("Thurber")
    x0 = {k: jnp.asarray(v) for k, v in prob.start1.items()}
    res = least_squares(
        lambda b, x, y: prob.residual(b, x, y, jnp),
        x0,
        args=(_part(np.array(prob.x), "nist", shard), _part(np.array(prob.y), "nist", shard)),
        options={"batched_args": (0, 1), **({} if devices is None else {"devices": devices})},
    )
    return {
        "x": np.array([float(v) for v in res.x.values()]),
        "fun": np.asarray(res.fun),
        "nfev": np.array([res.nfev, res.nit]),
    }


def mlp_fit(shard: int | None, devices: Any = None) -> dict[str, np.ndarray]:
    """The JAX fit helper with validation data, 4 epochs."""
    import jax
    import jax.numpy as jnp

    from dict_minimize.jax_api import fit

    rng = np.random.default_rng(0)
    xs = rng.uniform(-2, 2, (90, 2))
    ys = ((2.5 - xs[:, :1]) ** 2 + 2.5 * (xs[:, 1:] - xs[:, :1] ** 2) ** 2) / 10

    def apply_fn(p: Any, x: Any) -> Any:
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    p0 = {
        "w1": jax.random.normal(k1, (2, 6)),
        "b1": jnp.zeros(6),
        "w2": jax.random.normal(k2, (6, 1)) / 3,
        "b2": jnp.zeros(1),
    }
    out = fit(
        apply_fn,
        p0,
        _part(xs[:70], "train", shard),
        _part(ys[:70], "train", shard),
        val_data=(_part(xs[70:], "val", shard), _part(ys[70:], "val", shard)),
        epochs=4,
        max_fail=100,
        geodesic=False,
        devices=devices,
    )
    return {
        "x": np.concatenate([np.ravel(v) for v in out.params.values()]),
        "loss": np.array(out.history["loss"]),
        "val_loss": np.array(out.history["val_loss"]),
    }


SCENARIOS = {"nist": nist, "mlp_fit": mlp_fit}


def main() -> None:
    import jax

    out, process, port = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
    assert len(jax.local_devices()) == 2, jax.local_devices()
    for name, scenario in SCENARIOS.items():
        result = scenario(process, jax.local_devices())
        np.savez(out / f"jax_{name}_rank{process}.npz", **result)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
