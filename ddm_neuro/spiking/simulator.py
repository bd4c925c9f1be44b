r"""Spiking simulation of LIF-fitted models in torch, and the latent noise that spikes add.

The rate network (:mod:`ddm_neuro.network`), in network time ``t`` (seconds)::

    tau dx = ( -x + W (phi(x) + eta) + b + B u ) dt,      W = E K,   y = D x,   z = S y + c

becomes a spiking network by replacing each neuron's output ``phi_j(x) + eta_j``
with its spike train ``s_j(t) = sum_k delta(t - t_j^k)``:

* **Neurons.** Neuron j is a leaky integrate-and-fire unit driven by the
  current ``x_j`` (normalised: threshold 1, reset 0)::

      tau_m dv_j/dt = x_j - v_j,   v_j >= 1: spike, v_j <- 0, silent for tau_ref,

  whose steady rate for constant ``x_j`` is exactly the fitted rate curve
  ``phi(x_j) = 1 / (tau_ref + tau_m log(1 + 1/(x_j - 1)))``. Over a step ``h``
  the input is held constant and ``v`` is integrated exactly
  (``v <- x + (v - x) exp(-h'/tau_m)``). The refractory period is kept in
  continuous time: one that ends inside a step integrates the rest of the
  step. A threshold crossing inside a step is placed at its exact time
  ``t* = tau_m log((x - v)/(x - 1))`` (the analytic solution for constant
  ``x``, not just a linear interpolation), and the membrane integrates the
  remainder of the step after reset and refractory time. So the realised
  rate at constant input is ``phi(x)`` at any ``h``, with no bias from the
  step; the fit uses this same analytic rate curve.
* **Synapses.** Exponential, ``tau_syn = tau`` (the model's): each spike of
  neuron j moves ``x`` by ``W[:, j] / tau`` (factored coupling: by
  ``E (K[:, j] / tau)``, O(N d) per step; dense: the N x N ``W``), weighted by
  ``exp(-(t_end - t*)/tau)`` so that a spike inside the step has decayed
  exactly as it would have by the step's end, and ``x`` relaxes to
  ``b + B u`` exactly (``x <- b + B u + (x - b - B u) exp(-h/tau)``). A step of
  the input moves ``x`` by ``B du`` at once (the feed-forward path, as in
  :func:`ddm_neuro.run.rate.simulate_network`). Spikes act only through
  ``W = E K``, so ``x_perp`` stays at rest and the latent obeys
  ``tau dy = (-y + K s(t)) dt``.

The latent noise that spikes add, and what ``noise="remainder"`` injects, are in
:mod:`ddm_neuro.spiking.noise`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DDMError
from ..run.plan import plan_run, spiking_dt
from ..run.step_loop import MAX_SPIKES_PER_STEP, spike_overflow_message
from .noise import check_fano, warn_spike_noise

NOISE_MODES = ("remainder", "none", "model")

#: Default integration step of a spiking run (SDE units): 0.1 ms of network time.
default_dt = spiking_dt


def check_spiking(model, dt, u0=None):
    """Refuse, with a clear :class:`DDMError`, models and steps that cannot be simulated as spiking networks.

    Parameters
    ----------
    model : LatentRNN
    dt : float
        Integration step in SDE units.
    u0 : array (k,), optional
        Input at the start (default zeros).

    Raises
    ------
    DDMError
        The neuron model is not ``lif``; ``tau_syn`` (the model's ``tau``) is shorter
        than 5 steps; or no neuron's input exceeds the threshold 1 on any of the
        model's start states (nothing could ever spike).
    """
    if model.neuron.name != "lif":
        raise DDMError(f"spiking mode needs LIF neurons, this model has {model.neuron.name!r} neurons "
                       "(fit with --neuron lif)")
    h = dt * model.time_scale
    if model.tau < 5 * h:
        raise DDMError(f"tau_syn = tau = {model.tau * 1e3:.3g} ms is shorter than 5 steps of {h * 1e3:.3g} ms "
                       f"network time; use dt <= {model.tau / (5 * model.time_scale):.3g} SDE units")
    if model.n_inputs and u0 is None:
        u0 = np.zeros(model.n_inputs)
    x = model.neuron_inputs(model.init_states, u0 if model.n_inputs else None)
    if not np.any(x > 1.0):
        raise DDMError(f"no neuron can spike: on all {len(x)} start states every neuron input is below the "
                       f"threshold 1 (largest {x.max():.3g}); the biases or gains are wrong for LIF neurons")


def simulate_spiking(model, duration, *, dt=None, record_dt=None, trials=1, seed=None, z0=None, u=None,
                     noise="remainder", coupling="factored", fano="regular", record_spikes=False, progress=False,
                     chunk=256):
    """Simulate the model as a spiking LIF network and return its latent trajectory.

    See the module docstring for the scheme (exact membrane integration,
    continuous-time refractoriness, exact spike times inside a step,
    exponential synapses with ``tau_syn = tau``).

    Parameters
    ----------
    model : LatentRNN
        With ``lif`` neurons.
    duration : float
        Time per trial in SDE units.
    dt : float, optional
        Integration step in SDE units (default 0.1 ms of network time, ``1e-4 / T``).
    record_dt : float, optional
        Recording interval in SDE units (default as :func:`ddm_neuro.run.rate.simulate_network`).
    trials : int
    seed : int, optional
    z0 : array (d,) or (trials, d), optional
        Start latent states; default drawn from ``model.init_states`` (the same
        draws as the rate simulator for the same seed). Off-subspace inputs start
        at rest; membrane potentials start uniform in [0, 1) (random phases).
    u : None, array_like or InputSignal
        Input in SDE time.
    noise : {"remainder", "none", "model"}
        ``"none"``: spikes only. ``"remainder"``: spikes plus private output noise
        ``max(sigma_j^2(x) - F_j phi_j(x), 0)`` (Hz; the model's intensity minus the
        spikes' own, see the module docstring) plus the shared top-up ``E L dW'``;
        warns (:class:`SpikeNoiseWarning`) when spikes alone exceed the model's
        diffusion. ``"model"``: spikes plus all of the model's noise (spike noise
        counted twice; for comparisons).
    coupling : {"factored", "dense"}
        ``E (K s)`` in O(N d) per step, or the dense ``W s``.
    fano : float, array (N,) or "regular"
        Fano factor of the spikes counted in ``"remainder"``. 1: Poisson (the
        most spike noise an irregular train would add). ``"regular"``: that of
        periodic firing over one SDE time unit (:func:`regular_fano` with
        ``lag = T``, re-evaluated every step from ``phi(x)``), which is what
        the network's spikes measure (:func:`measure_spike_noise`: within
        about 25 % from one recording step to 16 tau); far below 1, so far
        more noise is injected. The default: with Poisson's 1 the spikes'
        diffusion is overestimated and the remainder is starved (measured:
        a 2-D OU at N = 300 then has too little diffusion and fails verify).
    record_spikes : bool
        Store ``spikes_t`` (SDE units) and ``spikes_i`` (neuron + trial * N).
    progress : bool
    chunk : int
        Steps of random numbers drawn at once.

    Returns
    -------
    Trajectory
        ``meta["backend"] = "torch"``, ``meta["mode"] = "spiking"``; ``meta["mean_rate_hz"]``
        is the mean firing rate per neuron.

    Raises
    ------
    DDMError
        Bad options, or a model that cannot spike (:func:`check_spiking`).
    """
    if noise is True or noise is False:
        noise = "remainder" if noise else "none"
    plan = plan_run(model, duration, mode="spiking", trials=trials, seed=seed, u=u, z0=z0, dt=dt, record_dt=record_dt,
                    noise=noise, progress=progress,
                    options={"coupling": coupling, "fano": fano, "record_spikes": record_spikes, "chunk": chunk})
    return run_spiking(plan)


def run_spiking(plan):
    """Simulate a spiking-mode :class:`~ddm_neuro.run.plan.RunPlan` in torch.

    Options: ``coupling`` (default factored), ``fano`` (default "regular"),
    ``record_spikes`` (default False), ``chunk``, ``engine``, ``device``; see
    :func:`simulate_spiking`. The compiled step loop (:mod:`ddm_neuro.run.step_loop`)
    runs on the CPU when it can be built here; else, or with ``engine="torch"``
    or ``device="cuda"``, the torch loop.

    Returns
    -------
    Trajectory
    """
    from ..run.step_loop import engine_for

    model, noise = plan.model, plan.noise
    opt = plan.options
    coupling = opt.get("coupling") or "factored"
    fano = "regular" if opt.get("fano") is None else opt["fano"]
    record_spikes = bool(opt.get("record_spikes"))
    if coupling not in ("factored", "dense"):
        raise DDMError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if noise is True or noise is False:
        noise = "remainder" if noise else "none"
    if noise not in NOISE_MODES:
        raise DDMError(f"noise must be one of {', '.join(NOISE_MODES)} (got {noise!r})")
    F = check_fano(model, fano)
    check_spiking(model, plan.requested_dt or plan.dt, plan.u0)  # the step asked for: the grid may refine it
    engine, device = engine_for(plan)
    if noise == "remainder":
        warn_spike_noise(model, F, u=plan.u0)
    private = noise != "none" and bool(np.any(model.noise_const) or np.any(model.noise_act))
    if engine == "compiled":
        from ..run.step_loop import run_steps

        res = run_steps(plan, spiking=True, coupling=coupling, private_noise=private, shared_noise=noise != "none",
                        remainder=noise == "remainder", fano=None if isinstance(F, str) else F,
                        record_spikes=record_spikes, label="simulate spiking")
    else:
        res = _torch_loop(plan, coupling, noise, F, private, record_spikes, device)
    sim_s = res["steps"] * plan.dt * model.time_scale
    return plan.trajectory(
        res["z"], backend="torch", spikes_t=res.get("spikes_t"), spikes_i=res.get("spikes_i"), coupling=coupling,
        noise=noise, fano=F if isinstance(F, str) else float(F[0]) if np.all(F == F[0]) else F.tolist(),
        mean_rate_hz=res["n_spikes"] / (plan.trials * model.n_neurons * sim_s) if sim_s > 0 else 0.0,
        neuron=model.neuron.to_dict(), tau_syn=model.tau, time_scale=model.time_scale, engine=engine,
        device=device, threads=plan.threads)


def _torch_loop(plan, coupling, noise, F, private, record_spikes, device):
    """The spiking network's step loop in torch tensor operations, on ``device``.

    Each step runs a fixed number of spike rounds (a neuron can fire at most
    ``1 + ceil(h / tau_ref)`` times in a step, and one more round integrates
    what is left), so the loop waits on the device only to record spikes, and,
    with ``tau_ref = 0``, to see whether another round is needed.
    """
    from ..run.rate import Recorder

    model, trials, dt, progress = plan.model, plan.trials, plan.dt, plan.progress
    chunk = plan.options.get("chunk") or 256
    signal, u0 = plan.input, plan.u0
    n_rec, n_sub = plan.n_rec, plan.n_sub
    rng = np.random.default_rng(plan.seed)
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2 ** 62)))
    z0 = plan.start_states(rng)
    N = model.n_neurons
    v0 = rng.uniform(0.0, 1.0, (trials, N))

    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)  # noqa: E731
    x = t(model.neuron_inputs(z0, u0))
    v, ref = t(v0), torch.zeros(trials, N, dtype=torch.float64, device=device)
    E, K, D, b, B = t(model.encoders), t(model.decoders), t(model.readout), t(model.bias), t(model.input_weights)
    W = t(model.weights()) if coupling == "dense" else None
    Wp = t(model.w_perp) if model.w_perp is not None and coupling == "factored" else None
    na, nc = t(model.noise_act), t(model.noise_const)
    Ft = None if isinstance(F, str) else t(F)
    EL = t(model.encoders @ model.noise_latent) if noise != "none" and np.any(model.noise_latent) else None
    scale, center = t(model.scale), t(model.center)
    prm = model.neuron.params
    tau_m, tau_ref, tau = prm["tau_m"], prm["tau_ref"], model.tau
    h = dt * model.time_scale
    e_syn = math.exp(-h / tau)
    rounds = 2 + math.ceil(h / tau_ref) if tau_ref > 0 else None  # None: until no neuron has time left
    phi, act = model.neuron.phi, model.neuron.activity

    out = np.full((trials, n_rec, model.dim), np.nan)
    out[:, 0] = (x @ D.T * scale + center).cpu().numpy()
    recorder = Recorder(out)
    u_now = None if signal is None else signal.values[0]
    drive = b.expand(trials, N) if signal is None else (b + t(u_now) @ B.T).expand(trials, N)
    sp_t, sp_i = [], []
    n_spikes = torch.zeros((), dtype=torch.int64, device=device)
    bar = tqdm(total=n_rec - 1, desc="simulate spiking", disable=not progress, unit="sample")
    buf, shared_buf, used = None, None, chunk
    step = 0
    zero = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for k in range(1, n_rec):
            for _ in range(n_sub):
                if signal is not None and len(signal.times) > 1:
                    u_new = signal.at([step * dt])[0]
                    if not np.array_equal(u_new, u_now):  # feed-forward: x jumps with u
                        x = x + (t(u_new) - t(u_now)) @ B.T
                        u_now = u_new
                        drive = (b + t(u_now) @ B.T).expand(trials, N)
                # refractory time first, then the membrane for the rest of the step
                rem = torch.clamp(h - ref, min=0.0)
                ref = torch.clamp(ref - h, min=0.0)
                q = torch.zeros(trials, N, dtype=torch.float64, device=device)
                active = None  # first round: every neuron
                r_i = 0
                while rounds is None or r_i < rounds:
                    v_end = x + (v - x) * torch.exp(-rem / tau_m)
                    spk = (v_end >= 1.0) & (rem > 0)
                    if active is not None:
                        spk = spk & active
                        v = torch.where(active & ~spk, v_end, v)
                    else:
                        v = torch.where(spk, v, v_end)
                    xs = torch.where(spk, x, torch.full_like(x, 2.0))
                    vs = torch.where(spk, v, zero)
                    tc = torch.minimum(tau_m * torch.log((xs - vs) / (xs - 1.0)).clamp(min=0.0), rem)
                    rem = torch.where(spk, rem - tc, zero)           # time left after the spike
                    q = q + torch.where(spk, torch.exp(-rem / tau), zero)  # decayed to the step's end
                    n_spikes += spk.sum()
                    if record_spikes:
                        tr_i, n_i = torch.nonzero(spk, as_tuple=True)
                        sp_t.append((step * h + h - rem[tr_i, n_i]).cpu().numpy() / model.time_scale)
                        sp_i.append((n_i + tr_i * N).cpu().numpy())
                    v = torch.where(spk, zero, v)
                    r_used = torch.clamp(rem, max=tau_ref)
                    ref = torch.where(spk, tau_ref - r_used, ref)
                    rem = rem - r_used                                 # > 0 only for spikers
                    active = spk & (rem > 0)
                    r_i += 1
                    if rounds is None and not bool(active.any()):
                        break
                    if rounds is None and r_i > MAX_SPIKES_PER_STEP:
                        raise DDMError(spike_overflow_message(h))
                q = q / tau
                if noise != "none":
                    if used == chunk:
                        if private:
                            buf = torch.randn((chunk, trials, N), generator=gen, dtype=torch.float64, device=device)
                        if EL is not None:
                            shared_buf = math.sqrt(h) * torch.randn(chunk, trials, model.dim, generator=gen,
                                                                    dtype=torch.float64, device=device)
                        used = 0
                    if private:
                        s2 = nc + na * act(x, torch)
                        if noise == "remainder":
                            r = phi(x, torch)
                            if Ft is None:  # regular firing over one SDE time unit: F r = f (1 - f) / T
                                n_T = r * model.time_scale
                                frac = n_T - torch.floor(n_T)
                                s2 = torch.clamp(s2 - frac * (1.0 - frac) / model.time_scale, min=0.0)
                            else:
                                s2 = torch.clamp(s2 - Ft * r, min=0.0)
                        q = q + torch.sqrt(s2 * h) / tau * buf[used]
                rec = (q @ K.T) @ E.T if W is None else q @ W.T
                if Wp is not None:
                    rec = rec + q @ Wp.T
                x = drive + (x - drive) * e_syn + rec
                if noise != "none":
                    if EL is not None:
                        x = x + shared_buf[used] @ EL.T
                    used += 1
                step += 1
            if recorder.add(k, x @ D.T * scale + center):
                break
            bar.update()
        recorder.flush()
    bar.close()
    steps = step if recorder.dead_row is None else recorder.dead_row * n_sub
    res = {"z": out, "steps": steps, "n_spikes": int(n_spikes)}
    if record_spikes:
        spikes_t = np.concatenate(sp_t) if sp_t else np.zeros(0)
        spikes_i = np.concatenate(sp_i).astype(np.int64) if sp_i else np.zeros(0, dtype=np.int64)
        keep = spikes_t <= steps * h / model.time_scale
        order = np.lexsort((spikes_i[keep], spikes_t[keep]))
        res["spikes_t"], res["spikes_i"] = spikes_t[keep][order], spikes_i[keep][order]
    return res
