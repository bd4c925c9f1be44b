"""Brian2 back ends for ddm_neuro models (rate mode, Brian2's runtime).

``build_rate_network`` turns a :class:`~ddm_neuro.network.LatentRNN` into a
Brian2 ``Network`` in physical units; ``simulate`` runs it and reads the latent
back into the standard Trajectory. Registered as the ``brian2`` back end of
``ddm-neuro simulate`` through the ``ddm_neuro.backends`` entry point.
Brian2 is imported only here.
"""
from .rate import build_rate_network, simulate

__all__ = ["build_rate_network", "simulate", "backend"]


def backend():
    """Entry point for ``ddm_neuro.backends``: ``(run_function, modes)``."""
    return simulate, ("rate",)
