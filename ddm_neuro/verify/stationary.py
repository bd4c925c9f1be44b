r"""Stationary distribution and autocorrelation.

**Energy distance** between the visited distributions of two runs, in
coordinates whitened by the reference run's covariance:

.. math:: \mathcal{E}(P, Q) = 2\,E\lVert X - Y\rVert - E\lVert X - X'\rVert - E\lVert Y - Y'\rVert,

reported as :math:`\sqrt{\mathcal{E}}` (a distance, linear in small shifts of the law),

estimated (V-statistic) on up to :data:`MAX_POINTS` samples per run, taken at a
regular stride over all trials (autocorrelated samples carry less information
than their count; the stride only bounds the cost).

**Autocovariance** of each coordinate, averaged over trials and normalised by
the reference's variance, at lags up to :math:`3\tau_c` (:math:`\tau_c`: where
the reference's autocorrelation first falls below :math:`1/e`), capped at a
quarter of the trial length:

.. math:: c_j(\ell) = \frac{\langle (z_j(t) - \bar z_j)(z_j(t+\ell) - \bar z_j)\rangle}{\operatorname{var}_{\mathrm{ref}}(z_j)},
   \qquad d_{\mathrm{acf}} = \operatorname{RMS}_{j,\ell}\, (c_j - c_j^{\mathrm{ref}}).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

#: Most samples per run in the energy distance (cost is quadratic).
MAX_POINTS = 1500
#: Number of lags in the autocovariance comparison.
N_LAGS = 40
#: Most FFT values (trials x FFT length x d) held at once by :func:`acf_parts`.
ACF_CHUNK = 4_000_000


def _thin(z, n_max):
    flat = z.reshape(-1, z.shape[-1])
    step = max(1, len(flat) // n_max)
    return flat[::step][:n_max]


def whitener(ref):
    """Mean and inverse Cholesky factor of the reference states' covariance."""
    flat = ref.reshape(-1, ref.shape[-1])
    mu = flat.mean(0)
    C = np.atleast_2d(np.cov(flat, rowvar=False)) + 1e-12 * np.eye(flat.shape[1])
    return mu, np.linalg.inv(np.linalg.cholesky(C))


def energy_distance(a, b, white):
    """Energy distance (its square root, in whitened units) between the samples of runs ``a`` and ``b`` (trials, n, d), whitened."""
    mu, Li = white
    x = (_thin(a, MAX_POINTS) - mu) @ Li.T
    y = (_thin(b, MAX_POINTS) - mu) @ Li.T
    e = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    return float(np.sqrt(max(e, 0.0)))


def autocovariance(z, max_lag):
    """Trial-averaged autocovariance (max_lag + 1, d), via FFT, mean removed per run."""
    trials, n, d = z.shape
    mu = z.reshape(-1, d).mean(0)
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    step = max(1, ACF_CHUNK // (nfft * d))  # trials per FFT batch (bounded memory)
    ac = np.zeros((max_lag + 1, d))
    for a in range(0, trials, step):
        F = np.fft.rfft(z[a:a + step] - mu, n=nfft, axis=1)
        ac += np.fft.irfft(F * np.conj(F), n=nfft, axis=1)[:, :max_lag + 1].sum(0)
    return ac / trials / (n - np.arange(max_lag + 1))[:, None]


def acf_lags(ref, dt):
    """Lags (in samples) for the comparison: up to 3 correlation times, at most n/4."""
    n = ref.shape[1]
    cap = max(2, n // 4)
    ac = autocovariance(ref, cap)
    rho = ac / ac[0]
    below = np.argmax(rho < np.exp(-1), axis=0)
    below[~(rho < np.exp(-1)).any(axis=0)] = cap
    max_lag = int(min(cap, max(2, 3 * below.max())))
    return np.unique(np.linspace(0, max_lag, N_LAGS).astype(int))


def acf_parts(z, lags, center):
    r"""Per-trial sums from which the autocovariance of any set of trials follows exactly.

    For trial ``i`` (``x = z_i - center``): the lagged products
    :math:`R_i(\ell) = \sum_t x_t x_{t+\ell}` (one FFT), and the sums of the first
    and last :math:`n - \ell` samples :math:`H_i(\ell), T_i(\ell)`, each at ``lags``;
    :func:`acf_from_parts` removes a set's own mean from these sums. Computing them once
    per trial makes the split baselines cost one FFT per reference trial, not one per split.
    """
    trials, n, d = z.shape
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    R = np.empty((trials, len(lags), d))
    H = np.empty((trials, len(lags), d))
    T = np.empty((trials, len(lags), d))
    tot = np.empty((trials, d))
    step = max(1, ACF_CHUNK // (nfft * d))  # trials per FFT batch (bounded memory)
    for a in range(0, trials, step):
        x = z[a:a + step] - center
        F = np.fft.rfft(x, n=nfft, axis=1)
        R[a:a + step] = np.fft.irfft(F * np.conj(F), n=nfft, axis=1)[:, lags]
        C = np.concatenate([np.zeros((len(x), 1, d)), np.cumsum(x, axis=1)], axis=1)
        H[a:a + step] = C[:, n - lags]
        T[a:a + step] = C[:, n][:, None] - C[:, lags]
        tot[a:a + step] = C[:, n]
    return R, H, T, tot, n


def acf_from_parts(parts, lags, idx=None):
    """Trial-averaged autocovariance at ``lags`` of the trials ``idx``, mean removed over the set
    (equal to ``autocovariance(z[idx], max_lag)[lags]``)."""
    R, H, T, S, n = parts
    if idx is not None:
        R, H, T, S = R[idx], H[idx], T[idx], S[idx]
    m = len(R)
    mu = S.sum(0) / (m * n)
    w = (n - lags)[:, None]
    tot = R.sum(0) - mu * (H.sum(0) + T.sum(0)) + m * w * mu ** 2
    return tot / (m * w)


def acf_distance(a, b, lags, var_ref):
    """RMS difference of the normalised autocovariances of runs ``a`` and ``b`` at ``lags``."""
    ca = autocovariance(a, lags[-1])[lags] / var_ref
    cb = autocovariance(b, lags[-1])[lags] / var_ref
    return float(np.sqrt(np.mean((ca - cb) ** 2)))


def acf_distance_parts(pa, pb, lags, var_ref, ia=None, ib=None):
    """:func:`acf_distance` from precomputed :func:`acf_parts` (optionally trial subsets)."""
    ca = acf_from_parts(pa, lags, ia) / var_ref
    cb = acf_from_parts(pb, lags, ib) / var_ref
    return float(np.sqrt(np.mean((ca - cb) ** 2)))
