"""Spike noise of stochastic Lorenz: independent LIF conversion vs a spike-coordinated network (SCN).

Issue 21, item 2 ("fewer neurons for the same spike noise"). For N neurons, measures
the latent noise that spikes add at the verifier's lag, relative to the target's
diffusion ``g g^T x lag`` along the worst latent direction (a generalised
eigenvalue, as :func:`ddm_neuro.spiking.noise.spike_noise_excess` computes it):

(a) the project's LIF conversion: ``fit(..., neuron={"name": "lif", "tau_ref": 5e-5},
    spike_budget=0.02, steps=0)``; the ratio predicted by ``spike_noise_excess``
    (regular count over one SDE time unit, as the library's warning counts it), the same
    prediction at the verifier's lag, and the value measured with
    :func:`ddm_neuro.spiking.measure.measure_spike_noise` (noise-free spiking run,
    compiled step loop) at the verifier's lag;
(b) an SCN autoencoder of the same N, tau = 20 ms and seconds per SDE time unit T,
    tracking the stochastic Lorenz target fed in as its signal: read-out
    ``x_hat = D r`` (r: spikes filtered with tau), membrane ``V = D^T (x - x_hat)``,
    a neuron fires when ``V_j > (1 + cost) |D_j|^2 / 2`` (cost 0.5 by default: a
    uniform spike cost against noise-driven ping-pong), at most one spike per step
    (the fast rank-d inhibition is exact and instantaneous, applied in factored
    form). Decoders of norm ``delta`` on random directions (isotropic after
    whitening by the target's mean diffusion); delta is tuned so that the mean rate
    equals the LIF network's rate-curve rate on the same states (rate-matched).
    The signal is the target sampled at lag/5 with a Brownian bridge in between.
    Measured: the covariance of the read-out error's increments over the verifier's
    lag (the stochastic rule ``C_DELTA / rate``, 0.00365 SDE units), against
    ``g g^T x lag``;
(c) the closed loop: the SCN's command is the target drift at its own read-out,
    ``f(x_hat)`` (an ORACLE for the slow nonlinear recurrent part, which a real network
    would have to learn), plus the target's noise ``g dW`` as an input current; runs
    judged by :func:`ddm_neuro.verify.verify`;
(d) ``--stage closed-fitted``: the closed loop of (c) with the oracle replaced by the drift
    of a network fitted by the project, ``c(x_hat) = model.latent_drift(x_hat)`` (SDE
    coordinates, per SDE time unit, as ``sde.drift``), for a tanh rate network or LIF rate
    curves fitted with ``fit(sde, n_neurons=M, steps=S)`` (``--commands tanh:M:S lif:M:S
    oracle``). This is an SCN whose slow recurrent input passes through a nonlinear basis of
    M rate units (the fitted network's neurons, read from x_hat and read out by K): a
    dendritic-nonlinearity network, not a pure spiking one. The command is re-evaluated every
    ``--cmd-hold`` seconds (20 us by default, 2-7 SCN steps) and held in between; each run is
    judged by ``verify`` at several seeds (``--verify-seeds``), and the command's error is
    reported on the run's own states, as an RMS and averaged over verify's cells.

Everything in numpy float64 with fixed seeds; the SCN's step loop is a python loop over
time steps, vectorised over neurons and trials. Run it niced on one thread::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/spike_coordination.py --stage lif -n 250 500 1000 2000 4000 --cache DIR
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/spike_coordination.py --stage scn -n 250 500 1000 2000 \
        --scn-extra 40 50 60 75 100 --cache DIR
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/spike_coordination.py --stage closed -n 250 --cl-n 350 --cache DIR

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/spike_coordination.py --stage closed-fitted -n 250 --cache DIR \
        --scn-pilots 0 --cl-n 500 --cl-delta 0.0235 --commands tanh:500:0

(``--stage all`` runs (a) and (b), and (c) for the N given with ``--cl-n``.)

Results: ``benchmarks/RESULTS_spike_coordination.md``.
"""
from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np

TAU = 0.02          # synaptic / read-out time constant, seconds (the fit's default)
TAU_REF = 5e-5      # LIF refractory period of (a)
P_SPIKE = 0.2       # SCN step: expected population spikes per step per trial (one at most)
DT_MAX = 2e-5       # SCN step at most 0.02 ms


# ----------------------------------------------------------------------------- shared
def worst_ratio(A, C):
    """Largest generalised eigenvalue ``max_u u^T A u / u^T C u`` and its unit direction."""
    vals, vecs = np.linalg.eigh(C)
    Wh = vecs / np.sqrt(vals)
    lam, v = np.linalg.eigh(Wh.T @ A @ Wh)
    w = Wh @ v[:, -1]
    return float(lam[-1]), w / np.linalg.norm(w)


def direction_text(u, names=("x", "y", "z")):
    u = u * np.sign(u[np.argmax(np.abs(u))])
    return "(" + " ".join(f"{n}{v:+.2f}" for n, v in zip(names, u)) + ")"


def verifier_lag(sde, seed=0):
    """The lag ``verify`` uses for a stochastic run of ``sde`` on the default grid (SDE units)."""
    from ddm_neuro.run.target import simulate_sde
    from ddm_neuro.verify import checks

    tr = simulate_sde(sde, 20.0, trials=2, seed=seed, burn_in=2.0)
    return checks.choose_lag(sde, tr)[0]


# ----------------------------------------------------------------------------- (a) LIF
def lif_model(sde, N, cache, seed=0):
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.network import LatentRNN

    path = os.path.join(cache, f"lif_N{N}_seed{seed}.ddm") if cache else None
    if path and os.path.exists(path):
        model = LatentRNN.load(path)
        return model, float(model.meta["fit"].get("wall_time_s", float("nan")))
    t0 = time.perf_counter()
    model = fit(sde, n_neurons=N, neuron={"name": "lif", "tau_ref": TAU_REF}, spike_budget=0.02, steps=0,
                seed=seed, progress=False)
    wall = time.perf_counter() - t0
    if path:
        model.save(path)
    return model, wall


def lif_row(sde, N, lag, z_att, args):
    """Predicted and (optionally) measured spike-noise ratios of the fitted LIF network."""
    from ddm_neuro.spiking.measure import measure_spike_noise
    from ddm_neuro.spiking.noise import regular_fano, spike_noise_cov, spike_noise_excess

    model, fit_s = lif_model(sde, N, args.cache)
    T = model.time_scale
    ex = spike_noise_excess(model, fano="regular")               # the library's figure (one SDE time unit)
    G = sde.diffusion_cov(z_att).mean(0)
    c_lag = spike_noise_cov(model, z_att, fano=regular_fano(model, z_att, lag * T)).mean(0)
    pred_lag = worst_ratio(c_lag, G)[0]
    rates = model.neuron.phi(model.neuron_inputs(z_att))
    row = {"N": N, "T": T, "fit_s": fit_s, "drift_error": model.meta["fit"]["drift_error"],
           "ratio_excess": ex["ratio"], "ratio_pred_lag": pred_lag, "rate_phi": float(rates.mean()),
           "max_rate_phi": float(rates.max()), "measured": None}
    if N in args.lif_measure:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = measure_spike_noise(model, args.lif_duration, lags=(None,), record_dt=lag,
                                    trials=args.lif_trials, seed=1)
        ratio, u = worst_ratio(m.measured[0], sde.diffusion_cov(m.traj.z.reshape(-1, sde.dim)).mean(0))
        row.update(measured=ratio, direction=direction_text(u), rate=m.traj.meta["mean_rate_hz"],
                   measured_lag=float(m.lags[0] / T), measure_s=time.perf_counter() - t0)
    return row, model


# ----------------------------------------------------------------------------- (b) SCN autoencoder
def scn_decoders(N, delta, G, seed):
    """Decoders (d, N): random directions, uniform in coordinates whitened by the mean diffusion G, norm ~delta."""
    rng = np.random.default_rng(seed)
    d = G.shape[0]
    u = rng.normal(size=(d, N))
    u /= np.linalg.norm(u, axis=0)
    L = np.linalg.cholesky(G / (np.trace(G) / d))
    return delta * (L @ u)


def scn_track(x, h, D, T, dt_max, p_spike=P_SPIKE, rate_guess=None, cost=0.0, chol_g=None, seed=0):
    """SCN autoencoder tracking ``x`` (B, n, d; centred; samples every h SDE units).

    Between samples the signal is a Brownian bridge with covariance ``chol_g chol_g^T``
    per SDE time unit (the target's noise: exact in law for additive noise, as
    Lorenz's), or linear when ``chol_g`` is None. Thresholds are
    ``(1 + cost) |D_j|^2 / 2`` (``cost`` > 0: a uniform spike cost, which stops
    noise-driven ping-pong between opposite neurons). Returns the read-out error
    ``e = x - x_hat`` at the samples (B, n, d), the mean rate (Hz per neuron), the
    step used (s) and the wall time.
    """
    B, n, d = x.shape
    N = D.shape[1]
    rng = np.random.default_rng(seed)
    dt = dt_max if rate_guess is None else min(dt_max, p_spike / (N * rate_guess))
    sub = max(1, math.ceil(h * T / dt - 1e-9))
    dt = h * T / sub
    hs = h / sub                                                   # SDE units per step
    a = math.exp(-dt / TAU)
    thr = 0.5 * (1.0 + cost) * np.sum(D * D, axis=0)
    xh = np.zeros((B, d))
    err = np.empty((B, n, d))
    rows = np.arange(B)
    # Brownian bridge from x_i to x_{i+1}: step s -> s+1 of sub moves (x1 - xs) / (sub - s) plus noise of
    # variance hs (sub - s - 1) / (sub - s) along chol_g
    bridge_sd = np.sqrt(hs * (sub - np.arange(sub) - 1.0) / (sub - np.arange(sub)))
    counts = np.zeros(N, dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(n - 1):
        err[:, i] = x[:, i] - xh
        xs, x1 = x[:, i].copy(), x[:, i + 1]
        for s in range(sub):
            xs += (x1 - xs) / (sub - s)
            if chol_g is not None and s < sub - 1:
                xs += bridge_sd[s] * rng.standard_normal((B, d)) @ chol_g.T
            xh *= a
            V = (xs - xh) @ D - thr                                # fast rank-d inhibition in factored form
            j = V.argmax(1)
            fire = V[rows, j] > 0.0                                # at most one spike per step and trial
            if fire.any():
                xh[fire] += D[:, j[fire]].T
                counts[j[fire]] += 1
    err[:, -1] = x[:, -1] - xh
    per_neuron = counts / (B * (n - 1) * h * T)
    return err, per_neuron, dt, time.perf_counter() - t0


def error_ratio(err, h, k, G, skip):
    """Worst-direction covariance of the error's increments over k samples, / (G k h)."""
    e = err[:, skip:]
    de = (e[:, k:] - e[:, :-k]).reshape(-1, e.shape[2])
    C = np.cov(de.T, bias=True) / (k * h)
    return worst_ratio(C, G)


def scn_row(sde, N, rate_target, T, lag, args, x, h, G, center):
    """Rate-matched SCN autoencoder of N neurons: delta tuned in short pilots, then the measurement."""
    k = max(1, int(round(lag / h)))
    skip = int(round(args.scn_burn / h))
    chol_g = None if args.linear_signal else np.linalg.cholesky(G)
    xc = x - center
    delta = args.scn_delta0 / N * 250.0 * 72.0 / rate_target      # a first guess (rate ~ 1/(N delta))
    pilot = xc[:, : int(round((args.scn_pilot + args.scn_burn) / h)) + 1]
    t_pilot, tried, slope = 0.0, [], -1.0
    for _ in range(args.scn_pilots):               # secant steps on log rate vs log delta
        D = scn_decoders(N, delta, G, seed=N)
        _, r, _, w = scn_track(pilot, h, D, T, args.dt_max, args.p_spike, rate_guess=rate_target,
                                  cost=args.cost, chol_g=chol_g, seed=1)
        t_pilot += w
        tried.append((math.log(delta), math.log(r.mean())))
        if len(tried) >= 2 and abs(tried[-1][0] - tried[-2][0]) > 1e-9:
            slope = float(np.clip((tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0]), -3.0, -0.5))
        delta = math.exp(tried[-1][0] + np.clip((math.log(rate_target) - tried[-1][1]) / slope, -0.7, 0.7))
    wall, mains, slope = 0.0, [], -1.0
    for _ in range(args.scn_mains):                # the full run; redone (secant step) while its rate is off
        D = scn_decoders(N, delta, G, seed=N)
        err, rates, dt, w = scn_track(xc, h, D, T, args.dt_max, args.p_spike, rate_guess=rate_target,
                                      cost=args.cost, chol_g=chol_g, seed=2)
        rate = rates.mean()
        wall += w
        used = delta
        if abs(rate / rate_target - 1.0) <= args.rate_tolerance:
            break
        mains.append((math.log(delta), math.log(rate)))
        if len(mains) >= 2 and abs(mains[-1][0] - mains[-2][0]) > 1e-9:
            slope = float(np.clip((mains[-1][1] - mains[-2][1]) / (mains[-1][0] - mains[-2][0]), -3.0, -0.5))
        delta = math.exp(math.log(delta) + np.clip((math.log(rate_target) - math.log(rate)) / slope, -0.7, 0.7))
    delta = used
    ratio, u = error_ratio(err, h, k, G, skip)
    e = err[:, skip:].reshape(-1, err.shape[2])
    return {"N": N, "delta": delta, "cost": args.cost, "rate": rate, "max_rate": rates.max(),
            "silent": float(np.mean(rates == 0)), "rate_target": rate_target, "dt_ms": dt * 1e3,
            "ratio": ratio, "direction": direction_text(u), "rms_e": np.sqrt((e ** 2).mean(0)),
            "std_x": x[:, skip:].reshape(-1, x.shape[2]).std(0), "wall": wall, "pilot_wall": t_pilot,
            "sim_units": x.shape[0] * (x.shape[1] - 1) * h}


# ----------------------------------------------------------------------------- (c) closed loop
def scn_closed_loop(sde, N, delta, T, *, trials, duration, burn_in, record_dt, rate_guess, seed, leak_tau,
                    center, G, p_spike=P_SPIKE, dt_max=DT_MAX, cost=0.0):
    """SCN whose command is the target drift at its own read-out (oracle) plus the target's noise.

    The d-dim error ``e = x_v - x_hat`` (the neurons' membranes are ``D^T e``) obeys, per
    step dt (seconds; h = dt / T SDE units)::

        e += f(x_hat) h + g(x_hat) sqrt(h) xi + (1 - a) x_hat - (1 - exp(-dt/leak_tau)) e
        x_hat *= a                                     (a = exp(-dt / tau): synaptic decay)
        neuron j = argmax D^T e - |D_j|^2/2 fires if positive: e -= D_j, x_hat += D_j

    ``leak_tau`` None: membranes without leak (the error is a perfect integrator).
    """
    return scn_closed_loop_cmd(sde, sde.drift, N, delta, T, trials=trials, duration=duration, burn_in=burn_in,
                               record_dt=record_dt, rate_guess=rate_guess, seed=seed, leak_tau=leak_tau,
                               center=center, G=G, p_spike=p_spike, dt_max=dt_max, cost=cost, cmd_hold=0.0)


def closed_run(sde, command, N, delta, T, args, center, G, rate_target, leak_tau, cmd_hold, label):
    """delta tuned to ``rate_target`` in short pilots (``args.scn_pilots``), then the run as a Trajectory.

    Returns ``(z, info, delta, pilot_wall, traj, finite)``.
    """
    from ddm_neuro.trajectory import Trajectory

    common = dict(record_dt=args.record_dt, rate_guess=rate_target, leak_tau=leak_tau, center=center, G=G,
                  p_spike=args.p_spike, dt_max=args.dt_max, cost=args.cost, cmd_hold=cmd_hold)
    tried, t_pilot, slope = [], 0.0, -1.0
    for _ in range(args.scn_pilots):               # tune delta to the rate in short closed-loop pilots
        _, info = scn_closed_loop_cmd(sde, command, N, delta, T, trials=args.cl_trials, duration=args.cl_pilot,
                                      burn_in=0.2, seed=args.seed + 7, **common)
        t_pilot += info["wall"]
        tried.append((math.log(delta), math.log(info["rate"])))
        if len(tried) >= 2 and abs(tried[-1][0] - tried[-2][0]) > 1e-9:
            slope = float(np.clip((tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0]), -3.0, -0.5))
        delta = math.exp(tried[-1][0] + np.clip((math.log(rate_target) - tried[-1][1]) / slope, -0.7, 0.7))
    z, info = scn_closed_loop_cmd(sde, command, N, delta, T, trials=args.cl_trials, duration=args.cl_duration,
                                  burn_in=args.cl_burn, seed=args.seed, **common)
    finite = np.isfinite(z).all(axis=(1, 2))
    neuron = {"name": "scn", "delta": float(delta), "leak_tau": leak_tau}
    if label is not None:
        neuron["command"] = label
    meta = {"backend": "scn-numpy", "mode": "spiking", "model_id": None, "system": sde.name,
            "variables": list(sde.variables), "seed": args.seed, "duration": float(args.cl_duration),
            "trials": int(args.cl_trials), "integration_dt": info["h"], "noise": "input",
            "input": None, "n_neurons": int(N), "diverged_trials": [int(i) for i in np.flatnonzero(~finite)],
            "tau_syn": TAU, "time_scale": T, "mean_rate_hz": info["rate"], "neuron": neuron}
    traj = Trajectory(t=np.arange(z.shape[1]) * args.record_dt, z=z, dt=args.record_dt, meta=meta)
    return z, info, delta, t_pilot, traj, finite


def closed_loop_row(sde, N, delta, T, args, center, G, rate_target, leak_tau):
    from ddm_neuro.verify import verify

    z, info, delta, t_pilot, traj, _ = closed_run(sde, sde.drift, N, delta, T, args, center, G, rate_target,
                                                  leak_tau, 0.0, None)
    t0 = time.perf_counter()
    rep = verify(sde, traj, seed=args.verify_seed)
    return {"N": N, "delta": delta, "leak_tau": leak_tau, "rate": info["rate"], "dt_ms": info["dt"] * 1e3,
            "sim_wall": info["wall"], "pilot_wall": t_pilot, "verify_wall": time.perf_counter() - t0,
            "passed": bool(rep.passed), "report": rep, "traj": traj}


# ----------------------------------------------------------------------------- (d) closed loop, fitted drift
def basis_model(sde, spec, cache, seed=0):
    """A network fitted by the project whose drift becomes the SCN's command: spec ``kind:M:steps``.

    ``kind`` is ``tanh`` (the project's rate network) or ``lif`` (LIF rate curves,
    tau_ref 0.05 ms, no spike budget: the network is only used as a rate basis).
    Returns the model and the fit's wall time (nan when loaded from the cache).
    """
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.network import LatentRNN

    kind, M, steps = spec.split(":")
    M, steps = int(M), int(steps)
    path = os.path.join(cache, f"{kind}_M{M}_steps{steps}_seed{seed}.ddm") if cache else None
    if path and os.path.exists(path):
        return LatentRNN.load(path), float("nan")
    neuron = "tanh" if kind == "tanh" else {"name": "lif", "tau_ref": TAU_REF}
    t0 = time.perf_counter()
    model = fit(sde, n_neurons=M, neuron=neuron, steps=steps, seed=seed, progress=False)
    wall = time.perf_counter() - t0
    if path:
        model.save(path)
    return model, wall


def fitted_command(model):
    """``c(z) = model.latent_drift(z)`` (SDE coordinates, per SDE time unit) in a few numpy operations.

    With ``W_perp`` absent, ``D b_perp = 0`` and ``D E = I``, the latent drift is
    ``(T / tau) S (K phi(E y + P b) - y + D b)`` with ``y = (z - c) / S``: the rate
    units' inputs are a linear map of the read-out, their rates are ``phi`` of it,
    and the command is a linear read-out of the rates. Checked against
    ``model.latent_drift`` by the caller.
    """
    if model.w_perp is not None or model.n_inputs:
        raise ValueError("fitted_command: models without W_perp and without inputs only")
    c = model.time_scale / model.tau
    A = model.encoders / model.scale[None, :]                    # x = z A^T + x0
    x0 = model.rest_inputs() - (model.center / model.scale) @ model.encoders.T
    Kt = (c * model.scale[:, None] * model.decoders).T             # (M, d)
    const = c * (model.scale * (model.readout @ model.bias) + model.center)
    phi = model.neuron.phi

    def command(z):
        return phi(z @ A.T + x0) @ Kt - c * z + const

    return command


def scn_closed_loop_cmd(sde, command, N, delta, T, *, trials, duration, burn_in, record_dt, rate_guess, seed,
                        leak_tau, center, G, p_spike=P_SPIKE, dt_max=DT_MAX, cost=0.0, cmd_hold=0.0):
    """The SCN closed loop with any command ``c(x_hat)`` (:func:`scn_closed_loop`: ``sde.drift``), refreshed every
    ``cmd_hold`` seconds (zero-order hold; 0: every step) and held in between.

    The state, spike rule, seeds and draw order of the oracle runs measured before this function took their
    place (it reproduced them bit for bit on a short run). The target's noise
    ``g(x_hat)`` is evaluated once when ``sde.additive`` (Lorenz) and with the command
    otherwise. Returns the recorded read-out (trials, n, d) and run facts.
    """
    from ddm_neuro.run.target import simulate_sde

    rng = np.random.default_rng(seed)
    d = sde.dim
    start = simulate_sde(sde, 1.0, trials=trials, seed=seed + 1000, burn_in=5.0).z[:, -1]
    D = scn_decoders(N, delta, G, seed=N)
    thr = 0.5 * (1.0 + cost) * np.sum(D * D, axis=0)
    dt = min(dt_max, p_spike / (N * rate_guess))
    n_burn = int(round(burn_in / record_dt))
    n_rec = int(round(duration / record_dt)) + 1
    sub = max(1, math.ceil(record_dt * T / dt - 1e-9))
    dt = record_dt * T / sub
    h = dt / T
    k_hold = max(1, int(round(cmd_hold / dt)))
    a = math.exp(-dt / TAU)
    lk = 0.0 if leak_tau is None else 1.0 - math.exp(-dt / leak_tau)
    xh = np.zeros((trials, d))
    e = start - center
    z = np.empty((trials, n_rec, d))
    rows = np.arange(trials)
    spikes, n_cmd, cnt = np.zeros(trials, dtype=np.int64), 0, 0
    sq = math.sqrt(h)
    additive = bool(getattr(sde, "additive", False))
    g = sde.diffusion(center[None, :] + xh) if additive else None
    dg = sde.diffusion(center[None, :]).shape[-1]
    cmd_h = None
    t_cmd = 0.0
    t0 = time.perf_counter()
    for i in range(n_burn + n_rec):
        if i >= n_burn:
            z[:, i - n_burn] = xh + center
        if i == n_rec + n_burn - 1:
            break
        xi = rng.standard_normal((sub, trials, dg))                # the same stream as one draw per step
        if additive:
            nz = np.einsum("bij,sbj->sbi", g, xi) * sq
        for s in range(sub):
            if cnt % k_hold == 0:
                tc = time.perf_counter()
                zz = xh + center
                cmd_h = command(zz) * h
                if not additive:
                    g = sde.diffusion(zz)
                n_cmd += 1
                t_cmd += time.perf_counter() - tc
            cnt += 1
            noise = nz[s] if additive else np.einsum("bij,bj->bi", g, xi[s]) * sq
            e += cmd_h + noise + (1.0 - a) * xh - lk * e
            xh *= a
            V = e @ D - thr
            j = V.argmax(1)
            fire = V[rows, j] > 0.0
            if fire.any():
                D_f = D[:, j[fire]].T
                e[fire] -= D_f
                xh[fire] += D_f
                if i >= n_burn:
                    spikes += fire
    wall = time.perf_counter() - t0
    trial_rates = spikes / (N * (n_rec - 1) * record_dt * T)
    rate = float(trial_rates.mean())
    return z, {"dt": dt, "h": h, "rate": rate, "trial_rates": trial_rates, "wall": wall, "sub": sub, "k_hold": k_hold,
               "hold_s": k_hold * dt, "n_cmd": n_cmd, "cmd_wall": t_cmd}


def fitted_loop_row(sde, N, delta, T, args, center, G, rate_target, command, label, verify_seeds):
    """One closed-loop run of (d): delta tuned in pilots (or given), the run, ``verify`` at each seed."""
    from ddm_neuro.verify import verify

    lt = None if args.cl_leak[0] == 0 else args.cl_leak[0]
    z, info, delta, t_pilot, traj, finite = closed_run(sde, command, N, delta, T, args, center, G, rate_target, lt,
                                                       args.cmd_hold, label)
    # the command's error on the states this run visited (relative RMS, as the fit's drift_error)
    zs = z[finite].reshape(-1, sde.dim)[::7]
    f = sde.drift(zs)
    run_err = math.sqrt(np.sum((command(zs) - f) ** 2) / np.sum(f ** 2))
    cell_err = cell_drift_error(sde, zs, command(zs) - f, f, G)
    reps = []
    for vs in verify_seeds:
        t0 = time.perf_counter()
        reps.append((vs, verify(sde, traj, seed=vs), time.perf_counter() - t0))
    if args.save_traj:
        os.makedirs(args.save_traj, exist_ok=True)
        np.savez_compressed(os.path.join(args.save_traj, f"N{N}_{label.replace(':', '-')}_seed{args.seed}_"
                                         f"{args.cl_trials}x{args.cl_duration:g}.npz"), z=z, dt=args.record_dt,
                            trial_rates=info["trial_rates"], delta=delta)
    return {"N": N, "delta": delta, "rate": info["rate"], "trial_rates": info["trial_rates"],
            "dt_ms": info["dt"] * 1e3, "hold_us": info["hold_s"] * 1e6,
            "k_hold": info["k_hold"], "sim_wall": info["wall"], "cmd_wall": info["cmd_wall"], "pilot_wall": t_pilot,
            "run_drift_error": run_err, "cell_drift_error": cell_err, "reports": reps, "traj": traj}


def cell_drift_error(sde, z, df, f, G, seed=0):
    """The part of a command error ``df`` that ``verify``'s drift metric can see: the error averaged
    over verify's k-means cells (its cell count for this dimension, built on ``z``), relative to the
    cell-averaged drift, both weighted by ``G^-1``: ``sqrt(sum_b n_b |df_b|^2 / sum_b n_b |f_b|^2)``.
    Error that changes sign within a cell averages out there, as it does in the metric.
    """
    from ddm_neuro.verify import increments

    centres, mean, scale = increments.make_cells(z, sde.dim, np.random.default_rng(seed))
    lab = increments.assign((z - mean) / scale, centres)
    Gi = np.linalg.inv(G)
    num = den = 0.0
    for b in range(len(centres)):
        sel = lab == b
        if sel.sum() < increments.MIN_VISITS:
            continue
        dfb, fb = df[sel].mean(0), f[sel].mean(0)
        num += sel.sum() * dfb @ Gi @ dfb
        den += sel.sum() * fb @ Gi @ fb
    return math.sqrt(num / den)


def short_metrics(rep):
    """``drift v (thr) | diffusion v (thr; rel) | stationary v (thr)`` of a verify report."""
    out = []
    for name in ("drift", "diffusion", "stationary"):
        m = rep.metrics.get(name)
        if isinstance(m, dict) and "value" in m:
            rel = f"; rel {m['relative_error']:.3f}" if "relative_error" in m else ""
            out.append(f"{name} {m['value']:.4g} ({m.get('threshold', float('nan')):.4g}{rel})"
                       f"{'' if m.get('passed') else ' FAIL'}")
    return " | ".join(out)


def metric_lines(rep):
    out = []
    for name, m in rep.metrics.items():
        if isinstance(m, dict) and "value" in m:
            thr = m.get("threshold")
            rel = f"; relative error {m['relative_error']:.4f}" if "relative_error" in m else ""
            out.append(f"    {name:<22} {m['value']:.4g} (baseline {m.get('baseline', float('nan')):.4g}, "
                       f"threshold {thr if thr is None else f'{thr:.4g}'}{rel}) {'pass' if m.get('passed') else 'FAIL'}")
        else:
            out.append(f"    {name:<22} {m}")
    return out


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["lif", "scn", "closed", "closed-fitted", "all"], default="all")
    ap.add_argument("-n", "--neurons", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000],
                    help="N of (a) and (b)")
    ap.add_argument("--scn-extra", type=int, nargs="*", default=[25, 50, 100],
                    help="further (small) N for the SCN only, rate-matched to the smallest LIF N")
    ap.add_argument("--lif-measure", type=int, nargs="*", default=[250, 1000, 2000, 4000],
                    help="N at which (a) is also measured with measure_spike_noise")
    ap.add_argument("--lif-duration", type=float, default=10.0, help="SDE units per trial of the LIF measurement")
    ap.add_argument("--lif-trials", type=int, default=2)
    ap.add_argument("--scn-trials", type=int, default=2)
    ap.add_argument("--scn-duration", type=float, default=4.0, help="SDE units per trial tracked (after burn-in)")
    ap.add_argument("--scn-burn", type=float, default=0.2, help="SDE units discarded while x_hat builds up")
    ap.add_argument("--scn-pilot", type=float, default=1.0, help="SDE units per pilot run that tunes delta")
    ap.add_argument("--p-spike", type=float, default=P_SPIKE,
                    help="SCN step = min(dt_max, p_spike / (N x rate)): expected population spikes per step")
    ap.add_argument("--dt-max", type=float, default=DT_MAX, help="largest SCN step, seconds")
    ap.add_argument("--cost", type=float, default=0.5,
                    help="SCN thresholds (1 + cost) |D_j|^2 / 2 (a uniform spike cost), in (b) and (c)")
    ap.add_argument("--linear-signal", action="store_true",
                    help="(b): linear interpolation between target samples instead of a Brownian bridge")
    ap.add_argument("--scn-mains", type=int, default=3,
                    help="(b): full runs at most, each re-tuning delta while the rate is off by > --rate-tolerance")
    ap.add_argument("--rate-tolerance", type=float, default=0.05)
    ap.add_argument("--scn-pilots", type=int, default=3, help="pilot runs that tune delta to the rate")
    ap.add_argument("--scn-delta0", type=float, default=0.04, help="first guess of delta at N=250, 72 Hz")
    ap.add_argument("--scn-max-pop-rate", type=float, default=1.5e5,
                    help="skip rate-matched SCN rows whose population rate (N x rate, Hz) exceeds this (cost)")
    ap.add_argument("--cl-n", type=int, nargs="*", default=[],
                    help="N of the closed-loop SCN runs (c), rate-matched like (b)")
    ap.add_argument("--cl-rate", type=float, default=None,
                    help="mean rate (Hz) the closed-loop delta is tuned for (default: the LIF network's)")
    ap.add_argument("--cl-pilot", type=float, default=2.0, help="SDE units per closed-loop pilot run")
    ap.add_argument("--cl-trials", type=int, default=8)
    ap.add_argument("--cl-duration", type=float, default=20.0)
    ap.add_argument("--cl-burn", type=float, default=1.0)
    ap.add_argument("--cl-leak", type=float, nargs="*", default=[TAU],
                    help="membrane leak times (s) of the closed loop; 0 = no leak (perfect integrator)")
    ap.add_argument("--record-dt", type=float, default=None,
                    help="closed-loop recording step, SDE units (default: the verifier's lag, as spiking runs record)")
    ap.add_argument("--verify-seed", type=int, default=5)
    ap.add_argument("--commands", nargs="+", default=["oracle"],
                    help="(d) closed-fitted: the commands c(x_hat) to run, each 'oracle' (sde.drift) or "
                         "'KIND:M:STEPS' (KIND tanh or lif: model.latent_drift of fit(sde, n_neurons=M, steps=STEPS))")
    ap.add_argument("--cl-delta", type=float, nargs="*", default=[],
                    help="(d): delta per --cl-n entry, used as given when --scn-pilots is 0 (else the pilots' start)")
    ap.add_argument("--cmd-hold", type=float, default=2e-5,
                    help="(d): the command is re-evaluated every this many seconds of network time (zero-order hold)")
    ap.add_argument("--verify-seeds", type=int, nargs="+", default=[5, 6], help="(d): verify seeds per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-traj", default=None, help="(d): folder to save each run's read-out (npz) in")
    ap.add_argument("--verbose", action="store_true", help="(d): print every metric of the first verify seed")
    ap.add_argument("--cache", default=None, help="folder to keep the LIF fits in between invocations")
    args = ap.parse_args(argv)
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)

    from ddm_neuro.run.target import simulate_sde
    from ddm_neuro.sde.systems import get_system

    sde = get_system("lorenz")                    # stochastic Lorenz, noise 1.0 per dimension
    lag = verifier_lag(sde)
    args.record_dt = args.record_dt or lag
    print(f"stochastic Lorenz (noise 1.0); the verifier's lag for a stochastic run: {lag:.5g} SDE units")

    # the target on its attractor: states for (a), the signal for (b)
    h = lag / 5
    n_total = args.scn_burn + args.scn_duration
    tgt = simulate_sde(sde, n_total, dt=h, record_dt=h, trials=args.scn_trials, seed=args.seed + 1, burn_in=5.0)
    h = tgt.dt
    z_att = tgt.z.reshape(-1, sde.dim)[:: max(1, tgt.z.size // (3 * 4000))]
    G = sde.diffusion_cov(z_att).mean(0)
    center = tgt.z.reshape(-1, sde.dim).mean(0)

    lif_rows = {}
    T = None
    # (b) and (c) need T and the LIF rates: without the (a) stage, only the fits, no measurement
    lif_args = args if args.stage in ("lif", "all") else argparse.Namespace(**{**vars(args), "lif_measure": []})
    for N in args.neurons:
        row, _ = lif_row(sde, N, lag, z_att, lif_args)
        lif_rows[N] = row
        T = row["T"]
    if args.stage in ("lif", "all"):
        print(f"\n(a) LIF conversion, tau_ref {TAU_REF * 1e3:g} ms, tau {TAU * 1e3:g} ms, T = {T:.4g} s; "
              f"spike noise / target diffusion, worst direction")
        print(f"{'N':>6} {'fit s':>6} {'drift err':>9} {'excess(1 unit)':>14} {'pred@lag':>9} {'measured@lag':>12} "
              f"{'rate Hz':>8} {'phi rate':>8} {'max phi':>7} {'measure s':>9}  direction")
        lags = sorted({round(r["measured_lag"], 6) for r in lif_rows.values() if r["measured"] is not None})
        print(f"(measured with measure_spike_noise, noise-free spiking run, {args.lif_trials} x {args.lif_duration:g} "
              f"SDE units, compiled step loop, at lag {lags}; rate Hz: that run's mean rate, else the rate curve's)")
        for N, r in lif_rows.items():
            meas = "" if r["measured"] is None else f"{r['measured']:12.3f}"
            rate = r.get("rate", r["rate_phi"])
            print(f"{N:6d} {r['fit_s']:6.1f} {100 * r['drift_error']:8.2f}% {r['ratio_excess']:14.4f} "
                  f"{r['ratio_pred_lag']:9.3f} {meas:>12} {rate:8.1f} {r['rate_phi']:8.1f} {r['max_rate_phi']:7.0f} "
                  f"{r.get('measure_s', 0.0):9.1f}  "
                  f"{r.get('direction', '')}")

    def lif_rate(N):
        r = lif_rows.get(N) or lif_rows[min(lif_rows)]
        return r["rate_phi"]

    if args.stage in ("scn", "all"):
        print(f"\n(b) SCN autoencoder, tau {TAU * 1e3:g} ms, T = {T:.4g} s, rate-matched to (a); "
              f"{args.scn_trials} x {args.scn_duration:g} SDE units; read-out error increments over the lag / "
              f"(g g^T lag), worst direction")
        print(f"{'N':>6} {'delta':>9} {'rate Hz':>8} {'(target)':>8} {'max Hz':>7} {'silent':>6} {'dt ms':>7} "
              f"{'ratio':>8} {'rms err / std x (per dim)':>28} {'wall s':>7}  direction")
        for N in sorted(set(args.scn_extra) | set(args.neurons)):
            rt = lif_rate(N)
            if N * rt > args.scn_max_pop_rate:
                print(f"{N:6d}  skipped: population rate {N * rt:.3g} Hz > --scn-max-pop-rate")
                continue
            r = scn_row(sde, N, rt, T, lag, args, tgt.z, h, G, center)
            rel = " ".join(f"{v:.2e}" for v in r["rms_e"] / r["std_x"])
            print(f"{N:6d} {r['delta']:9.4f} {r['rate']:8.1f} {rt:8.1f} {r['max_rate']:7.0f} {r['silent']:6.2f} "
                  f"{r['dt_ms']:7.4f} {r['ratio']:8.4f} "
                  f"{rel:>28} {r['wall'] + r['pilot_wall']:7.1f}  {r['direction']}", flush=True)

    if args.stage in ("closed", "all") and args.cl_n:
        print(f"\n(c) closed-loop SCN (command f(x_hat): ORACLE drift; target noise as input), "
              f"{args.cl_trials} x {args.cl_duration:g} SDE units after {args.cl_burn:g}, recorded every "
              f"{args.record_dt:.4g}; verify seed {args.verify_seed}")
        for N in args.cl_n:
            rt = args.cl_rate or lif_rate(N)
            delta0 = args.scn_delta0 / N * 250.0 * 72.0 / rt
            for leak in args.cl_leak:
                lt = None if leak == 0 else leak
                c = closed_loop_row(sde, N, delta0, T, args, center, G, rt, lt)
                print(f"  N {N}: delta {c['delta']:.4f} (tuned to {rt:.1f} Hz in {args.scn_pilots} pilots of "
                      f"{args.cl_trials} x {args.cl_pilot:g}, {c['pilot_wall']:.0f} s), "
                      f"leak {'none' if lt is None else f'{lt * 1e3:g} ms'}, rate {c['rate']:.1f} Hz, "
                      f"dt {c['dt_ms']:.4f} ms, sim {c['sim_wall']:.0f} s, verify {c['verify_wall']:.0f} s: "
                      f"{'PASS' if c['passed'] else 'FAIL'}", flush=True)
                for line in metric_lines(c["report"]):
                    print(line)

    if args.stage == "closed-fitted" and args.cl_n:
        print(f"\n(d) closed-loop SCN, command c(x_hat) from {args.commands}; target noise as input; "
              f"{args.cl_trials} x {args.cl_duration:g} SDE units after {args.cl_burn:g}, recorded every "
              f"{args.record_dt:.4g}; command held {args.cmd_hold * 1e6:g} us; sim seed {args.seed}, "
              f"verify seeds {args.verify_seeds}")
        z_chk = z_att[:: max(1, len(z_att) // 2000)]
        f_chk = sde.drift(z_chk)
        commands = {}
        for spec in args.commands:
            if spec == "oracle":
                commands[spec] = (sde.drift, "oracle", None)
                continue
            model, fit_s = basis_model(sde, spec, args.cache, seed=0)
            cmd = fitted_command(model)
            gap = np.abs(cmd(z_chk) - model.latent_drift(z_chk)).max() / np.abs(f_chk).max()
            err_att = math.sqrt(np.sum((model.latent_drift(z_chk) - f_chk) ** 2) / np.sum(f_chk ** 2))
            fe = model.meta["fit"]
            print(f"  basis {spec}: {model.n_neurons} {model.neuron.name} units, T {model.time_scale:.4g} s; held-out "
                  f"drift error {100 * fe['drift_error']:.3f} % (closed form {100 * fe['drift_error_closed_form']:.3f} %), "
                  f"on attractor states {100 * err_att:.3f} %; fit wall {fit_s:.1f} s (nan: cached); "
                  f"|fast command - latent_drift| / max|f| = {gap:.1e}; e.g. at {np.round(z_chk[0], 2)}: "
                  f"latent_drift {np.round(model.latent_drift(z_chk[:1])[0], 3)}, sde.drift {np.round(f_chk[0], 3)}",
                  flush=True)
            if gap > 1e-9:
                raise SystemExit("the fast command does not match model.latent_drift")
            commands[spec] = (cmd, spec, fe["drift_error"])
        for n_i, N in enumerate(args.cl_n):
            rt = args.cl_rate or lif_rate(N)
            delta0 = args.cl_delta[n_i] if n_i < len(args.cl_delta) else args.scn_delta0 / N * 250.0 * 72.0 / rt
            for spec, (cmd, label, derr) in commands.items():
                c = fitted_loop_row(sde, N, delta0, T, args, center, G, rt, cmd, label, args.verify_seeds)
                vw = sum(w for _, _, w in c["reports"])
                print(f"  N {N} command {label}: delta {c['delta']:.4f}, rate {c['rate']:.1f} Hz (target {rt:.1f}), "
                      f"per trial {c['trial_rates'].min():.1f}-{c['trial_rates'].max():.1f} Hz, "
                      f"dt {c['dt_ms']:.4f} ms, hold {c['hold_us']:.1f} us ({c['k_hold']} steps), command error on "
                      f"the run's states {100 * c['run_drift_error']:.3f} % (cell-averaged "
                      f"{100 * c['cell_drift_error']:.3f} %); wall: pilots {c['pilot_wall']:.0f} s, "
                      f"sim {c['sim_wall']:.0f} s (command {c['cmd_wall']:.0f} s), verify {vw:.0f} s", flush=True)
                for vs, rep, _ in c["reports"]:
                    print(f"    verify seed {vs}: {'PASS' if rep.passed else 'FAIL'}  {short_metrics(rep)}", flush=True)
                if args.verbose:
                    for line in metric_lines(c["reports"][0][1]):
                        print(line)

if __name__ == "__main__":
    main()
