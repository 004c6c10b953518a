"""Fresh interpreters: tensorflow_api, jax_api and the model helpers import only their own
framework.

TensorFlow itself imports Keras and, when installed, JAX (its TFLite utilities do); so
tensorflow_api is held to "nothing beyond what ``import tensorflow`` brings", measured in the
same interpreter. test_isolation.py covers numpy_api and torch_api.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = {"torch", "tensorflow", "jax", "jaxlib", "keras", "flax", "equinox"}


def _frameworks_after(*steps: str) -> list[set[str]]:
    """The frameworks in sys.modules after each import statement, in one fresh interpreter."""
    code = textwrap.dedent(
        f"""
        import json, sys
        frameworks, seen = set({sorted(FRAMEWORKS)!r}), []
        for step in {list(steps)!r}:
            exec(step)
            seen.append(sorted({{m.split('.')[0] for m in sys.modules}} & frameworks))
        print(json.dumps(seen))
        """
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [set(s) for s in json.loads(proc.stdout.splitlines()[-1])]


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def test_models_package_imports_no_framework() -> None:
    (after,) = _frameworks_after("import dict_minimize.models")
    assert after == set()


def test_jax_api_and_pytree_helpers_import_only_jax() -> None:
    _need("jax")
    api, helpers = _frameworks_after(
        "import dict_minimize.jax_api", "import dict_minimize.models.pytree"
    )
    assert api == helpers == {"jax", "jaxlib"}


def test_torch_helpers_import_only_torch() -> None:
    _need("torch")
    (after,) = _frameworks_after("import dict_minimize.models.torch")
    assert after == {"torch"}


def test_tensorflow_api_and_keras_helpers_add_nothing() -> None:
    """Whatever TensorFlow (and Keras) import themselves, our modules import nothing more."""
    _need("tensorflow")
    tf_alone, api, keras_alone, helpers = _frameworks_after(
        "import tensorflow",
        "import dict_minimize.tensorflow_api",
        "import keras",
        "import dict_minimize.models.keras",
    )
    assert "torch" not in helpers
    assert api == tf_alone and helpers == keras_alone
