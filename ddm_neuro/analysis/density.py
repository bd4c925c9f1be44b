r"""Stationary log-density gradient (score) from samples, by score matching on a polynomial basis.

Model :math:`\log p(z) = \theta^T b(z) + \text{const}` with ``b`` the
monomials of :math:`x = (z - \mu)/s` of total degree 1..p (the basis of
:mod:`ddm_neuro.verify.basis`). Hyvärinen's score-matching objective

.. math:: J(\theta) = E_p\big[\tfrac12 |\nabla \log p|^2 + \Delta \log p\big]
          = \tfrac12 \theta^T A \theta + \theta^T c,\quad
          A = E\Big[\sum_k \partial_k b\, \partial_k b^T\Big],\ c = E\Big[\sum_k \partial_k^2 b\Big]

needs no normalising constant and is minimised in closed form,
:math:`\theta = -A^{-1} c` (a tiny ridge keeps ``A`` invertible). For a Gaussian
(any OU process) degree 2 is exact. Degree 6 for d <= 2, 4 for d = 3, 2 above (:data:`DENSITY_DEGREES`).
"""
from __future__ import annotations

import numpy as np

from ..verify.basis import PolyBasis, degree_for

#: Default total degree of the log-density polynomial for d = 1, 2, 3 and above
#: (:func:`~ddm_neuro.verify.basis.degree_for`).
DENSITY_DEGREES = (6, 6, 4, 2)


def _mono(x, P):
    """Monomials ``prod_j x_j^P[b, j]`` (M, n_b); negative powers give 0."""
    ok = (P >= 0).all(axis=1)
    out = np.prod(x[:, None, :] ** np.clip(P, 0, None)[None], axis=-1)
    return out * ok


class LogDensity:
    """``log p = theta . b(z)`` (up to a constant); :meth:`score` gives ``grad log p``.

    Attributes
    ----------
    mean, scale : ndarray (d,)
        Standardisation of the basis.
    powers : ndarray (n_b, d)
        Exponents of the monomials (total degree 1..p).
    theta : ndarray (n_b,)
    """

    def __init__(self, mean, scale, powers, theta):
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)
        self.powers, self.theta = np.asarray(powers, int), np.asarray(theta, float)

    @classmethod
    def fit(cls, z, degree=None, ridge=1e-8, max_samples=50000, rng=None):
        """Score-matching fit to samples ``z`` (M, d) of the stationary density.

        Parameters
        ----------
        z : array (M, d) or (trials, n, d)
        degree : int, optional
            Total degree (default ``degree_for(d, DENSITY_DEGREES)``).
        ridge : float
            Relative ridge on ``A`` (times its mean diagonal).
        max_samples : int
            Random subsample size above this many states.
        """
        z = np.asarray(z, dtype=np.float64).reshape(-1, np.shape(z)[-1])
        z = z[np.isfinite(z).all(axis=1)]
        if len(z) > max_samples:
            rng = rng if rng is not None else np.random.default_rng(0)
            z = z[rng.choice(len(z), max_samples, replace=False)]
        d = z.shape[1]
        base = PolyBasis.fit_to(z, degree_for(d, DENSITY_DEGREES) if degree is None else degree)
        P = np.array([p for p in base.powers if sum(p) > 0], dtype=int)
        self = cls(base.mean, base.scale, P, np.zeros(len(P)))
        grads, lap = self._derivatives(z)
        A = np.einsum("mbk,mck->bc", grads, grads) / len(z)
        c = lap.mean(0)
        A = A + ridge * np.mean(np.diag(A)) * np.eye(len(P))
        self.theta = -np.linalg.solve(A, c)
        return self

    def _derivatives(self, z):
        """Gradients ``d b / d z_k`` (M, n_b, d) and Laplacians ``sum_k d^2 b / d z_k^2`` (M, n_b)."""
        x = (np.atleast_2d(np.asarray(z, dtype=np.float64)) - self.mean) / self.scale
        d = x.shape[1]
        grads = np.empty((len(x), len(self.powers), d))
        lap = np.zeros((len(x), len(self.powers)))
        for k in range(d):
            e = np.zeros(d, dtype=int)
            e[k] = 1
            pk = self.powers[:, k].astype(float)
            grads[:, :, k] = pk * _mono(x, self.powers - e) / self.scale[k]
            lap += pk * (pk - 1) * _mono(x, self.powers - 2 * e) / self.scale[k] ** 2
        return grads, lap

    def score(self, z):
        """``grad log p`` at ``z`` (M, d)."""
        grads, _ = self._derivatives(z)
        return np.einsum("mbk,b->mk", grads, self.theta)

    def log_density(self, z):
        """``log p`` at ``z`` up to an additive constant (M,)."""
        x = (np.atleast_2d(np.asarray(z, dtype=np.float64)) - self.mean) / self.scale
        return _mono(x, self.powers) @ self.theta
