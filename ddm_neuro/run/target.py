r"""Euler–Maruyama integration of the target SDE (Itô), float64, batched over trials.

    z_{n+1} = z_n + f(z_n, u(s_n)) dt + g(z_n) sqrt(dt) xi_n,   xi_n ~ N(0, I_m)
"""
from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from .inputs import InputSignal
from ..trajectory import Trajectory


def default_steps(sde, states=None, u=None):
    """Integration step and recording interval (SDE time units) from the drift's rates.

    ``dt = 0.02 / rate`` and ``record_dt = 5 dt``, where ``rate`` is the 95th
    percentile of the drift Jacobian's spectral radius over ``states`` (default:
    the domain grid, or a few probe states).

    Returns
    -------
    dt, record_dt : float
    """
    if states is None:
        states = sde.domain_grid()
    if states is None:
        states = np.random.default_rng(0).normal(size=(64, sde.dim))
    rate = max(sde.characteristic_rate(states, u), 1e-3)
    dt = float(f"{0.02 / rate:.2g}")
    return dt, 5 * dt


def recording_grid(duration, dt, record_dt):
    """Samples, recording interval and sub-steps covering exactly ``duration``.

    ``record_dt`` is adjusted so that a whole number of intervals spans
    ``duration``; the integration step is never coarser than ``dt``.

    Returns
    -------
    n_rec, record_dt, n_sub, dt
    """
    n_rec = max(1, int(round(duration / record_dt))) + 1
    record_dt = duration / (n_rec - 1)
    n_sub = max(1, math.ceil(record_dt / dt - 1e-9))
    return n_rec, record_dt, n_sub, record_dt / n_sub


def initial_states(sde, trials, rng):
    """Start states: uniform over the domain box, or standard normal without a domain."""
    box = sde.domain_box()
    if box is None:
        return rng.normal(size=(trials, sde.dim))
    lo, hi = box
    return rng.uniform(lo, hi, size=(trials, sde.dim))


def as_input_signal(sde, u):
    """Turn None, a constant or an :class:`InputSignal` into an InputSignal (or None)."""
    if sde.n_inputs == 0:
        if u is not None and not (isinstance(u, InputSignal) and u.n_inputs == 0):
            from ..errors import DDMError
            raise DDMError(f"{sde.name} has no inputs, but an input was given")
        return None
    if u is None:
        return InputSignal.constant(np.zeros(sde.n_inputs))
    if not isinstance(u, InputSignal):
        u = InputSignal.constant(u)
    if u.n_inputs != sde.n_inputs:
        from ..errors import DDMError
        raise DDMError(f"input has {u.n_inputs} channels, {sde.name} has {sde.n_inputs} ({', '.join(sde.inputs)})")
    return u


def simulate_sde(sde, duration, *, dt=None, record_dt=None, trials=1, seed=None, z0=None,
                 u=None, burn_in=0.0, progress=False, meta=None):
    """Simulate the target SDE with Euler–Maruyama.

    Parameters
    ----------
    sde : SDE
    duration : float
        Recorded time per trial (SDE units), after ``burn_in``.
    dt, record_dt : float, optional
        Integration step and sampling interval; default from :func:`default_steps`.
        ``record_dt`` is rounded to a whole number of steps.
    trials : int
    seed : int or numpy.random.Generator, optional
    z0 : array (d,) or (trials, d), optional
        Start states; default :func:`initial_states`.
    u : None, array_like or InputSignal
        Input ``u(s)`` (s measured from the start of the recording).
    burn_in : float
        Time simulated and discarded before recording (input held at u(0)).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Trajectory
        ``meta["backend"] = "target"``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if dt is None or record_dt is None:
        dt0, rec0 = default_steps(sde)
        dt = dt or dt0
        record_dt = record_dt or max(rec0, dt)
    n_rec, record_dt, n_sub, dt = recording_grid(duration, dt, record_dt)
    n_burn = int(round(burn_in / dt))
    signal = as_input_signal(sde, u)
    z = initial_states(sde, trials, rng) if z0 is None else \
        np.array(np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, sde.dim)))
    out = np.empty((trials, n_rec, sde.dim))
    sq = np.sqrt(dt)
    m = sde.noise_dim

    def step(z, uval):
        dw = rng.normal(size=(trials, m)) * sq
        g = sde.diffusion(z)
        return z + sde.drift(z, uval) * dt + np.einsum("tdm,tm->td", g, dw)

    u0 = None if signal is None else signal.values[0]
    for _ in range(n_burn):
        z = step(z, u0)
    bar = tqdm(total=n_rec - 1, desc=f"target {sde.name}", disable=not progress, unit="sample")
    out[:, 0] = z
    for k in range(1, n_rec):
        for j in range(n_sub):
            s = ((k - 1) * n_sub + j) * dt
            uval = None if signal is None else signal.at([s])[0]
            z = step(z, uval)
        out[:, k] = z
        bar.update()
    bar.close()
    info = {"backend": "target", "mode": "sde", "system": sde.name, "variables": list(sde.variables),
            "seed": seed if isinstance(seed, int) else None, "duration": float(duration),
            "trials": int(trials), "integration_dt": dt, "burn_in": float(burn_in),
            "input": None if signal is None else signal.to_dict()}
    info.update(meta or {})
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=info)
