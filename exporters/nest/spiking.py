r"""A trained ddm_neuro LIF network as a spiking NEST network; needs only nest and numpy.

This file is shipped in an exported project as ``spiking.py`` (beside
``network.py``, which holds the kernel set-up and the read-back shared with
rate mode), and the same code runs ``--backend nest --mode spiking``.

The model (:mod:`ddm_neuro.spiking.simulator`; ``t`` in seconds, Itô)::

    tau_m dv_j = (x_j - v_j) dt             v_j >= 1: spike, v_j <- 0, refractory tau_ref
    x  = p + E (q + nu)                      tau dp = (-p + b + B u) dt   (p jumps by B du)
    tau dq = (-q + K s(t)) dt                s: the spike trains; a spike of j moves q by K_j / tau
    nu : the noise, in the latent         nu(s+1) = nu(s) e^{-h/tau} + K diag(sigma_rem(x)) sqrt(h) g / tau + L sqrt(h) g'
    y  = D x = D p + q + nu,   z = S y + c

How NEST carries it (time in ms; ``x``, ``v`` dimensionless, read as pA and mV)::

    neurons  N   iaf_psc_exp_ps   C_m = tau_m (so I / C_m = x / tau_m), E_L = V_reset = 0, V_th = 1,
                                  t_ref = tau_ref, tau_syn_ex = tau_syn_in = tau,
                                  I_e = b + B u(0), I_syn_ex(0) = p(0) - b - B u(0) (+ E q(0), dense;
                                  factored: only the part off the latent, the rest is carried with q)
    readout  d   iaf_psc_delta_ps tau_m = tau, no threshold: every spike of j adds K_j / tau to V,
                                  so V(t + h) = q(t) + D (p(t) - b - B u(0)) exactly
    counter  1   iaf_psc_delta_ps every spike adds 1: the spike count, recorded with the read-out
    inputs   k   step_current_generator   u - u(0), weights B

``iaf_psc_exp_ps`` integrates the membrane exactly between events and places
each spike at its exact time: its rate at constant input is the fitted curve
``phi(x) = 1 / (tau_ref + tau_m log(1 + 1/(x - 1)))`` (tested to 1e-6),
provided ``tau_ref`` is at least one step (a neuron fires at most once per
step; shorter refractory periods are refused). It is the continuous-time
network: the membrane sees the synaptic current decay within a step, where the
torch and Brian2 schemes hold ``x`` over the step. NEST needs ``t_ref > 0``.

Coupling (``x``'s term ``E q``):

* ``"dense"``: N^2 synapses ``W / tau`` (``W = E K``) per trial. A spike
  reaches its targets one step (NEST's minimum delay) after its exact time,
  a delay of ``h`` in the loop (the torch step delivers it at the end of its
  step, weighted by its decay). Memory and time grow as N^2: about 65 bytes
  per synapse and 620 s per second of network time at N = 10 000 on one
  core (``benchmarks/RESULTS_nest.md``). Noise-free dense runs are one
  ``Simulate`` and run under MPI.
* ``"factored"`` (the default): no NEST synapse sums spike trains into a
  shared continuous current, so Python closes the loop, one step at a time
  (:func:`run_stepped`): it reads ``q`` from the d read-out units and sets d
  ``dc_generator`` s per trial, weights E, to the latent current (held over
  a step, as the torch step holds ``x``). Nothing grows as N^2 (N d
  synapses). A current set before step ``s`` reaches the neurons in step
  ``s + 2`` and the read-out shows the spikes up to the end of step ``s - 2``;
  the spikes of the three steps between are replaced by their expectation
  ``K phi(x) (1 - exp(-3 h / tau))`` (the rates at the current input), and by
  the real spikes once they are read: the mean current follows the rates
  without delay, the spikes' fluctuations reach the neurons three steps late
  (0.075 ms at the default step). Under MPI the ranks share the read-out
  every step through mpi4py (one ``Allreduce`` of d numbers per trial).

Step. NEST's error grows with the step. At the other back ends' 0.1 ms a
noise-free spiking OU (N = 400, 48 trials) relaxed about 7 % faster than in the
torch simulator, for both couplings; at 0.025 ms, 1-2 % (torch's own result
does not move between the two steps). In dense coupling part of it is NEST's
threshold detection, which looks at the membrane at step ends and incoming
spikes only: a membrane that touches threshold in between fires late (seen
spike by spike against a finer step); ``iaf_psc_exp_ps_lossless`` would catch
that but refuses ``tau_m = tau_syn``, which this project's models have. In
factored coupling it is the three steps' lag of the spikes' fluctuations. The
back end therefore runs at :data:`STEP_SECONDS` (0.025 ms) unless a step is
asked for, and ``calibrate --backend nest`` corrects what remains.

Noise (``noise``): ``"none"``; ``"remainder"``, the private output noise
``sigma_rem^2 = max(noise_const + noise_act act(x) - F phi(x), 0)`` (the
spikes' own noise not counted twice; ``fano`` F per neuron, or ``"regular"``,
``F phi = f (1 - f) / T`` with ``f`` the fractional part of ``phi T``) plus the
shared top-up ``L dW'``; ``"model"``, all of the model's noise on top of the
spikes. It depends on the state, so it too is driven from Python step by step
(:func:`run_stepped`): the amplitude is evaluated from the state before the
step whose increment it scales (Itô), each increment is drawn in Python
(``numpy``, seeded), filtered with ``tau`` and sent through the same d
generators (weights E); the read-out adds it.

Seeds: the start phases, the noise and NEST's own streams are seeded; a seed
reproduces a run for the same number of threads, and gives the start phases
the torch spiking simulator gives for that seed.
"""
from __future__ import annotations

import resource
import time

import numpy as np

try:  # inside the package
    from .network import NetworkError, assemble, gather_latent, import_nest, local_latent, run_steps, \
        local_nodes, set_per_node, setup_kernel, simulate_chunks, step_ms
except ImportError:  # an exported project: network.py lies beside this file
    from network import NetworkError, assemble, gather_latent, import_nest, local_latent, run_steps, \
        local_nodes, set_per_node, setup_kernel, simulate_chunks, step_ms

#: The read-out units never fire.
NO_THRESHOLD = 1e12
#: NEST's precise LIF needs t_ref > 0: a model without refractoriness runs with one tic (1 ns).
MIN_T_REF_MS = 1e-6
NOISE_MODES = ("none", "remainder", "model")
#: Steps between a Python read of the read-out and the current it sets reaching the neurons (factored).
PREDICTED_STEPS = 3
#: Steps of normal draws made at once in a stepped run.
DRAW_BLOCK = 64
#: Default step of a NEST spiking run, seconds of network time: a quarter of the other back ends' 0.1 ms,
#: because NEST's error grows with the step (module docstring, "Step").
STEP_SECONDS = 2.5e-5


def check_spiking(arrays, info, *, coupling, noise, h_ms):
    """Refuse what the NEST spiking network cannot carry, with the reason and the fix (NetworkError)."""
    neuron = info["neuron"]
    if neuron["name"] != "lif":
        raise NetworkError(f"spiking mode needs LIF neurons, this model has {neuron['name']!r} neurons "
                           "(fit with --neuron lif; or run it in rate mode)")
    if coupling not in ("factored", "dense"):
        raise NetworkError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if noise not in NOISE_MODES:
        raise NetworkError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
    tau_ms = float(info["tau"]) * 1e3
    if tau_ms < 5 * h_ms:
        raise NetworkError(f"tau_syn = tau = {tau_ms:g} ms is shorter than 5 steps of {h_ms:g} ms; use a smaller dt")
    tau_ref_ms = float(neuron["tau_ref"]) * 1e3
    if 0 < tau_ref_ms < h_ms - 1e-9 or (tau_ref_ms == 0 and h_ms > MIN_T_REF_MS):
        raise NetworkError(f"NEST's precise LIF neuron fires at most once per step: the step ({h_ms:g} ms) must not "
                           f"exceed tau_ref ({tau_ref_ms:g} ms); simulate with dt of at most tau_ref (SDE units: "
                           f"{tau_ref_ms * 1e-3 / float(info['time_scale']):.3g}) or refit with --tau-ref "
                           f">= {h_ms * 1e-3:g}")


def lif_params(info):
    """``iaf_psc_exp_ps`` parameters of the model's LIF neuron (module docstring)."""
    neuron = info["neuron"]
    tm = float(neuron["tau_m"]) * 1e3
    tau_ms = float(info["tau"]) * 1e3
    return {"C_m": tm, "tau_m": tm, "E_L": 0.0, "V_reset": 0.0, "V_th": 1.0,
            "t_ref": max(float(neuron["tau_ref"]) * 1e3, MIN_T_REF_MS), "tau_syn_ex": tau_ms, "tau_syn_in": tau_ms}


def lif_rate(info, x):
    """``(phi(x), act(x))``: the LIF rate curve in Hz and the activity the noise scales with (numpy)."""
    neuron = info["neuron"]
    tm, tr = float(neuron["tau_m"]), float(neuron["tau_ref"])
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(x > 1.0, 1.0 / (tr + tm * np.log1p(1.0 / np.clip(x - 1.0, 1e-12, 1e12))), 0.0)
    per = tr if tr > 0 else 1.0 / float(neuron["max_rates"][1])   # as ddm_neuro.neurons.LIFRate.activity
    return phi, phi * per


def remainder_variance(arrays, info, phi, act, noise, fano):
    """Private noise variance per neuron (``sigma^2``, seconds as the model's) at rates ``phi`` and activity ``act``."""
    var = arrays["noise_const"] + arrays["noise_act"] * act
    if noise == "model":
        return var
    if isinstance(fano, str):   # "regular": periodic firing counted over one SDE time unit T
        T = float(info["time_scale"])
        f = np.modf(phi * T)[0]
        spikes = f * (1.0 - f) / T
    else:
        spikes = np.asarray(fano, dtype=np.float64) * phi
    return np.clip(var - spikes, 0.0, None)


def build_spiking(nest, arrays, info, *, trials, h_ms, record_every, coupling, noise, state, u_steps=None,
                  record_spikes=False):
    """Create and connect ``trials`` copies of the spiking network (kernel already set up).

    ``state`` is :func:`spec.spiking_state`'s dict for ``coupling`` (``p``, ``v`` and ``q`` or
    ``syn``); ``u_steps`` (steps, k) the inputs on the step grid. Returns a dict: ``neurons``,
    ``readout`` (d per trial, trial-major), ``counter`` (one unit counting every spike),
    ``multimeter``, ``generators`` (d per trial, or None), ``spikes`` (a spike recorder or None),
    and what :func:`run_stepped` needs.
    """
    E, K, D, b = arrays["encoders"], arrays["decoders"], arrays["readout"], arrays["bias"]
    B = arrays["input_weights"]
    N, d = E.shape
    k = B.shape[1]
    tau_ms = float(info["tau"]) * 1e3
    tau_s = float(info["tau"])
    has_input = u_steps is not None and k > 0
    u0 = np.asarray(u_steps[0], dtype=float) if has_input else np.zeros(k)
    rest = b + B @ u0                                                   # I_e: bias and the start input
    X = np.asarray(state["p"], dtype=float).reshape(trials, N)
    p_tr = X - rest                                                     # the part of p that decays with tau
    syn0 = np.asarray(state["syn"], dtype=float).reshape(trials, N) if coupling == "dense" else 0.0
    q0 = (np.asarray(state["q"], dtype=float).reshape(trials, d) if coupling == "factored"
          else np.asarray(state["syn"], dtype=float).reshape(trials, N) @ D.T)
    if coupling == "factored":   # the part of p's transient along E is carried with q, held over each step
        q0 = q0 + p_tr @ D.T
        p_tr = p_tr - (p_tr @ D.T) @ E.T
    neurons = nest.Create("iaf_psc_exp_ps", trials * N, params=lif_params(info))
    i_e = np.tile(rest, (trials, 1))
    if coupling == "factored":   # the generators reach the neurons from step 2: E q0 is in I_e until then
        i_e = i_e + q0 @ E.T
    set_per_node(nest, neurons, V_m=np.asarray(state["v"], dtype=float), I_e=i_e.reshape(-1),
                 I_syn_ex=(p_tr + syn0).reshape(-1))
    undecay = np.exp(h_ms / tau_ms)   # V decays for one step before it first shows y(0)
    readout = nest.Create("iaf_psc_delta_ps", trials * d, params={
        "C_m": 1.0, "tau_m": tau_ms, "E_L": 0.0, "V_reset": 0.0, "V_th": NO_THRESHOLD, "t_ref": h_ms})
    set_per_node(nest, readout, V_m=((q0 + p_tr @ D.T) * undecay).reshape(-1))   # V(h) = y(0) - D rest
    counter = nest.Create("iaf_psc_delta_ps", 1, params={"C_m": 1.0, "tau_m": 1e300, "E_L": 0.0, "V_m": 0.0,
                                                       "V_reset": 0.0, "V_th": NO_THRESHOLD, "t_ref": h_ms})
    stepped = coupling == "factored" or noise != "none"
    generators = nest.Create("dc_generator", trials * d) if stepped else None
    for tr in range(trials):
        pop, out = neurons[tr * N:(tr + 1) * N], readout[tr * d:(tr + 1) * d]
        nest.Connect(pop, out, "all_to_all", {"weight": K / tau_s, "delay": h_ms})
        if coupling == "dense":
            nest.Connect(pop, pop, "all_to_all", {"weight": E @ K / tau_s, "delay": h_ms})
        if generators is not None:
            nest.Connect(generators[tr * d:(tr + 1) * d], pop, "all_to_all", {"weight": E, "delay": h_ms})
    nest.Connect(neurons, counter, "all_to_all", {"weight": 1.0, "delay": h_ms})
    if has_input:
        _connect_current_inputs(nest, B, neurons, trials, h_ms, u_steps)
    mm = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": record_every * h_ms,
                                           "offset": h_ms})
    nest.Connect(mm, readout + counter)
    spikes = None
    if record_spikes:
        spikes = nest.Create("spike_recorder", params={"time_in_steps": False})
        nest.Connect(neurons, spikes)
    return {"neurons": neurons, "readout": readout, "counter": counter, "multimeter": mm, "generators": generators,
            "spikes": spikes, "stepped": stepped, "q0": q0, "p_tr": p_tr, "rest": rest, "u0": u0,
            "warm": 0}


def _connect_current_inputs(nest, B, neurons, trials, h_ms, u_steps):
    """k step_current_generators carrying ``u(s) - u(0)`` (weights B): the value for step ``s`` is set at
    ``(s - 1) h``; NEST sets values only at ``t > 0``, so a change at step 1 takes effect at step 2."""
    u = np.asarray(u_steps, dtype=float)
    sent = (u - u[0])[2:]
    for m in range(B.shape[1]):
        keep = np.r_[np.any(sent[:1, m] != 0), np.diff(sent[:, m]) != 0]
        if not keep.any():
            continue
        times = (np.flatnonzero(keep) + 1) * h_ms
        gen = nest.Create("step_current_generator", params={"amplitude_times": times.tolist(),
                                                            "amplitude_values": sent[keep, m].tolist()})
        nest.Connect(gen, neurons, "all_to_all", {"weight": np.tile(B[:, m], trials)[:, None], "delay": h_ms})


def applied_input(arrays, u_steps, steps):
    """``B (u(s) - u(0))`` as the neurons receive it, (steps, N): a change at step 1 arrives at step 2."""
    B = arrays["input_weights"]
    if u_steps is None or not B.shape[1]:
        return None
    u = np.asarray(u_steps, dtype=float)
    idx = np.arange(steps)
    idx = np.where(idx == 1, 0, np.minimum(idx, len(u) - 1))
    return (u[idx] - u[0]) @ B.T


def read_out(nest, readout, comm=None):
    """The read-out units' membrane potentials, in node order: every rank gets all of them.

    One process: one ``get``. Under MPI (``comm``, an mpi4py communicator) each rank reads the
    units it holds and the ranks sum their shares (one ``Allreduce`` of ``trials * d`` numbers).
    """
    if comm is None:
        return np.asarray(readout.get("V_m"), dtype=float)
    full = np.zeros(len(readout))
    local, idx = local_nodes(nest, readout)
    if local is not None:
        full[idx] = np.atleast_1d(local.get("V_m"))
    out = np.empty_like(full)
    comm.Allreduce(full, out)
    return out


def mpi_comm(nest):
    """mpi4py's world communicator for a run on several MPI ranks (None in one process).

    Raises NetworkError naming the package when mpi4py is missing: a stepped run under MPI needs
    the read-out shared by all ranks every step.
    """
    if nest.NumProcesses() == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise NetworkError("this spiking run is driven from Python step by step (factored coupling, or noise): "
                           "under MPI every rank needs the read-out each step, through mpi4py, which is not "
                           "installed (pip install mpi4py, against the MPI NEST uses)") from None
    return MPI.COMM_WORLD


def run_stepped(nest, parts, arrays, info, *, steps, h_ms, coupling, noise, fano, rng, u_applied, progress,
                comm=None):
    """Run ``steps`` steps, setting the latent generators from Python before each (module docstring).

    Every MPI rank (``comm``) runs the same loop with the same draws: the read-out is shared
    (:func:`read_out`) and the generators, which NEST keeps on every rank, are set alike.
    Returns the noise ``nu`` acting in every step, (steps + 2, trials, d) (zeros without noise):
    the read-out adds it.
    """
    E, K, D, L = arrays["encoders"], arrays["decoders"], arrays["readout"], arrays["noise_latent"]
    N, d = E.shape
    trials = len(parts["q0"])
    tau_ms, tau_s, h_s = float(info["tau"]) * 1e3, float(info["tau"]), h_ms * 1e-3
    a = np.exp(-h_ms / tau_ms)
    a3 = np.exp(-PREDICTED_STEPS * h_ms / tau_ms)
    noisy = noise != "none" and bool(np.any(arrays["noise_const"]) or np.any(arrays["noise_act"]) or np.any(L))
    shared = bool(np.any(L))
    nu = np.zeros((steps + 2, trials, d))
    cur = np.zeros((steps + 2, trials, d))          # the latent current acting in each step (factored)
    cur[0] = cur[1] = parts["q0"]
    p_tr, rest, readout, gens = parts["p_tr"], parts["rest"], parts["readout"], parts["generators"]
    D_ptr = p_tr @ D.T
    reset_ie = coupling == "factored"
    draws = {}

    def before_step(s):
        if s == 2 and reset_ie:   # from now on the generators carry E q
            set_per_node(nest, parts["neurons"], I_e=np.tile(rest, trials))
        decay = np.exp(-s * h_ms / tau_ms)
        p = rest + p_tr * decay
        if u_applied is not None:
            p = p + u_applied[s]
        # the read-out shows q(s - 1): the spikes up to the end of step s - 2 (one step's delay)
        q_prev = read_out(nest, readout, comm).reshape(trials, d) - D_ptr * decay / a
        # the input in step s: dense synapses hold q(s - 1) (their own delay); factored, what was set
        x = p + ((cur[s] if coupling == "factored" else q_prev) + nu[s]) @ E.T
        phi, act = lif_rate(info, x)
        if coupling == "factored":
            cur[s + 2] = q_prev * a3 + (phi @ K.T) * (1.0 - a3)
        if noisy:
            if s % DRAW_BLOCK == 0:   # normal draws in blocks of steps: one numpy call per block
                draws["g"] = rng.standard_normal((DRAW_BLOCK, trials, N + d))
            g = draws["g"][s % DRAW_BLOCK]
            var = remainder_variance(arrays, info, phi, act, noise, fano)
            kick = (np.sqrt(var * h_s) * g[:, :N]) @ (K.T / tau_s)
            if shared:
                kick += np.sqrt(h_s) * g[:, N:] @ L.T
            nu[s + 2] = nu[s + 1] * a + kick
        amp = (cur[s + 2] if coupling == "factored" else 0.0) + nu[s + 2]
        # one dict per generator: set(amplitude=[...]) reads the collection's status first (~0.3 ms here)
        gens.set([{"amplitude": v} for v in np.asarray(amp, dtype=float).reshape(-1).tolist()])

    run_steps(nest, steps, h_ms, before_step, label="nest spiking (stepped)",
              progress=progress and (comm is None or comm.Get_rank() == 0))
    return nu


def simulate_spiking(arrays, info, *, trials, dt, n_rec, record_every, state, seed, threads=1, coupling="factored",
                     noise="remainder", fano="regular", u_steps=None, record_spikes=False, progress=False,
                     scratch=None):
    """Build, run and read back the spiking network; ``(y, stats)`` on rank 0, ``(None, stats)`` elsewhere.

    ``y`` is the latent read-out (trials, n_rec, d) in the network's units (``z = S y + c``);
    ``state`` is :func:`spec.spiking_state`'s dict. ``stats``: ``h_ms``, ``build_s``, ``run_s``,
    ``ranks``, ``threads``, ``max_rss_mb``, ``n_spikes`` (all trials), ``stepped`` and, with
    ``record_spikes``, ``spikes`` = ``(times in s, neuron + trial * N)``.
    """
    nest = import_nest()
    h_ms = step_ms(dt, info)
    check_spiking(arrays, info, coupling=coupling, noise=noise, h_ms=h_ms)
    rng = np.random.default_rng(seed)
    nest_seed = int(rng.integers(1, 2 ** 31 - 2))
    t0 = time.perf_counter()
    setup_kernel(nest, h_ms=h_ms, seed=nest_seed, threads=threads)
    stepped = coupling == "factored" or noise != "none"
    comm = mpi_comm(nest) if stepped else None
    if record_spikes and nest.NumProcesses() > 1:
        raise NetworkError("recording spikes under MPI is not supported; run in one process")
    parts = build_spiking(nest, arrays, info, trials=trials, h_ms=h_ms, record_every=record_every,
                          coupling=coupling, noise=noise, state=state, u_steps=u_steps, record_spikes=record_spikes)
    t1 = time.perf_counter()
    steps = (n_rec - 1) * record_every + 2          # the last sample lands one step after its time
    u_applied = applied_input(arrays, u_steps, steps + 2)
    if stepped:
        nu = run_stepped(nest, parts, arrays, info, steps=steps, h_ms=h_ms, coupling=coupling, noise=noise,
                         fano=fano, rng=rng, u_applied=u_applied, progress=progress, comm=comm)
    else:
        nu = None
        simulate_chunks(nest, steps * h_ms, progress)
    t2 = time.perf_counter()
    d = arrays["encoders"].shape[1]
    idx, times, values = local_latent(parts, "V_m")
    ranks, rank = nest.NumProcesses(), nest.Rank()
    stats = {"h_ms": h_ms, "build_s": t1 - t0, "run_s": t2 - t1, "ranks": ranks, "threads": int(threads),
             "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "stepped": stepped}
    if parts["spikes"] is not None:
        ev = parts["spikes"].get("events")
        stats["spikes"] = (np.asarray(ev["times"], dtype=float) * 1e-3,
                           np.asarray(ev["senders"], dtype=np.int64) - parts["neurons"][0].global_id)
    if ranks > 1:
        rows, stats = gather_latent(nest, (idx, times, values), stats, scratch)
        if rank != 0:
            return None, stats
        idx, times, values = rows
    counted = idx == trials * d                      # the spike counter, recorded with the read-out
    stats["n_spikes"] = int(round(values[counted].max())) if counted.any() else 0
    q0 = parts["q0"] + parts["p_tr"] @ arrays["readout"].T
    y = assemble(idx[~counted], times[~counted], values[~counted], y0=q0, trials=trials, d=d, n_rec=n_rec,
                 record_every=record_every, h_ms=h_ms)
    s_rec = np.arange(n_rec) * record_every
    y += parts["rest"] @ arrays["readout"].T           # D (b + B u(0)): the read-out units hold the rest
    if u_applied is not None:
        y += (u_applied[s_rec] @ arrays["readout"].T)[None]
    if nu is not None:
        y += nu[s_rec].transpose(1, 0, 2)
    return y, stats
