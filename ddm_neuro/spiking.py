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
  step (issue 5: fit with the rate curve the simulator actually realises;
  here it is the analytic one).
* **Synapses.** Exponential, ``tau_syn = tau`` (the model's): each spike of
  neuron j moves ``x`` by ``W[:, j] / tau`` (factored coupling: by
  ``E (K[:, j] / tau)``, O(N d) per step; dense: the N x N ``W``), weighted by
  ``exp(-(t_end - t*)/tau)`` so that a spike inside the step has decayed
  exactly as it would have by the step's end, and ``x`` relaxes to
  ``b + B u`` exactly (``x <- b + B u + (x - b - B u) exp(-h/tau)``). A step of
  the input moves ``x`` by ``B du`` at once (the feed-forward path, as in
  :func:`ddm_neuro.simulate.simulate_network`). Spikes act only through
  ``W = E K``, so ``x_perp`` stays at rest and the latent obeys
  ``tau dy = (-y + K s(t)) dt``.

**Spike noise.** A spike train of rate ``r_j`` whose count over long windows
has Fano factor ``F_j`` has low-frequency spectral density ``r_j F_j``: it is
the rate plus a white noise of intensity ``r_j F_j`` (Poisson: ``F = 1``).
That is the model's private output noise ``eta_j`` with ``sigma_j^2 = r_j F_j``.
Both sides are in the same units: the model's ``sigma_j^2`` is in
(output units)^2 x seconds = Hz^2 s = Hz (``eta dt = sigma dW`` with ``phi``
in Hz), and ``r_j F_j`` is in spikes per second = Hz. So, exactly as
:meth:`LatentRNN.latent_cov` converts ``sigma^2``, spikes alone add the latent
covariance per SDE time unit::

    C_spk(z) = T S K diag(r(x) F) K^T S / tau^2,   x = E y + x_perp*,  r = phi(x)

(:func:`spike_noise_cov`). With ``noise="remainder"`` the simulator injects
as private output noise only ``max(sigma_j^2(x) - F_j r_j(x), 0)`` (Hz,
re-evaluated every step at the current ``x``), plus the model's shared
top-up ``E L dW'``, so that spikes plus injected noise have the model's
diffusion. Where spikes alone already exceed the model's (= the target's)
diffusion in some latent direction, nothing can remove the excess; a
:class:`SpikeNoiseWarning` names the direction, the factor, and the N or
tau that would fix it (:func:`spike_noise_excess`).

**How spike noise scales.** The decoders solve ``K phi(x) ~ y + tau f_y`` over
the visited states; with N neurons of similar tuning and typical rate
``r``, ``K_j ~ 1/(N r)``, so ``C_spk ~ T S^2 sum_j K_j^2 r_j / tau^2 ~
T S^2 / (N r tau^2)``: it falls as ``1/N`` (decoder *norms* ``|K_j|^2`` falling
as ``1/N^2``, their sum as ``1/N``). In ``tau``: ``C_spk`` goes as ``T/tau^2``
with ``K`` roughly fixed, i.e. as ``1/tau`` when the fit chooses ``T``
proportional to ``tau`` (its default, ``ratio``), and as ``1/tau^2`` at a fixed
``T``. An excess by a factor ``lambda`` therefore needs about ``lambda N``
neurons, or ``tau_syn`` about ``lambda tau`` (fit's default ``T``) or
``sqrt(lambda) tau`` (fixed ``T``). Large, cancelling decoders (little ridge
regularisation) make ``sum_j K_j^2 r_j`` far larger than this estimate; then
refitting with more regularisation helps more than N.

A regular (noise-free) LIF neuron is far from Poisson at low frequencies: its
count error is bounded (it integrates its input like a sigma-delta
modulator), so its effective ``F`` over a window of many inter-spike
intervals is small, about ``1 / (6 r lag)`` (:func:`regular_fano`), and its
apparent diffusion falls as ``1/lag``: spike noise of such a network is a
bounded jitter more than a diffusion. :func:`measure_spike_noise` measures
it; on the 2-D OU with N = 200 (``benchmarks/spike_noise.py``) the measured
values follow the regular-firing prediction within about 25 % from one
recording step (2 ms, F ~ 0.5) to 16 tau (F ~ 0.003), while the Poisson
estimate is 2 (2 ms) to 300 (16 tau) times too large. ``fano="regular"``
counts it that way in :func:`simulate_spiking`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import DDMError
from .sdeint import recording_grid
from .simulate import input_signal, network_steps, start_states
from .trajectory import Trajectory

NOISE_MODES = ("remainder", "none", "model")


class SpikeNoiseWarning(UserWarning):
    """Spikes alone are noisier than the model's target diffusion in some latent direction."""


def default_dt(model):
    """Default integration step in SDE units: 0.1 ms of network time, ``1e-4 / T``."""
    return 1e-4 / model.time_scale


def _fano(model, fano):
    """Validate ``fano``: ``"regular"`` or an array (N,) of numbers >= 0."""
    if isinstance(fano, str):
        if fano != "regular":
            raise DDMError(f"fano must be a number >= 0, {model.n_neurons} of them, or 'regular' (got {fano!r})")
        return fano
    F = np.broadcast_to(np.asarray(fano, dtype=np.float64), (model.n_neurons,)).copy() \
        if np.ndim(fano) <= 1 and np.size(fano) in (1, model.n_neurons) else None
    if F is None or not np.all(np.isfinite(F)) or np.any(F < 0):
        raise DDMError(f"fano must be a number >= 0, {model.n_neurons} of them, or 'regular' "
                       f"(got shape {np.shape(fano)})")
    return F


def _fano_at(model, fano, z, u=None):
    """Fano factors at states z, (M, N): ``"regular"`` is :func:`regular_fano` over one SDE time unit."""
    F = _fano(model, fano)
    return regular_fano(model, z, model.time_scale, u) if isinstance(F, str) else F


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


def spike_noise_cov(model, z, u=None, fano=1.0):
    r"""Latent covariance per SDE time unit that spikes alone add, ``T S K diag(phi(x) F) K^T S / tau^2``.

    A spike train of rate ``r_j = phi(x_j)`` (Hz) and low-frequency Fano factor
    ``F_j`` acts as output noise of intensity ``sigma_j^2 = r_j F_j`` (Hz, the
    units of :attr:`LatentRNN.noise_const`); this is
    :meth:`LatentRNN.latent_cov` with that intensity and without ``L``.

    Parameters
    ----------
    model : LatentRNN
        A model with LIF neurons (rates in Hz).
    z : array (..., d)
        Latent states, SDE coordinates.
    u : array (..., k), optional
        Inputs.
    fano : float or array (N,) or (..., N)
        Low-frequency Fano factor of each neuron's spike count (1: Poisson;
        :func:`regular_fano` for noise-free LIF neurons at a given lag).

    Returns
    -------
    ndarray (..., d, d)
    """
    x = model.neuron_inputs(np.asarray(z, dtype=np.float64), u)
    F = np.asarray(fano, dtype=np.float64)
    if not np.all(np.isfinite(F)) or np.any(F < 0):
        raise DDMError("fano must be finite and >= 0")
    try:
        rF = model.neuron.phi(x) * F
    except ValueError:
        raise DDMError(f"fano has shape {F.shape}; expected a number, ({model.n_neurons},) or the states' "
                       f"shape {x.shape}") from None
    cov = np.einsum("an,...n,bn->...ab", model.decoders, rF, model.decoders) / model.tau ** 2
    return model.time_scale * cov * model.scale[:, None] * model.scale[None, :]


def regular_fano(model, z, lag, u=None):
    r"""Fano factor over a window ``lag`` of regular (periodic) spike trains at the rates ``phi(x(z))``.

    A neuron firing periodically at rate ``r``, observed from a uniformly random
    start, counts ``floor(r lag)`` or ``floor(r lag) + 1`` spikes in a window: with
    ``f = frac(r lag)``, the count variance is ``f (1 - f)``, bounded by 1/4
    whatever the lag, and the Fano factor is ``F = f (1 - f) / (r lag)``, about
    ``1 / (6 r lag)`` on average over ``f``. The noise-free LIF network's
    neurons fire nearly periodically between the slow changes of their input,
    so this predicts the spike noise that :func:`measure_spike_noise` finds at
    lags of a few tau (the count errors of an integrate-and-fire neuron do not
    accumulate: it integrates its input like a sigma-delta modulator). Spike
    noise from such neurons is not a diffusion: its apparent diffusion falls as
    ``1/lag``.

    Parameters
    ----------
    model : LatentRNN
    z : array (..., d)
        Latent states (SDE coordinates).
    lag : float
        Window in **network seconds**.
    u : array, optional

    Returns
    -------
    ndarray (..., N)
        For :func:`spike_noise_cov`'s ``fano`` (0 where a neuron is silent).
    """
    x = model.neuron_inputs(np.asarray(z, dtype=np.float64), u)
    n = model.neuron.phi(x) * float(lag)
    f = n - np.floor(n)
    return np.where(n > 0, f * (1.0 - f) / np.where(n > 0, n, 1.0), 0.0)


def spike_noise_excess(model, fano=1.0, z=None, u=None):
    r"""How far spike noise alone exceeds the model's diffusion, worst latent direction first.

    Compares, averaged over states ``z`` (default ``model.init_states``), the
    spikes' covariance ``C_spk`` (:func:`spike_noise_cov`) with the model's
    ``C = latent_cov`` (what the rate network was fitted to give, private +
    shared), and the total that ``noise="remainder"`` realises,
    ``C_tot = T S K diag(max(sigma^2, F r)) K^T S / tau^2 + T S L L^T S``
    (per-neuron clipping at 0 can leave an excess even when ``C_spk <= C``).
    The ratios are generalised eigenvalues: ``max_u u^T C_spk u / u^T C u``
    over directions ``u`` in SDE coordinates.

    Parameters
    ----------
    model : LatentRNN
    fano : float, array (N,) or "regular"
        As :func:`simulate_spiking`.
    z : array (M, d), optional
    u : array (k,) or (M, k), optional

    Returns
    -------
    dict
        ``ratio`` (largest ``u^T C_spk u / u^T C u``), ``direction`` (that unit
        ``u``, SDE coordinates), ``ratio_total`` and ``direction_total`` (the
        same for ``C_tot``), ``c_spike``, ``c_model``, ``c_total`` (d, d),
        ``spike_var`` (``u^T C_spk u`` along ``direction``),
        ``n_needed`` (N that would bring ``ratio`` to 1 at fixed rates, ``ratio x N``),
        ``tau_needed`` (``ratio x tau``, with ``T`` chosen proportional to ``tau``
        as the fit does) and ``tau_needed_fixed_T`` (``sqrt(ratio) x tau``); these
        three are None when the target has (almost) no diffusion there
        (``ratio`` above 1e6 or infinite).
    """
    z = model.init_states if z is None else np.atleast_2d(np.asarray(z, dtype=np.float64))
    if model.n_inputs and u is None:
        u = np.zeros(model.n_inputs)
    F = _fano_at(model, fano, z, u)
    c_spk = spike_noise_cov(model, z, u, F).mean(0)
    c_mod = model.latent_cov(z, u).mean(0)
    x = model.neuron_inputs(z, u)
    s2 = np.maximum(model.noise_var(x), model.neuron.phi(x) * F)
    c_tot = np.einsum("an,mn,bn->ab", model.decoders, s2, model.decoders) / len(z) / model.tau ** 2
    c_tot = model.time_scale * (c_tot + model.noise_latent @ model.noise_latent.T) \
        * model.scale[:, None] * model.scale[None, :]

    def worst(A, C):
        d = C.shape[0]
        if np.trace(C) <= 1e-12 * max(np.trace(A), 1e-300):     # deterministic target: any spike noise is excess
            vals, vecs = np.linalg.eigh(A)
            return (math.inf if vals[-1] > 0 else 0.0), vecs[:, -1]
        reg = C + 1e-12 * np.trace(C) / d * np.eye(d)
        vals, vecs = np.linalg.eigh(reg)
        Wh = vecs / np.sqrt(vals)                                 # C^(-1/2) up to rotation
        lam, v = np.linalg.eigh(Wh.T @ A @ Wh)
        w = Wh @ v[:, -1]                                         # A w = lam C w
        return float(lam[-1]), w / np.linalg.norm(w)

    ratio, direction = worst(c_spk, c_mod)
    ratio_t, direction_t = worst(c_tot, c_mod)
    lam = max(ratio, 1.0)
    finite = lam < 1e6  # beyond this the target has (almost) no diffusion there: no N or tau is sensible
    return {"ratio": ratio, "direction": direction, "ratio_total": ratio_t, "direction_total": direction_t,
            "c_spike": c_spk, "c_model": c_mod, "c_total": c_tot,
            "spike_var": float(direction @ c_spk @ direction),
            "n_needed": int(math.ceil(lam * model.n_neurons)) if finite else None,
            "tau_needed": lam * model.tau if finite else None,
            "tau_needed_fixed_T": math.sqrt(lam) * model.tau if finite else None}


def _direction_text(model, u):
    names = list(model.variables) if len(model.variables) == model.dim else [f"z{i}" for i in range(model.dim)]
    u = u * np.sign(u[np.argmax(np.abs(u))])
    return "(" + ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, u)) + ")"


def warn_spike_noise(model, fano=1.0, u=None, tolerance=1.05):
    """Warn (:class:`SpikeNoiseWarning`) when spikes (alone, or plus the clipped remainder) exceed the model's diffusion.

    Parameters
    ----------
    model : LatentRNN
    fano : float, array (N,) or "regular"
    u : array (k,), optional
    tolerance : float
        Ratios up to this are accepted silently.

    Returns
    -------
    dict
        :func:`spike_noise_excess`'s result.
    """
    ex = spike_noise_excess(model, fano, u=u)
    fano_text = "of regular firing over one SDE time unit" if isinstance(fano, str) else \
        f"{np.mean(fano):.3g} assumed" + ("; regular LIF firing is far less noisy over the latent time "
                                           "scale, see fano='regular' and measure_spike_noise"
                                           if np.mean(fano) >= 0.5 else "")
    if ex["ratio"] > tolerance and ex["n_needed"] is None:
        warnings.warn(
            f"the target has (almost) no diffusion along {_direction_text(model, ex['direction'])}, but spikes alone "
            f"add {ex['spike_var']:.3g} per SDE time unit there (Fano factor {fano_text}); it falls as 1/N and as "
            f"1/tau_syn (1/tau_syn^2 at fixed T) but never vanishes", SpikeNoiseWarning, stacklevel=3)
    elif ex["ratio"] > tolerance:
        warnings.warn(
            f"spikes alone are noisier than the target: along {_direction_text(model, ex['direction'])} "
            f"their latent diffusion is {ex['ratio']:.3g}x the target's (Fano factor {fano_text}); "
            f"no private noise is injected there. Spike noise falls as 1/N and as 1/tau_syn (T chosen by the fit) "
            f"or 1/tau_syn^2 (T fixed): N >= {ex['n_needed']} (now {model.n_neurons}) or tau_syn >= "
            f"{ex['tau_needed'] * 1e3:.3g} ms ({ex['tau_needed_fixed_T'] * 1e3:.3g} ms at fixed T; now "
            f"{model.tau * 1e3:.3g} ms) would fix it, or a refit with smaller decoders (more ridge "
            f"regularisation: the excess grows with sum_j K_j^2 r_j)", SpikeNoiseWarning, stacklevel=3)
    elif ex["ratio_total"] > tolerance:
        warnings.warn(
            f"spike noise exceeds the model's private noise of some neurons (the remainder is clipped at 0): "
            f"along {_direction_text(model, ex['direction_total'])} the total latent diffusion is "
            f"{ex['ratio_total']:.3g}x the target's", SpikeNoiseWarning, stacklevel=3)
    return ex


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
        Recording interval in SDE units (default as :func:`ddm_neuro.simulate.simulate_network`).
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
    if coupling not in ("factored", "dense"):
        raise DDMError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if noise is True or noise is False:
        noise = "remainder" if noise else "none"
    if noise not in NOISE_MODES:
        raise DDMError(f"noise must be one of {', '.join(NOISE_MODES)} (got {noise!r})")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0) or int(trials) < 1:
        raise DDMError(f"duration must be a finite number > 0 and trials >= 1 (got {duration}, {trials})")
    for name, v in (("dt", dt), ("record_dt", record_dt)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise DDMError(f"{name} must be a finite number > 0 (got {v})")
    trials = int(trials)
    F = _fano(model, fano)
    dt = dt or default_dt(model)
    record_dt = record_dt or max(network_steps(model)[1], dt)
    signal = input_signal(model, u)
    u0 = None if signal is None else signal.values[0]
    check_spiking(model, dt, u0)
    if noise == "remainder":
        warn_spike_noise(model, F, u=u0)
    seed = None if seed is None else int(seed)
    n_rec, record_dt, n_sub, dt = recording_grid(duration, dt, record_dt)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    z0 = start_states(model, trials, rng, z0)
    N = model.n_neurons
    v0 = rng.uniform(0.0, 1.0, (trials, N))

    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)  # noqa: E731
    x = t(model.neuron_inputs(z0, u0))
    v, ref = t(v0), torch.zeros(trials, N, dtype=torch.float64)
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
    phi, act = model.neuron.phi, model.neuron.activity
    private = noise != "none" and bool(np.any(model.noise_const) or np.any(model.noise_act))

    out = np.empty((trials, n_rec, model.dim))
    out[:, 0] = (x @ D.T * scale + center).numpy()
    u_now = None if signal is None else t(signal.values[0])
    drive = b.expand(trials, N) if signal is None else (b + u_now @ B.T).expand(trials, N)
    sp_t, sp_i = [], []
    n_spikes = 0
    bar = tqdm(total=n_rec - 1, desc="simulate spiking", disable=not progress, unit="sample")
    buf, shared_buf, used = None, None, chunk
    step = 0
    zero = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for k in range(1, n_rec):
            for _ in range(n_sub):
                if signal is not None and len(signal.times) > 1:
                    u_new = t(signal.at([step * dt])[0])
                    if not torch.equal(u_new, u_now):  # feed-forward: x jumps with u
                        x = x + (u_new - u_now) @ B.T
                        u_now = u_new
                        drive = (b + u_now @ B.T).expand(trials, N)
                # refractory time first, then the membrane for the rest of the step
                rem = torch.clamp(h - ref, min=0.0)
                ref = torch.clamp(ref - h, min=0.0)
                q = torch.zeros(trials, N, dtype=torch.float64)
                while True:
                    v_end = x + (v - x) * torch.exp(-rem / tau_m)
                    spk = (v_end >= 1.0) & (rem > 0)
                    v = torch.where(spk, v, v_end)
                    if not bool(spk.any()):
                        break
                    xs = torch.where(spk, x, torch.full_like(x, 2.0))
                    vs = torch.where(spk, v, zero)
                    tc = torch.minimum(tau_m * torch.log((xs - vs) / (xs - 1.0)).clamp(min=0.0), rem)
                    rem = torch.where(spk, rem - tc, zero)           # time left after the spike
                    q = q + torch.where(spk, torch.exp(-rem / tau), zero)  # decayed to the step's end
                    n_spikes += int(spk.sum())
                    if record_spikes:
                        tr_i, n_i = torch.nonzero(spk, as_tuple=True)
                        sp_t.append((step * h + h - rem[tr_i, n_i]).numpy() / model.time_scale)
                        sp_i.append((n_i + tr_i * N).numpy())
                    v = torch.where(spk, zero, v)
                    r_used = torch.clamp(rem, max=tau_ref)
                    ref = torch.where(spk, tau_ref - r_used, ref)
                    rem = rem - r_used                                 # > 0 only for spikers
                    if not bool((rem > 0).any()):
                        break
                q = q / tau
                if noise != "none":
                    if used == chunk:
                        if private:
                            buf = torch.randn((chunk, trials, N), generator=gen, dtype=torch.float64)
                        if EL is not None:
                            shared_buf = math.sqrt(h) * torch.randn(chunk, trials, model.dim, generator=gen,
                                                                    dtype=torch.float64)
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
            out[:, k] = (x @ D.T * scale + center).numpy()
            if not np.isfinite(out[:, k]).any():
                out[:, k + 1:] = np.nan
                break
            bar.update()
    bar.close()
    diverged = [int(i) for i in np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))]
    spikes_t = spikes_i = None
    if record_spikes:
        spikes_t = np.concatenate(sp_t) if sp_t else np.zeros(0)
        spikes_i = np.concatenate(sp_i).astype(np.int64) if sp_i else np.zeros(0, dtype=np.int64)
        order = np.argsort(spikes_t, kind="stable")
        spikes_t, spikes_i = spikes_t[order], spikes_i[order]
    sim_s = step * h
    meta = {"backend": "torch", "mode": "spiking", "coupling": coupling, "model_id": model.meta.get("model_id"),
            "system": model.meta.get("sde_name"), "variables": list(model.variables), "seed": seed,
            "duration": float(duration), "trials": trials, "integration_dt": dt, "noise": noise,
            "fano": F if isinstance(F, str) else float(F[0]) if np.all(F == F[0]) else F.tolist(),
            "n_neurons": N,
            "input": None if signal is None else signal.to_dict(), "diverged_trials": diverged,
            "mean_rate_hz": n_spikes / (trials * N * sim_s) if sim_s > 0 else 0.0,
            "neuron": model.neuron.to_dict(), "tau_syn": tau, "time_scale": model.time_scale}
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=meta,
                      spikes_t=spikes_t, spikes_i=spikes_i)


@dataclass
class SpikeNoiseMeasurement:
    """Latent diffusion of the noise-free spiking network, measured and estimated.

    Attributes
    ----------
    lags : ndarray (L,)
        Lags in network seconds.
    measured : ndarray (L, d, d)
        Covariance of the increments minus the integrated model drift, per SDE time unit.
    estimate : ndarray (d, d)
        :func:`spike_noise_cov` with ``F = 1`` (Poisson), averaged over the visited states.
    fano : ndarray (L,)
        Effective Fano factor at each lag, ``<measured, estimate>_F / <estimate, estimate>_F``.
    ratio_diag : ndarray (L, d)
        ``measured / estimate`` on the diagonal.
    traj : Trajectory
        The simulation.
    """

    lags: np.ndarray
    measured: np.ndarray
    estimate: np.ndarray
    fano: np.ndarray
    ratio_diag: np.ndarray
    traj: Trajectory


def measure_spike_noise(model, duration, *, lags=(None, 1.0, 4.0, 16.0), trials=2, seed=0, dt=None,
                        record_dt=None, coupling="factored", progress=False):
    r"""Measure the latent diffusion that spikes add, and compare it with :func:`spike_noise_cov`.

    Simulates the spiking network with ``noise="none"`` and estimates, at each
    lag ``Delta``, ``Cov[z(t+Delta) - z(t) - int_t^{t+Delta} f_net(z(s)) ds] / Delta``,
    the drift integrated along the recorded path (trapezoid on the recording
    grid) with the model's latent drift ``f_net``. Since spikes never leave the
    latent subspace, the residual is exactly the latent integral of
    ``K (s(t) - phi(x(t))) / tau`` (up to the trapezoid), with no finite-lag
    drift bias. At lags short against the inter-spike interval every spike
    train looks Poisson (``F ~ 1``); over several ``tau`` the low-frequency Fano
    factor shows, which is what the latent SDE feels.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        SDE time per trial.
    lags : sequence of float or None
        In units of ``tau`` (network time); ``None`` means one recording step.
    trials, seed, dt, coupling, progress
        As :func:`simulate_spiking`.
    record_dt : float, optional
        Recording interval, SDE units (default ``tau / 10`` of network time).

    Returns
    -------
    SpikeNoiseMeasurement
    """
    record_dt = record_dt or model.tau / (10 * model.time_scale)
    tr = simulate_spiking(model, duration, dt=dt, record_dt=record_dt, trials=trials, seed=seed, noise="none",
                          coupling=coupling, progress=progress)
    steps = [1 if lag is None else max(1, int(round(lag * model.tau / (model.time_scale * tr.dt)))) for lag in lags]
    steps = [n for n in steps if n < tr.z.shape[1] // 4]
    measured = residual_cov(model, tr, steps)
    est = spike_noise_cov(model, tr.z.reshape(-1, model.dim)).mean(0)
    fano = np.einsum("lab,ab->l", measured, est) / np.sum(est * est)
    ratio = np.diagonal(measured, axis1=1, axis2=2) / np.diag(est)
    return SpikeNoiseMeasurement(np.array(steps) * tr.dt * model.time_scale, measured, est, fano, ratio, tr)


def residual_cov(model, traj, steps):
    r"""Latent diffusion of a trajectory at lags of ``steps`` samples, after removing the model's drift.

    ``Cov[z(t+Delta) - z(t) - int_t^{t+Delta} f_net(z(s)) ds] / Delta`` (SDE units), with
    the model's latent drift ``f_net`` integrated along the recorded path by the
    trapezoid rule, over all overlapping windows of all trials.

    Parameters
    ----------
    model : LatentRNN
    traj : Trajectory
        Recorded finely enough for the trapezoid (e.g. every ``tau / 10``).
    steps : sequence of int
        Lags in samples.

    Returns
    -------
    ndarray (len(steps), d, d)
    """
    z = traj.z
    if not np.isfinite(z).all():
        raise DDMError("the trajectory has non-finite values (the network diverged)")
    f = model.latent_drift(z.reshape(-1, model.dim)).reshape(z.shape)
    cum = np.concatenate([np.zeros_like(z[:, :1]), np.cumsum(0.5 * (f[:, 1:] + f[:, :-1]) * traj.dt, axis=1)],
                         axis=1)
    out = []
    for n in steps:
        res = ((z[:, n:] - z[:, :-n]) - (cum[:, n:] - cum[:, :-n])).reshape(-1, model.dim)
        res = res - res.mean(0)
        out.append(res.T @ res / len(res) / (n * traj.dt))
    return np.array(out)
