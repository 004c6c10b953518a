"""Entry points for NumPy arrays (no framework needed).

NumPy has no autodiff: with ``jac=False`` the gradient comes from scipy's finite differences
(``"2-point"``), and second-order methods need ``hessp``.
"""

from dict_minimize._api import bind_least_squares, bind_minimize
from dict_minimize.backends.numpy import NumpyBackend

minimize = bind_minimize(
    NumpyBackend(),
    autodiff="the gradient comes from scipy's finite differences (2-point)",
    hessp_default="numpy_api has no autodiff, so trust-ncg, trust-krylov, dogleg and "
    "trust-exact need it.",
    constraint_jac="come from scipy's finite differences",
    example="""    >>> from collections import OrderedDict
    >>> import numpy as np
    >>> from dict_minimize.numpy_api import minimize
    >>> def fun(params, target):
    ...     diff = params["w"] - target
    ...     return float(diff @ diff) + float(params["b"] ** 2), OrderedDict(
    ...         w=2 * diff, b=2 * params["b"])
    >>> x0 = OrderedDict(w=np.zeros(3), b=np.ones(()))
    >>> x = minimize(fun, x0, args=(np.array([1.0, 2.0, 3.0]),))
    >>> np.round(x["w"], 6).tolist(), float(np.round(x["b"], 6))
    ([1.0, 2.0, 3.0], 0.0)""",
)

least_squares = bind_least_squares(
    NumpyBackend(),
    jacobian="central differences (2n residual evaluations; NumPy has no autodiff)",
    jacobian_short="central differences",
    matrix_free="Not available here: it needs autodiff.",
    example="""    >>> import numpy as np
    >>> from dict_minimize.numpy_api import least_squares
    >>> t = np.linspace(0.0, 3.0, 20)
    >>> y = 2.0 * np.exp(-1.5 * t)
    >>> def residual_fn(p, t, y):
    ...     return p["a"] * np.exp(-p["k"] * t) - y
    >>> res = least_squares(residual_fn, {"a": np.ones(()), "k": np.ones(())}, args=(t, y))
    >>> res.success, round(float(res.x["a"]), 6), round(float(res.x["k"]), 6)
    (True, 2.0, 1.5)""",
)

__all__ = ["least_squares", "minimize"]
