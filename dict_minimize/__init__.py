"""Scipy-grade optimization of dicts of PyTorch, TensorFlow, JAX and NumPy tensors.

Import the entry point of your framework, which imports that framework only::

    from dict_minimize.torch_api import minimize
    from dict_minimize.numpy_api import minimize

This top-level module holds the version, the exceptions and the method table; it imports no
array framework.
"""

from dict_minimize._errors import (
    CheckpointError,
    DictMinimizeError,
    DictMinimizeWarning,
    DistributedError,
    InvalidBoundsError,
    InvalidDtypeError,
    InvalidOptionError,
    InvalidParamsError,
    ObjectiveError,
    OptimizationInterrupted,
)
from dict_minimize._methods import METHODS, MethodInfo
from dict_minimize._result import LeastSquaresResult, MinimizeResult

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "CheckpointError",
    "DictMinimizeError",
    "DictMinimizeWarning",
    "DistributedError",
    "InvalidBoundsError",
    "InvalidDtypeError",
    "InvalidOptionError",
    "InvalidParamsError",
    "LeastSquaresResult",
    "MethodInfo",
    "MinimizeResult",
    "ObjectiveError",
    "OptimizationInterrupted",
    "__version__",
]
