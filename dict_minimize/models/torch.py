"""``torch.nn.Module`` <-> an OrderedDict of its parameters.

The keys are the module's parameter names (``"0.weight"``), the names
``torch.func.functional_call`` takes, so a ``jac=False`` objective can run the module on the
params dict without touching the module.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch

from dict_minimize._errors import InvalidParamsError
from dict_minimize.models._common import check_keys, check_shape


def module_to_dict(
    module: torch.nn.Module, *, trainable_only: bool = True
) -> OrderedDict[str, torch.Tensor]:
    """The module's parameters as an OrderedDict of detached copies, for ``x0_dict``.

    Parameters
    ----------
    module : torch.nn.Module
        The model; it is not modified.
    trainable_only : bool
        Skip parameters with ``requires_grad=False`` (frozen layers). Buffers (batch-norm
        statistics) are never included: they are not optimized.

    Returns
    -------
    OrderedDict
        ``name -> tensor`` in ``named_parameters()`` order (a shared parameter appears once),
        each a copy with the parameter's dtype and device.

    Examples
    --------
    >>> import torch
    >>> from dict_minimize.models.torch import module_to_dict
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    >>> {k: tuple(v.shape) for k, v in module_to_dict(net).items()}
    {'0.weight': (3, 2), '0.bias': (3,), '2.weight': (1, 3), '2.bias': (1,)}
    """
    _check_module(module)
    return OrderedDict(
        (name, p.detach().clone())
        for name, p in module.named_parameters()
        if p.requires_grad or not trainable_only
    )


def dict_to_module(
    module: torch.nn.Module, params: Mapping[str, torch.Tensor], *, strict: bool = True
) -> None:
    """Write ``params`` into the module's parameters, in place.

    Each parameter keeps its identity, dtype, device and ``requires_grad`` (values are copied
    in under ``torch.no_grad()``), so optimizers and hooks holding the parameters keep
    working and later training differentiates through them as before.

    Parameters
    ----------
    module : torch.nn.Module
        The model to update.
    params : Mapping
        ``name -> tensor``, as :func:`module_to_dict` returns (e.g. the result of minimize).
    strict : bool
        Require every trainable parameter to be present (frozen ones may be left out).

    Raises
    ------
    InvalidParamsError
        An unknown or (with ``strict``) missing name, a non-tensor value, or a wrong shape;
        nothing is written then.

    Examples
    --------
    >>> import torch
    >>> from dict_minimize.models.torch import dict_to_module, module_to_dict
    >>> from dict_minimize.torch_api import minimize
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Linear(1, 1)
    >>> x, y = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[1.0], [3.0], [5.0]])
    >>> def loss(params):
    ...     pred = torch.func.functional_call(net, params, (x,))
    ...     return ((pred - y) ** 2).mean()
    >>> weight = net.weight
    >>> dict_to_module(net, minimize(loss, module_to_dict(net), jac=False))
    >>> net.weight is weight, round(net.weight.item(), 4), round(net.bias.item(), 4)
    (True, 2.0, 1.0)
    """
    _check_module(module)
    named = dict(module.named_parameters())
    required = [name for name, p in named.items() if p.requires_grad] if strict else []
    check_keys(params, named, required, "parameter")
    for name, value in params.items():
        if not isinstance(value, torch.Tensor):
            raise InvalidParamsError(
                f"params[{name!r}] is a {type(value).__name__}; it must be a torch.Tensor"
            )
        check_shape(name, tuple(value.shape), tuple(named[name].shape))
    with torch.no_grad():
        for name, value in params.items():
            named[name].copy_(value)


def _check_module(module: object) -> None:
    if not isinstance(module, torch.nn.Module):
        raise InvalidParamsError(f"expected a torch.nn.Module, got {type(module).__name__}")
