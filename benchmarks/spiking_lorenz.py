"""Spiking Lorenz (issue 5): the rate fit, the spiking network, and the calibrated spiking network.

Fits deterministic Lorenz (noise 0) with N LIF neurons and measures, for the
target, the rate network and the torch spiking network (exact spike times,
noise-free, dt 0.1 ms) before and after in-the-loop calibration
(:func:`ddm_neuro.spiking.drift_calibration.calibrate_spiking`):

1. the systematic drift error on the target's attractor (:mod:`ddm_neuro.spiking.drift_calibration`:
   windowed pathwise estimator over many short runs started on the attractor,
   polynomial regression; the split-half spread is its noise), measured on runs
   independent of the calibration's;
2. the growth rate of the spiral around C+ (target: Re lambda = 0.094 per time unit),
   from runs started 1.5 units off C+ along the unstable plane;
3. collapse: ``--runs`` seeded runs of ``--duration`` time units from the model's
   attractor states; a run has collapsed when the std of x over its last third is
   below 2 (the attractor's is ~7.8);
4. the largest Lyapunov exponent from twin runs: two copies of the network started at
   the same latent state (spiking: membranes at different random phases; target and
   rate network: 1e-6 apart), the slope of the mean log distance while it grows to 3
   (:func:`lyapunov_twins`; the same estimator on the exact target gives ~0.8, against
   Benettin's 0.906: compare the rows with each other).

With ``--brian2 MODEL`` (a calibrated model this script wrote), the same network in
Brian2 ``cpp_standalone``: verified against the stochastic Lorenz (noise 1.0: drift, diffusion
and stationary distance with their baselines, and the spike-noise excess with the N that would
remove it), and noise-free runs for collapse. With ``--nengo``, Nengo 4's spiking Lorenz (``benchmarks/nengo_lorenz.py``) on the
same metrics.

    OMP_NUM_THREADS=1 python benchmarks/spiking_lorenz.py [--n 2000] [--runs 20] [--duration 100] [--nengo]
    OMP_NUM_THREADS=1 python benchmarks/spiking_lorenz.py --brian2 lorenz_spiking_calibrated.ddm
    OMP_NUM_THREADS=1 python benchmarks/spiking_lorenz.py --model MODEL --foci   # escape from C+- (ddm_neuro.spiking.unstable_foci)

``--foci`` adds the escape calibration (:func:`ddm_neuro.spiking.unstable_foci.calibrate_foci`): runs started in the
holes around C+- must leave them no later than the target's; where they do not, the spiral's growth
there is pushed up. The result is written next to ``--save`` (``*_foci.ddm``) and reported again.
The Brian2 stage also measures the noise-free drift error on the attractor in Brian2 (``--b2-drift-trials``).
"""
import argparse
import time

import numpy as np
import torch

from ddm_neuro.spiking.drift_calibration import calibrate_spiking
from ddm_neuro.spiking.window_error import drift_residual, split_half_noise, systematic_drift_error
from ddm_neuro.fit.matching import fit
from ddm_neuro.spiking.unstable_foci import calibrate_foci
from ddm_neuro.network import LatentRNN
from ddm_neuro.fit.states import visited_states
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory

S, R, B = 10.0, 28.0, 8 / 3
C = np.sqrt(B * (R - 1))
CP = np.array([C, C, R - 1])


def unstable_plane():
    J = np.array([[-S, S, 0], [R - CP[2], -1, -CP[0]], [CP[1], CP[0], -B]])
    w, V = np.linalg.eig(J)
    i = int(np.argmax(w.real))
    return w[i], V[:, i]


def amplitude(traj, v):
    """Per trial and sample: the spiral's amplitude around C+ in the coordinates of its eigenvector ``v``."""
    P = np.linalg.pinv(np.stack([v.real, v.imag], 1))
    return np.array([np.hypot(*((zi - CP) @ P.T).T) for zi in traj.z])


def growth(traj, lam, v):
    """Growth rate of the envelope of the spiral around C+ (per time unit), one per trial."""
    per = int(round(2 * np.pi / abs(lam.imag) / traj.dt))
    out = []
    for a in amplitude(traj, v):
        m = len(a) // per
        env = np.array([np.sqrt((a[k * per:(k + 1) * per] ** 2).mean()) for k in range(m)])
        t = (np.arange(m) + 0.5) * per * traj.dt
        ok = env < 6
        out.append(np.polyfit(t[ok], np.log(env[ok]), 1)[0] if ok.sum() > 3 else np.nan)
    return np.array(out)


def escape(traj, v, radius=6.0):
    """Per trial: first time the spiral's amplitude around C+ reaches ``radius`` (inf if never)."""
    far = amplitude(traj, v) >= radius
    return np.where(far.any(1), traj.t[far.argmax(1)], np.inf)


def drop(traj, t0):
    """The trajectory after time ``t0`` (membranes start at random phases: drop their transient)."""
    k = int(np.searchsorted(traj.t, t0 - 1e-12))
    return Trajectory(t=traj.t[k:] - traj.t[k], z=traj.z[:, k:], dt=traj.dt, meta=traj.meta)


def systematic(model, sde, traj, z_eval):
    """Systematic drift error of a run on states ``z_eval``, and its split-half noise."""
    full = systematic_drift_error(model, sde, drift_residual(model, sde, traj), z_eval)
    diff = split_half_noise(model, sde, traj, z_eval)
    return full, diff


def lyapunov_twins(za, zb, dt, hi=3.0):
    """Largest Lyapunov exponent from twin runs: slope of the mean log distance while it grows to ``hi``.

    The fit starts at 0.2 time units (spiking twins differ first by spike jitter, which saturates
    within a few tau) once the distance has grown by e^0.5; NaN when it never grows that much
    (a collapsed network) or starts above ``hi / e``.
    """
    logd = np.log(np.linalg.norm(za - zb, axis=-1) + 1e-300).mean(0)
    t = np.arange(len(logd)) * dt
    i0 = int(round(0.2 / dt))
    if logd[i0] > np.log(hi) - 1:
        return float("nan")
    above = np.flatnonzero((np.arange(len(logd)) > i0) & (logd >= np.log(hi)))
    end = above[0] if len(above) else len(logd)
    sel = (np.arange(len(logd)) >= i0) & (np.arange(len(logd)) < end) & (logd >= logd[i0] + 0.5)
    if sel.sum() < 5:
        return float("nan")
    return float(np.polyfit(t[sel], logd[sel], 1)[0])


def lyapunov(kind, model, sde, z0):
    """Twin-run Lyapunov exponent of the target (``kind="target"``), rate or spiking network."""
    n = len(z0)
    if kind == "spiking":
        runs = [simulate_spiking(model, 12.0, trials=n, seed=s, z0=z0, noise="none") for s in (21, 22)]
    else:
        duration = 25.0
        zb = z0 + 1e-6 * np.random.default_rng(5).normal(size=z0.shape) / np.sqrt(3)
        if kind == "target":
            runs = [simulate_sde(sde, duration, trials=n, seed=0, z0=z, dt=1e-3, record_dt=0.01) for z in (z0, zb)]
        else:
            runs = [simulate_network(model, duration, trials=n, seed=0, z0=z, noise=False) for z in (z0, zb)]
    return lyapunov_twins(runs[0].z, runs[1].z, runs[0].dt)


def attractor():
    """The target's (deterministic Lorenz) visited states, the sample every stage evaluates on."""
    sde = get_system("lorenz", noise=0.0)
    return sde, visited_states(sde, np.random.default_rng(123), trials=16, records=1000, batches=2)[0]


def short_run_errors(model, sde, z_att, trials, runners):
    """Drift error on the attractor from ``trials`` runs x 1 time unit per ``runners[label](model, duration,
    starts)``: ``{label: (error, split-half noise)}``, and the generator that drew the starts."""
    rng = np.random.default_rng(99)
    z_eval = z_att[rng.choice(len(z_att), 5000, replace=False)]
    starts = z_att[rng.choice(len(z_att), trials)]
    skip = 2 * model.tau / model.time_scale
    return {label: systematic(model, sde, drop(sim(model, 1.0 + skip, starts), skip), z_eval)
            for label, sim in runners.items()}, rng


def report(name, model, sde, args, z_att, lam, v):
    print(f"\n== {name}", flush=True)
    t0 = time.perf_counter()
    errors, rng = short_run_errors(model, sde, z_att, args.short_trials, {
        "rate": lambda m, d, z0: simulate_network(m, d, trials=len(z0), seed=3, z0=z0, noise=False),
        "spiking": lambda m, d, z0: simulate_spiking(m, d, trials=len(z0), seed=3, z0=z0, noise="none")})
    out = {}
    for label, (full, noise) in errors.items():
        out[label] = full
        print(f"systematic drift error on the attractor, {label:8s}: {100 * full:5.2f} % "
              f"(split-half noise {100 * noise:4.2f} %)", flush=True)
    z0 = CP + 1.5 * v.real / np.linalg.norm(v.real)
    g_rate = growth(simulate_network(model, 8.0, trials=2, seed=0, z0=z0, noise=False), lam, v)
    spk = simulate_spiking(model, 8.0, trials=8, seed=0, z0=z0, noise="none")
    g_spk = growth(spk, lam, v)
    print(f"spiral growth at C+ per time unit: target {lam.real:.3f}, rate {np.mean(g_rate):.3f}, spiking "
          f"{np.nanmean(g_spk):.3f} ± {np.nanstd(g_spk) / np.sqrt(len(g_spk)):.3f} (runs: {np.round(g_spk, 3)}; "
          f"nan: left r = 6 within 4 turns)", flush=True)
    print(f"escape from C+ (r 1.5 -> 6, 8 runs of 8 units): target {np.log(4) / lam.real:.1f} (linear), spiking "
          f"{np.round(escape(spk, v), 2)}", flush=True)
    z_ly = z_att[rng.choice(len(z_att), 16)]
    print(f"largest Lyapunov exponent (twin runs, 16 pairs): rate {lyapunov('rate', model, sde, z_ly):.3f}, "
          f"spiking {lyapunov('spiking', model, sde, z_ly):.3f}", flush=True)
    runs = simulate_spiking(model, args.duration, trials=args.runs, seed=11, noise="none")
    sd = np.array([z[-len(runs.t) // 3:, 0].std() for z in runs.z])
    print(f"collapse: {int((sd < 2).sum())}/{args.runs} runs of {args.duration:g} time units "
          f"(std of x over the last third: {np.round(sd, 2)})  [{time.perf_counter() - t0:.0f} s]", flush=True)
    return out


def brian2_stage(path, args):
    """The calibrated network in Brian2 cpp_standalone: stochastic verify, noise-free collapse."""
    from ddm_neuro.plugins import get_backend
    from ddm_neuro.fit.decoders import with_decoders as _with_decoders
    from ddm_neuro.spiking.noise import spike_noise_excess
    from ddm_neuro.verify import verify

    cal = LatentRNN.load(path)
    run = get_backend("brian2-cpp", "spiking")
    sde1 = get_system("lorenz", noise=1.0)
    noisy = LatentRNN.load(path)
    noisy.sde_spec = sde1.spec
    z = visited_states(sde1, np.random.default_rng(1), trials=16, records=1000, batches=2)[0][:2000]
    noisy = _with_decoders(noisy, sde1, noisy.decoders, z, None)
    ex = spike_noise_excess(noisy, fano="regular")
    print(f"\n== Brian2 cpp_standalone, calibrated network (N = {cal.n_neurons}), stochastic Lorenz (noise 1.0)")
    print(f"spikes alone (regular firing): {ex['ratio']:.3g}x the target's diffusion along the worst direction; "
          f"N >= {ex['n_needed']} would bring it to 1")
    step = None if args.b2_dt is None else args.b2_dt * 1e-3 / noisy.time_scale
    if args.b2_trials > 0:
        t0 = time.perf_counter()
        traj = run(noisy, args.b2_duration, trials=args.b2_trials, seed=1, u=None, mode="spiking", progress=False,
                   dt=step)
        # no model drift: the rate network's is not the spiking network's (the Lyapunov exponent of the
        # noise-free spiking network comes from twin runs, in the torch report)
        rep = verify(sde1, traj, seed=5, filter_tau=traj.meta.get("readout_filter_tau"))
        print(f"{args.b2_trials} x {args.b2_duration:g} time units in {time.perf_counter() - t0:.0f} s; verify "
              f"{'PASS' if rep.passed else 'FAIL'}")
        for m, x in rep.metrics.items():
            print(f"  {m:20s} value {x['value']:10.4g}  baseline {x['baseline']:10.4g}  "
                  f"threshold {x['threshold']:10.4g}  {'pass' if x['passed'] else 'FAIL'}")
    if args.b2_drift_trials > 0:
        t0 = time.perf_counter()
        sde0, z_att = attractor()
        (full, noise), = short_run_errors(cal, sde0, z_att, args.b2_drift_trials, {
            "brian2": lambda m, d, z0: run(m, d, trials=len(z0), seed=3, u=None, mode="spiking", progress=False,
                                           z0=z0, noise="none", dt=step)})[0].values()
        print(f"noise-free drift error on the attractor ({args.b2_drift_trials} runs x 1 time unit): "
              f"{100 * full:.2f} % (split-half noise {100 * noise:.2f} %)  [{time.perf_counter() - t0:.0f} s]",
              flush=True)
    if args.b2_collapse_runs <= 0:
        return
    t0 = time.perf_counter()
    runs = run(cal, args.b2_collapse_duration, trials=args.b2_collapse_runs, seed=11, u=None, mode="spiking",
               progress=False, noise="none", dt=step)
    sd = np.array([zz[-len(runs.t) // 3:, 0].std() for zz in runs.z])
    print(f"noise-free collapse: {int((sd < 2).sum())}/{len(sd)} runs of {args.b2_collapse_duration:g} time units "
          f"(std of x over the last third: {np.round(sd, 2)})  [{time.perf_counter() - t0:.0f} s]")


def fit_and_calibrate(sde, args, z_att, lam, v):
    """Fit, report, calibrate the drift (``--rounds``), report again; return the calibrated model."""
    t0 = time.perf_counter()
    model = fit(sde, n_neurons=args.n, neuron="lif", seed=0, steps=0, progress=False, ratio=args.ratio)
    print(f"fit: N = {args.n}, T = {model.time_scale:.3f} s per unit, held-out drift error "
          f"{100 * model.meta['fit']['drift_error']:.2f} % ({time.perf_counter() - t0:.0f} s)")
    z_ly = z_att[np.random.default_rng(7).choice(len(z_att), 16)]
    print(f"target: largest Lyapunov exponent (twin runs, 16 pairs) {lyapunov('target', None, sde, z_ly):.3f}")
    report("fitted", model, sde, args, z_att, lam, v)
    if args.rounds <= 0:
        return model
    t0 = time.perf_counter()
    cal = calibrate_spiking(model, sde, rounds=args.rounds, damping=args.damping, seed=0, progress=True)
    info = cal.meta["spiking_calibration"]
    print(f"\ncalibration ({time.perf_counter() - t0:.0f} s): systematic error per round (split-half noise) " +
          ", ".join(f"{100 * r['systematic_drift_error']:.2f} % ({100 * r['split_half_noise']:.2f})"
                    for r in info["rounds"]) + f"; best round {info['best_round']}")
    cal.save(args.save, force=True)
    print(f"wrote {args.save}")
    report("calibrated", cal, sde, args, z_att, lam, v)
    return cal


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--duration", type=float, default=100.0)
    ap.add_argument("--short-trials", type=int, default=128, help="short runs for the drift error")
    ap.add_argument("--rounds", type=int, default=6, help="calibration rounds (0: no calibration)")
    ap.add_argument("--damping", type=float, default=1.0)
    ap.add_argument("--ratio", type=float, default=0.25, help="FitConfig.ratio (time scale)")
    ap.add_argument("--nengo", action="store_true", help="also Nengo 4's spiking Lorenz")
    ap.add_argument("--save", default="lorenz_spiking_calibrated.ddm", help="where the calibrated model goes")
    ap.add_argument("--brian2", metavar="MODEL", help="only the Brian2 stage, for this calibrated model")
    ap.add_argument("--model", metavar="MODEL", help="report on this (calibrated) model instead of fitting one")
    ap.add_argument("--foci", action="store_true",
                    help="then calibrate the escape from C+- (ddm_neuro.spiking.unstable_foci.calibrate_foci, torch) and report again")
    ap.add_argument("--b2-drift-trials", type=int, default=128,
                    help="short Brian2 runs for the drift error on the attractor (0: skip)")
    ap.add_argument("--b2-trials", type=int, default=8, help="stochastic verify runs in Brian2 (0: skip)")
    ap.add_argument("--b2-duration", type=float, default=60.0)
    ap.add_argument("--b2-dt", type=float, default=None, metavar="MS",
                    help="Brian2 step in ms (default 0.1; at most the model's tau_ref)")
    ap.add_argument("--b2-collapse-runs", type=int, default=8)
    ap.add_argument("--b2-collapse-duration", type=float, default=30.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.brian2:
        brian2_stage(args.brian2, args)
        return
    sde, z_att = attractor()
    lam, v = unstable_plane()
    if args.model:
        cal = LatentRNN.load(args.model)
        report(args.model, cal, sde, args, z_att, lam, v)
    else:
        cal = fit_and_calibrate(sde, args, z_att, lam, v)
    if args.foci:
        t0 = time.perf_counter()
        cal = calibrate_foci(cal, sde, seed=0, progress=True)
        for f in cal.meta["foci_calibration"]["foci"]:
            print(f"focus {np.round(f['centre'], 2)}: kappa {f['kappa']:.3g} (escaped: {f['escaped']}); target's "
                  f"escape {np.round(f['target_escape'], 1)}; per step " + "; ".join(
                      f"kappa {st['kappa']:.3g}: {np.round(st['escape'], 1)}" for st in f["steps"]))
        print(f"foci calibration: {time.perf_counter() - t0:.0f} s")
        out = args.save.replace(".ddm", "_foci.ddm")
        cal.save(out, force=True)
        print(f"wrote {out}")
        report("escape-calibrated", cal, sde, args, z_att, lam, v)
    if args.nengo:
        from nengo_lorenz import main as nengo_main

        nengo_main(["--n", str(args.n), "--runs", str(args.runs), "--duration", str(args.duration)])


if __name__ == "__main__":
    main()
