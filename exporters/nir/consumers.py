r"""Run an exported NIR file in a third-party NIR consumer and read the latent from its Output.

Each consumer builds the file's nodes with its own NIR importer (its own
neuron models and weights) and the host steps them in the graph's order,
``input -> affine -> rnn -> readout (+ input_latent) -> latent``; the latent
node's output is the trajectory. What the host does besides, as the file's
metadata says: the start state (``latent`` at z0, the synaptic currents of
``rnn.lif`` at ``init_current @ [z0, 1, u0]``, membrane potentials uniform in
[0, 1)) and the host noise (a standard normal sample per step on each noise
channel of ``input``; for a file with state-dependent noise, those samples times
``A(z)`` from the latest Output, :mod:`.hostnoise`).

* :func:`run_norse`: Norse 1.1, ``norse.torch.from_nir`` (the nested ``rnn``
  with its recurrence in Norse's graph executor, the Affines), and Norse's
  ``LIBoxCell`` for the ``LI`` node (Norse 1.1's ``from_nir`` has no ``LI``: it
  leaves ``latent`` out and its executor returns another node's output).
  Stepped one step per call.
* :func:`run_snntorch`: snnTorch 1.0's converters (``snntorch.import_nir``):
  the nested ``rnn`` becomes an ``RSynaptic``, the Affines ``torch.nn.Linear``;
  ``LI`` (not in snnTorch's importer) is its ``Leaky`` without reset. Its
  ``import_from_nir`` cannot build this graph with NIRTorch 2.6. Reset to zero
  one step after a spike (``RSynaptic``). Stepped one step per call; fixed
  step 1e-4 s.
* :func:`run_rockpool`: Rockpool 3.1's node converter
  (``rockpool.nn.modules.torch.nir``: ``rnn`` becomes a recurrent ``LIFTorch``,
  the Affines ``LinearTorch``); its ``LI`` conversion casts ``tau`` to an
  integer (0 s for an array, an ``AttributeError`` for one value: ``from_nir``
  fails on a file with d = 1), so ``LI`` is Rockpool's ``ExpSynTorch`` with the
  file's ``tau``; its executor runs depth first and returns the last node it
  ran, so the host calls the nodes in order. Whole
  sequences per call (one record interval), one trial at a time (Rockpool keeps
  the state of the first batch element only). Exact exponential decay, reset by
  subtracting the threshold.
* :func:`run_spyx`: spyx 1.0 (JAX), ``spyx.nir``'s model builder on the chains
  ``input -> affine -> rnn`` and ``readout``, ``input_latent`` (``RCuBaLIF``,
  ``nnx.Linear``); ``LI`` is ``spyx.nn.LI`` (spyx's importer takes ``LI`` only
  before a ``Threshold``, and follows one chain: the second input of
  ``latent`` is added by the host). Whole sequences per call in ``lax.scan``;
  ``dt`` must be given (spyx's default of 1 gives decay factors below 0, which
  it clips to 0). Reset by subtracting the threshold, at the step after the
  crossing.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ddm_neuro.errors import DDMError
from ddm_neuro.run.plan import start_states
from ddm_neuro.trajectory import Trajectory

from .hostnoise import is_state_dependent, noise_transform
from .layout import read_network

#: Consumers (their import names) and where their runner is.
CONSUMERS = ("norse", "snntorch", "rockpool", "spyx")


def _grid(net, duration, dt, record_dt):
    """``(n_rec, record_dt, n_sub, h_sde)`` on the file's step; refuses another ``dt``.

    ``record_dt`` is rounded to a whole number of steps and the duration to a
    whole number of recording intervals (the step itself is fixed by the file).
    """
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise DDMError(f"duration must be a finite number > 0 (got {duration!r})")
    if dt is not None and not math.isclose(float(dt), net.dt, rel_tol=1e-9):
        raise DDMError(f"{net.path}: this NIR file was written for dt = {net.dt:g} s (its weights, r and w_in "
                       f"depend on dt); it cannot run at dt = {dt:g} s: export again with that dt")
    h = net.dt / net.time_scale
    record_dt = record_dt or max(float(net.info.get("record_dt") or h), h)
    if not (math.isfinite(record_dt) and record_dt > 0):
        raise DDMError(f"record_dt must be a finite number > 0 (got {record_dt})")
    n_sub = max(1, int(round(record_dt / h)))              # the step is the file's: round the grid to it
    n_rec = max(1, int(round(duration / (n_sub * h)))) + 1
    return n_rec, n_sub * h, n_sub, h


def _inputs(net, u):
    """Constant input (k,), or zeros without inputs."""
    k = net.n_inputs
    if u is None:
        return np.zeros(k)
    if not k:
        raise DDMError(f"{net.path}: an input was given, but the network has no inputs")
    u = np.atleast_1d(np.asarray(u, dtype=np.float64))
    if u.shape != (k,) or not np.all(np.isfinite(u)):
        raise DDMError(f"input u must be {k} finite numbers (got shape {u.shape})")
    return u


def _trials(trials):
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise DDMError(f"trials must be an integer >= 1 (got {trials!r})")
    return int(trials)


def _f32(a):
    return torch.as_tensor(np.array(a, dtype=np.float32))   # a copy: broadcast views are read-only


# ------------------------------------------------------------------ the consumers' modules
class _NorseLI(torch.nn.Module):
    """NIR ``LI`` in Norse: its ``LIBoxCell`` (the synapse of its CubaLIF) fed ``r`` times the input."""

    def __init__(self, node, dt):
        import norse.torch.module.leaky_integrator_box as li_box

        super().__init__()
        self.r = _f32(node.r)
        self.cell = li_box.LIBoxCell(li_box.LIBoxParameters(tau_mem_inv=1 / _f32(node.tau), v_leak=_f32(node.v_leak)),
                                     dt=dt)

    def forward(self, x, state=None):
        return self.cell(self.r * x, state)


class _Norse:
    """Norse 1.1, stepped one step per call."""

    name, whole_sequence = "norse", False

    def __init__(self, net):
        import norse
        import norse.torch as nt

        g, dt = net.graph, net.dt
        self.version = getattr(norse, "__version__", None)
        module = nt.from_nir(g, dt=dt)                 # every node but the LI, which Norse 1.1 leaves out
        self.rnn, self.affine, self.readout = module.rnn, module.affine, module.readout
        self.to_latent = getattr(module, "input_latent", None)
        self.latent = _NorseLI(g.nodes["latent"], dt)
        self.N = net.n_neurons

    def start(self, I0, v0, z0):
        from nirtorch.graph_executor import GraphExecutorState
        from norse.torch.functional.leaky_integrator_box import LIBoxState
        from norse.torch.functional.lif_box import LIFBoxFeedForwardState

        self.state = GraphExecutorState(state={"rnn_lif": ((LIBoxState(v=_f32(I0)), LIFBoxFeedForwardState(v=_f32(v0))),)},
                                        cache={"rnn_recurrent": torch.zeros(len(I0), self.N)})
        self.lstate = LIBoxState(v=_f32(z0))

    def advance(self, inp):
        spikes = 0
        for x in torch.as_tensor(inp):
            s, self.state = self.rnn(self.affine(x), self.state)
            y = self.readout(s) + (self.to_latent(x) if self.to_latent is not None else 0.0)
            z, self.lstate = self.latent(y, self.lstate)
            spikes += int(s.sum())
        return z.double().numpy(), spikes


class _SnnTorch:
    """snnTorch 1.0's NIR converters, stepped one step per call (fixed step 1e-4 s)."""

    name, whole_sequence = "snntorch", False

    def __init__(self, net):
        import snntorch
        import snntorch.import_nir as sin

        if not math.isclose(net.dt, 1e-4, rel_tol=1e-9):
            raise DDMError(f"{net.path}: written for dt = {net.dt:g} s, but snnTorch runs NIR files at its fixed "
                           "dt = 1e-4 s only; export with dt = 1e-4")
        g = net.graph
        self.version = getattr(snntorch, "__version__", None)
        self.rnn = sin._nir_to_snntorch_module(g.nodes["rnn"], init_hidden=False)
        self.affine, self.readout = (sin._nir_to_snntorch_module(g.nodes[n]) for n in ("affine", "readout"))
        self.to_latent = sin._nir_to_snntorch_module(g.nodes["input_latent"]) if "input_latent" in g.nodes else None
        if not isinstance(self.rnn, snntorch.RSynaptic) or not isinstance(self.affine, torch.nn.Linear):
            raise DDMError(f"{net.path}: snnTorch did not build an RSynaptic and a Linear from this file "
                           f"(got {type(self.rnn).__name__}, {type(self.affine).__name__})")
        li = g.nodes["latent"]
        self.latent = snntorch.Leaky(beta=float(1 - net.dt / li.tau[0]), threshold=1e30, reset_mechanism="none",
                                     init_hidden=False, reset_delay=False)

    def start(self, I0, v0, z0):
        self.syn, self.mem, self.z = _f32(I0), _f32(v0), _f32(z0)
        self.spk = torch.zeros_like(self.syn)

    def advance(self, inp):
        spikes = 0
        for x in torch.as_tensor(inp):
            self.spk, self.syn, self.mem = self.rnn(self.affine(x), self.spk, self.syn, self.mem)
            y = self.readout(self.spk) + (self.to_latent(x) if self.to_latent is not None else 0.0)
            _, self.z = self.latent(y, self.z)
            spikes += int(self.spk.sum())
        return self.z.double().numpy(), spikes


class _Rockpool:
    """Rockpool 3.1's NIR converters, whole sequences per call, one trial at a time."""

    name, whole_sequence = "rockpool", True

    def __init__(self, net):
        import rockpool
        from rockpool.nn.modules.torch import ExpSynTorch
        from rockpool.nn.modules.torch.nir import _convert_nir_to_rockpool_torch as convert

        g = net.graph
        self.version = getattr(rockpool, "__version__", None)
        self.rnn, self.affine, self.readout = (convert(g.nodes[n]) for n in ("rnn", "affine", "readout"))
        self.to_latent = convert(g.nodes["input_latent"]) if "input_latent" in g.nodes else None
        li = g.nodes["latent"]
        self.latent = ExpSynTorch(shape=(int(li.tau.size),), tau=_f32(li.tau), dt=float(np.min(li.tau / (1 + li.r))))
        self.latent.to_torch()

    def start(self, I0, v0, z0):
        self.states = [dict(isyn=_f32(I0[i])[:, None], vmem=_f32(v0[i]), spikes=torch.zeros(len(v0[i])),
                            z=_f32(z0[i])) for i in range(len(I0))]

    def advance(self, inp):
        inp = torch.as_tensor(inp)
        zs, spikes = [], 0
        with torch.no_grad():
            for i, st in enumerate(self.states):
                self.rnn.isyn, self.rnn.vmem, self.rnn.spikes, self.latent.isyn = \
                    st["isyn"], st["vmem"], st["spikes"], st["z"]
                x = inp[:, i][None]                                  # (1, steps, width)
                s = self.rnn(self.affine(x))
                y = self.readout(s) + (self.to_latent(x) if self.to_latent is not None else 0.0)
                z = self.latent(y)
                st.update(isyn=self.rnn.isyn, vmem=self.rnn.vmem, spikes=self.rnn.spikes, z=self.latent.isyn)
                zs.append(z[0, -1])
                spikes += int(s.sum())
        return torch.stack(zs).double().numpy(), spikes


class _Spyx:
    """spyx 1.0 (JAX, CPU), whole sequences per call in ``jax.lax.scan``."""

    name, whole_sequence = "spyx", True

    def __init__(self, net):
        import jax
        import nir
        import spyx
        import spyx.nir as snir
        from flax import nnx

        g, dt, N = net.graph, net.dt, net.n_neurons
        self.version = getattr(spyx, "__version__", None)
        self.jnp = jax.numpy

        def chain(names, n_out):
            nodes = {"input": nir.Input(np.array([np.shape(g.nodes[names[0]].weight)[1]])),
                     "output": nir.Output(np.array([n_out])), **{n: g.nodes[n] for n in names}}
            seq = ["input", *names, "output"]
            return snir._build_model(nir.NIRGraph(nodes=nodes, edges=list(zip(seq[:-1], seq[1:])), type_check=False),
                                     dt, nnx.Rngs(0))

        self.front = chain(["affine", "rnn"], N)                    # nnx.Linear, RCuBaLIF
        readout = chain(["readout"], net.dim).layers[0]
        to_latent = chain(["input_latent"], net.dim).layers[0] if "input_latent" in g.nodes else None
        li = spyx.nn.LI((net.dim,), beta=float(1 - dt / g.nodes["latent"].tau[0]), rngs=nnx.Rngs(0))
        front = self.front

        def body(carry, x):
            fs, z = carry
            s, fs = front(x, fs)
            y = readout(s) + (to_latent(x) if to_latent is not None else 0.0)
            z, _ = li(y, z)
            return (fs, z), s.sum()

        self.scan = jax.jit(lambda carry, xs: jax.lax.scan(body, carry, xs))

    def start(self, I0, v0, z0):
        jnp = self.jnp
        self.carry = ([None, jnp.asarray(np.concatenate([v0, I0], axis=1), dtype=jnp.float32)],
                      jnp.asarray(z0, dtype=jnp.float32))

    def advance(self, inp):
        self.carry, counts = self.scan(self.carry, self.jnp.asarray(inp))
        return np.asarray(self.carry[1], dtype=np.float64), int(np.asarray(counts).sum())


_CLASSES = {"norse": _Norse, "snntorch": _SnnTorch, "rockpool": _Rockpool, "spyx": _Spyx}


# ------------------------------------------------------------------ the host
def run_file(consumer, path, duration, *, dt=None, record_dt=None, trials=1, seed=None, noise=True, z0=None, u=None,
             progress=False, state_noise=True):
    """Simulate an exported NIR file in ``consumer`` and return the latent trajectory (its Output).

    Parameters
    ----------
    consumer : {"norse", "snntorch", "rockpool", "spyx"}
    path : str or Path
        NIR file written by ``ddm-neuro export --format nir``.
    duration : float
        Time per trial, SDE units.
    dt : float, optional
        Step in seconds; must equal the one the file was written for (default: that one).
    record_dt : float, optional
        Recording interval, SDE units (default the model's, rounded to whole steps).
    trials : int
    seed : int, optional
    noise : bool
        Feed standard normal samples to the file's noise channels (False: zeros, the noise-free network).
    z0 : array (d,) or (trials, d), optional
        Start states (default drawn from the file's start states).
    u : array (k,), optional
        Constant input.
    progress : bool
    state_noise : bool
        For a file with state-dependent noise (:func:`.hostnoise.is_state_dependent`): feed the noise
        channels ``A(z) xi`` with ``A(z) = G^+ chol(C(z))`` (:func:`.hostnoise.noise_transform`) at the
        latest Output ``z``, recomputed before each record interval (non-anticipating: Itô), so that the
        latent's noise covariance is the model's ``C(z)``. False: plain ``xi``, the noise at its mean over
        the start states (the file's fixed ``G``). Files without that data are fed ``xi`` either way
        (the same numbers for the same seed).

    Returns
    -------
    Trajectory
        ``meta["backend"]`` the consumer, ``meta["integration_dt"]`` the step in SDE units,
        ``meta["mean_rate_hz"]`` the mean firing rate, ``meta["state_noise"]`` whether the noise
        channels were scaled with the state.

    Raises
    ------
    DDMError
        An unknown consumer, a file of another structure (:func:`.layout.read_network`), another
        ``dt``, bad options.
    """
    if consumer not in _CLASSES:
        raise DDMError(f"unknown NIR consumer {consumer!r} (known: {', '.join(CONSUMERS)})")
    if not isinstance(state_noise, (bool, np.bool_)):
        raise DDMError(f"state_noise must be True or False (got {state_noise!r})")
    net = read_network(path)
    trials = _trials(trials)
    n_rec, record_dt, n_sub, h = _grid(net, duration, dt, record_dt)
    u_model = _inputs(net, u)
    sim = _CLASSES[consumer](net)
    rng = np.random.default_rng(seed)
    z_start = start_states(net, trials, rng, z0)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    v0 = rng.uniform(0.0, 1.0, (trials, net.n_neurons))
    sim.start(net.initial_current(z_start, u_model if u is not None else None), v0, z_start)
    add_noise = bool(noise) and net.n_noise > 0
    meta_g = net.graph.metadata
    scaled = add_noise and bool(state_noise) and is_state_dependent(meta_g)
    u_host = u_model if u is not None else None
    out = np.empty((trials, n_rec, net.dim))
    out[:, 0] = z_start
    n_spikes = 0
    bar = tqdm(total=n_rec - 1, desc=consumer, disable=not progress, unit="sample")
    try:
        with torch.no_grad():
            for r in range(1, n_rec):
                xi = torch.randn((n_sub, trials, net.n_noise), generator=gen) if add_noise else \
                    torch.zeros((n_sub, trials, net.n_noise))
                xi = xi.numpy()
                if scaled:      # A(z) at the latest Output, held over the interval: non-anticipating (Ito)
                    A = noise_transform(meta_g, out[:, r - 1], u_host)              # (trials, m, m)
                    xi = np.einsum("tij,stj->sti", np.nan_to_num(A), xi.astype(np.float64))
                inp = net.graph_input(u_model, xi).astype(np.float32)
                out[:, r], spikes = sim.advance(inp)
                n_spikes += spikes
                if not np.isfinite(out[:, r]).any():
                    out[:, r + 1:] = np.nan
                    break
                bar.update()
    finally:
        bar.close()
    steps = (n_rec - 1) * n_sub
    diverged = [int(i) for i in np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))]
    info = net.info
    meta = {"backend": consumer, "mode": "spiking", "consumer_version": sim.version, "nir_file": str(net.path),
            "model_id": info.get("model_id"), "system": info.get("sde_name"), "variables": info.get("variables"),
            "seed": seed, "duration": float(duration), "trials": trials, "integration_dt": h,
            "network_dt_s": net.dt, "noise": "host" if add_noise else "none", "state_noise": scaled,
            "n_neurons": net.n_neurons,
            "input": None if u is None else {"times": [0.0], "values": [np.atleast_1d(u).tolist()]},
            "diverged_trials": diverged, "scheme": f"{consumer}'s own step ({'whole sequences' if sim.whole_sequence else 'one step per call'})",
            "time_scale": net.time_scale, "tau_syn": float(info.get("neuron", {}).get("tau_syn", np.nan)),
            "mean_rate_hz": n_spikes / (trials * net.n_neurons * steps * net.dt) if steps else 0.0}
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=meta)


def _runner(consumer):
    def run(path, duration, **kwargs):
        return run_file(consumer, path, duration, **kwargs)

    run.__name__ = f"run_{consumer}"
    run.__doc__ = (f"Simulate an exported NIR file in {consumer} and return the latent trajectory "
                   f"(the keywords of :func:`run_file`).")
    return run


run_norse, run_snntorch, run_rockpool, run_spyx = (_runner(c) for c in CONSUMERS)
