r"""Nonequilibrium statistics: mean rotation and entropy production rate.

**Mean rotation** (probability current), for each coordinate plane (i, j):

.. math:: \omega_{ij} = \frac1T \int (z_i - \mu_i)\circ dz_j - (z_j - \mu_j)\circ dz_i

(Stratonovich, midpoint rule; :math:`\mu` the reference mean). For the
rotational OU process :math:`dz = -(kI - wJ)z\,ds + \sigma dW`,
:math:`\omega = w\sigma^2/k`.

**Entropy production rate** from the phase-space velocity
:math:`v = f - \tfrac12\nabla\cdot(gg^T) - \tfrac12 gg^T\nabla\log p` projected
on a polynomial basis (:mod:`.basis`), with :math:`D = gg^T` inferred:

.. math:: \hat\sigma = 2\sum_k c_k^T \hat D^{-1} c_k \;-\; 2\operatorname{tr}(\hat D^{-1}\operatorname{Cov}\hat c),

the last term removing the plug-in estimator's upward bias. If each of the
:math:`n_b d` coefficients carried noise of variance :math:`D/T` it would be
:math:`2 n_b d/T`; but along gradient directions the Stratonovich integral
telescopes and carries almost no noise (on equilibrium OU, 2-D, cubic basis,
T = 400, the plug-in bias measured 0.046 against a nominal 0.1), so
:math:`\operatorname{Cov}\hat c` is estimated from the spread of the
coefficients over chunks of the data instead. For the
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


def entropy_production(z, dt, basis, n_chunks=8, lag=1):
    """Bias-corrected entropy production rate (per unit time), shape (1,).

    The bias ``2 tr(D^-1 Cov c)`` is estimated from the spread of the
    coefficients over ``n_chunks`` chunks of the data; :func:`plugin_bias` gives the
    cruder ``2 n_b d / T`` for comparison.

    ``D`` is estimated from the increments over ``lag`` samples. A process whose
    noise is filtered (a spiking network's latent: synaptic filtering) moves
    smoothly at short lags, so its increments there understate ``D`` and the
    estimate of ``D^-1`` inflates the entropy production; at a lag past the
    filter the increments are diffusive (``verify`` judges the diffusion at
    that lag, and passes it here). The velocity ``c`` (a Stratonovich
    integral, the limit that filtered noise converges to) uses every sample.
    """
    d = z.shape[-1]
    _, D = fit_drift(z[:, ::max(1, int(lag))], dt * max(1, int(lag)), basis)
    Di = np.linalg.inv(D + 1e-12 * np.eye(d))
    c, T, Li = velocity_coefficients(z, dt, basis)
    plug = 2.0 * np.einsum("ki,ij,kj->", c, Di, c)
    chunks = _chunks(z, n_chunks)
    if len(chunks) < 2:
        return np.array([plug - plugin_bias(len(basis), d, T)])
    cs = np.array([velocity_coefficients(part, dt, basis, Li)[0] for part in chunks])
    dev = cs - cs.mean(0)
    cov_trace = np.einsum("nki,ij,nkj->", dev, Di, dev) / (len(cs) - 1) / len(cs)
    return np.array([plug - 2.0 * cov_trace])


def plugin_bias(n_basis, d, T):
    """The plug-in estimator's nominal upward bias ``2 n_b d / T`` (white noise on every coefficient)."""
    return 2.0 * n_basis * d / T


def _chunks(z, n):
    """About ``n`` equal chunks: whole trials when there are enough, else pieces of trials."""
    trials, steps, _ = z.shape
    if trials >= n:
        per = trials // n
        return [z[i * per:(i + 1) * per] for i in range(n)]
    k = int(np.ceil(n / trials))
    edges = np.linspace(0, steps, k + 1).astype(int)
    return [z[:, a:b] for a, b in zip(edges[:-1], edges[1:]) if b - a > 2]
