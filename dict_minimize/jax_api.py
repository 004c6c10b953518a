"""Entry points for JAX arrays, on any device and in any floating dtype.

With ``jac=False`` the objective is ``jax.jit``-compiled once per call. JAX computes in
float64 only when ``jax_enable_x64`` is on (``JAX_ENABLE_X64=1``, or
``jax.config.update("jax_enable_x64", True)`` at startup, or ``with jax.enable_x64(True):``
around the call); otherwise the device side is float32 while scipy iterates in float64 on the
host, so expect float32 accuracy. dict_minimize reads the flag and never changes it.
"""

from dict_minimize._api import bind_minimize
from dict_minimize.backends.jax import JaxBackend

minimize = bind_minimize(
    JaxBackend(),
    autodiff="``jax.value_and_grad`` differentiates it, jit-compiled once per call (float64 "
    "needs ``jax_enable_x64``; see the module docstring)",
    hessp_default="with ``jac=False`` JAX supplies products (forward over reverse) and the "
    "Hessian itself.",
    constraint_jac="come from JAX (reverse or forward mode, whichever is cheaper)",
    example="""    >>> import jax.numpy as jnp
    >>> from dict_minimize.jax_api import minimize
    >>> x0 = {"layer": {"w": jnp.zeros(3), "b": jnp.ones(())}}
    >>> target = jnp.array([1.0, 2.0, 3.0])
    >>> def loss(params):
    ...     layer = params["layer"]
    ...     return jnp.sum((layer["w"] - target) ** 2) + layer["b"] ** 2
    >>> res = minimize(loss, x0, jac=False, method="trust-ncg", full_output=True)
    >>> res.success, res.x["layer"]["w"].dtype, [round(float(v), 4) for v in res.x["layer"]["w"]]
    (True, dtype('float32'), [1.0, 2.0, 3.0])""",
)

__all__ = ["minimize"]
