r"""The drift error of a noise-free network run, from windows of its recorded path.

A rate fit is not enough for a spiking network. The rate model's latent
obeys ``tau dy = (-y + K phi(x)) dt``; the spiking network's obeys exactly
``tau dy = (-y + K s(t)) dt`` (plus injected noise), and the spike trains
``s`` are not ``phi(x)``: a neuron's membrane filters its input, regular
firing locks to the input's changes, and the rate curve a simulator realises
at its step may differ from the analytic one.

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

The estimator needs a noise-free run: regressing a window's increment on its
mean state is biased by the diffusion inside it. With the network's noise on,
:mod:`ddm_neuro.spiking.lag_error` measures at the verifier's lag instead.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DDMError
from ..trajectory import Trajectory
from ..verify.basis import PolyBasis, degree_for

#: Degree of the error regression by dimension (d = 1, 2, 3 and above), for :func:`ddm_neuro.verify.basis.degree_for`.
ERROR_DEGREES = (5, 4, 3)


def run_inputs(model, traj):
    """The inputs of a run at its sample times, from its recorded input signal.

    Parameters
    ----------
    model : LatentRNN
    traj : Trajectory

    Returns
    -------
    ndarray (n, k) or None
        Zero where the run recorded no input; None for a model without inputs.
    """
    if not model.n_inputs:
        return None
    signal = traj.info.input
    if signal is None:
        return np.zeros((len(traj.t), model.n_inputs))
    return np.asarray(signal.at(traj.t), dtype=np.float64).reshape(len(traj.t), -1)


def default_lag(model, traj):
    """Window of the error estimate in recording steps: about ``2 tau`` of network time, at least one step.

    Parameters
    ----------
    model : LatentRNN
    traj : Trajectory

    Returns
    -------
    int

    Notes
    -----
    Spike noise of regularly firing neurons is a bounded jitter, so the
    estimate's noise falls as 1/L; the drift error is compared along the same
    path, so a window longer than the recording step adds no finite-lag bias
    (it only smooths ``e(z)`` along the path).
    """
    return max(1, int(round(2 * model.tau / (traj.dt * model.time_scale))))


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
    u = run_inputs(model, traj)
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

    Parameters
    ----------
    model, sde, traj, lag
        As :func:`bin_errors`.
    degree : int, optional
        Total degree of the basis (default ``degree_for(d, ERROR_DEGREES)``: 5, 4, 3 for d = 1, 2, >= 3).

    Returns
    -------
    DriftResidual
    """
    z0, e = bin_errors(model, sde, traj, lag)
    keep = np.isfinite(z0).all(1) & np.isfinite(e).all(1)
    z0, e = z0[keep], e[keep]
    basis = PolyBasis.fit_to(z0, degree_for(model.dim, ERROR_DEGREES) if degree is None else degree)
    P = basis(z0)
    if len(P) < 4 * P.shape[1]:
        raise DDMError(f"calibration run too short: {len(P)} bins for {P.shape[1]} basis functions")
    coef, *_ = np.linalg.lstsq(P, e, rcond=None)
    res = e - P @ coef
    cov = np.linalg.pinv(P.T @ P)
    se = np.sqrt(np.outer(np.diag(cov), (res ** 2).mean(0)))
    return DriftResidual(basis, coef, se)


def systematic_drift_error(model, sde, residual, z, u=None):
    """RMS of the network's drift error ``T S e(z) / tau`` over states ``z``, relative to ``rms |f|``.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
    residual : callable
        ``e(z)`` in ``y`` units (a :class:`DriftResidual`, a
        :class:`~ddm_neuro.spiking.lag_error.LagResidual`, or a difference of two).
    z : ndarray (M, d)
    u : array (k,), optional
        The constant input the target's drift is taken at (default zero).

    Returns
    -------
    float
    """
    err = residual(z) * (model.scale * model.time_scale / model.tau)
    if model.n_inputs:
        u = np.broadcast_to(np.zeros(model.n_inputs) if u is None else np.asarray(u, dtype=np.float64),
                            (len(z), model.n_inputs))
    f = sde.drift(z, u if model.n_inputs else None)
    return float(math.sqrt((err ** 2).sum(1).mean() / (f ** 2).sum(1).mean()))


def trial_halves(traj):
    """The run's first and second half of trials, as two Trajectories (for split-half noise).

    Parameters
    ----------
    traj : Trajectory

    Returns
    -------
    list of Trajectory
    """
    h = traj.trials // 2
    return [Trajectory(t=traj.t, z=zz, dt=traj.dt, meta=traj.meta) for zz in (traj.z[:h], traj.z[h:])]


def split_half_noise(model, sde, traj, z, degree=None, u=None):
    """Noise of :func:`systematic_drift_error` for a run: the error between its two halves' trials, halved.

    Parameters
    ----------
    model, sde, traj
        As :func:`drift_residual`.
    z : ndarray (M, d)
        States the error is taken over.
    degree : int, optional
    u : array (k,), optional
        As :func:`systematic_drift_error`.

    Returns
    -------
    float
    """
    halves = [drift_residual(model, sde, half, degree) for half in trial_halves(traj)]
    return systematic_drift_error(model, sde, lambda q: (halves[0](q) - halves[1](q)) / 2, z, u)
