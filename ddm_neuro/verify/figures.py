"""PNG figures of a verification report: time series, phase portrait, drift field,
marginals, autocorrelations (and switching times for multistable targets).

"Network" is the trajectory under test, "target" the reference runs of the
target SDE. Drift fields: the model's noise-free drift when given, else the
trajectory's cell-averaged increments divided by the lag.
"""
from __future__ import annotations

import numpy as np

from ..fileio import atomic_write
from .stationary import autocovariance

NET, TGT = "tab:red", "tab:blue"


def _save(fig, path, force):
    import matplotlib.pyplot as plt

    with atomic_write(path, force=force) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def _names(report, d):
    return report.info.get("variables") or [f"z{i}" for i in range(d)]


def write_figures(report, folder, traj=None, force=False):
    """Write the figures into ``folder``; returns the paths (nothing without ``traj``)."""
    if traj is None or "refs" not in report.data:
        return []
    import matplotlib

    matplotlib.use("Agg", force=False)
    refs = report.data["refs"]
    makers = [("timeseries.png", _timeseries), ("phase_portrait.png", _phase), ("drift_field.png", _drift),
              ("marginals.png", _marginals), ("autocorrelation.png", _acf)]
    if "switch_times" in report.data:
        makers.append(("switching_times.png", _switching))
    return [_save(fn(report, traj, refs), folder / name, force) for name, fn in makers]


def _timeseries(report, traj, refs):
    import matplotlib.pyplot as plt

    d = traj.dim
    n = min(traj.z.shape[1], 2000)
    fig, axes = plt.subplots(d, 1, figsize=(9, 1.8 * d + 0.6), sharex=True, squeeze=False)
    for j, name in enumerate(_names(report, d)):
        ax = axes[j, 0]
        ax.plot(traj.t[:n], refs[0, 0, :n, j], color=TGT, lw=0.8, label="target")
        ax.plot(traj.t[:n], traj.z[0, :n, j], color=NET, lw=0.8, label="network")
        ax.set_ylabel(name)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (SDE units)")
    fig.suptitle("latent time series (trial 0)")
    return fig


def _phase(report, traj, refs):
    import matplotlib.pyplot as plt

    d = traj.dim
    names = _names(report, d)
    pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)] if d >= 3 else [(0, 0)]
    fig, axes = plt.subplots(len(pairs), 2, figsize=(8, 3.6 * len(pairs)), squeeze=False)
    k = report.info.get("lag_samples", 1)
    for r, (a, b) in enumerate(pairs):
        for c, (z, label, col) in enumerate(((traj.z, "network", NET), (refs[0], "target", TGT))):
            ax = axes[r, c]
            n = min(z.shape[1], 20000)
            if d == 1:
                ax.plot(z[0, :n - k, 0], z[0, k:n, 0], color=col, lw=0.3)
                ax.set_xlabel(f"{names[0]}(t)"), ax.set_ylabel(f"{names[0]}(t + lag)")
            else:
                ax.plot(z[0, :n, a], z[0, :n, b], color=col, lw=0.3)
                ax.set_xlabel(names[a]), ax.set_ylabel(names[b])
            ax.set_title(label)
    fig.tight_layout()
    return fig


def _grid_field(fn, lo, hi, fixed, a, b, d, n=21):
    xs, ys = np.linspace(lo[a], hi[a], n), np.linspace(lo[b], hi[b], n)
    X, Y = np.meshgrid(xs, ys)
    pts = np.tile(fixed, (X.size, 1))
    pts[:, a], pts[:, b] = X.ravel(), Y.ravel()
    F = np.asarray(fn(pts))
    return xs, ys, F[:, a].reshape(X.shape), F[:, b].reshape(X.shape)


def _drift(report, traj, refs):
    import matplotlib.pyplot as plt

    sde, model = report.data["sde"], report.data["model_drift"]
    inc, delta = report.data["increments"], report.data["delta"]
    d = traj.dim
    names = _names(report, d)
    pooled = np.concatenate([traj.z.reshape(-1, d), refs[0].reshape(-1, d)])
    lo, hi = np.percentile(pooled, 1, axis=0), np.percentile(pooled, 99, axis=0)
    tgt_fn = lambda z: sde.drift(z)  # noqa: E731
    net_fn = (lambda z: model(z, None)) if model is not None else None
    cells = inc[0]
    if d == 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        zs = np.linspace(lo[0], hi[0], 200)[:, None]
        ax.plot(zs[:, 0], tgt_fn(zs)[:, 0], color=TGT, label="target f(z)")
        if net_fn is not None:
            ax.plot(zs[:, 0], net_fn(zs)[:, 0], color=NET, ls="--", label="network drift")
        o = np.argsort(cells["cell_mean"][:, 0])
        ax.plot(cells["cell_mean"][o, 0], cells["target_mean"][o, 0] / delta, "o", color=TGT, mfc="none",
                label="target increments / lag (cells)")
        ax.plot(cells["cell_mean"][o, 0], cells["obs_mean"][o, 0] / delta, "x", color=NET,
                label="network increments / lag (cells)")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xlabel(names[0]), ax.set_ylabel("drift"), ax.legend(fontsize=8)
        return fig
    pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
    fixed = pooled.mean(0)
    fig, axes = plt.subplots(len(pairs), 2, figsize=(9, 4 * len(pairs)), squeeze=False)
    for r, (a, b) in enumerate(pairs):
        for c, (fn, label, col, key) in enumerate(((net_fn, "network", NET, "obs_mean"),
                                                    (tgt_fn, "target", TGT, "target_mean"))):
            ax = axes[r, c]
            if fn is not None:
                xs, ys, U, V = _grid_field(fn, lo, hi, fixed, a, b, d)
                if d == 2:
                    ax.streamplot(xs, ys, U, V, color=col, density=1.0, linewidth=0.7)
                else:
                    ax.quiver(xs, ys, U, V, color=col, angles="xy")
            ax.quiver(cells["cell_mean"][:, a], cells["cell_mean"][:, b], cells[key][:, a] / delta,
                      cells[key][:, b] / delta, color="k", angles="xy", width=0.004)
            ax.set_xlim(lo[a], hi[a]), ax.set_ylim(lo[b], hi[b])
            ax.set_xlabel(names[a]), ax.set_ylabel(names[b])
            other = [names[i] for i in range(d) if i not in (a, b)]
            extra = "" if not other else f", slice {other[0]} = {fixed[3 - a - b]:.3g}"
            ax.set_title(f"{label} drift{extra}\nblack: cell-mean increments / lag", fontsize=8)
    fig.tight_layout()
    return fig


def _marginals(report, traj, refs):
    import matplotlib.pyplot as plt

    d = traj.dim
    fig, axes = plt.subplots(1, d, figsize=(3.6 * d, 3.2), squeeze=False)
    for j, name in enumerate(_names(report, d)):
        ax = axes[0, j]
        allz = np.concatenate([traj.z[..., j].ravel(), refs[..., j].ravel()])
        bins = np.linspace(*np.percentile(allz, [0.1, 99.9]), 50)
        ax.hist(refs[..., j].ravel(), bins=bins, density=True, color=TGT, alpha=0.4, label="target")
        ax.hist(traj.z[..., j].ravel(), bins=bins, density=True, histtype="step", color=NET, label="network")
        ax.set_xlabel(name)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _acf(report, traj, refs):
    import matplotlib.pyplot as plt

    d = traj.dim
    lags = report.data["lags"]
    var = refs[0].reshape(-1, d).var(0)
    fig, axes = plt.subplots(1, d, figsize=(3.6 * d, 3.2), squeeze=False)
    ref_ac = np.array([autocovariance(r, lags[-1])[lags] / var for r in refs])
    net_ac = autocovariance(traj.z, lags[-1])[lags] / var
    for j, name in enumerate(_names(report, d)):
        ax = axes[0, j]
        ax.fill_between(lags * traj.dt, ref_ac[:, :, j].min(0), ref_ac[:, :, j].max(0), color=TGT, alpha=0.3,
                        label="target runs")
        ax.plot(lags * traj.dt, net_ac[:, j], color=NET, label="network")
        ax.set_xlabel("lag"), ax.set_title(f"autocovariance of {name}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _switching(report, traj, refs):
    import matplotlib.pyplot as plt

    net, tgt = report.data["switch_times"]
    fig, ax = plt.subplots(figsize=(6, 4))
    allw = np.concatenate([net, tgt]) if len(net) + len(tgt) else np.array([1.0])
    bins = np.linspace(0, np.percentile(allw, 99) + 1e-9, 30)
    if len(tgt):
        ax.hist(tgt, bins=bins, density=True, color=TGT, alpha=0.4, label="target")
    if len(net):
        ax.hist(net, bins=bins, density=True, histtype="step", color=NET, label="network")
    ax.set_xlabel("time between switches")
    if len(net) + len(tgt):
        ax.legend(fontsize=8)
    else:
        ax.set_title("no switches in the network's runs or the target's", fontsize=9)
    return fig
