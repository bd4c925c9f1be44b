"""One command from a rate model or an SDE spec to a spiking model that passes ``verify`` in a named back end.

The network (:func:`choose_network`): independent LIF neurons (the stages
below), or, in torch and brian2-cpp, a spike-coordinated network
(:mod:`~ddm_neuro.spiking.coordinated_conversion`: a tanh basis, delta tuned
to a rate, N from the spikes' measured jitter, verify), whose spikes need far
fewer neurons for the same spike noise.

:func:`convert_to_spiking` runs the stages below, each named on the progress
display, timed, and recorded in the model's ``meta["conversion"]``:

1. **check** (before any work): the back end is installed and runs spiking
   networks; the source can be carried (a model with hardware-constrained
   weights cannot: conversion re-solves its decoders); the output and the
   report folder may be written; an input lies in the target's input range.
2. **fit**: LIF neurons with the choices of :func:`choose` (a tanh source is
   refitted keeping its tuning, :func:`~ddm_neuro.spiking.convert.convert`,
   unless its size or time scale must change, when the fit starts from its SDE).
3. **spike noise**: the spikes' own latent noise at the lag ``verify`` judges
   (regular firing, :func:`~ddm_neuro.spiking.noise.spike_noise_excess`)
   against the target's diffusion. Where the spikes alone exceed
   :data:`SPIKE_NOISE_LIMIT` of it, N grows to what the estimate needs
   (``max_neurons`` caps it); above the cap the conversion stops here and says
   the N and the time the conversion would take.
4. **verify (as fitted)**, stochastic targets whose fit has under 2 % held-out drift error
   (:data:`VERIFY_FIRST_MAX_DRIFT_ERROR`): new runs in the back end,
   judged by :func:`~ddm_neuro.verify.core.verify` exactly as ``ddm-neuro
   verify`` judges them (a model with inputs: at the calibration input and at
   half its input range either way). A pass ends the conversion: calibration
   costs more than a verification and is not always needed.
5. **calibrate**, in the named back end (the correction is specific to it):
   the noise-free drift for deterministic targets, the noisy drift and
   diffusion for stochastic ones, then the escape from unstable foci where a
   deterministic target has them (Lorenz's C+-); a model with inputs is
   calibrated at the verification's input levels together, each level's
   error cancelled at that level; then **verify** on fresh runs
   (seeds the calibration did not draw). Deterministic chaotic targets are also
   counted for collapse onto a fixed point. On FAIL, once more with twice the
   calibration runs, and a third time with four times the runs when the second
   stopped with its measurement within its own noise. A verdict
   within a metric's own noise of its threshold (marginal) is decided by a
   second verification with twice the runs.
6. **write**: the model (``meta["conversion"]``: source, each choice and why,
   stage times, the verdicts) and the report folder (``summary.md``,
   ``conversion.json``, the verify report with its figures, ``run.png``: the
   latent under a spike raster).

An interruption (Ctrl-C) writes the best model so far to the output,
atomically, marked ``"interrupted"`` and not verified, and says where.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import plugins
from ..errors import DDMError
from ..options import APPEND, COUNT, FLAG

#: Starting N by latent dimension (1 and 2: 1000; 3 and more: 2000), when neither ``n_neurons`` nor the source sets it.
DEFAULT_N = {1: 1000, 2: 1000}
#: Default cap on N (the estimate of what the spike noise needs may raise N up to it).
MAX_NEURONS = 4000
#: LIF refractory period (s): the refractory period sets the spike noise of regular firing (2 ms gave the latent
#: 196x Lorenz's diffusion at N = 2000, 0.05 ms 4.2x: benchmarks/RESULTS_spiking.md, section 7).
TAU_REF = 5e-5
#: Back ends whose LIF neuron has no refractory period (NIR's CubaLIF, run by each NIR consumer).
NO_REFRACTORY = ("norse", "snntorch", "rockpool", "spyx")
#: Back ends that place at most one spike per neuron per step (Brian2): tau_ref must be at least their step
#: (0.1 ms at most), so they get this refractory period rather than a step half as long (twice the run time).
ONE_SPIKE_PER_STEP = {"brian2": 1e-4, "brian2-cpp": 1e-4, "brian2-cuda": 1e-4, "nest": 2.5e-5}
#: Time-scale ratio of chaotic targets (FitConfig.ratio): slower latent dynamics against tau; Lorenz's spiking
#: drift error fell from 10.7 % to 5.5 % before calibration (RESULTS_spiking.md, section 1).
CHAOTIC_RATIO = 0.1
#: Largest spike-noise ratio (spikes alone over the target's diffusion, worst direction) a stochastic target
#: accepts: the remainder injected as private noise must stay positive, with room for the estimate's error.
SPIKE_NOISE_LIMIT = 0.8
#: Largest excess of the realised diffusion (spikes plus the private noise they leave, clipped at zero per neuron)
#: over the target's, worst direction: where spikes alone exceed a neuron's private noise the clipped remainder
#: cannot take it back (a damped pendulum with 10x less noise on its angle: 1.57x at N = 400, FAIL on diffusion).
TOTAL_EXCESS_LIMIT = 0.05
#: Calibration runs (trials, duration in time units, most rounds): stochastic targets need long runs (the error's
#: noise falls with the total time), deterministic ones many short runs.
CALIBRATION = {"stochastic": (32, 125.0, 4), "deterministic": (128, 1.0, 6)}
#: Gradient refinement steps of a stochastic target's fit (deterministic targets: 0, closed form).
STOCHASTIC_STEPS = 100
#: Verification runs (trials, duration): as the benchmarks judge them; deterministic chaotic targets 20 x 100,
#: which also counts collapse.
VERIFY_RUNS = {"stochastic": (8, 250.0), "deterministic": (8, 60.0), "chaotic": (20, 100.0)}
#: A run has collapsed when the std of every variable over its last third is below this share of the target's.
COLLAPSE_SHARE = 0.25
#: Seconds per neuron and 0.1 ms step of a spiking run on one core, noise-free and noisy, for rough time
#: estimates (benchmarks/RESULTS_speed.md: compiled step loop 4.9-5.5 ns beside a busy process, plus about 8.5 ns
#: per normal with noise; Brian2 C++ 13 ns noise-free).
#: NEST: 24-174 ns per neuron and 0.025 ms step (its default; 4 of them per 0.1 ms) plus a Python call per step
#: (RESULTS_nest.md); Rockpool: 1.27 us, a calibration round of 32 runs x 126 units at N = 200 took 397 s
#: (RESULTS_nir.md, 2026-12-07).
SECONDS_PER_NEURON_STEP = {"torch": (6e-9, 1.5e-8), "brian2-cpp": (1.5e-8, 3e-8), "nest": (3e-7, 3.5e-7),
                           "rockpool": (1.3e-6, 1.3e-6)}
#: The same for back ends not measured (Brian2 runtime, Norse, ...).
SECONDS_PER_NEURON_STEP_OTHER = (5e-8, 1e-7)
#: A stochastic target's fit is verified before any calibration only when its held-out drift error is below this
#: (a scheduling rule, not a verdict: the double well at N = 1000, 4.25 %, failed verify's drift as fitted; the
#: rotational OU, 0.39 %, passed without calibration).
VERIFY_FIRST_MAX_DRIFT_ERROR = 0.02
#: About this many spikes are recorded for the report's raster (one short run).
RASTER_SPIKES = 200_000
#: The spiking networks a conversion can build (``--network``).
NETWORKS = ("auto", "independent", "coordinated")
#: Seed offset of the verification runs (the calibration draws its run seeds from ``seed`` itself).
VERIFY_SEED = 104729


#: The options of the full conversion (the command line's ``convert``, with
#: :data:`ddm_neuro.fit.options.CONVERT`'s neuron, steps and seed).
OPTIONS = [
    ("source", str, None, "a fitted model (.ddm), a built-in system name, or a .toml spec"),
    ("--backend", str, "torch", "spiking simulator the model will run on: it is calibrated and verified there "
     "(torch, brian2-cpp, brian2, nest, ...; default torch)"),
    ("-n N", COUNT, None, "starting N (default: the source model's; a system: 1000 for 1-2 variables, 2000 "
     "above; a coordinated network: 200)", "n_neurons"),
    ("--max-neurons N", COUNT, None, f"largest N the spike noise may raise it to (default {MAX_NEURONS}); above it "
     "the conversion stops before any calibration and says the N it needs"),
    ("--input INPUT", str, None, "base input of calibration and verification, NAME=VALUE (';' between inputs; "
     "default 0); both also run halfway from the input range's centre to either end", "u"),
    ("--param NAME=VALUE", APPEND, None, "override an SDE parameter (a system or spec source)"),
    ("--report DIR", str, None, "report folder: summary.md, conversion.json, the verify report and figures "
     "(default: the output's name with _report)"),
    ("--network KIND", str, "auto", "spiking network: independent (LIF neurons, calibrated), coordinated (spikes "
     "coordinated through delay-free rank-d inhibition: far fewer neurons for the same spike noise; torch "
     "and brian2-cpp) or auto (default: coordinated in torch and brian2-cpp unless a LIF source, "
     "--tau-ref or --max-rates asks for LIF neurons; independent otherwise)"),
    ("--refit-only", FLAG, None, "only refit a tanh model with LIF neurons keeping its tuning: no calibration, no "
     "verification (what convert did before)")]


@dataclass
class Choice:
    """One choice of the conversion, with the reason (or ``"given"``)."""

    value: object
    why: str

    def to_dict(self):
        return {"value": self.value, "why": self.why}


@dataclass
class Conversion:
    """What :func:`convert_to_spiking` returns.

    Attributes
    ----------
    model : LatentRNN or None
        The converted model (None when the conversion stopped before a fit).
    passed : bool
        ``verify`` passed on the held-out runs (and, for chaotic deterministic targets, no run collapsed).
    status : str
        ``"passed"``, ``"failed"``, ``"stopped"`` (a limit, said in ``reason``) or ``"interrupted"``.
    reason : str
        Why it stopped or failed (empty when it passed).
    choices : dict of str to Choice
    stages : list of dict
        ``{"name", "seconds", ...}`` per stage run.
    reports : list
        The verify :class:`~ddm_neuro.verify.report.Report` of each input level of the last verification.
    traj : Trajectory or None
        The last verification run (the first input level; no spikes recorded).
    raster : Trajectory or None
        A short run of the verified model with its spikes (the report's ``run.png``).
    """

    model: object = None
    passed: bool = False
    status: str = "running"
    reason: str = ""
    choices: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    traj: object = None
    raster: object = None

    def failed_metrics(self):
        """The sorted names of the metrics that failed in any report of the last verification."""
        return sorted({k for r in self.reports for k, m in r.metrics.items() if not m["passed"]})

    def to_dict(self):
        """The JSON record (``meta["conversion"]`` and ``conversion.json``)."""
        return {"status": self.status, "passed": self.passed, "reason": self.reason,
                "choices": {k: c.to_dict() for k, c in self.choices.items()}, "stages": self.stages}


class _Stages:
    """The progress display: one line per stage (``[elapsed] name: what``), its time, and the record."""

    def __init__(self, result, progress):
        self.result, self.progress, self.t0, self.current = result, progress, None, None
        self.start_time = time.perf_counter()

    def start(self, name, text):
        self.end()
        self.current, self.t0 = {"name": name}, time.perf_counter()
        if self.progress:
            print(f"[{self.t0 - self.start_time:5.0f} s] {name}: {text}", flush=True)

    def note(self, **info):
        self.current.update(info)

    def say(self, text):
        if self.progress:
            print(f"      {text}", flush=True)

    def end(self):
        if self.current is not None:
            self.current["seconds"] = round(time.perf_counter() - self.t0, 1)
            self.result.stages.append(self.current)
            self.current = None


def target_kind(sde, z_vis, u0=None):
    """``"deterministic"`` (no diffusion on the visited states) or ``"stochastic"``."""
    from ..verify.deterministic import is_deterministic

    return "deterministic" if is_deterministic(sde, z_vis, u0) else "stochastic"


def run_seconds(backend, n_neurons, time_scale, trials, duration, noisy=True, dt=1e-4):
    """Rough seconds of spiking runs (``trials`` x ``duration`` time units) in ``backend`` on one core."""
    cost = SECONDS_PER_NEURON_STEP.get(backend, SECONDS_PER_NEURON_STEP_OTHER)[bool(noisy)]
    return cost * n_neurons * trials * duration * time_scale / dt


def choose(sde, *, backend, kind, chaotic, source=None, n_neurons=None, max_neurons=None, tau_ref=None,
           steps=None, foci=False):
    """The conversion's choices, each with its reason (``"given"`` for what the caller set).

    Parameters
    ----------
    sde : SDE
    backend : str
    kind : {"deterministic", "stochastic"}
    chaotic : bool
        The target is tagged chaotic.
    source : LatentRNN, optional
        A fitted model to start from (its N and neuron model count as choices).
    n_neurons, max_neurons, tau_ref, steps : optional
        Given values (None: chosen here).
    foci : bool
        The deterministic target has unstable foci on its attractor.

    Returns
    -------
    dict of str to Choice
    """
    c = {}
    if n_neurons is not None:
        c["n_neurons"] = Choice(int(n_neurons), "given")
    elif source is not None:
        c["n_neurons"] = Choice(source.n_neurons, "the source model's N")
    else:
        n = DEFAULT_N.get(sde.dim, 2000)
        c["n_neurons"] = Choice(n, f"the starting size for a {sde.dim}-D target; the spike-noise stage may raise it")
    cap = MAX_NEURONS if max_neurons is None else int(max_neurons)
    c["max_neurons"] = Choice(max(cap, c["n_neurons"].value) if max_neurons is None else cap,
                              "given" if max_neurons is not None else "the default cap (--max-neurons)")
    if tau_ref is not None:
        c["tau_ref"] = Choice(float(tau_ref), "given")
    elif backend in NO_REFRACTORY:
        c["tau_ref"] = Choice(0.0, f"{backend}'s LIF neuron has no refractory period")
    elif backend in ONE_SPIKE_PER_STEP:
        c["tau_ref"] = Choice(ONE_SPIKE_PER_STEP[backend], f"{backend} places one spike per neuron per step, so "
                              "tau_ref must be at least its step (0.1 ms); short, for small spike noise")
    else:
        c["tau_ref"] = Choice(TAU_REF, "a short refractory period makes regular firing's spike noise small "
                                       "(2 ms: 196x Lorenz's diffusion at N = 2000; 0.05 ms: 4.2x)")
    if chaotic:
        c["time_scale_ratio"] = Choice(CHAOTIC_RATIO, "chaotic target: slower latent dynamics against tau halve the "
                                                      "spiking drift error, which decides a chaotic attractor's "
                                                      "stability")
    else:
        c["time_scale_ratio"] = Choice(None, "the fit's default time scale")
    if kind == "stochastic":
        from ..fit.matching import SPIKING_BUDGET

        c["spike_budget"] = Choice(SPIKING_BUDGET, "stochastic target: decoders chosen for spike jitter as well as "
                                                   "rate accuracy (fit --spiking)")
    else:
        c["spike_budget"] = Choice(None, "deterministic target: decoders chosen for rate accuracy")
    if steps is not None:
        c["steps"] = Choice(int(steps), "given")
    elif kind == "stochastic":
        c["steps"] = Choice(STOCHASTIC_STEPS, "refinement more than halves the fit's drift error (double well, "
                                              "N = 1000: 4.25 % -> 1.78 %), and the noisy calibration cannot "
                                              "resolve errors below a few per cent")
    else:
        c["steps"] = Choice(0, "closed-form fit: the noise-free calibration corrects what refinement would")
    trials, duration, rounds = CALIBRATION[kind]
    c["calibration"] = Choice(
        {"noise": "remainder" if kind == "stochastic" else "none", "trials": trials, "duration": duration,
         "rounds": rounds, "foci": bool(foci and kind == "deterministic")},
        ("stochastic target: the noisy network's drift and diffusion, long runs" if kind == "stochastic" else
         "deterministic target: the noise-free drift, many short runs")
        + ("; then the escape from its unstable foci" if foci and kind == "deterministic" else ""))
    runs = VERIFY_RUNS["chaotic" if chaotic and kind == "deterministic" else kind]
    c["verify_runs"] = Choice(list(runs), "as the benchmarks judge this kind of target"
                              + ("; 20 x 100 also counts collapse" if chaotic and kind == "deterministic" else ""))
    return c


def collapsed_runs(traj, z_vis):
    """Indices of the runs of ``traj`` whose every variable's std over the last third is below
    :data:`COLLAPSE_SHARE` of the target's (``z_vis``: its visited states)."""
    tail = traj.z[:, 2 * traj.z.shape[1] // 3:]
    ref = z_vis.std(0)
    return [i for i in range(traj.trials) if np.all(tail[i].std(0) < COLLAPSE_SHARE * ref)]


def load_source(text, params=None):
    """The conversion's source: a model file (``.ddm``) or a target (built-in name or ``.toml`` spec).

    Parameters
    ----------
    text : str
    params : list of str, optional
        ``NAME=VALUE`` parameter overrides (a target only).

    Returns
    -------
    LatentRNN or SDE
    """
    if str(text).endswith(".ddm"):
        if params:
            raise DDMError("--param overrides a system's parameters; a model file carries its own SDE "
                           "(fit it again with --param)")
        from ..network import LatentRNN

        return LatentRNN.load(text)
    from ..sde.load import load_sde

    return load_sde(text, params)


def choose_network(given, *, backend, kind, source=None):
    """The spiking network a conversion builds, and why: ``(network, why)``.

    ``given["network"]`` other than ``"auto"`` is taken as given. ``auto``
    builds a spike-coordinated network in a back end that runs one (torch,
    brian2-cpp: ``Plugin.coordinated``), unless LIF neurons are asked for (a
    LIF source, ``--tau-ref`` or ``--max-rates``): coordinated spikes need far
    fewer neurons for the same spike noise, and their conversions passed every
    system tried but FitzHugh-Nagumo (noise-free Lorenz included), in a tenth
    of the time of independent LIF conversions
    (``benchmarks/RESULTS_conversion.md``). Otherwise independent LIF
    neurons: the other back ends do not run coordinated networks.
    ``kind`` is kept for the record (both kinds convert either way).
    """
    if given["network"] != "auto":
        return given["network"], "given"
    if not plugins.get("simulator", backend).coordinated:
        return "independent", f"auto: {backend} does not run spike-coordinated networks"
    if source is not None and source.neuron.name == "lif":
        return "independent", "auto: the source is a LIF model"
    if given.get("tau_ref") is not None or given.get("max_rates") is not None:
        return "independent", "auto: LIF parameters given (--tau-ref, --max-rates)"
    return "coordinated", (f"auto: a {kind} target in {backend}, where coordinated spikes need far fewer neurons than "
                           "independent LIF neurons for the same spike noise (--network independent for LIF neurons)")


def check_refit_only(*, source, backend="torch", n_neurons=None, max_neurons=None, u=None, param=None, report=None,
                     network="auto"):
    """Refuse ``--refit-only`` with options of the full conversion, or with a source that is not a model file."""
    given = [flag for flag, v in (("--backend", backend != "torch"), ("--max-neurons", max_neurons),
                                  ("-n", n_neurons), ("--input", u), ("--param", param), ("--report", report),
                                  ("--network", network != "auto")) if v]
    if given:
        raise DDMError(f"--refit-only refits the model and stops: {', '.join(given)} apply to the full conversion")
    if not str(source).endswith(".ddm"):
        raise DDMError(f"--refit-only refits a fitted tanh model (.ddm), not {source!r}")


def refit_command(source, output, *, settings, force=False, progress=True, **given):
    """``ddm-neuro convert --refit-only``: refit a tanh model with LIF neurons keeping its tuning, print the fit.

    ``settings``: :func:`ddm_neuro.fit.options.convert_settings`' keywords; ``given``: the full conversion's
    options, refused when set (:func:`check_refit_only`).
    """
    import sys

    from ..fit.options import fit_report
    from ..network import LatentRNN
    from .convert import convert

    check_refit_only(source=source, **given)
    out = convert(LatentRNN.load(source), progress=progress, **settings)
    out.save(output, force=force)
    text, warnings = fit_report(out, output)
    print(text)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def convert_command(source, output, *, report=None, param=None, seed=None, progress=True, **options):
    """``ddm-neuro convert``: load ``source``, convert (:func:`convert_to_spiking`), print the verdict line.

    Parameters
    ----------
    source : str
        A model file, a built-in system or a spec (:func:`load_source`; ``param`` overrides).
    output : str or Path
    report : str or Path, optional
        Default :func:`default_report` of ``output``.
    seed : int, optional
        Default 0.
    progress : bool
    **options
        :func:`convert_to_spiking`'s (``backend``, ``n_neurons``, ``force``, ...).

    Returns
    -------
    int
        0 when the last verification passes, 1 when it fails.
    """
    import sys

    report = report or default_report(output)
    result = convert_to_spiking(load_source(source, param), output=output, report_dir=report,
                                seed=0 if seed is None else seed, progress=progress, **options)
    from .coordinated import coordinated, spiking_neurons

    total = sum(s["seconds"] for s in result.stages)
    what = (f"{spiking_neurons(result.model)} coordinated spiking neurons and {result.model.n_neurons} tanh basis "
            "units" if coordinated(result.model) else f"{result.model.n_neurons} spiking LIF neurons")
    print(f"{'PASS' if result.passed else 'FAIL'}: {source} as {what} in {options.get('backend', 'torch')}, "
          "verified on fresh runs" + ("" if coordinated(result.model) else " the calibration did not use")
          + f" ({total / 60:.1f} min); wrote {output}; report in {report}/")
    if result.reason:
        print(f"  {result.reason}", file=sys.stderr)
    return 0 if result.passed else 1


def default_report(output):
    """The report folder next to ``output``: its name without ``.ddm``, plus ``_report``."""
    out = Path(output)
    return out.with_name(out.stem + "_report")


def calibration_level(sde, u):
    """The constant calibration input: None, a ``--input`` text, an array or a constant InputSignal; checked
    against the target's inputs and input range."""
    from ..run.inputs import InputSignal, parse_input_option

    if u is None:
        return None
    if isinstance(u, str):
        u = parse_input_option(u, sde.inputs, sde.input_range)
    if isinstance(u, InputSignal):
        if len(u.times) > 1:
            raise DDMError("--input: the conversion calibrates at a constant input (NAME=VALUE), not steps")
        u = u.values[0]
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    if not sde.n_inputs or len(u) != sde.n_inputs:
        raise DDMError(f"--input: the target has {sde.n_inputs} input(s), got {len(u)} value(s)")
    for name, v in zip(sde.inputs, u):
        lo, hi = sde.input_range.get(name, (-np.inf, np.inf))
        if not lo <= v <= hi:
            raise DDMError(f"--input {name}={v:g} is outside the target's input range [{lo:g}, {hi:g}]")
    return u


def check_source(model):
    """Refuse a model the spiking conversion cannot carry, with what to do instead."""
    if model.w_perp is not None or model.meta.get("constrained") or model.meta.get("hardware"):
        raise DDMError("the model has hardware-constrained weights: a spiking conversion re-solves its decoders "
                       "and would lose the constraints; convert the unconstrained model, then constrain the result")
    if model.neuron.name not in ("tanh", "lif"):
        raise DDMError(f"conversion starts from a tanh or LIF model (this one has {model.neuron.name!r} neurons)")


def convert_to_spiking(source, *, backend="torch", output=None, report_dir=None, force=False, n_neurons=None,
                       max_neurons=None, tau_ref=None, max_rates=None, steps=None, u=None, seed=0, progress=True,
                       sde=None, fit_options=None, calibration=None, verify_runs=None, network="auto"):
    """Convert ``source`` to a spiking model that passes ``verify`` in ``backend`` (module docstring).

    Parameters
    ----------
    source : LatentRNN or SDE
        A fitted model (tanh or LIF) or a target SDE.
    backend : str
        Spiking simulator the model will run on (calibrated and verified there).
    output : str or Path, optional
        Model file to write (checked before any work; the best model so far goes there on Ctrl-C).
    report_dir : str or Path, optional
        Report folder (summary, conversion record, verify report and figures).
    force : bool
        Overwrite an existing output and report.
    n_neurons, max_neurons, tau_ref, steps : optional
        Override the choices (:func:`choose`).
    max_rates : (float, float), optional
        LIF maximum-rate range in Hz (default the LIF model's).
    u : None, str, array (k,) or InputSignal, optional
        Constant input of the calibration (models with inputs; default zero; a text as ``--input``).
    seed : int
        Seeds the fit, the calibration runs and (offset by :data:`VERIFY_SEED`) the verification runs.
    progress : bool
    sde : SDE, optional
        The target when ``source`` is a model (default ``source.sde()``).
    fit_options : dict, optional
        More keywords of the fit (:class:`~ddm_neuro.fit.matching.FitConfig`: ``n_train``, ...).
    calibration : dict, optional
        Override parts of the calibration choice (``trials``, ``duration``, ``rounds``).
    verify_runs : (int, float), optional
        Verification runs (trials, duration) instead of :data:`VERIFY_RUNS`' (fewer judge less sharply).
    network : {"auto", "independent", "coordinated"}
        Independent LIF neurons (calibrated), a spike-coordinated network
        (:mod:`~ddm_neuro.spiking.coordinated_conversion`; torch and brian2-cpp), or auto
        (:func:`choose_network`: coordinated in torch and brian2-cpp unless LIF neurons are asked for).

    Returns
    -------
    Conversion

    Raises
    ------
    DDMError
        Bad input (see the checks), or N above ``max_neurons`` (raised before anything is written:
        the message names the N and the time the conversion would take).
    """
    from ..fileio import check_output
    from ..network import LatentRNN
    from ..verify.options import check_report_folder

    if network not in NETWORKS:
        raise DDMError(f"--network must be one of {', '.join(NETWORKS)} (got {network!r})")
    plugin = plugins.get("simulator", backend, "spiking")
    if network == "coordinated" and not plugin.coordinated:
        raise DDMError(f"--network coordinated runs only in the torch and brian2-cpp back ends (its delay-free "
                       f"rank-d inhibition and microsecond steps are not in {backend}); use --backend torch")
    plugin.load()  # installed? (a missing package: one line with the pip install that adds it)
    model0 = source if isinstance(source, LatentRNN) else None
    if model0 is not None:
        check_source(model0)
        sde = model0.sde() if sde is None else sde
        step = ONE_SPIKE_PER_STEP.get(backend)
        if model0.neuron.name == "lif" and step and model0.neuron.params["tau_ref"] < step and n_neurons is None:
            raise DDMError(f"{backend} places one spike per neuron per step: this LIF model's tau_ref "
                           f"({1e3 * model0.neuron.params['tau_ref']:g} ms) is below its step ({1e3 * step:g} ms); "
                           "convert the rate model or the system instead, or refit with --tau-ref 0.0001")
    else:
        sde = source
    u0 = calibration_level(sde, u)
    if tau_ref is not None or max_rates is not None:  # LIF parameters the LIF model refuses: said now
        from ..fit.options import lif_neuron

        lif_neuron("lif", tau_ref, max_rates)
        if tau_ref is not None and tau_ref < ONE_SPIKE_PER_STEP.get(backend, 0.0):
            raise DDMError(f"--tau-ref {tau_ref:g}: {backend} places one spike per neuron per step, so tau_ref must "
                           f"be at least its step ({ONE_SPIKE_PER_STEP[backend]:g} s)")
    for k, v in (("-n", n_neurons), ("--max-neurons", max_neurons)):
        if v is not None and int(v) < 1:
            raise DDMError(f"{k} must be >= 1 (got {v})")
    if n_neurons is not None and max_neurons is not None and int(n_neurons) > int(max_neurons):
        raise DDMError(f"-n {n_neurons} is above --max-neurons {max_neurons}")
    if output is not None:
        check_output(output, force)
    if report_dir is not None:
        check_output(report_dir, force, kind="dir") if not Path(report_dir).exists() else \
            check_report_folder(report_dir, force)

    result = Conversion()
    stages = _Stages(result, progress)
    best = {"model": None}
    try:
        _run(result, stages, best, sde, model0, plugin, u0, seed, progress,
             given={"n_neurons": n_neurons, "max_neurons": max_neurons, "tau_ref": tau_ref, "max_rates": max_rates,
                    "steps": steps, "fit_options": dict(fit_options or {}), "calibration": dict(calibration or {}),
                    "verify_runs": verify_runs, "network": network})
    except KeyboardInterrupt:
        stage = stages.current["name"] if stages.current else "?"
        stages.end()
        result.status, result.reason = "interrupted", f"interrupted during the {stage} stage"
        if best["model"] is not None and output is not None:
            out = _stamp(best["model"], result, source)
            out.save(output, force=True)
            print(f"\ninterrupted during the {stage} stage: kept the best model so far ({best['why']}; not "
                  f"verified) in {output}")
        else:
            print(f"\ninterrupted during the {stage} stage: nothing kept ("
                  + ("no model fitted yet)" if best["model"] is None else "no output file given)"))
        raise
    stages.start("write", "the model and the report")
    result.model = _stamp(result.model, result, source)
    if output is not None:
        result.model.save(output, force=force)
        stages.say(f"wrote {output}")
    if report_dir is not None:
        files = write_report(result, report_dir, force=force, variables=list(sde.variables))
        stages.say(f"report: {len(files)} files in {report_dir}")
    stages.end()
    return result


def _stamp(model, result, source):
    """A copy of ``model`` with the conversion's provenance in ``meta["conversion"]``."""
    from .. import __version__
    from ..modelio import model_id

    out = copy.deepcopy(model)
    src = ({"model_id": source.meta.get("model_id") or model_id(source), "neuron": source.neuron.name,
            "n_neurons": source.n_neurons} if hasattr(source, "neuron") else {"sde": source.name})
    out.meta["conversion"] = {**result.to_dict(), "source": src, "ddm_neuro": __version__,
                              "verify": [_verdict(r) for r in result.reports]}
    return out


def _verdict(report):
    return {"passed": report.passed, "input": report.info.get("input"),
            "metrics": {k: {"value": m["value"], "threshold": m["threshold"], "passed": m["passed"]}
                        for k, m in report.metrics.items()}}


def _fit(sde, choices, seed, progress, source=None, fit_options=None, steps=None):
    """Fit (or refit, keeping a tanh source's tuning) LIF neurons with ``choices`` (``steps``: override theirs)."""
    from ..fit.matching import fit
    from ..neurons import make_neuron
    from .convert import convert

    lif = {"name": "lif", "tau_ref": choices["tau_ref"].value}
    if "max_rates" in choices:
        lif["max_rates"] = tuple(choices["max_rates"].value)
    neuron = make_neuron(lif).to_dict()
    options = {"steps": choices["steps"].value if steps is None else steps, "progress": progress,
               **(fit_options or {})}
    if choices["spike_budget"].value is not None:
        options["spike_budget"] = choices["spike_budget"].value
    ratio = choices["time_scale_ratio"].value
    n = choices["n_neurons"].value
    if source is not None and source.neuron.name == "tanh" and source.n_neurons == n and ratio is None:
        return convert(source, sde, neuron=neuron, seed=seed, **options), "refitted the tanh model, keeping its tuning"
    kw = {"ratio": ratio} if ratio is not None else {}
    why = "fitted from the target SDE"
    if source is not None and source.neuron.name == "tanh":
        why += (" (the tanh model's tuning is not kept: " + ("N changes" if source.n_neurons != n else
                                                              "the time scale changes") + ")")
    return fit(sde, n_neurons=n, neuron=neuron, seed=seed, **kw, **options), why


def _run(result, stages, best, sde, model0, plugin, u0, seed, progress, given):
    """The stages after the checks (module docstring); ``given``: the caller's overrides of the choices."""
    from .calibration import calibrate, cue_levels
    from .drift_calibration import SETTLED
    from .noise import spike_noise_excess, verify_lag
    from .states import attractor_states
    from .unstable_foci import unstable_foci

    backend = plugin.name
    stages.start("check", f"the target and what it needs in {backend}")
    rng = np.random.default_rng(seed)
    z_vis = attractor_states(sde, rng, u0)
    kind = target_kind(sde, z_vis, u0)
    chaotic = "chaotic" in sde.tags
    foci = bool(kind == "deterministic" and unstable_foci(sde, z_vis, rng, u0))
    given_lif = model0 is not None and model0.neuron.name == "lif"
    result.choices = choose(sde, backend=backend, kind=kind, chaotic=chaotic, source=model0, foci=foci,
                            **{k: given[k] for k in ("n_neurons", "max_neurons", "tau_ref", "steps")})
    if given["max_rates"] is not None:
        result.choices["max_rates"] = Choice(list(given["max_rates"]), "given")
    if given["calibration"]:
        unknown = set(given["calibration"]) - {"trials", "duration", "rounds"}
        if unknown:
            raise DDMError(f"calibration: unknown setting(s) {sorted(unknown)} (trials, duration, rounds)")
        result.choices["calibration"] = Choice({**result.choices["calibration"].value, **given["calibration"]},
                                               "given")
    if given["verify_runs"] is not None:
        result.choices["verify_runs"] = Choice([int(given["verify_runs"][0]), float(given["verify_runs"][1])],
                                               "given")
    ch = result.choices
    stages.note(kind=kind, chaotic=chaotic, foci=foci)
    network, why_network = choose_network(given, backend=backend, kind=kind, source=model0)
    if network == "coordinated":
        from .coordinated_conversion import coordinated_stages

        if given["network"] == "auto":
            stages.say(f"network: spike-coordinated ({why_network})")
        return coordinated_stages(result, stages, best, sde, model0, plugin, u0, seed, progress, given,
                                  levels=cue_levels(sde, u0), z_vis=z_vis, why=why_network, kind=kind,
                                  chaotic=chaotic, **_coordinated_helpers())
    ch["network"] = Choice("independent", why_network)
    stages.say(f"{sde.name}: {kind}{', chaotic' if chaotic else ''}{', unstable foci' if foci else ''}; "
               + "; ".join(f"{k} {c.value}" for k, c in ch.items() if k in ("n_neurons", "tau_ref",
                                                                           "time_scale_ratio")))

    refine = ch["steps"].value > 0 and not (given_lif and given["n_neurons"] is None)
    stages.start("fit", f"LIF neurons, N = {ch['n_neurons'].value}"
                 + (" (closed form: the spike noise may change N before the refinement)" if refine else ""))
    if given_lif and given["n_neurons"] is None:
        model, why = model0, "the source is a LIF model: used as given"
    else:
        model, why = _fit(sde, ch, seed, progress, model0, given["fit_options"], steps=0)
    stages.note(how=why, drift_error=model.meta.get("fit", {}).get("drift_error"))
    stages.say(f"{why}; held-out drift error {100 * model.meta.get('fit', {}).get('drift_error', float('nan')):.2f} %")
    best.update(model=model, why="as fitted")

    lag = verify_lag(sde, z_vis[:: max(1, len(z_vis) // 2000)], u0)
    stages.start("spike noise", f"the spikes' own latent noise against the target's diffusion, at verify's lag "
                 f"({lag:.3g} time units)")
    for _ in range(3):
        ex = spike_noise_excess(model, fano="regular", u=u0, lag=lag)
        stages.note(ratio=ex["ratio"], ratio_total=ex["ratio_total"], lag=lag, n_neurons=model.n_neurons)
        excess = ex["ratio_total"] - 1.0
        if kind == "deterministic" or (ex["ratio"] <= SPIKE_NOISE_LIMIT and excess <= TOTAL_EXCESS_LIMIT):
            stages.say(f"spikes alone give {ex['ratio']:.3g}x the target's diffusion along its worst direction"
                       + (" (deterministic target: the run's own noise is judged by verify)"
                          if kind == "deterministic" else f" (limit {SPIKE_NOISE_LIMIT}); with the private noise "
                          f"{ex['ratio_total']:.3g}x (limit {1 + TOTAL_EXCESS_LIMIT:g})"))
            break
        # both fall about as 1/N at fixed rates (decoders ~ 1/N; private noise per neuron ~ N)
        need = int(math.ceil(model.n_neurons * max(ex["ratio"] / SPIKE_NOISE_LIMIT, excess / TOTAL_EXCESS_LIMIT)
                             / 100.0)) * 100
        cap = ch["max_neurons"].value
        if need > cap:
            trials, duration, rounds = CALIBRATION[kind]
            vt, vd = ch["verify_runs"].value
            est = run_seconds(backend, need, model.time_scale, trials * rounds + vt * vd / duration, duration)
            result.status = "stopped"
            result.reason = (f"{sde.name} needs N >= {need} neurons: at N = {model.n_neurons} the spikes alone give "
                             f"{ex['ratio']:.3g}x its diffusion along its worst direction (limit "
                             f"{SPIKE_NOISE_LIMIT}; with the private noise {ex['ratio_total']:.3g}x, limit "
                             f"{1 + TOTAL_EXCESS_LIMIT:g}), and --max-neurons is {cap}; raise --max-neurons to {need} "
                             f"(the conversion would take about {est / 60:.0f} min of spiking runs in {backend} "
                             f"on one core here); or "
                             + ("" if plugin.coordinated else "--backend torch ")
                             + "--network coordinated, whose coordinated spikes need far fewer neurons")
            stages.end()
            raise DDMError(result.reason)
        stages.say(f"spikes alone give {ex['ratio']:.3g}x the target's diffusion at N = {model.n_neurons}, with the "
                   f"private noise {ex['ratio_total']:.3g}x: refitting at N = {need}")
        ch["n_neurons"] = Choice(need, f"spikes alone gave {ex['ratio']:.3g}x the target's diffusion at "
                                       f"N = {model.n_neurons} (limit {SPIKE_NOISE_LIMIT}), with the private noise "
                                       f"{ex['ratio_total']:.3g}x (limit {1 + TOTAL_EXCESS_LIMIT:g})")
        model, why = _fit(sde, ch, seed, progress, model0, given["fit_options"], steps=0)
        best.update(model=model, why=f"as fitted at N = {need}")
    else:
        raise DDMError(f"the spike noise stays above {SPIKE_NOISE_LIMIT}x the target's diffusion after three "
                       f"refits (last N = {model.n_neurons}, ratio {ex['ratio']:.3g})")
    if refine:
        stages.start("fit", f"N = {model.n_neurons}, {ch['steps'].value} refinement steps")
        model, why = _fit(sde, ch, seed, progress, model0, given["fit_options"])
        stages.note(how=why, drift_error=model.meta.get("fit", {}).get("drift_error"))
        stages.say(f"held-out drift error {100 * model.meta['fit']['drift_error']:.2f} %")
        best.update(model=model, why="as fitted")

    cal = ch["calibration"].value
    noisy = cal["noise"] != "none"
    # a stochastic target is first verified as fitted (calibration costs more than a verification and is often not
    # needed); then calibrated, and once more with twice the runs; each verification on fresh runs. When that second
    # calibration stopped because what it measured was within its own noise and verify still fails, the error verify
    # sees is below what those runs resolve: a third calibration with four times the runs.
    fit_error = model.meta.get("fit", {}).get("drift_error", math.inf)
    levels = cue_levels(sde, u0)   # the input levels of calibration and verification
    attempts = ([0] if noisy and fit_error <= VERIFY_FIRST_MAX_DRIFT_ERROR else []) + [1, 2]
    for attempt in attempts:  # may grow by one (above)
        if attempt:
            trials = cal["trials"] * attempt
            est = run_seconds(backend, model.n_neurons, model.time_scale, len(levels) * trials * cal["rounds"],
                              cal["duration"], noisy)
            stages.start("calibrate" + {1: "", 2: " (again)", 4: " (four times the runs)"}[attempt],
                         f"in {backend}: {trials} runs x {cal['duration']:g} time units per round"
                         f"{f' at each of {len(levels)} input levels' if len(levels) > 1 else ''}, at most "
                         f"{cal['rounds']} rounds, noise {cal['noise']}"
                         f"{', then the foci' if cal['foci'] and attempt == 1 else ''} (about {est / 60:.1f} min of "
                         "runs on one core)")
            model = calibrate(model, sde, rounds=cal["rounds"], foci=cal["foci"] and attempt == 1,
                              duration=cal["duration"], trials=trials, noise=cal["noise"], seed=seed + attempt,
                              backend=backend, u=u0, cues=len(levels) > 1, progress=progress)
            info = model.meta["spiking_calibration"]
            stages.note(best_round=info["best_round"], drift_error=info["systematic_drift_error"],
                        uncalibrated=info["systematic_drift_error_uncalibrated"], stopped=info["stopped"])
            stages.say(f"systematic drift error {100 * info['systematic_drift_error_uncalibrated']:.2f} % -> "
                       f"{100 * info['systematic_drift_error']:.2f} % (kept round {info['best_round']}; "
                       f"stopped: {info['stopped']})")
            best.update(model=model, why=f"calibrated, round {info['best_round']}")
        runs, z_collapse = ch["verify_runs"].value, z_vis if kind == "deterministic" and chaotic else None
        _verify_stage(result, stages, model, sde, plugin, runs, levels,
                      seed + VERIFY_SEED + 1000 * attempt, z_collapse, progress,
                      {0: " (as fitted)", 1: "", 2: " (again)", 4: " (third)"}[attempt])
        if any(r.marginal for r in result.reports) and (result.passed or attempt):
            # a verdict within the metrics' own noise of a threshold decides nothing: twice the runs, fresh seeds
            # (not for a FAIL as fitted: calibration comes next either way)
            _verify_stage(result, stages, model, sde, plugin, [2 * runs[0], runs[1]], levels,
                          seed + VERIFY_SEED + 1000 * attempt + 500, z_collapse, progress,
                          " (marginal: twice the runs)")
        if result.passed:
            break
        info = model.meta.get("spiking_calibration", {})
        if attempt == 2 and info.get("stopped") == SETTLED:
            attempts.append(4)
    result.model = model
    result.status = "passed" if result.passed else "failed"
    if not result.passed:
        result.reason = (f"verify fails on {', '.join(result.failed_metrics())} after a calibration with "
                         f"{attempts[-1]} times the runs; the report folder has the figures"
                         + ("; --network coordinated builds a spike-coordinated network instead, which passed every "
                            "system tried but FitzHugh-Nagumo" if plugin.coordinated else ""))
    stages.end()


def _coordinated_helpers():
    """What the coordinated network's stages take from this module (passed, so that it need not import it)."""
    return {"choice": Choice, "verify_stage": _verify_stage, "verify_seed": VERIFY_SEED}


def _verify_stage(result, stages, model, sde, plugin, runs, levels, seed, z_collapse, progress, label):
    """Run ``model`` in ``plugin``'s back end at each input level and verify; sets ``result``'s reports and verdict.

    ``z_collapse``: the target's visited states, to count collapsed runs (deterministic chaotic targets), or None.
    """
    from ..run.inputs import InputSignal
    from .coordinated import spiking_neurons

    vt, vd = runs
    stages.start("verify" + label, f"{vt} new runs x {vd:g} time units in {plugin.name}"
                 + (f" at {len(levels)} input levels" if len(levels) > 1 else ""))
    result.reports, result.traj = [], None
    for j, level in enumerate(levels):
        sig = None if level is None else InputSignal.constant(level)
        traj = plugins.simulate(model, vd, backend=plugin.name, mode="spiking", trials=vt, u=sig, seed=seed + j,
                                progress=progress, **_spikes(plugin, False))
        report = _verify(model, traj, progress)
        report.info["input"] = None if level is None else level.tolist()
        if z_collapse is not None:
            gone = collapsed_runs(traj, z_collapse)
            report.add("collapse", len(gone), 0.0, 1.0, f"runs of {vd:g} time units that collapsed onto a fixed "
                       f"point (std of every variable over the last third below {COLLAPSE_SHARE} of the target's)",
                       runs=gone)
        result.reports.append(report)
        if j == 0:
            result.traj = traj
        failed = [k for k, m in report.metrics.items() if not m["passed"]]
        stages.say(("" if level is None else f"input {np.round(level, 3).tolist()}: ")
                   + ("PASS" if not failed else "FAIL: " + ", ".join(
                       f"{k} {report.metrics[k]['value']:.4g} (threshold {report.metrics[k]['threshold']:.4g})"
                       for k in failed)))
    result.passed = all(r.passed for r in result.reports)
    stages.note(passed=result.passed)
    # the raster of the report: one short run with spikes recorded (a verification run's spikes can take GBs)
    rate = float(result.traj.meta.get("mean_rate_hz") or 100.0)
    n_spiking = spiking_neurons(model)
    span = min(vd, max(2.0 * model.tau / model.time_scale, RASTER_SPIKES / (n_spiking * rate * model.time_scale)))
    result.raster = plugins.simulate(model, span, backend=plugin.name, mode="spiking", trials=1, seed=seed,
                                     u=None if levels[0] is None else InputSignal.constant(levels[0]),
                                     **_spikes(plugin, True))


def _spikes(plugin, record):
    """The option that records spikes (or not), where the back end takes it."""
    return {"record_spikes": record} if "record_spikes" in plugin.options else {}


def _verify(model, traj, progress):
    """``traj`` judged as ``ddm-neuro verify MODEL TRAJ`` judges it."""
    from ..verify import verify
    from ..verify.options import verify_arguments

    kwargs, _ = verify_arguments(model, traj)
    return verify(traj=traj, seed=0, progress=progress, **kwargs)


def conversion_summary(result, *, output=None):
    """What the conversion did and chose, as Markdown lines (``summary.md`` and the command's output)."""
    lines = [f"# Spiking conversion: {result.status.upper()}", ""]
    if result.reason:
        lines += [result.reason, ""]
    lines += ["| choice | value | why |", "|---|---|---|"]
    lines += [f"| {k} | {c.value} | {c.why} |" for k, c in result.choices.items()]
    lines += ["", "| stage | seconds | |", "|---|---|---|"]
    for s in result.stages:
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in s.items() if k not in ("name", "seconds"))
        lines.append(f"| {s['name']} | {s['seconds']:.0f} | {extra} |")
    total = sum(s["seconds"] for s in result.stages)
    lines += ["", f"total {total:.0f} s" + (f"; model: {output}" if output else "")]
    for r in result.reports:
        lines += ["", "```", r.table(), "```"]
    return "\n".join(lines)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(result, folder, *, force=False, variables=None):
    """Write ``summary.md``, ``conversion.json``, the verify report(s) and a raster into ``folder``.

    Returns
    -------
    list of Path
    """
    from ..fileio import atomic_write
    from ..plots import trajectory_figure
    from ..verify.report import clean

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    with atomic_write(folder / "summary.md", force=force, mode="w") as fh:
        fh.write(conversion_summary(result) + "\n")
    files.append(folder / "summary.md")
    with atomic_write(folder / "conversion.json", force=force, mode="w") as fh:
        json.dump(clean(result.model.meta["conversion"]), fh, indent=2)
    files.append(folder / "conversion.json")
    for j, report in enumerate(result.reports):
        files += report.save(folder / ("verify" if j == 0 else f"verify_input{j}"), traj=result.traj if j == 0
                             else None, force=force)
    if result.raster is not None:
        from .coordinated import spiking_neurons

        trajectory_figure(result.raster, folder / "run.png", n_neurons=spiking_neurons(result.model),
                          variables=variables, force=force)
        files.append(folder / "run.png")
    return files
