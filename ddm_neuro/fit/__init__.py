"""Fitting a network to an SDE: drift-diffusion matching, decoder solves, diffusion matching, training states.

The package is callable: ``ddm_neuro.fit(sde, ...)`` is :func:`ddm_neuro.fit.matching.fit` (the name
``ddm_neuro.fit`` is both this package and the function a user calls); importing the package stays cheap.
"""
from ..lazy import callable_package, lazy_names

#: Public names, imported from :mod:`.matching` on first use (``from ddm_neuro.fit import fit`` works).
_HOME = {"fit": "matching", "FitConfig": "matching", "fit_summary": "matching", "fit_warnings": "matching",
         "model_errors": "matching"}
__all__ = list(_HOME)
lazy_names(__name__, {name: (f"{__name__}.{module}", name) for name, module in _HOME.items()})
callable_package(__name__, "fit")
