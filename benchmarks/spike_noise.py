"""Issue 5 figure: the latent diffusion that spikes add, measured against its estimates, for two N.

For the 2-D OU (dz = -z dt + dW), fitted with LIF neurons (closed form,
``steps=0``), the spiking network is simulated *without* injected noise
(torch, dt 0.1 ms, factored coupling) and the diffusion of
``z(t+lag) - z(t) - int f_net(z) ds`` is measured at several lags
(:func:`ddm_neuro.spiking.measure_spike_noise`). It is compared with

* the Poisson estimate ``T S K diag(r) K^T S / tau^2`` (F = 1), and
* the regular-firing estimate (F = f(1-f)/(r lag), :func:`ddm_neuro.spiking.noise.regular_fano`),

both averaged over the visited states; the effective Fano factor is the
measured/Poisson ratio. The target's own diffusion is 1 per SDE time unit.
Then the network is run with ``noise="remainder"`` (spikes + the model's
private noise minus the spikes' estimate, clipped at 0, + the shared top-up),
counting the spikes as Poisson (F = 1) or as regular firing over one SDE time
unit (``fano="regular"``), and its total latent diffusion is measured the same
way against the model's (= the target's) and its stationary std against
1/sqrt(2).

    OMP_NUM_THREADS=1 python benchmarks/spike_noise.py [--n 200 800] [--duration 40]
"""
import argparse
import time
import warnings

import numpy as np
import torch

from ddm_neuro.fit.matching import fit
from ddm_neuro.spiking.measure import measure_spike_noise, residual_cov
from ddm_neuro.spiking.noise import SpikeNoiseWarning, regular_fano, spike_noise_cov, spike_noise_excess
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[200, 800])
    ap.add_argument("--duration", type=float, default=40.0, help="SDE time units per trial")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lags = (None, 1.0, 4.0, 16.0)  # one recording step (tau/10), then in units of tau
    for n in args.n:
        t0 = time.perf_counter()
        m = fit(get_system("ou"), n_neurons=n, neuron="lif", steps=0, n_train=10000, n_val=1000, n_test=500,
                seed=args.seed, progress=False)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = measure_spike_noise(m, args.duration, lags=lags, trials=args.trials, seed=args.seed)
        t_sim = time.perf_counter() - t0
        sim_s = args.duration * args.trials * m.time_scale
        z = res.traj.z.reshape(-1, m.dim)[::4]
        ex = spike_noise_excess(m, 1.0)
        print(f"\nOU, N = {n}: tau = {m.tau * 1e3:g} ms, T = {m.time_scale:.4g} s, drift error "
              f"{100 * m.meta['fit']['drift_error']:.2f} %, ridge lambda {m.meta['fit']['ridge_lambda']:.3g}, "
              f"mean rate {res.traj.meta['mean_rate_hz']:.1f} Hz; fit {t_fit:.1f} s, simulation "
              f"{t_sim:.1f} s for {sim_s:.2f} s of network time ({t_sim / sim_s:.1f} s per simulated second)")
        print(f"  Poisson spike noise on the start states: {ex['ratio']:.3g} x the target along the worst "
              f"direction (N needed at F = 1: {ex['n_needed']})")
        print(f"  {'lag':>9} {'measured diag':>22} {'Poisson est.':>22} {'meas/Poisson':>16} {'F_eff':>7} "
              f"{'regular est.':>22} {'meas/regular':>14}")
        for lag, M, F in zip(res.lags, res.measured, res.fano):
            reg = spike_noise_cov(m, z, fano=regular_fano(m, z, lag)).mean(0)
            fmt = lambda v: " ".join(f"{x:10.4g}" for x in v)  # noqa: E731
            print(f"  {lag * 1e3:6.1f} ms {fmt(np.diag(M))} {fmt(np.diag(res.estimate))} "
                  f"{fmt(np.diag(M) / np.diag(res.estimate)):>16} {F:7.4f} {fmt(np.diag(reg))} "
                  f"{fmt(np.diag(M) / np.diag(reg)):>14}")
        target = np.diag(m.latent_cov(z).mean(0))
        steps = [1, int(round(4 * m.tau / (m.time_scale * res.traj.dt)))]
        for fano in (1.0, "regular"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SpikeNoiseWarning)
                tr = simulate_spiking(m, args.duration, record_dt=res.traj.dt, trials=args.trials,
                                      seed=args.seed + 1, noise="remainder", fano=fano)
            C = residual_cov(m, tr, steps)
            std = tr.z[:, len(tr.t) // 10:].std((0, 1))
            print(f"  remainder, fano={fano!s:8}: total diffusion / model's at 2 ms "
                  f"{' '.join(f'{v:.3f}' for v in np.diag(C[0]) / target)}, at 4 tau "
                  f"{' '.join(f'{v:.3f}' for v in np.diag(C[1]) / target)}; stationary std "
                  f"{' '.join(f'{v:.3f}' for v in std)} (target {1 / np.sqrt(2):.3f})")


if __name__ == "__main__":
    main()
