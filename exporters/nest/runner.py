"""``run.py`` of an exported NEST project: run the network and write its latent trajectory.

Needs only NEST and numpy (``network.py`` and ``spec.py`` lie beside it)::

    python run.py --seed 1 --duration 60 -o traj.npz [--trials 16] [--threads 2] [--z0 0.5,0] [--input 1.0]
    mpirun -np 2 python run.py --seed 1 --duration 60 -o traj.npz        # an MPI-enabled NEST

The output is ddm_neuro's trajectory format (``t``, ``z``, ``dt``, ``meta``),
written atomically by rank 0; ``ddm-neuro verify MODEL.ddm traj.npz`` reads
it. Bad input ends with one line ``error: ...`` and exit status 2, before
NEST starts; nothing is written.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

try:  # inside the package
    from ..spec import initial_state, load_spec, spiking_state
    from ..trajectory_file import check_output, write_trajectory
    from .network import NetworkError, check_rate, simulate_rate, step_ms
except ImportError:  # an exported project: these files lie beside run.py
    from network import NetworkError, check_rate, simulate_rate, step_ms
    from spec import initial_state, load_spec, spiking_state
    from trajectory_file import check_output, write_trajectory

#: Environment variables MPI launchers set to the number of processes.
MPI_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
#: ... and to this process's rank.
MPI_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")


def launched_rank(environ=None):
    """This process's rank under an MPI launcher (0 outside one)."""
    environ = os.environ if environ is None else environ
    for name in MPI_RANK_VARIABLES:
        try:
            return int(environ[name])
        except (KeyError, ValueError):
            continue
    return 0


def launched_ranks(environ=None):
    """How many processes an MPI launcher started (1 outside one)."""
    environ = os.environ if environ is None else environ
    for name in MPI_SIZE_VARIABLES:
        try:
            return max(int(environ[name]), 1)
        except (KeyError, ValueError):
            continue
    return 1


def nest_has_mpi():
    """Whether the NEST that ``import nest`` would load was built with MPI (None: cannot tell), without importing it.

    NEST without MPI exits the process as soon as it is imported under ``mpirun``;
    its ``config.h`` (shipped with the wheel and with a cmake install) says which it is.
    """
    import importlib.util

    spec = importlib.util.find_spec("nest")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = os.path.abspath(spec.submodule_search_locations[0])
    candidates = [os.path.join(pkg, "include", "nest", "config.h")]
    parts = pkg.split(os.sep)
    if "lib" in parts:  # a cmake install: <prefix>/lib/pythonX.Y/site-packages/nest
        prefix = os.sep.join(parts[:len(parts) - 1 - parts[::-1].index("lib")])
        candidates.append(os.path.join(prefix, "include", "nest", "config.h"))
    for path in candidates:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            continue
        return "#define HAVE_MPI" in text
    return None


def _numbers(text, option, count):
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{option} takes finite numbers, got {text!r}")
    if len(values) != count:
        raise ValueError(f"{option} takes {count} number(s), got {len(values)}")
    return values


def parse(argv, export):
    """The command line, checked (ValueError with one line for bad values)."""
    import argparse

    build = export["build"]
    ap = argparse.ArgumentParser(description="Run this exported ddm_neuro network in NEST and write its latent "
                                             "trajectory (also under mpirun with an MPI-enabled NEST).")
    ap.add_argument("--seed", type=int, default=0, help="noise and start-state seed (default 0)")
    ap.add_argument("--duration", type=float, default=build["duration"], help="SDE time units per trial")
    ap.add_argument("--trials", type=int, default=build["trials"], help="independent copies side by side")
    ap.add_argument("--threads", type=int, default=build["threads"], help="NEST threads per process")
    ap.add_argument("--z0", help="start state, comma-separated (default: drawn from the fitted region)")
    ap.add_argument("--input", help="constant input, comma-separated (one value per input)")
    ap.add_argument("--input-file", help=".npy array (steps, inputs) on the integration-step grid")
    ap.add_argument("--no-noise", action="store_true", help="the noise-free network")
    ap.add_argument("-o", "--output", required=True, help="trajectory file to write (.npz)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = ap.parse_args(argv)
    if not (np.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration must be a finite number > 0, got {args.duration}")
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.input and args.input_file:
        raise ValueError("give --input or --input-file, not both")
    return args


def main(argv=None):
    """Command line of an exported project (see the module docstring)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "export.json")) as fh:
            export = json.load(fh)
        args = parse(argv, export)
        check_output(args.output, args.force)
        if launched_ranks() > 1 and nest_has_mpi() is False:
            raise ValueError(f"started by an MPI launcher with {launched_ranks()} processes, but the installed NEST "
                             "has no MPI (the PyPI wheel has none): run without mpirun (threads: --threads K), or "
                             "build NEST with -Dwith-mpi=ON (benchmarks/build_nest_mpi.sh in ddm_neuro)")
        _run(here, export, args)
    except (ValueError, NetworkError, OSError) as exc:
        if launched_rank() == 0:   # every rank meets the same error: one line, from rank 0
            print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("run.py: interrupted; nothing written", file=sys.stderr)
        raise SystemExit(130) from None


def _run(here, export, args):
    arrays, info = load_spec(os.path.join(here, "model.npz"))
    build = export["build"]
    N, d = arrays["encoders"].shape
    k = arrays["input_weights"].shape[1]
    dt, record_every = build["dt"], build["record_every"]
    n_rec = int(round(args.duration / (dt * record_every))) + 1
    n_steps = (n_rec - 1) * record_every
    u = None
    if args.input:
        u = np.broadcast_to(_numbers(args.input, "--input", k), (n_steps + 2, k))
    elif args.input_file:
        u = np.load(args.input_file, allow_pickle=False)
        if u.ndim != 2 or u.shape[1] != k or len(u) < n_steps + 2 or not np.all(np.isfinite(u)):
            raise ValueError(f"--input-file must hold finite numbers of shape (>= {n_steps + 2}, {k}), "
                             f"got {u.shape}")
    elif k:
        u = np.zeros((n_steps + 2, k))
    spiking = export.get("mode", "rate") == "spiking"
    if spiking:   # spiking.py ships with spiking projects only
        try:
            from .spiking import check_spiking, simulate_spiking
        except ImportError:
            from spiking import check_spiking, simulate_spiking
        noise = "none" if args.no_noise else build["noise"]
        check_spiking(arrays, info, coupling=build["coupling"], noise=noise, h_ms=step_ms(dt, info))
        if launched_ranks() > 1 and (build["coupling"] == "factored" or noise != "none"):
            import importlib.util

            if importlib.util.find_spec("mpi4py") is None:
                raise ValueError("this spiking network is driven from Python step by step (factored coupling, or "
                                 "noise): under mpirun the ranks share its read-out every step through mpi4py, "
                                 "which is not installed (pip install mpi4py); or run without mpirun (threads: "
                                 "--threads K)")
    else:
        noise = build["noise"] and not args.no_noise
        check_rate(arrays, info, coupling=build["coupling"], noise=noise, has_input=u is not None)
    rng = np.random.default_rng(args.seed)
    nest_seed = int(rng.integers(2 ** 62)) if spiking else None   # the back end's order of draws
    if args.z0 is None:
        z0 = arrays["init_states"][rng.integers(0, len(arrays["init_states"]), args.trials)]
    else:
        z0 = np.broadcast_to(_numbers(args.z0, "--z0", d), (args.trials, d))
    x0, _ = initial_state(arrays, z0, None if u is None else u[0])
    scratch = os.path.dirname(os.path.abspath(args.output))
    common = dict(trials=args.trials, dt=dt, n_rec=n_rec, record_every=record_every, threads=args.threads,
                  coupling=build["coupling"], noise=noise, u_steps=u, scratch=scratch)
    if spiking:
        state = spiking_state(arrays, x0, build["coupling"], rng)
        y, stats = simulate_spiking(arrays, info, state=state, seed=nest_seed, fano=build["fano"], **common)
    else:
        y, stats = simulate_rate(arrays, info, x0=x0, seed=int(rng.integers(2 ** 62)), **common)
    if y is None:  # not rank 0
        return
    z = y * arrays["scale"] + arrays["center"]
    h_sde = stats["h_ms"] * 1e-3 / info["time_scale"]
    record_dt = h_sde * record_every
    meta = {"backend": "nest", "mode": "spiking" if spiking else "rate", "coupling": build["coupling"], "model_id": info.get("model_id"),
            "system": info.get("sde_name"), "variables": info.get("variables"), "seed": args.seed,
            "duration": args.duration, "trials": args.trials, "integration_dt": h_sde, "noise": noise,
            "n_neurons": N, "threads": stats["threads"], "ranks": stats["ranks"], "exported": True,
            "nest_run_s": stats["run_s"], "max_rss_mb_per_rank": stats.get("max_rss_mb_per_rank",
                                                                          [stats["max_rss_mb"]])}
    if spiking:
        meta.update(fano=build["fano"], tau_syn=info["tau"], time_scale=info["time_scale"],
                    mean_rate_hz=stats["n_spikes"] / (args.trials * N * (n_rec - 1) * record_dt * info["time_scale"]))
    write_trajectory(args.output, np.arange(n_rec) * record_dt, z, record_dt, meta, force=args.force)
    print(f"wrote {args.output}: {args.trials} trial(s) x {args.duration:g} time units; NEST {stats['ranks']} "
          f"rank(s) x {stats['threads']} thread(s), run {stats['run_s']:.1f} s, peak memory per rank "
          f"{', '.join(f'{m:.0f}' for m in meta['max_rss_mb_per_rank'])} MB")


if __name__ == "__main__":
    main()
