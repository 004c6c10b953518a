"""Binds a backend to the public functions; one docstring source for every framework."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dict_minimize import _least_squares, _minimize
from dict_minimize._result import LeastSquaresResult
from dict_minimize.backends._protocol import Backend

_MINIMIZE_DOC = """Minimize a scalar function of a dict of {framework} tensors with scipy.optimize.

    The dict is flattened to one float64 vector for ``scipy.optimize.minimize``; every
    evaluation calls ``fun`` in x0's dtypes and on x0's device, with one transfer each way.
    Call-compatible with dict-minimize 0.0.4.

    Parameters
    ----------
    fun : callable
        ``fun(params, *args)``, where ``params`` is a dict like ``x0_dict``. With ``jac=True``
        (the default, as in dict-minimize) it returns ``(loss, grad_dict)``; with
        ``jac=False`` it returns only the loss and {autodiff}.
    x0_dict : Mapping
        Initial point: an ``OrderedDict`` (or dict, possibly nested) of floating-point
        tensors (float16, bfloat16, float32 or float64). It is never modified.
    lb_dict, ub_dict : Mapping, optional
        Bounds for some or all keys: a Python number (broadcast), a tensor of the key's shape,
        or ``±inf`` for none. Only methods that support bounds accept them: Nelder-Mead, Powell,
        L-BFGS-B, TNC, COBYLA, COBYQA, SLSQP and trust-constr (the bounded Newton-type choice).
    args : tuple
        Extra arguments passed to ``fun``, ``hessp`` and constraint functions.
    method : str or None
        Any method of ``scipy.optimize.minimize`` (case-insensitive); default ``"L-BFGS-B"``.
        ``None`` lets scipy choose, as dict-minimize did: BFGS, L-BFGS-B with bounds, SLSQP
        with constraints. ``"rso"``: gradient-free random search optimization (Tripathi &
        Singh) in the framework, one weight at a time on mini-batches; ``fun`` returns only
        the loss, ``jac`` is ignored, and ``options`` are ``rounds``, ``batched_args`` with
        ``batch_size`` (or ``sampler``), ``seed``, ``skip_bias``, ``sigma_scale``,
        ``min_sigma``, ``init``, ``out_axis``, ``maxfev``, ``vectorize``, ``progress`` (see
        :mod:`dict_minimize.solvers.rso`); the callback runs after each tensor's sweep.
    tol : float, optional
        Tolerance for termination, as in scipy.
    callback : callable, optional
        ``callback(params)`` after each iteration, with ``params`` a dict like ``x0_dict``.
    options : dict, optional
        scipy's options for the method (``maxiter``, ``disp``, ...); an unknown option is an
        error. ``"progress": True`` shows a tqdm bar with the best loss so far.
    jac : bool
        Whether ``fun`` returns its own gradient (see ``fun``).
    hessp : callable, optional
        ``hessp(params, p_dict, *args) -> dict``, the Hessian of the loss times ``p_dict``.
        Second-order methods (Newton-CG, trust-ncg, trust-krylov, trust-constr, and via one
        product per column dogleg and trust-exact) use it; {hessp_default}
    constraints : dict or sequence, optional
        ``{{"type": "eq" | "ineq", "fun": c}}`` with ``c(params, *args)`` returning a tensor
        (``== 0`` or ``>= 0``); Jacobians {constraint_jac}. scipy's ``LinearConstraint`` and
        ``NonlinearConstraint`` on the flat vector pass through. For SLSQP, trust-constr,
        COBYLA and COBYQA.
    full_output : bool
        Return a :class:`~dict_minimize.MinimizeResult` instead of only the solution dict.

    Returns
    -------
    OrderedDict or MinimizeResult
        The solution, with x0's keys, order, nesting, shapes, dtypes and device; or, with
        ``full_output=True``, the result object (``x``, ``fun``, ``jac``, ``nit``, ``nfev``,
        ``njev``, ``nhev``, ``success``, ``status``, ``message``).

    Raises
    ------
    dict_minimize.DictMinimizeError
        Subclasses of ``ValueError``/``TypeError`` naming the offending key, shape or option.
    dict_minimize.OptimizationInterrupted
        On Ctrl-C; a ``KeyboardInterrupt`` whose ``.result`` holds the best point so far. An
        exception raised by ``fun`` propagates with the best result so far in ``.result``
        (status -3). Where the loss or gradient is NaN/Inf at a trial point, scipy sees a
        value above every finite one (so line searches back off); a method that gives up
        there reports status -5 with the best finite point. See docs/reliability.md.

    Examples
    --------
{example}
    """


def bind_minimize(
    backend: Backend[Any], *, autodiff: str, hessp_default: str, constraint_jac: str, example: str
) -> Callable[..., Any]:
    """Build the public ``minimize`` of one framework."""

    def minimize(
        fun: Callable[..., Any],
        x0_dict: Mapping[Any, Any],
        *,
        lb_dict: Mapping[Any, Any] | None = None,
        ub_dict: Mapping[Any, Any] | None = None,
        args: Sequence[Any] = (),
        method: str | None = "L-BFGS-B",
        tol: float | None = None,
        callback: Callable[[Any], Any] | None = None,
        options: Mapping[str, Any] | None = None,
        jac: bool = True,
        hessp: Callable[..., Any] | None = None,
        constraints: Any = (),
        full_output: bool = False,
    ) -> Any:
        return _minimize.minimize(
            backend,
            fun,
            x0_dict,
            lb_dict=lb_dict,
            ub_dict=ub_dict,
            args=args,
            method=method,
            tol=tol,
            callback=callback,
            options=options,
            jac=jac,
            hessp=hessp,
            constraints=constraints,
            full_output=full_output,
        )

    minimize.__doc__ = _MINIMIZE_DOC.format(
        framework=backend.name,
        autodiff=autodiff,
        hessp_default=hessp_default,
        constraint_jac=constraint_jac,
        example=example,
    )
    minimize.__qualname__ = "minimize"
    return minimize


_LEAST_SQUARES_DOC = """Solve a nonlinear least-squares problem on a dict of {framework} tensors.

    Minimizes ``0.5 · Σ ρ(rᵢ²)`` over the parameters, where ``r = residual_fn(params, *args)``
    (any shape, flattened), like ``scipy.optimize.least_squares``. The in-framework methods
    stay on x0's device: the Jacobian comes from {jacobian}; the damped normal equations
    ``(JᵀWJ + μD) δ = -JᵀWr`` are solved with the framework's Cholesky (an eigendecomposition
    when that fails), and a few scalars reach the host per iteration.

    Parameters
    ----------
    residual_fn : callable
        ``residual_fn(params, *args)`` returning a tensor of residuals, where ``params`` is a
        dict like ``x0_dict`` (same nesting, dtypes and device).
    x0_dict : Mapping
        Initial point: an ``OrderedDict`` (or dict, possibly nested) of floating-point
        tensors. It is never modified.
    args : tuple
        Extra arguments of ``residual_fn``; some may hold samples (see ``options``).
    lb_dict, ub_dict : Mapping, optional
        Bounds for some or all keys, as for ``minimize`` (a number, a tensor of the key's
        shape, or ``±inf``). Methods ``"trf"``, ``"scipy-trf"`` and ``"scipy-dogbox"``.
    method : str
        * ``"lm"`` (default): Levenberg-Marquardt in the framework, no bounds.
        * ``"trf"``: the same loop in Coleman-Li scaled variables with reflective steps,
          staying strictly inside the bounds (after scipy's trust-region reflective);
          without bounds it is ``"lm"``.
        * ``"scipy-trf"``, ``"scipy-dogbox"``, ``"scipy-lm"`` (MINPACK): scipy's host solvers
          on the flat float64 vector, with the Jacobian from {jacobian_short}.
    loss : str
        ``"linear"``, ``"soft_l1"``, ``"huber"``, ``"cauchy"`` or ``"arctan"``, exactly as
        scipy defines them (``"scipy-lm"``: linear only).
    f_scale : float
        Soft margin between inlier and outlier residuals: ``ρ`` is applied to ``(r/f_scale)²``.
    ftol, xtol, gtol : float
        scipy's stopping rules: ``ftol`` on the relative decrease of the cost (with the model
        trusted, ratio > 0.25), ``xtol`` on the step relative to x (both in scaled variables
        under ``x_scale``), ``gtol`` on the gradient (MINPACK's largest cosine between the
        residuals and a Jacobian column; with bounds ``‖v·g‖∞`` as scipy's trf).
    max_nfev : int, optional
        Residual evaluations at most (default ``100 · n``).
    callback : callable, optional
        Called after each iteration with the params dict, or with a
        :class:`~dict_minimize.LeastSquaresResult` of ``x``, ``cost``, ``nit``,
        ``optimality``, ``nfev``, ``damping`` when its parameter is named
        ``intermediate_result`` (scipy's convention). Returning True or raising
        ``StopIteration`` stops the run (status -2).
    options : dict, optional
        ``in_axes``
            Per argument, the axis along which it holds independent samples (None: shared),
            like ``vmap``'s ``in_axes``; or ``batched_args``: the indices of arguments batched
            along axis 0. Then residual_fn must return the residuals of each sample along
            axis 0, sample i's depending only on sample i, and the Jacobian is built per
            sample by vectorized reverse mode, calling residual_fn on batches of one sample
            (so it must be vmap-compatible); ``JᵀJ`` is accumulated over row chunks and the
            whole J never exists. Without it, J comes from forward mode when residuals
            outnumber parameters (PyTorch: reverse-over-reverse, batched backward passes in
            cache-sized blocks on the CPU), else reverse mode.
        ``chunk_size``
            Samples per Jacobian chunk (default: at most 2**25 Jacobian elements at a time).
        ``x_scale``
            ``"jac"`` (default): Marquardt's ``D = diag(JᵀJ)``, as a running maximum; a
            number or a dict like x0 of characteristic scales (``1.0`` is Levenberg's
            ``D = I``, as MATLAB trainlm).
        ``damping``
            ``"nielsen"`` (default; ``mu`` = 1e-3 is relative to max diag(JᵀJ/D), raised
            at the start while the first step could leave scipy trf's initial trust radius,
            until a step with gain ratio above 0.75; ``accept_ratio`` = 1e-4) or
            ``"marquardt"`` (trainlm: ``mu`` = 1e-3 absolute, ``mu_dec`` = 0.1,
            ``mu_inc`` = 10, ``mu_max`` = 1e10).
        ``max_retries`` (20), ``eigh_after`` (2)
            Rejected trials allowed per Jacobian; after ``eigh_after`` of them the scaled
            ``JᵀJ`` is decomposed once so that further trials cost no factorization
            (None: never).
        ``linear_solver``
            ``"auto"`` (default: ``"cg"`` above 10,000 parameters), ``"cholesky"`` or ``"cg"``
            (matrix-free conjugate gradients with Jacobian-vector products; ``cg_tol`` 1e-2,
            ``cg_maxiter`` 100). {matrix_free}
        ``host_algebra``
            ``"auto"`` (default), True or False: whether the loop's step algebra (scaling,
            damped Cholesky solves, norms, gain ratios on n-vectors and the n×n ``JᵀJ``) runs
            in NumPy. The residuals, J and ``JᵀJ`` still come from the framework; each
            Jacobian crosses to NumPy once and each trial point back once. "auto" does so
            where an eager operation costs tens of microseconds of dispatch (TensorFlow), on
            the CPU with the dense ``JᵀJ`` and at most 1,024 parameters: a 10-parameter curve
            fit then takes ~0.65x the time, a 41-weight MLP ~0.55x. The steps are the same
            either way, up to rounding.
        ``geodesic`` (False)
            Geodesic acceleration (Transtrum and Sethna): a second-order correction to each
            step from one more residual evaluation and a product with ``Jᵀ`` (matrix-free:
            with ``J`` too). It follows narrow curved valleys; on a 6-12-10-8-1 tanh MLP
            (10,000 samples) it reached a 27x lower MSE after 50 Jacobians, at about 1.2x
            the time per Jacobian.
        ``max_iter``
            Iterations (Jacobians) at most; ``progress``: a tqdm bar with the cost.
        ``distributed``
            Data parallelism over processes (PyTorch): when ``torch.distributed`` is
            initialized and the residuals are per sample, each rank's batched args are its
            shard and the sums over samples are all-reduced, so every rank takes the same
            steps and ends with the same x (``fun`` holds the rank's own residuals). None
            (default): whenever a process group is initialized; False: never; True: required;
            or a process group. See the README, "Scaling out".
        ``devices``
            Data parallelism over the devices of one process (JAX): a list of devices or a
            one-axis ``Mesh``; the batched args are split over them along their batch axis.
        ``checkpoint``, ``checkpoint_every`` (1)
            A file path: every ``checkpoint_every`` accepted iterations, the whole solver
            state (x, the damping μ and ν, the Marquardt scaling, iteration and evaluation
            counters, the history) is written there atomically (temporary file in the same
            directory, fsync, rename) as an ``.npz`` archive that is never unpickled. The
            solver draws no random numbers, so there is no RNG state.
        ``resume``
            A checkpoint file to continue from (usually the same path as ``checkpoint``);
            x0 then only gives the layout. On the CPU in float64 the run ends at the same
            point, bit for bit, as one never interrupted. A missing, truncated or corrupt
            file, or one saved by a different problem (keys, shapes, dtypes, method, loss,
            damping rule, residual count), raises :class:`~dict_minimize.CheckpointError`:
            never a silent fresh start. Tolerances, ``max_nfev`` and ``max_iter`` may differ
            (to extend a finished run).
        The ``"scipy-*"`` methods take ``in_axes``/``batched_args``, ``chunk_size``,
        ``x_scale``, ``tr_solver``, ``tr_options`` and ``verbose``.

    Returns
    -------
    LeastSquaresResult
        ``x`` (dict in x0's layout), ``cost``, ``fun`` (residuals, a flat tensor), ``grad``
        (dict), ``optimality``, ``active_mask``, ``nfev``, ``njev``, ``nit``, ``status``,
        ``message``, ``success``, ``history`` (cost and damping per iteration).

    Raises
    ------
    dict_minimize.DictMinimizeError
        Subclasses of ``ValueError``/``TypeError`` naming the offending key, shape or option;
        ``ObjectiveError`` when the residuals are not finite at x0.
    dict_minimize.OptimizationInterrupted
        On Ctrl-C, with the best point so far in ``.result``. An exception raised by
        ``residual_fn`` propagates with the best result so far in ``.result`` (status -3).
        Trial points with non-finite residuals are rejected; when no finite step is left the
        result says so (status -5). See docs/reliability.md.

    Examples
    --------
{example}
    """


def bind_least_squares(
    backend: Backend[Any], *, jacobian: str, jacobian_short: str, matrix_free: str, example: str
) -> Callable[..., Any]:
    """Build the public ``least_squares`` of one framework."""

    def least_squares(
        residual_fn: Callable[..., Any],
        x0_dict: Mapping[Any, Any],
        *,
        args: Sequence[Any] = (),
        lb_dict: Mapping[Any, Any] | None = None,
        ub_dict: Mapping[Any, Any] | None = None,
        method: str = "lm",
        loss: str = "linear",
        f_scale: float = 1.0,
        ftol: float = 1e-8,
        xtol: float = 1e-8,
        gtol: float = 1e-8,
        max_nfev: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> LeastSquaresResult:
        return _least_squares.least_squares(
            backend,
            residual_fn,
            x0_dict,
            args=args,
            lb_dict=lb_dict,
            ub_dict=ub_dict,
            method=method,
            loss=loss,
            f_scale=f_scale,
            ftol=ftol,
            xtol=xtol,
            gtol=gtol,
            max_nfev=max_nfev,
            callback=callback,
            options=options,
        )

    least_squares.__doc__ = _LEAST_SQUARES_DOC.format(
        framework=backend.name,
        jacobian=jacobian,
        jacobian_short=jacobian_short,
        matrix_free=matrix_free,
        example=example,
    )
    least_squares.__qualname__ = "least_squares"
    return least_squares
