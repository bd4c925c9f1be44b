"""ddm_neuro glue for the Brian2 rate network: model -> spec, and the ``brian2`` (runtime) back end.

The network itself is built by :mod:`exporters.brian2.network` (pure Brian2,
the same file an export ships); see there for the equations and the schedule
within a step, which is the torch simulator's, so both integrate one scheme.
"""
from __future__ import annotations

import math

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.run.plan import recording_grid
from ddm_neuro.run.plan import input_signal, network_steps, start_states
from ddm_neuro.trajectory import Trajectory

from ..spec import model_spec  # noqa: F401 (re-exported for export/standalone)
from ..spiking_options import spiking_fano, spiking_meta, spiking_noise, spiking_settings  # noqa: F401 (re-exported)
from .network import NetworkError, build_network, build_spiking_network, initial_state, spiking_state


#: Models up to this many neurons get the dense coupling by default (W explicit); larger, factored.
DENSE_MAX_NEURONS = 128


def choose_coupling(model, coupling=None, noise=True):
    """``coupling`` if given, else dense for small models (W explicit) and factored for large ones."""
    if coupling in ("factored", "dense", "none"):  # "none": uncoupled neurons, the speed floor in benchmarks
        return coupling
    if coupling not in (None, "auto"):
        raise DDMError(f"coupling must be 'factored', 'dense' or 'auto', got {coupling!r}")
    shared = noise and np.any(model.noise_latent)
    return "dense" if model.n_neurons <= DENSE_MAX_NEURONS and not shared else "factored"


def run(plan):
    """Run a plan in Brian2's runtime device (numpy target); return the latent Trajectory.

    ``mode="spiking"`` runs the LIF network of
    :func:`exporters.brian2.network.build_spiking_network` (default step
    0.1 ms of network time; noise True/"remainder", False/"none" or "model";
    option ``fano``, the spikes' Fano factor counted in "remainder", default
    ``"regular"``; ``record_spikes`` stores ``spikes_t``, ``spikes_i``), as the
    torch spiking simulator does. Rate mode: ``coupling`` defaults to
    :func:`choose_coupling`.
    """
    import brian2 as b2

    model, trials, dt, record_dt = plan.model, plan.trials, plan.dt, plan.record_dt
    spiking = plan.mode == "spiking"
    record_spikes = bool(plan.options.get("record_spikes"))
    if spiking:
        noise, coupling, fano = spiking_settings(model, plan)
    else:
        noise, coupling, fano = plan.noise, choose_coupling(model, plan.options.get("coupling"), plan.noise), None
    n_steps, n_rec = plan.n_steps, plan.n_rec
    arrays, info = model_spec(model)
    rng = np.random.default_rng(plan.seed)
    b2_seed = int(rng.integers(2 ** 31))
    z0 = plan.start_states(rng)
    u_grid = plan.input_on_steps()
    x0, drive0 = initial_state(arrays, z0, None if u_grid is None else u_grid[0])
    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    b2.seed(b2_seed)
    try:
        if spiking:
            state = spiking_state(arrays, x0, coupling, rng)
            parts = build_spiking_network(arrays, info, trials=trials, dt=dt, record_dt=record_dt,
                                          coupling=coupling, noise=noise, fano=fano, u_values=u_grid, state=state,
                                          drive0=drive0, record_spikes=record_spikes)
        else:
            parts = build_network(arrays, info, trials=trials, dt=dt, record_dt=record_dt, coupling=coupling,
                                  noise=noise, u_values=u_grid, x0=x0, drive0=drive0)
    except NetworkError as exc:
        raise DDMError(str(exc)) from None
    parts["network"].run((n_steps + 1) * dt * model.time_scale * b2.second, namespace=parts["namespace"],
                         report="text" if plan.progress else None)
    y = np.asarray(parts["monitor"].y)[:, :n_rec]                      # (d * trials, n_rec)
    y = y.reshape(trials, model.dim, n_rec).transpose(0, 2, 1)
    extra = {"device": "runtime", "coupling": coupling, "noise": noise if isinstance(noise, str) else bool(noise),
             "time_scale": model.time_scale}
    sp_t = sp_i = None
    if spiking:
        spikes = None
        if parts["spikes"] is not None:
            spikes = (np.asarray(parts["spikes"].t / b2.second), np.asarray(parts["spikes"].i))
        sp_t, sp_i, more = spiking_meta(model, spikes, trials, n_rec, record_dt)
        extra.update(more, fano=fano if isinstance(fano, str) or len(set(fano)) > 1 else fano[0])
    return plan.trajectory(y * model.scale + model.center, backend="brian2", spikes_t=sp_t, spikes_i=sp_i, **extra)
