"""The ``nest`` back end: run a plan in NEST (rate or spiking mode) and return the latent Trajectory.

The networks themselves are built by :mod:`exporters.nest.network` (rate) and
:mod:`exporters.nest.spiking` (LIF), pure PyNEST, the same files an export
ships; see there for how the model's equations, noise and inputs are carried,
and what is refused.
"""
from __future__ import annotations

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.run.plan import plan_run

from ..spec import initial_state, model_spec, spiking_state
from ..spiking_options import spiking_meta, spiking_settings
from .network import NetworkError, check_rate, simulate_rate, step_ms
from .spiking import STEP_SECONDS, check_spiking, simulate_spiking


def run(plan):
    """Run a plan in NEST; return the latent Trajectory.

    Options: ``coupling`` (``"factored"``, default, or ``"dense"``: N^2 rate
    synapses, noise-free and input-free only). Threads: ``plan.threads``
    (NEST's ``local_num_threads``; NEST ignores ``OMP_NUM_THREADS``). The run
    is reproducible for the same seed and thread count.
    """
    model = plan.model
    if plan.mode == "spiking":
        return run_spiking(plan)
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


def run_spiking(plan):
    """Run a spiking-mode plan in NEST (:mod:`exporters.nest.spiking`); return the latent Trajectory.

    Options as the other spiking back ends: ``coupling`` (``"factored"``, default: driven from
    Python step by step, N d synapses; ``"dense"``: N^2 synapses), ``fano`` (default
    ``"regular"``), ``record_spikes``; noise True/"remainder", False/"none" or "model". The
    default step is :data:`exporters.nest.spiking.STEP_SECONDS` of network time (a quarter of
    the other back ends'), where the plan's step was not asked for.
    """
    model = plan.model
    if plan.requested_dt is None:   # NEST's own default step (see spiking.STEP_SECONDS)
        plan = plan_run(model, plan.duration, mode="spiking", trials=plan.trials, seed=plan.seed, u=plan.input,
                        z0=plan.z0, dt=STEP_SECONDS / model.time_scale,
                        record_dt=plan.requested_record_dt or plan.record_dt, noise=plan.noise,
                        options=plan.options, progress=plan.progress, threads=plan.threads)
    noise, coupling, fano = spiking_settings(model, plan)
    arrays, info = model_spec(model)
    try:  # before NEST starts
        check_spiking(arrays, info, coupling=coupling, noise=noise, h_ms=step_ms(plan.dt, info))
    except NetworkError as exc:
        raise DDMError(f"nest: {exc}") from None
    rng = np.random.default_rng(plan.seed)
    seed = int(rng.integers(2 ** 62))   # drawn first, as the torch simulator does: the same start phases
    z0 = plan.start_states(rng)
    u_steps = plan.input_on_steps()
    x0, _ = initial_state(arrays, z0, None if u_steps is None else u_steps[0])
    state = spiking_state(arrays, x0, coupling, rng)
    try:
        y, stats = simulate_spiking(arrays, info, trials=plan.trials, dt=plan.dt, n_rec=plan.n_rec,
                                    record_every=plan.n_sub, state=state, seed=seed,
                                    threads=plan.threads, coupling=coupling, noise=noise, fano=fano,
                                    u_steps=u_steps, record_spikes=bool(plan.options.get("record_spikes")),
                                    progress=plan.progress)
    except NetworkError as exc:
        raise DDMError(f"nest: {exc}") from None
    h = stats["h_ms"] * 1e-3 / model.time_scale
    sp_t, sp_i, extra = spiking_meta(model, stats.get("spikes"), plan.trials, plan.n_rec, plan.record_dt)
    sim_s = (plan.n_rec - 1) * plan.record_dt * model.time_scale
    extra["mean_rate_hz"] = stats["n_spikes"] / (plan.trials * model.n_neurons * sim_s) if sim_s > 0 else 0.0
    return plan.trajectory(y * model.scale + model.center, backend="nest", grid=(h, h * plan.n_sub),
                           spikes_t=sp_t, spikes_i=sp_i, coupling=coupling, noise=noise,
                           fano=fano if isinstance(fano, str) or len(set(fano)) > 1 else fano[0],
                           threads=stats["threads"], time_scale=model.time_scale, nest_run_s=stats["run_s"],
                           stepped=stats["stepped"], **extra)
