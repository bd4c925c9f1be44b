"""Fitting a network to an SDE: drift-diffusion matching, decoder solves, diffusion matching, training states.

The package is callable: ``ddm_neuro.fit(sde, ...)`` is :func:`ddm_neuro.fit.matching.fit` (the name
``ddm_neuro.fit`` is both this package and the function a user calls); importing the package stays cheap.
"""
import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """:func:`ddm_neuro.fit.matching.fit`."""
        from .matching import fit

        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
