r"""Input checks and the choice of the lag Δ.

Every check raises :class:`~ddm_neuro.errors.TrajectoryError` with one line a
user can act on; the command line maps it to exit status 2.

The lag is chosen from the SDE's own time scale: with :math:`r` the 95th
percentile of the drift Jacobian's spectral radius over the visited states,

.. math:: \Delta = \max\left(\frac{c_\Delta}{r},\; 5\,\tau_f,\; \delta t\right),\qquad c_\Delta = 0.1,

rounded to a whole number of samples. At :math:`r\Delta = 0.1` an increment
keeps about 90 % of the drift information of the continuous path (for OU, the
Fisher information per unit time about the drift rate is
:math:`(\Delta e^{-k\Delta})^2 / (\Delta (1-e^{-2k\Delta})/2k)` relative to 1),
while a read-out filtered with :math:`\tau_f \le \Delta/5` is handled by the
exact correction factor (see :mod:`.increments`).
"""
from __future__ import annotations

import numpy as np

from ..errors import TrajectoryError
from ..trajectory import validate

#: Lag in units of the fastest drift time scale.
C_DELTA = 0.1
#: Smallest number of non-overlapping increments (all trials) the verifier accepts.
MIN_INCREMENTS = 200
#: Smallest number of samples per trial.
MIN_SAMPLES = 20


def check_trajectory(sde, traj):
    """Check dimension, sampling and finiteness of ``traj`` against ``sde``.

    Raises
    ------
    TrajectoryError
        Dimension mismatch, irregular or missing ``dt``, or non-finite samples
        (naming the trial, sample and time where they start).
    """
    if traj.z.ndim != 3:
        raise TrajectoryError(f"trajectory z must have shape (trials, n, d), got {traj.z.shape}")
    if traj.dim != sde.dim:
        raise TrajectoryError(f"trajectory has dimension {traj.dim} but the model's SDE {sde.name!r} has "
                              f"{sde.dim} variables ({', '.join(sde.variables)})")
    if traj.dt is None or not np.isfinite(traj.dt) or traj.dt <= 0:
        raise TrajectoryError(f"trajectory has no valid sampling interval dt (got {traj.dt})")
    validate(traj)  # regular grid, shapes
    bad = ~np.isfinite(traj.z).all(axis=2)  # (trials, n)
    if bad.any():
        n0 = int(np.argmax(bad.any(axis=0)))
        trial = int(np.argmax(bad[:, n0]))
        n_bad = int(bad.sum())
        raise TrajectoryError(
            f"trajectory has non-finite values (NaN/inf) from sample {n0} (t = {traj.t[n0]:.6g}, trial {trial}); "
            f"{n_bad} of {bad.size} samples are affected; the first {n0} samples of every trial are finite "
            f"(the simulation probably diverged: use a smaller dt or check the model)")


def choose_lag(sde, traj, delta=None, filter_tau=None, rng=None, floor=None):
    """Return ``(delta, k)``: the lag in SDE time units and in samples.

    Parameters
    ----------
    delta : float, optional
        Requested lag (rounded to a whole number of samples, at least one).
    filter_tau : float, optional
        Read-out filter time constant; the automatic lag is at least ``5 filter_tau``.
    floor : float, optional
        The automatic lag is at least this (SDE units; :func:`spike_lag`).
    """
    dt = traj.dt
    if delta is not None:
        if not np.isfinite(delta) or delta <= 0:
            raise TrajectoryError(f"lag delta must be a positive number, got {delta}")
        k = max(1, int(round(delta / dt)))
        return k * dt, k
    rng = rng or np.random.default_rng(0)
    flat = traj.z.reshape(-1, traj.dim)
    sample = flat[rng.choice(len(flat), size=min(len(flat), 2000), replace=False)]
    u = traj.info.input.values[0] if sde.n_inputs and traj.info.input is not None else None
    rate = max(sde.characteristic_rate(sample, u), 1e-6)
    target = C_DELTA / rate
    if filter_tau:
        target = max(target, 5.0 * filter_tau)
    k = max(1, int(round(target / dt)))
    if floor:
        k = max(k, int(np.ceil(floor / dt - 1e-9)))
    return k * dt, k


def spike_lag(traj):
    """The synaptic time constant of a spiking run in SDE units (``meta["tau_syn"] / meta["time_scale"]``),
    or None for other runs.

    Below it a spiking network's latent is a sum of jumps (one per spike) and its
    increments carry spike jitter that no SDE has; a deterministic target is judged
    at lags of at least this (:mod:`.deterministic`).
    """
    meta = traj.meta if isinstance(traj.meta, dict) else {}
    try:
        tau, scale = float(meta["tau_syn"]), float(meta["time_scale"])
    except (KeyError, TypeError, ValueError):
        return None
    if meta.get("mode") != "spiking" or not (np.isfinite(tau / scale) and tau > 0 and scale > 0):
        return None
    return tau / scale


def check_length(traj, k, delta):
    """Refuse a trajectory too short to estimate anything, saying how long it must be."""
    n = traj.z.shape[1]
    per_trial = (n - 1) // k
    total = per_trial * traj.trials
    if n < MIN_SAMPLES or total < MIN_INCREMENTS:
        need = MIN_INCREMENTS * delta / traj.trials + delta
        need = max(need, (MIN_SAMPLES - 1) * traj.dt)
        raise TrajectoryError(
            f"trajectory too short: {traj.trials} trial(s) x {traj.duration:.4g} time units give {total} "
            f"increments at lag {delta:.4g} (and {n} samples per trial); at least {MIN_INCREMENTS} increments "
            f"and {MIN_SAMPLES} samples are needed, i.e. a duration of at least {need:.4g} time units "
            f"with {traj.trials} trial(s)")
