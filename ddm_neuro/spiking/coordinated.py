r"""Spike-coordinated networks: spiking neurons whose spikes reduce the read-out error, so spike noise does not add up.

The LIF conversion treats neurons as independent: each one's spike jitter
reaches the latent, the jitter adds up over neurons and only N buys it down
(stochastic Lorenz needs N of about 7 000 for its spikes to stay within its own
diffusion). In a spike-coordinated network (Boerlin, Machens & Denève 2013) a
neuron fires only when its spike brings the read-out closer to the signal it
tracks, so the read-out error stays within a polytope of decoder size whatever
N is: stochastic Lorenz passes ``verify`` at N = 500
(``benchmarks/RESULTS_spike_coordination.md``).

The network (time ``t`` in seconds, ``T`` seconds per SDE time unit, latent in
centred SDE coordinates ``z - c``), per trial::

    x_hat = D s_f             read-out: N spike trains filtered with tau (the model's), decoders D (d, N)
    e     = x - x_hat         the read-out error; x follows dx = f(x_hat, u) ds + G(x_hat) dW   (s = t / T, Itô)
    V_j   = D_j . e           membrane potentials: the error seen along each neuron's decoder
    neuron j spikes when V_j > (1 + cost) |D_j|^2 / 2, the largest first, one spike per step;
    a spike moves e by -D_j and x_hat by +D_j   (fast inhibition -D^T D, rank d, delay-free)

``f`` and ``G G^T`` are the drift and noise of a fitted tanh rate network (the
*basis*: :meth:`~ddm_neuro.network.LatentRNN.latent_drift` and ``latent_cov``):
its M units read the smooth read-out ``x_hat``, so the slow recurrent input
is ``D^T f(x_hat)``, the dendritic nonlinearity of nonlinear spike-coordinated
networks (Thalmeier et al. 2016; Alemi et al. 2018). The basis units are rate
units, computed exactly; the network is therefore a hybrid: N spiking neurons
plus M rate units. ``G dW`` enters as a shared d-dimensional input current
``D^T G dW`` (the analogue of the rate network's shared noise), or, with
noise spikes (:func:`noise_spike_map`), as random spikes whose jumps of the
read-out carry the noise's covariance themselves. The basis is
evaluated every :data:`HOLD_S` seconds and held in between. ``e`` does not
leak (models made before 2026-12-08 let it leak with ``tau``, which biased the
drift: :func:`error_leaks`).

Decoders: random directions, isotropic after whitening by the basis's mean
noise covariance, all of norm ``delta``. ``delta`` is tuned so that the mean
rate is :data:`RATE_HZ`; at a fixed rate the spikes' jitter in the latent
falls as ``delta^2`` (about ``N^-2``), against ``1/N`` for independent
neurons. The step is at most :data:`DT_MAX_S` and short enough that the
population fires about :data:`P_SPIKE` spikes per step.

What carries it: the torch back end's compiled step loop
(``ddm_neuro/run/step_loops.cpp``, ``ddm_coordinated``), and Brian2's
``cpp_standalone`` (the ``brian2-cpp`` back end, ``exporters/brian2/coordinated_network.py``:
the same steps, the basis and the one-spike rule as per-trial C++ functions, at
about the torch loop's speed). Brian2's runtime devices, Brian2CUDA, NEST, NIR and neuromorphic
chips have no delay-free rank-d inhibition at microsecond steps, so their
spiking modes refuse these models (a plug-in declares ``coordinated=True``
when it carries them).

A model file holds the basis (a tanh :class:`~ddm_neuro.network.LatentRNN`) and
the spiking network's settings in ``meta["coordinated"]``
(:func:`make_coordinated`): N, delta, cost, the whitening factor, the decoder
seed and the rate it was tuned to. Its spiking runs are run by
:func:`run_coordinated`; its rate runs are the basis network's.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..errors import DDMError
from .noise import worst_ratio

#: Spike cost: thresholds ``(1 + COST) |D_j|^2 / 2``; without one, noise makes opposite neurons fire back and forth
#: (0.5 gave 2.6x less spike noise than 0 at the same rate, RESULTS_spike_coordination.md (b)).
COST = 0.5
#: Expected population spikes per step and trial (at most one fires): the step is ``P_SPIKE / (N rate)``.
P_SPIKE = 0.2
#: Longest step (seconds of network time).
DT_MAX_S = 2e-5
#: The basis's drift and noise are evaluated every this many seconds and held in between (20 us: about 0.05 % of
#: Lorenz's drift, RESULTS_spike_coordination.md (d)).
HOLD_S = 2e-5
#: Mean rate delta is tuned to (Hz per neuron): the rate of the LIF conversions it replaces (68-77 Hz).
RATE_HZ = 70.0
#: Work of one call of the compiled loop (steps x trials x (N + M)): the interrupt and progress granularity.
CHUNK_WORK = 1e9
#: Largest dimension the compiled loop takes.
MAX_DIM = 16


def coordinated(model):
    """The spike-coordinated settings of ``model`` (``meta["coordinated"]``), or None for other models."""
    return (getattr(model, "meta", None) or {}).get("coordinated")


def spiking_neurons(model):
    """The number of spiking neurons of ``model``: the coordinated network's N, else the model's N."""
    cfg = coordinated(model)
    return int(cfg["n_neurons"]) if cfg else int(model.n_neurons)


def check_basis(model):
    """Refuse, with one clear :class:`DDMError`, a model that cannot be the basis of a coordinated network."""
    if model.neuron.name != "tanh":
        raise DDMError(f"a spike-coordinated network needs a tanh rate model as its basis; this one has "
                       f"{model.neuron.name!r} neurons (fit the system with --neuron tanh)")
    if model.w_perp is not None:
        raise DDMError("a spike-coordinated network cannot carry hardware-constrained weights (W_perp): "
                       "use an unconstrained tanh fit as its basis")
    if model.dim > MAX_DIM:
        raise DDMError(f"a spike-coordinated network takes at most {MAX_DIM} latent dimensions (this model has "
                       f"{model.dim})")


def whitening(model):
    """Lower Cholesky factor (d, d) of the basis's mean noise covariance over its start states, trace d.

    Decoder directions are isotropic in the coordinates it whitens, so that
    spikes are spent where the noise is. Directions without noise (a
    deterministic target) get the mean of the others, and a model without any
    noise the identity.
    """
    d = model.dim
    C = np.mean(model.latent_cov(model.init_states[:512]), axis=0)
    C = 0.5 * (C + C.T)
    tr = float(np.trace(C))
    if not np.isfinite(tr) or tr <= 0:
        return np.eye(d)
    C = C / (tr / d) + 1e-3 * np.eye(d)
    return np.linalg.cholesky(C / (np.trace(C) / d))


def make_coordinated(basis, n_neurons, delta, *, rate_hz=RATE_HZ, cost=COST, seed=0, why=None, whiten=None,
                     noise_spikes=False):
    """A copy of the tanh model ``basis`` that runs as a spike-coordinated network of ``n_neurons`` neurons.

    Parameters
    ----------
    basis : LatentRNN
        A tanh rate model without ``W_perp`` (:func:`check_basis`).
    n_neurons : int
        Spiking neurons N.
    delta : float
        Decoder norm in whitened latent units (:func:`whitening`).
    rate_hz : float
        The mean rate delta was tuned to (sets the step).
    cost : float
        Spike cost (:data:`COST`).
    seed : int
        Seed of the decoder directions.
    why : dict, optional
        How N and delta were chosen (kept in the settings).
    whiten : array (d, d), optional
        :func:`whitening` of ``basis``, where the caller has it already.
    noise_spikes : bool
        The basis's noise as random spikes (:func:`noise_spike_map`) instead of an input that the
        spikes track.

    Returns
    -------
    LatentRNN
    """
    check_basis(basis)
    if int(n_neurons) < 1 or not (delta > 0 and math.isfinite(delta)) or not rate_hz > 0 or cost < 0:
        raise DDMError(f"coordinated network: N must be >= 1, delta and the rate > 0, cost >= 0 (got N = {n_neurons}, "
                       f"delta = {delta}, rate {rate_hz} Hz, cost {cost})")
    model = copy.deepcopy(basis)
    model.meta["coordinated"] = {"n_neurons": int(n_neurons), "delta": float(delta), "rate_hz": float(rate_hz),
                                 "cost": float(cost), "seed": int(seed),
                                 "whitening": (whitening(basis) if whiten is None else np.asarray(whiten)).tolist(),
                                 "hold_s": HOLD_S, "p_spike": P_SPIKE,
                                 "dt_max_s": DT_MAX_S, "noise_spikes": bool(noise_spikes), "error_leak": False,
                                 **({"chosen": why} if why else {})}
    return model


def error_leaks(model):
    """Whether ``model``'s read-out error leaks at 1 / tau: not in models made since it was found to bias the drift;
    in a model whose settings predate ``error_leak`` (so its runs stay as they were).

    With the leak, the internal state ``x = x_hat + e`` obeys ``dx = f(x_hat) ds - e dt / tau``: where the error
    sits on average off zero (on the threshold facing the read-out's own leak), the read-out's drift is
    ``f - (T / tau) mean(e)``, about 0.16 % of stochastic Lorenz's at T = 1.05 s and twice that at 2.1 s (the
    verifier resolves 0.1 %); without it, 0.03 % at either (noise-free runs, ``benchmarks/coordinated_drift_bias.py``).
    """
    return bool(coordinated(model).get("error_leak", True))


def noise_spike_map(D):
    """The inverse of ``B -> sum_j (D_j^T B D_j) D_j D_j^T`` on symmetric d x d matrices, in the coordinates
    ``(p, q)``, ``p >= q``, row-major: ``(n, n)``, ``n = d (d + 1) / 2``.

    With noise spikes, neuron j fires at random with probability ``lambda_j = D_j^T B D_j`` per step
    (clipped at 0), B chosen so that ``sum_j lambda_j D_j D_j^T`` is the basis's noise covariance over the
    step: a spike moves the read-out by ``D_j``, so the spikes' own second moment is the noise, and the
    tracking spikes (largest margin first) correct only the drift. Their error then stays small where
    tracking Brownian noise would need many more spikes (FitzHugh-Nagumo: 4.6x less jitter at N = 800,
    RESULTS_spike_coordination.md (f)). The conversion uses them only where tracking the noise would need
    too many neurons.
    """
    d = D.shape[0]
    pairs = [(p, q) for p in range(d) for q in range(p + 1)]
    phi = np.array([[np.sum(D[p] * D[q] * D[r] * D[s]) * (1.0 if r == s else 2.0) for r, s in pairs]
                    for p, q in pairs])
    try:
        return np.ascontiguousarray(np.linalg.inv(phi))
    except np.linalg.LinAlgError:
        raise DDMError(f"coordinated network: its {D.shape[1]} decoders do not span the noise's covariances "
                       "(too few neurons for noise spikes)") from None


def decoders(model):
    """The decoders D (d, N) of a coordinated model, in centred SDE coordinates."""
    cfg = coordinated(model)
    rng = np.random.default_rng(cfg["seed"])
    u = rng.standard_normal((model.dim, cfg["n_neurons"]))
    u /= np.linalg.norm(u, axis=0)
    return cfg["delta"] * (np.asarray(cfg["whitening"], dtype=np.float64) @ u)


def longest_step(model):
    """The longest step (seconds) of a coordinated model's runs: at most ``dt_max_s``, and short enough
    that the population fires about ``p_spike`` spikes per step."""
    cfg = coordinated(model)
    return min(cfg.get("dt_max_s", DT_MAX_S), cfg.get("p_spike", P_SPIKE) / (cfg["n_neurons"] * cfg["rate_hz"]))


def step_grid(model, record_dt):
    """``(steps per recording interval, step in seconds)`` of a coordinated model's run."""
    dt = longest_step(model)
    span = record_dt * model.time_scale
    sub = max(1, math.ceil(span / dt - 1e-9))
    return sub, span / sub


def basis_arrays(model):
    """The basis's drift and noise as the compiled loop takes them (float64, C order).

    With ``y = (z - c) / S`` and ``D E = I`` the latent drift is
    ``(T / tau) S (K tanh(x) - y + D b + D B u)`` with unit inputs
    ``x = E y + P (b + B u)``, ``P = I - E D``; its noise covariance is
    ``T S (K diag(s2) K^T / tau^2 + L L^T) S``, ``s2 = na act(x) + nc``.
    """
    S, c, T, tau = model.scale, model.center, model.time_scale, model.tau
    ct = T / tau
    E, K, Dr = model.encoders, model.decoders, model.readout
    P = np.eye(model.n_neurons) - E @ Dr
    A = (E / S[None, :]).T                                         # (d, M): x = A^T z + x0
    x0 = P @ model.bias - (c / S) @ E.T
    Bx = (P @ model.input_weights).T                               # (k, M)
    DB = ct * S[:, None] * (Dr @ model.input_weights)              # (d, k)
    Kt = ct * S[:, None] * K                                        # (d, M)
    cst = ct * (S * (Dr @ model.bias) + c)
    Ks = math.sqrt(T) * S[:, None] * K / tau                       # (d, M)
    SL = S[:, None] * model.noise_latent
    LL = T * SL @ SL.T
    f = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    return {"A": f(A), "x0": f(x0), "Bx": f(Bx), "DB": f(DB), "Kt": f(Kt), "cst": f(cst), "Ks": f(Ks), "LL": f(LL),
            "na": f(model.noise_act), "nc": f(model.noise_const), "ct": ct}


def simulate_coordinated(model, plan_or_none=None, *, duration=None, trials=1, record_dt=None, z0=None, seed=0,
                         u=None, noise=True, record_spikes=False, threads=1, progress=False, error=False):
    """Run a coordinated model; ``(z, facts)`` with z (trials, n_rec, d) in SDE coordinates.

    Either give a :class:`~ddm_neuro.run.plan.RunPlan` (as :func:`run_coordinated` does) or the run's
    settings as keywords. ``error=True`` also returns the read-out error ``e`` at the samples
    (``facts["e"]``, centred SDE units), from which :func:`jitter_ratio` measures the spikes' own noise.
    """
    from tqdm.auto import tqdm

    from ..run import compiled
    from ..run.compiled import CoordArgs
    from ..run.plan import start_states

    if plan_or_none is not None:
        p = plan_or_none
        duration, trials, record_dt, seed, noise = p.duration, p.trials, p.record_dt, p.seed, p.noise
        threads, progress, n_rec = p.threads, p.progress, p.n_rec
        signal = p.input
        rng = np.random.default_rng(seed)
        z_start = p.start_states(rng)
    else:
        from ..run.inputs import InputSignal

        n_rec = int(round(duration / record_dt)) + 1
        signal = None if u is None else (u if isinstance(u, InputSignal) else InputSignal.constant(u))
        rng = np.random.default_rng(seed)
        z_start = start_states(model, trials, rng, z0)
    noisy = noise not in (False, "none", None)
    cfg = coordinated(model)
    check_basis(model)
    lib = compiled.library()
    d, N, M, k = model.dim, cfg["n_neurons"], model.n_neurons, model.n_inputs
    sub, dt_s = step_grid(model, record_dt)
    h = dt_s / model.time_scale
    hold = max(1, int(round(cfg.get("hold_s", HOLD_S) / dt_s)))
    D = np.ascontiguousarray(decoders(model))
    thr = np.ascontiguousarray(0.5 * (1.0 + cfg["cost"]) * np.sum(D * D, axis=0))
    arr = basis_arrays(model)
    spikes_noise = bool(cfg.get("noise_spikes"))
    pinv = noise_spike_map(D) if spikes_noise else np.zeros(1)
    center = np.ascontiguousarray(model.center, dtype=np.float64)
    xh = np.ascontiguousarray(z_start - center, dtype=np.float64)
    e = np.zeros((trials, d))
    cmd, Lc = np.zeros((trials, d)), np.zeros((trials, d, d))
    cnt = np.zeros(trials, dtype=np.int64)
    n_spikes = np.zeros(trials, dtype=np.int64)
    streams = np.zeros((trials, 6), dtype=np.uint64)
    lib.ddm_seed_streams(int(rng.integers(2 ** 63)), trials, streams.ctypes.data)
    z = np.full((trials, n_rec, d), np.nan)
    z[:, 0] = xh + center
    errs = np.full((trials, n_rec, d), np.nan) if error else None
    if error:
        errs[:, 0] = 0.0
    # about CHUNK_WORK step x trial x unit per call (1-2 s on one core here): a progress tick, and Ctrl-C is seen
    chunk = max(1, min(n_rec - 1, int(CHUNK_WORK // max(1, sub * trials * (N + M)))))
    # spike buffers per trial and call: four times the tuned rate's count (a fuller one is refused, not cut)
    max_sp = int(record_spikes and 4 * cfg["rate_hz"] * N * chunk * record_dt * model.time_scale + 1000)
    none = np.zeros(1)
    sp_t, sp_i = [], []
    ptr = lambda a: a.ctypes.data  # noqa: E731
    leak = (1.0 - math.exp(-dt_s / model.tau)) if error_leaks(model) else 0.0   # older models only
    bar = tqdm(total=n_rec - 1, desc="simulate coordinated", disable=not progress, unit="sample")
    done = 0
    try:
        while done < n_rec - 1:
            n = min(chunk, n_rec - 1 - done)
            uu = (np.zeros((n, max(k, 1))) if signal is None else
                  signal.at((done + np.arange(n)) * record_dt).reshape(n, -1))
            uu = np.ascontiguousarray(uu, dtype=np.float64)
            out = np.empty((trials, n, d))
            oute = np.empty((trials, n, d)) if error else None
            spt = np.empty(trials * max(max_sp, 1)) if max_sp else np.empty(1)
            spi = np.empty(trials * max(max_sp, 1), dtype=np.int64) if max_sp else np.empty(1, dtype=np.int64)
            spn = np.zeros(trials, dtype=np.int64)
            args = CoordArgs(T=trials, N=N, d=d, M=M, k=k, n_int=n, sub=sub, hold=hold, threads=max(1, int(threads)),
                             noisy=int(noisy), max_spikes=max_sp, step0=done * sub, noise_spikes=int(spikes_noise),
                             h=h,
                             a=math.exp(-dt_s / model.tau), lk=leak, ct=arr["ct"],
                             dt_s=dt_s / model.time_scale)
            for name in ("A", "x0", "Kt", "cst", "Bx", "DB", "na", "nc", "Ks", "LL"):
                setattr(args, name, ptr(arr[name]) if arr[name].size else ptr(none))
            args.D, args.thr, args.center, args.u, args.Pinv = ptr(D), ptr(thr), ptr(center), ptr(uu), ptr(pinv)
            args.e, args.xh, args.cmd, args.Lc, args.cnt = ptr(e), ptr(xh), ptr(cmd), ptr(Lc), ptr(cnt)
            args.streams, args.out, args.n_spikes = ptr(streams), ptr(out), ptr(n_spikes)
            args.oute = None if oute is None else ptr(oute)
            args.spk_t, args.spk_i, args.spk_n = ptr(spt), ptr(spi), ptr(spn)
            if lib.ddm_coordinated(args) != 0:
                raise DDMError(f"coordinated network: at most {MAX_DIM} latent dimensions")
            z[:, done + 1:done + 1 + n] = out
            if error:
                errs[:, done + 1:done + 1 + n] = oute
            if max_sp:
                if np.any(spn >= max_sp):
                    raise DDMError(f"coordinated network: a trial fired more than {max_sp} spikes in {n} samples, "
                                   f"four times its tuned rate ({cfg['rate_hz']:g} Hz): record spikes on shorter "
                                   "runs, or re-tune delta (ddm-neuro convert)")
                for t in range(trials):
                    sp_t.append(spt[t * max_sp:t * max_sp + spn[t]])
                    sp_i.append(spi[t * max_sp:t * max_sp + spn[t]] + t * N)
            done += n
            bar.update(n)
    finally:
        bar.close()
    span = (n_rec - 1) * record_dt * model.time_scale
    facts = {"n_spikes": int(n_spikes.sum()), "trial_rates_hz": (n_spikes / (N * span)).tolist() if span else [],
             "mean_rate_hz": float(n_spikes.sum() / (trials * N * span)) if span else 0.0, "step_s": dt_s,
             "hold_steps": hold, "sub": sub}
    if error:
        facts["e"] = errs
    if max_sp:
        facts["spikes_t"], facts["spikes_i"] = np.concatenate(sp_t), np.concatenate(sp_i)
    return z, facts


def run_coordinated(plan):
    """Simulate a spiking-mode run of a coordinated model (the torch back end's spiking runs of such models).

    Options read from the plan: ``record_spikes``. ``noise`` "none" (or False) runs it without the
    basis's noise; any other noise setting injects it (the coordinated network has no remainder to
    split: its spikes' jitter is small by construction).

    Returns
    -------
    Trajectory
    """
    model = plan.model
    cfg = coordinated(model)
    opt = plan.options
    if opt.get("device") not in (None, "cpu") or opt.get("engine") == "torch":
        raise DDMError("a spike-coordinated network runs on the compiled CPU step loop only (no --device cuda, "
                       "no --engine torch)")
    z, facts = simulate_coordinated(model, plan, record_spikes=bool(opt.get("record_spikes")))
    return plan.trajectory(
        z, backend="torch", spikes_t=facts.get("spikes_t"), spikes_i=facts.get("spikes_i"), network="coordinated",
        noise="none" if plan.noise in (False, "none", None) else "model", mean_rate_hz=facts["mean_rate_hz"],
        trial_rates_hz=facts["trial_rates_hz"], n_neurons=int(cfg["n_neurons"]), n_basis=int(model.n_neurons),
        delta=float(cfg["delta"]), integration_dt=facts["step_s"] / model.time_scale,
        neuron={"name": "coordinated", "cost": cfg["cost"]}, tau_syn=model.tau, time_scale=model.time_scale,
        engine="compiled", device="cpu", threads=plan.threads)


def jitter_ratio(model, e, lag_samples, record_dt, z=None):
    """The spikes' own latent noise against the basis's, worst direction: ``(ratio, direction)``.

    The read-out follows ``x_hat = x - e``, where ``x`` integrates the basis's drift and noise
    exactly; so the increments of ``-e`` over the lag are what the spikes add. Their covariance
    per unit time, against the basis's mean noise covariance ``G`` on the run's states, along the
    direction where it is largest (generalised eigenvalue, as
    :func:`~ddm_neuro.spiking.noise.spike_noise_excess` reports the LIF network's).

    Parameters
    ----------
    model : LatentRNN
    e : ndarray (trials, n, d)
        The read-out error at the samples (:func:`simulate_coordinated` with ``error=True``).
    lag_samples : int
        The lag in samples.
    record_dt : float
        SDE time units between samples.
    z : ndarray (trials, n, d), optional
        The run's states (for ``G``; default the model's start states).
    """
    k = int(lag_samples)
    de = (e[:, k:] - e[:, :-k]).reshape(-1, e.shape[-1])
    de = de[np.all(np.isfinite(de), axis=1)]
    states = model.init_states[:512] if z is None else z.reshape(-1, z.shape[-1])[:: max(1, z.size // 3 // 2000)]
    G = np.mean(model.latent_cov(states), axis=0)
    return worst_ratio(de.T @ de / len(de) / (k * record_dt), G)


#: The spikes' jitter (:func:`jitter_ratio`) a coordinated network is sized for by default: its extra latent variance
#: along the worst direction, over the basis's (what :func:`jitter_limit` gives for Lorenz at 8 x 20 time units).
JITTER_LIMIT = 0.015


def jitter_limit(n_increments):
    """The jitter a verification of ``n_increments`` increments at its lag cannot tell from sampling error.

    A variance estimated from n increments has relative standard error ``sqrt(2 / n)``; the spikes'
    jitter biases it by its ratio, which is kept below two of those: ``2 sqrt(2 / n)``. Lorenz at
    8 x 20 (32 000 increments): 0.016, where the measured edge was 0.02-0.025 (N = 350 passed half its
    verdicts) and 0.012 always passed; at 8 x 250 (390 000): 0.0045, where 0.0099 failed and 0.0051 passed
    (RESULTS_spike_coordination.md, RESULTS_conversion.md).
    """
    return 2.0 * math.sqrt(2.0 / max(float(n_increments), 1.0))
#: Pilot runs of the rate tuning: trials, and their length in samples of the verifier's lag (at least 2 time
#: units: Lorenz's lag is 0.005, so 2 units; FitzHugh-Nagumo's 0.034, so 13.7, about one of its slow cycles, whose
#: phase otherwise moves the rate by 30 % between pilots); at most this many pilots, and the rate tolerance.
PILOT_RUNS = (4, 400)
MAX_PILOTS = 8
RATE_TOLERANCE = 0.05


def initial_delta(basis, n_neurons, rate_hz):
    """A first guess of delta: the decoder norm whose spikes, at ``rate_hz``, keep up with the drift's mean speed."""
    f = basis.latent_drift(basis.init_states[:512])
    speed = float(np.mean(np.linalg.norm(f, axis=1)))
    noise = float(np.sqrt(np.mean(np.trace(basis.latent_cov(basis.init_states[:64]), axis1=1, axis2=2))))
    return 4.0 * max(speed, noise, 1e-9) / (n_neurons * rate_hz * basis.time_scale)


def tune_delta(basis, n_neurons, *, rate_hz=RATE_HZ, seed=0, record_dt, delta0=None, runs=PILOT_RUNS,
               u=None, lag_samples=1, progress=False, noise_spikes=False):
    """Tune delta so that the coordinated network of ``n_neurons`` fires at ``rate_hz`` on pilot runs.

    ``runs``: (trials, length in lags) of each pilot (:data:`PILOT_RUNS`); the lag is ``lag_samples``
    samples of ``record_dt``. ``noise_spikes``: the network's noise as random spikes
    (:func:`noise_spike_map`; they count in the rate).

    The rate falls with delta about as a power law; each pilot updates the power from the last two
    (a secant in log-log, clipped to [0.5, 3]) and stops within :data:`RATE_TOLERANCE`. The last pilot
    also measures the spikes' jitter at ``lag_samples`` (:func:`jitter_ratio`).

    Returns
    -------
    model : LatentRNN
        The coordinated model with the tuned delta.
    facts : dict
        ``delta``, ``rate_hz`` (the last pilot's), ``pilots`` [(delta, rate)], ``jitter`` (ratio) and
        ``direction``, ``seconds``.
    """
    import time

    t0 = time.perf_counter()
    delta = float(delta0) if delta0 else initial_delta(basis, n_neurons, rate_hz)
    power, pilots, whiten = 1.0, [], whitening(basis)
    trials, duration = runs[0], max(2.0, runs[1] * record_dt / lag_samples)
    for i in range(MAX_PILOTS):
        model = make_coordinated(basis, n_neurons, delta, rate_hz=rate_hz, seed=seed, whiten=whiten,
                                 noise_spikes=noise_spikes)
        z, facts = simulate_coordinated(model, duration=duration, trials=trials, record_dt=record_dt, seed=seed + i,
                                        u=u, error=True, progress=False)
        rate = facts["mean_rate_hz"]
        pilots.append((delta, rate))
        if progress:
            print(f"      pilot {i + 1}: delta {delta:.4g}, {rate:.1f} Hz (target {rate_hz:g})", flush=True)
        if not np.isfinite(rate) or rate <= 0:
            raise DDMError(f"coordinated network of {n_neurons} neurons: no spikes at delta {delta:.3g} (the basis "
                           "has neither drift nor noise to track?)")
        if abs(rate / rate_hz - 1.0) <= RATE_TOLERANCE:
            break
        if len(pilots) >= 2 and pilots[-2][0] != delta and pilots[-2][1] != rate:
            p = -math.log(rate / pilots[-2][1]) / math.log(delta / pilots[-2][0])
            power = float(np.clip(p, 0.5, 3.0)) if np.isfinite(p) else power
        delta *= (rate / rate_hz) ** (1.0 / power)
    else:
        delta = pilots[-1][0]
    ratio, direction = jitter_ratio(model, facts["e"], lag_samples, record_dt, z)
    return model, {"delta": delta, "rate_hz": rate, "pilots": [list(p) for p in pilots], "jitter": ratio,
                   "direction": direction.tolist(), "seconds": time.perf_counter() - t0}


#: How the jitter falls with N at a fixed rate: as delta^2, and delta as N^-1 (small N, maintenance spikes) to about
#: N^-0.65 (large N, spikes tracking the noise): ratio ~ N^-2 .. N^-1.3 (RESULTS_spike_coordination.md (b)). The
#: slower fall is assumed, so N is not under-estimated.
JITTER_EXPONENT = 1.3


def size_for_jitter(n_neurons, ratio, limit=JITTER_LIMIT, step=50, exponent=JITTER_EXPONENT):
    """N for the jitter ``limit``, from a ratio measured at ``n_neurons`` at the same rate (``ratio ~ N^-exponent``)."""
    return int(math.ceil(n_neurons * (max(ratio, 0.0) / limit) ** (1.0 / exponent) / step)) * step


def jitter_exponent(points):
    """How the jitter fell with N between the last two measured ``(N, ratio)`` points, clipped to [1, 2.5]
    (:data:`JITTER_EXPONENT` with fewer than two points or no fall)."""
    if len(points) < 2:
        return JITTER_EXPONENT
    (n0, r0), (n1, r1) = points[-2], points[-1]
    if n1 == n0 or r0 <= 0 or r1 <= 0:
        return JITTER_EXPONENT
    p = -math.log(r1 / r0) / math.log(n1 / n0)
    return float(np.clip(p, 1.0, 2.5)) if np.isfinite(p) else JITTER_EXPONENT
