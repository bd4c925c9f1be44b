r"""The drift split into a reversible (gradient) part and an irreversible (current) part.

For a stationary Itô diffusion with drift ``f`` and noise covariance per unit
time ``D = g g^T`` (Fokker–Planck: :math:`\partial_t p = -\nabla\cdot J`,
:math:`J = f p - \tfrac12 \nabla\cdot(D p)`),

.. math:: f = \underbrace{\tfrac12 D\nabla\log p + \tfrac12 \nabla\cdot D}_{\text{reversible}}
          + \underbrace{J / p}_{\text{irreversible}},

where :math:`(\nabla\cdot D)_i = \sum_j \partial_j D_{ij}`. The reversible part
vanishes at equilibrium only where the density is flat; the irreversible part
(the probability current per unit density) vanishes identically at equilibrium
(detailed balance). ``grad log p`` is estimated by score matching
(:mod:`.density`) from samples; the entropy production rate follows from the
irreversible part as

.. math:: \sigma = 2\, E_p\big[v^T D^{-1} v\big],\qquad v = f - \text{reversible}

(the "field" estimate; for the rotational OU :math:`\sigma = 2 w^2 / k`).
"""
from __future__ import annotations

import numpy as np


def divergence(cov_fn, z, eps=1e-4):
    r"""Row divergence of a matrix field, :math:`(\nabla\cdot D)_i = \sum_j \partial_j D_{ij}` (M, d).

    Central differences with step ``eps`` times the states' scale.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    d = z.shape[1]
    h = eps * np.maximum(z.std(0), 1e-3) if len(z) > 1 else np.full(d, eps)
    out = np.zeros_like(z)
    for j in range(d):
        step = np.zeros(d)
        step[j] = h[j]
        out += (np.asarray(cov_fn(z + step))[..., :, j] - np.asarray(cov_fn(z - step))[..., :, j]) / (2 * h[j])
    return out


def split_drift(drift_fn, cov_fn, density, z):
    """Drift, reversible and irreversible parts at states ``z`` (module docstring).

    Parameters
    ----------
    drift_fn : callable
        ``z (M, d) -> f (M, d)``.
    cov_fn : callable
        ``z (M, d) -> D (M, d, d)``, noise covariance per unit time.
    density : LogDensity
        Stationary density estimate (:mod:`.density`) of the same process.
    z : array (M, d)

    Returns
    -------
    dict of ndarray (M, d)
        ``drift``, ``reversible``, ``irreversible`` (``drift = reversible + irreversible``).
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    f = np.asarray(drift_fn(z))
    D = np.asarray(cov_fn(z))
    rev = 0.5 * np.einsum("mij,mj->mi", D, density.score(z)) + 0.5 * divergence(cov_fn, z)
    return {"drift": f, "reversible": rev, "irreversible": f - rev}


def field_summary(parts, cov):
    """Shares of the drift's mean square and the field estimate of the entropy production rate.

    Parameters
    ----------
    parts : dict
        From :func:`split_drift`, at states drawn from the stationary density.
    cov : array (M, d, d)
        ``D`` at the same states.

    Returns
    -------
    dict
        ``reversible_share``, ``irreversible_share`` (mean square over the
        drift's mean square) and ``entropy_production_field`` (``2 E[v^T D^-1 v]``;
        None where ``D`` is singular).
    """
    f, rev, irr = parts["drift"], parts["reversible"], parts["irreversible"]
    norm = max(float(np.mean(np.sum(f ** 2, -1))), 1e-300)
    cov = np.asarray(cov)
    ev = np.linalg.eigvalsh(cov)
    singular = bool(np.any(ev[..., 0] <= 1e-12 * np.maximum(ev[..., -1], 1e-300)))
    epr = None
    if not singular:
        epr = float(2.0 * np.mean(np.einsum("mi,mi->m", irr, np.linalg.solve(cov, irr[..., None])[..., 0])))
    return {"reversible_share": float(np.mean(np.sum(rev ** 2, -1)) / norm),
            "irreversible_share": float(np.mean(np.sum(irr ** 2, -1)) / norm),
            "entropy_production_field": epr}
