"""Entry points for PyTorch tensors, on any device and in any floating dtype."""

from dict_minimize._api import bind_least_squares, bind_minimize
from dict_minimize.backends.torch import TorchBackend
from dict_minimize.training.torch import fit

minimize = bind_minimize(
    TorchBackend(),
    autodiff="torch.autograd differentiates it",
    hessp_default="with ``jac=False`` autograd supplies products (and the Hessian) itself.",
    constraint_jac="come from torch.autograd",
    example="""    >>> import torch
    >>> from dict_minimize.torch_api import minimize
    >>> x0 = {"w": torch.zeros(3), "b": torch.ones((), dtype=torch.float64)}
    >>> target = torch.tensor([1.0, 2.0, 3.0])
    >>> def loss(params):
    ...     return ((params["w"] - target) ** 2).sum() + params["b"] ** 2
    >>> res = minimize(loss, x0, jac=False, method="trust-ncg", full_output=True)
    >>> res.success, res.x["w"].dtype, [round(v, 4) for v in res.x["w"].tolist()]
    (True, torch.float32, [1.0, 2.0, 3.0])""",
)

least_squares = bind_least_squares(
    TorchBackend(),
    jacobian="torch.func: per sample by ``vmap(jacrev)`` when batched args are declared, "
    "else ``jacfwd``/``jacrev``",
    jacobian_short="torch.func",
    matrix_free="Products come from ``torch.func.jvp``/``vjp``.",
    example="""    >>> import torch
    >>> from dict_minimize.torch_api import least_squares
    >>> t = torch.linspace(0.0, 3.0, 20, dtype=torch.float64)
    >>> y = 2.0 * torch.exp(-1.5 * t)
    >>> def residual_fn(p, t, y):
    ...     return p["a"] * torch.exp(-p["k"] * t) - y
    >>> x0 = {"a": torch.ones((), dtype=torch.float64), "k": torch.ones((), dtype=torch.float64)}
    >>> res = least_squares(residual_fn, x0, args=(t, y), options={"batched_args": (0, 1)})
    >>> res.success, round(res.x["a"].item(), 6), round(res.x["k"].item(), 6)
    (True, 2.0, 1.5)""",
)

__all__ = ["fit", "least_squares", "minimize"]
