"""The core's simulator back ends: ``torch`` (rate and spiking networks) and ``target`` (the SDE itself).

Each is a function ``run(plan) -> Trajectory``, declared with its options in
:data:`ddm_neuro.plugins.CORE`; torch is imported only when a run starts.
"""
from __future__ import annotations


def run_torch(plan):
    """The rate network (Euler-Maruyama) or its LIF spiking network (exact integration), in torch, float64."""
    if plan.mode == "spiking":
        from ..spiking.simulator import run_spiking

        return run_spiking(plan)
    from .rate import run_rate

    return run_rate(plan)


def run_target(plan):
    """The model's target SDE itself, Euler-Maruyama (Ito), on the network's grid: the reference for comparisons."""
    from .target import run_sde

    return run_sde(plan)
