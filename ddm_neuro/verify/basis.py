r"""Polynomial basis fits of drift, diffusion and phase-space velocity (from samples).

Basis: monomials of the standardised state :math:`x = (z - \mu)/s` up to a total
degree :math:`p` (3 for d <= 2, 2 for d = 3, 1 above), :math:`n_b` functions.
With lag-one increments :math:`\Delta z_i = z_{i+1} - z_i` over :math:`\delta t`:

* Itô drift: least squares :math:`\Delta z_i/\delta t \approx \Theta\, b(z_i)`;
* diffusion (constant average): :math:`\hat D = \frac{1}{T}\sum_i (\Delta z_i - \hat f_i\delta t)(\cdot)^T`;
* phase-space velocity (Stratonovich, as in stochastic force inference): with
  :math:`\tilde b = L^{-1} b` orthonormal over the samples,
  :math:`c_k = \frac1T\sum_i \Delta z_i\, \tilde b_k(\tfrac{z_i + z_{i+1}}{2})`.
"""
from __future__ import annotations

import itertools

import numpy as np


#: The verifier's default total degree by dimension: d = 1, 2, 3 and above (see :func:`degree_for`).
VERIFY_DEGREES = (3, 3, 2, 1)


def degree_for(d, table=VERIFY_DEGREES):
    """Default total degree of a polynomial basis for dimension ``d``.

    Parameters
    ----------
    d : int
        Dimension (>= 1).
    table : sequence of int
        Degrees for d = 1, 2, ...; the last entry holds for every larger d
        (default :data:`VERIFY_DEGREES`: 3 for d <= 2, 2 for d = 3, 1 above).
        Estimators that need more degrees pass their own table.

    Returns
    -------
    int
    """
    return int(table[min(int(d), len(table)) - 1])


class PolyBasis:
    """Monomials up to total degree ``degree`` of ``(z - mean) / scale``."""

    def __init__(self, mean, scale, degree):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        d = len(self.mean)
        self.powers = [p for p in itertools.product(range(degree + 1), repeat=d) if sum(p) <= degree]
        self.powers.sort(key=sum)

    @classmethod
    def fit_to(cls, states, degree=None):
        """Basis standardised on ``states`` (n, d)."""
        d = states.shape[1]
        return cls(states.mean(0), states.std(0) + 1e-12, degree_for(d) if degree is None else degree)

    def __len__(self):
        return len(self.powers)

    def __call__(self, z):
        x = (np.asarray(z, dtype=np.float64) - self.mean) / self.scale
        cols = [np.prod([x[..., j] ** p for j, p in enumerate(pw)], axis=0) if sum(pw) else
                np.ones(x.shape[:-1]) for pw in self.powers]
        return np.stack(cols, axis=-1)


def lag_one(z):
    """Consecutive pairs of all trials: starts (n, d), ends (n, d)."""
    d = z.shape[-1]
    return z[:, :-1].reshape(-1, d), z[:, 1:].reshape(-1, d)


def fit_drift(z, dt, basis):
    """Least-squares Itô drift coefficients ``Theta`` (d, n_b) and the average ``g g^T`` (d, d)."""
    a, b = lag_one(z)
    B = basis(a)
    inc = b - a
    theta, *_ = np.linalg.lstsq(B, inc / dt, rcond=None)
    res = inc - (B @ theta) * dt
    D = res.T @ res / (len(res) * dt)
    return theta.T, np.atleast_2d(D)


def velocity_coefficients(z, dt, basis, Li=None):
    """Stratonovich projections ``c`` (n_b, d) onto the orthonormalised basis, total time T, and ``L^-1``.

    ``Li`` (optional) reuses another sample's orthonormalisation, so that chunks
    of data give coefficients of the same functions.
    """
    a, b = lag_one(z)
    mid = basis(0.5 * (a + b))
    if Li is None:
        G = mid.T @ mid / len(mid) + 1e-12 * np.eye(len(basis))
        Li = np.linalg.inv(np.linalg.cholesky(G))
    T = len(a) * dt
    c = (mid @ Li.T).T @ (b - a) / T
    return c, T, Li
