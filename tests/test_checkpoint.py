"""Checkpoint and resume of ``least_squares`` and ``fit``.

A run killed with SIGKILL after a checkpoint and resumed from it ends at the same point, bit
for bit, as a run never interrupted; a bad checkpoint is an error, never a fresh start;
writes are atomic; the file never holds anything that would be unpickled.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _checkpoint_worker import fit_problem, least_squares_problem

from cases import Case
from dict_minimize import CheckpointError, InvalidOptionError
from dict_minimize.solvers import checkpoint as ckpt

WORKER = Path(__file__).parent / "_checkpoint_worker.py"


def _flat(case: Case, tree: Any) -> np.ndarray:
    """The leaves of a (nested) params tree, depth first, as one float64 vector."""
    parts: list[np.ndarray] = []

    def visit(node: Any) -> None:
        for value in node.values():
            if isinstance(value, dict):
                visit(value)
            else:
                parts.append(case.numpy(value).reshape(-1))

    visit(tree)
    return np.concatenate(parts)


def _assert_same_run(case: Case, resumed: Any, reference: Any) -> None:
    np.testing.assert_array_equal(_flat(case, resumed.x), _flat(case, reference.x))
    assert resumed.cost == reference.cost
    assert (resumed.nit, resumed.nfev, resumed.njev) == (
        reference.nit,
        reference.nfev,
        reference.njev,
    )
    assert (resumed.status, resumed.message) == (reference.status, reference.message)
    assert resumed.history == reference.history


def _kill_worker(backend: str, kind: str, path: Path, kill_at: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(WORKER), backend, kind, str(path), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_least_squares_resumes_bit_for_bit_after_sigkill(case: Case, tmp_path: Path) -> None:
    if case.traced and not os.environ.get("DICT_MINIMIZE_SLOW_TESTS"):
        # Importing TensorFlow or JAX in the subprocess takes most of 10 s; the same resume
        # runs in-process in test_resume_after_an_exception. DICT_MINIMIZE_SLOW_TESTS=1 runs it.
        pytest.skip("set DICT_MINIMIZE_SLOW_TESTS=1 for the compiled backends' subprocess")
    path = tmp_path / "run.npz"
    # numpy's Jacobian is 2n central differences: more evaluations per iteration.
    kill_at = {"numpy": 60, "torch": 12}.get(case.name, 5)
    _kill_worker(case.name, "least_squares", path, kill_at)
    saved = ckpt.read(path)

    residual_fn, x0, kwargs = least_squares_problem(case)
    options = kwargs.pop("options")
    reference = case.api.least_squares(residual_fn, x0, options=options, **kwargs)
    assert 0 < saved.state["nit"] < reference.nit  # killed mid-run
    resumed = case.api.least_squares(
        residual_fn, x0, options={**options, "resume": path, "checkpoint": path}, **kwargs
    )
    _assert_same_run(case, resumed, reference)
    assert resumed.success and resumed.cost < 0.5 * 60 * 0.02**2


@pytest.mark.slow
def test_fit_resumes_bit_for_bit_after_sigkill(tmp_path: Path) -> None:
    """torch ``fit`` with normalization and validation early stopping: weights, history,
    best epoch and stop reason all match the uninterrupted run."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import fit

    path = tmp_path / "fit.npz"
    _kill_worker("torch", "fit", path, 60)
    assert ckpt.read(path).problem["kind"] == "fit"

    net, x, y, kwargs = fit_problem()
    reference = fit(net, x, y, **kwargs)
    resumed_net, *_ = fit_problem()
    with torch.no_grad():  # the resumed model's own weights must not matter
        for p in resumed_net.parameters():
            p.add_(1.0)
    resumed = fit(resumed_net, x, y, resume=path, **kwargs)
    for (name, a), (_, b) in zip(net.state_dict().items(), resumed_net.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert resumed.history == reference.history
    assert (resumed.best_epoch, resumed.stop_reason) == (
        reference.best_epoch,
        reference.stop_reason,
    )
    assert reference.result.nit > ckpt.read(path).state["nit"] > 0


@pytest.mark.parametrize(
    ("method", "options"),
    [("lm", {"damping": "marquardt", "x_scale": 1.0}), ("trf", {})],
    ids=["lm-marquardt", "trf-bounded"],
)
def test_resume_after_an_exception(
    case: Case, tmp_path: Path, method: str, options: dict[str, Any]
) -> None:
    """A run stopped by an error (here raised by the callback at the 7th iteration) resumes
    from its last checkpoint to the end of the uninterrupted run; the same file keeps being
    written. On the compiled backends the bounded variant only."""
    if case.traced and method != "trf":
        pytest.skip("compiled backends: the bounded variant only")
    residual_fn, x0, kwargs = least_squares_problem(case)
    kwargs["options"] = options
    if method == "trf":
        kwargs.update(lb_dict={"k": 0.4}, ub_dict={"w": 3.0})
    reference = case.api.least_squares(residual_fn, x0, method=method, **kwargs)
    path = tmp_path / "run.npz"
    seen: list[int] = []

    def failing(params: Any) -> None:
        seen.append(1)
        if len(seen) == 7:
            raise RuntimeError("node lost")

    kwargs["options"] = {**options, "checkpoint": path, "checkpoint_every": 3}
    with pytest.raises(RuntimeError, match="node lost"):
        case.api.least_squares(residual_fn, x0, method=method, callback=failing, **kwargs)
    assert ckpt.read(path).state["nit"] == 6
    kwargs["options"]["resume"] = path
    resumed = case.api.least_squares(residual_fn, x0, method=method, **kwargs)
    _assert_same_run(case, resumed, reference)
    assert ckpt.read(path).state["nit"] == 3 * (reference.nit // 3)


def test_fit_continues_for_more_epochs(tmp_path: Path) -> None:
    """JAX ``fit``: 8 epochs with a checkpoint, then resumed to 20, equals 20 epochs at once
    (the way to extend a finished training)."""
    jax = pytest.importorskip("jax")
    if not jax.config.jax_enable_x64:
        pytest.skip("needs jax_enable_x64")
    jnp = jax.numpy
    from dict_minimize.training.jax import fit

    def apply_fn(p: Any, x: Any) -> Any:
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(-1, 1, (50, 2)))
    y = jnp.sin(2 * x[:, :1]) * x[:, 1:]
    val = (jnp.asarray(rng.uniform(-1, 1, (30, 2))), None)
    val = (val[0], jnp.sin(2 * val[0][:, :1]) * val[0][:, 1:])
    p0 = {
        "w1": jnp.asarray(rng.standard_normal((2, 6))),
        "b1": jnp.zeros(6),
        "w2": jnp.asarray(rng.standard_normal((6, 1)) / 3),
        "b2": jnp.zeros(1),
    }
    common = {"val_data": val, "min_grad": 0.0, "max_fail": 50}
    reference = fit(apply_fn, p0, x, y, epochs=20, **common)
    path = tmp_path / "fit.npz"
    fit(apply_fn, p0, x, y, epochs=8, checkpoint=path, checkpoint_every=4, **common)
    resumed = fit(apply_fn, p0, x, y, epochs=20, resume=path, **common)
    for key in p0:
        np.testing.assert_array_equal(np.asarray(resumed.params[key]), reference.params[key])
    assert resumed.history == reference.history
    assert resumed.best_epoch == reference.best_epoch


# -- bad checkpoints: an error naming the problem, never a fresh start ---------------------


def _saved_run(case: Case, path: Path) -> None:
    residual_fn, x0, kwargs = least_squares_problem(case)
    kwargs["options"] = {**kwargs["options"], "checkpoint": path}
    kwargs["max_nfev"] = 6
    case.api.least_squares(residual_fn, x0, **kwargs)


def _resume(case: Case, path: Path, *, x0: Any = None, **changes: Any) -> Any:
    residual_fn, default_x0, kwargs = least_squares_problem(case)
    kwargs["options"] = {**kwargs["options"], "resume": path}
    kwargs.update(changes)
    return case.api.least_squares(residual_fn, default_x0 if x0 is None else x0, **kwargs)


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "empty":
        return b""
    if how == "flipped byte":  # in the stored bytes of the point (zip headers have slack)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("x.npy")
        local = info.header_offset
        name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
        at = local + 30 + name_len + extra_len + info.compress_size - 1
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    if how == "random bytes":
        return np.random.default_rng(0).bytes(4096)
    buffer = io.BytesIO()  # "single array": a valid .npy file, not an archive
    np.save(buffer, np.arange(4.0))
    return buffer.getvalue()


def test_corrupt_checkpoint_is_an_error(tmp_path: Path) -> None:
    """Truncated, emptied, a flipped byte, random bytes, a lone array: each an error naming
    the file (the format is the same for every backend: numpy writes it here)."""
    from cases import FACTORIES

    case = FACTORIES["numpy"][1]()
    path = tmp_path / "run.npz"
    _saved_run(case, path)
    good = path.read_bytes()
    _resume(case, path)  # the intact file resumes
    for how in ("truncated", "empty", "flipped byte", "random bytes", "single array"):
        path.write_bytes(_corrupt(good, how))
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            _resume(case, path)


def test_pickled_file_is_never_unpickled(tmp_path: Path) -> None:
    """A pickle that would create a file when loaded is refused without running it."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.read(path)
    # An npz whose array is an object array (which np.savez pickles) is refused as well.
    np.savez(path, meta=np.array([Payload()], dtype=object))
    with pytest.raises(CheckpointError):
        ckpt.read(path)
    assert not marker.exists()


def test_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        ckpt.read(tmp_path / "absent.npz")


def test_mismatched_checkpoint_is_an_error(case: Case, tmp_path: Path) -> None:
    """Another method, keys, shape, dtype, loss, damping rule, residual count or kind of run:
    each refused, naming what differs."""
    path = tmp_path / "run.npz"
    _saved_run(case, path)
    _, x0, kwargs = least_squares_problem(case)
    t, y = kwargs["args"]
    changes: list[tuple[str, dict[str, Any]]] = [
        ("method", {"method": "trf"}),
        ("leaves", {"x0": {**x0, "extra": case.tensor(0.0)}}),
        ("leaves", {"x0": {**x0, "k": case.tensor([0.5, 0.5])}}),
        ("leaves", {"x0": {**x0, "k": case.tensor(0.5, "float32")}}),
        ("loss", {"loss": "soft_l1"}),
        ("damping", {"options": {**kwargs["options"], "damping": "marquardt", "resume": path}}),
        ("m", {"args": (case.tensor(case.numpy(t)[:50]), case.tensor(case.numpy(y)[:50]))}),
    ]
    for field, change in changes:
        with pytest.raises(CheckpointError, match=f"{field} = "):
            _resume(case, path, **change)
    saved = ckpt.read(path)  # a least_squares checkpoint resumed by fit (simulated)
    saved.problem["kind"] = "fit"
    ckpt.write(path, saved)
    with pytest.raises(CheckpointError, match="kind = 'fit'"):
        _resume(case, path)


def test_other_format_version_is_an_error(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "c.npz"
    ckpt.write(path, _example())
    monkeypatch.setattr(ckpt, "VERSION", 2)
    with pytest.raises(CheckpointError, match="format version 1"):
        ckpt.read(path)


# -- writing --------------------------------------------------------------------------------


def _example() -> ckpt.Checkpoint:
    return ckpt.Checkpoint({"kind": "t"}, {"nit": 1, "mu": 0.1 + 0.2}, {"x": np.arange(5.0)})


def test_write_is_atomic(tmp_path: Path, monkeypatch: Any) -> None:
    """The new file replaces the old one by one rename of a fsynced temporary in the same
    directory; a failure while writing leaves the old checkpoint whole and no temporary."""
    path = tmp_path / "c.npz"
    ckpt.write(path, _example())
    replaced: list[tuple[str, str]] = []
    synced: list[int] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src: str, dst: str) -> None:
        replaced.append((src, dst))
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    second = _example()
    second.state["nit"] = 2
    ckpt.write(path, second)
    ((src, dst),) = replaced
    assert Path(src).parent == tmp_path and dst == str(path) and len(synced) == 2
    assert ckpt.read(path).state == {"nit": 2, "mu": 0.1 + 0.2}  # floats exactly

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_savez", broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write(path, _example())
    assert ckpt.read(path).state["nit"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_only_the_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    ckpt.write(path, _example(), is_writer=False)
    assert not path.exists()
    ckpt.write(path, _example(), is_writer=True)
    np.testing.assert_array_equal(ckpt.read(path).arrays["x"], np.arange(5.0))


def test_checkpoint_options_are_validated(case: Case, tmp_path: Path) -> None:
    residual_fn, x0, kwargs = least_squares_problem(case)
    options = kwargs.pop("options")
    bad = [
        ({"checkpoint_every": 2}, "needs options['checkpoint']"),
        ({"checkpoint": tmp_path / "no" / "c.npz"}, "does not exist"),
        ({"checkpoint": tmp_path}, "is a directory"),
        ({"checkpoint": 3}, "file path"),
        ({"checkpoint": tmp_path / "c.npz", "checkpoint_every": 0}, "positive integer"),
    ]
    for extra, message in bad:
        with pytest.raises(InvalidOptionError, match=re.escape(message)):
            case.api.least_squares(residual_fn, x0, options={**options, **extra}, **kwargs)
    with pytest.raises(InvalidOptionError, match="'checkpoint'"):
        case.api.least_squares(
            residual_fn,
            x0,
            method="scipy-trf",
            options={"checkpoint": tmp_path / "c.npz"},
            **kwargs,
        )
