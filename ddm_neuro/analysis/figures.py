"""PNG figures of an analysis (matplotlib, Agg back end).

* ``connectivity.png``: nonzero eigenvalues of ``W``, ``W_s`` (real) and ``W_a``
  (imaginary), and each part's share of the latent drift;
* ``connectivity_fields.png``: the latent drift contributed by ``W_s`` and by
  ``W_a`` (streamlines in the first coordinate plane, a slice through the mean
  for d >= 3; curves for d = 1);
* ``drift_decomposition.png`` (with currents): drift, reversible and
  irreversible parts for the target, the network and the symmetric fit,
  drawn where the process goes (cells it visited);
* ``entropy_production.png`` (with currents): entropy production rate and mean
  rotation, ± 2 standard errors, beside the closed form and the
  target-vs-target spread.
"""
from __future__ import annotations

import numpy as np

from ..fileio import atomic_write
from .connectivity import drift_contributions, part_spectra

FIGURES = ("connectivity.png", "connectivity_fields.png", "drift_decomposition.png", "entropy_production.png")
COLORS = {"target": "tab:blue", "network": "tab:red", "symmetric_fit": "tab:green"}
LABELS = {"target": "target", "network": "network", "symmetric_fit": "symmetric W"}


def _save(fig, path, force):
    import matplotlib.pyplot as plt

    with atomic_write(path, force=force) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def write_figures(analysis, folder, force=False):
    """Write the figures that apply into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    makers = [("connectivity.png", _connectivity), ("connectivity_fields.png", _fields)]
    if "entropy_production_rate" in analysis.results:
        makers += [("drift_decomposition.png", _decomposition), ("entropy_production.png", _epr)]
    return [_save(fn(analysis), folder / name, force) for name, fn in makers]


def _models(analysis):
    out = [("network", analysis.data["model"])]
    if analysis.data.get("sym_model") is not None:
        out.append(("symmetric_fit", analysis.data["sym_model"]))
    return out


def _connectivity(analysis):
    import matplotlib.pyplot as plt

    models = _models(analysis)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    styles = {"W": ("o", "none"), "symmetric": ("s", "none"), "antisymmetric": ("^", "none")}
    for name, model in models:
        eig = part_spectra(model)["eigenvalues"]
        top = max(max(np.abs(e).max(initial=0.0) for e in eig.values()), 1e-300)
        for part, (mk, fc) in styles.items():
            e = eig[part]
            e = e[np.abs(e) > 1e-9 * top]
            ax.plot(e.real, e.imag, mk, mfc=fc, color=COLORS[name], alpha=0.8,
                    label=f"{LABELS[name]}: {'W' if part == 'W' else ('W_s' if part == 'symmetric' else 'W_a')}")
    ax.axhline(0, color="0.8", lw=0.5), ax.axvline(0, color="0.8", lw=0.5)
    ax.set_xlabel("Re"), ax.set_ylabel("Im"), ax.set_title("nonzero eigenvalues (W_s real, W_a imaginary)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    parts = ("leak", "symmetric", "antisymmetric")
    width = 0.8 / len(models)
    for i, (name, _) in enumerate(models):
        sh = analysis.results["connectivity"][name]["drift_shares"]
        ax.bar(np.arange(3) + i * width, [sh[p]["projection_share"] for p in parts], width, color=COLORS[name],
               label=LABELS[name])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["leak + drive", "W_s", "W_a"])
    ax.set_ylabel("share of the latent drift (mean f_part . f / mean |f|^2)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plane_grid(states, a, b, n=25):
    lo, hi = np.percentile(states, 1, axis=0), np.percentile(states, 99, axis=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    xs, ys = np.linspace(lo[a], hi[a], n), np.linspace(lo[b], hi[b], n)
    X, Y = np.meshgrid(xs, ys)
    pts = np.tile(states.mean(0), (X.size, 1))
    pts[:, a], pts[:, b] = X.ravel(), Y.ravel()
    return xs, ys, pts


def _visited_mask(states, xs, ys, a, b):
    """True where the grid cell around a node holds no visited state."""
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    H, _, _ = np.histogram2d(states[:, b], states[:, a], bins=[np.append(ys - dy / 2, ys[-1] + dy / 2),
                                                             np.append(xs - dx / 2, xs[-1] + dx / 2)])
    return H == 0


def _stream(ax, xs, ys, F, a, b, mask, color):
    n = len(xs)
    U = np.ma.masked_array(F[:, a].reshape(n, n), mask)
    V = np.ma.masked_array(F[:, b].reshape(n, n), mask)
    if np.all(mask):
        return
    ax.streamplot(xs, ys, U, V, color=color, density=0.9, linewidth=0.7, arrowsize=0.8)


def _slice_note(analysis, a, b):
    d = len(analysis.results["variables"])
    return "" if d == 2 else " (slice through the mean)"


def _fields(analysis):
    import matplotlib.pyplot as plt

    states = analysis.data["states"]
    names = analysis.results["variables"]
    models = _models(analysis)
    d = states.shape[1]
    if d == 1:
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
        zs = np.linspace(*np.percentile(states[:, 0], [1, 99]), 200)[:, None]
        for i, (name, model) in enumerate(models):
            ax = axes[0, i]
            parts = drift_contributions(model, zs)
            for p, ls in (("leak", ":"), ("symmetric", "-"), ("antisymmetric", "--")):
                ax.plot(zs[:, 0], parts[p][:, 0], ls, label=p)
            ax.plot(zs[:, 0], sum(parts.values())[:, 0], "k", lw=1.5, label="total")
            ax.set_xlabel(names[0]), ax.set_title(f"{LABELS[name]}: drift by connectivity part", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig
    a, b = 0, 1
    xs, ys, pts = _plane_grid(states, a, b)
    mask = _visited_mask(states, xs, ys, a, b)
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 4.2 * len(models)), squeeze=False)
    for r, (name, model) in enumerate(models):
        parts = drift_contributions(model, pts)
        top = max(float(np.abs(v).max()) for v in parts.values())
        for c, p in enumerate(("symmetric", "antisymmetric")):
            ax = axes[r, c]
            if np.abs(parts[p]).max() <= 1e-9 * top:  # W_a of a symmetric W: rounding noise only
                ax.text(0.5, 0.5, f"W_{p[0]} = 0", transform=ax.transAxes, ha="center", va="center")
            else:
                _stream(ax, xs, ys, parts[p], a, b, mask, COLORS[name])
            ax.plot(states[:2000, a], states[:2000, b], ".", ms=1, color="0.75", zorder=0)
            ax.set_xlabel(names[a]), ax.set_ylabel(names[b])
            ax.set_title(f"{LABELS[name]}: drift from W_{p[0]}{_slice_note(analysis, a, b)}", fontsize=9)
    fig.tight_layout()
    return fig


def _decomposition(analysis):
    import matplotlib.pyplot as plt

    from .decomposition import split_drift

    data = analysis.data
    names = analysis.results["variables"]
    procs = data["procs"]
    a, b = 0, 1
    fig, axes = plt.subplots(len(procs), 3, figsize=(12, 3.9 * len(procs)), squeeze=False)
    for r, (name, (f_fn, c_fn)) in enumerate(procs.items()):
        runs = [data["runs"]["target_a"], data["runs"]["target_b"]] if name == "target" else [data["runs"][name]]
        states = np.concatenate([z.reshape(-1, z.shape[-1]) for z in runs])
        states = states[np.isfinite(states).all(1)][:: max(1, len(states) // 50000)]
        xs, ys, pts = _plane_grid(states, a, b)
        mask = _visited_mask(states, xs, ys, a, b)
        parts = split_drift(f_fn, c_fn, data["densities"][name], pts)
        logp = data["densities"][name].log_density(pts).reshape(len(ys), len(xs))
        for c, p in enumerate(("drift", "reversible", "irreversible")):
            ax = axes[r, c]
            ax.contour(xs, ys, np.ma.masked_array(logp - logp[~mask].max() if (~mask).any() else logp, mask),
                       levels=6, colors="0.8", linewidths=0.6)
            _stream(ax, xs, ys, parts[p], a, b, mask, COLORS.get(name, "k"))
            ax.set_xlabel(names[a]), ax.set_ylabel(names[b])
            ax.set_title(f"{LABELS[name]}: {p}{_slice_note(analysis, a, b)}", fontsize=9)
    fig.suptitle("drift = reversible (D grad log p / 2 + div D / 2) + irreversible (J / p); grey: log p", fontsize=9)
    fig.tight_layout()
    return fig


def _epr(analysis):
    import matplotlib.pyplot as plt

    e = analysis.results["entropy_production_rate"]
    ro = analysis.results["rotation"]
    keys = [k for k in ("target", "network", "symmetric_fit") if k in e]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], e, "entropy production rate"), (axes[1], ro, f"mean rotation {'/'.join(ro['planes'][0])}"))
    for ax, src, title in panels:
        vals = [src[k] if np.ndim(src[k]) == 0 else src[k][0] for k in keys]
        ses = [src[f"{k}_stderr"] if np.ndim(src[f"{k}_stderr"]) == 0 else src[f"{k}_stderr"][0] for k in keys]
        ax.bar(range(len(keys)), vals, yerr=2 * np.asarray(ses), color=[COLORS[k] for k in keys], capsize=4)
        base = src["baseline"] if np.ndim(src["baseline"]) == 0 else src["baseline"][0]
        tv = vals[0]
        ax.axhspan(tv - base, tv + base, color="tab:blue", alpha=0.15, label="target ± |target A - target B|")
        if src is e and e.get("closed_form") is not None:
            ax.axhline(e["closed_form"], color="k", ls="--", lw=1, label=f"closed form {e['closed_form']:.4g}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(range(len(keys)), [LABELS[k] for k in keys])
        ax.set_title(f"{title} (± 2 SE)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
