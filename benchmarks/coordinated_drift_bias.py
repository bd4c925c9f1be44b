"""Spike-coordinated networks: the read-out's drift bias with and without the read-out error's leak, side by side.

For a system without inputs, fits the closed-form basis (500 tanh units, the ridge of least error, as ``convert``
does) at each multiple of the fit's time scale, tunes delta to 70 Hz at N neurons on pilot runs recorded at
``verify``'s lag, runs the network noise-free in torch's loop with the error leaking at 1 / tau (models made before
2026-12-08) and without (since), and prints the bias: the cell-averaged residual of the read-out's increments
against the target's own flow over the lag (RK4), relative to the flow's increments (k-means cells on the
standardised states, as ``verify`` bins; its drift metric weighs the same residual). The same figure at 4 lags
tells a bias (unchanged) from the spikes' jitter (which would fall). With the leak the read-out's drift is
``f - (T / tau) mean(e)``, so its bias grows with T; without it, it does not.

    OMP_NUM_THREADS=1 python benchmarks/coordinated_drift_bias.py lorenz -n 800 --factors 1.88 3.76

(1.88 x the fit's time scale is the 1.05 s that ``convert`` chose for stochastic Lorenz.)
Results: RESULTS_conversion.md, "2026-12-08, second session".
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def flow(sde, z, h, steps=4):
    """The target's noise-free flow from states ``z`` over ``h`` time units (RK4)."""
    for _ in range(steps):
        s = h / steps
        k1 = sde.drift(z)
        k2 = sde.drift(z + s / 2 * k1)
        k3 = sde.drift(z + s / 2 * k2)
        k4 = sde.drift(z + s * k3)
        z = z + s / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return z


def bias(sde, z, lag, cells=20, seed=1):
    """Cell-averaged residual of the increments of ``z`` (trials, n, d) against the flow, relative to the flow's."""
    from scipy.cluster.vq import kmeans2

    d = z.shape[-1]
    z0, z1 = z[:, :-1].reshape(-1, d), z[:, 1:].reshape(-1, d)
    m = flow(sde, z0, lag) - z0
    r = z1 - z0 - m
    _, label = kmeans2((z0 - z0.mean(0)) / z0.std(0), cells, seed=seed, minit="++")
    num = den = 0.0
    for b in range(cells):
        k = label == b
        if k.sum() >= 10:
            num += k.sum() * np.sum(r[k].mean(0) ** 2)
            den += k.sum() * np.sum(m[k].mean(0) ** 2)
    return float(np.sqrt(num / den))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", help="a built-in system or a .toml spec without inputs")
    ap.add_argument("-n", type=int, default=800, help="spiking neurons (default 800)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0],
                    help="time scales as multiples of the basis fit's (default 1 2)")
    ap.add_argument("--duration", type=float, default=10.0, help="time units per trial after 2 discarded (default 10)")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.load import load_sde
    from ddm_neuro.spiking.coordinated import simulate_coordinated, tune_delta
    from ddm_neuro.spiking.noise import verify_lag

    sde = load_sde(args.system)
    if sde.n_inputs:
        ap.error(f"{sde.name} has inputs; this benchmark takes systems without")
    t_fit = fit(sde, n_neurons=500, seed=args.seed, steps=0, progress=False, ridge="least-error").time_scale
    print(f"{sde.name}: N = {args.n}, basis 500 tanh units (least-error ridge), the fit's time scale {t_fit:.4g} s")
    print(f"{'T (s)':>7} {'delta':>8} {'rate Hz':>8} {'jitter':>8}   {'bias, leak':>10} {'(4 lags)':>9}   "
          f"{'bias, none':>10} {'(4 lags)':>9}   {'s':>5}")
    for factor in args.factors:
        t0 = time.perf_counter()
        basis = fit(sde, n_neurons=500, seed=args.seed, steps=0, progress=False, ridge="least-error",
                    time_scale=t_fit * factor)
        lag = verify_lag(sde, basis.init_states)
        model, facts = tune_delta(basis, args.n, record_dt=lag, seed=args.seed)
        leaky = copy.deepcopy(model)
        leaky.meta["coordinated"]["error_leak"] = True
        row = []
        for m in (leaky, model):
            z, _ = simulate_coordinated(m, duration=args.duration + 2.0, trials=args.trials, record_dt=lag,
                                        seed=args.seed + 1, noise=False)
            z = z[:, int(round(2.0 / lag)):]
            row += [bias(sde, z, lag), bias(sde, z[:, ::4], 4 * lag)]
        print(f"{basis.time_scale:>7.4g} {facts['delta']:>8.4g} {facts['rate_hz']:>8.1f} {facts['jitter']:>8.3g}   "
              f"{row[0]:>10.5f} {row[1]:>9.5f}   {row[2]:>10.5f} {row[3]:>9.5f}   {time.perf_counter() - t0:>5.0f}",
              flush=True)


if __name__ == "__main__":
    main()
