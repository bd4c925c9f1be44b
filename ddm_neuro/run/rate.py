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

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DDMError
from .plan import plan_run


def simulate_network(model, duration, *, dt=None, record_dt=None, trials=1, seed=None, z0=None, u=None,
                     noise=True, coupling="factored", progress=False, chunk=256):
    """Simulate the rate network and return its latent trajectory.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        Time per trial in SDE units.
    dt, record_dt : float, optional
        Integration step and recording interval, SDE units (default :func:`ddm_neuro.run.plan.network_steps`).
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
    plan = plan_run(model, duration, mode="rate", trials=trials, seed=seed, u=u, z0=z0, dt=dt, record_dt=record_dt,
                    noise=noise, progress=progress, options={"coupling": coupling, "chunk": chunk})
    return run_rate(plan)


def run_rate(plan):
    """Simulate a rate-mode :class:`~ddm_neuro.run.plan.RunPlan` (options ``coupling``, ``chunk``, ``engine``, ``device``).

    The compiled step loop (:mod:`ddm_neuro.run.step_loop`) on the CPU when it
    can be built here, else (or with ``engine="torch"``, or ``device="cuda"``)
    the torch loop below.

    Returns
    -------
    Trajectory
        ``meta["backend"] = "torch"``, ``meta["mode"] = "rate"``, ``meta["engine"]``, ``meta["device"]``.
    """
    from .step_loop import engine_for

    model, dt, noise = plan.model, plan.dt, plan.noise
    coupling = plan.options.get("coupling") or "factored"
    for name in ("fano", "record_spikes"):
        if plan.options.get(name) is not None:
            raise DDMError(f"{name} applies to spiking runs (mode 'spiking'), not to the rate network")
    if coupling not in ("factored", "dense"):
        raise DDMError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if dt * model.time_scale > model.tau / 5:
        raise DDMError(f"dt = {dt:g} SDE units is {dt * model.time_scale / model.tau:.2f} tau in network "
                       f"time; Euler needs at most tau/5 (dt <= {model.tau / (5 * model.time_scale):.3g})")
    engine, device = engine_for(plan)
    info = {"coupling": coupling, "engine": engine, "device": device, "threads": plan.threads}
    if engine == "compiled":
        from .step_loop import run_steps

        private = bool(noise) and bool(np.any(model.noise_const) or np.any(model.noise_act))
        res = run_steps(plan, spiking=False, coupling=coupling, private_noise=private, shared_noise=bool(noise),
                        label="simulate torch")
        return plan.trajectory(res["z"], backend="torch", **info)
    return plan.trajectory(_torch_loop(plan, coupling, device), backend="torch", **info)


def _torch_loop(plan, coupling, device):
    """The rate network's Euler-Maruyama loop in torch tensor operations, on ``device``."""
    model, trials, dt, noise = plan.model, plan.trials, plan.dt, plan.noise
    chunk = plan.options.get("chunk") or 256
    n_rec, n_sub, signal, progress = plan.n_rec, plan.n_sub, plan.input, plan.progress
    rng = np.random.default_rng(plan.seed)
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2 ** 62)))

    z0 = plan.start_states(rng)
    u0 = plan.u0
    x0 = model.neuron_inputs(z0, u0)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)  # noqa: E731
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

    out = np.full((trials, n_rec, model.dim), np.nan)
    out[:, 0] = (x @ D.T * scale + center).cpu().numpy()
    recorder = Recorder(out)
    u_now = None if signal is None else signal.values[0]
    drive = b if signal is None else b + t(u_now) @ B.T
    bar = tqdm(total=n_rec - 1, desc="simulate torch", disable=not progress, unit="sample")
    noise_buf, used = None, chunk
    step = 0
    with torch.no_grad():
        for k in range(1, n_rec):
            for _ in range(n_sub):
                if signal is not None and len(signal.times) > 1:
                    u_new = signal.at([step * dt])[0]
                    if not np.array_equal(u_new, u_now):  # feed-forward: off-subspace state jumps with u
                        x = x + (t(u_new) - t(u_now)) @ B.T
                        u_now = u_new
                        drive = b + t(u_now) @ B.T
                r = phi(x, torch)
                if noise:  # output noise: r + eta with eta dt = sigma sqrt(h) xi, times tau / h
                    if used == chunk:
                        noise_buf = torch.randn((chunk,) + tuple(x.shape), generator=gen, dtype=torch.float64,
                                                device=device)
                        shared_buf = math.sqrt(h) * torch.randn(chunk, trials, model.dim, generator=gen,
                                                                dtype=torch.float64, device=device)
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
            if recorder.add(k, x @ D.T * scale + center):  # every trial diverged: nothing left to simulate
                break
            bar.update()
        recorder.flush()
    bar.close()
    return out


class Recorder:
    """Recorded read-outs of a torch loop, copied to the host in batches (one device synchronisation each).

    ``add(k, z)`` keeps row ``k``; every ``every`` rows (and at :meth:`flush`) the rows go to ``out``
    (trials, n_rec, d) and it returns True once a row holds no finite value (the rows after it are NaN).
    """

    def __init__(self, out, every=64):
        self.out, self.every, self.rows, self.dead, self.dead_row = out, every, [], False, None

    def add(self, k, z):
        self.rows.append((k, z))
        return self.flush() if len(self.rows) >= self.every else False

    def flush(self):
        if not self.rows or self.dead:
            return self.dead
        ks = [k for k, _ in self.rows]
        block = torch.stack([z for _, z in self.rows], dim=1).cpu().numpy()
        self.rows = []
        self.out[:, ks[0]:ks[-1] + 1] = block
        bad = np.flatnonzero(~np.isfinite(block).any(axis=(0, 2)))
        if bad.size:
            self.dead_row = ks[0] + int(bad[0])
            self.out[:, self.dead_row + 1:] = np.nan
            self.dead = True
        return self.dead
