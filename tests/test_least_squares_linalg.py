"""The least-squares solvers' linear algebra and Jacobians on every backend: the symmetric
``JᵀJ`` product, one Cholesky factorization shared by two right-hand sides, the general-mode
Jacobian when residuals outnumber parameters, and geodesic acceleration from ``JᵀWJ``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from cases import Case
from dict_minimize._tree import tree_spec
from dict_minimize.solvers._linear import DenseSteps
from dict_minimize.solvers._problem import ResidualProblem
from dict_minimize.solvers.damping import Nielsen
from dict_minimize.solvers.levenberg_marquardt import LevenbergMarquardt, Settings
from dict_minimize.solvers.losses import Loss


def _close(actual: Any, expected: Any, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gram_of_one_matrix_is_the_symmetric_product(case: Case, dtype: str) -> None:
    """``gram(J, J)`` equals ``J.T @ J``, symmetric, at widths where a backend forms only one
    triangle (a column slice too: a strided view on the frameworks that have views)."""
    b = case.backend
    host = np.random.default_rng(2).standard_normal((400, 300))
    j = case.tensor(host, dtype)
    tol = 1e-12 if dtype == "float64" else 1e-4
    for tensor, ref in ((j, host), (b.slice_axis(j, 7, 290, 1), host[:, 7:290])):
        got = case.numpy(b.gram(tensor, tensor))
        _close(got / 400.0, ref.T @ ref / 400.0, tol)
        _close(got / 400.0, got.T / 400.0, tol)
        assert case.numpy(tensor).shape == ref.shape  # the input is left as it was
    _close(case.numpy(j), host, tol)


def test_one_factorization_serves_two_right_hand_sides(case: Case) -> None:
    """DenseSteps factors ``Â + μI`` once per μ: a second right-hand side at the same μ (the
    geodesic acceleration) reuses it, a new μ factors again; solutions match NumPy's."""
    b = case.backend
    rng = np.random.default_rng(4)
    m = rng.standard_normal((30, 6))
    a_host, g_host, rhs_host = m.T @ m, rng.standard_normal(6), rng.standard_normal(6)
    a = case.tensor(a_host)
    calls: list[float] = []

    class Counting(type(b)):  # type: ignore[misc]
        def cholesky_factor(self, matrix: Any) -> Any:
            calls.append(1.0)
            return super().cholesky_factor(matrix)

    counting = Counting()
    steps = DenseSteps(counting, a, case.tensor(g_host), b.eye(6, a), eigh_after=None)
    eye = np.eye(6)
    for mu in (0.5, 0.5, 3.0):
        s = case.numpy(steps.solve(mu))
        _close(s, np.linalg.solve(a_host + mu * eye, -g_host), 1e-10)
        extra = case.numpy(steps.solve(mu, case.tensor(rhs_host)))
        _close(extra, np.linalg.solve(a_host + mu * eye, rhs_host), 1e-10)
    assert len(calls) == 2  # μ = 0.5 (three solves, one repeated μ), then μ = 3
    factor = b.cholesky_factor(case.tensor([[1.0, 2.0], [2.0, 1.0]]))  # indefinite
    assert np.isnan(case.numpy(b.factor_solve(factor, case.tensor([1.0, 1.0])))).any()


def _curve(xp: Any) -> Any:
    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["a"] * xp.exp(-p["k"][0] * t) + p["k"][1] * xp.sin(p["k"][2] * t) ** 2 - y

    return residual_fn


def _flat_curve(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(x[0] * np.exp(-x[1] * t) + x[2] * np.sin(x[3] * t) ** 2 - y)


def _problem(case: Case, x0: dict[str, Any], args: tuple[Any, ...], **kw: Any) -> Any:
    b = case.backend
    spec, leaves = tree_spec(x0, b.describe, b.is_leaf)
    device = spec.leaves[0].device
    flat = b.ravel(leaves, spec, b.flat_dtype(device))
    problem = ResidualProblem(
        b,
        spec,
        kw.pop("fn", _curve(case.xp)),
        args,
        device,
        Loss(b, kw.pop("loss", "linear"), 1.0),
        kw.pop("in_axes", None),
        None,
        False,
    )
    problem.start(flat)
    return problem, flat


def test_general_jacobian_matches_central_differences(autodiff_case: Case) -> None:
    """With more residuals than parameters the general mode's Jacobian (forward mode, or
    reverse-over-reverse in PyTorch) matches central differences of the NumPy model."""
    case = autodiff_case
    t = np.linspace(0.0, 3.0, 50)
    y = np.cos(t)
    x0_host = np.array([1.2, 0.7, 0.3, 1.9])
    x0 = {"a": case.tensor(x0_host[0]), "k": case.tensor(x0_host[1:])}
    problem, flat = _problem(case, x0, (case.tensor(t), case.tensor(y)))
    lin = problem.linearize(flat)
    h = 1e-6
    fd = np.stack(
        [
            (_flat_curve(x0_host + h * e, t, y) - _flat_curve(x0_host - h * e, t, y)) / (2 * h)
            for e in np.eye(4)
        ],
        axis=1,
    )
    _close(case.numpy(lin.jac), fd, 1e-7)
    _close(case.numpy(lin.r), _flat_curve(x0_host, t, y), 1e-12)
    _close(case.numpy(lin.A), fd.T @ fd, 1e-6)


@pytest.mark.parametrize("loss", ["linear", "cauchy"])
@pytest.mark.parametrize("in_axes", [None, (0, 0)], ids=["general", "per-sample"])
def test_geodesic_acceleration_from_the_normal_matrix(
    autodiff_case: Case, loss: str, in_axes: Any
) -> None:
    """The acceleration formed with ``JᵀWJ v`` equals Transtrum and Sethna's formula with
    ``r_vv = (2/h)((r(x + h v) - r)/h - J v)`` computed from J on the host."""
    case = autodiff_case
    b = case.backend
    t = np.linspace(0.0, 3.0, 40)
    y = np.cos(t) + 0.1 * np.random.default_rng(5).standard_normal(t.size)
    x0 = {"a": case.tensor(1.2), "k": case.tensor([0.7, 0.3, 1.9])}
    problem, flat = _problem(case, x0, (case.tensor(t), case.tensor(y)), loss=loss)
    if in_axes is not None:
        problem, flat = _problem(
            case, x0, (case.tensor(t), case.tensor(y)), loss=loss, in_axes=in_axes
        )
    damping = Nielsen()
    settings = Settings(ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=100, damping=damping)
    settings.geodesic_alpha = 1e9  # never reject the acceleration: compare it whatever its size
    solver = LevenbergMarquardt(problem, settings)
    lin = problem.linearize(flat)
    model, _, _ = solver._model(flat, lin)
    damping.mu = 0.3
    steps = solver._steps(model)
    s = steps.solve(damping.mu)
    got = solver._accelerate(flat, s, model, steps)
    # The reference, in NumPy from J, r and the residuals at x + h·v.
    jac, r = case.numpy(lin.jac), case.numpy(lin.r)
    d, s_host = case.numpy(model.d), case.numpy(s)
    v = d * s_host
    h = 0.1
    r_h = case.numpy(problem.evaluate(b.cast(flat + case.tensor(h * v), b.leaf_meta(flat)[1]))[0])
    r_vv = (2.0 / h) * ((r_h - r) / h - jac @ v)
    w = problem.loss.weights(lin.r)
    rows = np.ones_like(r) if w.rows is None else case.numpy(w.rows)
    a_hat = case.numpy(model.a_hat)
    a = np.linalg.solve(a_hat + 0.3 * np.eye(4), -(d * (jac.T @ (rows**2 * r_vv))))
    assert got is not None
    _close(case.numpy(got), s_host + 0.5 * a, 1e-8)


def test_torch_general_jacobian_without_double_backward() -> None:
    """A residual function whose backward cannot be differentiated again still gets its
    Jacobian (forward mode) and reaches the optimum."""
    torch = pytest.importorskip("torch")
    from dict_minimize.torch_api import least_squares

    class Cube(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x: Any) -> Any:
            return x**3

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad: Any) -> Any:
            (x,) = ctx.saved_tensors
            return 3 * x**2 * grad

        @staticmethod
        def jvp(ctx: Any, tangent: Any) -> Any:
            (x,) = ctx.saved_tensors
            return 3 * x**2 * tangent

    t = torch.linspace(0.0, 1.0, 30, dtype=torch.float64)
    y = 0.8 * (t + 0.2) ** 3

    def residual_fn(p: Any, t: Any, y: Any) -> Any:
        return p["a"] * Cube.apply(t + p["b"]) - y

    x0 = {"a": torch.tensor(1.0, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    res = least_squares(residual_fn, x0, args=(t, y), ftol=1e-12, xtol=1e-12, gtol=1e-12)
    _close([float(res.x["a"].detach()), float(res.x["b"].detach())], [0.8, 0.2], 1e-8)


def test_torch_general_jacobian_in_blocks_of_tangents(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch, CPU: the reverse-over-reverse Jacobian runs its batched second pass in blocks
    of unit vectors sized to the cache; blocks of 2, 2 and 1 columns give the same J as one
    block of all 5, and a backward that is not twice differentiable still falls back."""
    torch = pytest.importorskip("torch")
    import dict_minimize.backends.torch as torch_backend

    t = torch.linspace(0.0, 3.0, 50, dtype=torch.float64)

    def f(z: Any, t: Any) -> Any:
        return z[0] * torch.exp(-z[1] * t) + z[2] * torch.sin(z[3] * t + z[4]) * t

    flat = torch.tensor([1.2, 0.7, 0.3, 1.9, 0.1], dtype=torch.float64)
    value, whole = torch_backend._reverse_over_reverse(f, flat.clone(), (t,), check=True)
    monkeypatch.setattr(torch_backend, "_TANGENT_ELEMENTS", 2 * t.numel() + 1)
    blocks = []
    original_grad = torch.autograd.grad

    def counting_grad(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("is_grads_batched"):
            blocks.append(args[2].shape[0])
        return original_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    out = torch_backend._reverse_over_reverse(f, flat.clone(), (t,), check=True)
    assert out is not None and blocks == [2, 2, 1]
    torch.testing.assert_close(out[1], whole, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(out[0], value, rtol=0, atol=0)

    class Detached(torch.autograd.Function):  # backward not differentiable: silently wrong
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad: Any) -> Any:
            (x,) = ctx.saved_tensors
            return 3 * x**2 * grad

    def g(z: Any, t: Any) -> Any:
        return z[0] * Detached.apply(t + z[1]) + z[2] * t + z[3] + z[4] * t**2

    assert torch_backend._reverse_over_reverse(g, flat.clone(), (t,), check=True) is None


def test_torch_per_sample_rows_take_outer_products_as_broadcast_products(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PyTorch, CPU: above the size where it pays, the per-sample Jacobian of an MLP rewrites
    the batched outer products of its weight gradients (``bmm`` with a contraction of
    length one) as broadcast products, with the same rows bit for bit; below it, and for any
    other ``bmm``, nothing changes."""
    torch = pytest.importorskip("torch")
    import dict_minimize.backends.torch as torch_backend

    gen = torch.Generator().manual_seed(0)
    sizes = (6, 12, 10, 8, 1)
    weights = [
        (torch.randn(o, i, generator=gen, dtype=torch.float64), torch.randn(o, dtype=torch.float64))
        for i, o in itertools.pairwise(sizes)
    ]
    flat = torch.cat([t.reshape(-1) for w, b in weights for t in (w, b)])
    shapes = [t.shape for w, b in weights for t in (w, b)]

    def residual(z: Any, x: Any, y: Any) -> Any:
        parts = iter(
            t.reshape(s) for t, s in zip(torch.split(z, [s.numel() for s in shapes]), shapes)
        )
        h = x
        for layer in range(len(weights)):
            h = torch.nn.functional.linear(h, next(parts), next(parts))
            h = torch.tanh(h) if layer < len(weights) - 1 else h
        return (h - y).reshape(-1)

    rewrites: list[tuple[int, ...]] = []
    original = torch_backend._OuterProducts.__torch_dispatch__

    def spy(self: Any, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten.bmm.default and args[0].shape[2] == 1:
            rewrites.append(tuple(args[0].shape))
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(torch_backend._OuterProducts, "__torch_dispatch__", spy)
    rows = torch_backend.TorchBackend().per_sample_jacobian_fn(residual, (0, 0))
    x = torch.randn(4000, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(4000, 1, generator=gen, dtype=torch.float64)
    assert 4000 * flat.numel() >= torch_backend._OUTER_PRODUCTS_FROM
    r, jac = rows(flat, x, y)
    assert len(rewrites) == len(weights)  # one outer product per weight matrix
    monkeypatch.setattr(torch_backend, "_OUTER_PRODUCTS_FROM", 1 << 62)
    r_plain, jac_plain = rows(flat, x, y)
    assert len(rewrites) == len(weights)  # below the threshold: the plain path
    assert torch.equal(jac, jac_plain) and torch.equal(r, r_plain)
    # And both are the Jacobian: reverse mode on the whole batch for a few rows.
    for i in (0, 1234, 3999):
        z = flat.clone().requires_grad_(True)
        (row,) = torch.autograd.grad(residual(z, x, y)[i], z)
        torch.testing.assert_close(jac[i], row, rtol=1e-12, atol=1e-12)
