r"""``ddm-neuro export --format nir``: the LIF spiking network as an NIR graph whose Output is the latent.

The network (:mod:`ddm_neuro.spiking`), in seconds, with normalised LIF neurons
(threshold 1, reset 0, **no refractory period**)::

    tau   dx/dt = -x + W s(t) + b + B u(t) + noise     s_j(t) = sum_k delta(t - t_j^k),  W = E K
    tau_m dv/dt = x - v,       v >= 1: spike, v <- 0
    z = S D x + c

**The graph** (NIR 1.0, read by nir 1.0.4 to 1.0.8)::

    input --> affine --> rnn --> readout --> latent --> output
      '-----> input_latent ------------------^

* ``input`` (``Input``, k + m channels): the model's k inputs u, then m = d
  channels of host noise (standard normal samples, one per step; absent in a
  noise-free file); a model without inputs and noise gets one channel (feed 0).
* ``rnn`` is a nested ``NIRGraph`` holding the recurrence, the form that
  NIR's recurrent examples and the consumers' importers recognise
  (``rnn.input -> rnn.lif``, ``rnn.lif <-> rnn.recurrent``,
  ``rnn.lif -> rnn.output``): a ``CubaLIF`` and a ``Linear``.
* ``readout`` (``Affine``) and ``latent`` (``LI``, d units, the synapses'
  time constant) filter the spikes as the synapses do, so **the Output is the
  latent z** in SDE coordinates: ``output = consumer(file)(u, noise)``.
  ``input_latent`` (``Affine``) carries the inputs' and the noise's direct
  share of the latent.

**Time convention.** Times are in seconds. The consumers step the graph at
a fixed step ``dt``, a spike being the value 1 for one step; each leaky node
decays by ``1 - dt/tau`` per step and adds its input (Norse's Euler step of
NIR's equations; snnTorch, Rockpool and spyx decay and add natively). The
file is written **for one step dt** (default 1e-4 s; ``metadata["dt"]``)
with ``r = tau_mem/dt`` and ``w_in = tau_syn/dt`` in ``rnn.lif`` and
``r = tau/dt`` in ``latent``, so that per step::

    I <- (1 - a_s) I + affine + recurrent(s_prev)        I = a_m x   (a_s = dt/tau_syn, a_m = dt/tau_mem)
    v <- (1 - a_m) v + I,   v > 1: spike
    y <- (1 - a_s) y + readout(s) + input_latent(u, xi)  y = z

with ``affine = a_m a_s (B u + b) + a_m E G sqrt(dt) xi``, ``recurrent = W a_m/tau``,
``readout = S K / tau`` (a spike moves the latent by ``S K_j / tau``, as ``W_j/tau`` moves x) with
bias ``a_s (S D b + c)``, ``input_latent = [a_s S D B | S G sqrt(dt)]``. ``xi`` are the d noise
channels and ``G`` (d x d) the factor ``G G^T = K diag(s2) K^T / tau^2 + L L^T`` of the host's share
of the latent noise (per network second): ``s2`` is the model's private output-noise intensity minus
what the spikes supply (``F r``, averaged over the model's start states, clipped at 0; ``fano=1``
counts Poisson-like spikes, what they look like at lags shorter than an inter-spike interval, where
the verifier measures the diffusion; ``fano="regular"`` counts regular firing over one SDE time
unit, :func:`ddm_neuro.spiking.noise.regular_fano`).

**State-dependent noise.** A model whose private noise depends on the activity (``noise_act != 0``, a
state-dependent diffusion) keeps that ``G`` (at the mean over the start states: a host that ignores
the rest runs the old, mean-noise network) and its metadata also carries what the host needs to
compute the latent noise covariance at each latent state (:func:`state_noise_metadata`):
``C(z) = K diag(s2(x)) K^T / tau^2 + L L^T``, ``x = x(z, u) = E S^-1 (z - c) + P (b + B u)``,
``s2(x) = max(noise_const + noise_act act(x) - F phi(x), 0)`` with the same ``F`` (``fano``). The
host feeds the noise channels ``A(z) xi`` with ``A(z) = G^+ chol(C(z))``, recomputed from the latest
Output before each interval (Itô); :mod:`.hostnoise` (numpy only) computes it from the metadata
alone, and :func:`.consumers.run_file` does so by default.

**Reset rule.** The file leaves ``v_reset`` out (nir 1.0.4 has no such field). nir >= 1.0.5 reads
that as ``v_reset = 0``, reset to zero, which Norse's ``from_nir`` and snnTorch apply; nir 1.0.4's
CubaLIF, Rockpool and spyx subtract the threshold. The model resets to 0 at the exact crossing;
in a step of 0.1 ms the two rules differ by the overshoot above threshold, a rate difference of a few
per cent at most (``benchmarks/RESULTS_nir.md``, per consumer).

**Matching the step (``step_matched=True``).** Euler's threshold test at the end of a step loses half
a step per interval (Norse; snnTorch's reset one step late loses a step more). ``step_matched``
writes for the discretisation: the model is fitted with ``tau_ref = dt/2`` (Norse) or ``3 dt/2``
(snnTorch), which the step supplies (no refractory period is written), and the file's time
constants are ``dt/(1 - exp(-dt/tau))``, so each Euler step decays exactly; ``a_s``, ``a_m`` above
are the file's.

The graph's metadata (NIR graph metadata; node metadata is left out, nir 1.0.4 has none on
``Linear``, ``Input``, ``Output``) holds the format version, the NIR versions the file is read with,
the time convention, the neuron, the reset rule, the SDE spec, the time scale ``T``, the start states
and ``init_current`` (the synaptic currents at a latent state), as ``metadata["ddm_neuro"]`` (JSON)
plus flat keys.
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
FORMAT_VERSION = 2
#: snnTorch 1.0's fixed step (``snntorch/import_nir.py``): the default export step.
SNNTORCH_DT = 1e-4
#: NIR versions whose readers open the files (tested: ``tests/test_nir_compat.py``).
NIR_VERSIONS = "nir >= 1.0.4 (read with 1.0.4 and 1.0.8)"
#: Top-level nodes and NIR types (``input_latent`` only where inputs or noise reach the latent).
NODES = {"input": "Input", "affine": "Affine", "rnn": "NIRGraph", "readout": "Affine", "latent": "LI",
         "input_latent": "Affine", "output": "Output"}
#: Nodes of the nested recurrent graph ``rnn``.
RNN_NODES = {"rnn.input": "Input", "rnn.lif": "CubaLIF", "rnn.recurrent": "Linear", "rnn.output": "Output"}
#: The chain first (importers that follow one edge per node read it), then the latent's second input.
EDGES = [("input", "affine"), ("affine", "rnn"), ("rnn", "readout"), ("readout", "latent"), ("latent", "output"),
         ("input", "input_latent"), ("input_latent", "latent")]
RNN_EDGES = [("rnn.input", "rnn.lif"), ("rnn.lif", "rnn.recurrent"), ("rnn.recurrent", "rnn.lif"),
             ("rnn.lif", "rnn.output")]
#: The reset rule of each consumer for a file without ``v_reset``.
RESET_RULES = {"norse": "reset to 0 (from_nir's reset_value; reset_method=reset_subtract for nir 1.0.4's rule)",
               "snntorch": "reset to 0, one step after the spike (RSynaptic reset_mechanism='zero')",
               "rockpool": "subtract the threshold (LIFTorch)",
               "spyx": "subtract the threshold, at the step after the crossing (RCuBaLIF)",
               "nir 1.0.4": "subtract the threshold", "nir >= 1.0.5": "reset to v_reset, default 0"}

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


def _refit_line(model):
    """The commands that refit ``model`` without a refractory period."""
    name = model.meta.get("sde_name") or "SPEC.toml"
    return (f"ddm-neuro fit {name} --neuron lif --tau-ref 0 -n {model.n_neurons} -o {name}_nir.ddm, then export "
            f"that (ddm-neuro convert MODEL.ddm --backend norse -o {name}_nir.ddm also calibrates and verifies it "
            "through NIR)")


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
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and np.isfinite(dt) and dt > 0):
        raise DDMError(f"nir export: dt must be a number of seconds > 0 (got {dt!r})")
    if model.neuron.name != "lif":
        raise DDMError(f"nir export needs LIF neurons without a refractory period (this model has "
                       f"{model.neuron.name!r} neurons): ddm-neuro convert MODEL.ddm --backend norse -o MODEL_nir.ddm "
                       "(LIF, tau_ref 0, calibrated and verified through NIR), then export that")
    tau_ref = model.neuron.params["tau_ref"]
    matched = None
    if step_matched:
        matched = matched_consumer(model, dt)
        if matched is None:
            raise DDMError(f"nir export, step_matched: the model's tau_ref = {tau_ref * 1e3:g} ms is not what the "
                           f"step dt = {dt * 1e3:g} ms supplies; fit with tau_ref = dt/2 = {dt * 500:g} ms (Norse) "
                           f"or 3 dt/2 = {dt * 1500:g} ms (snnTorch)")
    elif tau_ref > 0:
        raise DDMError(f"nir export: NIR's CubaLIF has no refractory period and this model's neurons have "
                       f"tau_ref = {tau_ref * 1e3:g} ms; refit: {_refit_line(model)}")
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


def host_noise(model, fano=1.0, noise=True):
    """The host's share of the noise: ``(s2 (N,), G (d, d))``.

    ``s2`` (Hz) is each neuron's private output-noise intensity, averaged over the model's start
    states, minus the spikes' ``F r``, clipped at 0; ``G G^T = K diag(s2) K^T / tau^2 + L L^T`` is
    the latent covariance it adds per network second (in ``y = D x``), so that one step adds
    ``E G sqrt(dt) xi`` to x, ``xi ~ N(0, I_d)``.

    Parameters
    ----------
    model : LatentRNN
    fano : "regular" or float
        Fano factor of the spikes, counted against the model's private noise.
    noise : bool
        False: no host noise (zeros).
    """
    N, d = model.n_neurons, model.dim
    if not noise:
        return np.zeros(N), np.zeros((d, d))
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
    s2 = np.maximum(np.mean(model.noise_var(x) - F * rate, axis=0), 0.0)
    K = model.decoders
    C = (K * s2) @ K.T / model.tau ** 2 + model.noise_latent @ model.noise_latent.T
    lam, V = np.linalg.eigh((C + C.T) / 2)
    return s2, V * np.sqrt(np.clip(lam, 0.0, None))


def graph_inputs(model, noise_factor):
    """``(k, m, width)``: the model's inputs, the noise channels and the width of node ``input``."""
    k = model.n_inputs
    m = model.dim if np.any(noise_factor) else 0
    return k, m, max(k + m, 1)


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
    N, d = model.n_neurons, model.dim
    tau_s, tau_mf, a_s, a_m = step_constants(model, dt, step_matched)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731  (what the consumers compute in)
    ones = np.ones(N, dtype=np.float32)
    s2, G = host_noise(model, fano, noise)
    k, m, width = graph_inputs(model, G)
    E, D, S = model.encoders, model.readout, model.scale[:, None]
    B = model.input_weights
    to_lif = np.zeros((N, width))
    to_lif[:, :k] = B * (a_m * a_s)
    to_latent = np.zeros((d, width))
    to_latent[:, :k] = a_s * S * (D @ B)
    if m:
        to_lif[:, k:] = a_m * np.sqrt(dt) * E @ G
        to_latent[:, k:] = np.sqrt(dt) * S * G
    lif = nir.CubaLIF(tau_syn=ones * tau_s, tau_mem=ones * tau_mf, r=ones * (tau_mf / dt), v_leak=0 * ones,
                      v_threshold=ones, w_in=ones * (tau_s / dt))
    rnn = nir.NIRGraph(nodes={"rnn.input": nir.Input(np.array([N])), "rnn.lif": lif,
                              "rnn.recurrent": nir.Linear(weight=f32(model.weights() * (a_m / model.tau))),
                              "rnn.output": nir.Output(np.array([N]))},
                       edges=list(RNN_EDGES))
    nodes = {
        "input": nir.Input(input_type=np.array([width])),
        "affine": nir.Affine(weight=f32(to_lif), bias=f32(model.bias * (a_m * a_s))),
        "rnn": rnn,
        "readout": nir.Affine(weight=f32(model.scale[:, None] * model.decoders / model.tau),
                              bias=f32(a_s * (model.scale * (D @ model.bias) + model.center))),
        "latent": nir.LI(tau=np.full(d, tau_s, dtype=np.float32), r=np.full(d, tau_s / dt, dtype=np.float32),
                         v_leak=np.zeros(d, dtype=np.float32)),
        "output": nir.Output(output_type=np.array([d])),
    }
    edges = list(EDGES)
    if np.any(to_latent):
        nodes["input_latent"] = nir.Affine(weight=f32(to_latent), bias=np.zeros(d, dtype=np.float32))
    else:
        edges = [e for e in edges if "input_latent" not in e]
    state = state_noise_metadata(model, fano, G) if m else None
    meta = _metadata(model, dt, fano, noise, s2, G, (k, m, width), matched, a_m, state)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def input_matrix(model):
    """The ``(N, d + 1 + k)`` matrix ``M`` with ``x(z, u) = M @ [z, 1, u]``: the neuron inputs at latent z.

    ``x = E (z - c)/S + P (b + B u)``, ``P = I - E D``: the model's ``neuron_inputs`` (no ``W_perp``).
    """
    E, D = model.encoders, model.readout
    B = model.input_weights.reshape(model.n_neurons, model.n_inputs)
    cols = [E / model.scale, (model.bias - E @ (D @ model.bias) - E @ (model.center / model.scale))[:, None],
            B - E @ (D @ B)]
    return np.concatenate(cols, axis=1)


def init_current(model, dt, step_matched=False):
    """The ``(N, d + 1 + k)`` matrix ``M`` with ``I0 = M @ [z0, 1, u0]``.

    ``I0 = (dt/tau_m) (E (z0 - c)/S + P (b + B u0))``, ``P = I - E D``: the latent at z0, the rest at rest.
    """
    return step_constants(model, dt, step_matched)[3] * input_matrix(model)


#: Singular values of ``G`` below this fraction of the largest count as zero in ``G^+``: ``G``'s squared
#: singular values are eigenvalues of the mean covariance, known to about ``eps`` of the largest.
G_RCOND = float(np.sqrt(np.finfo(np.float64).eps))


def state_noise_metadata(model, fano, G):
    """What a host needs to scale the noise channels with the state: ``(arrays, params)``, or None.

    None unless the model's private noise depends on the activity (``noise_act != 0``) and the file has
    noise channels (``G != 0``). ``arrays`` are the flat metadata keys of
    :data:`exporters.nir.hostnoise.STATE_KEYS` (float64): ``noise_state_inputs`` (``x = M @ [z, 1, u]``,
    :func:`input_matrix`), ``noise_state_const``, ``noise_state_act`` (N,), ``noise_state_decoders``
    K (d, N), ``noise_state_latent`` L (d, d), ``noise_state_G`` (the file's ``G``) and
    ``noise_state_G_pinv`` (``G^+``, singular values below :data:`G_RCOND` of the largest as zero).
    ``params`` (JSON) holds the scalars: the LIF's ``tau_m``, ``tau_ref``, ``act_scale``
    (``act = phi act_scale``), the synapses' ``tau``, ``fano`` and ``fano_lag`` (T, seconds), the rank
    and condition number of ``G``. :func:`exporters.nir.hostnoise.noise_transform` computes ``A(z)``
    from them.

    Parameters
    ----------
    model : LatentRNN
    fano : "regular" or float
        As :func:`host_noise`.
    G : ndarray (d, d)
        The file's noise matrix (:func:`host_noise`).
    """
    if not np.any(model.noise_act) or not np.any(G):
        return None
    tau_ref = float(model.neuron.params["tau_ref"])
    act_scale = tau_ref if tau_ref > 0 else 1.0 / float(model.neuron.params["max_rates"][1])
    # G = V sqrt(lam) from the eigen-decomposition of the mean covariance: its rank is the number of
    # eigenvalues above round-off. Full rank (the usual case): G G^+ = I and A(z) = G^+ chol(C(z)) puts exactly
    # C(z) into the latent. Singular G: G G^+ is the orthogonal projector onto range(G), so the latent gets
    # (G G^+) C(z) (G G^+) -- the part of C(z) that the file's channels reach; the rest is lost (noted on stderr).
    # (A singular value just above G_RCOND would be amplified by 1/sv in A and then meet the float32 weights,
    # accurate to ~1e-7 of the largest: "condition" in the metadata says how close a file comes to that.)
    sv = np.linalg.svd(G, compute_uv=False)
    rank = int(np.sum(sv > G_RCOND * sv[0]))
    arrays = {"noise_state_inputs": input_matrix(model), "noise_state_const": model.noise_const,
              "noise_state_act": model.noise_act, "noise_state_decoders": model.decoders,
              "noise_state_latent": model.noise_latent, "noise_state_G": G,
              "noise_state_G_pinv": np.linalg.pinv(G, rcond=G_RCOND)}
    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    params = {"tau_m": float(model.neuron.params["tau_m"]), "tau_ref": tau_ref, "act_scale": act_scale,
              "tau": float(model.tau), "fano": fano if isinstance(fano, str) else float(fano),
              "fano_lag": float(model.time_scale), "rank": rank,
              "condition": float(sv[0] / sv[rank - 1]),
              "covariance": "C(z) = K diag(s2(x)) K^T / tau^2 + L L^T per network second, in the normalised "
                            "latent y = (z - c)/S; x = noise_state_inputs @ [z, 1, u]; s2(x) = max(noise_const + "
                            "noise_act act(x) - F phi(x), 0); phi the LIF rate 1/(tau_ref + tau_m log(1 + "
                            "1/(x - 1))) for x > 1, else 0; act = phi act_scale; F phi = fano phi, or "
                            "frac(phi T)(1 - frac(phi T))/T for fano 'regular' (T = fano_lag)",
              "host": "feed the noise channels A(z) xi, xi standard normal, A(z) = G^+ chol(C(z)) "
                      "(noise_state_G_pinv), from the latest Output before each interval it is held for "
                      "(Ito); exporters/nir/hostnoise.py (numpy only) computes it",
              "singular_G": "G G^+ projects onto the range of G: the latent gets that part of C(z) "
                            "(all of it where rank = d)"}
    return arrays, params


def _metadata(model, dt, fano, noise, s2, G, widths, matched, a_m, state=None):
    k, m, width = widths
    act = bool(np.any(model.noise_act))
    info = {
        "format": "ddm_neuro-nir", "format_version": FORMAT_VERSION, "nir_versions": NIR_VERSIONS,
        "time_unit": "s", "dt": dt, "time_scale": float(model.time_scale),
        "spike_convention": "a spike is the value 1 for one step dt; every leaky node decays by 1 - dt/tau and adds "
                            "its input each step; the file is valid for this dt only",
        "output": "the latent z in SDE coordinates (node 'latent', an LI with the synapses' tau_syn, after the "
                  "read-out of the spikes): equals c + S D x with x = I tau_mem/dt",
        "inputs": {"u": list(range(k)), "noise": list(range(k, k + m)), "width": width,
                   "noise_channels": "standard normal samples, a new one every step, independent across channels "
                                     "and trials (zeros: the noise-free network)" if m else "none",
                   "zero_channel": "the model has no inputs and the file no noise: feed 0" if k + m == 0 else None},
        "start_state": {"latent": "state of node 'latent' = z0 (SDE coordinates)",
                        "rnn.lif": "synaptic current I0 = init_current @ [z0, 1, u0]; membrane potentials free "
                                   "(e.g. uniform in [0, 1))"},
        "consumers": {"norse": f"norse.torch.from_nir(graph, dt={dt:g}) plus an LI module (docs/nir-norse.md)",
                      "snntorch": "snntorch.import_nir converters (fixed dt = 1e-4 s) plus an LI module "
                                  "(docs/nir-snntorch.md)",
                      "rockpool": "rockpool.nn.modules.torch.nir.from_nir with an LI override (docs/nir-rockpool.md)",
                      "spyx": f"spyx.nir with dt={dt:g} and spyx.nn.LI (docs/nir-spyx.md)"},
        "reset": {"file": "v_reset left out (nir 1.0.4 has no such field)", "rules": RESET_RULES},
        "neuron": {**model.neuron.to_dict(), "tau_syn": float(model.tau), "threshold": 1.0, "reset": 0.0},
        "refractory": "none (tau_ref = 0; NIR CubaLIF has no refractory period)" if matched is None else
                      f"none written; the model's tau_ref = {STEP_TAU_REF[matched]:g} dt is supplied by {matched}'s "
                      "step (step_matched: tau_syn, tau_mem are dt/(1 - exp(-dt/tau)))",
        "step_matched": matched,
        "current_scale": a_m,
        "noise": {"enabled": bool(noise), "fano": fano if isinstance(fano, str) else float(fano),
                  "host_share": "model private intensity minus the spikes' F r, averaged over the start states",
                  "state_dependent": None if not (act and noise) else
                  "activity-dependent private noise: the host feeds the noise channels A(z) xi, A(z) = "
                  "G^+ chol(C(z)) from the latest Output (metadata noise_state_*, noise.state; "
                  "exporters/nir/hostnoise.py); plain standard normals give it at its mean over the start states"
                  if state is not None else
                  "activity-dependent private noise, lost: the file has no noise channels (no host noise at the "
                  "start states)"},
        "model_id": model.meta.get("model_id"), "sde_name": model.meta.get("sde_name"),
        "sde_spec": model.sde_spec, "variables": list(model.variables), "inputs_names": list(model.inputs),
        "n_neurons": model.n_neurons, "n_inputs": model.n_inputs, "dim": model.dim,
        "record_dt": float(network_steps(model)[1]),
    }
    if state is not None:
        info["noise"]["state"] = state[1]
    meta = {"ddm_neuro": json.dumps(info), "format": "ddm_neuro-nir", "format_version": FORMAT_VERSION,
            "nir_versions": NIR_VERSIONS, "time_unit": "s", "dt": float(dt), "time_scale": float(model.time_scale),
            "n_inputs": k, "n_noise": m, "init_current": init_current(model, dt, matched is not None),
            "host_noise_sigma2": np.asarray(s2, dtype=np.float64),
            "init_states": np.asarray(model.init_states, dtype=np.float64)}
    if state is not None:
        meta.update(noise_state_dependent=1, **state[0])
    return meta


def write_graph(graph, fh):
    """Write ``graph`` (from :func:`build_graph`) to the open binary file ``fh``, readable by nir 1.0.4.

    ``nir.write`` of nir >= 1.0.5 always stores ``v_reset``, which nir 1.0.4's ``CubaLIF`` refuses; it
    is deleted from the file when it is at its default (zeros), where nir >= 1.0.5 reads it back alike.
    """
    import h5py
    import nir

    nir.write(fh, graph)
    fh.flush()
    fh.seek(0)
    key = "node/nodes/rnn/nodes/rnn.lif/v_reset"
    with h5py.File(fh, "r+") as f:
        if key in f:
            if np.any(f[key][()] != 0):
                raise DDMError("nir export: v_reset is not 0, which nir 1.0.4 cannot read")
            del f[key]


def export(model, output, *, mode="spiking", force=False, progress=True, dt=SNNTORCH_DT, fano=1.0,
           noise=True, step_matched=None, trials=None, duration=None, seed=None, coupling=None):
    """Write the spiking network of ``model`` as an NIR file (HDF5), atomically.

    Parameters
    ----------
    model : LatentRNN
        LIF neurons with ``tau_ref = 0``.
    output : str or Path
        File to write; must not exist unless ``force``.
    mode : {"spiking", "rate"}
        NIR holds spiking networks only: the spiking network is written either way (``rate``, the
        command line's default, implies ``spiking``).
    dt : float
        Step in seconds the file is written for (default 1e-4, snnTorch's).
    fano : "regular" or float
        Spike Fano factor counted against the model's private noise (:func:`host_noise`).
    noise : bool
        False: no noise channels (the noise-free network).
    step_matched : bool, optional
        Write for the consumer's step (:func:`build_graph`). Default: when the model's
        ``tau_ref`` is what a consumer's step supplies (:func:`matched_consumer`), else not.
    trials, duration, seed, coupling
        Accepted for the command line and ignored (an NIR graph has none of them).

    Returns
    -------
    Path
    """
    if mode not in ("spiking", "rate"):
        raise DDMError(f"export format 'nir' holds the spiking LIF network (got mode {mode!r})")
    output = check_output(Path(output), force)
    if step_matched is None:
        step_matched = matched_consumer(model, dt) is not None
    graph = build_graph(model, dt=dt, fano=fano, noise=noise, step_matched=step_matched)
    with atomic_write(output, force=force, mode="w+b") as fh:
        write_graph(graph, fh)
    if progress:
        print(f"wrote {output}: NIR graph, {model.n_neurons} CubaLIF neurons, output = the latent ({model.dim} "
              f"values), dt = {dt:g} s, {int(graph.metadata['n_noise'])} noise channel(s)"
              + (f", step-matched for {matched_consumer(model, dt)}" if step_matched else "")
              + ("; spiking network (NIR holds no rate networks)" if mode == "rate" else ""))
        if noise and np.any(model.noise_act):
            import sys

            state = json.loads(graph.metadata["ddm_neuro"])["noise"].get("state")
            if state is None:
                print("note: this model's private noise depends on the activity, but the file has no noise "
                      "channels (no host noise at the start states): that noise is lost", file=sys.stderr)
            else:
                print("note: this model's private noise depends on the activity: the host scales the noise "
                      "channels with the state, A(z) = G^+ chol(C(z)) from the latest Output (metadata noise_state_*; "
                      "exporters/nir/hostnoise.py; the ddm-neuro consumers do it); plain standard normals give "
                      "the noise at its mean over the start states", file=sys.stderr)
                if state["rank"] < model.dim:
                    print(f"note: the file's noise matrix G has rank {state['rank']} < d = {model.dim}: only the "
                          "part of C(z) in its range reaches the latent", file=sys.stderr)
    return output
