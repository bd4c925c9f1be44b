"""Verification: does a trajectory follow the target SDE? (DESIGN §4, §6)

Public API: :func:`verify` -> :class:`Report`; :func:`run_verify` for the
command line (prints the table, writes the report, returns the exit status);
:func:`verify_arguments` (what to verify a model's run with, and the notes) and
:func:`check_report_folder` from :mod:`.options`. Names are imported on first use,
so importing the package (or :mod:`.options`) is cheap.

The package is callable: ``ddm_neuro.verify(sde, traj, ...)`` is :func:`verify`
(the name ``ddm_neuro.verify`` is both this package and the function a user calls).
"""
from ..lazy import callable_package, lazy_names

_HOME = {"verify": "core", "Report": "report", "run_verify": "run", "MULTIPLES": "thresholds",
         "verify_arguments": "options", "check_report_folder": "options"}
__all__ = list(_HOME)
lazy_names(__name__, {name: (f"{__name__}.{module}", name) for name, module in _HOME.items()})
callable_package(__name__, "verify")
