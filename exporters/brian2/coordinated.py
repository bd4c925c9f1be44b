"""Spike-coordinated models in the ``brian2-cpp`` back end: their plain spec and one run of a plan.

The network itself (Brian2 objects, the per-trial C++ functions, the re-runnable project) is
``coordinated_network.py``, which needs only brian2 and numpy and is copied into exported projects; its
runs go through ``runner.run_coordinated_build``, as an exported project's ``run.py`` does.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: Compiled builds kept for reuse in this process (the binary takes start states, inputs, duration and seed as
#: arguments, so the runs of a verification at several input levels, or of a pilot series, compile once).
KEEP_BUILDS = 2
_BUILDS = {}   # key -> (folder, build facts); insertion order is age


def coordinated_spec(model):
    """The plain spec of a coordinated model (``coordinated_network.py``'s module docstring): ``(arrays, info)``.

    The basis's drift and noise as the torch loop takes them (``ddm_neuro.spiking.coordinated.basis_arrays``),
    the centre folded into ``x0`` and ``cst``, the decoders and thresholds, and the step's settings.
    """
    from ddm_neuro.spiking.coordinated import (HOLD_S, basis_arrays, coordinated, decoders, error_leaks,
                                              longest_step, noise_spike_map)

    cfg = coordinated(model)
    arr = basis_arrays(model)
    D = decoders(model)
    arrays = {"A": arr["A"], "x0": arr["x0"] + arr["A"].T @ model.center, "Kt": arr["Kt"], "Ks": arr["Ks"],
              "na": arr["na"], "nc": arr["nc"], "LL": arr["LL"], "cst": arr["cst"] - arr["ct"] * model.center,
              "Bx": arr["Bx"].reshape(model.n_inputs, model.n_neurons), "DB": arr["DB"].reshape(model.dim,
                                                                                                 model.n_inputs),
              "D": D, "thr": 0.5 * (1.0 + cfg["cost"]) * np.sum(D * D, axis=0),
              "Pinv": noise_spike_map(D) if cfg.get("noise_spikes") else np.zeros((1, 1))}
    info = {"ct": float(arr["ct"]), "tau": float(model.tau), "time_scale": float(model.time_scale),
            "step_max_s": longest_step(model), "hold_s": float(cfg.get("hold_s", HOLD_S)),
            "n_neurons": int(cfg["n_neurons"]), "delta": float(cfg["delta"]), "cost": float(cfg["cost"]),
            "rate_hz": float(cfg["rate_hz"]), "noise_spikes": bool(cfg.get("noise_spikes")),
            "error_leak": error_leaks(model)}
    return arrays, info


def run(plan):
    """Run a spiking-mode plan of a coordinated model as Brian2 ``cpp_standalone``; return the Trajectory.

    A run builds and compiles the network (``coordinated_network.build_coordinated_project``, about 10 s
    here) in a temporary folder under the build cache and runs it with the plan's start states, inputs,
    duration and seed as the binary's arguments (``runner.run_coordinated_build``). The last
    :data:`KEEP_BUILDS` builds are kept for the rest of the process (removed at its exit): a later run of the
    same network, trials, recording step, noise, spike recording, number of input rows and threads reuses
    the binary instead of compiling it again.
    Noise-free runs follow the torch back end's compiled loop (``ddm_neuro.run.step_loops``) step for step
    from the same start states; noisy runs draw Brian2's own normal numbers (the same law, other draws).
    Options: ``record_spikes``. With ``plan.threads`` K > 1 the build runs K OpenMP threads, each over whole
    trials (the per-trial functions touch only their trial's arrays); noisy runs then draw other numbers
    (one generator per thread) than a 1-thread build from the same seed. Inputs are held over each recording
    interval, as in the torch loop.
    """
    from ddm_neuro.errors import DDMError
    from ddm_neuro.fileio import cache_dir
    from ddm_neuro.progress import ticking

    from .coordinated_network import build_coordinated_project
    from .network import CompileError
    from .processes import terminate_as_interrupt
    from .rate import model_spec
    from .runner import RunError, run_coordinated_build

    model = plan.model
    threads = int(getattr(plan, "threads", 1) or 1)
    if shutil.which("make") is None:
        raise DDMError("backend 'brian2-cpp' needs 'make' and a C++ compiler (g++ or clang++) on PATH")
    noisy = plan.noise not in (False, "none", None)
    record_spikes = bool(plan.options.get("record_spikes"))
    arrays, info = coordinated_spec(model)
    spec, _ = model_spec(model)
    rng = np.random.default_rng(plan.seed)
    z_start = plan.start_states(rng)
    u = _inputs(plan)
    settings = {"trials": plan.trials, "record_dt": plan.record_dt, "noise": noisy, "record_spikes": record_spikes,
                "input_steps": len(u) if u is not None else 1, "threads": threads}
    key = _build_key(arrays, info, settings)
    t0 = time.perf_counter()
    kept = _BUILDS.pop(key, None)
    if kept is not None and not (Path(kept[0]) / "main").exists():
        kept = None
    tmp = None
    try:
        with terminate_as_interrupt():
            if kept is None:
                root = Path(cache_dir("brian2_cpp"))
                root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".coordinated-", dir=root))
                with ticking("brian2-cpp: generating and compiling the coordinated network", plan.progress):
                    try:
                        m = build_coordinated_project(arrays, info, tmp, **settings)
                    except CompileError as exc:
                        raise DDMError(f"brian2-cpp: {exc}") from None
            else:
                tmp, m = Path(kept[0]), dict(kept[1], compile_seconds=0.0)
            t1 = time.perf_counter()
            with ticking(f"brian2-cpp: running {plan.trials} x {plan.duration:g} time units (coordinated)",
                         plan.progress):
                try:
                    got = run_coordinated_build(str(tmp), spec, seed=int(rng.integers(2 ** 31)),
                                                duration=(plan.n_rec - 1) * plan.record_dt, z0=z_start, u_rec=u)
                except RunError as exc:
                    raise DDMError(f"brian2-cpp: the coordinated network: {exc}") from None
            run_s = time.perf_counter() - t1
        _keep(key, tmp, m)
        tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    compile_s = m["compile_seconds"]
    if plan.progress:
        print(f"brian2-cpp: ran {plan.trials} x {plan.duration:g} time units in {run_s:.1f} s (coordinated network, "
              f"compiled in {compile_s:.1f} s)", flush=True)
    rates = got["rates_hz"].tolist()
    sp_t, sp_i = got["spikes"] if got["spikes"] is not None else (None, None)
    return plan.trajectory(
        got["z"], backend="brian2-cpp", spikes_t=None if sp_t is None else sp_t / model.time_scale, spikes_i=sp_i,
        network="coordinated", noise="model" if noisy else "none", mean_rate_hz=float(np.mean(rates)) if rates else 0.0,
        trial_rates_hz=rates, n_neurons=info["n_neurons"], n_basis=int(model.n_neurons), delta=info["delta"],
        integration_dt=m["dt"], neuron={"name": "coordinated", "cost": info["cost"]},
        tau_syn=model.tau, time_scale=model.time_scale, device="cpp_standalone", threads=threads,
        compile_seconds=compile_s, run_seconds=run_s, total_seconds=time.perf_counter() - t0)


def _build_key(arrays, info, settings):
    """A digest of everything a build depends on: the network's arrays and settings and the run's build settings."""
    h = hashlib.sha256(json.dumps([info, settings], sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype=np.float64)
        h.update(name.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _keep(key, folder, facts):
    """Keep a build for reuse; the oldest beyond :data:`KEEP_BUILDS` is removed."""
    _BUILDS[key] = (str(folder), facts)
    while len(_BUILDS) > KEEP_BUILDS:
        old = next(iter(_BUILDS))
        shutil.rmtree(_BUILDS.pop(old)[0], ignore_errors=True)


@atexit.register
def _remove_builds():
    while _BUILDS:
        shutil.rmtree(_BUILDS.popitem()[1][0], ignore_errors=True)


def _inputs(plan):
    """The plan's input per recording interval ``(n_rec, k)`` (zeros without a signal), or None for a model without
    inputs: the torch loop's grid (an interval's input is the signal at its start)."""
    k = plan.model.n_inputs
    if not k:
        return None
    if plan.input is None:
        return np.zeros((plan.n_rec, k))
    return np.asarray(plan.input.at(np.arange(plan.n_rec) * plan.record_dt), dtype=np.float64).reshape(plan.n_rec, k)
