"""Command-line entry: verify, print the table, write the report, return the exit status."""
from __future__ import annotations

import sys

from .core import verify


def run_verify(sde, traj, report_dir=None, delta=None, model_drift=None, force=False, *, seed=0,
               filter_tau=None, progress=True, out=None, drift_tolerance=None):
    """Verify ``traj`` against ``sde``, print the table and optionally write ``report_dir``.

    The keywords are :func:`.core.verify`'s (``drift_tolerance``: deterministic targets only);
    ``out`` is the stream the table goes to (default stdout).

    Returns
    -------
    int
        0 when every metric passes, 1 when any fails. Bad input raises a
        :class:`~ddm_neuro.errors.DDMError` (the command line exits with 2).
    """
    out = out or sys.stdout
    report = verify(sde, traj, delta=delta, seed=seed, filter_tau=filter_tau, model_drift=model_drift,
                    progress=progress, drift_tolerance=drift_tolerance)
    print(report.table(), file=out)
    if report_dir is not None:
        files = report.save(report_dir, traj=traj, force=force)
        print(f"report: {files[0]} and {len(files) - 1} figure(s) in {report_dir}", file=out)
    return 0 if report.passed else 1
