"""ddm_neuro glue for the Brian2 rate network: model -> spec, and the ``brian2`` (runtime) back end.

The network itself is built by :mod:`exporters.brian2.network` (pure Brian2,
the same file an export ships); see there for the equations and the schedule
within a step, which is the torch simulator's, so both integrate one scheme.
"""
from __future__ import annotations

import math

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.run.target import recording_grid
from ddm_neuro.run.rate import input_signal, network_steps, start_states
from ddm_neuro.trajectory import Trajectory

from .network import NetworkError, build_network, build_spiking_network, initial_state, spiking_state


def model_spec(model):
    """The plain ``(arrays, info)`` spec of a LatentRNN (see :mod:`exporters.brian2.network`)."""
    if model.w_perp is not None:
        raise DDMError("brian2 export: models with W_perp (off-subspace recurrent weights) are not supported")
    arrays = {"encoders": model.encoders, "decoders": model.decoders, "readout": model.readout,
              "bias": model.bias, "noise_const": model.noise_const, "noise_act": model.noise_act,
              "noise_latent": model.noise_latent,
              "input_weights": model.input_weights.reshape(model.n_neurons, model.n_inputs),
              "center": model.center, "scale": model.scale, "init_states": model.init_states}
    dt, rec = network_steps(model)
    info = {"tau": float(model.tau), "time_scale": float(model.time_scale), "neuron": model.neuron.to_dict(),
            "variables": list(model.variables), "inputs": list(model.inputs), "model_id": model.meta.get("model_id"),
            "sde_name": model.meta.get("sde_name"), "default_dt": dt, "default_record_dt": rec}
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}, info


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


def check_steps(dt=None, record_dt=None, duration=None):
    """Refuse a step, recording interval or duration that is not a finite number > 0 (None: the default)."""
    for name, value in (("dt", dt), ("record_dt", record_dt), ("duration", duration)):
        if value is None:
            continue
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and value > 0):
            raise DDMError(f"{name} must be a finite number > 0 (SDE time units), got {value!r}")


def run_grid(model, duration, dt=None, record_dt=None):
    """``(dt, record_dt, n_steps, n_rec)`` of a run, as the torch simulator lays it out."""
    d0, r0 = network_steps(model)
    n_rec, record_dt, n_sub, dt = recording_grid(duration, dt or d0, record_dt or max(r0, dt or d0))
    return dt, record_dt, (n_rec - 1) * n_sub, n_rec


def input_steps(model, u, dt, n_steps):
    """The input on the step grid, (n_steps + 2, k), or None for models without inputs."""
    signal = input_signal(model, u)
    return None if signal is None else signal.at(np.arange(n_steps + 2) * dt)


def trajectory(model, y, record_dt, *, backend, device, coupling, seed, duration, trials, dt, noise, u,
               mode="rate", spikes=None, **extra):
    """Wrap a latent read-out ``y`` (trials, n_rec, d) as a Trajectory in SDE units.

    ``spikes``: optional ``(t_seconds, i)`` of a spiking run, stored in SDE time units.
    """
    signal = input_signal(model, u)
    meta = {"backend": backend, "mode": mode, "device": device, "coupling": coupling,
            "model_id": model.meta.get("model_id"), "system": model.meta.get("sde_name"),
            "variables": list(model.variables), "seed": seed, "duration": float(duration), "trials": int(trials),
            "integration_dt": dt, "noise": noise if isinstance(noise, str) else bool(noise), "n_neurons": model.n_neurons,
            "input": None if signal is None else signal.to_dict(), "time_scale": model.time_scale, **extra}
    if mode == "spiking":
        meta["tau_syn"] = model.tau  # seconds, as the torch spiking simulator records it
    sp_t, sp_i = (None, None) if spikes is None else (np.asarray(spikes[0]) / model.time_scale,
                                                      np.asarray(spikes[1], dtype=np.int64))
    if spikes is not None and len(sp_t):
        meta["mean_rate_hz"] = float(len(sp_t) / (model.n_neurons * trials * (y.shape[1] - 1) * record_dt
                                                  * model.time_scale))
    return Trajectory(t=np.arange(y.shape[1]) * record_dt, z=y * model.scale + model.center, dt=record_dt, meta=meta,
                      spikes_t=sp_t, spikes_i=sp_i)


def spiking_noise(noise):
    """``noise`` of a spiking run: True -> "remainder", False -> "none", or the string itself."""
    return {True: "remainder", False: "none"}.get(noise, noise) if isinstance(noise, bool) else noise


def spiking_fano(model, fano):
    """``fano`` of a spiking build: ``"regular"`` or a list of N numbers >= 0 (a clear error otherwise)."""
    if isinstance(fano, str):
        if fano != "regular":
            raise DDMError(f"fano must be a number >= 0, N of them, or 'regular' (got {fano!r})")
        return fano
    try:
        F = np.broadcast_to(np.asarray(fano, dtype=np.float64), (model.n_neurons,))
    except ValueError:
        raise DDMError(f"fano must be a number >= 0, {model.n_neurons} of them, or 'regular' "
                       f"(got shape {np.shape(fano)})") from None
    if not (np.all(np.isfinite(F)) and np.all(F >= 0)):
        raise DDMError("fano must be finite and >= 0, or 'regular'")
    return F.tolist()


def simulate(model, duration, *, trials=1, seed=None, u=None, mode="rate", progress=False, dt=None,
             record_dt=None, noise=True, coupling=None, z0=None, fano="regular", record_spikes=False):
    """Run the model in Brian2's runtime device (numpy target); return the latent Trajectory.

    Parameters are those of :func:`ddm_neuro.simulate.simulate_network`; the
    coupling defaults to :func:`choose_coupling`. ``mode="spiking"`` runs the
    LIF network of :func:`exporters.brian2.network.build_spiking_network`
    (default step 0.1 ms of network time; ``noise`` True/"remainder",
    False/"none" or "model"; ``fano`` the spikes' Fano factor counted in
    "remainder", default ``"regular"``; ``record_spikes`` stores ``spikes_t``,
    ``spikes_i``), as the torch spiking simulator (:mod:`ddm_neuro.spiking`) does.
    """
    import brian2 as b2

    if mode not in ("rate", "spiking"):
        raise DDMError(f"backend 'brian2' does not support mode {mode!r} (supports: rate, spiking)")
    check_steps(dt, record_dt, duration)
    spiking = mode == "spiking"
    if spiking:
        from ddm_neuro.spiking.simulator import default_dt

        noise = spiking_noise(noise)
        dt = dt or default_dt(model)
        coupling = coupling or "factored"
        fano = spiking_fano(model, fano)
    else:
        coupling = choose_coupling(model, coupling, noise)
    dt, record_dt, n_steps, n_rec = run_grid(model, duration, dt, record_dt)
    arrays, info = model_spec(model)
    rng = np.random.default_rng(seed)
    b2_seed = int(rng.integers(2 ** 31))
    z0 = start_states(model, trials, rng, z0)
    u_grid = input_steps(model, u, dt, n_steps)
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
                         report="text" if progress else None)
    y = np.asarray(parts["monitor"].y)[:, :n_rec]                      # (d * trials, n_rec)
    y = y.reshape(trials, model.dim, n_rec).transpose(0, 2, 1)
    spikes = None
    if parts["spikes"] is not None:
        spikes = (np.asarray(parts["spikes"].t / b2.second), np.asarray(parts["spikes"].i))
    extra = {"fano": fano if isinstance(fano, str) or len(set(fano)) > 1 else fano[0]} if spiking else {}
    return trajectory(model, y, record_dt, backend="brian2", device="runtime", coupling=coupling, seed=seed,
                      duration=duration, trials=trials, dt=dt, noise=noise, u=u, mode=mode, spikes=spikes, **extra)
