r"""Target simulations for verification: reference runs and short propagations.

Both use Euler–Maruyama (Itô), float64, batched over everything at once so that
numpy's per-call overhead is paid once per step, not once per trial:

.. math:: z_{n+1} = z_n + f(z_n, u(s_n))\,h + g(z_n)\sqrt{h}\,\xi_n,\qquad \xi_n\sim N(0, I_m).

A read-out filtered by a synapse of time constant :math:`\tau_f` is reproduced
by integrating :math:`\dot y = (z - y)/\tau_f` alongside ``z`` (exactly for
``z`` linear over each step) and recording ``y``.
"""
from __future__ import annotations

import numpy as np


def _noise_fn(sde, rng, sq, antithetic=None):
    """Return ``noise(z) -> g(z) sqrt(h) xi`` for a batch, caching g when additive.

    ``antithetic = M`` (even): the batch is laid out as ``(S, M)`` and the draws
    ``M/2 .. M-1`` of every start are the negatives of draws ``0 .. M/2-1``.
    """
    m = sde.noise_dim

    def normals(n):
        if not antithetic:
            return rng.normal(size=(n, m))
        half = rng.normal(size=(n // antithetic, antithetic // 2, m))
        return np.concatenate([half, -half], axis=1).reshape(n, m)

    if sde.additive:
        g0 = np.asarray(sde.diffusion(np.zeros((1, sde.dim))))[0]

        def noise(z):
            return (normals(len(z)) * sq) @ g0.T
    else:
        def noise(z):
            g = sde.diffusion(z)
            return np.einsum("tdm,tm->td", g, normals(len(z)) * sq)
    return noise


def _stepper(sde, rng, h, scheme, antithetic=None):
    r"""Return ``step(z, u) -> z'`` for one step of length ``h`` (input ``u`` held over the step,
    as the piecewise-constant inputs are).

    ``"euler"``: Euler–Maruyama. ``"heun"``: for additive noise the weak order-2
    predictor–corrector (Kloeden & Platen 15.1)
    :math:`\bar z = z + f(z)h + g\Delta W,\; z' = z + \tfrac12 (f(z) + f(\bar z))h + g\Delta W`;
    with state-dependent noise it falls back to Euler–Maruyama. ``antithetic``: see :func:`_noise_fn`.
    """
    noise = _noise_fn(sde, rng, np.sqrt(h), antithetic)
    if scheme == "heun" and sde.additive:
        def step(z, u):
            xi = noise(z)
            f0 = sde.drift(z, u)
            return z + 0.5 * (f0 + sde.drift(z + f0 * h + xi, u)) * h + xi
    else:
        def step(z, u):
            return z + sde.drift(z, u) * h + noise(z)
    return step


def simulate_references(sde, z0, n_rec, record_dt, dt, *, n_ref, rng, signal=None, filter_tau=None,
                        scheme="euler", perturb=None):
    """Simulate ``n_ref`` independent target runs started from the trajectory's initial states.

    Parameters
    ----------
    sde : SDE
    z0 : ndarray (trials, d)
        Start states (the trajectory's own first samples).
    n_rec : int
        Samples per trial, recorded every ``record_dt`` (sample 0 is ``z0``).
    record_dt, dt : float
        Sampling interval and integration step (rounded to divide ``record_dt``).
    scheme : {"euler", "heun"}
        Integrator (:func:`_stepper`).
    n_ref : int
        Number of independent runs.
    rng : numpy.random.Generator
    signal : InputSignal, optional
        Input ``u(s)``, shared by all runs.
    filter_tau : float, optional
        Record the exponentially filtered state (synaptic read-out) instead of ``z``.
    perturb : ndarray (d,), optional
        Standard deviations of Gaussian perturbations added to every run's start
        states, independently (deterministic targets: independent chaotic runs).

    Returns
    -------
    ndarray (n_ref, trials, n_rec, d)
    """
    trials, d = z0.shape
    n_sub = max(1, int(np.ceil(record_dt / dt - 1e-9)))
    h = record_dt / n_sub
    z = np.tile(np.asarray(z0, dtype=np.float64), (n_ref, 1))
    if perturb is not None:
        z = z + np.asarray(perturb, dtype=np.float64) * rng.normal(size=z.shape)
    y = z.copy()
    a = None if not filter_tau else np.exp(-h / filter_tau)
    b = None if not filter_tau else 1.0 - filter_tau * (1.0 - a) / h
    step = _stepper(sde, rng, h, scheme)
    out = np.empty((n_ref * trials, n_rec, d))
    out[:, 0] = z
    const_u = signal is None or len(signal.times) == 1
    u = None if signal is None else signal.values[0]
    for k in range(1, n_rec):
        for j in range(n_sub):
            if not const_u:
                u = signal.at([((k - 1) * n_sub + j) * h])[0]
            z_old, z = z, step(z, u)
            if a is not None:  # exact for z linear over the step (its Brownian-bridge mean)
                y = a * y + (1 - a) * z_old + b * (z - z_old)
        out[:, k] = z if a is None else y
    return out.reshape(n_ref, trials, n_rec, d)


def propagate(sde, starts, t_starts, delta, dt, *, draws, rng, signal=None, scheme="euler", antithetic=False):
    """Propagate the target from each start state over a lag ``delta``, ``draws`` times.

    Parameters
    ----------
    starts : ndarray (S, d)
    t_starts : ndarray (S,)
        Start times (for the input signal).
    delta : float
    dt : float
        Largest integration step (the step used is ``delta / ceil(delta / dt)``).
    draws : int
        Independent noise draws per start, M.
    scheme : {"euler", "heun"}
        Integrator (:func:`_stepper`).
    antithetic : bool
        Draw the noise in antithetic pairs: draw ``m + M/2`` uses the negated
        Brownian path of draw ``m`` (``M`` even). The pair means then carry only
        the even (second-order) part of the noise, so the mean increment is far
        less noisy than with ``M`` independent draws (:func:`.increments.conditional_moments`).

    Returns
    -------
    ndarray (S, M, d)
        End states minus start states: samples of the target's increment
        ``z(t + delta) - z(t)`` given ``z(t) = start``, with no finite-lag bias.
    """
    S, d = starts.shape
    n_sub = max(1, int(np.ceil(delta / dt - 1e-9)))
    h = delta / n_sub
    z0 = np.repeat(np.asarray(starts, dtype=np.float64), draws, axis=0)
    z = z0.copy()
    if antithetic and draws % 2:
        raise ValueError(f"antithetic draws need an even number of draws, got {draws}")
    step = _stepper(sde, rng, h, scheme, draws if antithetic else None)
    varying = signal is not None and len(signal.times) > 1
    u = None if signal is None else signal.values[0]
    ts = np.repeat(np.asarray(t_starts, dtype=np.float64), draws)
    for j in range(n_sub):
        if varying:
            u = signal.at(ts + j * h)
        z = step(z, u)
    return (z - z0).reshape(S, draws, d)
