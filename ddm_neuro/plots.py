"""Figures that need no verification: the network's attractor beside the target's."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_formats():
    """The file formats matplotlib writes here: suffix (no dot) -> description."""
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def check_figure_path(path, force=False):
    """Refuse, before any work, a figure path whose format matplotlib cannot write or that exists.

    Raises
    ------
    DDMError
    """
    from .errors import DDMError
    from .fileio import check_output

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = figure_formats()
    if suffix not in formats:
        raise DDMError(f"{path}: cannot write a figure as {'.' + suffix if suffix else 'a file without a suffix'} "
                       f"(formats: {', '.join(sorted(formats))})")
    return check_output(path, force)


def save_figure(fig, path, force=False, dpi=110):
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    from .fileio import atomic_write

    check_figure_path(path, force)
    try:
        with atomic_write(path, force=force) as fh:
            fig.savefig(fh, format=Path(path).suffix.lower().lstrip("."), dpi=dpi)
    finally:
        _plt().close(fig)
    return path


def attractor_figure(network, target, path, title=None, variables=None, force=False):
    """Phase portrait of the network's latent trajectory beside the target SDE's.

    Parameters
    ----------
    network, target : Trajectory
    path : str or Path
        PNG file to write.
    variables : list of str, optional
        Axis labels.

    Notes
    -----
    d = 1: time series and histograms; d = 2: phase plane; d >= 3: 3-D view of
    the first three variables and their (x, z) projection.
    """
    plt = _plt()
    d = network.dim
    variables = variables or network.meta.get("variables") or [f"z{i}" for i in range(d)]
    runs = [("network", network, "tab:blue"), ("target SDE", target, "tab:gray")]
    if d == 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
        for label, tr, col in runs:
            axes[0].plot(tr.t, tr.z[0, :, 0], color=col, lw=0.6, label=label, alpha=0.8)
            axes[1].hist(tr.z[..., 0].ravel(), bins=60, density=True, histtype="step", color=col,
                         orientation="horizontal", label=label)
        axes[0].set_xlabel("time (SDE units)")
        axes[0].set_ylabel(variables[0])
        axes[0].legend(loc="upper right")
        axes[1].set_xlabel("density")
    elif d == 2:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
        for ax, (label, tr, col) in zip(axes, runs):
            for i in range(min(tr.trials, 4)):
                ax.plot(tr.z[i, :, 0], tr.z[i, :, 1], color=col, lw=0.4, alpha=0.7)
            ax.set_title(label)
            ax.set_xlabel(variables[0])
        axes[0].set_ylabel(variables[1])
    else:
        fig = plt.figure(figsize=(12, 9))
        for j, (label, tr, col) in enumerate(runs):
            ax = fig.add_subplot(2, 2, j + 1, projection="3d")
            ax.plot(tr.z[0, :, 0], tr.z[0, :, 1], tr.z[0, :, 2], color=col, lw=0.3)
            ax.set_title(label)
            ax.set_xlabel(variables[0])
            ax.set_ylabel(variables[1])
            ax.set_zlabel(variables[2])
            ax2 = fig.add_subplot(2, 2, j + 3)
            for i in range(min(tr.trials, 4)):
                ax2.plot(tr.z[i, :, 0], tr.z[i, :, 2], color=col, lw=0.25, alpha=0.7)
            ax2.set_xlabel(variables[0])
            ax2.set_ylabel(variables[2])
    fig.suptitle(title or "network latent vs target SDE")
    fig.tight_layout()
    return save_figure(fig, path, force=force)


def trajectory_figure(traj, path, n_neurons=None, trial=0, show=200, title=None, variables=None, force=False):
    """One trial's latent trajectory against time, under its spike raster when spikes were recorded.

    Parameters
    ----------
    traj : Trajectory
        Any run; a spiking run with ``spikes_t``, ``spikes_i`` (neuron ``i`` of
        trial ``k`` is index ``k N + i``) gets the raster panel.
    path : str or Path
        PNG file to write.
    n_neurons : int, optional
        Neurons per trial (default ``traj.meta["n_neurons"]``); needed for the raster.
    trial : int
        The trial shown.
    show : int
        Neurons drawn in the raster (evenly spread over the population; all when fewer).
    """
    from .errors import DDMError

    if not 0 <= trial < traj.trials:
        raise DDMError(f"trial {trial} does not exist (the run has {traj.trials})")
    spikes = traj.spikes_t is not None
    N = int(n_neurons or traj.meta.get("n_neurons") or 0)
    if spikes and N <= 0:
        raise DDMError("the raster needs the number of neurons per trial (trajectory meta 'n_neurons')")
    plt = _plt()
    variables = variables or traj.meta.get("variables") or [f"z{i}" for i in range(traj.dim)]
    if spikes:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        pick = np.unique(np.linspace(0, N - 1, min(show, N)).astype(int))
        row = np.full(N, -1)
        row[pick] = np.arange(len(pick))
        sel = (traj.spikes_i // N) == trial
        t, i = traj.spikes_t[sel], traj.spikes_i[sel] % N
        keep = row[i] >= 0
        ax1.scatter(t[keep], row[i[keep]], s=1.5, marker="|", color="k", linewidths=0.5)
        ax1.set_ylabel(f"neuron ({len(pick)} of {N})")
        per_unit = len(t) / max(N * traj.duration, 1e-300)
        ax1.set_title(title or f"trial {trial}: spikes ({per_unit:.3g} per neuron per SDE time unit) and latent")
    else:
        fig, ax2 = plt.subplots(1, 1, figsize=(11, 3.5))
        ax2.set_title(title or f"trial {trial}: latent")
    for k in range(traj.dim):
        ax2.plot(traj.t, traj.z[trial, :, k], lw=0.8, label=variables[k])
    ax2.set_xlabel("time (SDE units)")
    ax2.set_ylabel("latent")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, force=force)
