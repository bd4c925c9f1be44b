"""The ``ddm-neuro`` command line (DESIGN §5).

User mistakes end as one line on stderr and exit status 2; ``verify`` exits 1
when a metric fails.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from .errors import DDMError
from .threads import configure_threads


def _seed(text):
    """argparse type: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return convert


def _params(items):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise DDMError(f"--param expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise DDMError(f"--param {name}: {value!r} is not a number") from None
    return out


def load_sde(source, overrides=None):
    """A built-in name or a TOML spec path -> SDE."""
    from .sde.spec import load_spec
    from .sde.systems import SPECS, get_system

    if source.endswith(".toml") or (Path(source).exists() and source not in SPECS):
        return load_spec(source, overrides)
    return get_system(source, **(overrides or {}))


def cmd_systems(args):
    from .sde.spec import to_toml
    from .sde.systems import builtin_spec, list_systems

    if args.show:
        sys.stdout.write(to_toml(builtin_spec(args.show)))
        return 0
    width = max(map(len, list_systems()))
    for name, desc in list_systems().items():
        print(f"{name:<{width}}  {desc}")
    return 0


def print_fit_summary(model, path=None):
    """Print the held-out errors and settings of a fitted model; warnings on stderr."""
    from .fit.matching import fit_summary, fit_warnings

    print(fit_summary(model, path))
    for text in fit_warnings(model):
        print(f"warning: {text}", file=sys.stderr)


def _lif_options(args, neuron):
    """The neuron spec: ``neuron`` itself, or a LIF dict with ``--tau-ref`` / ``--max-rates`` when given."""
    given = {k: v for k, v in (("tau_ref", args.tau_ref), ("max_rates", args.max_rates)) if v is not None}
    if not given:
        return neuron
    if neuron != "lif":
        raise DDMError(f"--tau-ref and --max-rates set LIF parameters; --neuron {neuron} has none "
                       "(use --neuron lif)")
    from .neurons import make_neuron

    return make_neuron({"name": "lif", **given}).to_dict()   # checked here: a clear error before fitting


def _rates(text):
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in Hz, e.g. 200,400 (got {text!r})") from None
    return lo, hi


def _add_lif_options(s):
    s.add_argument("--tau-ref", type=float, default=None, metavar="SECONDS",
                   help="LIF refractory period in seconds (default 0.002; 0 for NIR export, whose CubaLIF has none)")
    s.add_argument("--max-rates", type=_rates, default=None, metavar="LOW,HIGH",
                   help="LIF: range of the neurons' maximum rates in Hz (default 200,400)")


def cmd_fit(args):
    from .fileio import check_output
    from .fit.matching import SPIKING_BUDGET, fit

    check_output(args.output, args.force)
    budget = args.spike_budget if args.spike_budget is not None else (SPIKING_BUDGET if args.spiking else None)
    if args.spike_drift_cap is not None and budget is None:
        raise DDMError("--spike-drift-cap applies to the spiking lambda choice: add --spiking or --spike-budget")
    neuron = args.neuron or ("lif" if budget is not None else "tanh")
    if budget is not None and neuron != "lif":
        raise DDMError(f"--spiking/--spike-budget choose the ridge for spiking LIF networks; --neuron {neuron} "
                       "cannot spike (use --neuron lif or leave --neuron out)")
    neuron = _lif_options(args, neuron)
    extra = {} if budget is None else {"spike_budget": budget}
    if args.spike_drift_cap is not None:
        extra["spike_drift_cap"] = args.spike_drift_cap
    sde = load_sde(args.system, _params(args.param))
    model = fit(sde, n_neurons=args.n, neuron=neuron, seed=args.seed, tau=args.tau,
                time_scale=args.time_scale, steps=args.steps, progress=not args.quiet, **extra)
    model.save(args.output, force=args.force)
    print_fit_summary(model, args.output)
    sr = model.meta["fit"].get("spike_ridge")
    if sr:
        print(f"  spiking ridge lambda     {sr['lambda']:.4g} = {sr['factor']:.3g} x the rate-accuracy choice; "
              f"predicted spike noise {sr['spike_ratio_final']:.3g} x the target's (rate choice "
              f"{sr['rate_spike_ratio']:.3g}, budget {sr['budget']:g})")
        if not sr["budget_met"]:
            print(f"  spike budget not met within the drift cap ({sr['drift_cap']:g}): more neurons (-n), a longer "
                  "--tau, or a larger --spike-drift-cap would lower the spike noise")
    return 0


def cmd_convert(args):
    from .spiking.convert import convert
    from .fileio import check_output
    from .network import LatentRNN

    check_output(args.output, args.force)
    model = LatentRNN.load(args.model)
    out = convert(model, neuron=_lif_options(args, args.neuron), steps=args.steps, seed=args.seed,
                  progress=not args.quiet)
    out.save(args.output, force=args.force)
    print(f"converted {args.model} ({model.neuron.name}, held-out drift error "
          f"{100 * model.meta.get('fit', {}).get('drift_error', float('nan')):.4f} %) to {args.neuron}:")
    print_fit_summary(out, args.output)
    return 0


def _print_drift_calibration(args, info, noise):
    print(f"calibrated {args.model} as a spiking network ({args.backend}, {info['trials']} runs x {info['duration']:g} "
          f"time units per round, noise {noise}):")
    for r in info["rounds"]:
        diff = (f"; diffusion error {100 * r['diffusion_error']:.2f} % ({100 * r['diffusion_split_half_noise']:.2f} %)"
                if "diffusion_error" in r else "")
        print(f"  round {r['round']}: systematic drift error on the attractor {100 * r['systematic_drift_error']:.2f} % "
              f"(split-half noise {100 * r['split_half_noise']:.2f} %){diff}")
    print(f"kept round {info['best_round']} (stopped: {info['stopped']})")
    best = info["rounds"][info["best_round"]]
    if best["split_half_noise"] > 0.5 * best["systematic_drift_error"]:
        print("note: the measured error is mostly estimation noise; more --trials or a longer --duration "
              "measure it better", file=sys.stderr)


def _print_foci_calibration(info):
    print(f"unstable foci ({info['simulator']}, {info['trials']} runs each from radii {info['start_radii'][0]:.3g}-"
          f"{info['start_radii'][1]:.3g}, leaving at {info['escape_radius']:.3g} within {info['duration']:.3g} time units):")
    slowest = lambda t: max(t) if all(map(math.isfinite, t)) else math.inf  # noqa: E731
    for f in info["foci"]:
        centre = ", ".join(f"{c:.4g}" for c in f["centre"])
        steps = "; ".join(f"kappa {s['kappa']:.3g}: {sum(map(math.isfinite, s['escape']))}/{len(s['escape'])} left "
                          f"(slowest {slowest(s['escape']):.3g})" for s in f["steps"])
        print(f"  focus ({centre}), growth {f['growth']:.3g}, target's slowest escape {max(f['target_escape']):.3g}: "
              f"{steps}")
        if not f["escaped"]:
            print(f"  warning: runs still stay near the focus ({centre}) at kappa {f['kappa']:.3g}: the network "
                  "can collapse there", file=sys.stderr)


def cmd_calibrate(args):
    from .spiking.calibrate import calibrate_spiking
    from .fileio import check_output
    from .run.inputs import parse_input_option
    from .network import LatentRNN

    if args.rounds == 0 and not args.foci:
        raise DDMError("--rounds 0 skips the drift calibration: give --foci, or at least one round")
    check_output(args.output, args.force)
    model = LatentRNN.load(args.model)
    sde = model.sde()
    noise = args.noise
    u = None
    if args.input:
        signal = parse_input_option(args.input, model.inputs, sde.input_range if model.sde_spec else None)
        if len(signal.times) > 1:
            raise DDMError("--input: calibration takes a constant input (NAME=VALUE), not steps")
        u = signal.values[0]
    from .run.rate import check_run_size

    check_run_size(model, args.duration, args.trials)
    out = model
    if args.rounds:
        out = calibrate_spiking(model, sde, rounds=args.rounds, duration=args.duration, trials=args.trials,
                                noise=noise, damping=args.damping, seed=args.seed, backend=args.backend, u=u,
                                near_fixed_points=args.near_fixed_points, progress=not args.quiet)
    if args.foci:
        from .spiking.unstable_foci import calibrate_foci

        out = calibrate_foci(out, sde, backend=args.backend, trials=args.foci_trials, seed=args.seed, u=u,
                             progress=not args.quiet)
    out.save(args.output, force=args.force)
    if args.rounds:
        _print_drift_calibration(args, out.meta["spiking_calibration"], noise)
    if args.foci:
        _print_foci_calibration(out.meta["foci_calibration"])
    print(f"wrote {args.output}")
    return 0


def cmd_simulate(args):
    from .backends import get_backend
    from .run.rate import check_run_size
    from .fileio import check_output
    from .run.inputs import parse_input_option
    from .network import LatentRNN

    check_output(args.output, args.force)
    if args.figure:
        from .plots import check_figure_path

        check_figure_path(args.figure, args.force)
    if args.spikes and args.mode != "spiking":
        raise DDMError("--spikes records spikes of a spiking run: add --mode spiking")
    model = LatentRNN.load(args.model)
    run = get_backend(args.backend, args.mode)
    check_run_size(model, args.duration, args.trials)
    input_range = model.sde().input_range if (args.input and model.sde_spec) else None
    u = parse_input_option(args.input, model.inputs, input_range) if args.input else None
    options = {}
    if args.no_noise:
        options["noise"] = False
    if args.coupling:
        options["coupling"] = args.coupling
    if args.spikes:
        options["record_spikes"] = True
    traj = run(model, args.duration, trials=args.trials, seed=args.seed, u=u, mode=args.mode,
               progress=not args.quiet, **options)
    traj.save(args.output, force=args.force)
    print(f"wrote {args.output}: {traj.trials} trial(s) x {traj.duration:g} time units "
          f"({len(traj.t)} samples, dt={traj.dt:.3g}), backend {args.backend}, mode {args.mode}"
          + (f", {len(traj.spikes_t)} spikes" if traj.spikes_t is not None else ""))
    if args.figure:
        from .plots import trajectory_figure

        trajectory_figure(traj, args.figure, n_neurons=model.n_neurons, variables=list(model.variables),
                          force=args.force)
        print(f"wrote {args.figure}: " + ("spike raster and latent" if traj.spikes_t is not None else "latent")
              + " of trial 0")
    return 0


_REPORT_FILES = ("report.json", "timeseries.png", "phase_portrait.png", "drift_field.png", "marginals.png",
                 "autocorrelation.png", "switching_times.png")


def _check_report_folder(folder, force):
    """Refuse a report folder that is a file, sits in a missing folder, or holds a report, unless ``force``."""
    from .fileio import check_output

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DDMError(f"{folder}: exists and is not a folder")
    if not folder.exists():
        check_output(folder, kind="dir")  # the parent must exist and be writable
    for name in _REPORT_FILES:
        if (folder / name).exists() and not force:
            raise DDMError(f"{folder / name}: already exists (use --force to overwrite)")


def cmd_verify(args):
    from .network import LatentRNN
    from .trajectory import Trajectory
    from .verify import run_verify

    if args.report:
        _check_report_folder(args.report, args.force)  # before the work, not after it
    model = LatentRNN.load(args.model)
    traj = Trajectory.load(args.trajectory)
    if traj.dim != model.dim:
        raise DDMError(f"{args.trajectory}: trajectory has {traj.dim} latent dimensions, "
                       f"the model has {model.dim} ({', '.join(model.variables)})")
    filter_tau = traj.meta.get("readout_filter_tau")  # set by back ends whose read-out is filtered (spiking)
    sde = model.sde()
    if model.w_perp is not None and "chaotic" in sde.tags:
        print(f"note: {args.model} has hardware-constrained weights (W_perp): the Lyapunov check settles the "
              "off-latent state at every drift evaluation and can take many minutes at N >= 512", file=sys.stderr)
    model_drift = model.latent_drift
    if traj.meta.get("mode") == "spiking" and "chaotic" in sde.tags:
        # the rate network's drift is not the spiking network's once calibrated in the loop
        model_drift = None
        print(f"note: {args.trajectory} is a spiking run: its noise-free drift is not the rate network's, so the "
              "Lyapunov check is skipped (twin spiking runs measure it: benchmarks/spiking_lorenz.py)",
              file=sys.stderr)
    return run_verify(sde, traj, report_dir=args.report, delta=args.delta, model_drift=model_drift,
                      filter_tau=filter_tau, force=args.force, seed=args.seed, drift_tolerance=args.drift_tolerance)


def cmd_export(args):
    from .exporters import get_exporter
    from .fileio import check_output
    from .network import LatentRNN

    check_output(args.output, args.force, kind="dir" if args.format.startswith("brian2-") else "file")
    model = LatentRNN.load(args.model)
    export = get_exporter(args.format)
    options = {"trials": args.trials, "duration": args.duration, "seed": args.seed}
    if args.no_noise:
        options["noise"] = False
    if args.coupling:
        options["coupling"] = args.coupling
    given = {name: value for name, value in (("core_size", args.core_size), ("preset", args.preset))
             if value is not None}
    options.update(given)
    try:
        export(model, args.output, mode=args.mode, force=args.force, progress=not args.quiet, **options)
    except TypeError as exc:  # a format without core partitioning
        flag = next((f"--{k.replace('_', '-')}" for k in given if repr(k) in str(exc)), None)
        if flag is None:
            raise
        raise DDMError(f"--format {args.format} does not take {flag} (core partitioning: graphml, gexf, json)") from None
    return 0


def cmd_demo(args):
    from .demo import run_demo

    if args.force and args.resume:
        raise DDMError("--force starts the demo afresh and --resume reuses its model.ddm: give one of them")
    return run_demo(args.out, force=args.force, n_neurons=args.n, duration=args.duration,
                    trials=args.trials, quick=args.quick, progress=not args.quiet, resume=args.resume)


def cmd_constrain(args):
    from .fileio import check_output
    from .fit.hardware import constrain, preset_limits
    from .network import LatentRNN

    check_output(args.output, args.force)
    model = LatentRNN.load(args.model)
    bits, fan_in = args.bits, args.fan_in
    if args.preset:
        p_bits, p_fan_in = preset_limits(args.preset, model.n_neurons)
        bits = p_bits if bits is None else bits
        fan_in = p_fan_in if fan_in is None else fan_in
    out = constrain(model, bits=bits, fan_in=fan_in, sparsity=args.sparsity, dale=args.dale,
                    refit=not args.round_only, seed=args.seed, steps=args.steps, progress=not args.quiet)
    out.save(args.output, force=args.force)
    h = out.meta["hardware"]
    limits = ", ".join(f"{k}={v}" for k, v in (("bits", bits), ("fan-in", fan_in), ("sparsity", args.sparsity),
                                                ("dale", args.dale or None)) if v is not None)
    print(f"constrained {model.meta.get('sde_name')} N={model.n_neurons}: {limits} "
          f"({'quantisation-aware refit' if h['method'] == 'refit' else 'rounding only'})")
    if h["bits"]:
        print(f"  weights: {h['levels_used']} integer levels in [{h['level_range'][0]}, {h['level_range'][1]}] "
              f"x scale {h['scale']:.4g}; {h['nonzero_weights']} nonzero, fan-in <= {h['max_fan_in']}")
    else:
        print(f"  weights: {h['nonzero_weights']} nonzero, fan-in <= {h['max_fan_in']}")
    print(f"  held-out drift error     {100 * h['drift_error_before']:.3f} % -> {100 * h['drift_error']:.3f} %")
    print(f"  held-out diffusion error {100 * h['diffusion_error_before']:.3f} % -> {100 * h['diffusion_error']:.3f} %")
    print(f"  wall time {h['wall_time_s']:.1f} s; wrote {args.output}")
    return 0


def cmd_analyze(args):
    from .analysis import analyze, save_report, table
    from .analysis.report import check_report_folder
    from .network import LatentRNN
    from .run.rate import check_run_size

    if args.report:
        check_report_folder(args.report, args.force)  # before the (long) analysis, not after
    model = LatentRNN.load(args.model)
    check_run_size(model, args.duration, 2 * args.trials)  # the network's and the target's runs
    result = analyze(model, duration=args.duration, trials=args.trials, seed=args.seed, symmetric=args.symmetric,
                     currents=args.currents, switching=args.switching, progress=not args.quiet)
    files = save_report(result, args.report, force=args.force) if args.report else []
    if args.json:
        from .analysis import to_json

        print(to_json(result))
    else:
        print(table(result))
        if files:
            print(f"report: {files[0]} and {len(files) - 1} figure(s) in {args.report}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _threads(text):
    """argparse type: a thread count >= 1."""
    value = _seed(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_threads(s):
    s.add_argument("--threads", type=_threads, default=None, metavar="K",
                   help="CPU threads for torch and BLAS (default 1, or $DDM_NEURO_THREADS: one thread is fastest "
                        "for small networks and on a shared machine)")


def build_parser():
    """The argument parser (exposed for documentation and tests)."""
    p = _Parser(prog="ddm-neuro", description="Drift-diffusion matching: SDE -> recurrent network.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("systems", help="list built-in systems")
    s.add_argument("--show", metavar="NAME", help="print a built-in's spec as TOML")
    s.set_defaults(func=cmd_systems)

    s = sub.add_parser("fit", help="fit a network to an SDE")
    s.add_argument("system", help="built-in name (see 'systems') or a .toml spec file")
    s.add_argument("-n", type=int, default=512, help="number of neurons N (default 512)")
    s.add_argument("--neuron", choices=["tanh", "lif"], default=None,
                   help="neuron model (default tanh; lif with --spiking/--spike-budget)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--tau", type=_positive(float), default=0.02, help="neuron time constant in seconds (default 0.02)")
    _add_lif_options(s)
    s.add_argument("--time-scale", type=_positive(float), default=None,
                   help="seconds per SDE time unit (default: automatic)")
    s.add_argument("--steps", type=_seed, default=200, help="gradient refinement steps (0: closed form only)")
    s.add_argument("--spiking", action="store_true",
                   help="fit for a spiking LIF network: choose the ridge lambda for spike jitter as well as rate "
                        "accuracy (spike-noise budget 0.02 of the target's diffusion; implies --neuron lif)")
    s.add_argument("--spike-budget", type=_positive(float), default=None, metavar="RATIO",
                   help="as --spiking, with this budget: the spikes' predicted latent noise (Poisson count) over "
                        "the target's, at the verifier's lag")
    s.add_argument("--spike-drift-cap", type=_positive(float), default=None, metavar="ERR",
                   help="largest validation drift error the spiking lambda may accept for smaller decoders "
                        "(default 0.08)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="override an SDE parameter")
    s.add_argument("-o", "--output", required=True, help="model file to write (.ddm)")
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(s)
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("convert", help="refit a tanh model with LIF neurons (for spiking), keeping its tuning")
    s.add_argument("model")
    s.add_argument("--neuron", choices=["lif"], default="lif")
    _add_lif_options(s)
    s.add_argument("--steps", type=_seed, default=200, help="gradient refinement steps of the refit")
    s.add_argument("--seed", type=_seed, default=None, help="default: the model's own fit seed")
    s.add_argument("-o", "--output", required=True, help="model file to write (.ddm)")
    s.add_argument("--force", action="store_true")
    s.add_argument("--quiet", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("calibrate", help="calibrate a LIF model's spiking network in the loop (cancel its "
                       "measured drift error)")
    s.add_argument("model", help="a LIF model (.ddm, from fit --neuron lif or convert)")
    s.add_argument("--backend", default="torch",
                   help="spiking simulator of the calibration runs: torch (default), brian2, brian2-cpp; use the "
                        "one the model will run on (the correction is specific to it)")
    s.add_argument("--rounds", type=_seed, default=6,
                   help="most simulate-measure-refit rounds (default 6; 0 with --foci: only the foci calibration)")
    s.add_argument("--trials", type=_positive(int), default=128, help="short runs per round (default 128)")
    s.add_argument("--duration", type=_positive(float), default=1.0, help="SDE time units per run (default 1)")
    s.add_argument("--damping", type=float, default=1.0, help="share of each measured error cancelled (0-1]")
    s.add_argument("--noise", choices=["none", "remainder"], default="none",
                   help="noise of the calibration runs. none (default): the noise-free drift, windowed estimator "
                        "(deterministic targets). remainder: the model's noise on; drift and diffusion measured at "
                        "the verifier's lag against the target propagated from the same states, and both corrected "
                        "(stochastic targets: the noisy network's drift differs from its noise-free one)")
    s.add_argument("--near-fixed-points", type=float, default=0.0, metavar="SHARE",
                   help="share of the runs started near the target's fixed points instead of on its attractor "
                        "(chaotic targets: the holes around unstable fixed points, where a spiking Lorenz "
                        "collapses, are otherwise never measured; default 0)")
    s.add_argument("--foci", action="store_true",
                   help="then make runs started near each unstable focus of the target (a fixed point with a "
                        "growing spiral, e.g. Lorenz's C+-) leave it no later than the target's, raising the "
                        "spiral's growth there where they do not (a spiking Lorenz otherwise can collapse there)")
    s.add_argument("--foci-trials", type=_positive(int), default=8, help="runs per focus and step (default 8)")
    s.add_argument("--input", help="constant input of the calibration runs, NAME=VALUE (';' between inputs; "
                                   "default 0): calibrate at the input the network will run at")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("-o", "--output", required=True, help="model file to write (.ddm)")
    s.add_argument("--force", action="store_true")
    s.add_argument("--quiet", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("simulate", help="simulate a model and write a trajectory")
    s.add_argument("model")
    s.add_argument("--backend", default="torch", help="torch (default), target, or an installed plug-in")
    s.add_argument("--mode", default="rate", help="rate (default) or spiking where the backend supports it")
    s.add_argument("--duration", type=_positive(float), default=60.0, help="SDE time units (default 60)")
    s.add_argument("--trials", type=_positive(int), default=1)
    s.add_argument("--seed", type=_seed, default=0,
                   help="noise seed (default 0: repeated runs are identical unless you change it)")
    s.add_argument("--input", help="inputs: NAME=VALUE or NAME=T0:V0,T1:V1 (steps in SDE time); ';' between inputs")
    s.add_argument("--no-noise", action="store_true", help="simulate the noise-free network")
    s.add_argument("--coupling", choices=["factored", "dense"],
                   help="recurrent coupling: factored N->d->N or dense W (default: torch factored; "
                        "Brian2 dense up to 128 neurons, else factored)")
    s.add_argument("--spikes", action="store_true",
                   help="with --mode spiking: store the spike times in the trajectory (spikes_t, spikes_i)")
    s.add_argument("--figure", help="PNG to write: trial 0's latent, under its spike raster with --spikes")
    s.add_argument("-o", "--output", required=True, help="trajectory file to write (.npz)")
    s.add_argument("--force", action="store_true")
    s.add_argument("--quiet", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("export", help="write the network in another simulator's format (installed plug-ins)")
    s.add_argument("model")
    s.add_argument("--format", required=True, help="brian2-cpp, brian2-cuda, or another installed format")
    s.add_argument("--mode", default="rate", help="rate (default) or spiking where the format supports it")
    s.add_argument("--trials", type=_positive(int), default=1, help="independent copies side by side (default 1)")
    s.add_argument("--duration", type=_positive(float), default=60.0,
                   help="SDE time units: the default run (and input buffer) length; fixed for brian2-cuda")
    s.add_argument("--seed", type=_seed, default=0, help="seed baked into formats that cannot take one per run")
    s.add_argument("--no-noise", action="store_true", help="export the noise-free network")
    s.add_argument("--coupling", choices=["factored", "dense"], help="recurrent coupling (default by size)")
    s.add_argument("--core-size", type=int, help="graph formats: partition the neurons onto cores of this size")
    s.add_argument("--preset", help="graph formats: partition for a chip (loihi, loihi2, xylo, spinnaker)")
    s.add_argument("-o", "--output", required=True, help="folder to write")
    s.add_argument("--force", action="store_true", help="replace an existing output folder")
    s.add_argument("--quiet", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("verify", help="check a trajectory against the model's target SDE")
    s.add_argument("model")
    s.add_argument("trajectory")
    s.add_argument("--report", help="folder for report.json and figures")
    s.add_argument("--delta", type=float, default=None, help="lag for drift/diffusion (SDE units; default automatic)")
    s.add_argument("--seed", type=_seed, default=0,
                   help="seed of the reference runs and propagations (cells and lag depend on the trajectory "
                        "only; a verdict within its own noise is marked marginal)")
    s.add_argument("--drift-tolerance", type=_positive(float), default=None,
                   help="deterministic targets (noise 0) only: relative drift error accepted (default 0.03)")
    s.add_argument("--force", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("constrain", help="make the weights obey hardware limits (bits, fan-in, sparsity, Dale) and refit")
    s.add_argument("model")
    s.add_argument("--bits", type=int, default=None, help="weight bits on one shared scale (2..32)")
    s.add_argument("--fan-in", type=int, default=None, help="most nonzero incoming weights per neuron")
    s.add_argument("--sparsity", type=float, default=None, help="fraction of the N x N weights kept, in (0, 1]")
    s.add_argument("--dale", action="store_true", help="one sign per neuron's outgoing weights (Dale's law)")
    s.add_argument("--preset", help="a chip's published limits (loihi, loihi2, xylo, spinnaker); "
                                    "--bits/--fan-in override its values")
    s.add_argument("--round-only", action="store_true", help="round and mask only, no quantisation-aware refit")
    s.add_argument("--steps", type=_seed, default=300,
                   help="gradient steps of the refit (default 300; 0: compensated rounding only)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("-o", "--output", required=True, help="model file to write (.ddm)")
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(s)
    s.set_defaults(func=cmd_constrain)

    s = sub.add_parser("analyze", help="decompose a model: W_s/W_a, reversible/irreversible drift, entropy production")
    s.add_argument("model")
    s.add_argument("--report", metavar="DIR", help="folder for analysis.json and PNG figures")
    s.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    s.add_argument("--duration", type=_positive(float), default=100.0,
                   help="SDE time units per trial of each run (default 100)")
    s.add_argument("--trials", type=_positive(int), default=16, help="trials per run (default 16, at least 2)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--symmetric", action="store_true",
                   help="also fit a network with symmetric W (same N, neuron, seed) and compare")
    s.add_argument("--switching", action="store_true", help="success rate of cue pulses (input-driven models)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--currents", dest="currents", action="store_true", default=None,
                   help="probability currents and entropy production (default: on for 2 or more variables)")
    g.add_argument("--no-currents", dest="currents", action="store_false", help="skip them")
    s.add_argument("--force", action="store_true", help="overwrite files in the report folder")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(s)
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("demo", help="the main job: fit Lorenz, simulate, compare, verify, write figures")
    s.add_argument("--out", default="ddm_demo", help="output folder (default ./ddm_demo); each stage's files are "
                                                     "written there as it ends, and kept if interrupted")
    s.add_argument("--force", action="store_true", help="replace the demo files in an existing folder")
    s.add_argument("--resume", action="store_true", help="reuse the folder's model.ddm (from an interrupted demo)")
    s.add_argument("-n", type=_positive(int), default=512, help="neurons (default 512)")
    s.add_argument("--duration", type=_positive(float), default=60.0, help="SDE time units per trial (default 60)")
    s.add_argument("--trials", type=_positive(int), default=16, help="trials (default 16)")
    s.add_argument("--quick", action="store_true", help="small and short, for a smoke test")
    s.add_argument("--quiet", action="store_true")
    _add_threads(s)
    s.set_defaults(func=cmd_demo)
    return p


def _close_progress_bars():
    """End the progress bars an interruption left open, so the last line printed is ours."""
    tqdm = sys.modules.get("tqdm.std")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up (temporary files, child processes) runs."""


def _terminate_as_interrupt():
    """Turn SIGTERM into :class:`_Terminated` in the main thread; returns the previous handler (or None)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def main(argv=None):
    """Entry point of ``ddm-neuro``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    previous = _terminate_as_interrupt()
    try:
        configure_threads(getattr(args, "threads", None))
        return args.func(args)
    except DDMError as exc:
        _close_progress_bars()
        print(f"ddm-neuro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder that became unwritable, ...: the machine's, not ours
        _close_progress_bars()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"ddm-neuro {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except _Terminated:
        _close_progress_bars()
        print("ddm-neuro: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        _close_progress_bars()
        print("ddm-neuro: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
