"""Entry points for NumPy arrays (no framework needed).

NumPy has no autodiff: with ``jac=False`` the gradient comes from scipy's finite differences
(``"2-point"``), and second-order methods need ``hessp``.
"""

from dict_minimize._api import bind_minimize
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

__all__ = ["minimize"]
