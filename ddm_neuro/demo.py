"""``ddm-neuro demo``: the main job on the built-in Lorenz system.

Fit N tanh neurons to Lorenz (noise 1.0 per dimension), simulate the network
and the target SDE, write the attractor figure, print the fit errors and the
statistics table, and verify the trajectory (report.json + figures); then run
the same network in Brian2 (runtime device, when installed) and verify that
too. Last, a spiking network in one command
(:func:`~ddm_neuro.spiking.pipeline.convert_to_spiking`): the 2-D OU process
converted to 300 LIF neurons and verified in torch's compiled step loop
(``--quick``: 200 neurons in Brian2's generated C++ where installed).
Lorenz's own spike noise needs thousands of neurons, more than the demo's time
allows (docs/spiking.md). Every verification, the spiking one included, sets
the exit status.
Each stage's files go into one folder as the stage ends (atomically,
file by file): an interrupted demo keeps what is finished and says where.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import plugins
from .errors import DDMError
from .fileio import check_output
from .fit.matching import fit, fit_summary, fit_warnings
from .network import LatentRNN
from .plots import attractor_figure
from .run.target import simulate_sde
from .run.plan import network_steps
from .run.rate import simulate_network
from .stats import compare, format_table
from .sde.systems import get_system
from .verify import verify


#: Everything the demo writes into its folder (removed first with ``--force``).
OUTPUTS = ("model.ddm", "network.npz", "target.npz", "attractor.png", "report", "brian2.npz", "report_brian2",
           "brian2-cpp.npz", "report_brian2-cpp", "model_spiking.ddm", "spiking.npz", "report_spiking")


class _Stages:
    """The demo's folder and what is finished in it: each file is written atomically as its stage ends,
    so an interrupted demo keeps the finished stages and says where they are."""

    def __init__(self, out):
        self.out = Path(out)
        self.kept = []
        self.name = None
        self.t0 = None
        self.times = {}

    def start(self, name, text):
        self._end()
        self.name, self.t0 = name, time.perf_counter()
        print(f"\n== {text}")

    def _end(self):
        if self.name is not None:
            self.times[self.name] = self.times.get(self.name, 0.0) + self.seconds()

    def summary(self):
        """Wall time of each stage, one line."""
        self._end()
        self.name = None
        total = sum(self.times.values())
        return f"stage times: {', '.join(f'{k} {v:.0f} s' for k, v in self.times.items())}; total {total:.0f} s"

    def path(self, name):
        return self.out / name

    def keep(self, name):
        self.kept.append(name)

    def seconds(self):
        return time.perf_counter() - self.t0

    def stopped(self, why):
        kept = ", ".join(self.kept) if self.kept else "nothing yet"
        print(f"\n{why} during the {self.name} stage: kept {kept} in {self.out}/"
              + ("; 'ddm-neuro demo --resume' reuses model.ddm" if "model.ddm" in self.kept else ""),
              file=sys.stderr)


def _prepare(out, force, resume):
    """Check the demo folder before any work; create it (removing old demo outputs with ``force``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DDMError(f"{out}: exists and is not a folder")
    if resume:
        if not (out / "model.ddm").is_file():
            raise DDMError(f"--resume: {out / 'model.ddm'} does not exist (run the demo without --resume)")
        return out
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DDMError(f"{out}: already exists (use --force to overwrite, or --resume to reuse its model.ddm)")
        for name in OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif not out.exists():
        check_output(out, kind="dir")  # the parent folder exists and is writable
        out.mkdir()
    return out


def run_demo(out, force=False, n_neurons=512, duration=60.0, trials=16, quick=False, progress=True, resume=False):
    """Run the demo; returns the exit status (0 when every verification passes, the spiking one included).

    Each stage's files are written into ``out`` as the stage ends (atomically);
    an interruption keeps the finished ones and says so. ``resume`` reuses the
    folder's ``model.ddm`` instead of fitting again (``force`` and ``resume``
    together are refused).

    Parameters
    ----------
    out : str or Path
        The demo folder.
    force, resume : bool
    n_neurons : int
    duration : float
        SDE time units per trial.
    trials : int
        At least 2.
    quick : bool
        Small and short (N <= 128, 4 trials x 20 time units), for a smoke test.
    progress : bool

    Returns
    -------
    int

    Raises
    ------
    DDMError
        Sizes beyond the demo's, or a folder that cannot be used; all before the fit.
    """
    if force and resume:
        raise DDMError("--force starts the demo afresh and --resume reuses its model.ddm: give one of them")
    if quick:
        n_neurons, duration, trials = min(n_neurons, 128), min(duration, 20.0), min(trials, 4)
    if trials < 2:
        raise DDMError(f"--trials must be >= 2 (standard errors come from the trials), got {trials}")
    for name, value, most in (("-n", n_neurons, 20000), ("--duration", duration, 10000.0), ("--trials", trials, 1000)):
        if value > most:  # a demo, not a production run: refused before the fit, not after it
            raise DDMError(f"demo {name} {value:g} is more than the demo takes ({most:g}); use fit and simulate "
                           "for larger runs")
    sde = get_system("lorenz")
    stages = _Stages(_prepare(out, force, resume))
    try:
        status = _rate_stages(stages, sde, n_neurons, duration, trials, quick, progress, resume)
        status = _spiking_run(stages, quick, progress) or status
    except KeyboardInterrupt:
        stages.stopped("interrupted")
        raise
    except Exception:
        stages.stopped("stopped by an error")
        raise
    print(f"\nwrote {out}/: {', '.join(stages.kept)}")
    print(stages.summary())
    return status


def _rate_stages(stages, sde, n_neurons, duration, trials, quick, progress, resume):
    """Fit (or reuse), the torch run against the target, and the Brian2 runs; returns the exit status."""
    if resume:
        stages.start("fit", f"fit: reusing {stages.path('model.ddm')}")
        model = LatentRNN.load(stages.path("model.ddm"))
        if model.n_neurons != n_neurons or model.meta.get("sde_name") != sde.name:
            raise DDMError(f"--resume: {stages.path('model.ddm')} is a {model.meta.get('sde_name')} model with "
                           f"N = {model.n_neurons}, not {sde.name} with N = {n_neurons}")
    else:
        stages.start("fit", f"fit: {sde.name}, N = {n_neurons} tanh neurons")
        model = fit(sde, n_neurons=n_neurons, seed=0, progress=progress)
        model.save(stages.path("model.ddm"), force=True)
    stages.keep("model.ddm")
    stages.model = model
    print(fit_summary(model))
    for text in fit_warnings(model):
        print(f"warning: {text}", file=sys.stderr)

    stages.start("simulate", f"simulate: {trials} trials x {duration:g} time units (torch, full "
                 f"{n_neurons}-neuron network)")
    net = simulate_network(model, duration, trials=trials, seed=1, progress=progress)
    t_sim = stages.seconds()
    net.save(stages.path("network.npz"), force=True)
    stages.keep("network.npz")
    dt, rec = network_steps(model)
    rng = np.random.default_rng(2)
    targets = [simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=rng, progress=progress,
                            z0=model.init_states[rng.integers(0, len(model.init_states), trials)])
               for _ in range(2)]
    targets[0].save(stages.path("target.npz"), force=True)
    stages.keep("target.npz")
    print(f"  network simulation {t_sim:.1f} s ({t_sim / duration:.2f} s per time unit, {trials} trials)")
    finite = np.isfinite(net.z).all()
    lo, hi = sde.domain_box()
    inside = finite and bool(np.all((net.z > lo - (hi - lo)) & (net.z < hi + (hi - lo))))
    print(f"  trajectory finite: {finite}; stays within the domain's neighbourhood: {inside}")
    rows = compare(net, *targets)
    print("\n== statistics (score = |difference| / its standard error; baseline = same for two target runs)")
    print(format_table(rows, list(sde.variables)))
    attractor_figure(net, targets[0], stages.path("attractor.png"), force=True,
                     title=f"Lorenz: {n_neurons}-neuron network (left) vs target SDE (right)",
                     variables=list(sde.variables))
    stages.keep("attractor.png")
    status = 0 if inside else 1
    stages.start("verify", "verify")
    if not finite:
        print("  skipped: the network diverged (see attractor.png)")
        status = 1
    else:
        report = verify(sde, net, model_drift=model.latent_drift, progress=progress)
        print(report.table())
        report.save(stages.path("report"), traj=net, force=True)
        stages.keep("report/")
        status = status or (0 if report.passed else 1)
    return _brian2_run(stages, model, sde, duration, trials, quick, progress) or status


def _installed(backend, mode):
    """The run function of ``backend`` in ``mode``; a DDMError now (not at the run) when its packages are missing."""
    plugins.get("simulator", backend, mode).load()
    return plugins.get_backend(backend, mode)


def _brian2_run(stages, model, sde, duration, trials, quick, progress):
    """The same network in Brian2 (runtime device, then generated C++), each verified.

    Skipped with a note when Brian2 (or a C++ compiler) is not installed.
    Returns 1 when a run that could be made fails verification.
    """
    status = 0
    runs = [("brian2", "runtime device", min(trials, 4), min(duration, 10.0 if quick else 30.0)),
            ("brian2-cpp", "cpp_standalone, compiled once", trials, duration)]
    for backend, what, b_trials, b_duration in runs:
        stages.start(backend, f"{backend} ({what}, rate mode): {b_trials} trials x {b_duration:g} time units")
        try:
            run = _installed(backend, "rate")
        except DDMError as exc:  # not installed: say so, and go on
            print(f"  skipped: {exc} (install with: pip install '.[brian2]')")
            continue
        try:
            traj = run(model, b_duration, trials=b_trials, seed=4, u=None, mode="rate", progress=progress)
        except DDMError as exc:  # installed but failed: that is a failure of the demo, not a skip
            print(f"  FAILED: {exc}")
            status = 1
            continue
        compiled = traj.meta.get("compile_seconds")
        print(f"  simulated in {stages.seconds():.1f} s"
              + (f" (of which compiling {compiled:.1f} s)" if compiled else ""))
        traj.save(stages.path(f"{backend}.npz"), force=True)
        stages.keep(f"{backend}.npz")
        report = verify(sde, traj, model_drift=model.latent_drift, progress=progress, seed=1)
        print(report.table())
        report.save(stages.path(f"report_{backend}"), traj=traj, force=True)
        stages.keep(f"report_{backend}/")
        status = status or (0 if report.passed else 1)
    return status


#: The demo's spiking system and sizes (full, quick): a target whose one-command conversion passes ``verify`` within
#: the demo's time (Lorenz's spike noise needs thousands of neurons; docs/spiking.md).
SPIKING_SYSTEM = "ou"
#: The full demo converts in torch (its compiled step loop: the fastest engine here) at N = 300 (0.7 % drift
#: error; verify passes as fitted, 39 s beside other jobs); the quick one in Brian2 C++ where installed, small
#: and short.
SPIKING_SIZES = {False: {"n_neurons": 300, "verify_runs": (8, 250.0)},
                 True: {"n_neurons": 200, "verify_runs": (4, 100.0), "calibration": {"trials": 8, "duration": 50.0,
                                                                                      "rounds": 2}}}


def _spiking_run(stages, quick, progress):
    """A spiking network in one command: :data:`SPIKING_SYSTEM` converted to LIF neurons, calibrated where it needs
    it and verified in the fastest installed spiking back end; returns the exit status (1: its verification fails).
    """
    from .spiking.pipeline import convert_to_spiking

    sizes = SPIKING_SIZES[bool(quick)]
    backend = "brian2-cpp" if quick and _available("brian2-cpp") else "torch"
    stages.start("spiking", f"spiking: {SPIKING_SYSTEM} converted in one command to {sizes['n_neurons']} LIF neurons "
                 f"and verified in {backend} (ddm-neuro convert {SPIKING_SYSTEM} --backend {backend})")
    try:
        res = convert_to_spiking(get_system(SPIKING_SYSTEM), backend=backend, output=stages.path("model_spiking.ddm"),
                                 report_dir=stages.path("report_spiking"), force=True, progress=progress, seed=0,
                                 network="independent", **sizes)  # LIF neurons: the network every back end runs
    except DDMError as exc:
        print(f"  FAILED ({backend}): {exc}")
        return 1
    stages.keep("model_spiking.ddm")
    stages.keep("report_spiking/")
    res.traj.save(stages.path("spiking.npz"), force=True)
    stages.keep("spiking.npz")
    took = ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in res.stages)
    print(f"  spiking {SPIKING_SYSTEM}: {'PASS' if res.passed else 'FAIL'} in {backend}, N = {res.model.n_neurons}, "
          f"{sum(s['seconds'] for s in res.stages):.0f} s ({took})")
    return 0 if res.passed else 1


def _available(backend):
    try:
        plugins.get("simulator", backend, "spiking").load()
    except DDMError:
        return False
    return True
