r"""Statistics selected by the SDE's tags, judged against block standard errors.

* ``chaotic``: largest Lyapunov exponent of the noise-free model drift vs the
  target's (:mod:`.lyapunov`); needs ``model_drift``;
* ``multistable``: switching rate between the target's wells (:mod:`.switching`);
* ``nonequilibrium`` (d >= 2): mean rotation and entropy production rate (:mod:`.currents`);
  the entropy production is left out, with a note, for a deterministic target or a
  singular diffusion (:mod:`.singular`), where it is infinite or undefined.

Each is a scalar (or short vector) statistic ``x`` (the Lyapunov exponent:
see :func:`tag_metrics`). The value is ``|x_trajectory - mean_r x_r|`` over all
``n_ref`` reference runs, and the baseline the expected RMS difference between
two independent target runs, ``sqrt(2 s^2)``, where ``s^2``, the variance of
``x`` for one run of the trajectory's length, is pooled over the reference
runs: the block variances (about :data:`N_BLOCKS` blocks per run, trials or
chunks of trials) and the spread of ``x`` across the runs, weighted by their
degrees of freedom. Comparing with one reference run and two block standard
errors (the earlier scheme) made both the reference value and the yardstick
noisy; with heavy-tailed blocks (Lorenz entropy production at 4 x 10: a few
slow passes near the z axis) it raised false alarms on the target itself.
Under the null the value has RMS ``s sqrt(1 + 1/n_ref)``; the pass multiple
is :data:`.thresholds.SCALAR_Z` such standard deviations, expressed as a
multiple of the baseline (:func:`.thresholds.scalar_multiple`).
"""
from __future__ import annotations

import numpy as np

from . import currents, lyapunov, singular, switching
from .basis import PolyBasis
from .thresholds import MULTIPLES, scalar_multiple

#: Blocks for standard errors of scalar statistics (trials, or chunks of trials).
N_BLOCKS = 16


def _blocks(z):
    """Split runs (trials, n, d) into about :data:`N_BLOCKS` blocks (trials or chunks)."""
    trials, n, _ = z.shape
    per = max(1, int(np.ceil(N_BLOCKS / trials)))
    per = min(per, max(1, n // 20))
    edges = np.linspace(0, n, per + 1).astype(int)
    return [z[i:i + 1, a:b] for i in range(trials) for a, b in zip(edges[:-1], edges[1:])]


def block_stat(fn, z):
    """A statistic of runs with its block variance: the verifier's standard error of scalar statistics.

    Parameters
    ----------
    fn : callable
        ``fn(z) -> float or array``: the statistic of runs (trials, n, d).
    z : array (trials, n, d)

    Returns
    -------
    value : ndarray
        ``fn`` on all of ``z`` (at least 1-d).
    variance : ndarray
        Its variance from about :data:`N_BLOCKS` blocks (trials or chunks of
        trials): the blocks' variance divided by their number; NaN with fewer than 2 blocks.
    dof : int
        Blocks minus one.
    """
    full = np.atleast_1d(fn(z))
    parts = np.array([np.atleast_1d(fn(b)) for b in _blocks(z)])
    if len(parts) < 2:
        return full, np.full_like(full, np.nan), 0
    return full, parts.var(axis=0, ddof=1) / len(parts), len(parts) - 1


def _scalar_metric(report, name, fn, z, refs, description, **extra):
    """Compare a (vector) statistic of ``z`` with the mean over the reference runs (module docstring)."""
    x, var_x, _ = block_stat(fn, z)
    stats = [block_stat(fn, r) for r in refs]
    xr = np.array([s[0] for s in stats])
    n_ref = len(xr)
    dof_b = sum(s[2] for s in stats)
    var_b = sum(s[2] * s[1] for s in stats) / max(dof_b, 1)
    var_a = xr.var(axis=0, ddof=1) if n_ref > 1 else np.zeros_like(x)
    var = (dof_b * var_b + (n_ref - 1) * var_a) / max(dof_b + n_ref - 1, 1)
    value = float(np.linalg.norm(x - xr.mean(0)))
    baseline = float(np.sqrt(2.0 * np.sum(var)))
    mult = scalar_multiple(name, n_ref)
    # value's spread: the run's own variance (block estimate) and the reference mean's; the threshold's:
    # the pooled variance's relative error sqrt(1 / (2 dof)), halved for its square root
    dof = dof_b + n_ref - 1
    value_se = float(np.sqrt(np.sum(np.nan_to_num(var_x, nan=0.0)) + np.sum(var) / n_ref))
    report.add(name, value, baseline, mult, description, floor=1e-12, value_se=value_se,
               threshold_se=mult * baseline * np.sqrt(1.0 / (2.0 * max(dof, 1))),
               trajectory=x.tolist(), target=xr.mean(0).tolist(), baseline_pair=float(np.linalg.norm(xr[1] - xr[0])),
               stderr=np.sqrt(var_x).tolist(), target_spread=np.sqrt(var_a).tolist(),
               target_block_stderr=np.sqrt(var_b).tolist(), **extra)


def tag_metrics(report, sde, traj, refs, model_drift, u0, signal, rate, rng):
    """Tag-dependent statistics: Lyapunov, switching, rotation and entropy production."""
    d, dt = traj.dim, traj.dt
    notes = report.info["notes"]
    pooled = refs.reshape(-1, d)
    if "chaotic" in sde.tags:
        if model_drift is None:
            notes.append("lyapunov skipped: no model drift given (the noise-free model is needed)")
        else:
            n = lyapunov.STARTS
            pick = lambda z: z.reshape(-1, d)[rng.choice(z.shape[0] * z.shape[1], n, replace=False)]  # noqa: E731
            step = lyapunov.rk4_step(rate)
            lm = lyapunov.largest_lyapunov(lambda z: model_drift(z, u0), pick(traj.z), dt=step, rng=rng)
            lt = lyapunov.largest_lyapunov(lambda z: sde.drift(z, u0),
                                           np.concatenate([pick(refs[0]), pick(refs[1])]), dt=step, rng=rng)
            la, lb = lt[:n], lt[n:]
            se = lambda x: np.nanstd(x, ddof=1) / np.sqrt(np.isfinite(x).sum())  # noqa: E731
            base = float(np.hypot(se(la), se(lb)))
            report.add("lyapunov", abs(np.nanmean(lm) - np.nanmean(la)) if np.isfinite(lm).all() else np.inf,
                       base, MULTIPLES["lyapunov"],
                       "largest Lyapunov exponent, noise-free model vs target (Benettin)", floor=1e-12,
                       value_se=float(np.hypot(se(lm), se(la))),
                       threshold_se=MULTIPLES["lyapunov"] * base / np.sqrt(2.0 * max(n - 1, 1)),
                       model=float(np.nanmean(lm)), target=float(np.nanmean(la)),
                       baseline_pair=float(abs(np.nanmean(lb) - np.nanmean(la))), stderr=float(se(lm)))
    if "multistable" in sde.tags:
        if signal is not None and len(signal.times) > 1:
            notes.append("switching skipped: the input varies in time, so the wells move")
        else:
            wells, scale = switching.find_wells(lambda z: sde.drift(z, u0), pooled[::max(1, len(pooled) // 5000)], rng)
            if len(wells) < 2:
                notes.append(f"switching skipped: {len(wells)} stable fixed point(s) found")
            else:
                rate_fn = lambda z: switching.switches(z, dt, wells, scale)[0] / (z.shape[0] * (z.shape[1] - 1) * dt)  # noqa: E731
                res = [switching.switches(z, dt, wells, scale) for z in (traj.z, refs[0])]
                _scalar_metric(report, "switching_rate", rate_fn, traj.z, refs,
                               "switching rate between wells (core sets), per unit time",
                               switches=res[0][0], target_switches=res[1][0], wells=wells.tolist(),
                               mean_switching_time=float(res[0][2].mean()) if len(res[0][2]) else None,
                               target_mean_switching_time=float(res[1][2].mean()) if len(res[1][2]) else None)
                report.data["switch_times"] = (res[0][2], res[1][2])
    if "nonequilibrium" in sde.tags and d >= 2:
        mu = pooled.mean(0)
        _scalar_metric(report, "rotation", lambda z: currents.rotation(z, dt, mu), traj.z, refs,
                       "mean rotation rate per coordinate plane (Stratonovich)")
        if report.info.get("deterministic_target"):
            return  # no finite entropy production without noise (noted with the drift)
        if report.info.get("singular_diffusion"):
            sd = report.info["singular_diffusion"]
            notes.append(singular.note(sd["directions"], sd["dim"], sd["fraction"]) + "; not judged")
            return  # infinite or undefined with a singular diffusion (.singular)
        basis = PolyBasis.fit_to(pooled[::max(1, len(pooled) // 20000)])
        k = int(report.info.get("lag_samples") or 1)
        _scalar_metric(report, "entropy_production", lambda z: currents.entropy_production(z, dt, basis, lag=k),
                       traj.z, refs, "entropy production rate (basis fit, bias removed; noise covariance from "
                       "increments at the verifier's lag)", n_params=len(basis) * d, lag_samples=k)
