"""States the fit is trained and judged on (drift-diffusion matching needs them).

Training states come from the target SDE's own simulated distribution ("on the
attractor"), plus a margin: the same states jittered by a fraction of the
normalisation scale, and states uniform in the expanded bounding box, so the
network's drift is right where noise and errors carry it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..run.inputs import InputSignal
from ..run.plan import default_steps
from ..run.target import simulate_sde


@dataclass
class StateSample:
    """States ``z`` (M, d), inputs ``u`` (M, k) and which rows are on the attractor."""

    z: np.ndarray
    u: np.ndarray
    on_attractor: np.ndarray

    def take(self, idx):
        """Rows ``idx``."""
        return StateSample(self.z[idx], self.u[idx], self.on_attractor[idx])


def visited_states(sde, rng, trials=32, records=2000, batches=4, progress=False):
    """Simulate the target and return its visited states and the inputs applied.

    Trials start uniform over the domain; the first 20 % of each run is discarded.
    Input-driven systems get random input steps over ``input_range``, a different
    sequence for each batch of trials.

    Returns
    -------
    z : ndarray (M, d)
    u : ndarray (M, k)
    steps : tuple (dt, record_dt)
    """
    dt, rec = default_steps(sde)
    duration = records * rec
    zs, us = [], []
    per = max(1, trials // batches)
    for b in range(batches):
        signal = None
        if sde.n_inputs:
            lo = [sde.input_range[k][0] for k in sde.inputs]
            hi = [sde.input_range[k][1] for k in sde.inputs]
            signal = InputSignal.random_steps(lo, hi, duration / 10, duration, rng)
        tr = simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=per, seed=rng, u=signal,
                          burn_in=0.0, progress=progress and b == 0)
        keep = slice(int(0.2 * len(tr.t)), None)
        z = tr.z[:, keep].reshape(-1, sde.dim)
        zs.append(z)
        if signal is not None:
            u = np.broadcast_to(signal.at(tr.t[keep]), (per,) + (len(tr.t[keep]), sde.n_inputs))
            us.append(u.reshape(-1, sde.n_inputs))
        else:
            us.append(np.zeros((len(z), 0)))
    z, u = np.concatenate(zs), np.concatenate(us)
    box = sde.domain_box()
    lo, hi = box if box is not None else (-np.ones(sde.dim), np.ones(sde.dim))
    span = np.maximum(hi - lo, 1e-12)
    ok = np.isfinite(z).all(axis=1) & np.all(np.abs(z - (hi + lo) / 2) < 1e3 * span, axis=1)
    if not ok.all():
        from ..errors import SpecError
        raise SpecError(f"{sde.name}: the target SDE diverged in simulation ({(~ok).sum()} states non-finite or "
                        f"beyond 1000x the domain's size); check the drift's signs and the parameters")
    return z, u, (dt, rec)


def training_states(z, u, sde, center, scale, n, rng, margin=0.1, fractions=(0.7, 0.25, 0.05)):
    """Mix visited states, jittered states and uniform box states.

    Parameters
    ----------
    z, u : visited states and their inputs
    center, scale : normalisation (states are jittered by ``margin * scale``)
    n : number of samples
    fractions : (on attractor, jittered, uniform in the box expanded by ``margin``)
    """
    n_a = int(fractions[0] * n)
    n_j = int(fractions[1] * n)
    n_u = n - n_a - n_j
    ia = rng.integers(0, len(z), n_a)
    ij = rng.integers(0, len(z), n_j)
    zj = z[ij] + rng.normal(size=(n_j, sde.dim)) * margin * scale
    zu = center + rng.uniform(-1 - margin, 1 + margin, size=(n_u, sde.dim)) * scale
    if sde.n_inputs:
        lo = np.array([sde.input_range[k][0] for k in sde.inputs])
        hi = np.array([sde.input_range[k][1] for k in sde.inputs])
        uu = rng.uniform(lo, hi, size=(n_u, sde.n_inputs))
    else:
        uu = np.zeros((n_u, 0))
    zz = np.concatenate([z[ia], zj, zu])
    us = np.concatenate([u[ia], u[ij], uu])
    flag = np.concatenate([np.ones(n_a, bool), np.zeros(n_j + n_u, bool)])
    order = rng.permutation(n)
    return StateSample(zz[order], us[order], flag[order])


def held_out_states(z, u, n, rng):
    """``n`` visited states (on the attractor) from an independent simulation."""
    idx = rng.choice(len(z), size=min(n, len(z)), replace=False)
    return StateSample(z[idx], u[idx], np.ones(len(idx), bool))
