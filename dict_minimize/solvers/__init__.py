"""Least-squares solvers written once on the backend protocol, so every framework runs them.

One module per part:

* :mod:`._problem`: the residual function on flat device vectors; Jacobians (general or
  per sample in row chunks) reduced to the normal equations ``JᵀWJ``, ``JᵀWr``;
* :mod:`.losses`: scipy's robust losses and their IRLS weights;
* :mod:`.damping`: Nielsen's and Marquardt's (trainlm's) damping rules;
* :mod:`._linear`: the damped step by Cholesky / one eigendecomposition, or matrix-free CG;
* :mod:`.levenberg_marquardt`: the iteration (``method="lm"``), with geodesic acceleration;
* :mod:`.trust_region`: the bounded variant (``method="trf"``): Coleman-Li scaling and
  reflective steps on the same loop;
* :mod:`.scipy_least_squares`: ``"scipy-trf"``, ``"scipy-dogbox"``, ``"scipy-lm"``.

Importing this package imports no framework.
"""
