r"""Largest Lyapunov exponent of a noise-free drift (Benettin's method).

The state and one tangent vector are integrated together with RK4,

.. math:: \dot z = f(z),\qquad \dot v = J_f(z)\,v,\qquad
   J_f(z)\,v \approx \frac{f(z + \varepsilon v) - f(z - \varepsilon v)}{2\varepsilon},

the tangent vector is renormalised after every step and

.. math:: \lambda_1 = \frac{1}{T}\sum_{n} \log \lVert v_{n+1}\rVert \quad(\lVert v_n\rVert = 1),

accumulated after a transient that aligns ``v`` with the leading direction.
Each start state gives one finite-time estimate; their spread gives the
standard error (16 starts x 60 time units: about 0.01 for Lorenz, whose
exponent is 0.906).
"""
from __future__ import annotations

import numpy as np

#: Time per start state and transient, in SDE units.
DURATION = 60.0
TRANSIENT = 5.0
#: Number of start states.
STARTS = 16


def largest_lyapunov(drift, z0, *, duration=DURATION, transient=TRANSIENT, dt=0.01, rng=None):
    """Finite-time largest Lyapunov exponents, one per start state.

    Parameters
    ----------
    drift : callable
        ``drift(z) -> (..., d)`` (numpy, noise-free).
    z0 : ndarray (n, d)
        Start states (e.g. visited states of the attractor).
    duration, transient : float
        Averaging time and discarded transient, SDE units.
    dt : float
        RK4 step.

    Returns
    -------
    ndarray (n,)
        NaN for a start whose run diverges.
    """
    rng = rng or np.random.default_rng(0)
    z = np.array(z0, dtype=np.float64)
    n, d = z.shape
    v = rng.normal(size=(n, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scale = max(1.0, float(np.sqrt(np.mean(z ** 2))))
    eps = 1e-7 * scale

    def rhs(z, v):
        out = np.asarray(drift(np.concatenate([z, z + eps * v, z - eps * v])), dtype=np.float64)
        return out[:n], (out[n:2 * n] - out[2 * n:]) / (2 * eps)

    n_tr = int(round(transient / dt))
    n_av = int(round(duration / dt))
    acc = np.zeros(n)
    with np.errstate(all="ignore"):
        for step in range(n_tr + n_av):
            k1z, k1v = rhs(z, v)
            k2z, k2v = rhs(z + 0.5 * dt * k1z, v + 0.5 * dt * k1v)
            k3z, k3v = rhs(z + 0.5 * dt * k2z, v + 0.5 * dt * k2v)
            k4z, k4v = rhs(z + dt * k3z, v + dt * k3v)
            z = z + dt / 6 * (k1z + 2 * k2z + 2 * k3z + k4z)
            v = v + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
            nv = np.linalg.norm(v, axis=1)
            if step >= n_tr:
                acc += np.log(nv)
            v /= nv[:, None]
            bad = ~np.isfinite(z).all(1) | ~np.isfinite(nv)
            if bad.any():
                z[bad] = 0.0
                v[bad] = 1.0 / np.sqrt(d)
                acc[bad] = np.nan
    return acc / (n_av * dt)


def rk4_step(rate):
    """An RK4 step for the tangent dynamics: ``min(0.01, 0.1 / rate)``."""
    return float(min(0.01, 0.1 / max(rate, 1e-6)))
