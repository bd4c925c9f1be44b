"""Decompositions of a trained network (``ddm-neuro analyze``).

* :mod:`.connectivity`: ``W = W_s + W_a`` and each part's share of the latent drift;
* :mod:`.density`, :mod:`.decomposition`: the drift split into a reversible and an
  irreversible (probability-current) part;
* :mod:`.entropy`: entropy production rate and mean rotation (closed form, trajectories);
* :mod:`.symmetric`: a fit constrained to ``W = W^T``;
* :mod:`.core`: :func:`analyze`; :mod:`.report`, :mod:`.figures`: table, JSON, PNGs.
"""
from .connectivity import drift_contributions, split_weights
from .core import Analysis, analyze
from .entropy import closed_form_epr
from .report import save_report, table, to_json
from .symmetric import fit_symmetric

__all__ = ["analyze", "Analysis", "split_weights", "drift_contributions", "closed_form_epr", "fit_symmetric",
           "save_report", "table", "to_json"]
