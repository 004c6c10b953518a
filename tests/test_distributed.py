"""Data-parallel least_squares and fit against one process on the concatenated data:
two gloo ranks (PyTorch), and two jax.distributed processes each sharding its samples over two
host devices; bit-identical ranks, and failures that stop every rank.

The multi-process runs start once per test (importing the frameworks dominates their cost);
each compares every scenario of :mod:`_distributed_worker` / :mod:`_distributed_jax_worker`
with the single-process reference, computed here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import _distributed_jax_worker as jax_worker
import _distributed_worker as worker
import numpy as np
import pytest

from cases import Case
from dict_minimize import InvalidOptionError

HERE = Path(__file__).parent
#: One process against two on the same data: sums in another order, so rounding differs.
RTOL = 1e-10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = np.maximum(np.abs(want), 1e-300)
    worst = float(np.max(np.abs(got - want) / scale)) if want.size else 0.0
    assert got.shape == want.shape and worst <= RTOL, (
        f"{what}: two ranks differ from one process by {worst:.2e} relative (> {RTOL:g})"
    )


@pytest.mark.slow
def test_two_gloo_ranks(tmp_path: Path) -> None:
    """Each scenario of the worker on two ranks against one process on the whole data; the
    ranks agree to the bit; an exception on one rank stops both. One launch for all (the
    processes' imports dominate)."""
    pytest.importorskip("torch")
    port = str(_free_port())
    env = [
        _env(RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        for r in range(2)
    ]
    command = [sys.executable, str(HERE / "_distributed_worker.py"), str(tmp_path)]
    _run_pair([command, command], env, "gloo")
    for scenario, run in worker.SCENARIOS.items():
        _check_scenario(tmp_path, scenario, run)
    _check_iterates(tmp_path)
    _check_resume(tmp_path)
    _check_failure(tmp_path)


def _check_scenario(out: Path, scenario: str, run: Any) -> None:
    ranks = [dict(np.load(out / f"{scenario}_rank{r}.npz")) for r in range(2)]
    # Every decision comes from all-reduced values: the ranks agree to the bit.
    for key in ranks[0]:
        if key != "fun":  # each rank's residuals are its own
            assert ranks[0][key].tobytes() == ranks[1][key].tobytes(), f"{scenario}: {key}"
    for key, value in run(None).items():
        if key == "fun":  # the ranks' residuals, in order, are the whole data's
            _close(np.concatenate([ranks[0]["fun"], ranks[1]["fun"]]), value, key)
        elif key in ("counts", "nfev", "best_epoch"):
            np.testing.assert_array_equal(ranks[0][key], value, err_msg=f"{scenario}: {key}")
        else:
            _close(ranks[0][key], np.asarray(value), f"{scenario}: {key}")


def _check_iterates(out: Path) -> None:
    its = [np.load(out / f"nist_rank{r}.npz")["iterates"] for r in range(2)]
    assert its[0].shape[0] > 10  # the callback saw every iteration
    assert its[0].tobytes() == its[1].tobytes()


def _check_resume(out: Path) -> None:
    """Rank 0 alone wrote the checkpoint; both ranks resumed from it and ended, bit for bit,
    where the uninterrupted two-rank run ended."""
    got = [dict(np.load(out / f"resume_rank{r}.npz")) for r in range(2)]
    assert [bool(g["wrote"][0]) for g in got] == [True, False]
    assert int(got[0]["first_nit"][0]) == 5
    for r in range(2):
        whole = np.load(out / f"nist_rank{r}.npz")
        assert got[r]["x"].tobytes() == whole["x"].tobytes(), f"rank {r} resumed elsewhere"
        np.testing.assert_array_equal(got[r]["counts"], whole["counts"])


def _check_failure(out: Path) -> None:
    got = [json.loads((out / f"failure_rank{r}.json").read_text()) for r in range(2)]
    for r, info in enumerate(got):
        assert info["error"] == "DistributedError", f"rank {r}: {info}"
        assert info["ranks"] == [1]
        assert "rank 1: ValueError: rank 1 cannot evaluate its residuals" in info["message"]
        assert info["has_result"]  # the best point so far, as for any exception
        assert info["seconds"] < 30  # stopped, not waiting for the group's timeout
    assert got[1]["cause"].startswith("ValueError('rank 1 cannot")  # the original, chained
    assert got[0]["cause"] == "None"


def _run_pair(commands: list[list[str]], env: list[dict[str, str]], what: str) -> None:
    """Run two processes to completion (180 s at most); fail with their output if one fails."""
    procs = [
        subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd, e in zip(commands, env)
    ]
    logs = []
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=180)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"the two-process {what} run did not finish within 180 s")
    for r, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, (
            f"{what} process {r} exited with {proc.returncode}:\n{log[-4000:]}"
        )


@pytest.mark.slow
def test_two_jax_processes_of_two_devices_match_one_device(tmp_path: Path) -> None:
    """jax.distributed with two processes, each sharding its samples over two host devices."""
    pytest.importorskip("jax")
    port = str(_free_port())
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    _run_pair(
        [
            [sys.executable, str(HERE / "_distributed_jax_worker.py"), str(tmp_path), str(r), port]
            for r in range(2)
        ],
        [env, env],
        "jax",
    )
    for name, scenario in jax_worker.SCENARIOS.items():
        ranks = [dict(np.load(tmp_path / f"jax_{name}_rank{r}.npz")) for r in range(2)]
        for key in ranks[0]:
            if key != "fun":
                assert ranks[0][key].tobytes() == ranks[1][key].tobytes(), f"jax {name}: {key}"
        for key, value in scenario(None).items():  # one device, the whole data
            if key == "fun":
                got = np.concatenate([ranks[0]["fun"], ranks[1]["fun"]])
                assert got.shape == value.shape  # the padding is cut off
                np.testing.assert_allclose(got, value, rtol=RTOL, atol=RTOL * np.abs(value).max())
            elif key == "nfev":
                np.testing.assert_array_equal(ranks[0][key], value)
            else:
                _close(ranks[0][key], value, f"jax {name}: {key}")


# -- option errors (no process group here) --------------------------------------------------
def _tiny(case: Case) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
    t = case.tensor(np.linspace(0.0, 1.0, 8))
    y = case.tensor(np.linspace(1.0, 2.0, 8))
    x0 = {"a": case.tensor(np.array(0.5))}
    return (lambda p, t, y: p["a"] * t - y), x0, (t, y)


def test_distributed_true_without_a_process_group_is_refused(case: Case) -> None:
    fn, x0, args = _tiny(case)
    with pytest.raises(InvalidOptionError, match="distributed"):
        case.api.least_squares(
            fn, x0, args=args, options={"batched_args": (0, 1), "distributed": True}
        )


def test_distributed_false_is_the_plain_run(case: Case) -> None:
    fn, x0, args = _tiny(case)
    plain = case.api.least_squares(fn, x0, args=args, options={"batched_args": (0, 1)})
    off = case.api.least_squares(
        fn, x0, args=args, options={"batched_args": (0, 1), "distributed": False}
    )
    assert case.numpy(off.x["a"]).tobytes() == case.numpy(plain.x["a"]).tobytes()
    assert "distributed" not in off


def test_devices_needs_a_framework_that_shards(case: Case) -> None:
    fn, x0, args = _tiny(case)
    if case.name == "jax":
        import jax

        with pytest.raises(InvalidOptionError, match="in_axes"):  # samples must be declared
            case.api.least_squares(fn, x0, args=args, options={"devices": jax.devices()})
        with pytest.raises(InvalidOptionError, match="sequence of jax devices"):
            case.api.least_squares(
                fn, x0, args=args, options={"batched_args": (0, 1), "devices": "cpu"}
            )
        with pytest.raises(InvalidOptionError, match="'lm' and 'trf'"):
            case.api.least_squares(
                fn,
                x0,
                args=args,
                method="scipy-trf",
                options={"batched_args": (0, 1), "devices": jax.devices()},
            )
        with pytest.raises(InvalidOptionError, match="chunk_size"):
            case.api.least_squares(
                fn,
                x0,
                args=args,
                options={"batched_args": (0, 1), "devices": jax.devices(), "chunk_size": 4},
            )
        # This process's one device: the sharded path, same result, x back on x0's device.
        seen: list[Any] = []
        plain = case.api.least_squares(fn, x0, args=args, options={"batched_args": (0, 1)})
        mesh = case.api.least_squares(
            fn,
            x0,
            args=args,
            callback=seen.append,
            options={"batched_args": (0, 1), "devices": jax.devices()},
        )
        assert case.numpy(mesh.x["a"]).tobytes() == case.numpy(plain.x["a"]).tobytes()
        assert mesh.x["a"].sharding == x0["a"].sharding
        assert seen and all(p["a"].sharding == x0["a"].sharding for p in seen)
        return
    with pytest.raises(InvalidOptionError, match="devices"):
        case.api.least_squares(
            fn, x0, args=args, options={"batched_args": (0, 1), "devices": ["cpu"]}
        )
