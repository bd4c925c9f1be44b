r"""Switching between wells of a multistable target.

Wells are the stable fixed points of the target drift (roots of ``f`` found
from many visited states, kept when every eigenvalue of the Jacobian has a
negative real part). A trajectory is *in* well ``w`` while within a core of
radius :math:`0.25\times` the distance to the nearest other well (in
coordinates standardised per variable); a switch is an entry into a core
other than the last one visited (core sets remove the fast recrossings of the
barrier). Switching times are the intervals between switches; the rate is
:math:`\hat r = n_{\mathrm{switch}}/T`, its standard error from blocks of
trials (which keeps clustered switches honest).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import fsolve

#: Core radius as a fraction of the distance to the nearest other well.
CORE = 0.25


def find_wells(drift, states, rng, n_starts=60):
    """Stable fixed points of ``drift`` near the visited ``states`` (n, d); array (w, d)."""
    d = states.shape[1]
    scale = states.std(0) + 1e-12
    starts = states[rng.choice(len(states), size=min(n_starts, len(states)), replace=False)]
    found = []
    for s in starts:
        with np.errstate(all="ignore"):
            root, info, ier, _ = fsolve(lambda x: drift(x[None])[0], s, full_output=True)
        if ier != 1 or not np.all(np.isfinite(root)):
            continue
        if np.any(np.abs((root - states.mean(0)) / scale) > 6):
            continue
        eps = 1e-5 * np.maximum(1.0, np.abs(root))
        J = np.stack([(drift((root + e)[None])[0] - drift((root - e)[None])[0]) / (2 * e[j])
                      for j, e in enumerate(np.diag(eps))], axis=1)
        if np.max(np.linalg.eigvals(J).real) >= 0:
            continue
        if all(np.max(np.abs((root - f) / scale)) > 1e-3 for f in found):
            found.append(root)
    return np.array(found).reshape(-1, d), scale


def switches(z, dt, wells, scale):
    """Switch count, total time and the switching times (intervals between switches).

    Parameters
    ----------
    z : ndarray (trials, n, d)
    """
    x = z / scale
    w = wells / scale
    dist = np.linalg.norm(w[:, None] - w[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    radius = CORE * dist.min(axis=1)
    count, waits = 0, []
    for trial in x:
        d2 = np.linalg.norm(trial[:, None, :] - w[None], axis=-1)
        inside = d2 < radius
        core = np.where(inside.any(1), np.argmax(inside, axis=1), -1)
        hits = np.flatnonzero(core >= 0)
        if len(hits) == 0:
            continue
        seq = core[hits]
        change = hits[1:][seq[1:] != seq[:-1]]
        count += len(change)
        if len(change) > 1:
            waits.extend(np.diff(change) * dt)
    T = z.shape[0] * (z.shape[1] - 1) * dt
    return count, T, np.array(waits)
