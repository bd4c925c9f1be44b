r"""Run an exported NIR file in a third-party NIR consumer and read the latent back.

* :func:`run_norse` loads the file with Norse's own ``norse.torch.from_nir``
  (at the file's step ``dt``) and steps the resulting module, a NIRTorch graph
  executor, with Norse's state.
* :func:`run_snntorch` converts the nodes with snnTorch's own NIR converter
  (``snntorch.import_nir``: the recurrent CubaLIF subgraph becomes an
  ``RSynaptic``, the Affine a ``torch.nn.Linear``) and steps them. snnTorch
  1.0's ``import_from_nir`` itself cannot build a recurrent graph with the
  installed NIRTorch 2.6 (``nir_to_torch`` recurses into the subgraph that
  ``import_from_nir`` creates and fails with ``'GraphModule' object has no
  attribute 'items'``), and ``RSynaptic`` with ``init_hidden=True`` and
  ``reset_delay=False`` (what it builds) fails on its first step
  (``None / Tensor``); so the same converters are called node by node and
  the neuron keeps its state explicitly (``init_hidden=False``). snnTorch's
  reset to zero takes effect one step after a spike (``RSynaptic``'s
  ``reset_mechanism="zero"``), which acts as a refractory period of one step.

Both consumers integrate with forward Euler at ``dt`` (see :mod:`.export` for
the map). The host's part, done here as the metadata says: the start state
(synaptic currents ``I0`` at the start latent state, membrane potentials
uniform in [0, 1)), the noise current added to the input of node ``lif``
every step, and the latent ``z = readout(I)`` read from the consumer's
synaptic-current state every ``record_dt``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ddm_neuro.errors import DDMError
from ddm_neuro.run.plan import start_states
from ddm_neuro.trajectory import Trajectory

from .layout import read_network


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
    """Constant input (k,) or None, in the graph's input width."""
    k = int(net.info["n_inputs"])
    if u is None:
        return np.zeros(k), np.zeros(net.n_inputs)
    if not k:
        raise DDMError(f"{net.path}: an input was given, but the network has no inputs")
    u = np.atleast_1d(np.asarray(u, dtype=np.float64))
    if u.shape != (k,) or not np.all(np.isfinite(u)):
        raise DDMError(f"input u must be {k} finite numbers (got shape {u.shape})")
    return u, u


def _start(net, trials, seed, z0, u0):
    rng = np.random.default_rng(seed)
    z0 = start_states(net, trials, rng, z0)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    return net.initial_current(z0, u0), rng.uniform(0.0, 1.0, (trials, net.n_neurons)), gen


class _HostNoise:
    """Per-step noise current into node ``lif`` (see :mod:`.export`), from the synaptic currents I."""

    def __init__(self, net, trials, gen, enabled, dtype):
        # recurrent.weight @ (amp * xi) through a rank factorisation of W (W = E K has rank d:
        # O(N d) per step instead of O(N^2); exact up to rounding)
        W = np.asarray(net.graph.nodes["recurrent"].weight, dtype=np.float64)
        self.private = enabled and bool(np.any(net.host_sigma2 > 0) or np.any(net.host_rate_coef != 0))
        U, sv, Vt = np.linalg.svd(W, full_matrices=False)
        r = max(1, int(np.sum(sv > 1e-7 * sv[0]))) if sv[0] > 0 else 1
        self.right = torch.as_tensor(Vt[:r].T * sv[:r], dtype=dtype)   # xi @ right @ left = xi @ W^T
        self.left = torch.as_tensor(U[:, :r].T, dtype=dtype)
        self.const = torch.as_tensor(net.host_sigma2 * net.dt, dtype=dtype)
        self.coef = torch.as_tensor(net.host_rate_coef * net.dt, dtype=dtype) \
            if np.any(net.host_rate_coef != 0) else None
        lat = torch.as_tensor(net.host_latent, dtype=dtype)
        self.latent = lat.T.contiguous() if enabled and bool(torch.any(lat != 0)) else None
        self.net, self.shape, self.d, self.gen, self.dtype = net, (trials, net.n_neurons), net.dim, gen, dtype
        self.amp = torch.sqrt(torch.clamp(self.const, min=0.0))

    @property
    def active(self):
        return self.private or self.latent is not None

    def __call__(self, current=None):
        """The current J for this step; ``current`` (trials, N): the synaptic currents I before it."""
        J = 0.0
        if self.private:
            amp = self.amp if self.coef is None else \
                torch.sqrt(torch.clamp(self.const + self.coef * self.net.rate(current, torch), min=0.0))
            J = ((amp * torch.randn(self.shape, generator=self.gen, dtype=self.dtype)) @ self.right) @ self.left
        if self.latent is not None:
            J = J + torch.randn((self.shape[0], self.d), generator=self.gen, dtype=self.dtype) @ self.latent
        return J


def _meta(net, backend, version, *, seed, duration, trials, h, noise, u, n_spikes, steps, diverged):
    info = net.info
    sim_s = steps * net.dt
    return {"backend": backend, "mode": "spiking", "consumer_version": version, "nir_file": str(net.path),
            "model_id": info.get("model_id"), "system": info.get("sde_name"), "variables": info.get("variables"),
            "seed": seed, "duration": float(duration), "trials": trials, "integration_dt": h,
            "network_dt_s": net.dt, "noise": "host" if noise else "none", "n_neurons": net.n_neurons,
            "input": None if u is None else {"times": [0.0], "values": [np.atleast_1d(u).tolist()]},
            "diverged_trials": diverged, "scheme": "euler (consumer)", "time_scale": net.time_scale,
            "tau_syn": float(info.get("neuron", {}).get("tau_syn", np.nan)),
            "mean_rate_hz": n_spikes / (trials * net.n_neurons * sim_s) if sim_s > 0 else 0.0}


def _finish(out):
    diverged = [int(i) for i in np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))]
    return diverged


def run_norse(path, duration, *, dt=None, record_dt=None, trials=1, seed=None, noise=True, z0=None, u=None,
              progress=False):
    """Simulate an exported NIR file in Norse and return the latent trajectory.

    Parameters
    ----------
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
        Add the host noise the file's metadata asks for (False: spikes only).
    z0 : array (d,) or (trials, d), optional
        Start states (default drawn from the file's start states).
    u : array (k,), optional
        Constant input.
    progress : bool

    Returns
    -------
    Trajectory
        ``meta["backend"] = "norse"``, ``meta["integration_dt"]`` the step in SDE units.

    Raises
    ------
    DDMError
        A file of another structure (:func:`.layout.read_network`), another ``dt``, bad options.
    """
    import norse
    import norse.torch as nt

    net = read_network(path)
    trials = _trials(trials)
    n_rec, record_dt, n_sub, h = _grid(net, duration, dt, record_dt)
    u_model, u_graph = _inputs(net, u)
    I0, v0, gen = _start(net, trials, seed, z0, u_model if u is not None else None)
    module = nt.from_nir(net.graph, dt=net.dt)
    lif = getattr(module, "lif", None)
    if lif is None or not hasattr(lif, "synapse"):
        raise DDMError(f"{net.path}: Norse built no CubaLIF module 'lif' from this file")
    dtype = torch.float32
    host = _HostNoise(net, trials, gen, noise, dtype)
    current = {"J": None}

    def add_noise(mod, args):                     # the host's noise current, into the input of 'lif'
        if current["J"] is None:
            return None
        return (args[0] + current["J"],) + tuple(args[1:])

    handle = lif.register_forward_pre_hook(add_noise)
    from nirtorch.graph_executor import GraphExecutorState
    from norse.torch.functional.leaky_integrator_box import LIBoxState
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    t = lambda a: torch.as_tensor(np.array(a), dtype=dtype)  # noqa: E731  (a copy: broadcast views are read-only)
    state = GraphExecutorState(state={"lif": ((LIBoxState(v=t(I0)), LIFBoxFeedForwardState(v=t(v0))),)},
                               cache={"recurrent": torch.zeros(trials, net.n_neurons, dtype=dtype)})
    x_in = t(np.broadcast_to(u_graph, (trials, net.n_inputs)))
    out = np.empty((trials, n_rec, net.dim))
    out[:, 0] = net.readout(I0)
    n_spikes, steps = 0, 0
    bar = tqdm(total=n_rec - 1, desc="norse", disable=not progress, unit="sample")
    try:
        with torch.no_grad():
            for r in range(1, n_rec):
                for _ in range(n_sub):
                    current["J"] = host(state.state["lif"][0][0].v) if host.active else None
                    _, state = module(x_in, state)
                    n_spikes += int(state.cache["lif"].sum())
                    steps += 1
                I = state.state["lif"][0][0].v
                out[:, r] = net.readout(I.double().numpy())
                if not np.isfinite(out[:, r]).any():
                    out[:, r + 1:] = np.nan
                    break
                bar.update()
    finally:
        handle.remove()
        bar.close()
    meta = _meta(net, "norse", norse.__version__ if hasattr(norse, "__version__") else None, seed=seed,
                 duration=duration, trials=trials, h=h, noise=noise, u=u, n_spikes=n_spikes, steps=steps,
                 diverged=_finish(out))
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=meta)


def run_snntorch(path, duration, *, dt=None, record_dt=None, trials=1, seed=None, noise=True, z0=None, u=None,
                 progress=False):
    """Simulate an exported NIR file with snnTorch's NIR converters and return the latent trajectory.

    Parameters are those of :func:`run_norse`; snnTorch runs only files written
    for ``dt = 1e-4`` s (its fixed step). See the module docstring for why the
    nodes are converted one by one rather than by ``import_from_nir``.

    Returns
    -------
    Trajectory
        ``meta["backend"] = "snntorch"``.

    Raises
    ------
    DDMError
        As :func:`run_norse`; also a file written for a step other than 1e-4 s.
    """
    import nir
    import snntorch
    import snntorch.import_nir as sin

    net = read_network(path)
    if not math.isclose(net.dt, 1e-4, rel_tol=1e-9):
        raise DDMError(f"{net.path}: written for dt = {net.dt:g} s, but snnTorch runs NIR files at its fixed "
                       "dt = 1e-4 s only; export with dt = 1e-4")
    trials = _trials(trials)
    n_rec, record_dt, n_sub, h = _grid(net, duration, dt, record_dt)
    u_model, u_graph = _inputs(net, u)
    I0, v0, gen = _start(net, trials, seed, z0, u_model if u is not None else None)
    g = net.graph
    sub = nir.NIRGraph(nodes={"lif": g.nodes["lif"], "recurrent": g.nodes["recurrent"],
                              "lif.input": nir.Input(g.nodes["lif"].input_type),
                              "lif.output": nir.Output(g.nodes["lif"].output_type)},
                       edges=[("lif.input", "lif"), ("lif", "recurrent"), ("recurrent", "lif"),
                              ("lif", "lif.output")])
    neuron = sin._nir_to_snntorch_module(sub, init_hidden=False)
    affine = sin._nir_to_snntorch_module(g.nodes["affine"], init_hidden=False)
    if not isinstance(neuron, snntorch.RSynaptic) or not isinstance(affine, torch.nn.Linear):
        raise DDMError(f"{net.path}: snnTorch did not build an RSynaptic and a Linear from this file "
                       f"(got {type(neuron).__name__}, {type(affine).__name__})")
    dtype = torch.float32
    host = _HostNoise(net, trials, gen, noise, dtype)
    t = lambda a: torch.as_tensor(np.array(a), dtype=dtype)  # noqa: E731  (a copy: broadcast views are read-only)
    syn, mem = t(I0), t(v0)
    spk = torch.zeros(trials, net.n_neurons, dtype=dtype)
    x_in = t(np.broadcast_to(u_graph, (trials, net.n_inputs)))
    out = np.empty((trials, n_rec, net.dim))
    out[:, 0] = net.readout(I0)
    n_spikes, steps = 0, 0
    bar = tqdm(total=n_rec - 1, desc="snntorch", disable=not progress, unit="sample")
    with torch.no_grad():
        drive = affine(x_in)
        try:
            for r in range(1, n_rec):
                for _ in range(n_sub):
                    cur = drive + host(syn) if host.active else drive
                    spk, syn, mem = neuron(cur, spk, syn, mem)
                    n_spikes += int(spk.sum())
                    steps += 1
                out[:, r] = net.readout(syn.double().numpy())
                if not np.isfinite(out[:, r]).any():
                    out[:, r + 1:] = np.nan
                    break
                bar.update()
        finally:
            bar.close()
    meta = _meta(net, "snntorch", getattr(snntorch, "__version__", None), seed=seed, duration=duration,
                 trials=trials, h=h, noise=noise, u=u, n_spikes=n_spikes, steps=steps, diverged=_finish(out))
    return Trajectory(t=np.arange(n_rec) * record_dt, z=out, dt=record_dt, meta=meta)


def _trials(trials):
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise DDMError(f"trials must be an integer >= 1 (got {trials!r})")
    return int(trials)
