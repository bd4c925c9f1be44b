r"""Euler–Maruyama integration of the target SDE (Itô), float64, batched over trials.

    z_{n+1} = z_n + f(z_n, u(s_n)) dt + g(z_n) sqrt(dt) xi_n,   xi_n ~ N(0, I_m)
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..trajectory import Trajectory
from .plan import default_steps, input_signal, recording_grid


def initial_states(sde, trials, rng):
    """Start states: uniform over the domain box, or standard normal without a domain."""
    box = sde.domain_box()
    if box is None:
        return rng.normal(size=(trials, sde.dim))
    lo, hi = box
    return rng.uniform(lo, hi, size=(trials, sde.dim))


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
    signal = input_signal(sde, u)
    z = initial_states(sde, trials, rng) if z0 is None else \
        np.array(np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, sde.dim)))
    out = integrate(sde, z, n_rec=n_rec, n_sub=n_sub, dt=dt, signal=signal, rng=rng,
                    burn_in_steps=int(round(burn_in / dt)), progress=progress)
    info = {"backend": "target", "mode": "sde", "system": sde.name, "variables": list(sde.variables),
            "seed": seed if isinstance(seed, int) else None, "duration": float(duration),
            "trials": int(trials), "integration_dt": dt, "burn_in": float(burn_in),
            "input": None if signal is None else signal.to_dict()}
    info.update(meta or {})
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=info)


def integrate(sde, z, *, n_rec, n_sub, dt, signal, rng, burn_in_steps=0, progress=False):
    """Euler-Maruyama from states ``z`` (trials, d): ``n_rec`` samples, ``n_sub`` steps of ``dt`` apart.

    The first ``burn_in_steps`` steps (input held at ``u(0)``) are not recorded.

    Returns
    -------
    ndarray (trials, n_rec, d)
    """
    trials = len(z)
    out = np.empty((trials, n_rec, sde.dim))
    sq = np.sqrt(dt)
    m = sde.noise_dim

    def step(z, uval):
        dw = rng.normal(size=(trials, m)) * sq
        g = sde.diffusion(z)
        return z + sde.drift(z, uval) * dt + np.einsum("tdm,tm->td", g, dw)

    u0 = None if signal is None else signal.values[0]
    for _ in range(burn_in_steps):
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
    return out


def run_sde(plan):
    """Simulate the target SDE of a :class:`~ddm_neuro.run.plan.RunPlan` (the ``target`` back end).

    Start states: the plan's, else drawn from the model's stored states (or,
    for a bare SDE, :func:`initial_states`); then the noise, all from
    ``numpy.random.default_rng(plan.seed)``.

    Returns
    -------
    Trajectory
        ``meta["backend"] = "target"``, ``meta["mode"] = "sde"``.
    """
    sde = plan.sde if plan.sde is not None else plan.model.sde()
    rng = np.random.default_rng(plan.seed)
    if plan.z0 is not None or plan.model is not None:
        z = np.array(plan.start_states(rng))
    else:
        z = initial_states(sde, plan.trials, rng)
    out = integrate(sde, z, n_rec=plan.n_rec, n_sub=plan.n_sub, dt=plan.dt, signal=plan.input, rng=rng,
                    progress=plan.progress)
    return plan.trajectory(out, backend="target", mode="sde", burn_in=0.0)
