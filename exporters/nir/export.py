r"""``ddm-neuro export --format nir --mode spiking``: the LIF spiking network as an NIR graph.

The network (:mod:`ddm_neuro.spiking`), in seconds, with normalised LIF neurons
(threshold 1, reset 0, **no refractory period**)::

    tau   dx/dt = -x + W s(t) + b + B u(t)        s_j(t) = sum_k delta(t - t_j^k),  W = E K
    tau_m dv/dt = x - v,       v >= 1: spike, v <- 0
    z = S D x + c

NIR 1.0's ``CubaLIF`` (``nir/ir/neuron.py``) is, for input ``S``::

    tau_syn dI/dt = -I + w_in S
    tau_mem dv/dt = (v_leak - v) + r I,        v > v_threshold: spike, v <- v_reset

**Time convention (the trap).** Times are in seconds. The consumers
integrate these equations with forward Euler at a fixed step ``dt`` and treat a
spike as the value 1 for one step (a pulse of area ``dt``, not a delta of area
1). Norse 1.1 (``from_nir(graph, dt=...)``, default 1 ms) computes per step::

    I <- I + dt/tau_syn (-I + w_in S),   v <- v + dt/tau_mem (v_leak - v + r I),
    spike if v > v_threshold, then v <- v_reset in the same step,

and snnTorch 1.0 (``import_from_nir``, ``RSynaptic``) fixes ``dt = 1e-4`` s,
requires ``r = tau_mem/dt`` and computes ``I <- (1 - dt/tau_syn) I + S'``,
``v <- (1 - dt/tau_mem) v + I`` with ``S' = w_in dt/tau_syn S`` (it refuses
other ``r``; other ``w_in`` it folds into the threshold; its reset to zero
takes effect one step after the spike, like a refractory period of one step).
A file is therefore
written **for one step dt** (default 1e-4 s, the only one snnTorch runs;
``metadata["dt"]``), with::

    r = tau_m/dt,  w_in = tau/dt     so that per step   I <- (1 - dt/tau) I + S,   v <- (1 - dt/tau_m) v + I

in both consumers, and ``I = (dt/tau_m) x``. Then ``x`` steps as
``x <- (1 - dt/tau) x + (dt/tau)(b + B u) + W s/tau`` (a spike moves ``x`` by
``W[:, j]/tau``, as in the model) and ``v`` as the Euler step of
``tau_m dv/dt = x - v``, if the nodes feeding ``lif`` carry::

    affine:     weight = B dt^2/(tau_m tau),  bias = b dt^2/(tau_m tau)     (input u; a model without
                inputs gets one input channel with zero weight: feed 0)
    recurrent:  weight = W dt/(tau_m tau)                                    (spikes of the previous step)
    readout:    weight = S D tau_m/dt,  bias = c                            z = readout(I)

``tau_syn = tau`` and ``tau_mem = tau_m`` are the model's own; the continuous
equations above hold with spikes read as pulses of height 1 and width
``dt``. NIR edges carry spikes, but the **read-out acts on the synaptic current**
``I`` of node ``lif`` (the state every consumer keeps): ``z = c + S D x``.
Euler at ``dt`` against the exact integration of :mod:`ddm_neuro.spiking`
shifts the rates by O(r dt) (spike times are rounded up to the step): at
dt = 0.1 ms by -0.86 % on average over 50-400 Hz in Norse and -3.0 % in
snnTorch (``benchmarks/nir_roundtrip.py --rate-curve``).

**Matching the step (``step_matched=True``).** The consumers' Euler step biases
the rate curve: the threshold is tested at the end of a step and the membrane
restarts from 0 there, losing half a step per interval on average (Norse;
snnTorch's late reset loses a step more), and ``1 - dt/tau_m`` decays faster
than ``exp(-dt/tau_m)``. Where the drift is a small difference of large
terms (Lorenz: ``T/tau`` ~ 28), a rate bias of ``r dt/2`` becomes a drift bias of
several per cent. ``step_matched`` writes for the discretisation instead: the
model is fitted with ``tau_ref = dt/2`` (Norse) or ``3 dt/2`` (snnTorch), which the
step supplies (no refractory period is written), and the file's time constants
are ``dt/(1 - exp(-dt/tau))``, so each Euler step decays exactly; then the mean
inter-spike interval is the fitted ``tau_ref + tau_m log(1 + 1/(x - 1))``. The
weights follow with ``dt/tau_m`` replaced by ``a_m = dt/tau_mem`` (file), ``dt/tau``
in the affine by ``a_s = dt/tau_syn``; spikes still move ``x`` by ``W/tau``.

**Noise.** NIR has no noise primitive. The metadata says what the host must
add, as a current into the input of ``lif``, at every step::

    J = recurrent.weight @ (sqrt(sigma2 dt) xi) + sqrt(dt) (dt/tau_m) E L xi',   xi ~ N(0, I_N), xi' ~ N(0, I_d)

``sigma2 = max(host_noise_sigma2 + host_noise_rate_coef * phi(x), 0)`` (Hz, per
neuron, at the neuron's input ``x = I/current_scale``, ``phi`` the fitted rate
curve) is the model's private output-noise intensity ``noise_const +
noise_act tau_ref phi(x)`` minus what the spikes supply (``F r``, averaged over
the model's start states; ``fano=1`` (default, as :func:`ddm_neuro.spiking.simulator.simulate_spiking`)
counts Poisson-like spikes, which is what they look like at lags shorter than an
inter-spike interval, where the verifier measures the diffusion; ``fano="regular"``
counts regular firing over one SDE time unit, :func:`ddm_neuro.spiking.noise.regular_fano`,
far less: on the double well it left the diffusion ~2 % too high, measured by
``benchmarks/nir_roundtrip.py``); with
``tau_ref = 0`` the rate term vanishes and the intensity is constant;
``host_noise_latent`` is ``sqrt(dt)(dt/tau_m) E L`` premultiplied, (N, d). The
first term is exactly a fractional spike count ``sqrt(sigma2 dt) xi`` sent
through the recurrent weights, i.e. the model's output noise ``eta``.

The graph's metadata also holds the format version, the time convention, the
neuron and the dropped refractory period, the SDE spec, the read-out mapping,
the time scale ``T`` (seconds of network time per SDE time unit) and the
start states, as ``metadata["ddm_neuro"]`` (a JSON string) plus flat keys.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_write, check_output
from ddm_neuro.run.plan import network_steps
from ddm_neuro.spiking.noise import regular_fano

#: Version of the layout below; readers refuse other versions.
FORMAT_VERSION = 1
#: snnTorch 1.0's fixed step (``snntorch/import_nir.py``): the default export step.
SNNTORCH_DT = 1e-4
#: Node names and NIR types of the exported graph.
NODES = {"input": "Input", "affine": "Affine", "lif": "CubaLIF", "recurrent": "Linear",
         "readout": "Affine", "output": "Output"}
EDGES = [("input", "affine"), ("affine", "lif"), ("lif", "recurrent"), ("recurrent", "lif"),
         ("lif", "readout"), ("readout", "output")]


#: ``tau_ref`` (in steps) that the consumers' discretisation supplies: Norse's threshold test at the end of
#: a step loses half a step per interval on average; snnTorch's reset one step late loses a step more.
STEP_TAU_REF = {"norse": 0.5, "snntorch": 1.5}


def matched_consumer(model, dt):
    """The consumer whose step supplies the model's ``tau_ref`` (:data:`STEP_TAU_REF`), or None
    (also for ``tau_ref = 0``)."""
    tau_ref = model.neuron.params.get("tau_ref", 0.0) if model.neuron.name == "lif" else 0.0
    if not tau_ref:
        return None
    return next((c for c, k in STEP_TAU_REF.items() if abs(tau_ref - k * dt) <= 1e-6 * dt), None)


def check_exportable(model, dt, step_matched=False):
    """Refuse, with a clear :class:`DDMError`, what an NIR CubaLIF graph cannot hold.

    Parameters
    ----------
    model : LatentRNN
    dt : float
        Export step, seconds.
    step_matched : bool
        Accept ``tau_ref = dt/2`` (Norse) or ``3 dt/2`` (snnTorch), which the step supplies.

    Returns
    -------
    str or None
        With ``step_matched``: the consumer the model's ``tau_ref`` matches.
    """
    if model.neuron.name != "lif":
        raise DDMError(f"nir export needs LIF neurons (this model has {model.neuron.name!r}; fit with "
                       "--neuron lif and tau_ref = 0)")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise DDMError(f"nir export: dt must be a number of seconds > 0 (got {dt!r})")
    tau_ref = model.neuron.params["tau_ref"]
    matched = None
    if step_matched:
        matched = matched_consumer(model, dt)
        if matched is None:
            raise DDMError(f"nir export, step_matched: the model's tau_ref = {tau_ref * 1e3:g} ms is not what the "
                           f"step dt = {dt * 1e3:g} ms supplies; fit with tau_ref = dt/2 = {dt * 500:g} ms (Norse) "
                           f"or 3 dt/2 = {dt * 1500:g} ms (snnTorch)")
    elif tau_ref > 0:
        raise DDMError(f"nir export: NIR's CubaLIF has no refractory period, but this model's LIF neurons have "
                       f"tau_ref = {tau_ref * 1e3:g} ms; refit with tau_ref = 0 (ddm-neuro fit ... --neuron lif --tau-ref 0, "
                       f"or convert --tau-ref 0), or with the tau_ref the step supplies ({dt * 500:g} ms for "
                       f"Norse, {dt * 1500:g} ms for snnTorch: written step-matched)")
    if model.w_perp is not None:
        raise DDMError("nir export: models with W_perp (off-subspace recurrent weights) are not supported")
    if model.tau < 5 * dt or model.neuron.params["tau_m"] < 5 * dt:
        raise DDMError(f"nir export: dt = {dt * 1e3:g} ms is too coarse for tau_syn = {model.tau * 1e3:g} ms and "
                       f"tau_m = {model.neuron.params['tau_m'] * 1e3:g} ms (needs dt <= tau/5); "
                       f"use dt = {SNNTORCH_DT:g} s")
    return matched


def step_constants(model, dt, step_matched=False):
    """``(tau_syn, tau_mem, a_s, a_m)`` written to the file: time constants and ``a = dt/tau`` per step.

    Default: the model's ``tau`` and ``tau_m``. ``step_matched``: ``dt/(1 - exp(-dt/tau))``, so that
    the consumers' Euler decay ``1 - dt/tau_file`` equals the exact ``exp(-dt/tau)``.
    """
    tau, tau_m = float(model.tau), float(model.neuron.params["tau_m"])
    if step_matched:
        tau, tau_m = dt / -np.expm1(-dt / tau), dt / -np.expm1(-dt / tau_m)
    return tau, tau_m, dt / tau, dt / tau_m


def host_noise(model, dt, fano=1.0, noise=True, step_matched=False):
    """The noise the host must inject: ``(sigma2 (N,), rate_coef (N,), latent (N, d))``.

    Private intensity per neuron, Hz: ``max(sigma2 + rate_coef * phi(x), 0)`` with ``phi`` the fitted
    rate curve at the neuron's input ``x`` (``rate_coef = noise_act * activity / phi``, the model's
    activity-dependent part: ``tau_ref``, or ``1 / max rate`` when ``tau_ref = 0``), ``sigma2 = noise_const - <F r>`` (the spikes'
    share averaged over the start states); ``latent`` is ``sqrt(dt) a_m E L`` (see the module docstring).

    Parameters
    ----------
    model : LatentRNN
    dt : float
        Export step, seconds.
    fano : "regular" or float
        Fano factor of the spikes, counted against the model's private noise.
    noise : bool
        False: no host noise (zeros).
    step_matched : bool
        As :func:`build_graph`.
    """
    N, d = model.n_neurons, model.dim
    if not noise:
        return np.zeros(N), np.zeros(N), np.zeros((N, d))
    u0 = np.zeros(model.n_inputs) if model.n_inputs else None
    x = model.neuron_inputs(model.init_states, u0)
    rate = model.neuron.phi(x)
    if isinstance(fano, str):
        if fano != "regular":
            raise DDMError(f"fano must be a number >= 0 or 'regular' (got {fano!r})")
        F = regular_fano(model, model.init_states, model.time_scale, u0)
    else:
        F = float(fano)
        if not (np.isfinite(F) and F >= 0):
            raise DDMError(f"fano must be a number >= 0 or 'regular' (got {fano!r})")
    sigma2 = model.noise_const - np.mean(F * rate, axis=0)
    probe = np.full(1, 2.0)   # activity = phi x const (tau_ref, or 1 / max rate without a refractory period)
    rate_coef = model.noise_act * float(model.neuron.activity(probe)[0] / model.neuron.phi(probe)[0])
    latent = np.sqrt(dt) * step_constants(model, dt, step_matched)[3] * model.encoders @ model.noise_latent
    return sigma2, rate_coef, latent


def build_graph(model, dt=SNNTORCH_DT, fano=1.0, noise=True, step_matched=False):
    """The NIR graph of the spiking network (see the module docstring for every parameter).

    Parameters
    ----------
    model : LatentRNN
        LIF neurons with ``tau_ref = 0``.
    dt : float
        Step, seconds, the file is written for.
    fano, noise
        As :func:`host_noise`.
    step_matched : bool
        Write for the consumers' discretisation rather than the continuous model: the model must be
        fitted with ``tau_ref = dt/2`` (Norse) or ``3 dt/2`` (snnTorch), the refractory-like delay
        that the step supplies (no refractory period is written), and ``tau_syn``, ``tau_mem`` become
        ``dt/(1 - exp(-dt/tau))`` (exact decay per Euler step). See the module docstring.

    Returns
    -------
    nir.NIRGraph
    """
    import nir

    matched = check_exportable(model, dt, step_matched)
    N, d, k = model.n_neurons, model.dim, model.n_inputs
    tau_s, tau_mf, a_s, a_m = step_constants(model, dt, step_matched)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731  (what the consumers compute in)
    ones = np.ones(N, dtype=np.float32)
    c_in = a_m * a_s
    B = model.input_weights if k else np.zeros((N, 1))
    sigma2, rate_coef, latent = host_noise(model, dt, fano, noise, step_matched)
    nodes = {
        "input": nir.Input(input_type=np.array([max(k, 1)])),
        "affine": nir.Affine(weight=f32(B * c_in), bias=f32(model.bias * c_in),
                             metadata={"role": "input u (k channels; one zero-weight channel if k = 0) and bias b, "
                                               "scaled by dt^2/(tau_m tau)"}),
        "lif": nir.CubaLIF(tau_syn=ones * tau_s, tau_mem=ones * tau_mf, r=ones * (tau_mf / dt), v_leak=0 * ones,
                           v_threshold=ones, v_reset=0 * ones, w_in=ones * (tau_s / dt),
                           metadata={"role": "LIF neurons, I = (dt/tau_mem) x; no refractory period"}),
        "recurrent": nir.Linear(weight=f32(model.weights() * (a_m / model.tau)),
                                metadata={"role": "W dt/(tau_mem tau), spikes of the previous step"}),
        "readout": nir.Affine(weight=f32(model.scale[:, None] * model.readout / a_m), bias=f32(model.center),
                              metadata={"role": "z = weight @ I + bias, applied to the synaptic current I of "
                                                "node 'lif' (not to its spikes)"}),
        "output": nir.Output(output_type=np.array([d])),
    }
    meta = _metadata(model, dt, fano, noise, (sigma2, rate_coef, latent), matched, a_m)
    graph = nir.NIRGraph(nodes=nodes, edges=list(EDGES), metadata=meta)
    return graph


def init_current(model, dt, step_matched=False):
    """The ``(N, d + 1 + k)`` matrix ``M`` with ``I0 = M @ [z0, 1, u0]``.

    ``I0 = (dt/tau_m) (E (z0 - c)/S + P (b + B u0))``, ``P = I - E D``: the latent at z0, the rest at rest.
    """
    E, D = model.encoders, model.readout
    B = model.input_weights.reshape(model.n_neurons, model.n_inputs)
    cols = [E / model.scale, (model.bias - E @ (D @ model.bias) - E @ (model.center / model.scale))[:, None],
            B - E @ (D @ B)]
    return step_constants(model, dt, step_matched)[3] * np.concatenate(cols, axis=1)


def _metadata(model, dt, fano, noise, host, matched, a_m):
    sigma2, rate_coef, latent = host
    info = {
        "format": "ddm_neuro-nir", "format_version": FORMAT_VERSION,
        "time_unit": "s", "dt": dt, "time_scale": float(model.time_scale),
        "spike_convention": "a spike is the value 1 for one step dt (area dt); the file is valid for this dt only",
        "consumers": {"norse": f"norse.torch.from_nir(graph, dt={dt:g})",
                      "snntorch": "snntorch.import_nir.import_from_nir(graph) (fixed dt = 1e-4 s)"},
        "neuron": {**model.neuron.to_dict(), "tau_syn": float(model.tau), "threshold": 1.0, "reset": 0.0},
        "refractory": "none (tau_ref = 0; NIR CubaLIF has no refractory period)" if matched is None else
                      f"none written; the model's tau_ref = {STEP_TAU_REF[matched]:g} dt is supplied by {matched}'s "
                      "step (step_matched: tau_syn, tau_mem are dt/(1 - exp(-dt/tau)))",
        "step_matched": matched,
        "current_scale": a_m,
        "readout": "z = readout.weight @ I_lif + readout.bias (SDE coordinates), I_lif the synaptic current of "
                   "node 'lif'; equals c + S D x with x = I tau_m/dt",
        "host_noise": "each step add to the input of node 'lif' the current recurrent.weight @ "
                      "(sqrt(s2 * dt) * xi) + host_noise_latent @ xi2, xi ~ N(0, I_N), xi2 ~ N(0, I_d), with "
                      "s2 = max(host_noise_sigma2 + host_noise_rate_coef * phi(x), 0) (Hz), x = I / current_scale",
        "rate_curve": {"tau_m": model.neuron.params["tau_m"], "tau_ref": model.neuron.params["tau_ref"],
                       "phi": "1 / (tau_ref + tau_m log(1 + 1/(x - 1))) for x > 1, else 0 (Hz)"},
        "noise": {"enabled": bool(noise), "fano": fano if isinstance(fano, str) else float(fano),
                  "remainder": "model private intensity minus the spikes' F r, averaged over the start states"},
        "model_id": model.meta.get("model_id"), "sde_name": model.meta.get("sde_name"),
        "sde_spec": model.sde_spec, "variables": list(model.variables), "inputs": list(model.inputs),
        "n_neurons": model.n_neurons, "n_inputs": model.n_inputs, "dim": model.dim,
        "record_dt": float(network_steps(model)[1]),
        "init": "I0 = init_current @ [z0, 1, u0] (z0 in SDE coordinates): the currents at latent state z0, "
                "off-subspace at rest; membrane potentials are free (e.g. uniform in [0, 1))",
    }
    return {"ddm_neuro": json.dumps(info), "format": "ddm_neuro-nir", "format_version": FORMAT_VERSION,
            "init_current": init_current(model, dt, matched is not None),
            "time_unit": "s", "dt": float(dt), "time_scale": float(model.time_scale),
            "host_noise_sigma2": np.asarray(sigma2, dtype=np.float64),
            "host_noise_rate_coef": np.asarray(rate_coef, dtype=np.float64),
            "host_noise_latent": np.asarray(latent, dtype=np.float64),
            "init_states": np.asarray(model.init_states, dtype=np.float64)}


def export(model, output, *, mode="spiking", force=False, progress=True, dt=SNNTORCH_DT, fano=1.0,
           noise=True, step_matched=None, trials=None, duration=None, seed=None, coupling=None):
    """Write the spiking network of ``model`` as an NIR file (HDF5, ``nir.write``), atomically.

    Parameters
    ----------
    model : LatentRNN
        LIF neurons with ``tau_ref = 0``.
    output : str or Path
        File to write; must not exist unless ``force``.
    mode : {"spiking"}
        NIR holds the spiking network only.
    dt : float
        Step in seconds the file is written for (default 1e-4, snnTorch's).
    fano : "regular" or float
        Spike Fano factor counted against the model's private noise (:func:`host_noise`).
    noise : bool
        False: the host adds no noise (``host_noise_*`` zero).
    step_matched : bool, optional
        Write for the consumer's step (:func:`build_graph`). Default: when the model's
        ``tau_ref`` is what a consumer's step supplies (:func:`matched_consumer`), else not.
    trials, duration, seed, coupling
        Accepted for the command line and ignored (an NIR graph has none of them).

    Returns
    -------
    Path
    """
    import nir

    if mode != "spiking":
        raise DDMError(f"export format 'nir' holds the spiking LIF network only (got mode {mode!r}; "
                       "use --mode spiking)")
    output = check_output(Path(output), force)
    if step_matched is None:
        step_matched = matched_consumer(model, dt) is not None
    graph = build_graph(model, dt=dt, fano=fano, noise=noise, step_matched=step_matched)
    with atomic_write(output, force=force, mode="w+b") as fh:
        nir.write(fh, graph)
    if progress:
        print(f"wrote {output}: NIR graph, {model.n_neurons} CubaLIF neurons, dt = {dt:g} s"
              + (f", step-matched for {matched_consumer(model, dt)}" if step_matched else ""))
    return output
