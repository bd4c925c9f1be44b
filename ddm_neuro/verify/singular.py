r"""Singular diffusion: targets with noise in some directions only.

Example: the damped Duffing oscillator :math:`dx = y\,dt,\; dy = (x - x^3 - \gamma y)\,dt + s\,dW`,
whose :math:`D = gg^T = \operatorname{diag}(0, s^2)`. Then

* the **entropy production rate** :math:`2\langle v^T D^{-1} v\rangle` is infinite
  (the irreversible velocity has a component, here :math:`\dot x = y`, outside the
  range of :math:`D`) or undefined; a finite estimate is an artefact of the basis
  fit's regularised :math:`\hat D^{-1}` (values of order 1e3–1e4 on Duffing). It is
  not judged, and the report says why;
* **drift and diffusion**: over a lag :math:`\Delta` the increment of a noise-free
  coordinate has a conditional variance of order :math:`D\Delta^3` (it integrates
  the noisy ones), so whitening by the increment covariance, as the stochastic
  metrics do, weighs its drift by :math:`1/\Delta^2` more than the noisy
  coordinates' and makes the test a test of the integrator in that coordinate
  (any noise the network adds there, or any difference in how a simulator steps
  :math:`\dot x = y`, fails it). Instead the increments are split by the
  visit-averaged :math:`\bar D`'s range (the *noisy subspace*) and null space:

  - in the noisy subspace drift and diffusion are judged as for any stochastic
    target (:mod:`.increments`, projected on the subspace; exact :math:`\chi^2` null);
  - in the noise-free directions the drift is judged like a deterministic target's
    (:mod:`.deterministic`): the relative error of the cell-averaged increment, in
    coordinates standardised by the states' spread, with the run's own noise
    removed, against the stated drift tolerance (``--drift-tolerance``, default
    :data:`.deterministic.DRIFT_TOLERANCE`), metric ``drift_noise_free``; the
    run's own noise in those directions is reported, not judged.

Detection (:func:`detect`): at up to 2000 visited states, :math:`D(z)` in
coordinates standardised by the states' spread; a state is singular when the
smallest eigenvalue is below :data:`RANK_TOL` times the largest eigenvalue on all
visited states (numerically zero against the noise's own scale); the target is
singular when at least :data:`MIN_FRACTION` of the states are. If the visit-averaged
:math:`\bar D` is singular too, its null space names the noise-free directions;
if not (the noise direction turns with the state), only the entropy production
is left out and the note says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .increments import assign, visited_cells

#: Eigenvalue, relative to the largest on the visited states (standardised coordinates), below which D is singular.
RANK_TOL = 1e-9
#: Fraction of visited states with a singular D for the target to count as singular.
MIN_FRACTION = 0.01


@dataclass
class Singularity:
    """A target's singular diffusion on the visited states (module docstring).

    Attributes
    ----------
    dim, rank : int
        Dimension and rank of the visit-averaged D.
    fraction : float
        Fraction of the visited states at which D is singular.
    noisy, null : ndarray (d, rank), (d, d - rank)
        Orthonormal bases (SDE coordinates) of the range and null space of the averaged D.
    names : list of str
        The noise-free directions: variable names, or combinations such as ``0.71 x - 0.71 y``.
    """

    dim: int
    rank: int
    fraction: float
    noisy: np.ndarray
    null: np.ndarray
    names: list = field(default_factory=list)

    @property
    def fixed_subspace(self):
        """True when the noise-free directions are the same at every state (averaged D singular)."""
        return self.rank < self.dim

    def where(self):
        """Words for the note (:func:`describe`)."""
        return describe(self.names, self.dim, self.fraction)


def describe(names, dim, fraction):
    """The noise-free directions in words: ``x``, ``x, z``, or a direction that turns with the state."""
    if names:
        return ", ".join(names)
    return (f"one direction at {100 * fraction:.0f} % of the visited states (rank {dim - 1} or less of {dim}), "
            "a direction that turns with the state")


def _direction_name(u, variables, tol=1e-6):
    """A unit vector as a variable name (when it is an axis) or a signed combination."""
    u = u / np.linalg.norm(u)
    i = int(np.argmax(np.abs(u)))
    if 1.0 - abs(u[i]) < tol:
        return variables[i]
    u = u * np.sign(u[i])
    out = ""
    for c, v in zip(u, variables):
        if abs(c) > 1e-3:
            out += (f"{c:.2g} {v}" if not out else f" {'-' if c < 0 else '+'} {abs(c):.2g} {v}")
    return out


def detect(sde, states, rng=None, n_max=2000):
    """Return a :class:`Singularity` when ``sde``'s diffusion is singular on ``states``, else None.

    Parameters
    ----------
    sde : SDE
    states : ndarray (n, d)
        Visited states (at most ``n_max`` of them are used, drawn with ``rng``).
    """
    states = np.atleast_2d(np.asarray(states, dtype=np.float64))
    d = states.shape[1]
    if len(states) > n_max:
        rng = rng or np.random.default_rng(0)
        states = states[np.sort(rng.choice(len(states), n_max, replace=False))]
    D = np.asarray(sde.diffusion_cov(states), dtype=np.float64).reshape(len(states), d, d)
    s = states.std(0)
    s = np.where(s > 0, s, 1.0)
    Dt = D / np.outer(s, s)
    ev = np.linalg.eigvalsh(0.5 * (Dt + np.swapaxes(Dt, 1, 2)))
    top = float(ev[:, -1].max())
    if not top > 0:
        return None  # no noise at all: a deterministic target (.deterministic)
    tol = RANK_TOL * top
    fraction = float(np.mean(ev[:, 0] <= tol))
    if fraction < MIN_FRACTION:
        return None
    evb, vecb = np.linalg.eigh(0.5 * (Dt.mean(0) + Dt.mean(0).T))
    rank = int(np.sum(evb > tol))
    # bases in SDE coordinates: null space of Dbar (D u = 0 <=> Dt (s u) = 0)
    nb = vecb[:, evb <= tol] / s[:, None]
    if nb.shape[1]:
        null, _ = np.linalg.qr(nb)
        noisy = np.linalg.svd(np.eye(d) - null @ null.T)[0][:, :rank]
    else:
        null, noisy = np.zeros((d, 0)), np.eye(d)
    names = _names(null, list(sde.variables))
    return Singularity(dim=d, rank=rank, fraction=fraction, noisy=noisy, null=null, names=names)


def _names(null, variables):
    """Names of the noise-free directions: variables whose axis lies in the null space, else combinations."""
    k = null.shape[1]
    if k == 0:
        return []
    axes = [i for i in range(len(variables)) if np.linalg.norm(null.T[:, i]) > 1 - 1e-6]
    if len(axes) == k:
        return [variables[i] for i in axes]
    return [_direction_name(null[:, j], variables) for j in range(k)]


def note(names, dim, fraction):
    """The note on the entropy production (arguments as :func:`describe`)."""
    return f"entropy production is infinite/undefined: diffusion is singular in {describe(names, dim, fraction)}"


def noise_free_stats(starts, obs, tgt, cells, null, scale):
    """Drift error in the noise-free directions (module docstring), as :func:`.deterministic.drift_stats`.

    Parameters
    ----------
    starts, obs : ndarray (S, d)
    tgt : ndarray (S, M, d)
        Target increments from the same starts (their mean is the target's).
    cells : tuple
        ``(centres, mean, scale)`` from :func:`.increments.make_cells`.
    null : ndarray (d, k)
        Orthonormal basis of the noise-free directions.
    scale : ndarray (k,)
        Spread of the states along them (the standardisation).

    Returns
    -------
    dict
        ``drift_num``, ``drift_den``, ``drift_bias``, ``drift_num_var`` (per increment;
        the squared error's noise, and the variance of ``drift_num``), ``noise_cov``
        (k, k: the residuals' within-cell covariance, per lag), ``cells_used``, ``increments``.
    """
    centres, mean, cscale = cells
    m_hat = tgt.mean(1) @ null / scale
    r = obs @ null / scale - m_hat
    lab = assign((starts - mean) / cscale, centres)
    k = null.shape[1]
    num = den = bias = var = 0.0
    n_tot = 0
    cov = np.zeros((k, k))
    n_cells = 0
    for sel, nb in visited_cells(lab, len(centres)):
        rb = r[sel]
        Sb = np.atleast_2d(np.cov(rb, rowvar=False))
        rbar = rb.mean(0)
        num += nb * float(rbar @ rbar)
        den += nb * float(np.sum(m_hat[sel].mean(0) ** 2))
        bias += float(np.trace(Sb))
        # Var(n_b |rbar|^2) for rbar ~ N(mu, S/n_b): 2 tr(S^2) + 4 n_b mu^T S mu
        var += 2.0 * float(np.sum(Sb * Sb)) + 4.0 * nb * float(rbar @ Sb @ rbar)
        cov += (nb - 1) * Sb
        n_tot += nb
        n_cells += 1
    if n_tot == 0 or den <= 0:
        return None
    return {"drift_num": num / n_tot, "drift_den": den / n_tot, "drift_bias": bias / n_tot,
            "drift_num_var": var / n_tot ** 2, "noise_cov": cov / max(n_tot - n_cells, 1) * np.outer(scale, scale),
            "cells_used": n_cells, "increments": int(n_tot)}


def judge_noise_free(report, stats, tolerance, delta, sing):
    """Add ``drift_noise_free`` (judged against ``tolerance``) and the run's own noise in those directions.

    ``stats``: :func:`noise_free_stats` of the trajectory first, then of reference runs.
    """
    den = float(np.mean([s["drift_den"] for s in stats[1:]]))
    run = stats[0]
    est = [float(np.sqrt(max(s["drift_num"] - s["drift_bias"], 0.0) / den)) for s in stats]
    floor = float(np.sqrt(run["drift_bias"] / den))
    se_num = float(np.sqrt(run["drift_num_var"]))
    se = se_num / (2.0 * den * est[0]) if est[0] > 0 else float(np.sqrt(se_num / den))
    names = ", ".join(sing.names)
    report.add("drift_noise_free", est[0], float(np.sqrt(np.mean(np.square(est[1:])))), 1.0,
               f"relative drift error in the noise-free direction(s) {names} at lag delta, run noise removed, "
               "standardised coordinates (no target noise there: judged against the stated tolerance)",
               floor=tolerance, value_se=se, tolerance=tolerance, raw=float(np.sqrt(run["drift_num"] / den)),
               noise_floor=floor, cells=run["cells_used"], increments=run["increments"], directions=sing.names)
    notes = report.info["notes"]
    if floor > tolerance:
        report.metrics["drift_noise_free"]["passed"] = False
        notes.append(f"drift_noise_free: the run's own noise at lag {delta:.4g} alone gives {floor:.3g}, above "
                     f"the tolerance {tolerance:g}: the run cannot resolve it (a longer run, or a longer lag with --delta)")
    cov = run["noise_cov"] / delta
    report.info["singular_diffusion"].update(run_noise_cov=cov.tolist(), run_noise_trace=float(np.trace(cov)))
    notes.append(f"diffusion is singular in {names}: drift and diffusion judged in the noisy subspace; the drift in "
                 f"{names} against the tolerance {tolerance:g} (drift_noise_free); the run's own noise there is "
                 f"reported, not judged: tr D = {np.trace(cov):.4g} per time unit")
