"""What a verification of a model's run checks, decided before any work.

:func:`verify_arguments` turns a model and a trajectory of it into what
:func:`~ddm_neuro.verify.core.verify` (and :func:`~ddm_neuro.verify.run.run_verify`)
receive: the target SDE, the drift the Lyapunov check integrates (or none,
where it does not apply), and the read-out filter, with the notes a user
should read. :func:`check_report_folder` refuses a report folder before the
verification, not after it. :data:`OPTIONS` declares the verifier's options
(rows as in :mod:`ddm_neuro.options`).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DDMError
from ..options import SEED, SPAN

#: The options of :func:`~ddm_neuro.verify.run.run_verify` a user chooses.
OPTIONS = [
    ("--delta", float, None, "lag for drift/diffusion (SDE units; default automatic)"),
    ("--seed", SEED, 0, "seed of the reference runs and propagations (cells and lag depend on the trajectory only; a "
     "verdict within its own noise is marked marginal)"),
    ("--drift-tolerance", SPAN, None, "deterministic targets (noise 0) only: relative drift error accepted (default "
     "0.03)")]

#: The files a verification report writes into its folder.
REPORT_FILES = ("report.json", "timeseries.png", "phase_portrait.png", "drift_field.png", "marginals.png",
                "autocorrelation.png", "switching_times.png")


def check_report_folder(folder, force=False):
    """Refuse a report folder that is a file, sits in a missing folder, or holds a report, unless ``force``.

    Parameters
    ----------
    folder : str or Path
    force : bool
        Allow overwriting the report files already there.

    Raises
    ------
    DDMError
    """
    from ..fileio import check_output

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DDMError(f"{folder}: exists and is not a folder")
    if not folder.exists():
        check_output(folder, kind="dir")  # the parent must exist and be writable
    for name in REPORT_FILES:
        if (folder / name).exists() and not force:
            raise DDMError(f"{folder / name}: already exists (use --force to overwrite)")


def verify_arguments(model, traj, *, model_name="the model", traj_name="the trajectory"):
    """The target, model drift and read-out filter to verify ``traj`` (a run of ``model``) with, and notes.

    The Lyapunov check integrates the rate network's noise-free drift. For a
    spiking run of a chaotic target it is skipped (``model_drift`` None): once
    calibrated in the loop the spiking network's drift is not the rate
    network's. A model with hardware-constrained weights (``w_perp``) settles
    its off-latent state at every drift evaluation, so a chaotic target's
    check is slow: said in a note.

    Parameters
    ----------
    model : LatentRNN
    traj : Trajectory
        A run of ``model`` (its ``mode`` and ``readout_filter_tau`` metadata are read).
    model_name, traj_name : str
        How the notes and errors name them (the command line: their file names).

    Returns
    -------
    kwargs : dict
        ``sde``, ``model_drift`` and ``filter_tau``, for :func:`~ddm_neuro.verify.core.verify`.
    notes : list of str
        Sentences for the user (the command line prints each as ``note: ...`` on stderr).

    Raises
    ------
    DDMError
        A trajectory whose latent dimension is not the model's.
    """
    if traj.dim != model.dim:
        raise DDMError(f"{traj_name}: trajectory has {traj.dim} latent dimensions, "
                       f"the model has {model.dim} ({', '.join(model.variables)})")
    mode, filter_tau = traj.meta.get("mode"), traj.meta.get("readout_filter_tau")  # set by filtered read-outs
    sde = model.sde()
    chaotic = "chaotic" in sde.tags
    notes = []
    if model.w_perp is not None and chaotic:
        notes.append(f"{model_name} has hardware-constrained weights (W_perp): the Lyapunov check settles the "
                     "off-latent state at every drift evaluation and can take many minutes at N >= 512")
    model_drift = model.latent_drift
    if mode == "spiking" and chaotic:
        model_drift = None
        notes.append(f"{traj_name} is a spiking run: its noise-free drift is not the rate network's, so the "
                     "Lyapunov check is skipped (twin spiking runs measure it: benchmarks/spiking_lorenz.py)")
    kwargs = {"sde": sde, "model_drift": model_drift, "filter_tau": filter_tau}
    return kwargs, notes
