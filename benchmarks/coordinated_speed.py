"""Spike-coordinated networks: torch's compiled loop against Brian2's generated C++, side by side.

The same coordinated model (a closed-form tanh basis of the system, delta tuned to 70 Hz on torch pilot
runs) is run for the same trials, duration, seed and noise in the torch back end and in ``brian2-cpp``
(``exporters/brian2/coordinated.py``: one build per run, its compile reported apart). Prints, per N: the
step, how many steps the basis is held, each back end's wall time for the runs (Brian2: compile and run
apart), the ratio of the run times, and both mean rates. Noise-free runs also print the largest difference
of the two read-outs (0: the same steps).

    OMP_NUM_THREADS=1 python benchmarks/coordinated_speed.py --system lorenz -n 200 800 --trials 4 --duration 1

Results: RESULTS_spike_coordination.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", default="lorenz", help="a built-in system or a .toml spec (default lorenz)")
    ap.add_argument("-n", type=int, nargs="+", default=[200, 800], help="spiking neurons (default 200 800)")
    ap.add_argument("--basis", type=int, default=500, help="tanh basis units (default 500)")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--duration", type=float, default=1.0, help="SDE time units per trial (default 1)")
    ap.add_argument("--no-noise", action="store_true", help="noise-free runs (and the read-outs compared)")
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE of the system")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ddm_neuro import plugins
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.spec import load_spec
    from ddm_neuro.sde.systems import get_system
    from ddm_neuro.spiking.coordinated import tune_delta
    from ddm_neuro.spiking.noise import verify_lag

    params = {k: float(v) for k, v in (p.split("=", 1) for p in args.param)}
    sde = load_spec(args.system, params) if args.system.endswith(".toml") else get_system(args.system, **params)
    basis = fit(sde, n_neurons=args.basis, steps=0, seed=0, progress=False)
    lag = verify_lag(sde, basis.init_states[:2000], None)
    noise = "none" if args.no_noise else "model"
    print(f"{sde.name}: basis {args.basis} tanh units, {args.trials} x {args.duration:g} time units, noise {noise}, "
          f"time scale {basis.time_scale:.4g} s per unit, one thread")
    print(f"{'N':>6} {'step us':>8} {'hold':>5} {'torch s':>8} {'b2 compile s':>13} {'b2 run s':>9} "
          f"{'b2/torch':>9} {'rate torch':>11} {'rate b2':>8} {'max |dz|':>9}")
    for n in args.n:
        model, _ = tune_delta(basis, n, seed=0, record_dt=lag)
        kw = dict(mode="spiking", trials=args.trials, seed=3, noise=noise, progress=False)
        t0 = time.perf_counter()
        t = plugins.simulate(model, args.duration, backend="torch", **kw)
        torch_s = time.perf_counter() - t0
        b = plugins.simulate(model, args.duration, backend="brian2-cpp", **kw)
        step_us = 1e6 * t.meta["integration_dt"] * model.time_scale
        hold = max(1, int(round(20.0 / step_us)))
        dz = float(np.abs(b.z - t.z).max()) if args.no_noise else float("nan")
        print(f"{n:>6} {step_us:>8.2f} {hold:>5} {torch_s:>8.1f} {b.meta['compile_seconds']:>13.1f} "
              f"{b.meta['run_seconds']:>9.1f} {b.meta['run_seconds'] / torch_s:>9.2f} "
              f"{t.meta['mean_rate_hz']:>11.1f} {b.meta['mean_rate_hz']:>8.1f} {dz:>9.3g}", flush=True)


if __name__ == "__main__":
    main()
