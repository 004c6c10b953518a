"""Entry points for JAX arrays, on any device and in any floating dtype.

With ``jac=False`` the objective is ``jax.jit``-compiled once, and later calls with the same
function, layout of x0 and ``args`` arrays reuse the compiled code (as with ``jax.jit``, Python
state read while tracing is fixed then; see ``dict_minimize/_compiled.py``). JAX computes in
float64 only when ``jax_enable_x64`` is on (``JAX_ENABLE_X64=1``, or
``jax.config.update("jax_enable_x64", True)`` at startup, or ``with jax.enable_x64(True):``
around the call); otherwise the device side is float32 while scipy iterates in float64 on the
host, so expect float32 accuracy. dict_minimize reads the flag and never changes it.
"""

from dict_minimize._api import bind_least_squares, bind_minimize
from dict_minimize.backends.jax import JaxBackend
from dict_minimize.training.jax import fit

_BACKEND = JaxBackend()

minimize = bind_minimize(
    _BACKEND,
    autodiff="``jax.value_and_grad`` differentiates it, jit-compiled once and reused by later "
    "calls with the same function, layout and args (float64 needs ``jax_enable_x64``; see the "
    "module docstring)",
    hessp_default="with ``jac=False`` JAX supplies products (forward over reverse) and the "
    "Hessian itself.",
    constraint_jac="come from JAX (reverse or forward mode, whichever is cheaper)",
    example="""    >>> import jax.numpy as jnp
    >>> from dict_minimize.jax_api import minimize
    >>> x0 = {"layer": {"w": jnp.zeros(3, jnp.float32), "b": jnp.ones(())}}
    >>> target = jnp.array([1.0, 2.0, 3.0])
    >>> def loss(params):
    ...     layer = params["layer"]
    ...     return jnp.sum((layer["w"] - target) ** 2) + layer["b"] ** 2
    >>> res = minimize(loss, x0, jac=False, method="trust-ncg", full_output=True)
    >>> w = res.x["layer"]["w"]
    >>> res.success, w.dtype, [round(float(v), 4) for v in w]
    (True, dtype('float32'), [1.0, 2.0, 3.0])""",
)

least_squares = bind_least_squares(
    _BACKEND,
    jacobian="JAX: per sample by ``vmap(jacrev)`` when batched args are declared, else "
    "``jacfwd``/``jacrev``, each compiled once",
    jacobian_short="JAX",
    matrix_free="Products come from ``jax.jvp``/``jax.vjp``, each compiled once.",
    example="""    >>> import jax.numpy as jnp
    >>> from dict_minimize.jax_api import least_squares
    >>> t = jnp.linspace(0.0, 3.0, 20)
    >>> y = 2.0 * jnp.exp(-1.5 * t)
    >>> def residual_fn(p, t, y):
    ...     return p["a"] * jnp.exp(-p["k"] * t) - y
    >>> x0 = {"a": jnp.ones(()), "k": jnp.ones(())}
    >>> res = least_squares(residual_fn, x0, args=(t, y), options={"batched_args": (0, 1)})
    >>> res.success, round(float(res.x["a"]), 4), round(float(res.x["k"]), 4)
    (True, 2.0, 1.5)""",
)

__all__ = ["fit", "least_squares", "minimize"]
