"""The core's simulator back ends: ``torch`` (rate and spiking networks) and ``target`` (the SDE itself).

Each is one registration of a function ``run(plan) -> Trajectory``
(:mod:`ddm_neuro.plugins`); torch is imported only when a run starts.
"""
from __future__ import annotations

from ..plugins import Option, simulator

COUPLING = Option(None, "recurrent coupling: factored E (K r), O(N d) per step (default), or the dense N x N W",
                  ("factored", "dense"))


@simulator("torch", modes=("rate", "spiking"), options={
    "coupling": COUPLING,
    "fano": Option(None, "spiking: Fano factor of the spikes counted in the noise remainder (default 'regular')"),
    "record_spikes": Option(None, "spiking: store spike times and indices in the trajectory"),
    "chunk": Option(256, "integration steps of random numbers drawn at once"),
})
def run_torch(plan):
    """The rate network (Euler-Maruyama) or its LIF spiking network (exact integration), in torch, float64."""
    if plan.mode == "spiking":
        from ..spiking.simulator import run_spiking

        return run_spiking(plan)
    from .rate import run_rate

    return run_rate(plan)


@simulator("target", modes=("rate", "sde"))
def run_target(plan):
    """The model's target SDE itself, Euler-Maruyama (Ito), on the network's grid: the reference for comparisons."""
    from .target import run_sde

    return run_sde(plan)
