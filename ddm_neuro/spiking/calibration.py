"""Calibrating a LIF model's spiking network: the drift rounds, then the unstable foci, as one request.

:func:`calibrate` checks the whole request before any run (what to do, a
constant input, a run size that fits) and then runs
:func:`~ddm_neuro.spiking.calibrate.calibrate_spiking` and/or
:func:`~ddm_neuro.spiking.unstable_foci.calibrate_foci`, in that order; the
command line's ``calibrate`` is this call.
"""
from __future__ import annotations

from ..errors import DDMError


def calibration_input(u):
    """The constant input vector of a calibration: ``u`` itself, or the one level of an :class:`InputSignal`.

    Parameters
    ----------
    u : None, array_like or InputSignal

    Returns
    -------
    None or array_like

    Raises
    ------
    DDMError
        An input signal with steps: calibration runs hold one input.
    """
    from ..run.inputs import InputSignal

    if isinstance(u, InputSignal):
        if len(u.times) > 1:
            raise DDMError("--input: calibration takes a constant input (NAME=VALUE), not steps")
        return u.values[0]
    return u


def calibrate(model, sde=None, *, rounds=6, foci=False, duration=1.0, trials=128, noise="none", damping=1.0,
              seed=0, backend="torch", u=None, near_fixed_points=0.0, foci_trials=8, progress=False):
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
    duration, trials, noise, damping, near_fixed_points
        As :func:`~ddm_neuro.spiking.calibrate.calibrate_spiking` (per round).
    seed : int
    backend : str
        Spiking simulator of the runs; use the one the model will run on.
    u : None, array_like or InputSignal
        Constant input of the runs (:func:`calibration_input`).
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
        Nothing to do, an input with steps, or runs too large for this machine.
    """
    if rounds == 0 and not foci:
        raise DDMError("--rounds 0 skips the drift calibration: give --foci, or at least one round")
    from ..run.plan import check_run_size

    sde = model.sde() if sde is None else sde
    u = calibration_input(u)
    check_run_size(model, duration, trials)
    out = model
    if rounds:
        from .drift_calibration import calibrate_spiking

        out = calibrate_spiking(model, sde, rounds=rounds, duration=duration, trials=trials, noise=noise,
                                damping=damping, seed=seed, backend=backend, u=u,
                                near_fixed_points=near_fixed_points, progress=progress)
    if foci:
        from .unstable_foci import calibrate_foci

        out = calibrate_foci(out, sde, backend=backend, trials=foci_trials, seed=seed, u=u, progress=progress)
    return out
