"""Run twitter's dict-minimize 0.0.4 beside this project.

dict-minimize 0.0.4 installs a package named ``dict_minimize``, like this project, so it gets
its own virtual environment (``.bench-venv`` at the repository root, git-ignored) and runs in a
long-lived worker process (``_peer_worker.py``). The main benchmark talks to the worker one
request at a time, so the two processes never run at once and the contenders of both can be
interleaved run by run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BENCH_VENV = ROOT / ".bench-venv"
CONSTRAINTS = ROOT / "constraints.txt"
#: What the peer environment holds; torch, TensorFlow and JAX are pinned by constraints.txt.
PEER_REQUIREMENTS = (
    "dict-minimize==0.0.4",
    "numpy",
    "scipy",
    "torch==2.13.0",
    "tensorflow-cpu==2.21.*",
    "jax==0.10.2",
    "jaxlib==0.10.2",
)


def peer_python() -> Path | None:
    """The bench venv's interpreter, or None when the venv has not been created."""
    python = BENCH_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return python if python.exists() else None


def create_bench_venv() -> Path:
    """Create ``.bench-venv`` with dict-minimize 0.0.4 and the frameworks (through constraints).

    dict-minimize 0.0.4 declares only ``numpy>=1.18.5`` and ``scipy>=1.4.1`` (its framework
    extras are lower bounds too), so current releases install beside it without ``--no-deps``.
    """
    if peer_python() is None:
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    python = peer_python()
    assert python is not None
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(CONSTRAINTS), *PEER_REQUIREMENTS], check=True)
    return python


def _clean_env() -> dict[str, str]:
    """This process's environment (thread pinning included) minus anything that could make the
    peer import this project's ``dict_minimize`` instead of dict-minimize 0.0.4."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(key, None)
    return env


class PeerWorker:
    """Client of ``_peer_worker.py`` running under the bench venv's interpreter.

    Parameters
    ----------
    python : Path
        The interpreter that has dict-minimize 0.0.4 (see :func:`peer_python`).
    """

    def __init__(self, python: Path) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (kept open for the worker's life)
            "w+", prefix="dict-minimize-peer-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [str(python), str(BENCH_DIR / "_peer_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=str(BENCH_DIR),
            env=_clean_env(),
        )
        hello = self.request({"cmd": "hello"})
        self.versions: dict[str, str] = hello["versions"]
        self.frameworks: list[str] = hello["frameworks"]

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer worker exited; its log is {self.log.name}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"peer worker: {answer['error']} (log: {self.log.name})")
        return answer

    def setup(self, n: int, frameworks: list[str], raw: bool) -> dict[str, dict[str, Any]]:
        """Build the size-``n`` contenders (with a raw scipy row if ``raw``); returns each one's
        verification run, with its final point as ``"x"``."""
        with tempfile.TemporaryDirectory() as xdir:
            request = {"cmd": "setup", "n": n, "frameworks": frameworks, "raw": raw, "xdir": xdir}
            checks: dict[str, dict[str, Any]] = self.request(request)["contenders"]
            for check in checks.values():
                check["x"] = np.load(check.pop("x_file"))
        return checks

    def time(self, name: str, number: int) -> tuple[float, float]:
        """``(wall, cpu)`` seconds per run of contender ``name`` (``number`` back-to-back runs)."""
        answer = self.request({"cmd": "time", "name": name, "number": number})
        return float(answer["wall"]), float(answer["cpu"])

    def close(self) -> None:
        """Stop the worker."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=60)
        self.log.close()
        os.unlink(self.log.name)
