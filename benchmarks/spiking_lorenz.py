"""Spiking Lorenz (issue 5): where the rate fit stops being enough, measured.

Fits deterministic Lorenz (noise 0) with N LIF neurons, then, for the rate
network and the torch spiking network (exact spike times, noise-free):

1. the systematic drift error on the target's attractor (:mod:`ddm_neuro.calibrate`:
   windowed pathwise estimator, polynomial regression; split-half spread as its noise);
2. the growth rate of the spiral around C+ (target: Re lambda = 0.094 per time unit),
   from runs started 1.5 units off C+ along the unstable plane;
3. collapse: runs of ``--duration`` time units from the model's attractor states;
   a run has collapsed when the std of x over its last third is below 2 (the attractor's is ~7.8);
4. the spikes' response lag against the rate curve, pooled by rate (window counts minus
   ``integral phi`` regressed on the change of ``phi`` across the window);
5. with ``--calibrate``, the in-the-loop calibration (effective rate curve, refit) and 1-3 again.

    OMP_NUM_THREADS=1 python benchmarks/spiking_lorenz.py [--n 2000] [--runs 8] [--duration 30] [--calibrate]
"""
import argparse
import time

import numpy as np
import torch

from ddm_neuro.calibrate import calibrate_spiking, drift_residual, systematic_drift_error
from ddm_neuro.fit import fit
from ddm_neuro.simulate import simulate_network
from ddm_neuro.spiking import simulate_spiking
from ddm_neuro.systems import get_system
from ddm_neuro.trajectory import Trajectory

S, R, B = 10.0, 28.0, 8 / 3
C = np.sqrt(B * (R - 1))
CP = np.array([C, C, R - 1])


def unstable_plane():
    J = np.array([[-S, S, 0], [R - CP[2], -1, -CP[0]], [CP[1], CP[0], -B]])
    w, V = np.linalg.eig(J)
    i = int(np.argmax(w.real))
    return w[i], V[:, i]


def growth(traj, lam, v):
    P = np.linalg.pinv(np.stack([v.real, v.imag], 1))
    per = int(round(2 * np.pi / abs(lam.imag) / traj.dt))
    out = []
    for zi in traj.z:
        p = (zi - CP) @ P.T
        a = np.hypot(p[:, 0], p[:, 1])
        m = len(a) // per
        env = np.array([np.sqrt((a[k * per:(k + 1) * per] ** 2).mean()) for k in range(m)])
        t = (np.arange(m) + 0.5) * per * traj.dt
        ok = env < 6
        out.append(np.polyfit(t[ok], np.log(env[ok]), 1)[0] if ok.sum() > 3 else np.nan)
    return np.array(out)


def systematic(model, sde, traj, z_eval):
    full = systematic_drift_error(model, sde, drift_residual(model, sde, traj), z_eval)
    h = traj.trials // 2
    halves = [drift_residual(model, sde, Trajectory(t=traj.t, z=z, dt=traj.dt, meta=traj.meta))
              for z in (traj.z[:h], traj.z[h:])]
    diff = systematic_drift_error(model, sde, lambda z: (halves[0](z) - halves[1](z)) / 2, z_eval)
    return full, diff


def response_lag(model, traj, k):
    N, h = model.n_neurons, traj.dt * model.time_scale
    res, dph, rate = [], [], []
    for i in range(traj.trials):
        ph = model.neuron.phi(model.neuron_inputs(traj.z[i]))
        m = (len(traj.t) - 1) // k
        idx = np.arange(m) * k
        cs = np.concatenate([np.zeros((1, N)), np.cumsum(0.5 * (ph[1:] + ph[:-1]), 0) * h])
        pred = cs[idx + k] - cs[idx]
        sel = traj.spikes_i // N == i
        w = (traj.spikes_t[sel] / (k * traj.dt)).astype(int)
        ok = w < m
        cnt = np.bincount(w[ok] * N + traj.spikes_i[sel][ok] % N, minlength=m * N).reshape(m, N)
        res.append((cnt - pred).ravel())
        dph.append((ph[idx + k] - ph[idx]).ravel())
        rate.append(pred.ravel() / (k * h))
    res, dph, rate = map(np.concatenate, (res, dph, rate))
    rows = []
    for lo, hi in [(0.1, 20), (20, 50), (50, 100), (100, 200), (200, 500)]:
        s = (rate > lo) & (rate <= hi)
        lag = (res[s] * dph[s]).sum() / (dph[s] ** 2).sum()
        se = np.sqrt(((res[s] - lag * dph[s]) ** 2).sum() / (dph[s] ** 2).sum() / s.sum())
        rows.append((lo, hi, -lag * 1e3, se * 1e3))
    return rows


def report(name, model, sde, args, z_eval, lam, v):
    print(f"\n== {name}")
    t0 = time.perf_counter()
    rate = simulate_network(model, 4.0, trials=16, seed=3, z0=model.init_states[:16], noise=False)
    spk = simulate_spiking(model, 4.0, trials=16, seed=3, z0=model.init_states[:16], noise="none",
                           record_spikes=True)
    for label, tr in (("rate", rate), ("spiking", spk)):
        full, noise = systematic(model, sde, tr, z_eval)
        print(f"systematic drift error on the attractor, {label:8s}: {100 * full:5.2f} % "
              f"(split-half noise {100 * noise:4.2f} %)")
    print("spikes' lag behind phi(x(t)) by rate (window 10 ms): " + "; ".join(
        f"{lo:g}-{hi:g} Hz {lag:+.2f} ± {se:.2f} ms" for lo, hi, lag, se in response_lag(model, spk, 5)))
    z0 = CP + 1.5 * v.real / np.linalg.norm(v.real)
    g_rate = growth(simulate_network(model, 8.0, trials=2, seed=0, z0=z0, noise=False), lam, v)
    g_spk = growth(simulate_spiking(model, 8.0, trials=8, seed=0, z0=z0, noise="none"), lam, v)
    print(f"spiral growth at C+ per time unit: target {lam.real:.3f}, rate {np.mean(g_rate):.3f}, spiking "
          f"{np.nanmean(g_spk):.3f} ± {np.nanstd(g_spk) / np.sqrt(len(g_spk)):.3f} (runs: {np.round(g_spk, 3)})")
    runs = simulate_spiking(model, args.duration, trials=args.runs, seed=11, noise="none",
                            dt=5e-4 / model.time_scale)
    sd = np.array([z[-len(runs.t) // 3:, 0].std() for z in runs.z])
    print(f"collapse: {int((sd < 2).sum())}/{args.runs} runs of {args.duration:g} time units "
          f"(std of x over the last third: {np.round(sd, 2)})  [{time.perf_counter() - t0:.0f} s]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--calibrate", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sde = get_system("lorenz", noise=0.0)
    t0 = time.perf_counter()
    model = fit(sde, n_neurons=args.n, neuron="lif", seed=0, steps=0, progress=False)
    print(f"fit: N = {args.n}, T = {model.time_scale:.3f} s per unit, held-out drift error "
          f"{100 * model.meta['fit']['drift_error']:.2f} % ({time.perf_counter() - t0:.0f} s)")
    lam, v = unstable_plane()
    z_eval = model.init_states
    report("fitted (rate curve phi)", model, sde, args, z_eval, lam, v)
    if args.calibrate:
        t0 = time.perf_counter()
        cal = calibrate_spiking(model, sde, rounds=4, duration=4.0, trials=16, seed=0)
        info = cal.meta["spiking_calibration"]
        print(f"\ncalibration ({time.perf_counter() - t0:.0f} s): systematic error per round " +
              ", ".join(f"{100 * r['systematic_drift_error']:.2f} %" for r in info["rounds"]) +
              f"; best round {info['best_round']}")
        report("calibrated", cal, sde, args, z_eval, lam, v)


if __name__ == "__main__":
    main()
