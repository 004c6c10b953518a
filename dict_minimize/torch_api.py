"""Entry points for PyTorch tensors, on any device and in any floating dtype."""

from dict_minimize._api import bind_minimize
from dict_minimize.backends.torch import TorchBackend

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

__all__ = ["minimize"]
