"""GPU round trips; skipped cleanly on machines without a CUDA device (CI has none)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("method", ["L-BFGS-B", "trust-ncg", "trust-exact", "SLSQP"])
def test_cuda_tensors_round_trip(dtype: torch.dtype, method: str) -> None:
    from dict_minimize.torch_api import minimize

    target = torch.linspace(-1, 1, 6, device="cuda", dtype=torch.float64)
    x0 = OrderedDict(
        a=torch.zeros(2, 3, device="cuda", dtype=dtype),
        b=torch.ones((), device="cuda", dtype=torch.float64),
    )

    def loss(params: OrderedDict[str, torch.Tensor]) -> torch.Tensor:
        assert params["a"].device.type == "cuda" and params["a"].dtype == dtype
        diff = params["a"].reshape(-1).double() - target
        return (diff**2).sum() + (params["b"] - 0.5) ** 2 + 0.1 * (diff**4).sum()

    res = minimize(loss, x0, jac=False, method=method, full_output=True)
    assert res.success, res.message
    assert res.x["a"].device.type == "cuda" and res.x["a"].dtype == dtype
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-4
    np.testing.assert_allclose(res.x["a"].double().cpu().numpy().ravel(), target.cpu(), atol=tol)
    assert torch.count_nonzero(x0["a"]) == 0  # x0 untouched
