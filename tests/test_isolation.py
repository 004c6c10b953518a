"""Fresh interpreters: what each entry point imports, and validation under ``python -O``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("torch", "tensorflow", "jax")


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _imported_after(module: str) -> set[str]:
    proc = _python(
        f"""
        import json, sys
        import {module}
        print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
        """
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("dict_minimize", ()),
        ("dict_minimize.numpy_api", ()),
        ("dict_minimize.torch_api", ("torch",)),
    ],
)
def test_imports_only_its_framework(module: str, allowed: tuple[str, ...]) -> None:
    if allowed:
        pytest.importorskip(allowed[0])
    imported = _imported_after(module)
    assert "dict_minimize" in imported
    assert imported & set(FRAMEWORKS) == set(allowed)


def test_validation_raises_under_python_O() -> None:
    """Checks are exceptions, not asserts: ``-O`` strips asserts but not these."""
    proc = _python(
        """
        import numpy as np
        import dict_minimize
        from dict_minimize.numpy_api import minimize

        assert False, "asserts are stripped under -O"

        def fun(params):
            return float(np.sum(params["w"] ** 2)), {"w": 2 * params["w"]}

        cases = [
            (dict_minimize.InvalidParamsError, lambda: minimize(fun, {})),
            (dict_minimize.InvalidParamsError, lambda: minimize(fun, {"w": np.array([np.nan])})),
            (dict_minimize.InvalidDtypeError, lambda: minimize(fun, {"w": np.arange(3)})),
            (dict_minimize.InvalidBoundsError,
             lambda: minimize(fun, {"w": np.ones(2)}, lb_dict={"w": 1.0}, ub_dict={"w": 0.0})),
            (dict_minimize.ObjectiveError,
             lambda: minimize(lambda p: (1.0, {"w": np.ones(3)}), {"w": np.ones(2)})),
            (dict_minimize.InvalidOptionError,
             lambda: minimize(fun, {"w": np.ones(2)}, method="x")),
        ]
        for exc, call in cases:
            try:
                call()
            except exc as err:
                print(type(err).__name__)
            else:
                raise SystemExit(f"no {exc.__name__}")
        """,
        "-O",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.split() == [
        "InvalidParamsError",
        "InvalidParamsError",
        "InvalidDtypeError",
        "InvalidBoundsError",
        "ObjectiveError",
        "InvalidOptionError",
    ]
