"""Run a plan through the compiled step loops (:mod:`ddm_neuro.run.compiled`): rate or spiking network.

The scheme, the start states and the recording are those of the torch loops
(:func:`ddm_neuro.run.rate.run_rate`, :func:`ddm_neuro.spiking.simulator.run_spiking`):
for the same seed the start states, membrane phases and, without noise, the
whole run agree with them to rounding. The noise comes from the step loops'
own generator (one stream per trial and block of neurons), so noisy runs agree
with the torch loops in distribution, not draw for draw; for one seed they are
the same at any thread count.
"""
from __future__ import annotations

import ctypes
import warnings

import numpy as np
from tqdm.auto import tqdm

from ..errors import DDMError
from . import compiled

ENGINES = ("auto", "compiled", "torch")
#: Most spikes one neuron may fire in one step (``MAX_SPIKES_PER_STEP`` in ``step_loops.cpp``).
MAX_SPIKES_PER_STEP = 64
DEVICES = ("cpu", "cuda")


def spike_overflow_message(h):
    """The refusal when a neuron fires more than :data:`MAX_SPIKES_PER_STEP` times in one step of ``h`` s."""
    return (f"a neuron fired more than {MAX_SPIKES_PER_STEP} spikes in one step of {h * 1e3:.3g} ms: its input is "
            "far above threshold with no refractory time (the network diverged, or use a smaller dt)")


class EngineWarning(UserWarning):
    """The compiled step loop cannot be used here; the (slower) torch loop runs instead."""


def check_device(device):
    """Refuse a device torch cannot use here, in one line; return it normalised (``cpu``, ``cuda`` or ``cuda:K``).

    Raises
    ------
    DDMError
        Not ``cpu``/``cuda``/``cuda:K``, or ``cuda`` with no CUDA GPU visible to torch.
    """
    name = "cpu" if device is None else str(device)
    base, _, index = name.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise DDMError(f"device {device!r}: expected cpu, cuda or cuda:K")
    if base == "cuda":
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DDMError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} ({build}); "
                           "run on the CPU (--device cpu, the default)")
        if index and int(index) >= torch.cuda.device_count():
            raise DDMError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return name


def engine_for(plan):
    """The engine and device of a torch run: ``("compiled", "cpu")`` or ``("torch", device)``.

    Options ``engine`` (``auto``: compiled where it builds, else torch with an
    :class:`EngineWarning`; ``compiled``; ``torch``) and ``device`` (``cpu``,
    ``cuda``: the torch loop on the GPU).

    Raises
    ------
    DDMError
        An unknown engine or device, ``cuda`` without a GPU, ``engine="compiled"`` on a GPU
        or where the step loops cannot be built.
    """
    engine = plan.options.get("engine") or "auto"
    if engine not in ENGINES:
        raise DDMError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    device = check_device(plan.options.get("device"))
    if device != "cpu":
        if engine == "compiled":
            raise DDMError(f"the compiled step loop runs on the CPU; on {device} the torch loop runs (engine torch)")
        return "torch", device
    if engine == "torch":
        return "torch", device
    if engine == "compiled":
        compiled.library()
        return "compiled", device
    reason = compiled.why_not()
    if reason is None:
        return "compiled", device
    warnings.warn(f"{reason}; the torch loop runs instead (much slower for small networks)", EngineWarning,
                  stacklevel=4)
    return "torch", device


#: Neurons x trials from which a visible GPU is used for long runs (an estimate: no GPU was lent to measure it).
GPU_MIN_NEURON_TRIALS = 100_000


def fastest_torch(n_neurons, trials):
    """The torch back end's options that run a long run of ``trials`` x ``n_neurons`` fastest here.

    The compiled step loop on the CPU where it builds (``benchmarks/sim_speed.py``:
    from N = 128 up it costs about what Brian2 C++ costs per neuron-step, with no
    per-model compile), the torch loop on a visible GPU from
    :data:`GPU_MIN_NEURON_TRIALS` neurons x trials, else the torch loop.

    Parameters
    ----------
    n_neurons, trials : int

    Returns
    -------
    dict
        ``engine`` and, for a GPU, ``device``.
    """
    import torch

    if torch.cuda.is_available() and n_neurons * trials >= GPU_MIN_NEURON_TRIALS:
        return {"engine": "torch", "device": "cuda"}
    return {"engine": "compiled" if compiled.available() else "torch"}


#: Neuron-steps per call into the compiled loop (between progress updates and divergence checks).
WORK_PER_CALL = 4_000_000


def _c(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _own(a):
    """A fresh C-contiguous float64 copy: for the arrays the loop writes into (never a view of the model's)."""
    return np.array(a, dtype=np.float64, order="C", copy=True)


def _ptr(a):
    return None if a is None else a.ctypes.data


def run_steps(plan, *, spiking, coupling="factored", private_noise=False, shared_noise=False, remainder=False,
              fano=None, record_spikes=False, label="simulate"):
    """Simulate ``plan`` in the compiled step loop and return the latent and what the run counted.

    Parameters
    ----------
    plan : RunPlan
    spiking : bool
        The LIF spiking network (else the rate network).
    coupling : {"factored", "dense"}
    private_noise, shared_noise : bool
        Draw each neuron's output noise; draw the shared latent noise ``E L dW'``.
    remainder : bool
        Spiking: count the spikes' own noise out of the private noise (``fano``: (N,) or None for
        regular firing over one SDE time unit).
    fano : ndarray (N,), optional
    record_spikes : bool
    label : str
        The progress bar's text.

    Returns
    -------
    dict
        ``z`` (trials, n_rec, d), ``steps`` (steps taken), ``n_spikes``, and ``spikes_t`` / ``spikes_i``
        when recorded.

    Raises
    ------
    DDMError
        The step loops cannot be built here, or a neuron fired more often in one step than the loop allows.
    """
    lib = compiled.library()
    model, T, N = plan.model, plan.trials, plan.model.n_neurons
    rng = np.random.default_rng(plan.seed)
    key = int(rng.integers(2 ** 62))  # where the torch loops seed their generator: same start states follow
    z0 = plan.start_states(rng)
    v0 = rng.uniform(0.0, 1.0, (T, N)) if spiking else None
    u0 = plan.u0
    x = _own(model.neuron_inputs(z0, u0))
    signal = plan.input
    B, b = _c(model.input_weights), _c(model.bias)
    drive = _own(np.broadcast_to(b if signal is None else b + B @ signal.values[0], (T, N)))
    E, K, D = _c(model.encoders), _c(model.decoders), _c(model.readout)
    M = _c(model.weights()) if coupling == "dense" else (_c(model.w_perp) if model.w_perp is not None else None)
    EL = _c(model.encoders @ model.noise_latent) if shared_noise and np.any(model.noise_latent) else None
    scale, center = _c(model.scale), _c(model.center)
    na, nc = _c(model.noise_act), _c(model.noise_const)
    prm = model.neuron.params
    lif = model.neuron.name == "lif"
    tau_ref = prm.get("tau_ref", 0.0)
    act_scale = (tau_ref if tau_ref > 0 else 1.0 / prm["max_rates"][1]) if lif else 0.0
    h = plan.dt * model.time_scale
    n_rec, n_sub = plan.n_rec, plan.n_sub
    threads = plan.threads
    nb = -(-N // compiled.block_size())
    streams = compiled.streams(key, T * (nb + 1))
    out = np.full((T, n_rec, model.dim), np.nan)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged start (inf) reads as NaN, not a warning
        out[:, 0] = x @ D.T * scale + center
    v = _own(v0) if spiking else None
    ref = np.zeros((T, N)) if spiking else None
    n_spikes = np.zeros(T * threads, dtype=np.int64)
    overflow = np.zeros(1, dtype=np.int64)
    u_prev = _own(signal.values[0]) if signal is not None else None
    stepping = signal is not None and len(signal.times) > 1
    fano_arr = None if fano is None else _c(np.broadcast_to(fano, (N,)))
    args = compiled.Args(
        T=T, N=N, R=K.shape[0], DZ=D.shape[0], KIN=B.shape[1], DS=0 if EL is None else EL.shape[1],
        spiking=int(spiking), neuron=int(lif), factored=int(coupling != "dense"),
        private_noise=int(private_noise), remainder=int(remainder), n_sub=n_sub, threads=threads,
        h=h, tau=model.tau, time_scale=model.time_scale, tau_m=prm.get("tau_m", 1.0), tau_ref=tau_ref,
        act_scale=act_scale, E=_ptr(E), Kd=_ptr(K), D=_ptr(D), M=_ptr(M), B=_ptr(B), b=_ptr(b), EL=_ptr(EL),
        na=_ptr(na), nc=_ptr(nc), scale=_ptr(scale), center=_ptr(center),
        fano=_ptr(fano_arr), u_prev=_ptr(u_prev), x=_ptr(x), v=_ptr(v), ref=_ptr(ref), drive=_ptr(drive),
        out=_ptr(out), n_rec=n_rec, streams=_ptr(streams), n_spikes=_ptr(n_spikes), overflow=_ptr(overflow))
    keep = (E, K, D, M, B, b, EL, na, nc, scale, center, fano_arr, u_prev, x, v, ref, drive, out, streams,
            n_spikes, overflow)  # alive while the loop holds their addresses
    spikes = lib.ddm_spikes_new(T * threads) if record_spikes else None
    args.spikes = spikes
    sp_t, sp_i = [], []
    recs_per_call = max(1, int(WORK_PER_CALL // max(1, T * N * n_sub)))
    bar = tqdm(total=n_rec - 1, desc=label, disable=not plan.progress, unit="sample")
    k, steps = 0, 0
    try:
        while k < n_rec - 1:
            k1 = min(n_rec - 1, k + recs_per_call)
            s0, s1 = k * n_sub, k1 * n_sub
            u_steps = _c(signal.at(np.arange(s0, s1) * plan.dt)) if stepping else None
            args.u_steps = _ptr(u_steps)
            args.step0, args.nsteps = s0, s1 - s0
            lib.ddm_steps(ctypes.byref(args))
            if stepping:
                u_prev[:] = u_steps[-1]
            steps = s1
            if overflow[0]:
                raise DDMError(spike_overflow_message(h))
            if spikes is not None:
                n = lib.ddm_spikes_count(spikes)
                t_buf, i_buf = np.empty(n), np.empty(n, dtype=np.int64)
                lib.ddm_spikes_take(spikes, t_buf.ctypes.data, i_buf.ctypes.data)
                sp_t.append(t_buf)
                sp_i.append(i_buf)
            dead = np.flatnonzero(~np.isfinite(out[:, k + 1:k1 + 1]).any(axis=(0, 2)))
            if dead.size:  # every trial diverged: nothing left to simulate
                last = k + 1 + dead[0]
                out[:, last + 1:] = np.nan
                bar.update(last - k)
                steps = last * n_sub
                break
            bar.update(k1 - k)
            k = k1
    finally:
        bar.close()
        if spikes is not None:
            lib.ddm_spikes_free(spikes)
    del keep
    result = {"z": out, "steps": steps, "n_spikes": int(n_spikes.sum())}
    if record_spikes:
        t_all = np.concatenate(sp_t) if sp_t else np.zeros(0)
        i_all = np.concatenate(sp_i) if sp_i else np.zeros(0, dtype=np.int64)
        order = np.lexsort((i_all, t_all))
        result["spikes_t"], result["spikes_i"] = t_all[order], i_all[order]
    return result


def engine_text(meta):
    """`` (compiled step loop, 1 thread)``: which engine a torch run used, and on what ("" for other back ends).

    Parameters
    ----------
    meta : dict
        A trajectory's metadata.

    Returns
    -------
    str
    """
    if "engine" not in meta:
        return ""
    threads = meta.get("threads", 1)
    where = f"{threads} thread{'s' if threads != 1 else ''}" if meta.get("device", "cpu") == "cpu" else meta["device"]
    return f" ({meta['engine']} step loop, {where})"
