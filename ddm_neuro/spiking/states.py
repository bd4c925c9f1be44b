"""States the spiking calibrations start from and re-solve the decoders on.

* :func:`attractor_states`: the target's visited states, at a constant input;
* :func:`fixed_points`: the target's fixed points inside that region
  (root-finding), where the escape from unstable foci starts its runs;
* :func:`mixed_training_states`: the fit's training states (with its margins)
  plus states where the spiking network itself went, for re-solving decoders.
"""
from __future__ import annotations

import numpy as np

from ..fit.states import training_states, visited_states
from ..run.inputs import InputSignal
from ..run.plan import default_steps
from ..run.target import simulate_sde


def attractor_states(sde, rng, u0=None):
    """The target's visited states, at a constant input (the first 20 % of each run dropped).

    Parameters
    ----------
    sde : SDE
    rng : numpy.random.Generator
    u0 : array (k,), optional
        The constant input (32 runs of 1000 records). Without it, the states of
        :func:`ddm_neuro.fit.states.visited_states` (16 trials of 1000 records;
        input-driven targets see random input steps).

    Returns
    -------
    ndarray (M, d)
    """
    if u0 is None:
        return visited_states(sde, rng, trials=16, records=1000, batches=2)[0]
    dt, rec = default_steps(sde)
    tr = simulate_sde(sde, 1000 * rec, dt=dt, record_dt=rec, trials=32, seed=rng, u=InputSignal.constant(u0),
                      burn_in=0.0)
    return tr.z[:, int(0.2 * len(tr.t)):].reshape(-1, sde.dim)


def fixed_points(sde, z_vis, rng, u0=None, starts=64):
    """Fixed points of the target's drift inside its visited region, found by root-finding.

    Parameters
    ----------
    sde : SDE
    z_vis : ndarray (M, d)
        Visited states; roots are sought from ``starts`` of them and kept when
        they lie inside their bounding box (duplicates merged).
    rng : numpy.random.Generator
    u0 : array (k,), optional
        Constant input the drift is taken at.

    Returns
    -------
    ndarray (F, d)
    """
    from scipy.optimize import root

    lo, hi, sd = z_vis.min(0), z_vis.max(0), z_vis.std(0)
    uu = None if u0 is None else np.asarray(u0, dtype=np.float64)[None]
    found = []
    for z0 in z_vis[rng.choice(len(z_vis), min(starts, len(z_vis)), replace=False)]:
        sol = root(lambda z: sde.drift(z[None], uu)[0], z0,
                   jac=lambda z: sde.jacobian(z[None], uu)[0], method="hybr")
        z = sol.x
        if (sol.success and np.all((z >= lo) & (z <= hi))
                and not any(np.all(np.abs(z - f) < 1e-3 * sd) for f in found)):
            found.append(z)
    return np.array(found).reshape(-1, z_vis.shape[1])


def mixed_training_states(model, sde, extra, n, rng):
    """States to re-solve ``model``'s decoders on: the target's training states and a quarter from ``extra``.

    Parameters
    ----------
    model : LatentRNN
        Its normalisation places the fit's margins (:func:`ddm_neuro.fit.states.training_states`).
    sde : SDE
    extra : ndarray (M, d)
        States to include (e.g. where the spiking network went, or around a focus);
        ``min(M, n // 4)`` of them, at zero input.
    n : int
    rng : numpy.random.Generator

    Returns
    -------
    z : ndarray (n, d)
    u : ndarray (n, k) or None
        None for a model without inputs.
    z_vis : ndarray
        The target's visited states the training states were drawn around.
    """
    z_vis, u_vis, _ = visited_states(sde, rng, trials=16, records=1000, batches=2)
    n_extra = min(len(extra), n // 4)
    sample = training_states(z_vis, u_vis, sde, model.center, model.scale, n - n_extra, rng)
    z = np.concatenate([sample.z, extra[rng.choice(len(extra), n_extra, replace=False)]])
    u = np.concatenate([sample.u, np.zeros((n_extra, sample.u.shape[1]))]) if model.n_inputs else None
    return z, u, z_vis
