r"""A trained ddm_neuro rate network as a Brian2 network; needs only brian2 and numpy.

This file is the Brian2 script of an exported project (it is copied there
verbatim as ``network.py``), and the same code builds the networks of the
``brian2`` and ``brian2-cpp`` back ends, so what is exported is what was tested.

The model is a plain *spec*: arrays (``encoders`` E (N, d), ``decoders`` K (d, N),
``readout`` D (d, N), ``bias`` b, ``noise_const``, ``noise_act`` (N,) in
seconds, ``noise_latent`` L (d, d), ``input_weights`` B (N, k), ``center`` c
and ``scale`` S (d,), ``init_states``) and a JSON-able ``info`` dict (``tau``
in seconds, ``time_scale`` T = seconds of network time per SDE time unit,
``neuron`` = ``{"name": "tanh" | "lif", **params}``, names, defaults).

Equations (``x`` dimensionless, ``t`` in seconds, Itô)::

    dx/dt = (-x + rec + bias + drive) / tau
    r     = phi(x) + sqrt(sigma^2(x) / dt) * randn()      once per neuron per step
    rec   = sum_k E_ik (v_k + top_k),  v_k = sum_j K_kj r_j           (factored, N -> d -> N)
            (v: summed-variable synapses N -> d; E (v + top): each neuron reads its d latent
             units through linked variables, no synapses)
    rec   = sum_j W_ij r_j,            W = E K                         (dense)

``phi`` is evaluated once per neuron and step (a ``run_regularly`` at the start
of the step), never inside a synapse. The private noise sits at the neurons'
outputs, ``sigma^2(x) = noise_const + noise_act * act(x)`` (seconds), and is
drawn as ``randn()`` scaled by ``1/sqrt(dt)``: the Euler step of ``x`` then
carries ``W diag(sigma) sqrt(dt) xi / tau`` -- Brian2's ``xi`` scaling
(units ``second**-0.5``), written out. The amplitude is taken at the start of
the step (Itô), and the noise enters additively within the step, so no
Itô-to-Stratonovich correction arises with the ``euler`` method used here.
The shared latent top-up ``L dW'`` enters as ``top_k = tau (L g)_k / sqrt(dt)``
with ``g ~ N(0, 1)``. Inputs ``u(t)`` come from a TimedArray ``<name>_u``
(step grid, k columns); a change of ``u`` moves ``x`` by ``B du`` at once (the
model's feed-forward path). The latent read-out ``y = D x`` is a summed
variable, recorded every ``record_dt``.

For standalone devices the network can be re-run without recompiling: the
initial ``x`` and ``drive``, the input TimedArray's values, the stop time
(``<name>_control.t_stop``; the network is built for a long duration and stops
there) and the random seed (``--seed=S``) are command-line arguments of the
compiled binary (see ``runner.py``).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

try:  # inside the package
    from ..spec import ARRAYS, initial_state, load_spec, save_spec, spiking_state  # noqa: F401 (re-exported)
    from .code_patches import parallel_summed_variables, relative_clock_epsilon
    from .processes import run_group, terminate_as_interrupt
except ImportError:  # an exported project: spec.py, code_patches.py and processes.py lie beside this file
    from code_patches import parallel_summed_variables, relative_clock_epsilon
    from processes import run_group, terminate_as_interrupt
    from spec import ARRAYS, initial_state, load_spec, save_spec, spiking_state  # noqa: F401

#: Network time (in units of the run's own length) a standalone build is compiled for;
#: runs stop earlier at ``t_stop`` (a command-line argument).
MAX_STEPS = 2 ** 40
FORMAT = "ddm_neuro-brian2-project"
VERSION = 1


class NetworkError(ValueError):
    """A model feature or setting this Brian2 network cannot express."""


class CompileError(RuntimeError):
    """The generated C++ did not compile; carries the compiler's own output."""


def neuron_code(neuron):
    """Brian2 expressions ``(phi(x), act(x))`` for the neuron model (plain numbers)."""
    name = neuron["name"]
    if name == "tanh":
        return "tanh(x)", "0.5*(1 + tanh(x))"
    if name == "lif":
        tm, tr = float(neuron["tau_m"]), float(neuron["tau_ref"])
        rate = f"int(x > 1) / ({tr!r} + {tm!r}*log(1 + 1/clip(x - 1, 1e-12, 1e12)))"
        per = tr if tr > 0 else 1.0 / float(neuron["max_rates"][1])   # as ddm_neuro.neurons.LIFRate.activity
        return rate, f"({rate})*{per!r}"
    raise NetworkError(f"brian2 export: neuron model {name!r} is not supported (tanh, lif)")


def stop_function():
    """``ddm_stop_at(t, t_stop)``: ends a standalone run once ``t >= t_stop`` (C++ only)."""
    import brian2 as b2

    @b2.implementation("cpp", """
    double ddm_stop_at(const double t, const double t_stop)
    {
        if (t >= t_stop) { Network::_globally_stopped = true; return 1.0; }
        return 0.0;
    }
    """)
    @b2.check_units(t=b2.second, t_stop=b2.second, result=1)
    def ddm_stop_at(t, t_stop):
        raise NetworkError("ddm_stop_at runs only in standalone devices")

    return ddm_stop_at


def build_network(arrays, info, *, trials, dt, record_dt, coupling="factored", noise=True, input_steps=0,
                  u_values=None, x0=None, drive0=None, stoppable=False, name="ddm"):
    """Build the Brian2 objects of ``trials`` independent copies of the network.

    Parameters
    ----------
    arrays, info : dict
        The model spec (see the module docstring).
    trials : int
        Independent copies, simulated side by side (one group of ``trials * N`` neurons).
    dt, record_dt : float
        Integration step and recording interval in SDE time units
        (the network runs at ``dt * time_scale`` seconds).
    coupling : {"factored", "dense", "none"}
        Recurrent coupling through the rank-d structure (O(N d) synapses) or the
        explicit N x N matrix W (summed-variable synapses); "none" leaves the
        neurons uncoupled (the speed floor in benchmarks, not a model).
    noise : bool
        Private output noise and shared top-up on or off.
    input_steps : int
        Rows of the input TimedArray (step grid); 0 for models without inputs.
    u_values : array (input_steps, k), optional
        Its values (default zeros; standalone runs set them on the command line).
    x0, drive0 : array (trials * N,), optional
        Initial neuron inputs and input drive (see :func:`initial_state`).
    stoppable : bool
        Add the control group whose ``t_stop`` ends a standalone run (C++ devices).
    name : str
        Prefix of every Brian2 object name (names are unique per network).

    Returns
    -------
    dict
        ``network`` (brian2.Network), ``monitor`` (StateMonitor of ``y``, d per
        trial), ``neurons``, ``inputs`` (the TimedArray or None), ``control``
        (or None) and ``namespace`` (for ``Network.run``).
    """
    import brian2 as b2

    if coupling not in ("factored", "dense", "none"):
        raise NetworkError(f"coupling must be 'factored' or 'dense' ('none': benchmarks only), got {coupling!r}")
    trials = int(trials)
    if trials < 1:
        raise NetworkError(f"trials must be >= 1, got {trials}")
    phi, act = neuron_code(info["neuron"])
    E, K, D = arrays["encoders"], arrays["decoders"], arrays["readout"]
    N, d = E.shape
    k = arrays["input_weights"].shape[1]
    L = arrays["noise_latent"]
    shared_noise = bool(noise and np.any(L))
    if coupling == "dense" and shared_noise:
        raise NetworkError("dense coupling cannot carry this model's shared latent noise (noise_latent != 0); "
                           "use the factored coupling")
    T, tau = float(info["time_scale"]), float(info["tau"])
    h = float(dt) * T
    clock = b2.Clock(dt=h * b2.second, name=f"{name}_clock")
    ns = {"tau_n": tau * b2.second}

    b_terms = "".join(f"\nB_{m} : 1 (constant)" for m in range(k))
    if coupling == "factored":  # rec = E (v + top), read from the latent group through linked variables
        rec = " + ".join(f"E_{q}*(lv_{q}" + (f" + lt_{q})" if shared_noise else ")") for q in range(d))
        rec_eqs = f"rec = {rec} : 1" + "".join(f"\nE_{q} : 1 (constant)\nlv_{q} : 1 (linked)" for q in range(d))
        rec_eqs += "".join(f"\nlt_{q} : 1 (linked)" for q in range(d)) if shared_noise else ""
    else:  # dense: a summed variable; none: zero
        rec_eqs = "rec : 1"
    neurons = b2.NeuronGroup(N * trials, """
        dx/dt = (-x + rec + bias + drive) / tau_n : 1
        """ + rec_eqs + """
        bias : 1 (constant)
        drive : 1
        r : 1
        noise_const : second (constant)
        noise_act : second (constant)""" + b_terms,
                             method="euler", clock=clock, order=10, name=f"{name}_neurons", namespace=ns)
    if x0 is None:
        x0, drive0 = initial_state(arrays, arrays["init_states"][np.arange(trials) % len(arrays["init_states"])],
                                   np.zeros(k) if k else None)
    neurons.x = x0
    neurons.drive = np.zeros(N * trials) if drive0 is None else drive0
    neurons.bias = np.tile(arrays["bias"], trials)
    # sigma^2 carries seconds: eta dt = sigma dW with dimensionless outputs
    neurons.noise_const = np.tile(arrays["noise_const"], trials) * b2.second
    neurons.noise_act = np.tile(arrays["noise_act"], trials) * b2.second
    eta = f" + sqrt((noise_const + noise_act*{act}) / dt) * randn()" if noise else ""
    neurons.run_regularly(f"r = {phi}{eta}", when="start", order=0, name=f"{name}_outputs")
    objects = [neurons]

    inputs = _input_path(neurons, arrays, trials, h, u_values, input_steps, ns, name, target="x")
    trial_of, i_n, j_u = _pairs(N, d, trials)
    readout_objs, rec_clock = _readout(neurons, D, trials, record_dt * T, i_n, j_u, name)
    objects += readout_objs

    if coupling == "factored":
        latent = b2.NeuronGroup(d * trials, "v : 1\ntop : 1\ng : 1", clock=clock, order=2, name=f"{name}_latent")
        dec = b2.Synapses(neurons, latent, "K : 1\nv_post = K * r_pre : 1 (summed)", clock=clock,
                          name=f"{name}_decode")
        dec.connect(i=i_n, j=j_u)
        dec.K = np.tile(K.T.reshape(-1), trials)
        # encoding without synapses: each neuron reads its trial's d latent units (linked variables)
        for q in range(d):
            setattr(neurons, f"E_{q}", np.tile(E[:, q], trials))
            setattr(neurons, f"lv_{q}", b2.linked_var(latent, "v", index=trial_of * d + q))
            if shared_noise:
                setattr(neurons, f"lt_{q}", b2.linked_var(latent, "top", index=trial_of * d + q))
        objects += [latent, dec]
        if shared_noise:
            latent.run_regularly("g = randn()", when="start", order=0, name=f"{name}_shared_draw")
            mix = b2.Synapses(latent, latent, "Lw : 1\ntop_post = Lw * g_pre : 1 (summed)", clock=clock,
                              name=f"{name}_shared_mix")
            src = np.concatenate([t * d + np.tile(np.arange(d), d) for t in range(trials)])
            dst = np.concatenate([t * d + np.repeat(np.arange(d), d) for t in range(trials)])
            mix.connect(i=src, j=dst)
            mix.Lw = np.tile((tau * L / np.sqrt(h)).reshape(-1), trials)
            objects.append(mix)
    elif coupling == "dense":
        dense = b2.Synapses(neurons, neurons, "w : 1\nrec_post = w * r_pre : 1 (summed)", clock=clock,
                            name=f"{name}_dense")
        src = np.concatenate([t * N + np.repeat(np.arange(N), N) for t in range(trials)])
        dst = np.concatenate([t * N + np.tile(np.arange(N), N) for t in range(trials)])
        dense.connect(i=src, j=dst)
        dense.w = np.tile((E @ K).T.reshape(-1), trials)
        objects.append(dense)

    return _finish(objects, neurons, inputs, readout_objs[0], rec_clock, clock, stoppable, ns, name)


#: One step of the LIF membrane, exact for the input ``x`` held over the step (as the torch
#: simulator, :mod:`ddm_neuro.spiking`): ``v`` relaxes to ``x`` over the part of the step that is
#: not refractory (``rr``: refractory time left); a crossing is placed at its exact time
#: ``ts = tau_m log((x - v)/(x - 1))``, the neuron resets to 0, is refractory for ``tau_r`` from
#: then, and integrates what is left of the step; the spike's synaptic kick is weighted by its
#: decay to the step's end, ``ws = exp(-(dt - s)/tau_n)``. So the rate at constant input is the
#: analytic ``phi(x)`` at any step (Euler with a threshold on the grid realises a different
#: curve). At most one spike per step (the step must not exceed ``tau_r``).
LIF_STEP = """
a = clip(dt - rr, 0*second, dt)
rr = clip(rr - dt, 0*second, rr)
vend = x + (v - x)*exp(-a/tau_m)
cross = int(x > 1)*int(vend > 1)*int(a > 0*second)
ts = tau_m*log(clip((x - v)/clip(x - 1, 1e-12, 1e12), 1, 1e12))
s_spk = dt - a + ts
rem = dt - s_spk - tau_r
v = (1 - cross)*vend + cross*x*(1 - exp(-clip(rem, 0*second, dt)/tau_m))
rr = (1 - cross)*rr + cross*clip(-rem, 0*second, tau_r)
ws = cross*exp(-clip(dt - s_spk, 0*second, dt)/tau_n)
sp = cross
"""


def build_spiking_network(arrays, info, *, trials, dt, record_dt, coupling="factored", noise="remainder",
                          fano=None, input_steps=0, u_values=None, state=None, drive0=None, stoppable=False,
                          record_spikes=False, name="ddm"):
    r"""Build the spiking (LIF) version of the network: spikes replace ``phi(x) + eta``.

    Per neuron (numbers; ``t`` in seconds)::

        dv/dt = (x - v) / tau_m   (unless refractory),  v > 1: spike, v <- 0, refractory tau_ref
                                  (integrated exactly over each step: LIF_STEP)
        x     = p + syn,           dp/dt = (-p + bias + drive) / tau
        syn   = sum_k E_ik q_k     (factored; dense: dsyn_i/dt = -syn_i / tau, a spike of j adds W_ij / tau)
        dq/dt = -q / tau,          a spike of neuron j adds K_kj / tau to q_k

    i.e. exponential synapses with ``tau_syn = tau`` (the model's), so that the
    latent obeys ``tau dy = (-y + K s(t)) dt``. Noise (``noise``): ``"none"``,
    spikes only; ``"remainder"``, spikes plus private output noise
    ``max(sigma_j^2(x) - F_j phi_j(x), 0)`` (``fano`` F, per neuron, or
    ``"regular"``: periodic firing counted over one SDE time unit, ``F r = f (1 - f) / T``
    with ``f`` the fractional part of ``r T``, as :mod:`ddm_neuro.spiking`; the spikes'
    own noise is not injected twice) plus the shared top-up; ``"model"``, all of
    the model's noise on top of the spikes. Spike times are exact inside a step and
    the membrane is integrated exactly (``LIF_STEP``), as in the torch simulator, so
    the realised rate at constant input is the analytic ``phi`` at any step; the
    spike itself is delivered at the end of its step (Brian2's synapses act on the
    step grid), weighted by its decay since its exact time.
    Parameters otherwise as :func:`build_network`; ``state`` is
    :func:`spiking_state`'s dict.
    """
    import brian2 as b2

    neuron = info["neuron"]
    if neuron["name"] != "lif":
        raise NetworkError(f"spiking mode needs LIF neurons (this model has {neuron['name']!r}; "
                           "fit with --neuron lif)")
    if coupling not in ("factored", "dense", "none"):
        raise NetworkError(f"coupling must be 'factored', 'dense' or 'none', got {coupling!r}")
    if noise not in ("none", "remainder", "model"):
        raise NetworkError(f"noise must be 'none', 'remainder' or 'model', got {noise!r}")
    trials = int(trials)
    E, K, D = arrays["encoders"], arrays["decoders"], arrays["readout"]
    N, d = E.shape
    L = arrays["noise_latent"]
    shared_noise = noise != "none" and bool(np.any(L))
    if coupling == "dense" and shared_noise:
        raise NetworkError("dense coupling cannot carry this model's shared latent noise (noise_latent != 0); "
                           "use the factored coupling")
    T, tau = float(info["time_scale"]), float(info["tau"])
    h = float(dt) * T
    if tau < 5 * h:
        raise NetworkError(f"tau_syn = {tau * 1e3:g} ms is shorter than 5 steps of {h * 1e3:g} ms")
    clock = b2.Clock(dt=h * b2.second, name=f"{name}_clock")
    ns = {"tau_n": tau * b2.second, "tau_m": float(neuron["tau_m"]) * b2.second, "T_unit": T}
    phi, act = neuron_code(neuron)
    k = arrays["input_weights"].shape[1]
    b_terms = "".join(f"\nB_{m} : 1 (constant)" for m in range(k))
    if coupling == "factored":
        syn_eqs = "syn = " + " + ".join(f"E_{q}*lq_{q}" for q in range(d)) + " : 1" + \
            "".join(f"\nE_{q} : 1 (constant)\nlq_{q} : 1 (linked)" for q in range(d))
    elif coupling == "dense":
        syn_eqs = "dsyn/dt = -syn / tau_n + kick / dt : 1\nkick : 1"
    else:  # "none": the same neurons, uncoupled (the speed floor in benchmarks)
        syn_eqs = "syn : 1"
    tau_ref = float(neuron["tau_ref"])
    if tau_ref < h:
        raise NetworkError(f"Brian2 spiking places at most one spike per neuron per step: the step "
                           f"({h * 1e3:g} ms) must not exceed tau_ref ({tau_ref * 1e3:g} ms): simulate with a step "
                           f"of at most tau_ref (the dt option, SDE units) or refit with --tau-ref >= {h * 1e3:g} ms")
    ns["tau_r"] = tau_ref * b2.second
    neurons = b2.NeuronGroup(N * trials, """
        v : 1
        rr : second
        ws : 1
        sp : 1
        dp/dt = (-p + bias + drive) / tau_n : 1
        x = p + syn : 1
        """ + syn_eqs + """
        bias : 1 (constant)
        drive : 1
        eta : 1
        nc : 1 (constant)
        na : 1 (constant)
        F : 1 (constant)""" + b_terms, threshold="sp > 0.5", reset="sp = 0",
        method="euler", clock=clock, order=10, name=f"{name}_neurons", namespace=ns)
    neurons.run_regularly(LIF_STEP, when="groups", order=9, name=f"{name}_lif")
    state = state or spiking_state(arrays, initial_state(arrays, arrays["init_states"][
        np.arange(trials) % len(arrays["init_states"])], np.zeros(k) if k else None)[0], coupling,
        np.random.default_rng(0))
    neurons.p, neurons.v = state["p"], state["v"]
    neurons.drive = np.zeros(N * trials) if drive0 is None else drive0
    neurons.bias = np.tile(arrays["bias"], trials)
    neurons.nc = np.tile(arrays["noise_const"], trials)
    neurons.na = np.tile(arrays["noise_act"], trials)
    regular = isinstance(fano, str) and fano == "regular" and noise != "model"
    neurons.F = 0.0 if fano is None or noise == "model" or regular else np.tile(np.broadcast_to(fano, (N,)), trials)
    if regular:  # regular firing counted over one SDE time unit T: F r = f (1 - f) / T, f = frac(r T)
        spk = f"(({phi})*T_unit - floor(({phi})*T_unit)) * (1 - (({phi})*T_unit - floor(({phi})*T_unit))) / T_unit"
    else:
        spk = f"F*{phi}"
    if noise != "none":  # output-noise kick per step, sqrt(sigma_rem^2 h) xi
        neurons.run_regularly(f"eta = sqrt(clip(nc + na*{act} - {spk}, 0, inf) * dt / second) * randn()",
                              when="start", order=0, name=f"{name}_outputs")
    objects = [neurons]
    inputs = _input_path(neurons, arrays, trials, h, u_values, input_steps, ns, name, target="p")
    trial_of, i_n, j_u = _pairs(N, d, trials)
    kick = "\nkick_post = w * eta_pre : 1 (summed)" if noise != "none" else ""
    latent = None
    if coupling == "factored":
        latent = b2.NeuronGroup(d * trials, "dq/dt = -q / tau_n + (qk + qs) / dt : 1\nqk : 1\nqs : 1\ng : 1",
                                method="euler", clock=clock, order=12, name=f"{name}_latent", namespace=ns)
        latent.q = state["q"]  # order 12: updated after the neurons read it, as dense's syn (one Euler step)
    readout_objs, rec_clock = _readout(neurons, D, trials, record_dt * T, i_n, j_u, name,
                                       expr="p_pre" if latent is not None else "p_pre + syn_pre", latent=latent)
    objects += readout_objs
    if coupling == "factored":
        syn = b2.Synapses(neurons, latent, "w : 1" + kick.replace("kick_post", "qk_post"), on_pre="q_post += w * ws_pre",
                          clock=clock, name=f"{name}_decode")
        syn.connect(i=i_n, j=j_u)
        syn.w = np.tile((K / tau).T.reshape(-1), trials)
        for q in range(d):
            setattr(neurons, f"E_{q}", np.tile(E[:, q], trials))
            setattr(neurons, f"lq_{q}", b2.linked_var(latent, "q", index=trial_of * d + q))
        objects += [latent, syn]
        if shared_noise:
            latent.run_regularly("g = randn()", when="start", order=0, name=f"{name}_shared_draw")
            mix = b2.Synapses(latent, latent, "Lw : 1\nqs_post = Lw * g_pre : 1 (summed)", clock=clock,
                              name=f"{name}_shared_mix")
            src = np.concatenate([t * d + np.tile(np.arange(d), d) for t in range(trials)])
            dst = np.concatenate([t * d + np.repeat(np.arange(d), d) for t in range(trials)])
            mix.connect(i=src, j=dst)
            mix.Lw = np.tile((L * np.sqrt(h)).reshape(-1), trials)
            objects.append(mix)
    elif coupling == "dense":
        neurons.syn = state["syn"]
        syn = b2.Synapses(neurons, neurons, "w : 1" + kick, on_pre="syn_post += w * ws_pre", clock=clock,
                          name=f"{name}_dense")
        src = np.concatenate([t * N + np.repeat(np.arange(N), N) for t in range(trials)])
        dst = np.concatenate([t * N + np.tile(np.arange(N), N) for t in range(trials)])
        syn.connect(i=src, j=dst)
        syn.w = np.tile((E @ K / tau).T.reshape(-1), trials)
        objects.append(syn)
    spikes = b2.SpikeMonitor(neurons, name=f"{name}_spikes") if record_spikes else None
    parts = _finish(objects, neurons, inputs, readout_objs[0], rec_clock, clock, stoppable, ns, name, spikes)
    parts["latent"] = latent
    return parts


def _pairs(N, d, trials):
    """Neuron index per trial, and the (neuron j, latent unit k of its trial) pairs in neuron-major order."""
    trial_of = np.repeat(np.arange(trials), N)
    i_n = np.repeat(np.arange(N * trials), d)
    j_u = np.repeat(trial_of * d, d) + np.tile(np.arange(d), N * trials)
    return trial_of, i_n, j_u


def _input_path(neurons, arrays, trials, h, u_values, input_steps, ns, name, target):
    """Inputs u(t) from a TimedArray; a change of u moves ``target`` by ``B du`` at once. None without inputs."""
    import brian2 as b2

    k = arrays["input_weights"].shape[1]
    if not k:
        return None
    u_values = np.zeros((int(input_steps), k)) if u_values is None else np.asarray(u_values, dtype=np.float64)
    if u_values.ndim != 2 or u_values.shape[1] != k or len(u_values) < 1:
        raise NetworkError(f"this model has {k} inputs: the input TimedArray needs shape (steps >= 1, {k}), "
                           f"got {u_values.shape}")
    for m in range(k):
        setattr(neurons, f"B_{m}", np.tile(arrays["input_weights"][:, m], trials))
    inputs = b2.TimedArray(u_values, dt=h * b2.second, name=f"{name}_u")
    ns[f"{name}_u"] = inputs
    Bu = " + ".join(f"B_{m}*{name}_u(t, {m})" for m in range(k))
    neurons.run_regularly(f"{target} += ({Bu}) - drive\ndrive = {Bu}", when="start", order=-1,
                          name=f"{name}_feedforward")
    return inputs


def _readout(neurons, D, trials, record_seconds, i_n, j_u, name, expr="x_pre", latent=None):
    """``y = D x`` per trial as a summed variable on the recording clock (needed only when recorded).

    ``expr`` is ``x`` in the synapse's terms; with ``latent`` (the factored
    spiking network, ``x = p + E q``) the read-out is ``D p + q``, ``q`` read
    from the latent group through a linked variable (``D E = I``).
    """
    import brian2 as b2

    d = D.shape[0]
    rec_clock = b2.Clock(dt=float(record_seconds) * b2.second, name=f"{name}_record_clock")
    eqs = "y : 1" if latent is None else "yp : 1\nlq : 1 (linked)\ny = yp + lq : 1"
    readout = b2.NeuronGroup(d * trials, eqs, clock=rec_clock, order=5, name=f"{name}_readout")
    if latent is not None:
        readout.lq = b2.linked_var(latent, "q")
    target = "y_post" if latent is None else "yp_post"
    rd = b2.Synapses(neurons, readout, f"D : 1\n{target} = D * ({expr}) : 1 (summed)", clock=rec_clock,
                     name=f"{name}_readout_syn")
    rd.connect(i=i_n, j=j_u)
    rd.D = np.tile(D.T.reshape(-1), trials)
    return [readout, rd], rec_clock


def _finish(objects, neurons, inputs, readout, rec_clock, clock, stoppable, ns, name, spikes=None):
    """Add the stop control (standalone) and the read-out monitor; assemble the result dict."""
    import brian2 as b2

    control = None
    if stoppable:
        ns["ddm_stop_at"] = stop_function()
        control = b2.NeuronGroup(1, "t_stop : second (shared)\nstopped : 1", clock=clock, order=-20,
                                 name=f"{name}_control", namespace=ns)
        control.t_stop = 0 * b2.second
        control.run_regularly("stopped = ddm_stop_at(t, t_stop)", when="start", order=-20,
                              name=f"{name}_stop")
        objects.append(control)
    monitor = b2.StateMonitor(readout, "y", record=True, clock=rec_clock, when="groups", order=7,
                              name=f"{name}_monitor")
    objects.append(monitor)
    if spikes is not None:
        objects.append(spikes)
    return {"network": b2.Network(*objects), "monitor": monitor, "neurons": neurons, "inputs": inputs,
            "control": control, "namespace": ns, "spikes": spikes}


def openmp_threads(threads):
    """Brian2's ``devices.cpp_standalone.openmp_threads`` for a build run on ``threads`` CPU threads.

    One thread is the plain serial build, with no OpenMP at all (0): no
    thread start-up or barriers, and exactly the code of a build made before
    threads existed. ``K > 1`` compiles with ``-fopenmp`` and fixes K threads
    in the binary (``omp_set_num_threads(K)``; ``OMP_NUM_THREADS`` has no say).

    Parameters
    ----------
    threads : int
        CPU threads, at least 1.

    Returns
    -------
    int
        0 for one thread, else ``threads``.

    Raises
    ------
    NetworkError
        ``threads`` is not an integer >= 1.
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise NetworkError(f"threads must be an integer >= 1, got {threads!r}")
    return 0 if threads == 1 else int(threads)


#: The Brian2 preference that turns OpenMP on in cpp_standalone code.
OPENMP_PREF = "devices.cpp_standalone.openmp_threads"


def build_project(arrays, info, directory, *, trials, dt, record_dt, coupling="factored", noise=True,
                  input_steps=0, device="cpp_standalone", compile=True, seed=None, duration=None, prefs=None,
                  mode="rate", fano=None, record_spikes=False, threads=1):
    """Generate (and for C++ compile) a standalone project in ``directory``; returns its manifest.

    ``cpp_standalone`` builds a re-runnable binary: it is compiled for
    :data:`MAX_STEPS` steps and stops at ``t_stop`` given on its command line,
    and seed, initial state and inputs are command-line arguments too.
    ``cuda_standalone`` (Brian2CUDA) generates code for a fixed ``duration``
    (SDE units) and ``seed``; it is compiled and run on a machine with a GPU.
    ``prefs`` are Brian2 preferences set for this build only. ``mode="spiking"``
    builds :func:`build_spiking_network` (``noise``: "none", "remainder" or
    "model"; ``fano`` per neuron, fixed by the build; ``record_spikes``).
    ``threads`` (cpp_standalone): OpenMP threads of the binary, fixed by the
    build (:func:`openmp_threads`; 1, the default, builds without OpenMP).
    With K > 1 threads each thread draws from its own random generator, so a
    seed gives other (equally distributed) noise than the 1-thread build. The
    manifest (``build.json`` in ``directory``) names the result files, the
    variables a run sets and the thread count.
    """
    import brian2 as b2

    directory = os.path.abspath(directory)
    cuda = device == "cuda_standalone"
    omp = openmp_threads(threads)
    if cuda and omp:
        raise NetworkError("threads: cuda_standalone builds run on the GPU; OpenMP threads are for cpp_standalone")
    if cuda:
        import brian2cuda  # noqa: F401  (registers the device)
    opts = {"directory": directory, "build_on_run": False}
    saved = {k: b2.prefs[k] for k in {*(prefs or {}), OPENMP_PREF}}
    b2.set_device(device, **opts)
    try:
        for k, v in (prefs or {}).items():
            b2.prefs[k] = v
        if not cuda:
            b2.prefs[OPENMP_PREF] = omp
        b2.device.reinit()
        b2.device.activate(**opts)
        if seed is not None:
            b2.seed(int(seed))
        if mode == "spiking":
            parts = build_spiking_network(arrays, info, trials=trials, dt=dt, record_dt=record_dt,
                                          coupling=coupling, noise=noise, fano=fano, input_steps=input_steps,
                                          stoppable=not cuda, record_spikes=record_spikes)
        else:
            parts = build_network(arrays, info, trials=trials, dt=dt, record_dt=record_dt, coupling=coupling,
                                  noise=noise, input_steps=input_steps, stoppable=not cuda)
        h = float(dt) * float(info["time_scale"])
        if not cuda:
            b2.device.insert_code("main", SEED_FROM_ARGS)
            steps = MAX_STEPS
        else:
            steps = int(round(float(duration) / float(dt))) + 1
        parts["network"].run(steps * h * b2.second, namespace=parts["namespace"])
        b2.device.build(directory=directory, compile=False, run=False)
        relative_clock_epsilon(directory)
        if omp:
            parallel_summed_variables(directory)
        mon, neurons = parts["monitor"], parts["neurons"]
        if mode == "spiking":
            state = {"p": f"{neurons.name}.p", "v": f"{neurons.name}.v"}
            state.update({"q": f"{parts['latent'].name}.q"} if parts["latent"] is not None
                         else {"syn": f"{neurons.name}.syn"})
        else:
            state = {"x": f"{neurons.name}.x"}
        results = {"y": b2.device.get_array_filename(mon.variables["y"]),
                   "t": b2.device.get_array_filename(mon.variables["t"])}
        if parts["spikes"] is not None:
            results.update(spikes_t=b2.device.get_array_filename(parts["spikes"].variables["t"]),
                           spikes_i=b2.device.get_array_filename(parts["spikes"].variables["i"]))
        manifest = {
            "format": FORMAT, "version": VERSION, "device": device, "brian2_version": b2.__version__,
            "mode": mode, "trials": int(trials), "dt": float(dt), "time_scale": float(info["time_scale"]),
            "record_dt": float(record_dt), "coupling": coupling,
            "noise": noise if isinstance(noise, str) else bool(noise), "input_steps": int(input_steps),
            "n_neurons": int(arrays["encoders"].shape[0]), "dim": int(arrays["encoders"].shape[1]),
            "n_inputs": int(arrays["input_weights"].shape[1]), "results": results,
            "args": {**state, "drive": f"{neurons.name}.drive",
                     "t_stop": None if cuda else f"{parts['control'].name}.t_stop",
                     "u": None if parts["inputs"] is None else f"{parts['inputs'].name}.values"},
            "seed": None if seed is None else int(seed), "duration": None if duration is None else float(duration),
            "threads": 1 if cuda else int(threads),
        }
        with open(os.path.join(directory, "build.json"), "w") as fh:
            json.dump(manifest, fh, indent=1)
    finally:
        b2.device.reinit()
        b2.set_device("runtime")
        for k, v in saved.items():
            b2.prefs[k] = v
    if compile:
        manifest["compile_seconds"] = compile_project(directory)
    return manifest


def compile_project(directory, jobs=None):
    """Run ``make`` in a generated project; returns the seconds it took.

    Raises :class:`CompileError` with the compiler's own messages (the last
    lines of its output) when the build fails; the directory is left as it is.
    ``make`` runs in a process group of its own: when the caller is
    interrupted (Ctrl-C, SIGTERM under :func:`terminate_as_interrupt`), ``make``
    and every compiler it started are ended before the exception propagates.
    """
    import time

    t0 = time.perf_counter()
    code, out, err = run_group(["make", f"-j{jobs or os.cpu_count() or 1}"], cwd=directory)
    if code != 0:
        lines = (out + err).strip().splitlines()
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        raise CompileError(f"compiling {directory} failed (make exit {code}); compiler output:\n"
                           + "\n".join(errors[-15:]))
    return time.perf_counter() - t0


#: C++ inserted at the top of ``main``: ``--seed=S`` seeds Brian2's generators (and is removed
#: from the arguments before Brian2 reads variable assignments from them).
SEED_FROM_ARGS = """
for (size_t _k = 0; _k < args.size(); _k++) {
    if (args[_k].rfind("--seed=", 0) == 0) {
        const unsigned long _s = std::stoul(args[_k].substr(7));
        for (size_t _g = 0; _g < brian::_random_generators.size(); _g++)
            brian::_random_generators[_g].seed(_s + _g);
        args.erase(args.begin() + _k);
        break;
    }
}
"""


def main(argv=None):
    """``python network.py [--device cuda_standalone]``: regenerate ``code/`` from ``model.npz``."""
    import argparse

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "export.json")) as fh:
        export = json.load(fh)
    ap = argparse.ArgumentParser(description="Regenerate (and compile) this project's Brian2 standalone code.")
    ap.add_argument("--device", default=export["device"], choices=["cpp_standalone", "cuda_standalone"])
    ap.add_argument("--no-compile", action="store_true", help="generate the code only")
    ap.add_argument("--detect-gpu", action="store_true",
                    help="cuda_standalone: let Brian2CUDA detect the GPU and nvcc instead of export.json's settings")
    args = ap.parse_args(argv)
    prefs = dict(export.get("device_prefs") or {}) if args.device == export["device"] else {}
    if args.detect_gpu:
        prefs = {k: v for k, v in prefs.items() if ".cuda_backend." not in k or k.endswith("extra_compile_args_nvcc")}
    arrays, info = load_spec(os.path.join(here, "model.npz"))
    b = export["build"]
    try:
        with terminate_as_interrupt():
            if b.get("network") == "coordinated":   # a spike-coordinated network: coordinated_network.py beside
                if args.device != "cpp_standalone":
                    raise SystemExit("error: a spike-coordinated network builds for cpp_standalone only")
                from coordinated_network import build_coordinated_project, load_coordinated

                manifest = build_coordinated_project(
                    *load_coordinated(os.path.join(here, "coordinated.npz")), os.path.join(here, "code"),
                    trials=b["trials"], record_dt=b["record_dt"], noise=b["noise"] != "none",
                    record_spikes=b.get("record_spikes", False), input_steps=max(1, b["input_steps"]),
                    threads=b.get("threads", 1), compile=not args.no_compile)
                print(f"built cpp_standalone project in {os.path.join(here, 'code')}")
                return
            manifest = build_project(arrays, info, os.path.join(here, "code"), trials=b["trials"], dt=b["dt"],
                                     record_dt=b["record_dt"], coupling=b["coupling"], noise=b["noise"],
                                     input_steps=b["input_steps"], device=args.device, compile=not args.no_compile,
                                     seed=b.get("seed"), duration=b.get("duration"), prefs=prefs,
                                     mode=b.get("mode", "rate"), fano=b.get("fano"),
                                     record_spikes=b.get("record_spikes", False),
                                     threads=b.get("threads", 1) if args.device == "cpp_standalone" else 1)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: make and its compilers are ended already
        print("network.py: interrupted; code/ is incomplete (run python network.py again)", file=sys.stderr)
        raise SystemExit(128 + int(getattr(exc, "signum", 2))) from None
    print(f"built {manifest['device']} project in {os.path.join(here, 'code')}")


if __name__ == "__main__":
    main()
