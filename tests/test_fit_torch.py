"""``fit`` for torch.nn.Module: trainlm-style Levenberg-Marquardt training."""

from __future__ import annotations

import itertools
import statistics

import pytest

torch = pytest.importorskip("torch")

from dict_minimize import InvalidOptionError, InvalidParamsError  # noqa: E402
from dict_minimize.torch_api import fit  # noqa: E402


def _rosenbrock(seed: int, n: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """The issue's case A data: z = (a - x)² + b(y - x²)², a = b = 2.5, x, y ~ U(-2, 2)."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 4 - 2
    z = (2.5 - xy[:, 0]) ** 2 + 2.5 * (xy[:, 1] - xy[:, 0] ** 2) ** 2
    return xy, z.reshape(-1, 1)


def _mlp(seed: int, sizes: tuple[int, ...] = (2, 10, 1)) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).double()


def test_case_a_reaches_mse_goal_in_100_epochs() -> None:
    """2-10-1 tanh MLP, 500 Rosenbrock points: MSE < 0.01 on seeds 0, 1, 2 (median < 0.005)."""
    finals = []
    for seed in (0, 1, 2):
        x, z = _rosenbrock(seed)
        net = _mlp(seed)
        out = fit(net, x, z, epochs=100, normalize=True, min_grad=0.0)
        with torch.no_grad():
            mse = float(torch.mean((net(x) - z) ** 2))  # the model itself, on raw data
        assert mse == pytest.approx(out.history["loss"][-1], rel=1e-9)
        assert len(out.history["loss"]) == 101 and out.best_epoch == 100
        assert out.history["loss"][-1] < out.history["loss"][0]
        finals.append(mse)
    assert max(finals) < 0.01, finals
    assert statistics.median(finals) < 0.005, finals


def test_validation_stop_restores_best_weights() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(40, 1, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x) + 0.3 * torch.randn(40, 1, generator=gen, dtype=torch.float64)
    xv = torch.linspace(-1, 1, 50, dtype=torch.float64).reshape(-1, 1)
    yv = torch.sin(3 * xv)
    net = _mlp(0, (1, 30, 1))
    out = fit(net, x, y, val_data=(xv, yv), epochs=200, max_fail=4, min_grad=0.0)
    assert out.stop_reason.startswith("validation stop"), out.stop_reason
    val = out.history["val_loss"]
    assert out.best_epoch == val.index(min(val))
    assert len(val) == out.best_epoch + 4 + 1  # stopped max_fail epochs after the best
    with torch.no_grad():
        restored = float(torch.mean((net(xv) - yv) ** 2))
    assert restored == pytest.approx(min(val), rel=1e-9)
    assert restored < val[-1]


def test_goal_mu_max_and_history() -> None:
    x, z = _rosenbrock(1, 200)
    net = _mlp(1)
    out = fit(net, x, z, epochs=50, goal=5.0, normalize=True, progress=True)
    assert out.stop_reason.startswith("performance goal met")
    assert out.history["loss"][-1] <= 5.0 < out.history["loss"][-2]
    assert len(out.history["mu"]) == len(out.history["loss"])
    net = _mlp(2)
    out = fit(net, x, z, epochs=50, mu_max=1e-2, mu=1e-3, mu_inc=100.0)
    assert "damping" in out.stop_reason or out.result.status == -4 or out.result.nit == 50


def test_float32_model_is_trained_in_place() -> None:
    x, z = _rosenbrock(2, 100)
    net = _mlp(2).float()
    before = [p.detach().clone() for p in net.parameters()]
    out = fit(net, x.float(), z.float(), epochs=10)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert out.history["loss"][-1] < out.history["loss"][0]


def test_bad_input() -> None:
    x, z = _rosenbrock(0, 50)
    with pytest.raises(InvalidParamsError, match="same number of samples"):
        fit(_mlp(0), x, z[:10])
    with pytest.raises(InvalidOptionError, match="epochs"):
        fit(_mlp(0), x, z, epochs=0)
    conv_first = torch.nn.Sequential(torch.nn.LayerNorm(2), torch.nn.Linear(2, 1)).double()
    with pytest.raises(InvalidOptionError, match=r"nn\.Linear"):
        fit(conv_first, x, z, normalize=True)


def test_nielsen_damping_without_acceleration() -> None:
    x, z = _rosenbrock(0)
    net = _mlp(0)
    out = fit(net, x, z, epochs=100, normalize=True, damping="nielsen", geodesic=False)
    assert out.history["loss"][-1] < 0.01
    with pytest.raises(InvalidOptionError, match="damping"):
        fit(net, x, z, damping="adam")
