r"""Nonequilibrium statistics: mean rotation and entropy production rate.

**Mean rotation** (probability current), for each coordinate plane (i, j):

.. math:: \omega_{ij} = \frac1T \int (z_i - \mu_i)\circ dz_j - (z_j - \mu_j)\circ dz_i

(Stratonovich, midpoint rule; :math:`\mu` the reference mean). For the
rotational OU process :math:`dz = -(kI - wJ)z\,ds + \sigma dW`,
:math:`\omega = w\sigma^2/k`.

**Entropy production rate** from the phase-space velocity
:math:`v = f - \tfrac12\nabla\cdot(gg^T) - \tfrac12 gg^T\nabla\log p` projected
on a polynomial basis (:mod:`.basis`), with :math:`D = gg^T` inferred:

.. math:: \hat\sigma = 2\sum_k c_k^T \hat D^{-1} c_k \;-\; \frac{2\,n_b d}{T},

the last term removing the plug-in estimator's upward bias (each of the
:math:`n_b d` coefficients carries noise of variance :math:`D/T`). For the
rotational OU process :math:`\sigma = 2w^2/k`. ``D`` is the visit-averaged
noise covariance (exact for additive noise).
"""
from __future__ import annotations

import numpy as np

from .basis import fit_drift, velocity_coefficients


def rotation(z, dt, mu):
    """Mean rotation rates, one per plane (i < j), shape (d (d - 1) / 2,)."""
    d = z.shape[-1]
    a, b = z[:, :-1] - mu, z[:, 1:] - mu
    mid, inc = 0.5 * (a + b), b - a
    T = inc.shape[0] * inc.shape[1] * dt
    out = [float((mid[..., i] * inc[..., j] - mid[..., j] * inc[..., i]).sum() / T)
           for i in range(d) for j in range(i + 1, d)]
    return np.array(out)


def entropy_production(z, dt, basis):
    """Bias-corrected entropy production rate (per unit time), scalar."""
    d = z.shape[-1]
    _, D = fit_drift(z, dt, basis)
    c, T = velocity_coefficients(z, dt, basis)
    Di = np.linalg.inv(D + 1e-12 * np.eye(d))
    plug = 2.0 * np.einsum("ki,ij,kj->", c, Di, c)
    return np.array([plug - 2.0 * len(basis) * d / T])
