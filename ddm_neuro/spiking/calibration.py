"""Calibrating a LIF model's spiking network: the drift rounds, then the unstable foci, as one request.

:func:`calibrate` checks the whole request before any run (what to do, a
constant input, a run size that fits) and then runs
:func:`~ddm_neuro.spiking.drift_calibration.calibrate_spiking` and/or
:func:`~ddm_neuro.spiking.unstable_foci.calibrate_foci`, in that order; the
command line's ``calibrate`` is this call, with the options :data:`OPTIONS`
declares (rows as in :mod:`ddm_neuro.options`).
"""
from __future__ import annotations

import numpy as np

from ..errors import DDMError
from ..options import COUNT, FLAG, SEED, SPAN

#: The options of :func:`calibrate`.
OPTIONS = [
    ("--backend", str, "torch", "spiking simulator of the calibration runs: torch (default), brian2, brian2-cpp, nest; use "
     "the one the model will run on (the correction is specific to it)"),
    ("--rounds", SEED, 6, "most simulate-measure-refit rounds (default 6; 0 with --foci: only the foci calibration)"),
    ("--trials", COUNT, 128, "short runs per round (default 128)"),
    ("--duration", SPAN, 1.0, "SDE time units per run (default 1)"),
    ("--damping", float, 1.0, "share of each measured error cancelled (0-1]"),
    ("--noise", ("none", "remainder"), "none", "noise of the calibration runs. none (default): the noise-free drift, "
     "windowed estimator (deterministic targets). remainder: the model's noise on; drift and diffusion measured at "
     "the verifier's lag against the target propagated from the same states, and both corrected (stochastic "
     "targets: the noisy network's drift differs from its noise-free one)"),
    ("--foci", FLAG, None, "then make runs started near each unstable focus of the target (a fixed point with a "
     "growing spiral, e.g. Lorenz's C+-) leave it no later than the target's, raising the spiral's growth there where "
     "they do not (a spiking Lorenz otherwise can collapse there)"),
    ("--foci-trials", COUNT, 8, "runs per focus and step (default 8)"),
    ("--input INPUT", str, None, "constant input of the calibration runs, NAME=VALUE (';' between inputs; default 0): "
     "calibrate at the input the network will run at", "u"),
    ("--cues", FLAG, None, "input-driven models: calibrate at the --input level and halfway from each input range's "
     "centre to either end (the cue inputs convert verifies at), --trials runs at each, each level's error cancelled "
     "at that level (a correction measured at one input does not carry to the others)"),
    ("--seed", SEED, 0, "seed of the calibration runs and their start states (default 0)")]


def calibration_input(model, u):
    """The constant input vector of a calibration: ``u`` itself, or the one level of an :class:`InputSignal`.

    Parameters
    ----------
    model : LatentRNN
    u : None, str, array_like or InputSignal
        A text is read as ``--input`` (:func:`ddm_neuro.run.options.model_input`).

    Returns
    -------
    None or array_like

    Raises
    ------
    DDMError
        An input signal with steps: calibration runs hold one input.
    """
    from ..run.inputs import InputSignal
    from ..run.options import model_input

    if isinstance(u, str):
        u = model_input(model, u)
    if isinstance(u, InputSignal):
        if len(u.times) > 1:
            raise DDMError("--input: calibration takes a constant input (NAME=VALUE), not steps")
        return u.values[0]
    return u


def cue_levels(sde, u0=None):
    """The input levels of an input-driven target's calibration and verification: ``u0`` (default zero), then
    halfway from the centre of each input channel's range to either end (its cue inputs: +-0.5 for a range of
    [-1, 1]; 0.25 and 0.75 for [0, 1], inside the range, where a fit has support on both sides); ``[None]`` without
    inputs.

    Parameters
    ----------
    sde : SDE
    u0 : array (k,), optional

    Returns
    -------
    list of (ndarray (k,) or None)
    """
    if not sde.n_inputs:
        return [None]
    base = np.zeros(sde.n_inputs) if u0 is None else np.asarray(u0, dtype=np.float64)
    levels = [base]
    for i, name in enumerate(sde.inputs):
        lo, hi = sde.input_range.get(name, (-1.0, 1.0))
        for v in (0.75 * hi + 0.25 * lo, 0.25 * hi + 0.75 * lo):
            if v != base[i]:
                lv = base.copy()
                lv[i] = v
                levels.append(lv)
    return levels


def calibrate(model, sde=None, *, rounds=6, foci=False, duration=1.0, trials=128, noise="none", damping=1.0,
              seed=0, backend="torch", u=None, cues=False, foci_trials=8, progress=False):
    """Calibrate ``model``'s spiking network in the loop: drift rounds, then (with ``foci``) its unstable foci.

    Parameters
    ----------
    model : LatentRNN
        A LIF model.
    sde : SDE, optional
        Its target (default ``model.sde()``).
    rounds : int
        Most simulate-measure-refit rounds of the drift calibration (0: foci only, needs ``foci``).
    foci : bool
        Then make runs started near each unstable focus leave it no later than the target's.
    duration, trials, noise, damping
        As :func:`~ddm_neuro.spiking.drift_calibration.calibrate_spiking` (per round).
    seed : int
    backend : str
        Spiking simulator of the runs; use the one the model will run on.
    u : None, str, array_like or InputSignal
        Constant input of the runs (:func:`calibration_input`; a text as ``--input``).
    cues : bool
        Calibrate the drift at ``u`` and at the target's cue inputs together
        (:func:`cue_levels`; ``trials`` runs at each); the foci at ``u``.
    foci_trials : int
        Runs per focus and step.
    progress : bool

    Returns
    -------
    LatentRNN
        The calibrated copy (``meta["spiking_calibration"]`` and/or ``meta["foci_calibration"]``).

    Raises
    ------
    DDMError
        Nothing to do, an input with steps, cues for a model without inputs,
        or runs too large for this machine.
    """
    if rounds == 0 and not foci:
        raise DDMError("--rounds 0 skips the drift calibration: give --foci, or at least one round")
    if cues and not model.n_inputs:
        raise DDMError("--cues: the model has no inputs (cue inputs are those of an input-driven target)")
    from ..run.plan import check_run_size, constant_input

    sde = model.sde() if sde is None else sde
    u = calibration_input(model, u)
    levels = cue_levels(sde, constant_input(model, u)) if cues else None
    check_run_size(model, duration, trials)
    out = model
    if rounds:
        from .drift_calibration import calibrate_spiking

        out = calibrate_spiking(model, sde, rounds=rounds, duration=duration, trials=trials, noise=noise,
                                damping=damping, seed=seed, backend=backend, u=u, levels=levels,
                                progress=progress)
    if foci:
        from .unstable_foci import calibrate_foci

        out = calibrate_foci(out, sde, backend=backend, trials=foci_trials, seed=seed, u=u, progress=progress)
    return out


def calibration_report(model, *, model_path, backend, noise="none", rounds=6, foci=False):
    """What :func:`calibrate` did, as printed lines, warnings and notes.

    Parameters
    ----------
    model : LatentRNN
        :func:`calibrate`'s result.
    model_path : str or Path
        The model calibrated (named in the summary).
    backend, noise, rounds, foci
        As given to :func:`calibrate` (a part that did not run is not reported).

    Returns
    -------
    text : str
        The drift rounds (:func:`~ddm_neuro.spiking.drift_calibration.calibration_summary`) and the
        foci steps (:func:`~ddm_neuro.spiking.unstable_foci.foci_summary`).
    warnings : list of str
        Foci from which runs still do not leave.
    notes : list of str
        :func:`~ddm_neuro.spiking.drift_calibration.calibration_notes`.
    """
    from .drift_calibration import calibration_notes, calibration_summary
    from .unstable_foci import foci_summary

    parts, warnings, notes = [], [], []
    if rounds:
        info = model.meta["spiking_calibration"]
        parts.append(calibration_summary(info, model_path=model_path, backend=backend, noise=noise))
        notes += calibration_notes(info)
    if foci:
        text, warnings = foci_summary(model.meta["foci_calibration"])
        parts.append(text)
    return "\n".join(parts), warnings, notes
