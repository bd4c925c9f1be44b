r"""Drift and diffusion at a lag Δ, compared with the target propagated from the same states.

For every start state :math:`z_i` of the trajectory (non-overlapping increments
at lag :math:`\Delta`) the observed increment :math:`\Delta z_i` is paired with
:math:`M` target increments :math:`\Delta\zeta_{im}` obtained by integrating
the target SDE from :math:`z_i` over the same :math:`\Delta` (see
:func:`.reference.propagate`). Neither side has finite-lag estimator bias:
both are increments at the same lag from the same states. With

.. math::
   r_i = \Delta z_i - \hat m_i,\qquad \hat m_i = \frac1M\sum_m \Delta\zeta_{im},

:math:`\hat C_i` the unbiased covariance of one target increment and :math:`V_i`
that of the error of :math:`\hat m_i` (:func:`conditional_moments`: :math:`\hat C_i/M`
for independent draws; the verifier draws antithetic pairs, for which it is far
smaller), and the visited region split into :math:`K` cells :math:`b` (k-means on
the trajectory's standardised states), the visit-weighted relative errors are

.. math::
   e_f^2 = \frac{\sum_b n_b\, \bar r_b^T \hat C_b^{-1} \bar r_b}{\sum_b n_b\, \bar m_b^T \hat C_b^{-1} \bar m_b},
   \qquad
   e_g^2 = \frac{\sum_b n_b \,\lVert L_b^{-1} (S_b - \bar V_b) L_b^{-T}/\kappa - I\rVert_F^2}{d \sum_b n_b},

(numerator per increment of the run; denominator, the target's drift signal,
averaged over the reference runs so that trajectory and baselines share it),
with :math:`\hat C_b = L_b L_b^T` the cell's mean target covariance, :math:`S_b`
the covariance of the residuals in the cell and :math:`\kappa` the read-out
filter factor :math:`1 - (\tau_f/\Delta)(1 - e^{-\Delta/\tau_f})` (1 when
unfiltered; a synaptic filter lowers the increments' variance by exactly this
factor for noise white on the scale of :math:`\tau_f`). For small :math:`\Delta`,
:math:`e_f \approx \sqrt{\langle \delta f^T D^{-1}\delta f\rangle / \langle f^T D^{-1} f\rangle}`
(cell-averaged): drift scaled by 1.25 gives 0.25. :math:`e_g` is the relative
error of the noise covariance (diffusion scaled by 1.2 gives about 0.44).
Both include sampling noise; their estimates with the noise subtracted are
reported too.

The *diffusion metric* judged against its baseline is not :math:`e_g` (reported
as ``relative_error``, its noise-subtracted form as ``estimate``) but its
studentised form. :math:`e_g^2` is a :math:`\chi^2` only if the cell covariance
:math:`S_b` fluctuates like a Gaussian sample covariance; within a cell the
conditional variance changes (steep walls of the double well, fast and slow
parts of the Lorenz attractor), so the squared residuals are a scale mixture
with excess kurtosis, and the null ratio was over-dispersed (double well
8 x 250: SD 0.40 against 0.26 for the F threshold). Instead each increment gets
its own expected covariance and the cell's error is measured against its own
spread:

.. math::
   q_i = \mathrm{vech}\big(w_i w_i^T - L_b^{-1}(\kappa\hat C_i + V_i) L_b^{-T}\big),\qquad
   w_i = L_b^{-1}(r_i - \bar r_b),\qquad
   T_b = n_b\, \bar q_b^T \hat\Sigma_{q,b}^{-1} \bar q_b \,\frac{n_b - p - 2}{n_b - 1},

with :math:`\hat\Sigma_{q,b}` the covariance of the :math:`q_i` in the cell,
:math:`p = d(d+1)/2` and the last factor making the Hotelling statistic's mean
:math:`p`. :math:`T_b` does not depend on the whitening (it is invariant under
linear maps of :math:`r`) and, whatever the kurtosis, is close to
:math:`\chi^2_p`, so :math:`\sum_b T_b \approx \chi^2_\nu`, :math:`\nu = K p`.
The metric is :math:`\sqrt{\sum_b T_b / \sum_b n_b}` over cells with at least
:math:`3p + 3` visits (RMS studentised error per increment; under the null
:math:`\approx\sqrt{\nu/n}`), so trajectory and reference runs share the
:math:`F(\nu, n_{ref}\nu)` multiple of :mod:`.thresholds`. When no cell has that
many visits the metric falls back to :math:`e_g`.

**Exact null.** The residuals of a trajectory of the target are martingale
differences (non-overlapping increments of a Markov process, each minus its
conditional mean), so :math:`\sqrt{n_b}\,\bar r_b` has covariance
:math:`\kappa\hat C_b + \bar V_b` whatever the process, and
:math:`\sum_b n_b \bar r_b^T \hat C_b^{-1} \bar r_b` has expectation
``drift_null`` :math:`= \sum_b \operatorname{tr}\hat C_b^{-1}(\kappa\hat C_b + \bar V_b)`
and is close to :math:`\chi^2_\nu`, :math:`\nu = Kd`, scaled by it over :math:`\nu`;
the studentised :math:`\sum_b T_b` is close to :math:`\chi^2_\nu`, :math:`\nu = Kp`.
:mod:`.core` judges both against these exact nulls (:mod:`.thresholds`), with the
reference runs as a check.
"""
from __future__ import annotations

import numpy as np

from .reference import propagate

#: Cells per dimension count d.
N_CELLS = {1: 8, 2: 12, 3: 20}
#: Noise draws per start.
DRAWS = 16
#: Start states always usable per trajectory.
MAX_STARTS = 100_000
#: Beyond :data:`MAX_STARTS`, starts are used while starts x draws x steps x d stays below this
#: (cheap low-dimensional propagations use every increment of a long run: the double well at
#: 8 x 1000 has 400 000 increments at its lag 0.02, and a fixed cap of 100 000 kept the drift
#: test's power at that of 8 x 250; the Lorenz 16 x 60 case keeps its 100 000).
MAX_WORK = 25_000_000
#: Hard cap on start states (memory: starts x draws x d floats).
HARD_MAX_STARTS = 1_000_000
#: Fewest visits for a cell to count.
MIN_VISITS = 10


def filter_factor(delta, filter_tau):
    r"""Variance factor :math:`\kappa = 1 - (\tau_f/\Delta)(1 - e^{-\Delta/\tau_f})` of a filtered read-out."""
    if not filter_tau:
        return 1.0
    return 1.0 - (filter_tau / delta) * (1.0 - np.exp(-delta / filter_tau))


def make_cells(states, d, rng, n_cells=None, iters=15):
    """K-means cell centres (standardised coordinates) over reference states.

    Returns
    -------
    centres : ndarray (K, d)
    mean, scale : ndarray (d,)
        The standardisation ``(z - mean) / scale``.
    """
    K = n_cells or N_CELLS.get(d, 24)
    pts = states[rng.choice(len(states), size=min(len(states), 5000), replace=False)]
    mean, scale = pts.mean(0), pts.std(0) + 1e-12
    x = (pts - mean) / scale
    c = x[rng.choice(len(x), size=K, replace=False)]
    for _ in range(iters):
        lab = assign(x, c)
        for j in range(K):
            if np.any(lab == j):
                c[j] = x[lab == j].mean(0)
    return c, mean, scale


def assign(x, centres):
    """Index of the nearest centre for each row of ``x``."""
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    return np.argmin(d2, axis=1)


def visited_cells(labels, n_cells):
    """``(sel, n_b)`` for each cell with at least :data:`MIN_VISITS` visits (``sel``: its rows)."""
    for b in range(n_cells):
        sel = labels == b
        nb = int(sel.sum())
        if nb >= MIN_VISITS:
            yield sel, nb


def increment_pairs(sde, z, t, k, delta, dt_int, rng, signal=None, draws=DRAWS, max_starts=MAX_STARTS,
                    scheme="euler", antithetic=False, max_work=MAX_WORK):
    """Observed increments at lag ``k`` samples and target increments from the same starts.

    Parameters
    ----------
    z : ndarray (trials, n, d)
    t : ndarray (n,)
    antithetic : bool
        Draw the target increments in antithetic pairs (:func:`.reference.propagate`).
    max_work : int
        Beyond ``max_starts``, starts are used while starts x draws x steps x d stays below
        this; the starts kept are evenly spaced over the run (:data:`MAX_WORK`).

    Returns
    -------
    starts : (S, d), observed : (S, d), target : (S, M, d)
    """
    trials, n, d = z.shape
    idx = np.arange(0, n - k, k)
    starts = z[:, idx].reshape(-1, d)
    obs = (z[:, idx + k] - z[:, idx]).reshape(-1, d)
    ts = np.tile(t[idx], trials)
    n_sub = max(1, int(np.ceil(delta / dt_int - 1e-9)))
    max_starts = min(HARD_MAX_STARTS, max(max_starts, max_work // (n_sub * d * draws)))
    if len(starts) > max_starts:  # evenly spaced, so that the trajectory's own statistic is seed-free
        sel = np.unique(np.linspace(0, len(starts) - 1, max_starts).round().astype(int))
        starts, obs, ts = starts[sel], obs[sel], ts[sel]
    tgt = propagate(sde, starts, ts, delta, dt_int, draws=draws, rng=rng, signal=signal, scheme=scheme,
                    antithetic=antithetic)
    return starts, obs, tgt


def conditional_moments(tgt, antithetic=False):
    r"""Mean increment, its covariance and the variance of the mean, per start.

    Parameters
    ----------
    tgt : ndarray (S, M, d)
        Target increments from each start (:func:`increment_pairs`).
    antithetic : bool
        Draws ``m`` and ``m + M/2`` are an antithetic pair.

    Returns
    -------
    m_hat : (S, d)
        Mean increment :math:`\hat m_i`.
    C : (S, d, d)
        Unbiased covariance :math:`\hat C_i` of one increment.
    V : (S, d, d)
        Unbiased covariance of the error of :math:`\hat m_i` (what the
        propagation's own noise adds to a residual :math:`r_i = \Delta z_i - \hat m_i`).

    Notes
    -----
    Independent draws: :math:`\hat C` the sample covariance, :math:`V = \hat C/M`.
    Antithetic pairs :math:`(a_m, b_m)`: the odd part :math:`o_m = (a_m - b_m)/2` has
    mean zero, the pair means :math:`e_m = (a_m + b_m)/2` carry the even part, the
    two are uncorrelated, and :math:`\hat C = \overline{o o^T} + \operatorname{cov}(e)`,
    :math:`V = \operatorname{cov}(e)/(M/2)`. For small lags the even part is second
    order in the noise, so :math:`V \ll \hat C/M`.
    """
    S, M, d = tgt.shape
    if not antithetic:
        m_hat = tgt.mean(1)
        dev = tgt - m_hat[:, None]
        C = np.einsum("smi,smj->sij", dev, dev) / (M - 1)
        return m_hat, C, C / M
    h = M // 2
    e = 0.5 * (tgt[:, :h] + tgt[:, h:])
    o = 0.5 * (tgt[:, :h] - tgt[:, h:])
    m_hat = e.mean(1)
    de = e - m_hat[:, None]
    ce = np.einsum("smi,smj->sij", de, de) / max(h - 1, 1)
    C = np.einsum("smi,smj->sij", o, o) / h + ce
    return m_hat, C, ce / h


def increment_stats(starts, obs, tgt, cells, kappa=1.0, antithetic=False, subspace=None):
    """Relative drift and diffusion errors over the cells (formulas in the module docstring).

    Parameters
    ----------
    starts, obs : ndarray (S, d)
    tgt : ndarray (S, M, d)
    cells : tuple
        ``(centres, mean, scale)`` from :func:`make_cells`.
    kappa : float
        Read-out filter factor (:func:`filter_factor`).
    antithetic : bool
        ``tgt`` holds antithetic pairs (:func:`conditional_moments`).
    subspace : ndarray (d, r), optional
        Orthonormal columns: judge the increments projected on them only (the
        noisy subspace of a singular diffusion, :mod:`.singular`); the per-cell
        arrays for figures stay in all d coordinates.

    Returns
    -------
    dict
        ``drift_num``, ``drift_den``, ``drift_bias`` (numerator, denominator and
        expected noise of :math:`e_f^2`, per increment: the caller normalises by
        the reference runs' mean denominator, so that trajectory and baselines share
        it), ``drift_null`` (expectation of ``drift_num`` for a trajectory of the
        target), ``propagation_noise`` (the mean increment's error variance relative to
        one increment's, per degree of freedom: 1/M for independent draws), ``diffusion`` (studentised, with sampling noise), ``diffusion_relative``,
        ``diffusion_estimate`` (noise subtracted), ``drift_dof``, ``diffusion_dof``
        and per-cell arrays for figures: ``cell_mean`` (d), ``cell_visits``,
        ``obs_mean``, ``target_mean`` (increments).
    """
    centres, mean, scale = cells
    tgt_full, obs_full = tgt, obs
    if subspace is not None:
        obs, tgt = obs @ subspace, tgt @ subspace
    S, M, d = tgt.shape
    m_hat, C_i, V_i = conditional_moments(tgt, antithetic)
    r = obs - m_hat
    lab = assign((starts - mean) / scale, centres)
    num = den = bias = null = prop = 0.0
    diff_num = diff_bias = 0.0
    t2 = 0.0
    p = d * (d + 1) // 2
    iu = np.triu_indices(d)
    n_tot = n_diff = cells_diff = 0
    cm, nv, om, tm = [], [], [], []
    m_full = tgt_full.mean(1)
    for sel, nb in visited_cells(lab, len(centres)):
        rb = r[sel]
        rbar = rb.mean(0)
        mbar = m_hat[sel].mean(0)
        Cb = C_i[sel].mean(0) + 1e-300 * np.eye(d)
        Vb = V_i[sel].mean(0)
        Sb = np.cov(rb, rowvar=False).reshape(d, d)
        L = np.linalg.cholesky(Cb)
        Li = np.linalg.inv(L)
        num += nb * np.sum((Li @ rbar) ** 2)
        den += nb * np.sum((Li @ mbar) ** 2)
        bias += np.trace(Li @ Sb @ Li.T)
        # E[n_b rbar^T Cb^-1 rbar] for a trajectory of the target: residual variance kappa C_i + V_i
        null += np.trace(Li @ (kappa * Cb + Vb) @ Li.T)
        prop += np.trace(Li @ Vb @ Li.T)
        E = Li @ (Sb - Vb) @ Li.T / kappa - np.eye(d)
        diff_num += nb * np.sum(E ** 2)
        # expected noise of ||E||_F^2 for a Gaussian sample covariance (n_b - 1 dof) and Cb (n_b (M-1) dof)
        diff_bias += (d * (d + 1)) * (1.0 / (nb - 1) + 1.0 / (nb * (M - 1))) * nb / 1.0
        n_tot += nb
        if nb >= 3 * p + 3:
            # studentised covariance error (module docstring): per-increment excess products q_k,
            # their cell mean against the cell's own measured spread (Hotelling T^2, scaled to mean p)
            w = (rb - rbar) @ Li.T * np.sqrt(nb / (nb - 1.0))
            P = np.einsum("ij,sjk,lk->sil", Li, kappa * C_i[sel] + V_i[sel], Li)
            q = (w[:, :, None] * w[:, None, :] - P)[:, iu[0], iu[1]]
            qbar = q.mean(0)
            Sq = np.atleast_2d(np.cov(q, rowvar=False))
            Sq = Sq + 1e-12 * np.trace(Sq) / p * np.eye(p)
            t2 += nb * float(qbar @ np.linalg.solve(Sq, qbar)) * (nb - p - 2.0) / (nb - 1.0)
            n_diff += nb
            cells_diff += 1
        cm.append(starts[sel].mean(0)), nv.append(nb), om.append(obs_full[sel].mean(0)), tm.append(m_full[sel].mean(0))
    if n_tot == 0 or den <= 0:
        return None
    return {
        "drift_num": num / n_tot, "drift_den": den / n_tot, "drift_bias": bias / n_tot,
        "drift_null": null / n_tot, "drift_dof": len(nv) * d, "propagation_noise": prop / max(len(nv) * d, 1),
        "diffusion": float(np.sqrt(t2 / max(n_diff, 1))), "diffusion_cells": cells_diff,
        "diffusion_dof": cells_diff * p, "diffusion_increments": int(n_diff),
        "diffusion_relative": float(np.sqrt(diff_num / (d * n_tot))),
        "diffusion_estimate": float(np.sqrt(max(diff_num - diff_bias, 0.0) / (d * n_tot))),
        "cells_used": len(nv), "increments": int(n_tot),
        "cell_mean": np.array(cm), "cell_visits": np.array(nv),
        "obs_mean": np.array(om), "target_mean": np.array(tm),
    }
