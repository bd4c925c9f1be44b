r"""Measuring the latent diffusion that a noise-free spiking network's spikes add."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DDMError
from ..trajectory import Trajectory
from .noise import spike_noise_cov
from .simulator import simulate_spiking


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
