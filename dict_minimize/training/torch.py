"""``fit`` for ``torch.nn.Module``: Levenberg-Marquardt training like MATLAB ``trainlm``."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch

from dict_minimize._errors import InvalidOptionError
from dict_minimize.backends.torch import TorchBackend
from dict_minimize.training._core import FitResult, Scaling, fit_params

_BACKEND = TorchBackend()


def _end_layers(model: torch.nn.Module) -> tuple[str, torch.nn.Linear, str, torch.nn.Linear]:
    """The first and last modules holding parameters; both must be ``nn.Linear``."""
    holders = [
        (name, module)
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    if not holders or not all(isinstance(m, torch.nn.Linear) for _, m in (holders[0], holders[-1])):
        raise InvalidOptionError(
            "normalize=True folds the data scaling into the model's first and last layers, "
            "which must be nn.Linear (in registration order); normalize the data yourself or "
            "pass normalize=False"
        )
    (first_name, first), (last_name, last) = holders[0], holders[-1]
    return first_name, first, last_name, last  # type: ignore[return-value]


def fit(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    epochs: int = 1000,
    goal: float = 0.0,
    min_grad: float = 1e-7,
    mu: float = 1e-3,
    mu_dec: float = 0.1,
    mu_inc: float = 10.0,
    mu_max: float = 1e10,
    max_fail: int = 6,
    normalize: bool = False,
    damping: str = "marquardt",
    geodesic: bool = True,
    progress: bool = False,
    chunk_size: int | None = None,
    distributed: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Train a ``torch.nn.Module`` by Levenberg-Marquardt on the mean squared error.

    MATLAB ``trainlm``'s algorithm and parameters: each epoch forms ``JᵀJ`` from per-sample
    Jacobians (``torch.func.vmap`` of ``jacrev``, in row chunks) and solves
    ``(JᵀJ + mu·I) δ = -Jᵀe``; ``mu`` is multiplied by ``mu_dec`` after a step that lowers
    the error and by ``mu_inc`` until one does. By default each step also gets geodesic
    acceleration (see ``geodesic``). The trained weights are written back
    into ``model`` (the best validation weights when validation stops the run).

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs (samples along axis 0) to outputs shaped like ``targets``.
        Its trainable parameters are fitted; buffers are used as they are. It is called in
        evaluation mode, per sample under ``torch.func.vmap``, so it must be vmap-compatible
        (no in-place updates of captured tensors, no data-dependent Python control flow).
    inputs, targets : torch.Tensor
        Training data, samples along axis 0, on the model's device.
    val_data : (inputs, targets), optional
        Validation data for early stopping.
    epochs : int
        Iterations (Jacobians) at most.
    goal : float
        Stop when the training MSE is at most ``goal``.
    min_grad : float
        Stop when ``‖∇(½ Σ e²)‖∞`` is at most ``min_grad``.
    mu, mu_dec, mu_inc, mu_max : float
        trainlm's damping parameters; training stops when ``mu`` exceeds ``mu_max``.
        With ``damping="nielsen"`` only ``mu`` applies, relative to ``max diag(JᵀJ)``.
    max_fail : int
        Stop after the validation MSE failed to improve this many epochs in a row, and
        restore the weights of the best validation epoch.
    normalize : bool
        Map each input and target feature to [-1, 1] for training (MATLAB ``mapminmax``),
        with errors measured in the targets' units; the maps are folded into the first and
        last ``nn.Linear`` afterwards, so the model keeps taking raw data. The model's
        initial weights are taken as weights for normalized data.
    damping : {"marquardt", "nielsen"}
        ``"marquardt"``: trainlm's ``(JᵀJ + mu·I)`` with its multiply/divide rule.
        ``"nielsen"``: Marquardt's scaling ``D = diag(JᵀJ)`` and Nielsen's update.
    geodesic : bool
        Add geodesic acceleration to each step (one more forward pass and a Jacobian-vector
        and vector-Jacobian product per trial). It follows curved valleys of the error: on
        a 2-10-1 tanh MLP fitting 500 Rosenbrock points (10 seeds, 100 epochs) it lowered
        the median final MSE from 3.5e-3 to 6e-4 and the worst from 3.9e-2 to 1.6e-3.
    progress : bool
        Show a tqdm bar with the MSE, validation MSE and mu.
    chunk_size : int, optional
        Samples per Jacobian chunk (bounds memory: ``chunk_size × n_params`` floats).
    distributed : bool or torch.distributed.ProcessGroup, optional
        Data-parallel training when ``torch.distributed`` is initialized (None, the default:
        whenever it is; False: never; a group: over that group). Each rank's ``inputs``,
        ``targets`` and ``val_data`` are its shard (sizes may differ); ``JᵀJ``, ``Jᵀe``, the
        MSEs and the ``normalize`` ranges are taken over all shards, every rank ends with
        the same weights, and the model must start with the same weights on every rank.
    checkpoint : str or os.PathLike, optional
        Write the whole training state (weights, ``mu``, counters, history, validation
        state and best weights) to this ``.npz`` file every ``checkpoint_every`` epochs,
        atomically (see ``least_squares``' option of that name).
    checkpoint_every : int
        Epochs between checkpoints.
    resume : str or os.PathLike, optional
        A checkpoint to continue from (the same file as ``checkpoint`` to keep writing it).
        The model must have the same architecture; its current weights are not used. On
        the CPU in float64 the resumed run ends with the same weights, bit for bit, as a run
        never interrupted. A missing, corrupt or mismatched file raises
        :class:`~dict_minimize.CheckpointError`.

    Returns
    -------
    FitResult
        ``params`` (also in ``model``), ``history`` (``loss``, ``val_loss``, ``mu`` per
        epoch), ``best_epoch``, ``stop_reason`` and the least-squares ``result``.

    Examples
    --------
    >>> import torch
    >>> from dict_minimize.torch_api import fit
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.linspace(-1, 1, 200, dtype=torch.float64).reshape(-1, 1)
    >>> y = torch.sin(3 * x)
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(),
    ...                           torch.nn.Linear(8, 1)).double()
    >>> out = fit(net, x, y, epochs=100, goal=1e-8)
    >>> bool(torch.mean((net(x) - y) ** 2) < 1e-6)
    True
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise InvalidOptionError("the model has no trainable parameters")
    params0 = OrderedDict(
        (name, p.detach().clone()) for name, p in model.named_parameters() if p.requires_grad
    )
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def apply(params: Any, x: torch.Tensor) -> torch.Tensor:
        state = {**frozen, **buffers, **params}
        return torch.func.functional_call(model, state, (x,))

    fold = None
    if normalize:
        first_name, first, last_name, last = _end_layers(model)

        def fold(params: Any, x_scale: Scaling | None, y_scale: Scaling | None) -> Any:
            # W·((x - c)·g) + b = (W·diag(g))·x + (b - W·(c·g)); y = (z)/g_y + c_y likewise.
            out = OrderedDict(params)
            like = params[f"{first_name}.weight"]
            if x_scale is not None:
                gain = torch.as_tensor(
                    x_scale.gain.reshape(-1), dtype=like.dtype, device=like.device
                )
                off = torch.as_tensor(
                    x_scale.offset.reshape(-1), dtype=like.dtype, device=like.device
                )
                w = out[f"{first_name}.weight"]
                out[f"{first_name}.weight"] = w * gain
                if first.bias is not None:
                    out[f"{first_name}.bias"] = out[f"{first_name}.bias"] - w @ (off * gain)
            if y_scale is not None:
                like = params[f"{last_name}.weight"]
                inv = torch.as_tensor(
                    1.0 / y_scale.gain.reshape(-1), dtype=like.dtype, device=like.device
                )
                off = torch.as_tensor(
                    y_scale.offset.reshape(-1), dtype=like.dtype, device=like.device
                )
                out[f"{last_name}.weight"] = out[f"{last_name}.weight"] * inv.reshape(-1, 1)
                if last.bias is not None:
                    out[f"{last_name}.bias"] = out[f"{last_name}.bias"] * inv + off
            return out

    was_training = model.training
    model.eval()
    try:
        result = fit_params(
            _BACKEND,
            apply,
            params0,
            inputs,
            targets,
            val_data=val_data,
            epochs=epochs,
            goal=goal,
            min_grad=min_grad,
            mu=mu,
            mu_dec=mu_dec,
            mu_inc=mu_inc,
            mu_max=mu_max,
            max_fail=max_fail,
            normalize=normalize,
            progress=progress,
            chunk_size=chunk_size,
            fold=fold,
            damping=damping,
            geodesic=geodesic,
            distributed=distributed,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )
    finally:
        model.train(was_training)
    with torch.no_grad():
        own = dict(model.named_parameters())
        for name, value in result.params.items():
            own[name].copy_(value)
    return result
