"""The options of a run (``simulate``) and of an exported run (``export``): declared, checked, tied together.

:data:`SIMULATE` and :data:`EXPORT` declare them (rows as in
:mod:`ddm_neuro.options`: flag, type, default, help). :func:`simulate_settings`
checks a run's request before any work (options that do not go together, the
back end and mode, the run's size, the input) and returns the keywords of
:func:`ddm_neuro.plugins.simulate`; :func:`export_settings` those of
:func:`ddm_neuro.plugins.export`, passing on only the options given, so each
format fills in its own defaults; an option a back end or format does not
declare is refused up front, named by its flag. :func:`plugin_help` lists the
installed plug-ins with the options they declare.
"""
from __future__ import annotations

from ..errors import DDMError
from ..options import COUNT, FLAG, REQUIRED, SEED, SPAN

COUPLING = ("factored", "dense")
ENGINES = ("auto", "compiled", "torch")
#: The flag of a plug-in option whose flag is not its name.
FLAGS = {"record_spikes": "--spikes", "noise": "--no-noise"}
#: The options of a simulation (``input``: its ``u`` as text, :func:`model_input`).
SIMULATE = [
    ("--backend", str, "torch", "torch (default), target, or an installed plug-in (listed below)"),
    ("--mode", str, "rate", "rate (default) or spiking where the backend supports it"),
    ("--duration", SPAN, 60.0, "SDE time units (default 60)"), ("--trials", COUNT, 1, "trials (default 1)"),
    ("--seed", SEED, 0, "noise seed (default 0: repeated runs are identical unless you change it)"),
    ("--input", str, None, "inputs: NAME=VALUE or NAME=T0:V0,T1:V1 (steps in SDE time); ';' between inputs"),
    ("--no-noise", FLAG, None, "simulate the noise-free network"),
    ("--coupling", COUPLING, None, "recurrent coupling: factored N->d->N or dense W (default: torch and nest "
     "factored; Brian2 dense up to 128 neurons, else factored)"),
    ("--spikes", FLAG, None, "with --mode spiking: store the spike times in the trajectory (spikes_t, spikes_i)"),
    ("--engine", ENGINES, None, "torch back end: compiled (C++ step loop on the CPU, the default where g++ builds "
     "it) or torch (torch's tensor loop, any device)"),
    ("--device", str, None, "torch back end: cpu (default), or cuda / cuda:K for a GPU visible to torch")]
#: The options of an export (the format's own defaults apply to those not given).
EXPORT = [
    ("--format", str, REQUIRED, "brian2-cpp, brian2-cuda, or another installed format (listed below)"),
    ("--mode", str, "rate", "rate (default) or spiking where the format supports it"),
    ("--trials", COUNT, None, "independent copies side by side (default 1)"),
    ("--duration", SPAN, None, "SDE time units: the default run (and input buffer) length; fixed for brian2-cuda "
     "(default 60)"),
    ("--seed", SEED, None, "seed baked into formats that cannot take one per run (default 0)"),
    ("--dt", SPAN, None, "step the export is written for: SECONDS for nir (default 1e-4); SDE time units for the "
     "other formats that declare dt (listed below)"),
    ("--no-noise", FLAG, None, "export the noise-free network"),
    ("--coupling", COUPLING, None, "recurrent coupling (default by size)"),
    ("--core-size", int, None, "graph formats: partition the neurons onto cores of this size"),
    ("--preset", str, None, "graph formats: partition for a chip (loihi, loihi2, xylo, spinnaker)")]


def model_input(model, text):
    """``--input`` text read for ``model``: an :class:`~ddm_neuro.run.inputs.InputSignal`, or None without text.

    Values are checked against the input range the model was fitted on (where its SDE declares one).

    Parameters
    ----------
    model : LatentRNN
    text : str or None
        ``NAME=VALUE`` or ``NAME=T0:V0,T1:V1`` (steps in SDE time); ``;`` between inputs.

    Returns
    -------
    InputSignal or None
    """
    if not text:
        return None
    from .inputs import parse_input_option

    return parse_input_option(text, model.inputs, model.sde().input_range if model.sde_spec else None)


def simulate_settings(model, *, backend="torch", mode="rate", duration=60.0, trials=1, seed=0, input=None,
                      no_noise=False, coupling=None, spikes=False, engine=None, device=None):
    """The keywords of :func:`ddm_neuro.plugins.simulate` for a run of ``model``, checked before any work.

    Parameters
    ----------
    model : LatentRNN
    backend, mode, duration, trials, seed, coupling
        As :func:`ddm_neuro.plugins.simulate` (``coupling`` passed only when given).
    input : str, optional
        :func:`model_input` text.
    no_noise : bool
        The noise-free network (``noise=False``; else the mode's default).
    spikes : bool
        Store the spike times (``record_spikes``); spiking runs only.
    engine, device : str, optional
        The torch back end's step loop and device (passed only when given); a GPU
        asked for is looked for now.

    Returns
    -------
    dict

    Raises
    ------
    DDMError
        ``spikes`` outside spiking mode, an unknown back end, a mode or an option it
        does not take, a device that is not here, a run too large for this machine, or an
        input the model cannot take.
    """
    if spikes and mode != "spiking":
        raise DDMError("--spikes records spikes of a spiking run: add --mode spiking")
    from .plan import check_run_size

    options = {k: v for k, v in (("coupling", coupling), ("record_spikes", spikes), ("engine", engine),
                                 ("device", device)) if v}
    check_declared("simulator", backend, mode, options)
    if device is not None:
        from .step_loop import check_device

        check_device(device)
    torch_loop = engine == "torch" or (device or "cpu") != "cpu"
    check_run_size(model, duration, trials, coupling=coupling, buffered_steps=256 if torch_loop else 0)
    return {"duration": duration, "backend": backend, "mode": mode, "trials": trials, "seed": seed,
            "u": model_input(model, input), "noise": False if no_noise else None, **options}


def export_settings(*, format, mode="rate", trials=None, duration=None, seed=None, no_noise=False, coupling=None,
                    core_size=None, preset=None, dt=None):
    """The keywords of :func:`ddm_neuro.plugins.export`: the format, its mode, and the options given (not None).

    Parameters
    ----------
    format, mode
        As :func:`ddm_neuro.plugins.export`.
    trials, duration, seed, coupling, core_size, preset, dt : optional
        The format's options; those not given take the format's defaults.
    no_noise : bool
        Export the noise-free network (``noise=False``).

    Returns
    -------
    dict
        With ``threads`` (the command line's ``--threads K``, when K > 1) for a format that declares it.

    Raises
    ------
    DDMError
        An unknown format, or a mode or an option it does not take.
    """
    given = {"trials": trials, "duration": duration, "seed": seed, "noise": False if no_noise else None,
             "coupling": coupling, "core_size": core_size, "preset": preset, "dt": dt}
    given = {k: v for k, v in given.items() if v is not None}
    check_declared("format", format, mode, given)
    from .. import plugins
    from ..threads import threads_in_force

    if "threads" in plugins.get("format", format).options and threads_in_force() > 1:
        given["threads"] = threads_in_force()  # --threads K: a format that bakes in a thread count takes it
    return {"format": format, "mode": mode, **given}


def check_declared(kind, name, mode, options):
    """Refuse an unknown plug-in, a mode it does not take, or options it does not declare (named by flag).

    Parameters
    ----------
    kind : {"simulator", "format"}
    name, mode : str
    options : dict
        Option keywords as :func:`ddm_neuro.plugins.simulate` / :func:`~ddm_neuro.plugins.export` take them.

    Raises
    ------
    DDMError
        E.g. ``--format brian2-cpp does not take --core-size (taken by: gexf, graphml, json)``; a value
        outside an option's declared choices as :meth:`ddm_neuro.plugins.Plugin.resolve` words it.
    """
    from .. import plugins

    try:
        plugins.get(kind, name, mode).resolve(options)
    except plugins.OptionError as exc:
        flags = ", ".join(FLAGS.get(k, "--" + k.replace("_", "-")) for k in exc.unknown)
        takers = [n for n, p in plugins.plugins(kind).items() if set(exc.unknown) <= set(p.options)]
        raise DDMError(f"--{'backend' if kind == 'simulator' else 'format'} {name} does not take {flags}"
                       + (f" (taken by: {', '.join(takers)})" if takers else "")) from None


def plugin_help(kind):
    """The installed plug-ins of ``kind``, their modes and the options they declare, as lines (for ``--help``).

    Parameters
    ----------
    kind : {"simulator", "format"}

    Returns
    -------
    str
    """
    from .. import plugins

    lines = [f"installed {kind}s (modes), and the options they declare:"]
    for name, p in plugins.plugins(kind).items():
        lines.append(f"  {name} ({', '.join(p.modes)}): {p.help}")
        lines += [f"      {key}: {opt.help}" for key, opt in p.options.items()]
    return "\n".join(lines)
