"""Where the adapter overhead goes at small sizes: a step-by-step decomposition.

Times, interleaved, scipy L-BFGS-B runs (100 iterations) that add one layer at a time:

1. ``scipy``: raw scipy on the flat NumPy problem;
2. ``+ callback``: the same with the per-iteration callback ``minimize`` passes to count
   iterations (taking ``intermediate_result``, so scipy copies nothing for it);
3. ``+ dict objective, minimal glue``: the framework's dict objective behind the least glue
   code (no validation): the cost of the objective being written on a dict / in the framework;
4. ``+ Objective``: scipy calling ``dict_minimize``'s per-evaluation wrapper
   (``Objective.value_and_grad``: leaves from the point, the dict, checks, the gradient back
   to the host), with the callback;
5. ``*_api.minimize``: the whole public call (adds the per-call setup and the result).

Then it times the pieces of one evaluation of ``Objective.value_and_grad`` (microseconds).
Uses private modules of this project (``dict_minimize._objective``), so it may need updating
when they change; it is a diagnostic, not part of ``run_all.py``.

    .venv/bin/python benchmarks/overhead_breakdown.py [--size 10] [--frameworks numpy torch]
    .venv/bin/python benchmarks/overhead_breakdown.py --size 1000000 --frameworks jax --pieces-only
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

import _threads

_threads.pin_env()

import _contenders as C  # noqa: E402  (the thread environment must be set first)
import _problems as P  # noqa: E402
import _timing  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize as so  # noqa: E402

BACKEND_CLASS = {
    "numpy": "NumpyBackend",
    "torch": "TorchBackend",
    "tensorflow": "TensorflowBackend",
    "jax": "JaxBackend",
}


def _lbfgsb(fun: Callable[..., Any], x0: np.ndarray, callback: Any = None) -> Any:
    return so.minimize(fun, x0, jac=True, method=P.METHOD, options=P.OPTIONS, callback=callback)


def _count(intermediate_result: Any) -> None:
    pass


def runs(framework: str, problem: P.Problem) -> tuple[dict[str, Callable[[], Any]], Any]:
    """The layered contenders of one framework, and the Objective of layer 4."""
    from dict_minimize._minimize import prepare
    from dict_minimize._objective import Objective

    minimize = importlib.import_module(f"dict_minimize.{framework}_api").minimize
    module = importlib.import_module(f"dict_minimize.backends.{framework}")
    backend_cls = getattr(module, BACKEND_CLASS[framework])
    x0_dict, hand, _ = C.setup(framework, problem)
    keys = list(P.KEYS)
    shapes = [problem.shapes[k] for k in keys]
    sizes = [int(np.prod(s)) for s in shapes]
    glue: Callable[[np.ndarray], tuple[float, np.ndarray]]
    if framework == "numpy":
        slices = [problem.slices[k] for k in keys]

        def numpy_glue(v: np.ndarray) -> tuple[float, np.ndarray]:
            value, g = hand({k: v[s].reshape(sh) for k, s, sh in zip(keys, slices, shapes)})
            return value, np.concatenate([g[k].reshape(-1) for k in keys])

        glue = numpy_glue
    else:
        glue = C._glue_fun(framework, hand, keys, shapes, sizes)
    be = backend_cls()
    spec, _, device = prepare(be, x0_dict)

    def objective() -> Any:
        obj = Objective(be, spec, hand, (), True, None, device)
        return _lbfgsb(obj.value_and_grad, problem.x0, _count)

    flat_fun = P.flat_fun(problem)
    x0 = problem.x0
    layers: dict[str, Callable[[], Any]] = {
        "scipy": lambda: _lbfgsb(flat_fun, x0),
        "+ callback": lambda: _lbfgsb(flat_fun, x0, _count),
        f"+ {framework} dict objective, minimal glue": lambda: _lbfgsb(glue, x0),
        "+ Objective.value_and_grad (and callback)": objective,
        f"{framework}_api.minimize": lambda: minimize(
            hand, x0_dict, method=P.METHOD, options=P.OPTIONS
        ),
    }
    return layers, Objective(be, spec, hand, (), True, None, device)


def pieces(obj: Any, x: np.ndarray, rounds: int) -> dict[str, float]:
    """Microseconds per call of each step of one ``value_and_grad`` evaluation."""
    import math

    be, spec = obj.backend, obj.spec
    obj.value_and_grad(x)  # binds the objective (TensorFlow: its concrete function)
    fun = obj._bound
    if be.name == "jax":  # JAX dispatches asynchronously: time the objective's whole work
        import jax

        fun = _blocking(fun, jax.block_until_ready)
    host = obj._host_leaves
    steps: dict[str, Callable[[], Any]] = {"value_and_grad (total)": lambda: obj.value_and_grad(x)}
    if host is not None:  # the host fast path (backends/_host.py, Objective._fast_value_and_grad)
        _, leaves = host.leaves(x)
        params = spec.unflatten(leaves)
        value, grad = fun(params)
        loss = value if type(value) is float else host.scalar(value)
        grad_host = host.gradient(grad)
        steps |= {
            "minimal host glue (a copy per leaf in, one np.concatenate out, no checks)": (
                lambda: _host_glue(obj, fun, x)
            ),
            "user objective": lambda: fun(params),
            "HostLeaves.leaves (copy of the point, leaves)": lambda: host.leaves(x),
            "unflatten (leaves -> dict)": lambda: spec.unflatten(leaves),
        }
        if type(value) is not float:
            steps["HostLeaves.scalar (loss to float)"] = lambda: host.scalar(value)
        steps |= {
            "HostLeaves.gradient (keys, checks, join)": lambda: host.gradient(grad),
            "finite check of loss and gradient": lambda: math.isfinite(
                loss + grad_host.dot(grad_host)
            ),
        }
    else:  # the device path
        flat = obj.to_device(x)
        leaves = be.unravel(flat, spec)
        user = be.detached(leaves)
        params = spec.unflatten(user)
        value, grad = fun(params)
        values = spec.match(grad, "gradient", is_leaf=be.is_leaf)
        grad_flat = be.ravel(values, spec, obj.dtype)
        steps |= {
            "user objective": lambda: fun(params),
            "to_device (host -> flat tensor)": lambda: obj.to_device(x),
            "unravel (flat -> leaves)": lambda: be.unravel(flat, spec),
            "detached (requires_grad leaves)": lambda: be.detached(leaves),
            "unflatten (leaves -> dict)": lambda: spec.unflatten(user),
            "check the loss": lambda: obj._check_scalar(value),
            "tree_to_flat (match + check + ravel)": lambda: obj.tree_to_flat(grad, "gradient"),
            "  of which ravel": lambda: be.ravel(values, spec, obj.dtype),
            "_host (loss and gradient to NumPy)": lambda: obj._host(value, grad_flat),
        }
    times: dict[str, list[float]] = {k: [] for k in steps}
    number = 2000 if spec.size <= 10_000 else 10  # calls per sample
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(_timing.sample(step, number)[1] * 1e6)
    return {k: _timing.median(v) for k, v in times.items()}


def _host_glue(obj: Any, fun: Callable[..., Any], x: np.ndarray) -> tuple[float, np.ndarray]:
    """One evaluation through the least glue on the host that copies the point: each leaf
    made by the backend's ``from_numpy`` from a slice of ``x``, the gradient joined by one
    ``np.concatenate``, no check at all (what any adapter that does not alias scipy's
    iterate must do; the reference for ``value_and_grad (total)``)."""
    be, spec = obj.backend, obj.spec
    leaves = [
        be.from_numpy(
            x[leaf.offset : leaf.offset + leaf.size].reshape(leaf.shape), obj.device, leaf.dtype
        )
        for leaf in spec.leaves
    ]
    loss, grad = fun(spec.unflatten(leaves))
    values = spec.match(grad, "gradient")
    return float(np.asarray(be.to_numpy(loss))), np.concatenate(
        [be.to_numpy(v) for v in values], axis=None, dtype=np.float64
    )


def _blocking(fun: Callable[..., Any], block: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda *args: block(fun(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--frameworks", nargs="+", default=["numpy", "torch"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--pieces-only",
        action="store_true",
        help="only the steps of one evaluation (large sizes, where whole runs take seconds)",
    )
    args = parser.parse_args()
    problem = P.make_problem(args.size)
    for fw in args.frameworks:
        layers, obj = runs(fw, problem)
        if args.pieces_only:
            print(f"\n{fw}, {args.size} parameters ({args.rounds} rounds, CPU time)")
            _print_pieces(pieces(obj, problem.x0.copy(), args.rounds))
            continue
        for run in layers.values():
            run()  # warm-up
        cpu: dict[str, list[float]] = {k: [] for k in layers}
        for _ in range(args.rounds):
            for name, run in layers.items():
                cpu[name].append(_timing.sample(run, 5)[1])
        base = cpu["scipy"]
        print(f"\n{fw}, {args.size} parameters ({args.rounds} rounds, CPU time)")
        print("| layer | ms per run | × scipy |\n|---|---:|---:|")
        for name, samples in cpu.items():
            ratio = _timing.paired_ratio(samples, base)
            print(f"| {name} | {_timing.median(samples) * 1e3:.2f} | {ratio:.3f} |")
        steps = pieces(obj, problem.x0.copy(), args.rounds)
        _print_pieces(steps)
        bound(problem, base, steps["user objective"])


def _print_pieces(steps: dict[str, float]) -> None:
    print("\n| step of one evaluation | µs |\n|---|---:|")
    for name, us in steps.items():
        print(f"| {name} | {us:.2f} |")


def bound(problem: P.Problem, scipy_runs: list[float], objective_us: float) -> None:
    """The least any adapter can cost: scipy's own work plus the objective alone, per run."""
    flat_fun, x0 = P.flat_fun(problem), problem.x0.copy()
    res = _lbfgsb(flat_fun, x0)
    flat_s = _timing.median([_timing.sample(lambda: flat_fun(x0), 2000)[1] for _ in range(5)])
    scipy_ms = _timing.median(scipy_runs) * 1e3
    own_ms = scipy_ms - res.nfev * flat_s * 1e3
    least = own_ms + res.nfev * objective_us * 1e-3
    print(
        f"\nscipy's own work {own_ms:.2f} ms per run ({res.nfev} evaluations; the flat NumPy "
        f"objective takes {flat_s * 1e6:.1f} µs of them each); with the framework objective "
        f"alone ({objective_us:.1f} µs each) any adapter costs at least {least:.2f} ms, "
        f"{least / scipy_ms:.2f}x raw scipy"
    )


if __name__ == "__main__":
    main()
