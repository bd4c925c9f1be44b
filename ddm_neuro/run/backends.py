"""The core's simulator back ends: ``torch`` (rate and spiking networks) and ``target`` (the SDE itself).

Each is a function ``run(plan) -> Trajectory``, declared with its options in
:data:`ddm_neuro.plugins.CORE`; torch is imported only when a run starts.
"""
from __future__ import annotations


def run_torch(plan):
    """The rate network (Euler-Maruyama) or its LIF spiking network (exact integration), float64.

    A spike-coordinated model's spiking runs go to :func:`~ddm_neuro.spiking.coordinated.run_coordinated`.

    Refuses, before any allocation, a run whose state (with the dense N x N coupling or the torch
    loop's noise drawn ahead, where they apply) does not fit in the memory available.
    """
    from .plan import check_run_size

    opt = plan.options
    if plan.mode == "spiking":
        from ..spiking.coordinated import coordinated, run_coordinated

        if coordinated(plan.model):
            return run_coordinated(plan)
    torch_loop = opt.get("engine") == "torch" or (opt.get("device") or "cpu") != "cpu"
    check_run_size(plan.model, plan.duration, plan.trials, coupling=opt.get("coupling"),
                   buffered_steps=(opt.get("chunk") or 256) if torch_loop else 0)
    if plan.mode == "spiking":
        from ..spiking.simulator import run_spiking

        return run_spiking(plan)
    from .rate import run_rate

    return run_rate(plan)


def run_target(plan):
    """The model's target SDE itself, Euler-Maruyama (Ito), on the network's grid: the reference for comparisons."""
    from .target import run_sde

    return run_sde(plan)
