"""Pin every numerical library to one thread, so timings on a shared machine are comparable.

Standard library only: :func:`pin_env` must run before NumPy, PyTorch, TensorFlow or JAX is
imported (their thread pools read the environment at import time); :func:`pin_frameworks`
then sets the runtime knobs of the frameworks that are already imported.
"""

from __future__ import annotations

import contextlib
import os
import sys

_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
}


def pin_env() -> dict[str, str]:
    """Set the one-thread environment (for this process and the subprocesses it starts)."""
    for key, value in _ENV.items():
        os.environ[key] = value
    return dict(_ENV)


def pin_frameworks() -> None:
    """One intra-op and one inter-op thread for the frameworks imported so far."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
        # Only settable before the first parallel op; the environment has made it 1 then.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        # TF refuses once its runtime started; the environment variables hold then.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
