r"""Latent noise that spikes add, and the remainder a spiking run injects.

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

import numpy as np

from ..errors import DDMError


class SpikeNoiseWarning(UserWarning):
    """Spikes alone are noisier than the model's target diffusion in some latent direction."""


def check_fano(model, fano):
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


def fano_at(model, fano, z, u=None, lag=None):
    """Fano factors at states z, (M, N): ``"regular"`` is :func:`regular_fano` over ``lag`` SDE time units
    (default one)."""
    F = check_fano(model, fano)
    lag = 1.0 if lag is None else float(lag)
    return regular_fano(model, z, lag * model.time_scale, u) if isinstance(F, str) else F


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


def spike_noise_excess(model, fano=1.0, z=None, u=None, lag=None):
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
    lag : float, optional
        With ``fano="regular"``: the window the spikes are counted over, SDE time units (default one; regular
        firing's apparent diffusion falls as ``1/lag``, so pass the lag ``verify`` judges at,
        :func:`verify_lag`, to predict what it sees).

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
    F = fano_at(model, fano, z, u, lag)
    c_spk = spike_noise_cov(model, z, u, F).mean(0)
    c_mod = model.latent_cov(z, u).mean(0)
    x = model.neuron_inputs(z, u)
    s2 = np.maximum(model.noise_var(x), model.neuron.phi(x) * F)
    c_tot = np.einsum("an,mn,bn->ab", model.decoders, s2, model.decoders) / len(z) / model.tau ** 2
    c_tot = model.time_scale * (c_tot + model.noise_latent @ model.noise_latent.T) \
        * model.scale[:, None] * model.scale[None, :]

    ratio, direction = worst_ratio(c_spk, c_mod)
    ratio_t, direction_t = worst_ratio(c_tot, c_mod)
    lam = max(ratio, 1.0)
    finite = lam < 1e6  # beyond this the target has (almost) no diffusion there: no N or tau is sensible
    return {"ratio": ratio, "direction": direction, "ratio_total": ratio_t, "direction_total": direction_t,
            "c_spike": c_spk, "c_model": c_mod, "c_total": c_tot,
            "spike_var": float(direction @ c_spk @ direction),
            "n_needed": int(math.ceil(lam * model.n_neurons)) if finite else None,
            "tau_needed": lam * model.tau if finite else None,
            "tau_needed_fixed_T": math.sqrt(lam) * model.tau if finite else None}


def worst_ratio(A, C):
    """Largest generalised eigenvalue of covariance ``A`` against ``C`` and its direction (unit vector).

    ``A w = lam C w``: how many times ``C`` the covariance ``A`` is along the direction where that is
    largest. A ``C`` without any variance (a deterministic target) gives infinity wherever ``A`` has some.
    """
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


def verify_lag(sde, z, u=None):
    """The lag (SDE time units) at which ``verify`` judges runs of ``sde`` visiting states ``z``: the verifier's
    rule, ``C_DELTA`` over the target's characteristic rate (:mod:`ddm_neuro.verify.checks`)."""
    from ..verify.checks import C_DELTA

    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    uu = None if u is None else np.broadcast_to(np.asarray(u, dtype=np.float64), (len(z), sde.n_inputs))
    return C_DELTA / max(sde.characteristic_rate(z, uu), 1e-6)


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
