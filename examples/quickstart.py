"""Quick start: fit a bounded model whose parameters live in a dict of PyTorch tensors.

A logistic model p(y=1|x) = sigmoid(w·x + b) on scikit-learn's breast-cancer data, with the
weights bounded to [-2, 2], solved with L-BFGS-B (autograd gradients) and with trust-ncg
(autograd Hessian-vector products).

Run: ``python examples/quickstart.py``
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer

from dict_minimize.torch_api import minimize


def main() -> None:
    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    X = torch.tensor(x, dtype=torch.float64)
    y = torch.tensor(data.target, dtype=torch.float64)

    def loss(params: OrderedDict[str, torch.Tensor], l2: float) -> torch.Tensor:
        logits = X @ params["w"] + params["b"]
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        return nll + l2 * (params["w"] ** 2).sum()

    x0 = OrderedDict(w=torch.zeros(X.shape[1], dtype=torch.float64), b=torch.zeros(()))
    print(f"{'method':<10} {'loss':>10} {'iters':>6} {'evals':>6} {'max|w|':>7} {'time':>7}")
    for method, kw in [
        ("L-BFGS-B", {"lb_dict": {"w": -2.0}, "ub_dict": {"w": 2.0}}),
        ("trust-ncg", {}),
    ]:
        t0 = time.perf_counter()
        res = minimize(loss, x0, args=(1e-3,), method=method, jac=False, full_output=True, **kw)
        dt = time.perf_counter() - t0
        acc = ((X @ res.x["w"] + res.x["b"] > 0).double() == y).double().mean().item()
        print(
            f"{method:<10} {res.fun:>10.5f} {res.nit:>6} {res.nfev:>6} "
            f"{res.x['w'].abs().max().item():>7.3f} {dt:>6.2f}s  (train accuracy {acc:.3f},"
            f" {res.message})"
        )
    print("x0 untouched:", bool(np.all(x0["w"].numpy() == 0)), "| b dtype kept:", res.x["b"].dtype)


if __name__ == "__main__":
    main()
