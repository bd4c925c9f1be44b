r"""A trained ddm_neuro rate network as a NEST network; needs only nest and numpy.

This file is the NEST script of an exported project (copied there verbatim as
``network.py``, beside ``spec.py``), and the same code runs the ``nest`` back
end, so what is exported is what was tested.

Units: NEST counts time in ms; the model's ``tau`` and ``time_scale`` T are in
seconds; one SDE time unit is T seconds of network time. ``x`` is dimensionless.

The model (Itô)::

    tau dx = (-x + E K phi(x) + b + B u) dt + E [K diag(sigma(x)) dW + tau L dW']     x: N neuron inputs
    y = D x,   z = S y + c

with ``phi = tanh`` and private output noise ``sigma_j^2 = noise_const_j +
noise_act_j act(x_j)`` (seconds).

How NEST carries it (``coupling="factored"``, the default)::

    x  : N  lin_rate_ipn          tau, lambda = 1, mu = b, no noise of their own
    v  : d  rate_transformer_tanh linear_summation = False:  v_k = sum_j K_kj tanh(x_j)
    eta: d  lin_rate_ipn          white noise units (see below)
    y  : d  rate_transformer_lin  y_k = sum_j D_kj x_j, recorded by a multimeter
    x <- v (weights 2E now, -E one step later), x <- eta (three taps), x <- u (step_rate_generator, weights B)

All rate connections are instantaneous (``rate_connection_instantaneous``),
solved by NEST's waveform relaxation with ``wfr_comm_interval`` = one step,
except the taps that reach back in time (``rate_connection_delayed``).
NEST integrates each rate neuron with the **exponential Euler** step
``x(s+1) = P1 x(s) + P2 (mu + input(s))``, ``P1 = exp(-h/tau') = 1 - P2``,
the inputs held over the step. ``tau'`` is chosen so that ``P2 = h / tau``
(:func:`leak_tau`): along the latent, where the recurrence cancels the leak,
the step is then the torch simulator's Euler step.

A relay's output is one step old when a neuron reads it: the neurons would
see ``c(s-1)``, ``c(k) = K tanh(x(k))``. Left so, the latent's leading error
is three times the Euler step's (``-3/2 h f'f`` against ``-1/2 h f'f``), which
fails ``verify`` on Lorenz. The neurons therefore read the linear
extrapolation ``2 c(s-1) - c(s-2)`` (the relays reach them twice: now, weights
2E, and one step later, weights -E), whose leading error is Euler's times
``(1 + 2 h / tau)``. Before a run, :func:`warm_up` runs ``WARM_STEPS`` steps
and sets the start state again, so that the delayed taps hold the start's
``c(x0)``. The dense coupling (``tanh(x(s))``, no relay) needs none of this.
Directions off the latent relax at ``1 / tau'`` instead of ``1 / tau``.

Noise. NEST's rate noise is additive and constant per neuron; this model's is
correlated through E. The latent noise ``K diag(sigma) dW + tau L dW'`` has
covariance ``Sigma = K diag(noise_const) K^T + tau^2 L L^T`` per second; it is
carried exactly by d independent white-noise units ``eta`` (``lin_rate_ipn``
with ``tau = h / 40``, so each step holds a fresh N(0, 1) sample; their
carry-over ``exp(-40)`` is below double precision's resolution of 1). Fed back
through the extrapolating loop, a noise input would give latent steps
correlated from one step to the next, so each unit reaches the neurons three
times: now with weights ``G = E chol(Sigma) / sqrt(h)``, one step later with
``P2 G`` and two steps later with ``-P2 G`` (:func:`noise_weights`). The
latent's noise steps are then white, with the variance ``h Sigma / tau^2`` of
the torch Euler step. Constant noise is the same in Itô and Stratonovich form.

Activity-dependent noise (``noise_act != 0``: a state-dependent diffusion)
has no NEST neuron to carry it (rate noise there is additive; NESTML writes
no rate neurons), so it is built from parts and driven from Python step by
step (:func:`run_stepped`, factored coupling, one process): ``d(d+1)/2``
``rate_transformer_tanh`` relays per trial sum the state-dependent part of
``Sigma(x)``, ``sum_j K_kj K_lj (noise_act_j / 2) tanh(x_j)``; before every
step Python reads them, adds the constant part, and sets the weights of d
linear mixers, ``chol(Sigma(x)) / sqrt(h)``, through which the white-noise
units reach the neurons (taps E, ``P2 E``, ``-P2 E``). The amplitude is that
of the state two steps before the increment it scales (the relays and mixers
are one step old each): non-anticipating, so the scheme is Itô, with an O(h)
lag in the amplitude. It costs a Python call per step (about 10x the plain
run here) and refuses MPI, where the relays' values would have to be gathered
every step.

Inputs ``u(t)`` (step grid) come from k ``step_rate_generator`` s; a change of
``u`` moves ``x`` by ``B du`` within one step (the model's feed-forward path:
the generator sends ``u + du / P2`` for that step).

Seeds: NEST draws from one stream per virtual process; a seed reproduces a
run for the same number of threads x ranks.

Distributed runs: the same script runs under ``mpirun``; every rank records
the read-out units it holds, writes them beside the output, and rank 0 merges
them (:func:`gather_latent`).
"""
from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np

#: NEST time resolution: tics per ms (1 ns), so that any step of the model is carried to 1e-6 ms.
TICS_PER_MS = 10 ** 6
#: Steps run before the recorded run (factored coupling): they fill the delayed connections' buffers.
WARM_STEPS = 2
#: White-noise units: tau = h / NOISE_TAU_STEPS, so their carry-over exp(-NOISE_TAU_STEPS) vanishes.
NOISE_TAU_STEPS = 40.0
FORMAT = "ddm_neuro-nest-project"
VERSION = 1
SYN = "rate_connection_instantaneous"


class NetworkError(ValueError):
    """A model feature or setting this NEST network cannot express."""


def import_nest():
    """Import NEST quietly (its banner and info messages off); NetworkError naming the install if absent."""
    os.environ.setdefault("PYNEST_QUIET", "1")   # no banner
    try:
        import nest
    except ImportError as exc:
        raise NetworkError(f"NEST is not installed ({exc}); pip install nest-simulator "
                           "(or ddm_neuro's extra: pip install '.[nest]')") from None
    try:
        nest.verbosity = nest.VerbosityLevel.ERROR
    except AttributeError:  # older PyNEST
        nest.set_verbosity("M_ERROR")
    return nest


def check_rate(arrays, info, *, coupling, noise, has_input):
    """Refuse what the NEST rate network cannot carry, with the reason (NetworkError)."""
    if info["neuron"]["name"] != "tanh":
        raise NetworkError(f"NEST carries rate networks of tanh neurons only; this model has "
                           f"{info['neuron']['name']!r} neurons: run it as a spiking network (--mode spiking), "
                           "or refit with --neuron tanh")
    if coupling not in ("factored", "dense"):
        raise NetworkError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if noise and np.any(arrays["noise_act"]) and coupling != "factored":
        raise NetworkError("this model's noise depends on the activity (a state-dependent diffusion), which only "
                           "the factored coupling carries in NEST")
    if coupling == "dense" and noise and (np.any(arrays["noise_const"]) or np.any(arrays["noise_latent"])):
        raise NetworkError("dense coupling in NEST carries no noise (its tanh neurons apply tanh to every input); "
                           "use the factored coupling, or run noise-free")
    if coupling == "dense" and has_input:
        raise NetworkError("dense coupling in NEST carries no inputs (its tanh neurons apply tanh to every "
                           "input); use the factored coupling")


def step_ms(dt, info):
    """The integration step in ms for ``dt`` SDE units, on NEST's tic grid (:data:`TICS_PER_MS`)."""
    h = round(float(dt) * float(info["time_scale"]) * 1e3 * TICS_PER_MS) / TICS_PER_MS
    if h <= 0:
        raise NetworkError(f"dt = {dt} SDE units is below NEST's tic (1e-6 ms)")
    return h


def noise_weights(arrays, info, h_ms, tau_ms):
    """The white-noise units' weights to the neurons, (N, d) each, now and 1, 2 steps later (module docstring).

    ``(G, P2 G, -P2 G)`` with ``G = E chol(Sigma) / sqrt(h)``: the relays' extrapolation
    ``2 c(s-1) - c(s-2)`` fed back into the latent is undone, so its noise steps are white.
    """
    tau, h = float(info["tau"]), h_ms * 1e-3
    K, L, c = arrays["decoders"], arrays["noise_latent"], arrays["noise_const"]
    sigma = (K * c) @ K.T + tau ** 2 * (L @ L.T)
    vals, vecs = np.linalg.eigh(0.5 * (sigma + sigma.T))
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))          # root root^T = Sigma (PSD, possibly singular)
    G = arrays["encoders"] @ root / np.sqrt(h)
    p2 = -np.expm1(-h_ms / tau_ms)
    return G, p2 * G, -p2 * G


def leak_tau(info, h_ms, coupling):
    """The neurons' time constant ``tau'`` in ms: the latent then moves as the Euler step (module docstring).

    Raises NetworkError for a step of ``tau / 2`` or more (the compensation needs ``h`` well below ``tau``).
    """
    tau_ms = float(info["tau"]) * 1e3
    a = h_ms / tau_ms
    if a >= 0.5:
        raise NetworkError(f"the step h = {h_ms:g} ms is not below tau / 2 = {tau_ms / 2:g} ms; use a smaller dt")
    return -h_ms / np.log1p(-a)


def setup_kernel(nest, *, h_ms, seed, threads):
    """Reset NEST and set its step, threads and seed."""
    nest.ResetKernel()
    if threads < 1:
        raise NetworkError(f"threads must be >= 1, got {threads}")
    nest.set(tics_per_ms=TICS_PER_MS, resolution=h_ms, local_num_threads=int(threads),
             rng_seed=int(seed) % (2 ** 31 - 2) + 1, use_wfr=True, wfr_comm_interval=h_ms,
             print_time=False, overwrite_files=True)


def local_nodes(nest, nodes):
    """The part of a contiguous NodeCollection this process holds, and its positions in ``nodes``.

    Returns ``(local, idx)``; ``local`` is None where this process holds none
    of them (under MPI a rank holds only some nodes).
    """
    import warnings

    if len(nodes) == 1:   # GetLocalNodeCollection fails on one node (NEST 3.10: its `local` is then a bool)
        return (nodes, np.zeros(1, dtype=int)) if nodes.local else (None, np.zeros(0, dtype=int))
    with warnings.catch_warnings():   # "unsafe" where later calls are collective; here it only reads ids
        warnings.simplefilter("ignore")
        local = nest.GetLocalNodeCollection(nodes)
    if len(local) == 0:
        return None, np.zeros(0, dtype=int)
    return local, np.asarray(local.tolist()) - nodes[0].global_id


def set_per_node(nest, nodes, **values):
    """Set one value per node of a contiguous NodeCollection, on the nodes this process holds.

    Under MPI a rank holds only some nodes and NEST refuses a list for the whole
    collection; every rank sets its own (all ranks compute the same full arrays).
    """
    local, idx = local_nodes(nest, nodes)
    if local is None:
        return
    if len(nodes) == 1:
        local.set(**{key: float(np.asarray(v, dtype=float).reshape(-1)[0]) for key, v in values.items()})
    else:
        local.set(**{key: np.asarray(v, dtype=float)[idx].tolist() for key, v in values.items()})


def build_rate(nest, arrays, info, *, trials, h_ms, record_every, coupling="factored", noise=True,
               x0, u_steps=None, rng=None):
    """Create and connect ``trials`` independent copies of the rate network (kernel already set up).

    Parameters
    ----------
    nest : module
    arrays, info : dict
        The model spec (:mod:`spec`).
    trials : int
    h_ms : float
        The step (:func:`step_ms`).
    record_every : int
        Steps per recorded sample.
    coupling : {"factored", "dense"}
    noise : bool
    x0 : array (trials * N,)
        Start inputs (:func:`spec.initial_state`).
    u_steps : array (steps, k), optional
        Inputs on the step grid.
    rng : numpy Generator
        Draws the noise units' first samples.

    Returns
    -------
    dict
        ``readout`` (NodeCollection, trial-major d per trial), ``multimeter``, ``neurons``.
    """
    E, K, D, b = arrays["encoders"], arrays["decoders"], arrays["readout"], arrays["bias"]
    N, d = E.shape
    has_input = u_steps is not None and arrays["input_weights"].shape[1] > 0
    check_rate(arrays, info, coupling=coupling, noise=noise, has_input=has_input)
    tau_ms = leak_tau(info, h_ms, coupling)
    warm = WARM_STEPS if coupling == "factored" else 0
    rng = rng or np.random.default_rng(0)
    noisy = bool(noise and (np.any(arrays["noise_const"]) or np.any(arrays["noise_latent"])))
    model = "lin_rate_ipn" if coupling == "factored" else "tanh_rate_ipn"
    neurons = nest.Create(model, trials * N, params={"tau": tau_ms, "lambda": 1.0, "sigma": 0.0,
                                                      "linear_summation": False})
    mu = b + (arrays["input_weights"] @ np.asarray(u_steps[0], dtype=float) if has_input else 0.0)
    set_per_node(nest, neurons, mu=np.tile(mu, trials), rate=np.asarray(x0, dtype=float))
    readout = nest.Create("rate_transformer_lin", trials * d, params={"linear_summation": False})
    x0 = np.asarray(x0, dtype=float).reshape(trials, N)
    if coupling == "factored":
        relays = nest.Create("rate_transformer_tanh", trials * d, params={"linear_summation": False})
        set_per_node(nest, relays, rate=(np.tanh(x0) @ K.T).reshape(-1))   # the loop's first value
    stepped = noisy and bool(np.any(arrays["noise_act"]))
    if noisy:
        taps = noise_weights(arrays, info, h_ms, tau_ms)
        if stepped:   # the mixers carry chol(Sigma(x)) / sqrt(h); the taps then weigh E
            p2 = -np.expm1(-h_ms / tau_ms)
            taps = (E, p2 * E, -p2 * E)
            mixers = nest.Create("rate_transformer_lin", trials * d, params={"linear_summation": False})
            pairs = np.array([(k, m) for k in range(d) for m in range(k, d)])
            covr = nest.Create("rate_transformer_tanh", trials * len(pairs), params={"linear_summation": False})
            a_half = 0.5 * arrays["noise_act"]
            cov_w = K[pairs[:, 0]] * K[pairs[:, 1]] * a_half              # (P, N): the tanh part of Sigma
            set_per_node(nest, covr, rate=(np.tanh(x0) @ cov_w.T).reshape(-1))
        white = nest.Create("lin_rate_ipn", trials * d, params={
            "tau": h_ms / NOISE_TAU_STEPS, "lambda": 1.0, "mu": 0.0, "linear_summation": False,
            "sigma": float(np.sqrt(2.0 / -np.expm1(-2 * NOISE_TAU_STEPS)))})
        set_per_node(nest, white, rate=rng.standard_normal(trials * d))
    for tr in range(trials):
        pop, out = neurons[tr * N:(tr + 1) * N], readout[tr * d:(tr + 1) * d]
        if coupling == "factored":
            rel = relays[tr * d:(tr + 1) * d]
            nest.Connect(pop, rel, "all_to_all", {"synapse_model": SYN, "weight": K})
            nest.Connect(rel, pop, "all_to_all", {"synapse_model": SYN, "weight": 2 * E})     # 2 c(s-1) - c(s-2)
            nest.Connect(rel, pop, "all_to_all", {"synapse_model": "rate_connection_delayed", "weight": -E,
                                                  "delay": h_ms})
        else:
            nest.Connect(pop, pop, "all_to_all", {"synapse_model": SYN, "weight": E @ K})
        if noisy:
            eta = white[tr * d:(tr + 1) * d]
            if stepped:
                mix = mixers[tr * d:(tr + 1) * d]
                nest.Connect(eta, mix, "all_to_all", {"synapse_model": SYN, "weight": np.eye(d)})
                nest.Connect(pop, covr[tr * len(pairs):(tr + 1) * len(pairs)], "all_to_all",
                             {"synapse_model": SYN, "weight": cov_w})
                eta = mix
            nest.Connect(eta, pop, "all_to_all", {"synapse_model": SYN, "weight": taps[0]})
            for lag, weight in enumerate(taps[1:], start=1):
                nest.Connect(eta, pop, "all_to_all", {"synapse_model": "rate_connection_delayed", "weight": weight,
                                                      "delay": lag * h_ms})
        nest.Connect(pop, out, "all_to_all", {"synapse_model": SYN, "weight": D})
    if has_input:
        _connect_inputs(nest, arrays, tau_ms, neurons, trials, h_ms, u_steps, warm)
    mm = nest.Create("multimeter", params={"record_from": ["rate"], "interval": record_every * h_ms,
                                           "offset": (warm + 1) * h_ms})
    nest.Connect(mm, readout)
    parts = {"readout": readout, "multimeter": mm, "neurons": neurons, "warm": warm, "stepped": None}
    if stepped:
        conns = nest.GetConnections(source=white, target=mixers)
        src = np.asarray(conns.get("source")) - white[0].global_id
        tgt = np.asarray(conns.get("target")) - mixers[0].global_id
        parts["stepped"] = {"covr": covr, "pairs": pairs, "conns": conns, "trial": tgt // d, "row": tgt % d,
                            "col": src % d, "sigma0": latent_cov_constant(arrays, info, pairs), "h_ms": h_ms}
        set_mixing(parts["stepped"], np.tanh(x0) @ cov_w.T)
    if warm:
        parts.update(relays=relays, x0=x0.reshape(-1), c0=(np.tanh(x0) @ K.T).reshape(-1))
    return parts


def latent_cov_constant(arrays, info, pairs):
    """The state-independent part of Sigma per pair (k, l): ``K (c + a/2) K^T + tau^2 L L^T``."""
    K, L = arrays["decoders"], arrays["noise_latent"]
    const = (K * (arrays["noise_const"] + 0.5 * arrays["noise_act"])) @ K.T + float(info["tau"]) ** 2 * (L @ L.T)
    return const[pairs[:, 0], pairs[:, 1]]


def set_mixing(stepped, tanh_part):
    """Set the mixers' weights to ``chol(Sigma(x)) / sqrt(h)`` per trial from the relays' tanh part (trials, P)."""
    pairs, trials = stepped["pairs"], tanh_part.shape[0]
    d = int(pairs.max()) + 1
    sigma = np.zeros((trials, d, d))
    vals = stepped["sigma0"] + tanh_part
    sigma[:, pairs[:, 0], pairs[:, 1]] = vals
    sigma[:, pairs[:, 1], pairs[:, 0]] = vals
    w, v = np.linalg.eigh(sigma)
    root = v * np.sqrt(np.clip(w, 0.0, None))[:, None, :] / np.sqrt(stepped["h_ms"] * 1e-3)
    stepped["conns"].set(weight=root[stepped["trial"], stepped["row"], stepped["col"]].tolist())


def run_stepped(nest, parts, total_ms, progress):
    """Run step by step, setting the noise mixers from the state before each step (state-dependent noise).

    Each step reads the P = d(d+1)/2 relays that sum ``K_k K_l a/2 tanh(x)`` per trial (one step
    old, so the noise amplitude is that of the state two steps before the increment it scales:
    non-anticipating, hence Itô) and sets ``chol(Sigma) / sqrt(h)``. One process only: the relays'
    values would have to be gathered across MPI ranks every step.
    """
    stepped = parts["stepped"]
    covr, P = stepped["covr"], len(stepped["pairs"])
    run_steps(nest, int(round(total_ms / stepped["h_ms"])), stepped["h_ms"],
              lambda i: set_mixing(stepped, np.asarray(covr.get("rate"), dtype=float).reshape(-1, P)),
              label="nest (stepped)", progress=progress)


def run_steps(nest, steps, h_ms, before_step, *, label, progress):
    """Run ``steps`` steps of ``h_ms`` one ``nest.Run`` each, calling ``before_step(i)`` before step ``i``.

    With ``progress``, a one-line display on stderr, prefixed ``label``.
    """
    nest.Prepare()
    try:
        t_start = time.perf_counter()
        for i in range(steps):
            before_step(i)
            nest.Run(h_ms)
            if progress and (i + 1) % max(1, steps // 20) == 0:
                sys.stderr.write(f"\r{label}: {100 * (i + 1) // steps:3d} %  {time.perf_counter() - t_start:6.1f} s")
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
    finally:
        nest.Cleanup()


def warm_up(nest, parts, h_ms):
    """Fill the delayed connections' buffers: ``warm`` steps, then the start state again.

    The delayed taps read values sent in earlier steps; after the warm-up the
    relays' delayed value is ``K tanh(x0)`` (their first update reads ``x0``),
    the noise units' earlier samples are in place, and neurons and relays are
    set back to the start state.
    """
    if not parts["warm"]:
        return
    nest.Simulate(parts["warm"] * h_ms)
    set_per_node(nest, parts["neurons"], rate=parts["x0"])
    set_per_node(nest, parts["relays"], rate=parts["c0"])


def _connect_inputs(nest, arrays, tau_ms, neurons, trials, h_ms, u_steps, warm=0):
    """k step_rate_generators carrying ``u(s) - u(0)`` and the jump ``B du`` (as ``du / P2`` over one step).

    ``u(0)`` is in the neurons' ``mu`` (:func:`build_rate`). A generator's value set at time ``t``
    reaches a neuron in step ``t / h + 1`` and NEST sets values only at ``t > 0``, so the
    generators act from step 2 on; a change of ``u`` at step 1 takes effect one step late.
    """
    B = arrays["input_weights"]
    N, k = B.shape
    u = np.asarray(u_steps, dtype=float).reshape(len(u_steps), k)
    p2 = -np.expm1(-h_ms / tau_ms)
    du = np.diff(u, axis=0, prepend=u[:1])
    sent = u - u[0] + du / p2
    if len(u) > 2:
        sent[2] += du[1] / p2
    sent = sent[2:]
    for m in range(k):
        keep = np.r_[np.any(sent[:1, m] != 0), np.diff(sent[:, m]) != 0]   # only the changes
        if not keep.any():
            continue
        times = (np.flatnonzero(keep) + 1 + warm) * h_ms        # value for step s set at (s - 1) h
        gen = nest.Create("step_rate_generator", params={"amplitude_times": times.tolist(),
                                                         "amplitude_values": sent[keep, m].tolist()})
        nest.Connect(gen, neurons, "all_to_all", {"synapse_model": "rate_connection_delayed",
                                                  "weight": np.tile(B[:, m], trials)[:, None], "delay": h_ms})


def local_latent(parts, variable="rate"):
    """This rank's recorded read-out: ``(senders' trial-major index, times in ms, values of variable)``."""
    ev = parts["multimeter"].get("events")
    first = parts["readout"][0].global_id
    return np.asarray(ev["senders"]) - first, np.asarray(ev["times"]), np.asarray(ev[variable])


def assemble(idx, times, values, *, y0, trials, d, n_rec, record_every, h_ms):
    """``y`` (trials, n_rec, d) from recorded ``(index, time, value)`` rows (all ranks) and the start ``y0``.

    The read-out unit shows ``D x`` one step late: the sample at ``(r * record_every + 1) h`` is
    ``y(r * record_every * h)``; ``y(0)`` is ``D x0``.
    """
    y = np.full((trials, n_rec, d), np.nan)
    y[:, 0] = np.asarray(y0).reshape(trials, d)
    r = np.rint((np.asarray(times) / h_ms - 1) / record_every).astype(np.int64)
    ok = (r >= 1) & (r < n_rec)
    y[idx[ok] // d, r[ok], idx[ok] % d] = values[ok]
    return y


def simulate_rate(arrays, info, *, trials, dt, n_rec, record_every, x0, seed, threads=1, coupling="factored",
                  noise=True, u_steps=None, progress=False, scratch=None):
    """Build, run and read back the rate network; ``(y, stats)`` on rank 0, ``(None, stats)`` elsewhere.

    ``y`` is the latent read-out (trials, n_rec, d) in the network's units
    (``z = S y + c``); ``stats``: ``h_ms``, ``build_s``, ``run_s``, ``ranks``,
    ``threads``, ``max_rss_mb`` (this rank's peak memory). Under MPI each rank
    writes its samples to ``scratch`` (a folder all ranks share) and rank 0
    merges them.
    """
    nest = import_nest()
    h_ms = step_ms(dt, info)
    rng = np.random.default_rng(seed)
    nest_seed = int(rng.integers(1, 2 ** 31 - 2))
    t0 = time.perf_counter()
    setup_kernel(nest, h_ms=h_ms, seed=nest_seed, threads=threads)
    if noise and np.any(arrays["noise_act"]) and nest.NumProcesses() > 1:
        raise NetworkError("this model's noise depends on the activity: NEST runs it step by step from Python "
                           "(the noise amplitude set from the state every step), in one process only; run "
                           "without mpirun (threads: --threads K)")
    parts = build_rate(nest, arrays, info, trials=trials, h_ms=h_ms, record_every=record_every, coupling=coupling,
                       noise=noise, x0=x0, u_steps=u_steps, rng=rng)
    warm_up(nest, parts, h_ms)
    t1 = time.perf_counter()
    total = ((n_rec - 1) * record_every + 2) * h_ms     # the last sample lands one step after its time
    if parts["stepped"]:
        run_stepped(nest, parts, total, progress)
    else:
        simulate_chunks(nest, total, progress)
    t2 = time.perf_counter()
    d = arrays["encoders"].shape[1]
    rows = local_latent(parts)
    ranks, rank = nest.NumProcesses(), nest.Rank()
    stats = {"h_ms": h_ms, "build_s": t1 - t0, "run_s": t2 - t1, "ranks": ranks, "threads": int(threads),
             "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if ranks > 1:
        rows, stats = gather_latent(nest, rows, stats, scratch)
        if rank != 0:
            return None, stats
    y0 = (np.asarray(x0).reshape(trials, -1) @ arrays["readout"].T)
    y = assemble(rows[0], rows[1] - parts["warm"] * h_ms, rows[2], y0=y0, trials=trials, d=d, n_rec=n_rec,
                 record_every=record_every, h_ms=h_ms)
    return y, stats


def simulate_chunks(nest, total_ms, progress):
    """``nest.Simulate`` in chunks, with a one-line progress display on stderr when ``progress``."""
    if not progress:
        nest.Simulate(total_ms)
        return
    chunks = 20
    nest.Prepare()
    try:
        t_start = time.perf_counter()
        done = 0.0
        for i in range(chunks):
            step = round(total_ms * (i + 1) / chunks / nest.resolution) * nest.resolution - done
            if step > 0:
                nest.Run(step)
                done += step
            sys.stderr.write(f"\rnest: {100 * (i + 1) // chunks:3d} %  {time.perf_counter() - t_start:6.1f} s")
            sys.stderr.flush()
        sys.stderr.write("\n")
    finally:
        nest.Cleanup()


def gather_latent(nest, rows, stats, scratch):
    """Merge every rank's recorded rows on rank 0 through files in ``scratch`` (ranks share a folder)."""
    if scratch is None:
        raise NetworkError("a run on several MPI ranks needs a scratch folder shared by the ranks")
    rank, ranks = nest.Rank(), nest.NumProcesses()
    mine = os.path.join(scratch, f".ddm_nest_rank{rank}.npz")
    np.savez(mine, idx=rows[0], times=rows[1], values=rows[2], rss=stats["max_rss_mb"])
    nest.SyncProcesses()
    if rank != 0:
        return None, stats
    parts = [np.load(os.path.join(scratch, f".ddm_nest_rank{r}.npz")) for r in range(ranks)]
    rows = tuple(np.concatenate([p[key] for p in parts]) for key in ("idx", "times", "values"))
    stats = {**stats, "max_rss_mb_per_rank": [float(p["rss"]) for p in parts]}
    for r in range(ranks):
        os.unlink(os.path.join(scratch, f".ddm_nest_rank{r}.npz"))
    return rows, stats
