"""Fitting a network to an SDE: drift-diffusion matching, decoder solves, diffusion matching, training states.

The package is callable: ``ddm_neuro.fit(sde, ...)`` is :func:`ddm_neuro.fit.matching.fit` (the name
``ddm_neuro.fit`` is both this package and the function a user calls); importing the package stays cheap.
"""
import importlib
import sys
import types

#: Public names, imported from :mod:`.matching` on first use (``from ddm_neuro.fit import fit`` works).
_HOME = {"fit": "matching", "FitConfig": "matching", "fit_summary": "matching", "fit_warnings": "matching",
         "model_errors": "matching"}
__all__ = list(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """:func:`ddm_neuro.fit.matching.fit`."""
        from .matching import fit

        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
