"""The commands: each reads its arguments, calls the library, and prints what it did.

Every rule about what to run lives in the library; library functions are
looked up when a command runs (not bound at import), so a test's patch of
them takes effect.
"""
from __future__ import annotations

import sys

from ..errors import DDMError


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


def _model(path):
    from ..network import LatentRNN

    return LatentRNN.load(path)


def _input(model, text):
    """``--input`` text -> InputSignal (checked against the fitted input range), or None."""
    from ..run.inputs import parse_input_option

    return parse_input_option(text, model.inputs, model.sde().input_range if model.sde_spec else None) if text \
        else None


def _print_fit(model, path):
    from ..fit.matching import fit_summary, fit_warnings

    print(fit_summary(model, path))
    for text in fit_warnings(model):
        print(f"warning: {text}", file=sys.stderr)


def _options_refused(exc, flag, name):
    """A plug-in's :class:`~ddm_neuro.plugins.OptionError` in the flags' words."""
    from .. import plugins

    flags = {"record_spikes": "--spikes"}
    given = ", ".join(flags.get(k, "--" + k.replace("_", "-")) for k in exc.unknown)
    others = [n for n, p in plugins.plugins(exc.plugin.kind).items() if set(exc.unknown) <= set(p.options)]
    return DDMError(f"{flag} {name} does not take {given}" + (f" (taken by: {', '.join(others)})" if others else ""))


def cmd_systems(args):
    from ..sde.spec import to_toml
    from ..sde.systems import builtin_spec, list_systems

    if args.show:
        sys.stdout.write(to_toml(builtin_spec(args.show)))
        return 0
    width = max(map(len, list_systems()))
    for name, desc in list_systems().items():
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_fit(args):
    from ..fileio import check_output
    from ..fit.options import fit_settings, spike_ridge_summary
    from ..sde.load import load_sde

    check_output(args.output, args.force)
    settings = fit_settings(neuron=args.neuron, spiking=args.spiking, spike_budget=args.spike_budget,
                            spike_drift_cap=args.spike_drift_cap, tau_ref=args.tau_ref, max_rates=args.max_rates)
    sde = load_sde(args.system, _params(args.param))
    from ..fit.matching import fit

    model = fit(sde, n_neurons=args.n, seed=args.seed, tau=args.tau, time_scale=args.time_scale, steps=args.steps,
                progress=not args.quiet, **settings)
    model.save(args.output, force=args.force)
    _print_fit(model, args.output)
    if (text := spike_ridge_summary(model)):
        print(text)
    return 0


def cmd_convert(args):
    from ..fileio import check_output
    from ..fit.options import lif_neuron
    from ..spiking.convert import convert

    check_output(args.output, args.force)
    model = _model(args.model)
    out = convert(model, neuron=lif_neuron(args.neuron, args.tau_ref, args.max_rates), steps=args.steps,
                  seed=args.seed, progress=not args.quiet)
    out.save(args.output, force=args.force)
    print(f"converted {args.model} ({model.neuron.name}, held-out drift error "
          f"{100 * model.meta.get('fit', {}).get('drift_error', float('nan')):.4f} %) to {args.neuron}:")
    _print_fit(out, args.output)
    return 0


def cmd_calibrate(args):
    from ..fileio import check_output
    from ..spiking.calibration import calibrate

    check_output(args.output, args.force)
    model = _model(args.model)
    out = calibrate(model, rounds=args.rounds, foci=args.foci, duration=args.duration, trials=args.trials,
                    noise=args.noise, damping=args.damping, seed=args.seed, backend=args.backend,
                    u=_input(model, args.input), near_fixed_points=args.near_fixed_points,
                    foci_trials=args.foci_trials, progress=not args.quiet)
    out.save(args.output, force=args.force)
    if args.rounds:
        _print_drift_calibration(args, out.meta["spiking_calibration"], args.noise)
    if args.foci:
        _print_foci_calibration(out.meta["foci_calibration"])
    print(f"wrote {args.output}")
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
    import math

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


def cmd_simulate(args):
    from .. import plugins
    from ..fileio import check_output
    from ..run.plan import check_run_size

    check_output(args.output, args.force)
    if args.figure:
        from ..plots import check_figure_path

        check_figure_path(args.figure, args.force)
    if args.spikes and args.mode != "spiking":
        raise DDMError("--spikes records spikes of a spiking run: add --mode spiking")
    model = _model(args.model)
    plugins.get("simulator", args.backend, args.mode)
    check_run_size(model, args.duration, args.trials)
    options = {k: v for k, v in (("coupling", args.coupling), ("record_spikes", args.spikes or None)) if v}
    try:
        traj = plugins.simulate(model, args.duration, backend=args.backend, mode=args.mode, trials=args.trials,
                                seed=args.seed, u=_input(model, args.input), noise=False if args.no_noise else None,
                                progress=not args.quiet, **options)
    except plugins.OptionError as exc:
        raise _options_refused(exc, "--backend", args.backend) from None
    traj.save(args.output, force=args.force)
    print(f"wrote {args.output}: {traj.trials} trial(s) x {traj.duration:g} time units "
          f"({len(traj.t)} samples, dt={traj.dt:.3g}), backend {args.backend}, mode {args.mode}"
          + (f", {len(traj.spikes_t)} spikes" if traj.spikes_t is not None else ""))
    if args.figure:
        from ..plots import trajectory_figure

        trajectory_figure(traj, args.figure, n_neurons=model.n_neurons, variables=list(model.variables),
                          force=args.force)
        print(f"wrote {args.figure}: " + ("spike raster and latent" if traj.spikes_t is not None else "latent")
              + " of trial 0")
    return 0


def cmd_export(args):
    from .. import plugins
    from ..fileio import check_output

    check_output(args.output, args.force, kind="dir" if args.format.startswith("brian2-") else "file")
    model = _model(args.model)
    given = {"trials": args.trials, "duration": args.duration, "seed": args.seed, "coupling": args.coupling,
             "noise": False if args.no_noise else None, "core_size": args.core_size, "preset": args.preset}
    try:
        plugins.export(model, args.output, format=args.format, mode=args.mode, force=args.force,
                       progress=not args.quiet, **{k: v for k, v in given.items() if v is not None})
    except plugins.OptionError as exc:
        raise _options_refused(exc, "--format", args.format) from None
    return 0


def cmd_verify(args):
    from ..trajectory import Trajectory
    from ..verify.plan import check_report_folder, verify_arguments

    if args.report:
        check_report_folder(args.report, args.force)  # before the work, not after it
    model, traj = _model(args.model), Trajectory.load(args.trajectory)
    settings, notes = verify_arguments(model, traj, model_name=args.model, traj_name=args.trajectory)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    from ..verify import run_verify

    return run_verify(traj=traj, report_dir=args.report, delta=args.delta, force=args.force, seed=args.seed,
                      drift_tolerance=args.drift_tolerance, **settings)


def cmd_demo(args):
    from ..demo import run_demo

    return run_demo(args.out, force=args.force, n_neurons=args.n, duration=args.duration, trials=args.trials,
                    quick=args.quick, progress=not args.quiet, resume=args.resume)


def cmd_constrain(args):
    from ..fileio import check_output
    from ..fit.hardware import constrain
    from ..fit.options import constrain_limits

    check_output(args.output, args.force)
    model = _model(args.model)
    bits, fan_in = constrain_limits(model.n_neurons, preset=args.preset, bits=args.bits, fan_in=args.fan_in)
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
    from ..analysis.report import check_report_folder
    from ..run.plan import check_run_size

    if args.report:
        check_report_folder(args.report, args.force)  # before the (long) analysis, not after
    model = _model(args.model)
    check_run_size(model, args.duration, 2 * args.trials)  # the network's and the target's runs
    from ..analysis import analyze, save_report, table, to_json

    result = analyze(model, duration=args.duration, trials=args.trials, seed=args.seed, symmetric=args.symmetric,
                     currents=args.currents, switching=args.switching, progress=not args.quiet)
    files = save_report(result, args.report, force=args.force) if args.report else []
    print(to_json(result) if args.json else table(result))
    if files and not args.json:
        print(f"report: {files[0]} and {len(files) - 1} figure(s) in {args.report}")
    return 0
