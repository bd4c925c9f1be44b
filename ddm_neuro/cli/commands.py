"""The commands: ``cmd_<name>(args)`` passes ``args`` to the library and prints what was done; returns the exit
status (None: 0). Library functions are looked up when a command runs, so patches take effect and ``systems``
imports no torch."""
from __future__ import annotations

import sys

from .. import plugins
from ..fileio import check_output
from ..network import LatentRNN
from ..options import values
from ..run import options as run_options


def _load(args, output=True):
    """Refuse an existing output (before any work), then load the model."""
    if output:
        check_output(args.output, args.force)
    return LatentRNN.load(args.model)


def _say(text, warnings=(), notes=(), indent=""):
    """Print ``text`` (unless None), then the warnings and notes on stderr."""
    if text is not None:
        print(text)
    for line in [f"{indent}warning: {w}" for w in warnings] + [f"note: {n}" for n in notes]:
        print(line, file=sys.stderr)


def cmd_systems(args):
    from ..sde.spec import to_toml
    from ..sde.systems import builtin_spec, list_systems
    width = max(map(len, list_systems()))
    lines = [f"{name:<{width}}  {desc}\n" for name, desc in list_systems().items()]
    sys.stdout.write(to_toml(builtin_spec(args.show)) if args.show else "".join(lines))


def cmd_fit(args):
    from ..fit.options import FIT_SETTINGS, fit_report, fit_settings
    from ..sde.load import load_sde
    check_output(args.output, args.force)
    settings = fit_settings(**values(FIT_SETTINGS, args))
    from ..fit.matching import fit
    model = fit(load_sde(args.system, args.param), progress=not args.quiet, **settings)
    model.save(args.output, force=args.force)
    _say(*fit_report(model, args.output))


def cmd_convert(args):
    from ..fit.options import CONVERT, convert_settings
    from ..spiking import pipeline
    settings = convert_settings(**values(CONVERT, args))  # LIF parameters checked before any work
    given, run = values(pipeline.OPTIONS, args), dict(output=args.output, force=args.force, progress=not args.quiet)
    check_output(args.output, args.force)
    if given.pop("refit_only"):
        return pipeline.refit_command(settings=settings, **run, **given)
    return pipeline.convert_command(tau_ref=args.tau_ref, max_rates=args.max_rates, steps=args.steps, seed=args.seed,
                                    **run, **given)


def cmd_calibrate(args):
    from ..spiking.calibration import OPTIONS, calibrate, calibration_report
    model = _load(args)
    out = calibrate(model, progress=not args.quiet, **values(OPTIONS, args))
    out.save(args.output, force=args.force)
    _say(*calibration_report(out, model_path=args.model, backend=args.backend, noise=args.noise, rounds=args.rounds,
                             foci=args.foci), indent="  ")
    print(f"wrote {args.output}")


def cmd_simulate(args):
    from ..plots import check_figure_path, trajectory_figure
    from ..run.step_loop import engine_text
    check_output(args.output, args.force)
    if args.figure:
        check_figure_path(args.figure, args.force)
    model = _load(args, output=False)
    settings = run_options.simulate_settings(model, **values(run_options.SIMULATE, args))
    traj = plugins.simulate(model, progress=not args.quiet, **settings)
    traj.save(args.output, force=args.force)
    spikes = traj.spikes_t is not None
    print(f"wrote {args.output}: {traj.trials} trial(s) x {traj.duration:g} time units ({len(traj.t)} samples, "
          f"dt={traj.dt:.3g}), backend {args.backend}, mode {args.mode}" + engine_text(traj.meta)
          + (f", {len(traj.spikes_t)} spikes" if spikes else ""))
    if args.figure:
        trajectory_figure(traj, args.figure, n_neurons=int(traj.meta.get("n_neurons") or model.n_neurons),
                          variables=list(model.variables), force=args.force)
        print(f"wrote {args.figure}: {'spike raster and latent' if spikes else 'latent'} of trial 0")


def cmd_export(args):
    settings = run_options.export_settings(**values(run_options.EXPORT, args))
    check_output(args.output, args.force, kind=plugins.get("format", args.format).output)
    plugins.export(_load(args, output=False), args.output, force=args.force, progress=not args.quiet, **settings)


def cmd_verify(args):
    from .. import verify
    from ..trajectory import Trajectory
    from ..verify.options import OPTIONS
    if args.report:
        verify.check_report_folder(args.report, args.force)  # before the work, not after it
    model, traj = _load(args, output=False), Trajectory.load(args.trajectory)
    settings, notes = verify.verify_arguments(model, traj, model_name=args.model, traj_name=args.trajectory)
    _say(None, notes=notes)
    return verify.run_verify(traj=traj, report_dir=args.report, force=args.force, **settings,
                             **values(OPTIONS, args))


def cmd_constrain(args):
    from ..fit.hardware import constrain, constrain_summary
    from ..fit.options import CONSTRAIN, constrain_settings
    model = _load(args)
    settings = constrain_settings(model.n_neurons, **values(CONSTRAIN, args))
    out = constrain(model, progress=not args.quiet, **settings)
    out.save(args.output, force=args.force)
    print(constrain_summary(model, out, *map(settings.get, ("bits", "fan_in", "sparsity", "dale")), path=args.output))


def cmd_analyze(args):
    from .. import analysis
    from ..run.plan import check_run_size
    if args.report:
        analysis.report.check_report_folder(args.report, args.force)  # before the (long) analysis, not after
    model = _load(args, output=False)
    check_run_size(model, args.duration, 2 * args.trials)  # the network's and the target's runs
    result = analysis.analyze(model, duration=args.duration, trials=args.trials, seed=args.seed, currents=args.currents,
                              symmetric=args.symmetric, switching=args.switching, progress=not args.quiet)
    files = analysis.save_report(result, args.report, force=args.force) if args.report else []
    print(analysis.to_json(result) if args.json else analysis.table(result))
    if files and not args.json:
        print(f"report: {files[0]} and {len(files) - 1} figure(s) in {args.report}")


def cmd_demo(args):
    from ..demo import run_demo
    return run_demo(args.out, force=args.force, resume=args.resume, n_neurons=args.n, duration=args.duration,
                    trials=args.trials, quick=args.quick, progress=not args.quiet)
