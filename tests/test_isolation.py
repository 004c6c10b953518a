"""Fresh interpreters: what each entry point imports, and validation under ``python -O``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

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


# -- determinism and isolation in one process ---------------------------------------------------


def _problems(case: Any) -> dict[str, Any]:
    """Three calls on ``case``: minimize, least_squares (per sample, geodesic) and a bounded
    trf; each returns ``(x as one float64 vector, value, evaluations)``."""
    import numpy as np

    xp = case.xp
    rng = np.random.default_rng(0)
    t, y = rng.uniform(0, 2, 40), rng.uniform(0, 1, 40)
    tt, yt = case.tensor(t), case.tensor(y)

    def flat(tree: Any) -> np.ndarray:
        return np.concatenate([case.numpy(tree[k]).reshape(-1) for k in sorted(tree)])

    def x0() -> dict[str, Any]:
        return {"a": case.tensor([0.5, -0.3]), "k": case.tensor(1.2)}

    def loss_and_grad(p: Any) -> Any:
        r = p["a"][0] * xp.exp(-p["k"] * tt) + p["a"][1] - yt
        e = xp.exp(-p["k"] * tt)
        ga = [xp.sum(2 * r * e), xp.sum(2 * r)]
        return xp.sum(r * r), {"a": xp.stack(ga), "k": xp.sum(-2 * r * p["a"][0] * tt * e)}

    def residual(p: Any, t: Any, y: Any) -> Any:
        return p["a"][0] * xp.exp(-p["k"] * t) + p["a"][1] - y

    def run_minimize() -> Any:
        res = case.api.minimize(loss_and_grad, x0(), method="BFGS", full_output=True)
        return flat(res.x), res.fun, res.nfev

    def run_lm() -> Any:
        res = case.api.least_squares(
            residual, x0(), args=(tt, yt), options={"batched_args": (0, 1), "geodesic": True}
        )
        return flat(res.x), res.cost, res.nfev

    def run_trf() -> Any:
        res = case.api.least_squares(
            residual, x0(), args=(tt, yt), method="trf", lb_dict={"k": 1.0}, ub_dict={"a": 0.6}
        )
        return flat(res.x), res.cost, res.nfev

    return {"minimize": run_minimize, "lm": run_lm, "trf": run_trf}


def _same(a: Any, b: Any) -> None:
    import numpy as np

    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


def test_same_call_twice_is_bitwise_identical_and_changes_no_setting(case: Any) -> None:
    """minimize, least_squares (in-framework and scipy's) twice: the same bits, and every
    global setting as found."""
    before = _global_settings()
    for run in _problems(case).values():
        first, second = run(), run()
        _same(first, second)
    case.api.least_squares(
        lambda p: p["x"] - 1.0, {"x": case.tensor([0.0, 2.0])}, method="scipy-trf"
    )
    assert _global_settings() == before


def test_two_threads_at_once_give_the_results_of_one(case: Any) -> None:
    """Each of two threads runs the three calls in a different order, started together; each
    result equals the one a run alone gives, bit for bit."""
    import threading

    problems = _problems(case)
    alone = {name: run() for name, run in problems.items()}
    orders = [list(problems), list(reversed(problems))]
    results: list[dict[str, Any]] = [{}, {}]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for name in orders[i]:
                results[i][name] = problems[name]()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for result in results:
        for name, value in result.items():
            _same(value, alone[name])


def _global_settings() -> dict[str, Any]:
    """Process-wide settings a library could change behind its user's back."""
    import random

    import numpy as np

    out: dict[str, Any] = {
        "numpy errstate": np.geterr(),
        "numpy print": np.get_printoptions()["precision"],
        "numpy rng": np.random.get_state()[1][:8].tolist(),  # type: ignore[index]  # noqa: NPY002
        "python rng": random.getstate()[1][:8],
    }
    if "torch" in sys.modules:
        import torch

        out |= {
            "torch default dtype": torch.get_default_dtype(),
            "torch threads": torch.get_num_threads(),
            "torch grad enabled": torch.is_grad_enabled(),
            "torch deterministic": torch.are_deterministic_algorithms_enabled(),
            "torch matmul precision": torch.get_float32_matmul_precision(),
            "torch rng": torch.get_rng_state()[:16].tolist(),
        }
    if "jax" in sys.modules:
        import jax

        out |= {
            "jax x64": jax.config.jax_enable_x64,
            "jax matmul precision": jax.config.jax_default_matmul_precision,
            "jax disable jit": jax.config.jax_disable_jit,
        }
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        out |= {
            "tf run eagerly": tf.config.functions_run_eagerly(),
            "tf device policy": tf.config.experimental.get_device_policy(),
            "tf soft placement": tf.config.get_soft_device_placement(),
            "tf tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
        }
    if "keras" in sys.modules:
        import keras

        out["keras floatx"] = keras.backend.floatx()
    return out


def test_fit_is_deterministic_and_changes_no_setting() -> None:
    """torch ``fit`` twice gives the same weights bit for bit, and changes no setting."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import fit

    gen = torch.Generator().manual_seed(1)
    x = torch.rand(50, 2, generator=gen, dtype=torch.float64)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:]
    nets = [
        torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
        for _ in range(2)
    ]  # (built before the snapshot: their initialization draws from torch's RNG)
    with torch.no_grad():
        for p, q in zip(nets[0].parameters(), nets[1].parameters()):
            q.copy_(p)
    before = _global_settings()
    weights = []
    for net in nets:
        net.double()
        fit(net, x, y, val_data=(x[:10], y[:10]), epochs=15, normalize=True, min_grad=0.0)
        weights.append([p.detach().numpy().copy() for p in net.parameters()])
    assert _global_settings() == before
    for a, b in zip(*weights):
        assert (a == b).all()
