r"""Simulation of the full N-neuron network in torch (float64, batched over trials).

Euler–Maruyama in network time ``t = T s`` with step ``h = T dt``::

    x <- x + (h / tau) (-x + W phi(x) + b + B u(s)) + W (sigma(x) * sqrt(h) xi) / tau + E L sqrt(h) xi'

(Itô; private output noise, see :mod:`ddm_neuro.network`). ``W v`` is computed
as ``E (K v)``, O(N d) per step ("factored"), or with the dense ``W`` ("dense").
When the input steps, ``x`` moves by ``B (u_new - u_old)`` at once (the input's
feed-forward path, see :mod:`ddm_neuro.network`), so the latent follows ``u``
without the lag ``tau`` of the off-subspace relaxation. Only the latent
read-out ``z = S D x + c`` is kept, at the recording interval, so memory does
not grow with N.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DDMError
from .inputs import InputSignal
from .target import recording_grid
from ..trajectory import Trajectory


def network_steps(model):
    """Default ``(dt, record_dt)`` in SDE units: the fit's, with ``T dt <= tau / 10``."""
    fit = model.meta.get("fit", {})
    dt = fit.get("integration_dt", 1e-3)
    rec = fit.get("record_dt", 5 * dt)
    dt = min(dt, model.tau / (10 * model.time_scale))
    return dt, max(rec, dt)


def available_memory():
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


#: Most integration steps a run may take (10^9 steps: days at any network size).
MAX_STEPS = 1e9


def run_size(model, duration, trials):
    """Bytes a run of ``model`` holds: the recorded latent (twice: kept and written) and the network state.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        SDE time units.
    trials : int

    Returns
    -------
    int
    """
    _, rec = network_steps(model)
    samples = math.floor(duration / rec) + 1
    latent = 2.0 * trials * samples * model.dim * 8
    state = 8.0 * trials * model.n_neurons * 8  # state, rates, noise, ... per neuron and trial (float64)
    return latent + state


def check_run_size(model, duration, trials):
    """Refuse, before any work, a run that cannot fit in memory or would never end, saying what it would need.

    Raises
    ------
    DDMError
        When the run takes more than :data:`MAX_STEPS` integration steps, or
        :func:`run_size` exceeds the memory available now.
    """
    dt, rec = network_steps(model)
    steps = duration / dt
    if not steps <= MAX_STEPS:
        raise DDMError(f"--duration {duration:g} is {steps:.3g} integration steps of {dt:.3g} time units "
                       f"(tau {model.tau:.3g} s, {model.time_scale:.3g} s per time unit), more than the "
                       f"{MAX_STEPS:.0e} a run may take: use a shorter --duration, or check the model's tau and "
                       "time_scale")
    need = run_size(model, duration, trials)
    have = available_memory()
    if have is not None and need > have:
        gib = 2.0 ** 30
        raise DDMError(f"--duration {duration:g} x --trials {trials} needs about {need / gib:.3g} GiB "
                       f"({model.n_neurons} neurons, {model.dim} latent dimensions recorded every "
                       f"{network_steps(model)[1]:.3g} time units), more than the {have / gib:.3g} GiB available: "
                       "use a shorter --duration or fewer --trials")
    return need


def input_signal(model, u):
    """``u`` (None, constant or :class:`InputSignal`) as an InputSignal for ``model`` (None without inputs)."""
    if not model.n_inputs:
        if u is not None:
            raise DDMError("an input was given, but this model has no inputs")
        return None
    if u is None:
        return InputSignal.constant(np.zeros(model.n_inputs))
    u = u if isinstance(u, InputSignal) else InputSignal.constant(u)
    if u.n_inputs != model.n_inputs:
        raise DDMError(f"input has {u.n_inputs} channels, the model has {model.n_inputs} ({', '.join(model.inputs)})")
    return u


def start_states(model, trials, rng, z0=None):
    """Latent starts (trials, d): ``z0`` broadcast, or drawn with ``rng`` from the model's stored states.

    ``model`` needs ``init_states`` and ``dim``. Raises :class:`DDMError` for a ``z0`` of the wrong shape.
    """
    if z0 is None:
        z0 = model.init_states[rng.integers(0, len(model.init_states), trials)]
    try:
        return np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, model.dim))
    except ValueError:
        raise DDMError(f"z0 has shape {np.shape(z0)}; expected ({model.dim},) or ({trials}, {model.dim})") from None


def simulate_network(model, duration, *, dt=None, record_dt=None, trials=1, seed=None, z0=None, u=None,
                     noise=True, coupling="factored", progress=False, chunk=256):
    """Simulate the rate network and return its latent trajectory.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        Time per trial in SDE units.
    dt, record_dt : float, optional
        Integration step and recording interval, SDE units (default :func:`network_steps`).
    trials : int
    seed : int, optional
    z0 : array (d,) or (trials, d), optional
        Start latent states; default: drawn from ``model.init_states`` (on the
        target's visited distribution). Off-subspace inputs start at rest.
    u : None, array_like or InputSignal
        Input in SDE time.
    noise : bool
        False: the noise-free network.
    coupling : {"factored", "dense"}
    progress : bool

    Returns
    -------
    Trajectory
        ``meta["backend"] = "torch"``, ``meta["mode"] = "rate"``.
    """
    if coupling not in ("factored", "dense"):
        raise DDMError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if not (math.isfinite(duration) and duration > 0) or int(trials) < 1:
        raise DDMError(f"duration must be a finite number > 0 and trials >= 1 (got {duration}, {trials})")
    for name, v in (("dt", dt), ("record_dt", record_dt)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise DDMError(f"{name} must be a finite number > 0 (got {v})")
    d0, r0 = network_steps(model)
    dt = dt or d0
    record_dt = record_dt or max(r0, dt)
    if dt * model.time_scale > model.tau / 5:
        raise DDMError(f"dt = {dt:g} SDE units is {dt * model.time_scale / model.tau:.2f} tau in network "
                       f"time; Euler needs at most tau/5 (dt <= {model.tau / (5 * model.time_scale):.3g})")
    seed = None if seed is None else int(seed)
    n_rec, record_dt, n_sub, dt = recording_grid(duration, dt, record_dt)
    signal = input_signal(model, u)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))

    z0 = start_states(model, trials, rng, z0)
    u0 = None if signal is None else signal.values[0]
    x0 = model.neuron_inputs(z0, u0)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)  # noqa: E731
    x = t(x0)
    E, K, D, b = t(model.encoders), t(model.decoders), t(model.readout), t(model.bias)
    W = t(model.weights()) if coupling == "dense" else None
    Wp = t(model.w_perp) if model.w_perp is not None and coupling == "factored" else None
    B = t(model.input_weights)
    na, nc = t(model.noise_act), t(model.noise_const)
    EL = t(model.encoders @ model.noise_latent) if np.any(model.noise_latent) else None
    scale, center = t(model.scale), t(model.center)
    h = dt * model.time_scale
    a = h / model.tau
    phi, act = model.neuron.phi, model.neuron.activity

    out = np.empty((trials, n_rec, model.dim))
    out[:, 0] = (x @ D.T * scale + center).numpy()
    u_now = None if signal is None else t(signal.values[0])
    drive = b if signal is None else b + u_now @ B.T
    bar = tqdm(total=n_rec - 1, desc="simulate torch", disable=not progress, unit="sample")
    noise_buf, used = None, chunk
    step = 0
    with torch.no_grad():
        for k in range(1, n_rec):
            for _ in range(n_sub):
                if signal is not None and len(signal.times) > 1:
                    u_new = t(signal.at([step * dt])[0])
                    if not torch.equal(u_new, u_now):  # feed-forward: off-subspace state jumps with u
                        x = x + (u_new - u_now) @ B.T
                        u_now = u_new
                        drive = b + u_now @ B.T
                r = phi(x, torch)
                if noise:  # output noise: r + eta with eta dt = sigma sqrt(h) xi, times tau / h
                    if used == chunk:
                        noise_buf = torch.randn((chunk,) + tuple(x.shape), generator=gen, dtype=torch.float64)
                        shared_buf = math.sqrt(h) * torch.randn(chunk, trials, model.dim, generator=gen,
                                                                dtype=torch.float64)
                        used = 0
                    r = r + torch.sqrt((nc + na * act(x, torch)) / h) * noise_buf[used]
                rec = (r @ K.T) @ E.T if W is None else r @ W.T
                if Wp is not None:
                    rec = rec + r @ Wp.T
                x = x + a * (-x + rec + drive)
                if noise:
                    if EL is not None:
                        x = x + shared_buf[used] @ EL.T
                    used += 1
                step += 1
            out[:, k] = (x @ D.T * scale + center).numpy()
            if not np.isfinite(out[:, k]).any():  # every trial diverged: nothing left to simulate
                out[:, k + 1:] = np.nan
                break
            bar.update()
    bar.close()
    diverged = [int(i) for i in np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))]
    meta = {"backend": "torch", "mode": "rate", "coupling": coupling, "model_id": model.meta.get("model_id"),
            "system": model.meta.get("sde_name"), "variables": list(model.variables), "seed": seed,
            "duration": float(duration), "trials": int(trials), "integration_dt": dt, "noise": bool(noise),
            "n_neurons": model.n_neurons, "input": None if signal is None else signal.to_dict(),
            "diverged_trials": diverged}
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=meta)
