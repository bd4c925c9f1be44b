r"""Drift-diffusion matching of the *spiking* network: the drift (and diffusion) calibration loop.

**The loop** (:func:`calibrate_spiking`). Each round simulates the current
spiking network in many short runs started on the target's attractor (the
first ``2 tau`` of each dropped: membranes start at random phases), measures
its error there against the target, and subtracts from the decoders the ridge
decoders of ``damping`` times that error (``K <- K - damping * solve(phi, e)``
at the fit's lambda; encoders, gains, biases and tau kept). Decoders are
linear in their target, so after ``r`` rounds the network is the rate fit to
``f - c`` with ``c`` the summed measured errors. The spiking error changes
with the decoders, so this is iterated; the round with the best score is
kept. The loop stops after ``patience`` rounds without improvement, or when
the measured error is within twice its own split-half noise (cancelling
noise would only add it to the decoders: use more or longer runs).

**Strategies**, one per noise setting of the runs, each owning its measurement
and its correction:

* :class:`NoiseFreeDrift` (``noise="none"``): the noise-free network's drift
  error from windows of ``2 tau`` (:mod:`ddm_neuro.spiking.window_error`),
  cancelled through the decoders; a round's score is its drift error.
* :class:`NoisyDriftDiffusion` (``noise="remainder"``): the network with its
  noise on (what a stochastic target's network runs with). With noise, LIF
  membranes filter a fluctuating input and the network's drift differs from
  its noise-free drift, and the windowed estimator is biased by the diffusion
  inside a window; drift *and* diffusion are measured instead as ``verify``
  does, at its lag on the target's attractor, against the target propagated
  from the same states (:mod:`ddm_neuro.spiking.lag_error`). The drift error
  is cancelled through the decoders and the covariance error through the noise
  fit (the noise is refitted to the target's covariance minus the summed
  measured excess). A round's score is the larger of its drift and diffusion
  errors, each relative to the uncalibrated network's (a round that buys
  diffusion with drift is not kept).

**What it achieves** (deterministic Lorenz, N = 2000, measured with
``benchmarks/spiking_lorenz.py``): the spiking network's systematic drift
error on the attractor falls from about 9 % to below 4 % in two rounds, and
the collapse onto C+ that the uncalibrated network shows in every run becomes
rare.

Use the same simulator and step for calibration and for the runs it is meant
for (``meta["spiking_calibration"]`` records them).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .. import plugins
from ..errors import DDMError
from ..fit.decoders import fit_lambda, resolve_decoders, with_decoders
from ..run.inputs import InputSignal
from ..run.plan import constant_input
from ..trajectory import Trajectory
from ..verify.basis import degree_for
from ..verify.checks import C_DELTA
from .lag_error import lag_residual, relative_cov_error
from .states import attractor_states, mixed_training_states
from .window_error import ERROR_DEGREES, drift_residual, split_half_noise, systematic_drift_error, trial_halves


#: States around an input level's attractor are jittered by this share of the latent scale (as the fit's margins).
JITTER = 0.1
#: Why a calibration stopped when what it measured was within twice its split-half noise (nothing corrected).
SETTLED = "the measured error is within twice its split-half noise"


@dataclass
class Measurement:
    """What a strategy measured in one round.

    Attributes
    ----------
    residual : callable
        The error ``e(z)`` (``y`` units) that the correction cancels.
    entry : dict
        The round's record (``systematic_drift_error``, ``split_half_noise``, ...).
    score : float
        Smaller is better; the best round is kept.
    settled : bool
        The measured error is within its own noise: correcting it would add noise.
    """

    residual: object
    entry: dict
    score: float
    settled: bool


def _decoder_step(model, measured, z, u, lam, damping):
    """``K - damping * solve(phi, e)``: the decoders with ``damping`` times the measured error cancelled."""
    return model.decoders - float(damping) * resolve_decoders(model, z, u, measured.residual(z), lam)


class NoiseFreeDrift:
    """The noise-free network's drift error, windowed estimator; cancelled through the decoders.

    A strategy is what the loop of :func:`calibrate_spiking` calls: ``noise``
    (the runs' noise), ``estimator`` and ``piece`` (words for the record and
    for messages), ``window(model, sde, z_vis, u0)`` (the length of one
    measured piece of a run, SDE units, for the up-front run-length check),
    ``measure(model, sde, traj, z_eval, rng, u0) -> Measurement`` and
    ``correct(model, sde, measured, z, u, lam, damping) -> LatentRNN``.

    Parameters
    ----------
    degree : int
        Degree of the error regression.
    """

    noise = "none"
    estimator = "windowed, noise-free"
    piece = "windows of 2 tau"

    def __init__(self, degree):
        self.degree = int(degree)

    def window(self, model, sde, z_vis, u0):
        """Length of one measured piece of a run (SDE units): ``2 tau`` of network time."""
        return 2 * model.tau / model.time_scale

    def measure(self, model, sde, traj, z_eval, rng, u0):
        """Drift error on ``z_eval`` (:func:`~.window_error.drift_residual`) and its split-half noise."""
        res = drift_residual(model, sde, traj, self.degree)
        err = systematic_drift_error(model, sde, res, z_eval, u0)
        noise = split_half_noise(model, sde, traj, z_eval, self.degree, u0)
        return Measurement(res, {"systematic_drift_error": err, "split_half_noise": noise}, err, err < 2 * noise)

    def correct(self, model, sde, measured, z, u, lam, damping):
        """The model with the measured drift error cancelled (noise refitted for the new decoders)."""
        return with_decoders(model, sde, _decoder_step(model, measured, z, u, lam, damping), z, u)


class NoisyDriftDiffusion:
    """Drift and diffusion errors of the noisy network at the verifier's lag; cancelled through decoders and noise.

    Parameters
    ----------
    degree : int
        Degree of the error regressions.
    noise : str
        The noise of the calibration runs (``"remainder"``: the model's noise on).
    """

    estimator = "lag residual against the propagated target"
    piece = "increments at the verifier's lag"

    def __init__(self, degree, noise="remainder"):
        self.degree, self.noise = int(degree), noise
        self.delta = None     # the lag of every round: verify's on the target's attractor
        self.first = None     # round 0's drift and diffusion errors (the scores' units)
        self.offsets = []     # (damping, residual) of every correction so far

    def window(self, model, sde, z_vis, u0):
        """The lag ``verify`` would choose on the target's attractor (SDE units), kept for every round."""
        self.delta = C_DELTA / max(sde.characteristic_rate(z_vis[:2000], u0), 1e-6)  # as verify's choose_lag
        return self.delta

    def measure(self, model, sde, traj, z_eval, rng, u0):
        """Lag residual of the run, its drift and covariance errors on ``z_eval``, each with its split-half noise."""
        res = lag_residual(model, sde, traj, self.degree, rng, delta=self.delta)
        halves = [lag_residual(model, sde, half, self.degree, rng, delta=self.delta) for half in trial_halves(traj)]
        err = systematic_drift_error(model, sde, res, z_eval, u0)
        noise = systematic_drift_error(model, sde, lambda q: (halves[0](q) - halves[1](q)) / 2, z_eval, u0)
        cov_err = relative_cov_error(model, sde, res.cov, z_eval)
        cov_noise = relative_cov_error(model, sde, lambda q: (halves[0].cov(q) - halves[1].cov(q)) / 2, z_eval)
        if self.first is None:
            self.first = (max(err, 1e-12), max(cov_err, 1e-12))
        entry = {"diffusion_error": cov_err, "diffusion_split_half_noise": cov_noise, "lag": res.delta,
                 "verify_lag": res.verify_delta, "systematic_drift_error": err, "split_half_noise": noise}
        score = max(err / self.first[0], cov_err / self.first[1])
        return Measurement(res, entry, score, err < 2 * noise and cov_err < 2 * cov_noise)

    def correct(self, model, sde, measured, z, u, lam, damping):
        """The model with the drift error cancelled and its noise refitted to the target's minus all measured excess."""
        step = _decoder_step(model, measured, z, u, lam, damping)
        self.offsets.append((float(damping), measured.residual))
        offsets = list(self.offsets)
        return with_decoders(model, sde, step, z, u, lambda q: sum(w * res.cov(q) for w, res in offsets))


def strategy_for(noise, degree):
    """The calibration strategy for runs with ``noise``.

    Parameters
    ----------
    noise : str
        ``"none"``: :class:`NoiseFreeDrift`; anything else (``"remainder"``,
        ``"model"``): :class:`NoisyDriftDiffusion` with that noise.
    degree : int
        Degree of the error regression.

    Returns
    -------
    NoiseFreeDrift or NoisyDriftDiffusion
    """
    return NoiseFreeDrift(degree) if noise == "none" else NoisyDriftDiffusion(degree, noise)


def calibrate_spiking(model, sde, *, rounds=6, duration=1.0, trials=128, noise="none", damping=1.0, seed=0,
                      backend="torch", u=None, levels=None, progress=False, degree=None, patience=2,
                      n_train=20000, **run_options):
    """Calibrate a LIF model's spiking network in the loop: cancel its measured drift (and diffusion) error.

    See the module docstring for the loop and its two strategies.

    Parameters
    ----------
    model : LatentRNN
        A LIF model (``fit --neuron lif``).
    sde : SDE
        Its target.
    rounds : int
        Most simulate-measure-correct rounds (round 0 measures the model as given).
    duration, trials : float, int
        Each round's spiking runs (SDE units, before the dropped ``2 tau``).
        With noise the error's noise falls with the total simulated time, so
        runs should then be long: e.g. 32 x 125 time units.
    noise : {"none", "remainder"}
        Noise of the calibration runs, and with it the strategy:
        ``"none"``: :class:`NoiseFreeDrift` (deterministic targets);
        ``"remainder"``: :class:`NoisyDriftDiffusion` (stochastic targets).
    damping : float
        Share of each round's measured error added to the correction (0 < damping <= 1).
    seed : int
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
    levels : list of array (k,), optional
        Several constant inputs, instead of ``u``: each round runs ``trials``
        runs at each, measures the error at each on the target's attractor
        there, and cancels each input's error at that input (an input-driven
        target's error differs between its inputs, and a correction measured
        at one does not carry to the others). A round's score is the worst
        input's; its record holds every input's entry under ``levels``.
    progress : bool
    degree : int, optional
        Degree of the error regression (default
        ``degree_for(d, ERROR_DEGREES)``: 5, 4, 3 for d = 1, 2, >= 3).
    patience : int
        Rounds without improvement before stopping.
    n_train : int
        States the decoders are re-solved on (the target's, with the fit's
        margins, and a quarter from the spiking runs).
    **run_options
        Passed to the simulator: ``dt`` (integration step, SDE units; default
        0.1 ms), ``coupling`` (default the back end's own), ...

    Returns
    -------
    LatentRNN
        The best round's model; ``meta["spiking_calibration"]`` holds each
        round's measured systematic drift error (relative, on the target's
        attractor) with its split-half noise (and, with noise, the diffusion
        error and the lag), and the settings.

    Raises
    ------
    DDMError
        Not a LIF model, bad settings, runs too short for the error regression
        (before anything runs), an unknown back end.
    """
    plugins.get("simulator", backend, "spiking")  # an unknown back end: a clear error before anything runs
    if backend == "torch":  # the fastest engine here for this size, unless the caller chose one
        from ..run.step_loop import fastest_torch

        run_options = {**fastest_torch(model.n_neurons, int(trials)), **run_options}
    if model.neuron.name != "lif":
        raise DDMError(f"spiking calibration needs LIF neurons (this model has {model.neuron.name!r}; "
                       "fit with --neuron lif)")
    if int(rounds) < 1 or int(patience) < 1:
        raise DDMError(f"rounds and patience must be >= 1 (got {rounds}, {patience})")
    if not 0 < damping <= 1:
        raise DDMError(f"damping must be in (0, 1] (got {damping})")
    if int(trials) < 4:
        raise DDMError(f"trials must be >= 4 (the error's split-half noise needs them; got {trials})")
    lam = fit_lambda(model)
    deg = degree_for(model.dim, ERROR_DEGREES) if degree is None else int(degree)
    inputs = [constant_input(model, u)] if levels is None else [constant_input(model, v) for v in levels]
    if not inputs or (len(inputs) > 1 and inputs[0] is None):
        raise DDMError("levels: give at least one constant input (several only for a model with inputs)")
    rng = np.random.default_rng(seed)
    at = [_Level(u0, strategy_for(noise, deg), model, sde, rng) for u0 in inputs]
    n_basis = math.comb(model.dim + deg, model.dim)
    for lv in at:
        bins = (int(trials) // 2) * int(duration / lv.window)
        if bins < 4 * n_basis:
            need = math.ceil(4 * n_basis / max(int(duration / lv.window), 1)) * 2
            raise DDMError(f"calibration runs too short: {int(trials) // 2} runs x {duration:g} time units give "
                           f"{bins} {lv.strategy.piece} ({lv.window:.3g} time units) per half, and the error "
                           f"regression needs {4 * n_basis}; use trials >= {need} or a longer duration")
    skip_t = 2 * model.tau / model.time_scale
    history, best, stop = [], None, None
    current, z_train, u_train = model, None, None
    bar = tqdm(total=int(rounds), desc="calibrate spiking", disable=not progress)
    for r in range(int(rounds)):
        measured, trajs = [], []
        for lv in at:
            starts = lv.z_vis[rng.choice(len(lv.z_vis), int(trials))]
            traj = plugins.simulate(current, duration + skip_t, backend=backend, mode="spiking", trials=int(trials),
                                    seed=int(rng.integers(2 ** 31)), u=lv.signal, z0=starts, noise=noise,
                                    **run_options)
            k = int(np.searchsorted(traj.t, skip_t - 1e-12))
            traj = Trajectory(t=traj.t[k:] - traj.t[k], z=traj.z[:, k:], dt=traj.dt, meta=traj.meta)
            measured.append(lv.strategy.measure(current, sde, traj, lv.z_eval, rng, lv.u0))
            trajs.append(traj)
        entry = _round_entry(measured, inputs, trajs)
        score = max(m.score for m in measured)
        history.append({"round": r, **entry})
        bar.update()
        bar.set_postfix(err=f"{entry['systematic_drift_error']:.3g}")
        if best is None or score < best[0]:
            best = (score, current, r)
        elif r - best[2] >= int(patience):
            stop = f"no improvement for {int(patience)} rounds"
            break
        if r == int(rounds) - 1:
            break
        if all(m.settled for m in measured):  # what is left is mostly estimation noise: cancelling it adds noise
            stop = SETTLED
            break
        if z_train is None:
            z_train, u_train = _training_states(model, sde, at, trajs, n_train, rng)
        current = _correct(current, sde, at, measured, z_train, u_train, lam, damping)
    bar.close()
    out = copy.deepcopy(best[1])
    out.meta["spiking_calibration"] = {
        "method": "drift cancellation", "simulator": backend, "dt": run_options.get("dt"), "noise": noise,
        "coupling": run_options.get("coupling") or traj.meta.get("coupling"),
        "duration": duration, "trials": int(trials), "rounds": history, "best_round": best[2],
        "degree": degree, "damping": damping, "seed": seed,
        "input": None if inputs[0] is None else inputs[0].tolist(),
        "stopped": stop or "rounds done", "engine": {k: traj.meta[k] for k in ("engine", "device", "threads")
                                                     if k in traj.meta},
        "systematic_drift_error": history[best[2]]["systematic_drift_error"],
        "systematic_drift_error_uncalibrated": history[0]["systematic_drift_error"],
        "estimator": strategy_for(noise, deg).estimator,
    }
    if len(inputs) > 1:
        out.meta["spiking_calibration"]["levels"] = [v.tolist() for v in inputs]
    return out


class _Level:
    """One constant input of a calibration: its strategy (which keeps per-input state), the target's
    attractor there, the states the error is judged on, and the measured piece's length."""

    def __init__(self, u0, strategy, model, sde, rng):
        self.u0, self.strategy = u0, strategy
        self.signal = None if u0 is None else InputSignal.constant(u0)
        self.z_vis = attractor_states(sde, rng, u0)
        self.window = strategy.window(model, sde, self.z_vis, u0)
        self.z_eval = self.z_vis[rng.choice(len(self.z_vis), min(5000, len(self.z_vis)), replace=False)]


def _round_entry(measured, inputs, trajs):
    """A round's record: the one input's entry, or with several inputs the figures of the input with the
    largest drift error (what the loop and the summaries report) and every input's entry. (The round kept is
    chosen by the worst input's score, which for noisy runs is relative to that input's first round.)"""
    rates = [t.meta.get("mean_rate_hz") for t in trajs]
    if len(measured) == 1:
        return {"mean_rate_hz": rates[0], **measured[0].entry}
    worst = max(range(len(measured)), key=lambda i: measured[i].entry["systematic_drift_error"])
    levels = [{"input": v.tolist(), "mean_rate_hz": rate, **m.entry} for v, rate, m in zip(inputs, rates, measured)]
    return {"mean_rate_hz": rates[worst], **measured[worst].entry, "worst_input": inputs[worst].tolist(),
            "levels": levels}


def _training_states(model, sde, at, trajs, n_train, rng):
    """States (and inputs) the decoders are re-solved on.

    One input: the fit's training states, with a quarter where the spiking
    network went (:func:`~.states.mixed_training_states`). Several inputs: an
    equal share per input, each at its input and only around where the target
    and the network go at it (its attractor, a quarter jittered by :data:`JITTER`,
    and the network's states): each input's error is measured there, and its
    regression extrapolated to the other inputs' regions (the switch's other
    well) is not a measurement. Interleaved: row ``j`` belongs to input
    ``j % L``, so that any first rows, as the noise fit takes, hold every input.
    """
    if len(at) == 1:
        z, u, _ = mixed_training_states(model, sde, trajs[0].z.reshape(-1, model.dim), n_train, rng)
        return z, u
    share = n_train // len(at)
    zs = []
    for lv, traj in zip(at, trajs):
        own = traj.z.reshape(-1, model.dim)
        n_own = min(len(own), share // 4)
        n_vis = share - n_own
        n_jit = n_vis // 4
        vis = lv.z_vis[rng.integers(0, len(lv.z_vis), n_vis)]
        vis[:n_jit] += rng.normal(size=(n_jit, model.dim)) * JITTER * model.scale
        z = np.concatenate([vis, own[rng.choice(len(own), n_own, replace=False)]])
        zs.append(z[rng.permutation(len(z))])
    us = [np.broadcast_to(lv.u0, (share, len(lv.u0))) for lv in at]
    return np.stack(zs, axis=1).reshape(-1, model.dim), np.stack(us, axis=1).reshape(share * len(at), -1)


class _Interleaved:
    """Each input's measured residual applied to its own rows of interleaved states (row ``j``: input ``j % L``)."""

    def __init__(self, residuals):
        self.parts = residuals

    def _apply(self, z, pick):
        z = np.asarray(z)
        rows = [pick(r)(z[i::len(self.parts)]) for i, r in enumerate(self.parts)]
        out = np.empty((len(z),) + rows[0].shape[1:])
        for i, part in enumerate(rows):
            out[i::len(self.parts)] = part
        return out

    def __call__(self, z):
        return self._apply(z, lambda r: r)

    def cov(self, z):
        return self._apply(z, lambda r: r.cov)


def _correct(model, sde, at, measured, z, u, lam, damping):
    """The model with each input's measured error cancelled at that input's training states."""
    if len(at) > 1:
        measured = [Measurement(_Interleaved([m.residual for m in measured]), {}, 0.0, False)]
    return at[0].strategy.correct(model, sde, measured[0], z, u, lam, damping)


def calibration_summary(info, *, model_path, backend, noise):
    """The drift calibration's rounds and the round kept, as printed lines.

    Parameters
    ----------
    info : dict
        ``model.meta["spiking_calibration"]`` (from :func:`calibrate_spiking`).
    model_path : str or Path
        The model calibrated (named on the first line).
    backend : str
    noise : str

    Returns
    -------
    str
    """
    from ..run.step_loop import engine_text

    how = engine_text(info.get("engine") or {}).strip(" ()")
    levels = info.get("levels")
    at = f" at each of the inputs {levels}" if levels else ""
    lines = [f"calibrated {model_path} as a spiking network ({backend}{', ' + how if how else ''}; {info['trials']} "
             f"runs x {info['duration']:g} time units per round{at}, noise {noise}):"]
    for r in info["rounds"]:
        diff = (f"; diffusion error {100 * r['diffusion_error']:.2f} % ({100 * r['diffusion_split_half_noise']:.2f} %)"
                if "diffusion_error" in r else "")
        worst = f" (worst input {r['worst_input']})" if "worst_input" in r else ""
        lines.append(f"  round {r['round']}: systematic drift error on the attractor "
                     f"{100 * r['systematic_drift_error']:.2f} % (split-half noise {100 * r['split_half_noise']:.2f} %)"
                     f"{diff}{worst}")
    lines.append(f"kept round {info['best_round']} (stopped: {info['stopped']})")
    return "\n".join(lines)


def calibration_notes(info):
    """Plain-language notes on a drift calibration's result (empty when there is nothing to say).

    Parameters
    ----------
    info : dict
        ``model.meta["spiking_calibration"]``.

    Returns
    -------
    list of str
        One sentence per note (the command line prints each as ``note: ...`` on stderr).
    """
    best = info["rounds"][info["best_round"]]
    if best["split_half_noise"] > 0.5 * best["systematic_drift_error"]:
        return ["the measured error is mostly estimation noise; more --trials or a longer --duration "
                "measure it better"]
    return []
