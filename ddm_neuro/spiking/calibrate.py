r"""Drift-diffusion matching of the *spiking* network: calibration in the loop.

A rate fit is not enough for a spiking network (issue 5). The rate model's
latent obeys ``tau dy = (-y + K phi(x)) dt``; the spiking network's obeys
exactly ``tau dy = (-y + K s(t)) dt`` (plus injected noise), and the spike
trains ``s`` are not ``phi(x)``: a neuron's membrane filters its input,
regular firing locks to the input's changes, and the rate curve a simulator
realises at its step may differ from the analytic one. On Lorenz (N = 2000,
LIF, noise-free) the rate network stays chaotic while the spiking one spirals
into C+ within ten time units (``benchmarks/spiking_lorenz.py``).

**Estimator** (:func:`bin_errors`, any back end, no spikes needed). Over a
window ``[t_a, t_b]`` of the recorded path the latent equation holds exactly::

    tau (y_b - y_a) / (t_b - t_a) = mean over the window of (K s - y)

so ``tau (dy/L - mean f_y)``, with ``f_y`` averaged along the same path by
the trapezoid rule, is the window average of ``K s - y - tau f_y``: the
network's drift error, without the finite-lag bias of increments compared
with the drift at one point. Spike noise of regularly firing neurons is a
bounded jitter, so its share falls as 1/L; windows of ``2 tau`` are used.
Regressed on a polynomial basis of the window's mean state
(:func:`drift_residual`), ``T S e(z) / tau`` is the network's drift minus the
target's in SDE units; its RMS over the target's attractor relative to
``rms |f|`` is the **systematic drift error** (:func:`systematic_drift_error`).
An Euler-integrated network's own O(h) discretisation error is part of what
it measures (it is part of how that network behaves).

**Calibration** (:func:`calibrate_spiking`): drift-diffusion matching
applied to the spiking network itself. Each round simulates it in many short
runs started on the target's attractor, regresses its drift error there, and
subtracts the decoders of that error from its decoders; iterated until the
measured error stops falling. (An earlier scheme, refitting with the rate
curve measured inside the running network, :func:`effective_rate`, moved
the error only from 8.8 % to 8.1 %: the realised rate curve is not the main
cause.)

**What it achieves** (deterministic Lorenz, N = 2000, measured in
``benchmarks/spiking_lorenz.py``; figures in ``benchmarks/RESULTS_spiking.md``):
the spiking network's systematic drift error on the attractor falls from
about 9 % to below 4 % in two rounds, and the collapse onto C+ that the
uncalibrated network shows in every run becomes rare.

With the model's noise on (``noise="remainder"``, stochastic targets) the
windowed estimator is biased, and the error is measured instead as
``verify`` does, at its lag against the target propagated from the same
states (:mod:`ddm_neuro.lagresidual`); the diffusion error is then cancelled
too, through the model's noise fit.

Use the same simulator and step for calibration and for the runs it is meant
for (``meta["spiking_calibration"]`` records them).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fit import decoders as ridge
from ..errors import DDMError
from .lag_error import lag_residual, relative_cov_error
from ..fit.diffusion import fit_noise_for, target_latent_cov
from ..fit.states import training_states, visited_states
from ..verify.basis import PolyBasis
from ..verify.checks import C_DELTA


def default_degree(d):
    """Polynomial degree of the error regression: 5 (d = 1), 4 (d = 2), 3 (d >= 3)."""
    return {1: 5, 2: 4}.get(d, 3)


def _u_at(model, traj, times):
    """Inputs at ``times`` (SDE units) from the trajectory's recorded input signal, or None."""
    spec = traj.meta.get("input")
    if not model.n_inputs:
        return None
    if spec is None:
        return np.zeros((len(times), model.n_inputs))
    from ..run.inputs import InputSignal

    return np.asarray(InputSignal.from_dict(spec).at(times), dtype=np.float64).reshape(len(times), -1)


def bin_errors(model, sde, traj, lag=None):
    """Per window of ``lag``: the mean state over it and the latent drift error averaged over it.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
        The target.
    traj : Trajectory
        A run of the network (any back end; spikes are not needed).
    lag : int, optional
        Window length in recording steps (default :func:`default_lag`).

    Returns
    -------
    zm : ndarray (M, d)
        Mean state over each window (all trials).
    e : ndarray (M, d)
        ``tau (dy / L - mean f_y)`` over the window, ``y`` units: the window
        average of ``K s - y - tau f_y``.
    """
    trials, n, d = traj.z.shape
    k = default_lag(model, traj) if lag is None else int(lag)
    if k < 1 or n <= k:
        raise DDMError(f"calibration run too short: {n} samples for windows of {k}")
    u = _u_at(model, traj, traj.t)
    fz = sde.drift(traj.z.reshape(-1, d), None if u is None else np.tile(u, (trials, 1))).reshape(trials, n, d)
    m = (n - 1) // k
    idx = np.arange(m) * k
    cs_f = np.concatenate([np.zeros((trials, 1, d)), np.cumsum(0.5 * (fz[:, 1:] + fz[:, :-1]), axis=1)], axis=1)
    cs_z = np.concatenate([np.zeros((trials, 1, d)), np.cumsum(0.5 * (traj.z[:, 1:] + traj.z[:, :-1]), axis=1)],
                          axis=1)
    L = k * traj.dt
    mean_f = (cs_f[:, idx + k] - cs_f[:, idx]) / k
    zm = (cs_z[:, idx + k] - cs_z[:, idx]) / k
    dz = (traj.z[:, idx + k] - traj.z[:, idx]) / L
    e = (dz - mean_f) * (model.tau / (model.scale * model.time_scale))
    return zm.reshape(-1, d), e.reshape(-1, d)


def default_lag(model, traj):
    """Window of the error estimate: about ``2 tau`` of network time, at least one recording step.

    Spike noise of regularly firing neurons is a bounded jitter, so the
    estimate's noise falls as 1/L; the drift error is compared along the same
    path, so a window longer than the recording step adds no finite-lag bias
    (it only smooths ``e(z)`` along the path).
    """
    return max(1, int(round(2 * model.tau / (traj.dt * model.time_scale))))


class DriftResidual:
    """A polynomial fit ``e(z) = psi(z) C`` of the spiking network's latent drift error (``y`` units).

    Attributes
    ----------
    basis : PolyBasis
    coef : ndarray (n_basis, d)
    se : ndarray (n_basis, d)
        Standard errors of the coefficients (from the residuals, bins treated
        as independent; an underestimate where errors are correlated over bins).
    """

    def __init__(self, basis, coef, se):
        self.basis, self.coef, self.se = basis, coef, se

    def __call__(self, z):
        return self.basis(z) @ self.coef


def drift_residual(model, sde, traj, degree=None, lag=None):
    """Regress the windowed latent drift error of a run (:func:`bin_errors`) on a polynomial basis.

    Returns
    -------
    DriftResidual
    """
    z0, e = bin_errors(model, sde, traj, lag)
    keep = np.isfinite(z0).all(1) & np.isfinite(e).all(1)
    z0, e = z0[keep], e[keep]
    basis = PolyBasis.fit_to(z0, default_degree(model.dim) if degree is None else degree)
    P = basis(z0)
    if len(P) < 4 * P.shape[1]:
        raise DDMError(f"calibration run too short: {len(P)} bins for {P.shape[1]} basis functions")
    coef, *_ = np.linalg.lstsq(P, e, rcond=None)
    res = e - P @ coef
    cov = np.linalg.pinv(P.T @ P)
    se = np.sqrt(np.outer(np.diag(cov), (res ** 2).mean(0)))
    return DriftResidual(basis, coef, se)


def systematic_drift_error(model, sde, residual, z, u=None):
    """RMS of the spiking network's drift error ``T S e(z) / tau`` over states ``z``, relative to ``rms |f|``.

    ``u``: the constant input (k,) the target's drift is taken at (default zero).
    """
    err = residual(z) * (model.scale * model.time_scale / model.tau)
    if model.n_inputs:
        u = np.broadcast_to(np.zeros(model.n_inputs) if u is None else np.asarray(u, dtype=np.float64),
                            (len(z), model.n_inputs))
    f = sde.drift(z, u if model.n_inputs else None)
    return float(math.sqrt((err ** 2).sum(1).mean() / (f ** 2).sum(1).mean()))


def _trial_halves(traj):
    """The run's first and second half of trials, as two Trajectories (for split-half noise)."""
    from ..trajectory import Trajectory

    h = traj.trials // 2
    return [Trajectory(t=traj.t, z=zz, dt=traj.dt, meta=traj.meta) for zz in (traj.z[:h], traj.z[h:])]


def split_half_noise(model, sde, traj, z, degree=None, u=None):
    """Noise of :func:`systematic_drift_error` for a run: the error between its two halves' trials, halved."""
    halves = [drift_residual(model, sde, half, degree) for half in _trial_halves(traj)]
    return systematic_drift_error(model, sde, lambda q: (halves[0](q) - halves[1](q)) / 2, z, u)


def _training(model, sde, visited, n, rng):
    """Training states: the target's (with the fit's margins) and the spiking network's visited states."""
    z_vis, u_vis, _ = visited_states(sde, rng, trials=16, records=1000, batches=2)
    n_spk = min(len(visited), n // 4)
    sample = training_states(z_vis, u_vis, sde, model.center, model.scale, n - n_spk, rng)
    z = np.concatenate([sample.z, visited[rng.choice(len(visited), n_spk, replace=False)]])
    u = np.concatenate([sample.u, np.zeros((n_spk, sample.u.shape[1]))]) if model.n_inputs else None
    return z, u, z_vis


RATE_EDGES = np.array([0.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, np.inf])
SUB_EDGES = np.array([0.6, 0.8, 0.9, 0.95, 1.0])


class EffectiveRate:
    """The rate curve the spiking network realises: ``phi_eff(x) = c(phi(x)) phi(x)`` (+ ``a(x)`` below threshold).

    ``c`` is the ratio of spikes counted to ``integral phi(x(t)) dt`` over
    windows, pooled over all neurons by the predicted rate (``RATE_EDGES``,
    linear interpolation between bin centres); ``a`` the rate of windows whose
    predicted rate is zero, by their mean input (``SUB_EDGES``, threshold 1).
    All neurons share the normalised LIF curve, so one correction serves all.
    """

    def __init__(self, neuron, rate_centres, ratio, sub_centres, sub_rate):
        self.neuron = neuron
        self.rate_centres, self.ratio = rate_centres, ratio
        self.sub_centres, self.sub_rate = sub_centres, sub_rate

    def __call__(self, x, xp=np):
        x = np.asarray(x)
        r = self.neuron.phi(x)
        out = r * np.interp(r, self.rate_centres, self.ratio)
        if len(self.sub_centres):
            out = out + np.where(r > 0, 0.0, np.interp(x, self.sub_centres, self.sub_rate, left=0.0, right=0.0))
        return out

    def to_dict(self):
        """JSON-able form (for the model's meta)."""
        return {"rate_hz": self.rate_centres.tolist(), "ratio": self.ratio.tolist(),
                "sub_threshold_x": self.sub_centres.tolist(), "sub_threshold_rate_hz": self.sub_rate.tolist()}


def effective_rate(model, traj, window=None):
    """Measure the realised rate curve of a spiking run (recorded spikes needed).

    Parameters
    ----------
    model : LatentRNN
    traj : Trajectory
        With ``spikes_t``, ``spikes_i``; inputs ``x(t)`` are rebuilt from ``z(t)``
        (exact for the torch and Brian2 spiking networks: off the latent
        subspace ``x`` sits at ``b + B u``).
    window : int, optional
        Window in recording steps (default about ``tau``).

    Returns
    -------
    EffectiveRate
    """
    if traj.spikes_t is None:
        raise DDMError("measuring the realised rate curve needs recorded spikes (record_spikes=True)")
    trials, n, d = traj.z.shape
    N = model.n_neurons
    k = window or max(1, int(round(model.tau / (traj.dt * model.time_scale))))
    m = (n - 1) // k
    h = traj.dt * model.time_scale
    u = _u_at(model, traj, traj.t)
    pred_all, cnt_all, xm_all = [], [], []
    for i in range(trials):
        x = model.neuron_inputs(traj.z[i], u)
        ph = model.neuron.phi(x)
        cs = np.concatenate([np.zeros((1, N)), np.cumsum(0.5 * (ph[1:] + ph[:-1]), axis=0) * h])
        cx = np.concatenate([np.zeros((1, N)), np.cumsum(0.5 * (x[1:] + x[:-1]), axis=0)])
        idx = np.arange(m) * k
        pred_all.append((cs[idx + k] - cs[idx]).ravel())
        xm_all.append(((cx[idx + k] - cx[idx]) / k).ravel())
        sel = (traj.spikes_i // N) == i
        w = (traj.spikes_t[sel] / (k * traj.dt)).astype(np.int64)
        ok = w < m
        cnt_all.append(np.bincount(w[ok] * N + traj.spikes_i[sel][ok] % N, minlength=m * N).astype(float))
    pred, cnt, xm = (np.concatenate(a) for a in (pred_all, cnt_all, xm_all))
    L = k * h
    rate = pred / L
    centres, ratio = [], []
    for lo, hi in zip(RATE_EDGES[:-1], RATE_EDGES[1:]):
        s = (rate > lo) & (rate <= hi)
        if s.sum() >= 50 and pred[s].sum() > 20:
            centres.append(float(np.average(rate[s], weights=pred[s])))
            ratio.append(float(cnt[s].sum() / pred[s].sum()))
    if not centres:
        raise DDMError("calibration run too short: no window with enough predicted spikes")
    sub_c, sub_r = [], []
    zero = pred == 0
    for lo, hi in zip(SUB_EDGES[:-1], SUB_EDGES[1:]):
        s = zero & (xm > lo) & (xm <= hi)
        if s.sum() >= 50:
            sub_c.append(float(xm[s].mean()))
            sub_r.append(float(cnt[s].sum() / (s.sum() * L)))
    return EffectiveRate(model.neuron, np.array(centres), np.array(ratio), np.array(sub_c), np.array(sub_r))


def _solve(model, z, u, lam, target, rate=None):
    """Ridge decoders (d, N) of ``target`` (y units) from the rates ``rate(x(z, u))`` (default ``phi``)."""
    x = model.neuron_inputs(z, u)
    phi = torch.as_tensor(rate(x) if rate is not None else model.neuron.phi(x))
    G, R = ridge.gram(lambda rows: phi[rows], torch.as_tensor(target))
    return ridge.solve(G, R, lam)[0].numpy().copy()


def _with_decoders(model, sde, K, z, u, cov_offset=None):
    """A copy of ``model`` with decoders ``K`` and its noise refitted for them.

    ``cov_offset(z)`` (``y`` units per second, (M, d, d)), if given, is
    subtracted from the target's latent covariance before the noise is fitted
    (eigenvalues floored at 5 % of the target's: a covariance stays one).
    """
    new = copy.deepcopy(model)
    new.decoders = K
    n_noise = min(300, len(z))
    C = target_latent_cov(sde, z[:n_noise], model.scale, model.time_scale)
    if cov_offset is not None:
        C = _psd_floor(C - cov_offset(z[:n_noise]), C)
    a, c, L, _ = fit_noise_for(sde, new.decoders / model.tau, lambda: model.neuron.activity(
        model.neuron_inputs(z[:n_noise], None if u is None else u[:n_noise])), C)
    new.noise_act, new.noise_const, new.noise_latent = np.asarray(a), np.asarray(c), np.asarray(L)
    return new


def _psd_floor(A, C, share=0.05):
    """``A`` with its eigenvalues raised to at least ``share`` of ``C``'s smallest, per state."""
    vals, vecs = np.linalg.eigh(0.5 * (A + np.swapaxes(A, -1, -2)))
    floor = share * np.linalg.eigvalsh(C)[..., :1]
    return np.einsum("mij,mj,mkj->mik", vecs, np.maximum(vals, floor), vecs)


def refit_decoders(model, sde, z, u, lam, rate=None):
    """Decoders of ``model``'s neurons for ``y + tau f_y`` with the rate curve ``rate`` (ridge, lambda ``lam``).

    Parameters
    ----------
    rate : callable, optional
        ``rate(x)`` in Hz; default the model's ``phi``.

    Returns a copy of ``model`` with the new decoders and its noise refitted.
    """
    y = (z - model.center) / model.scale
    target = y + sde.drift(z, u) * (model.tau / (model.scale * model.time_scale))
    return _with_decoders(model, sde, _solve(model, z, u, lam, target, rate), z, u)


def _noisy_errors(model, sde, traj, z_eval, degree, rng, u=None, delta=None):
    """Lag residual of a noisy run, its drift and covariance errors, each with its split-half noise."""
    res = lag_residual(model, sde, traj, degree, rng, delta=delta)
    halves = [lag_residual(model, sde, half, degree, rng, delta=delta) for half in _trial_halves(traj)]
    diff_drift = lambda q: (halves[0](q) - halves[1](q)) / 2  # noqa: E731
    diff_cov = lambda q: (halves[0].cov(q) - halves[1].cov(q)) / 2  # noqa: E731
    drift = (systematic_drift_error(model, sde, res, z_eval, u),
             systematic_drift_error(model, sde, diff_drift, z_eval, u))
    cov = (relative_cov_error(model, sde, res.cov, z_eval), relative_cov_error(model, sde, diff_cov, z_eval))
    return res, drift, cov


def _summed_cov(offsets):
    """``sum_i damping_i * residual_i.cov(z)``: the covariance corrections of all rounds so far."""
    return lambda z: sum(w * res.cov(z) for w, res in offsets)


def fixed_point_states(sde, z_vis, rng, u0=None, starts=64, spread=0.15, n=4000):
    """States scattered around the target's fixed points within its visited region.

    Fixed points from :func:`ddm_neuro.foci.fixed_points` (root-finding from
    ``starts`` visited states, kept inside the visited bounding box); around
    each, Gaussian offsets with ``spread`` times the visited states'
    per-coordinate std. Returns (M, d), empty if none was found.
    """
    from .unstable_foci import fixed_points

    found = fixed_points(sde, z_vis, rng, u0, starts)
    if not len(found):
        return np.zeros((0, z_vis.shape[1]))
    centres = found[rng.integers(len(found), size=n)]
    return centres + rng.normal(size=centres.shape) * spread * z_vis.std(0)


def _constant_input(model, u):
    """``(u0, signal)``: the calibration's constant input (k,) and its InputSignal; ``(None, None)`` without inputs."""
    if not model.n_inputs:
        if u is not None:
            raise DDMError("this model has no inputs; calibrate it without an input")
        return None, None
    from ..run.inputs import InputSignal

    u0 = np.zeros(model.n_inputs) if u is None else np.atleast_1d(np.asarray(u, dtype=np.float64)).ravel()
    if u0.shape != (model.n_inputs,) or not np.all(np.isfinite(u0)):
        raise DDMError(f"calibration input must be {model.n_inputs} finite number(s) "
                       f"({', '.join(model.inputs)}), got {np.shape(u)}")
    return u0, InputSignal.constant(u0)


def _attractor(sde, rng, signal):
    """The target's visited states (M, d), at the constant input ``signal`` if given (first 20 % dropped)."""
    if signal is None:
        return visited_states(sde, rng, trials=16, records=1000, batches=2)[0]
    from ..fit.states import default_steps
    from ..run.target import simulate_sde

    dt, rec = default_steps(sde)
    tr = simulate_sde(sde, 1000 * rec, dt=dt, record_dt=rec, trials=32, seed=rng, u=signal, burn_in=0.0)
    return tr.z[:, int(0.2 * len(tr.t)):].reshape(-1, sde.dim)


def calibrate_spiking(model, sde, *, rounds=6, duration=1.0, trials=128, dt=None, noise="none",
                      coupling=None, seed=0, degree=None, damping=1.0, patience=2, n_train=20000,
                      backend="torch", u=None, near_fixed_points=0.0, progress=False):
    """Calibrate a LIF model's spiking network in the loop: cancel its measured drift (and diffusion) error.

    Each round simulates the current spiking network in many short runs
    started on the target's attractor (the first ``2 tau`` of each dropped:
    membranes start at random phases), measures its drift error there
    (:func:`drift_residual`, against the *target's* drift), and subtracts
    from the decoders the ridge decoders of ``damping`` times that error
    (``K <- K - damping * solve(phi, e)``, the fit's lambda; encoders, gains,
    biases and tau kept). Decoders are linear in their target, so after
    ``r`` rounds the network is the rate fit to ``f - c`` with ``c`` the
    summed measured errors. The spiking error changes with the decoders, so
    this is iterated; the round with the smallest measured error is kept.
    The loop stops after ``patience`` rounds without improvement, or when
    the measured error is within twice its own split-half noise (cancelling
    noise would only add it to the decoders: use more or longer runs). With
    ``noise="remainder"`` a round is better when the larger of its drift and
    diffusion errors, each relative to the uncalibrated network's, is
    smaller (a round that buys diffusion with drift is not kept), and all
    rounds measure at one lag: the one ``verify`` would choose on the
    target's attractor.

    Parameters
    ----------
    model : LatentRNN
        A LIF model (``fit --neuron lif``).
    sde : SDE
        Its target.
    rounds : int
        Most simulate-measure-refit rounds (round 0 measures the model as given).
    duration, trials : float, int
        Each round's spiking runs (SDE units, before the dropped ``2 tau``).
    dt : float, optional
        Integration step of the spiking simulator (SDE units; default 0.1 ms).
    noise : {"none", "remainder"}
        Noise of the calibration runs. ``"none"``: the noise-free network,
        measured with the windowed estimator (:func:`drift_residual`), which
        needs noise-free runs (regressing a window's increment on its mean
        state is biased by the diffusion inside it: the double well with its
        remainder noise read as a 110 % drift error). ``"remainder"``: the
        model's noise on (what a stochastic target's network runs with);
        drift *and* diffusion are measured at the verifier's lag against the
        target propagated from the same states (:mod:`ddm_neuro.lagresidual`,
        unbiased under noise), the drift error is cancelled through the
        decoders and the covariance error through the noise fit (the model's
        noise is refitted to the target's covariance minus the summed measured
        excess). Use it for stochastic targets: with noise, LIF membranes
        filter a fluctuating input and the network's drift differs from its
        noise-free drift (double well: calibrated noise-free to 3.2 %, verify
        still failed). Runs should then be long (the error's noise falls with
        the total simulated time): e.g. 32 x 125 time units.
    coupling : {"factored", "dense"}, optional
        Default: the back end's own (torch: factored; Brian2: by size; the NIR
        consumers run the graph's dense recurrent weights).
    seed : int
    degree : int, optional
        Degree of the error regression (default :func:`default_degree`).
    damping : float
        Share of each round's measured error added to the correction (0 < damping <= 1).
    patience : int
        Rounds without improvement before stopping.
    n_train : int
        States the decoders are re-solved on (the target's, with the fit's
        margins, and a quarter from the spiking runs).
    backend : str
        Spiking simulator of the calibration runs: ``"torch"`` or an installed
        back end with a spiking mode that takes start states (``brian2``,
        ``brian2-cpp``). Calibrate with the simulator the model will run on: the
        correction is specific to it.

    u : array (k,), optional
        Constant input of the calibration runs, for models with inputs (default
        zero); the target's attractor and drift are taken at it. The
        correction is measured there and applied at all inputs: calibrate at
        the input the network is meant to run at.
    near_fixed_points : float
        Share of each round's runs started near the target's fixed points
        (:func:`fixed_point_states`) instead of on its attractor. A chaotic
        attractor never visits the holes around its unstable fixed points
        (Lorenz's C+-), so neither do runs started on it, and an error there
        goes unmeasured; yet that is where a spiking Lorenz collapses. (Measured
        on Lorenz it made the error larger; :func:`ddm_neuro.foci.calibrate_foci`,
        which tests the escape from those foci directly, is what removed the
        collapse.)
    Returns
    -------
    LatentRNN
        The best round's model; ``meta["spiking_calibration"]`` holds each
        round's measured systematic drift error (relative, on the target's
        attractor) with its split-half noise, and the settings. Inputs are
        held at zero during calibration (models with inputs are calibrated at
        ``u = 0`` only).
    """
    from ..backends import get_backend
    from ..trajectory import Trajectory

    run = get_backend(backend, "spiking")  # unknown or not installed: a clear error before anything runs
    if model.neuron.name != "lif":
        raise DDMError(f"spiking calibration needs LIF neurons (this model has {model.neuron.name!r}; "
                       "fit with --neuron lif)")
    if int(rounds) < 1 or int(patience) < 1:
        raise DDMError(f"rounds and patience must be >= 1 (got {rounds}, {patience})")
    if not 0 < damping <= 1:
        raise DDMError(f"damping must be in (0, 1] (got {damping})")
    if not 0 <= near_fixed_points < 1:
        raise DDMError(f"near_fixed_points is a share of the runs, in [0, 1) (got {near_fixed_points})")
    if int(trials) < 4:
        raise DDMError(f"trials must be >= 4 (the error's split-half noise needs them; got {trials})")
    lam = float(model.meta.get("fit", {}).get("ridge_lambda") or 0.0)
    if lam <= 0:
        raise DDMError("the model records no ridge lambda (meta.fit.ridge_lambda); refit it with ddm_neuro.fit")
    noisy = noise != "none"
    deg = default_degree(model.dim) if degree is None else int(degree)
    u0, signal = _constant_input(model, u)
    rng = np.random.default_rng(seed)
    z_vis = _attractor(sde, rng, signal)
    if noisy:  # increments at about the verifier's lag (lagresidual)
        window = C_DELTA / max(sde.characteristic_rate(z_vis[:2000], u0), 1e-6)  # as verify's choose_lag
        what = "increments at the verifier's lag"
    else:
        window, what = 2 * model.tau / model.time_scale, "windows of 2 tau"  # SDE units, as default_lag
    n_basis = math.comb(model.dim + deg, model.dim)
    bins = (int(trials) // 2) * int(duration / window)
    if bins < 4 * n_basis:
        need = math.ceil(4 * n_basis / max(int(duration / window), 1)) * 2
        raise DDMError(f"calibration runs too short: {int(trials) // 2} runs x {duration:g} time units give {bins} "
                       f"{what} ({window:.3g} time units) per half, and the error regression needs "
                       f"{4 * n_basis}; use trials >= {need} or a longer duration")
    z_eval = z_vis[rng.choice(len(z_vis), min(5000, len(z_vis)), replace=False)]
    skip_t = 2 * model.tau / model.time_scale
    n_near, near = 0, None
    if near_fixed_points > 0:
        near = fixed_point_states(sde, z_vis, rng, u0)
        n_near = int(round(float(near_fixed_points) * int(trials))) if len(near) else 0
    history, best, stop, offsets = [], None, None, []
    current, z_train, u_train = model, None, None
    bar = tqdm(total=int(rounds), desc="calibrate spiking", disable=not progress)
    for r in range(int(rounds)):
        starts = z_vis[rng.choice(len(z_vis), int(trials))]
        if n_near:
            starts[:n_near] = near[rng.choice(len(near), n_near)]
        traj = run(current, duration + skip_t, trials=int(trials), seed=int(rng.integers(2 ** 31)), u=signal,
                   mode="spiking", progress=False, z0=starts, dt=dt, noise=noise,
                   **({} if coupling is None else {"coupling": coupling}))
        k = int(np.searchsorted(traj.t, skip_t - 1e-12))
        traj = Trajectory(t=traj.t[k:] - traj.t[k], z=traj.z[:, k:], dt=traj.dt, meta=traj.meta)
        entry = {"round": r, "mean_rate_hz": traj.meta.get("mean_rate_hz")}
        if noisy:
            res, (err, noise_err), (cov_err, cov_noise) = _noisy_errors(current, sde, traj, z_eval, deg, rng, u0,
                                                                        window)
            entry.update(diffusion_error=cov_err, diffusion_split_half_noise=cov_noise, lag=res.delta,
                         verify_lag=res.verify_delta)
            if not history:
                first = (max(err, 1e-12), max(cov_err, 1e-12))
            # the worse of the two errors relative to the uncalibrated network's: a round that buys
            # diffusion with drift (or the reverse) is not better
            score = max(err / first[0], cov_err / first[1])
            settled = err < 2 * noise_err and cov_err < 2 * cov_noise
        else:
            res = drift_residual(current, sde, traj, degree)
            err = systematic_drift_error(current, sde, res, z_eval, u0)
            noise_err = split_half_noise(current, sde, traj, z_eval, degree, u0)
            score, settled = err, err < 2 * noise_err
        entry.update(systematic_drift_error=err, split_half_noise=noise_err)
        history.append(entry)
        bar.update()
        bar.set_postfix(err=f"{err:.3g}")
        if best is None or score < best[0]:
            best = (score, current, r)
        elif r - best[2] >= int(patience):
            stop = f"no improvement for {int(patience)} rounds"
            break
        if r == int(rounds) - 1:
            break
        if settled:  # what is left is mostly estimation noise: cancelling it would add noise
            stop = "the measured error is within twice its split-half noise"
            break
        if z_train is None:
            z_train, u_train, _ = _training(model, sde, traj.z.reshape(-1, model.dim), n_train, rng)
        step = _solve(current, z_train, u_train, lam, res(z_train))
        if noisy:
            offsets.append((float(damping), res))
        current = _with_decoders(current, sde, current.decoders - float(damping) * step, z_train, u_train,
                                 _summed_cov(offsets) if offsets else None)
    bar.close()
    out = copy.deepcopy(best[1])
    out.meta["spiking_calibration"] = {
        "method": "drift cancellation", "simulator": backend, "dt": dt, "noise": noise,
        "coupling": coupling or traj.meta.get("coupling"),
        "duration": duration, "trials": int(trials), "rounds": history, "best_round": best[2],
        "degree": degree, "damping": damping, "seed": seed, "input": None if u0 is None else u0.tolist(),
        "near_fixed_points": float(near_fixed_points), "stopped": stop or "rounds done",
        "systematic_drift_error": history[best[2]]["systematic_drift_error"],
        "systematic_drift_error_uncalibrated": history[0]["systematic_drift_error"],
        "estimator": "lag residual against the propagated target" if noisy else "windowed, noise-free",
    }
    return out
