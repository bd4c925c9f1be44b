"""The rate curve a spiking run realises, measured from its spikes (:func:`effective_rate`).

Spikes counted over windows of a recorded run, against ``integral phi(x(t)) dt``
over the same windows, pooled over all neurons by the predicted rate: the
ratio says how far the simulator's firing departs from the analytic LIF curve
``phi`` at the step it integrates with (the torch simulator places spikes
exactly, so its ratio is 1 within a count's resolution).
"""
from __future__ import annotations

import numpy as np

from ..errors import DDMError
from .window_error import run_inputs

#: Bins of the predicted rate (Hz) over which spike counts are pooled.
RATE_EDGES = np.array([0.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, np.inf])
#: Bins of the mean input of windows predicted silent (threshold 1).
SUB_EDGES = np.array([0.6, 0.8, 0.9, 0.95, 1.0])


class EffectiveRate:
    """The rate curve the spiking network realises: ``phi_eff(x) = c(phi(x)) phi(x)`` (+ ``a(x)`` below threshold).

    ``c`` is the ratio of spikes counted to ``integral phi(x(t)) dt`` over
    windows, pooled over all neurons by the predicted rate (``RATE_EDGES``,
    linear interpolation between bin centres); ``a`` the rate of windows whose
    predicted rate is zero, by their mean input (``SUB_EDGES``, threshold 1).
    All neurons share the normalised LIF curve, so one curve serves all.
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
        """JSON-able form."""
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
    u = run_inputs(model, traj)
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
