"""Verification: does a trajectory follow the target SDE? (DESIGN §4, §6)

Public API: :func:`verify` -> :class:`Report`; :func:`run_verify` for the
command line (prints the table, writes the report, returns the exit status);
:func:`verify_arguments` (what to verify a model's run with, and the notes) and
:func:`check_report_folder` from :mod:`.options`. Names are imported on first use,
so importing the package (or :mod:`.options`) is cheap.

The package is callable: ``ddm_neuro.verify(sde, traj, ...)`` is :func:`verify`
(the name ``ddm_neuro.verify`` is both this package and the function a user calls).
"""
import importlib
import sys
import types

_HOME = {"verify": "core", "Report": "report", "run_verify": "run", "MULTIPLES": "thresholds",
         "verify_arguments": "options", "check_report_folder": "options"}
__all__ = list(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """:func:`ddm_neuro.verify.core.verify`."""
        return self.verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
