"""Spike-coordinated networks: the noise tracked by the spikes against the noise as random spikes, side by side.

For a system (or a .toml spec) at one input, fits the closed-form basis (500 tanh units), tunes delta to 70 Hz at
each N in both modes on pilot runs recorded at ``verify``'s lag (``ddm_neuro.spiking.coordinated.tune_delta``, with
and without ``noise_spikes``) and prints delta and the spikes' jitter. With ``--verify TRIALS DURATION`` it also runs
each noise-spiking network in torch and prints the residual variance over the basis's per latent variable at
verify's lag and ``verify``'s verdict.

    OMP_NUM_THREADS=1 python benchmarks/noise_spikes.py examples/fitzhugh_nagumo.toml --input I=0.5 -n 800 1600 \\
        --verify 8 250

Results: RESULTS_spike_coordination.md, section (f).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", help="a built-in system or a .toml spec")
    ap.add_argument("--input", default=None, help="NAME=VALUE of the target's input (default 0)")
    ap.add_argument("-n", type=int, nargs="+", default=[200, 800], help="spiking neurons (default 200 800)")
    ap.add_argument("--verify", type=float, nargs=2, metavar=("TRIALS", "DURATION"),
                    help="also run each noise-spiking network and verify it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ddm_neuro import plugins
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.run.inputs import InputSignal, parse_input_option
    from ddm_neuro.sde.load import load_sde
    from ddm_neuro.spiking.coordinated import tune_delta
    from ddm_neuro.spiking.noise import verify_lag
    from ddm_neuro.verify import verify, verify_arguments

    sde = load_sde(args.system)
    u0 = None
    if sde.n_inputs:
        u0 = (parse_input_option(args.input, sde.inputs).values[0] if args.input else np.zeros(sde.n_inputs))
    t0 = time.perf_counter()
    basis = fit(sde, n_neurons=500, seed=args.seed, steps=0, progress=False)
    z = basis.init_states
    lag = verify_lag(sde, z, u0)
    print(f"{sde.name}: basis 500 tanh units in {time.perf_counter() - t0:.0f} s, T = {basis.time_scale:.4g} s, "
          f"verify's lag {lag:.4g}" + (f", input {u0.tolist()}" if u0 is not None else ""))
    print(f"{'N':>6}  {'noise':<14} {'delta':>9} {'rate Hz':>8} {'jitter':>8}  {'tuning s':>8}")
    for n in args.n:
        for spikes in (False, True):
            t1 = time.perf_counter()
            model, facts = tune_delta(basis, n, seed=args.seed, record_dt=lag, u=u0, noise_spikes=spikes)
            print(f"{n:>6}  {'random spikes' if spikes else 'tracked':<14} {facts['delta']:>9.4g} "
                  f"{facts['rate_hz']:>8.1f} {facts['jitter']:>8.4g}  {time.perf_counter() - t1:>8.1f}", flush=True)
        if args.verify:
            trials, duration = int(args.verify[0]), float(args.verify[1])
            u = InputSignal.constant(u0) if u0 is not None else None
            t1 = time.perf_counter()
            traj = plugins.simulate(model, duration, backend="torch", mode="spiking", trials=trials,
                                    seed=args.seed + 11, u=u, record_dt=lag / 2)
            run_s = time.perf_counter() - t1
            zz, k = traj.z, 2
            z0, z1 = zz[:, :-k].reshape(-1, sde.dim), zz[:, k:].reshape(-1, sde.dim)
            uu = None if u0 is None else np.broadcast_to(u0, (len(z0), len(u0)))
            f = model.latent_drift(z0, uu) if uu is not None else model.latent_drift(z0)
            r = z1 - z0 - f * k * traj.dt
            C = r.T @ r / len(r) / (k * traj.dt)
            G = np.mean(model.latent_cov(z0[::50], None if uu is None else uu[::50]), axis=0)
            kw, _ = verify_arguments(model, traj)
            rep = verify(traj=traj, **kw)
            print(f"        random spikes, {trials} x {duration:g} in {run_s:.0f} s: residual variance over the basis's "
                  f"at lag {k * traj.dt:.3g}: " + ", ".join(f"{v} {c:.4f}" for v, c in zip(sde.variables,
                                                                                       np.diag(C) / np.diag(G)))
                  + f"; verify {'PASS' if rep.passed else 'FAIL'}: "
                  + ", ".join(f"{name} {m['value']:.4g}/{m['threshold']:.4g}" for name, m in rep.metrics.items()),
                  flush=True)


if __name__ == "__main__":
    main()
