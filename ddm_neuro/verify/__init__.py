"""Verification: does a trajectory follow the target SDE? (DESIGN §4, §6)

Public API: :func:`verify` -> :class:`Report`; :func:`run_verify` for the
command line (prints the table, writes the report, returns the exit status).
"""
from .core import verify
from .report import Report
from .run import run_verify
from .thresholds import MULTIPLES

__all__ = ["verify", "Report", "run_verify", "MULTIPLES"]
