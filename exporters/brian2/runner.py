"""Run a compiled Brian2 standalone build of a ddm_neuro network and read the latent back.

Needs only numpy (no brian2, no ddm_neuro): it is copied verbatim into every
exported project as ``run.py``, and the ``brian2-cpp`` back end runs its
builds through the same code. A run passes the seed, the initial state, the
inputs and the stop time on the binary's command line, so nothing is
recompiled. Usage in an exported project::

    python run.py --seed 1 --duration 60 -o trajectory.npz
    python run.py --seed 1 --duration 20 --input 1.0 -o cue.npz       # constant input
    python run.py --seed 1 --duration 20 --input-file u.npy -o cue.npz  # (steps, k) on the step grid

The trajectory file is ddm_neuro's (``t``, ``z``, ``dt``, ``meta`` as JSON),
written under a unique temporary name beside it and renamed into place. The
binary runs in a process group of its own (``processes.py``); Ctrl-C or
SIGTERM end it, remove the temporary files and exit with status 130 or 143.
Errors are one line, ``error: ...`` (exit status 1).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

try:  # inside the package
    from ..trajectory_file import check_output, write_trajectory
    from .network import MAX_STEPS, initial_state, load_spec, spiking_state
    from .processes import run_group, terminate_as_interrupt
except ImportError:  # an exported project: these files lie beside this one
    from network import MAX_STEPS, initial_state, load_spec, spiking_state
    from processes import run_group, terminate_as_interrupt
    from trajectory_file import check_output, write_trajectory


class RunError(RuntimeError):
    """The compiled simulation failed or its results are not what the build promised."""


def read_manifest(code_dir):
    """The build manifest ``build.json`` of a generated project."""
    path = os.path.join(code_dir, "build.json")
    if not os.path.exists(path):
        raise RunError(f"{code_dir}: no build.json (not a ddm_neuro Brian2 build)")
    with open(path) as fh:
        return json.load(fh)


def n_steps_for(duration, manifest):
    """Integration steps and recorded samples for ``duration`` SDE units: ``(n_steps, n_rec)``."""
    sub = int(round(manifest["record_dt"] / manifest["dt"]))
    n_rec = int(round(float(duration) / manifest["record_dt"])) + 1
    return (n_rec - 1) * sub, n_rec


#: Environment given to a binary built with K > 1 OpenMP threads when other processes keep the cores busy
#: (fewer than K cores idle at its start; :func:`idle_cores`), unless the caller's
#: environment sets the wait policy itself (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``): a thread waiting
#: at one of the step's fork/join barriers (Brian2 opens a parallel region per code object, 6-8 per step)
#: sleeps at once instead of spinning, so it never takes a core from another process.
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Environment given to such a binary when at least K cores are idle at its start: waiting threads spin
#: for a bounded number of rounds (libgomp's own default is 300000) and then sleep. On free cores this
#: makes the barriers cheap (2 threads 1.7x faster than 1 at N = 10 000, against 1.2x sleeping at once;
#: ``benchmarks/RESULTS_speed.md``); beside a busy process spinning is several times slower, hence the
#: check at start.
OPENMP_SPIN_ENV = {"GOMP_SPINCOUNT": "10000"}
#: Seconds :func:`binary_env` watches the cores before it chooses a wait policy.
IDLE_WATCH_SECONDS = 0.1


def _cpu_times():
    """``(idle, total)`` jiffies summed over all CPUs from ``/proc/stat``, or ``None`` off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def idle_cores(interval=IDLE_WATCH_SECONDS):
    """How many CPU cores sat idle during the next ``interval`` seconds (this process sleeps meanwhile).

    Read from ``/proc/stat`` (idle plus I/O wait, over all cores), so it
    counts every process on the machine, not only this user's.

    Parameters
    ----------
    interval : float
        Seconds to watch; 0.1 s resolves a core busy for more than ~10 % of it.

    Returns
    -------
    float or None
        Idle cores (0 to ``os.cpu_count()``), or ``None`` where ``/proc/stat``
        cannot be read (callers then assume the cores are busy).
    """
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    return (os.cpu_count() or 1) * (second[0] - first[0]) / (second[1] - first[1])


def binary_env(threads, environ=None, idle=None):
    """The environment of a compiled binary built for ``threads`` OpenMP threads.

    One thread (no OpenMP): ``environ`` unchanged. K > 1: unless
    ``environ`` names a wait policy of its own (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``), which is kept, ``environ`` plus
    :data:`OPENMP_SPIN_ENV` (bounded spinning) when at least K - 0.25 cores
    were idle just before the start, else :data:`OPENMP_ENV` (idle threads
    sleep at once), so the threads never spin against a process that was
    busy when the run began. The thread count itself is compiled in
    (``omp_set_num_threads``); ``OMP_NUM_THREADS`` does not change it.

    Parameters
    ----------
    threads : int
        The build's thread count (``build.json``'s ``threads``, 1 when absent).
    environ : mapping, optional
        The environment to start from (default ``os.environ``).
    idle : float, optional
        Idle cores, when the caller measured them; by default
        :func:`idle_cores` watches for
        :data:`IDLE_WATCH_SECONDS` (``None``: unknown, treated as busy).

    Returns
    -------
    dict
    """
    env = dict(os.environ if environ is None else environ)
    k = int(threads)
    if k > 1 and not any(env.get(name, "").strip() for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        if idle is None:
            idle = idle_cores(IDLE_WATCH_SECONDS)
        env.update(OPENMP_SPIN_ENV if idle is not None and idle >= k - 0.25 else OPENMP_ENV)
    return env


def run_build(code_dir, arrays, *, seed, duration, z0=None, u_steps=None, timeout=None):
    """Run the compiled network of ``code_dir`` once; return the latent ``y`` (trials, n_rec, d).

    A spiking build that records spikes returns ``(y, (spikes_t_seconds, spikes_i))``.

    Parameters
    ----------
    code_dir : str
        A built project (``build.json``, the ``main`` binary, ``static_arrays/``).
    arrays : dict
        The model arrays (for the initial state and start draws).
    seed : int
        Seeds the start draws and the binary's random generators.
    duration : float
        SDE time units per trial.
    z0 : array (trials, d) or (d,), optional
        Latent starts; default drawn from ``init_states`` with ``seed``.
    u_steps : array (n, k), optional
        Input on the integration-step grid (row j applies from step j on).
    timeout : float, optional
        Seconds before the run is killed.
    """
    m = read_manifest(code_dir)
    trials, d, k = m["trials"], m["dim"], m["n_inputs"]
    if not (np.isfinite(duration) and duration > 0):
        raise RunError(f"duration must be a finite number > 0, got {duration}")
    n_steps, n_rec = n_steps_for(duration, m)
    if n_steps >= MAX_STEPS:
        raise RunError(f"{duration:g} time units are {n_steps} steps of dt = {m['dt']:g}; a build runs at most "
                       f"{MAX_STEPS - 1}")
    rng, bin_seed, z0 = _starts(arrays, seed, trials, d, z0)
    u_full = _input_buffer(u_steps, k, m["input_steps"], "steps")
    device_args = m["device"] == "cpp_standalone"
    if not device_args and (m["duration"] is None or abs(duration - m["duration"]) > 1e-9 * max(1.0, duration)):
        raise RunError(f"this {m['device']} build simulates {m['duration']} time units; "
                       f"regenerate it for {duration} (python network.py)")
    x0, drive0 = initial_state(arrays, z0, u_full[0] if k else None)
    if m.get("mode", "rate") == "spiking":
        state = spiking_state(arrays, x0, m["coupling"], rng)
    else:
        state = {"x": x0}
    h = m["dt"] * m["time_scale"]
    names = {"y": np.float64, **({"spikes_t": np.float64, "spikes_i": np.int32} if "spikes_t" in m["results"] else {})}
    got = _execute(code_dir, m, bin_seed if device_args else None, (n_steps - 0.5) * h if device_args else None,
                   {**state, "drive": drive0, "u": u_full}, names, timeout)
    y = got["y"]
    spikes = (got["spikes_t"], got["spikes_i"]) if "spikes_t" in got else None
    y = y.reshape(-1, trials * d)
    if len(y) < n_rec:
        raise RunError(f"the simulation recorded {len(y)} samples, expected {n_rec}")
    y = y[:n_rec].reshape(n_rec, trials, d).transpose(1, 0, 2)
    if spikes is not None:
        keep = spikes[0] <= (n_rec - 1) * m["record_dt"] * m["time_scale"] + 1e-12
        return y, (spikes[0][keep], spikes[1][keep])
    return y


def _starts(arrays, seed, trials, d, z0):
    """``(rng, binary seed, z0 (trials, d))``: the run's generator, the seed of the binary's, and the starts
    (``z0`` broadcast, or drawn from ``init_states``)."""
    rng = np.random.default_rng(seed)
    bin_seed = int(rng.integers(2 ** 31))
    if z0 is None:
        z0 = arrays["init_states"][rng.integers(0, len(arrays["init_states"]), trials)]
    return rng, bin_seed, np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, d))


def _input_buffer(u, k, rows, unit):
    """The input TimedArray's values: ``u`` (n, k) padded with its last row to the build's ``rows`` (zeros
    without ``u``); None for a network without inputs."""
    if not k:
        if u is not None:
            raise RunError("an input was given, but this network has no inputs")
        return None
    u = np.zeros((1, k)) if u is None else np.atleast_2d(np.asarray(u, dtype=np.float64))
    if u.shape[1] != k:
        raise RunError(f"input has {u.shape[1]} channels, the network has {k}")
    if len(u) > rows:
        raise RunError(f"input covers {len(u)} {unit}; this build holds {rows} (rebuild longer)")
    return np.concatenate([u, np.repeat(u[-1:], rows - len(u), axis=0)])


def _execute(code_dir, m, bin_seed, t_stop, values, names, timeout):
    """Run the binary of ``code_dir`` once: ``--seed`` (unless None), ``t_stop`` (unless None) and ``values``
    (run arguments named in the manifest's ``args``; None values are skipped) on its command line; returns the
    result files ``names`` ({result name: dtype}) as arrays."""
    binary = os.path.join(code_dir, "main")
    if not os.path.exists(binary):
        raise RunError(f"{code_dir}: no compiled binary 'main' (compile with: python network.py)")
    try:
        out = tempfile.mkdtemp(prefix="run_", dir=code_dir)
    except OSError:  # a read-only project or cache: the results go to the system's temporary folder
        out = tempfile.mkdtemp(prefix="ddm_run_")
    try:
        args = [binary, "--results_dir", out + os.sep]
        if bin_seed is not None:
            args.append(f"--seed={bin_seed}")
        if t_stop is not None:
            args.append(f"{m['args']['t_stop']}={t_stop!r}")
        for key, value in values.items():
            if value is not None:
                path = os.path.join(out, f"_in_{key}.dat")
                np.ascontiguousarray(value, dtype=np.float64).tofile(path)
                args.append(f"{m['args'][key]}={path}")
        try:  # its own process group: ended as a whole on Ctrl-C, SIGTERM or the timeout
            code, stdout, stderr = run_group(args, cwd=code_dir, timeout=timeout,
                                             env=binary_env(m.get("threads", 1)))
        except subprocess.TimeoutExpired:
            raise RunError(f"the compiled simulation did not finish within {timeout:g} s (ended)") from None
        if code != 0:
            tail = (stdout + stderr).strip().splitlines()[-20:]
            raise RunError(f"the compiled simulation failed (exit {code}):\n" + "\n".join(tail))
        return {k: np.fromfile(os.path.join(out, m["results"][k]), dtype=t) for k, t in names.items()}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_coordinated_build(code_dir, arrays, *, seed, duration, z0=None, u_rec=None, timeout=None):
    """Run a compiled spike-coordinated build (``coordinated_network.py``) once.

    Parameters
    ----------
    code_dir : str
        A built project (``build.json`` with ``"network": "coordinated"``, the ``main`` binary).
    arrays : dict
        The model's spec (``init_states`` for start draws, ``center``).
    seed : int
        Seeds the start draws and the binary's random generators.
    duration : float
        SDE time units per trial.
    z0 : array (trials, d) or (d,), optional
        Latent starts; default drawn from ``init_states`` with ``seed``.
    u_rec : array (n, k), optional
        Input per recording interval (row i holds over interval i; the last row holds on).
    timeout : float, optional
        Seconds before the run is killed.

    Returns
    -------
    dict
        ``z`` (trials, n_rec, d), ``counts`` (trials,: spikes up to the last sample), ``rates_hz`` (trials,: the
        mean rate per neuron over the run), ``spikes`` ((times in seconds, neuron indices) up to the last sample,
        or None).
    """
    m = read_manifest(code_dir)
    trials, d, k = m["trials"], m["dim"], m["n_inputs"]
    if not (np.isfinite(duration) and duration > 0):
        raise RunError(f"duration must be a finite number > 0, got {duration}")
    n_rec = int(round(duration / m["record_dt"])) + 1
    span = (n_rec - 1) * m["sub"] * m["step_s"]
    if span / m["step_s"] >= MAX_STEPS:
        raise RunError(f"{duration:g} time units are more steps than this build runs ({MAX_STEPS - 1})")
    _, bin_seed, z0 = _starts(arrays, seed, trials, d, z0)
    u_full = _input_buffer(u_rec, k, m["input_steps"], "recording intervals")
    xh0 = z0 - arrays["center"]
    names = {**{f"xh_{q}": np.float64 for q in range(d)}, "n_spikes": np.float64,
             **({"n_over": np.float64} if "n_over" in m["results"] else {}),
             **({"spikes_t": np.float64, "spikes_i": np.int32} if "spikes_t" in m["results"] else {})}
    got = _execute(code_dir, m, bin_seed, span + 0.5 * m["step_s"],
                   {**{f"xh_{q}": xh0[:, q] for q in range(d)}, "u": u_full}, names, timeout)
    xh = np.stack([got[f"xh_{q}"].reshape(-1, trials) for q in range(d)], axis=-1)
    if len(xh) < n_rec:
        raise RunError(f"the simulation recorded {len(xh)} samples, expected {n_rec}")
    z = xh[:n_rec].transpose(1, 0, 2) + arrays["center"]
    counts = got["n_spikes"].reshape(-1, trials)[n_rec - 1]
    if "n_over" in got and np.any(got["n_over"].reshape(-1, trials)[n_rec - 1] > 0):
        over = int(got["n_over"].reshape(-1, trials)[n_rec - 1].sum())
        raise RunError(f"noise spikes: their probability exceeded one per step in {over} steps, where this network "
                       "fires at most one noise spike a step (more neurons, or a slower rate, shorten the step)")
    spikes = None
    if "spikes_t" in got:
        # Brian2 stamps a spike with its step's start; the torch loop with its end (the state it changes)
        t = got["spikes_t"] + m["step_s"]
        keep = t <= span + 1e-12 * max(1.0, span)
        spikes = (t[keep], got["spikes_i"][keep].astype(np.int64))
    rates = counts / (m["n_neurons"] * span) if span > 0 else np.zeros(trials)
    return {"z": z, "counts": counts, "rates_hz": rates, "spikes": spikes}


def _numbers(text, option):
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{option} takes finite numbers, got {text!r}")
    return values


def main(argv=None):
    """Command line of an exported project (see the module docstring).

    Errors end with one line ``error: ...`` (exit status 1); Ctrl-C or SIGTERM
    end the compiled simulation, remove the temporary files and exit with
    status 130 or 143.
    """
    import argparse

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "export.json")) as fh:
            export = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {os.path.join(here, 'export.json')}: not readable ({exc})") from None
    ap = argparse.ArgumentParser(description="Run this exported ddm_neuro network (Brian2 standalone) "
                                             "and write its latent trajectory.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=export["build"].get("duration") or 10.0,
                    help="SDE time units per trial")
    ap.add_argument("--z0", help="start state, comma-separated (default: drawn from the fitted region)")
    ap.add_argument("--input", help="constant input, comma-separated (one value per input)")
    ap.add_argument("--input-file", help=".npy array (steps, inputs) on the integration-step grid (a spike-coordinated "
                                         "network: one row per recording interval)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        with terminate_as_interrupt():
            _run(here, args)
    except KeyboardInterrupt as exc:  # the simulation is ended and its temporary files removed already
        print("run.py: interrupted; nothing written", file=sys.stderr)
        raise SystemExit(128 + int(getattr(exc, "signum", 2))) from None
    except (RunError, OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _run(here, args):
    if not (np.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration must be a finite number > 0, got {args.duration}")
    check_output(args.output, args.force)   # before the run, not after it
    spec = os.path.join(here, "model.npz")
    try:
        arrays, info = load_spec(spec)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{spec}: not a readable model file ({type(exc).__name__}: {exc})") from None
    code_dir = os.path.join(here, "code")
    u = None
    if args.input:
        u = _numbers(args.input, "--input")[None, :]
    elif args.input_file:
        u = np.load(args.input_file, allow_pickle=False)
    z0 = None if args.z0 is None else _numbers(args.z0, "--z0")
    if z0 is not None and z0.shape != (arrays["encoders"].shape[1],):
        raise ValueError(f"--z0 takes {arrays['encoders'].shape[1]} numbers, got {len(z0)}")
    m = read_manifest(code_dir)
    if m.get("network") == "coordinated":
        got = run_coordinated_build(code_dir, arrays, seed=args.seed, duration=args.duration, z0=z0, u_rec=u)
        z, spikes = got["z"], got["spikes"]
    else:
        y = run_build(code_dir, arrays, seed=args.seed, duration=args.duration, z0=z0, u_steps=u)
        y, spikes = y if isinstance(y, tuple) else (y, None)
        z = y * arrays["scale"] + arrays["center"]
    meta = {"backend": "brian2-cpp" if m["device"] == "cpp_standalone" else "brian2-cuda",
            "mode": m.get("mode", "rate"),
            "device": m["device"], "coupling": m["coupling"], "model_id": info.get("model_id"),
            "system": info.get("sde_name"), "variables": info.get("variables"), "seed": args.seed,
            "duration": args.duration, "trials": m["trials"], "integration_dt": m["dt"], "noise": m["noise"],
            "n_neurons": m["n_neurons"], "threads": m.get("threads", 1), "exported": True,
            **({"network": "coordinated", "n_basis": m["n_basis"], "mean_rate_hz": float(np.mean(got["rates_hz"]))}
               if m.get("network") == "coordinated" else {})}
    write_trajectory(args.output, np.arange(z.shape[1]) * m["record_dt"], z, m["record_dt"], meta, args.force,
                     spikes=None if spikes is None else (spikes[0] / m["time_scale"], spikes[1]))
    print(f"wrote {args.output}: {m['trials']} trials x {args.duration:g} time units")


if __name__ == "__main__":
    main()
