"""The ``nest`` back end: run a plan in NEST (rate mode) and return the latent Trajectory.

The network itself is built by :mod:`exporters.nest.network` (pure PyNEST, the
same file an export ships); see there for how the model's equations, noise and
inputs are carried, and what is refused.
"""
from __future__ import annotations

import numpy as np

from ddm_neuro.errors import DDMError

from ..spec import initial_state, model_spec
from .network import NetworkError, check_rate, simulate_rate


def run(plan):
    """Run a plan in NEST; return the latent Trajectory.

    Options: ``coupling`` (``"factored"``, default, or ``"dense"``: N^2 rate
    synapses, noise-free and input-free only). Threads: ``plan.threads``
    (NEST's ``local_num_threads``; NEST ignores ``OMP_NUM_THREADS``). The run
    is reproducible for the same seed and thread count.
    """
    model = plan.model
    coupling = plan.options.get("coupling") or "factored"
    arrays, info = model_spec(model)
    try:  # before NEST starts
        check_rate(arrays, info, coupling=coupling, noise=bool(plan.noise), has_input=plan.input is not None)
    except NetworkError as exc:
        raise DDMError(f"nest: {exc}") from None
    rng = np.random.default_rng(plan.seed)
    z0 = plan.start_states(rng)
    u_steps = plan.input_on_steps()
    x0, _ = initial_state(arrays, z0, None if u_steps is None else u_steps[0])
    try:
        y, stats = simulate_rate(arrays, info, trials=plan.trials, dt=plan.dt, n_rec=plan.n_rec,
                                 record_every=plan.n_sub, x0=x0, seed=int(rng.integers(2 ** 62)),
                                 threads=plan.threads, coupling=coupling, noise=bool(plan.noise),
                                 u_steps=u_steps, progress=plan.progress)
    except NetworkError as exc:
        raise DDMError(f"nest: {exc}") from None
    h = stats["h_ms"] * 1e-3 / model.time_scale
    return plan.trajectory(y * model.scale + model.center, backend="nest", grid=(h, h * plan.n_sub),
                           coupling=coupling,
                           noise=bool(plan.noise), threads=stats["threads"],
                           time_scale=model.time_scale, nest_run_s=stats["run_s"])
