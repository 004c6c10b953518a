"""One description per backend, so each test is written once and runs on every framework.

A :class:`Case` wraps the backend adapter (used here only to make and read tensors) and the
array namespace ``xp`` in which objectives are written generically (``xp.sum``, ``xp.exp``).
TensorFlow and JAX add their case to ``FACTORIES``; tests never branch on the framework
except through these fields.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from dict_minimize.backends._protocol import Backend


@dataclass
class Case:
    """A backend under test."""

    name: str
    api: ModuleType
    backend: Backend[Any]
    xp: Any  # array namespace with numpy-style functions (exp, sin, sum, ...)
    dtypes: dict[str, Any]
    device: Any = "cpu"
    traced: bool = False  # objectives run as traced, compiled programs (JAX, TensorFlow)

    @property
    def autodiff(self) -> bool:
        return self.backend.has_autodiff

    def tensor(self, value: Any, dtype: str = "float64") -> Any:
        """A tensor of this framework holding ``value`` in ``dtype``."""
        array = np.asarray(value, dtype=np.float64)
        return self.backend.from_numpy(array, self.device, self.dtypes[dtype])

    def numpy(self, tensor: Any) -> np.ndarray:
        """A float64 NumPy copy of a tensor."""
        return np.asarray(self.backend.to_numpy(tensor), dtype=np.float64)

    def flat(self, params: Any) -> Any:
        """A flat dict's tensors, in key order, as one float64 1-D tensor."""
        b, f64 = self.backend, self.dtypes["float64"]
        return b.concat([b.cast(b.reshape(v, (-1,)), f64) for v in params.values()])

    def split(self, vec: Any, like: Any) -> dict[Any, Any]:
        """Split a flat tensor into a dict shaped and typed like ``like``."""
        b, out, offset = self.backend, {}, 0
        for key, value in like.items():
            shape, dtype, _ = b.leaf_meta(value)
            size = int(np.prod(shape))
            out[key] = b.cast(b.reshape(b.slice(vec, offset, offset + size), shape), dtype)
            offset += size
        return out


def _numpy_case() -> Case:
    from dict_minimize.backends.numpy import NumpyBackend

    return Case(
        name="numpy",
        api=importlib.import_module("dict_minimize.numpy_api"),
        backend=NumpyBackend(),
        xp=np,
        dtypes={"float16": np.float16, "float32": np.float32, "float64": np.float64},
    )


def _torch_case() -> Case:
    import torch

    from dict_minimize.backends.torch import TorchBackend

    return Case(
        name="torch",
        api=importlib.import_module("dict_minimize.torch_api"),
        backend=TorchBackend(),
        xp=torch,
        dtypes={
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float32": torch.float32,
            "float64": torch.float64,
        },
    )


def _tensorflow_case() -> Case:
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    from dict_minimize.backends.tensorflow import TensorflowBackend

    return Case(
        name="tensorflow",
        api=importlib.import_module("dict_minimize.tensorflow_api"),
        backend=TensorflowBackend(),
        xp=tnp,
        dtypes={
            "float16": tf.float16,
            "bfloat16": tf.bfloat16,
            "float32": tf.float32,
            "float64": tf.float64,
        },
        device="/job:localhost/replica:0/task:0/device:CPU:0",
        traced=True,
    )


def _jax_case() -> Case:
    import jax
    import jax.numpy as jnp

    from dict_minimize.backends.jax import JaxBackend

    if not jax.config.jax_enable_x64:
        # conftest sets JAX_ENABLE_X64=1 so the suite can compare with scipy in float64;
        # the float32 default is tested in test_jax.py.
        raise RuntimeError("the jax case needs jax_enable_x64 (JAX_ENABLE_X64=1)")
    return Case(
        name="jax",
        api=importlib.import_module("dict_minimize.jax_api"),
        backend=JaxBackend(),
        xp=jnp,
        dtypes={
            "float16": jnp.float16,
            "bfloat16": jnp.bfloat16,
            "float32": jnp.float32,
            "float64": jnp.float64,
        },
        device=jax.devices("cpu")[0],
        traced=True,
    )


#: backend name -> (framework module that must be importable, factory)
FACTORIES: dict[str, tuple[str, Callable[[], Case]]] = {
    "numpy": ("numpy", _numpy_case),
    "torch": ("torch", _torch_case),
    "tensorflow": ("tensorflow", _tensorflow_case),
    "jax": ("jax", _jax_case),
}
