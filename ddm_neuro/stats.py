r"""Simple summary statistics of trajectories with trial-to-trial standard errors.

For each statistic ``s`` (latent mean, standard deviation, autocorrelation at a
few lags, per variable) the value is the average over trials and its standard
error is ``std_over_trials / sqrt(trials)``. Two runs are compared by the score
``|s_a - s_b| / sqrt(se_a^2 + se_b^2)``, which for two runs of the same process
is about |N(0, 1)|: the same score between two independent runs of the target
SDE is reported as the baseline. (The calibrated verdict is
:mod:`ddm_neuro.verify`'s; this is the quick look printed by ``demo``.)
"""
from __future__ import annotations

import numpy as np


def default_lags(traj, n=4):
    """A few lags (in samples) spread logarithmically up to a tenth of the run."""
    top = max(2, len(traj.t) // 10)
    return np.unique(np.geomspace(1, top, n).astype(int))


def summary(traj, lags):
    """Per-trial statistics (trials, n_stats) and their names."""
    z = traj.z
    mu = z.mean(axis=1)
    sd = z.std(axis=1)
    zc = z - mu[:, None, :]
    acf = [(zc[:, l:] * zc[:, :-l]).mean(axis=1) / np.maximum(sd ** 2, 1e-300) for l in lags]
    names = [f"{s}[{v}]" for s in ("mean", "std") for v in range(traj.dim)]
    names += [f"acf[{v}]@{l * traj.dt:.3g}" for l in lags for v in range(traj.dim)]
    return np.concatenate([mu, sd] + acf, axis=1), names


def compare(run, ref_a, ref_b, lags=None):
    """Scores of ``run`` vs ``ref_a`` beside ``ref_b`` vs ``ref_a`` (the baseline).

    Returns
    -------
    list of dict
        ``name, run, target, score, baseline`` per statistic.
    """
    lags = default_lags(ref_a) if lags is None else lags
    rows = []
    vals = {}
    for key, tr in (("run", run), ("a", ref_a), ("b", ref_b)):
        per, names = summary(tr, lags)
        if len(per) < 2:
            raise ValueError("compare needs at least 2 trials per run (standard errors come from the trials)")
        vals[key] = (per.mean(0), per.std(0, ddof=1) / np.sqrt(len(per)))
    for i, name in enumerate(names):
        (r, sr), (a, sa), (b, sb) = vals["run"], vals["a"], vals["b"]
        rows.append({"name": name, "run": r[i], "target": a[i],
                     "score": abs(r[i] - a[i]) / np.hypot(sr[i], sa[i]),
                     "baseline": abs(b[i] - a[i]) / np.hypot(sb[i], sa[i])})
    return rows


def format_table(rows, variables=None):
    """Rows of :func:`compare` as text."""
    def label(name):
        if variables:
            for i, v in enumerate(variables):
                name = name.replace(f"[{i}]", f"[{v}]")
        return name

    lines = [f"{'statistic':<18}{'network':>11}{'target':>11}{'score':>8}{'baseline':>10}"]
    for r in rows:
        lines.append(f"{label(r['name']):<18}{r['run']:>11.4g}{r['target']:>11.4g}{r['score']:>8.2f}{r['baseline']:>10.2f}")
    return "\n".join(lines)
