"""``ddm-neuro demo``: the main job on the built-in Lorenz system.

Fit N tanh neurons to Lorenz (noise 1.0 per dimension), simulate the network
and the target SDE, write the attractor figure, print the fit errors and the
statistics table, and verify the trajectory (report.json + figures); then run
the same network in Brian2 (runtime device, when installed) and verify that
too. Last, the spiking run: the model converted to LIF neurons, simulated as a
spiking network (Brian2's generated C++ when available, else torch), with a
raster figure and its verification. At this N the spikes alone are far noisier
than Lorenz's diffusion (the run says by how much, and which N would fix it),
so that verification is reported but does not set the exit status: the rate
runs do. Everything goes to one folder, created only when the demo succeeds.
"""
from __future__ import annotations

import time

import numpy as np

from .backends import get_backend
from .errors import DDMError
from .fileio import atomic_directory
from .fit import fit
from .plots import attractor_figure
from .sdeint import simulate_sde
from .simulate import network_steps, simulate_network
from .stats import compare, format_table
from .systems import get_system
from .verify import verify


def run_demo(out, force=False, n_neurons=512, duration=60.0, trials=16, quick=False, progress=True):
    """Run the demo; returns the exit status (0 when verification passes)."""
    if quick:
        n_neurons, duration, trials = min(n_neurons, 128), min(duration, 10.0), min(trials, 4)
    if trials < 2:
        from .errors import DDMError
        raise DDMError(f"--trials must be >= 2 (standard errors come from the trials), got {trials}")
    sde = get_system("lorenz")
    with atomic_directory(out, force=force) as tmp:
        print(f"== fit: {sde.name}, N = {n_neurons} tanh neurons")
        model = fit(sde, n_neurons=n_neurons, seed=0, progress=progress)
        model.save(tmp / "model.ddm")
        from .cli import print_fit_summary
        print_fit_summary(model)

        print(f"\n== simulate: {trials} trials x {duration:g} time units (torch, full {n_neurons}-neuron network)")
        t0 = time.perf_counter()
        net = simulate_network(model, duration, trials=trials, seed=1, progress=progress)
        t_sim = time.perf_counter() - t0
        net.save(tmp / "network.npz")
        dt, rec = network_steps(model)
        rng = np.random.default_rng(2)
        targets = [simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=rng,
                                z0=model.init_states[rng.integers(0, len(model.init_states), trials)])
                   for _ in range(2)]
        targets[0].save(tmp / "target.npz")
        print(f"  network simulation {t_sim:.1f} s ({t_sim / duration:.2f} s per time unit, {trials} trials)")
        finite = np.isfinite(net.z).all()
        lo, hi = sde.domain_box()
        inside = finite and bool(np.all((net.z > lo - (hi - lo)) & (net.z < hi + (hi - lo))))
        print(f"  trajectory finite: {finite}; stays within the domain's neighbourhood: {inside}")
        rows = compare(net, *targets)
        print("\n== statistics (score = |difference| / its standard error; baseline = same for two target runs)")
        print(format_table(rows, list(sde.variables)))
        attractor_figure(net, targets[0], tmp / "attractor.png",
                         title=f"Lorenz: {n_neurons}-neuron network (left) vs target SDE (right)",
                         variables=list(sde.variables))
        status = 0 if inside else 1
        print("\n== verify")
        if not finite:
            print("  skipped: the network diverged (see attractor.png)")
            status = 1
        else:
            report = verify(sde, net, model_drift=model.latent_drift, progress=progress)
            print(report.table())
            report.save(tmp / "report", traj=net)
            status = status or (0 if report.passed else 1)
        status = _brian2_run(model, sde, tmp, duration, trials, quick, progress) or status
        _spiking_run(model, sde, tmp, quick, progress)
    print(f"\nwrote {out}/: model.ddm, network.npz, target.npz, attractor.png, report/, "
          "brian2.npz, report_brian2/, brian2-cpp.npz, report_brian2-cpp/, model_lif.ddm, spiking.npz, "
          "spiking_raster.png, report_spiking/")
    return status


def _brian2_run(model, sde, folder, duration, trials, quick, progress):
    """The same network in Brian2 (runtime device, then generated C++), each verified.

    Skipped with a note when Brian2 (or a C++ compiler) is not installed.
    Returns 1 when a run that could be made fails verification.
    """
    status = 0
    runs = [("brian2", "runtime device", min(trials, 4), min(duration, 10.0 if quick else 30.0)),
            ("brian2-cpp", "cpp_standalone, compiled once", trials, duration)]
    for backend, what, b_trials, b_duration in runs:
        print(f"\n== {backend} ({what}, rate mode): {b_trials} trials x {b_duration:g} time units")
        try:
            run = get_backend(backend, "rate")
        except DDMError as exc:  # not installed: say so, and go on
            print(f"  skipped: {exc} (install with: pip install '.[brian2]')")
            continue
        t0 = time.perf_counter()
        try:
            traj = run(model, b_duration, trials=b_trials, seed=4, u=None, mode="rate", progress=False)
        except DDMError as exc:  # installed but failed: that is a failure of the demo, not a skip
            print(f"  FAILED: {exc}")
            status = 1
            continue
        compiled = traj.meta.get("compile_seconds")
        print(f"  simulated in {time.perf_counter() - t0:.1f} s"
              + (f" (of which compiling {compiled:.1f} s)" if compiled else ""))
        traj.save(folder / f"{backend}.npz")
        report = verify(sde, traj, model_drift=model.latent_drift, progress=progress, seed=1)
        print(report.table())
        report.save(folder / f"report_{backend}", traj=traj)
        status = status or (0 if report.passed else 1)
    return status


def _spiking_run(model, sde, folder, quick, progress):
    """The model converted to LIF and run as a spiking network (Brian2 C++, else and with --quick torch), verified.

    Reported only: at the demo's N spikes alone out-noise Lorenz's diffusion
    (printed with the N that would fix it), so the verdict does not set the
    demo's exit status.
    """
    import warnings

    from .convert import convert
    from .plots import trajectory_figure
    from .spiking import SpikeNoiseWarning, spike_noise_excess

    s_trials, s_duration = (2, 3.0) if quick else (4, 20.0)
    print(f"\n== spiking: the model converted to LIF neurons, {s_trials} trials x {s_duration:g} time units")
    t0 = time.perf_counter()
    lif = convert(model, sde, steps=0 if quick else 100, progress=False)
    lif.save(folder / "model_lif.ddm")
    print(f"  converted in {time.perf_counter() - t0:.1f} s: held-out drift error "
          f"{100 * lif.meta['fit']['drift_error']:.2f} % (LIF rate curve)")
    backend = "torch" if quick else "brian2-cpp"  # --quick: no second C++ build
    try:
        run = get_backend(backend, "spiking")
    except DDMError as exc:
        print(f"  {backend} not available ({exc}); spiking in torch instead")
        backend, run = "torch", get_backend("torch", "spiking")
    ex = spike_noise_excess(lif, fano="regular")
    if ex["ratio"] > 1 and ex["n_needed"] is not None:
        print(f"  note: spikes alone give {ex['ratio']:.3g}x the target's diffusion along its worst direction "
              f"(regular firing), so no private noise is injected there; N >= {ex['n_needed']} (now "
              f"{lif.n_neurons}) or tau_syn >= {ex['tau_needed'] * 1e3:.3g} ms (now {lif.tau * 1e3:g} ms) would "
              "bring it down to the target's")
    else:
        print(f"  spikes alone give {ex['ratio']:.3g}x the target's diffusion along its worst direction; the "
              "remainder is injected as private noise")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeNoiseWarning)  # said above, in the demo's words
        try:
            traj = run(lif, s_duration, trials=s_trials, seed=5, u=None, mode="spiking", progress=False,
                       record_spikes=True)
        except DDMError as exc:
            print(f"  FAILED ({backend}): {exc}")
            return
    print(f"  {backend}: simulated in {time.perf_counter() - t0:.1f} s, {len(traj.spikes_t)} spikes, mean rate "
          f"{traj.meta.get('mean_rate_hz', float('nan')):.1f} Hz")
    traj.save(folder / "spiking.npz")
    trajectory_figure(traj, folder / "spiking_raster.png", n_neurons=lif.n_neurons, variables=list(sde.variables))
    report = verify(sde, traj, model_drift=lif.latent_drift, progress=progress, seed=1,
                    filter_tau=traj.meta.get("readout_filter_tau"))
    print(report.table())
    report.save(folder / "report_spiking", traj=traj)
    print(f"  spiking verification: {'PASS' if report.passed else 'FAIL'} (reported, not part of the exit status; "
          "README 'Spiking' says what it takes)")
