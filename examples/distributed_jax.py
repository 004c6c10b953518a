"""Data-parallel Levenberg-Marquardt in JAX: the samples sharded over the devices.

What it shows
    ``dict_minimize.jax_api.fit(..., devices=jax.devices())``: the training samples are split
    along their batch axis over the devices with a ``NamedSharding``, the weights replicated,
    and XLA computes each device's Jacobian rows and partial ``JᵀJ``, ``Jᵀe`` and MSE and
    all-reduces them. The same fit on one device runs beside it for comparison. On a CPU the
    script asks XLA for two host devices (``--xla_force_host_platform_device_count=2``; set
    ``XLA_FLAGS`` yourself to choose), so it runs anywhere; on GPUs ``jax.devices()`` lists
    the GPUs. The network is case B of the least-squares benchmark: a 6-12-10-8-1 tanh
    MLP on samples of the 6-D Rosenbrock function, inputs and targets mapped to [-1, 1].

How to run
    python examples/distributed_jax.py            # two host devices on a CPU
    python examples/distributed_jax.py --quick    # a few seconds
    Across hosts: call ``jax.distributed.initialize()`` first in every process, pass
    ``jax.devices()`` (all processes' devices); each process then holds its own samples.

What to expect
    The training MSE per few epochs, on one device and sharded: the two agree to about 12
    digits (sums over samples are added in another order), and the trained weights to
    about 1e-12 relative.
"""

from __future__ import annotations

import itertools
import os

if "XLA_FLAGS" not in os.environ:  # before JAX starts: two CPU devices to shard over
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import example_parser

from dict_minimize.jax_api import fit


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)


def scaled(a: np.ndarray) -> np.ndarray:
    low, high = a.min(axis=0), a.max(axis=0)
    return 2.0 * (a - low) / (high - low) - 1.0


def apply_fn(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    for i in range(3):
        x = jnp.tanh(x @ p[f"w{i}"] + p[f"b{i}"])
    return x @ p["w3"] + p["b3"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = example_parser(__doc__)
    parser.add_argument("--samples", type=int, default=10_000, help="training samples (10,000)")
    parser.add_argument("--epochs", type=int, default=30, help="LM iterations at most (30)")
    args = parser.parse_args(argv)
    samples, epochs = (2_000, 6) if args.quick else (args.samples, args.epochs)
    with jax.enable_x64(True):
        rng = np.random.default_rng(args.seed)
        x = scaled(rng.uniform(-2.0, 2.0, (samples, 6)))
        y = scaled(rosenbrock(x).reshape(-1, 1))
        sizes = (6, 12, 10, 8, 1)
        p0 = {}
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            p0[f"w{i}"] = jnp.asarray(rng.uniform(-1, 1, (a, b)) / np.sqrt(a))
            p0[f"b{i}"] = jnp.zeros(b)
        runs = {}
        for name, devices in (
            ("one device", None),
            (f"{len(jax.devices())} devices", jax.devices()),
        ):
            start = time.perf_counter()
            out = fit(apply_fn, p0, jnp.asarray(x), jnp.asarray(y), epochs=epochs, devices=devices)
            runs[name] = (out, time.perf_counter() - start)
    (one, t_one), (many, t_many) = runs.values()
    flat_one = np.concatenate([np.ravel(v) for v in one.params.values()])
    flat_many = np.concatenate([np.ravel(v) for v in many.params.values()])
    worst = float(np.max(np.abs(flat_many - flat_one) / np.maximum(np.abs(flat_one), 1e-300)))
    names = list(runs)
    print(f"devices: {jax.devices()}")
    print(f"epoch  {names[0]:>14}  {names[1]:>14}")
    last = len(one.history["loss"]) - 1
    for epoch in sorted({*range(0, last, max(1, last // 8)), last}):
        print(
            f"{epoch:5d}  {one.history['loss'][epoch]:14.8e}  {many.history['loss'][epoch]:14.8e}"
        )
    print(f"weights: largest relative difference {worst:.2e}")
    print(f"wall time, compilation included: {t_one:.2f} s on one device, {t_many:.2f} s sharded")
    return {
        "mse_one": one.history["loss"][-1],
        "mse_many": many.history["loss"][-1],
        "worst": worst,
    }


if __name__ == "__main__":
    main()
