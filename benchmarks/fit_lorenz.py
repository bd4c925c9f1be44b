"""Issue 2 acceptance figures: Lorenz (noise 1.0 per dimension) fitted with N tanh neurons.

Prints, for each N: held-out relative drift error of the closed-form start and
of the refined fit, the diffusion error, the private share of the noise and
the fit wall time; then a 60-time-unit, 16-trial simulation of the N = 512
network: whether it stays on the attractor, and its latent mean, standard
deviation and autocorrelation against the target SDE, each as a score
|difference| / standard error beside the same score for two independent target
runs of equal length (``ddm_neuro.stats``).

    python benchmarks/fit_lorenz.py            # N = 128, 256, 512, 1024
    python benchmarks/fit_lorenz.py --n 512    # one size
"""
import argparse
import time

import numpy as np

from ddm_neuro.fit.matching import fit
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.run.plan import network_steps
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.stats import compare, format_table
from ddm_neuro.sde.systems import get_system


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[128, 256, 512, 1024])
    ap.add_argument("--sim-n", type=int, default=512, help="network size for the 60-unit simulation")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--trials", type=int, default=16)
    args = ap.parse_args()
    sde = get_system("lorenz")
    print(f"{'N':>6}{'closed-form drift err':>24}{'refined drift err':>20}{'diffusion err':>15}"
          f"{'private noise':>15}{'fit time (s)':>14}")
    models = {}
    for n in args.n:
        t0 = time.perf_counter()
        m = fit(sde, n_neurons=n, seed=0, progress=False)
        wall = time.perf_counter() - t0
        f = m.meta["fit"]
        models[n] = m
        print(f"{n:>6}{100 * f['drift_error_closed_form']:>23.4f}%{100 * f['drift_error']:>19.4f}%"
              f"{100 * f['diffusion_error']:>14.3f}%{100 * f['private_noise_share']:>14.1f}%{wall:>14.1f}", flush=True)
    n = args.sim_n
    m = models.get(n) or fit(sde, n_neurons=n, seed=0, progress=False)
    t0 = time.perf_counter()
    net = simulate_network(m, args.duration, trials=args.trials, seed=1)
    t_sim = time.perf_counter() - t0
    dt, rec = network_steps(m)
    rng = np.random.default_rng(7)
    targets = [simulate_sde(sde, args.duration, dt=dt, record_dt=rec, trials=args.trials, seed=rng,
                            z0=m.init_states[rng.integers(0, len(m.init_states), args.trials)]) for _ in range(2)]
    lo, hi = sde.domain_box()
    on = np.isfinite(net.z).all() and np.all((net.z >= lo) & (net.z <= hi))
    late = net.z[:, -len(net.t) // 6:]
    spread = late.std(axis=1).mean(0)
    print(f"\nN = {n}: {args.trials} trials x {args.duration:g} time units, simulated in {t_sim:.1f} s; "
          f"finite and inside the domain box throughout: {bool(on)}; std over the last sixth "
          f"(collapse would give ~0): {np.round(spread, 2)}")
    rows = compare(net, *targets)
    print(format_table(rows, list(sde.variables)))
    print(f"max score network vs target: {max(r['score'] for r in rows):.2f}; "
          f"max score target vs target: {max(r['baseline'] for r in rows):.2f}")


if __name__ == "__main__":
    main()
