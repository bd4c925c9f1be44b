"""Entropy production rate, mean rotation and cycling of fitted networks vs their targets.

For each system: an ordinary fit (asymmetric W) and a fit constrained to
symmetric W (``ddm_neuro.analysis.fit_symmetric``), same N, neuron and seed;
then ``ddm_neuro.analysis.analyze`` runs target A, target B, the network and the
symmetric network for the same length and prints, per run, the entropy
production rate (bias-corrected trajectory estimator, ± block standard error),
the mean rotation rate, and for ``ring`` the cycling rate around the wells
(``ddm_neuro.analysis.memory_tasks.visit_sequence``), beside the closed form where one exists
(rotational OU: 2 w^2 / k = 8 for k = 1, w = 2) and the target-vs-target
difference |A - B| (what "no difference" looks like at this length).

    OMP_NUM_THREADS=1 python benchmarks/entropy_production.py            # N = 256, 16 x 100 time units
    OMP_NUM_THREADS=1 python benchmarks/entropy_production.py --quick    # N = 64, 8 x 20
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ddm_neuro.analysis import analyze, fit_symmetric
from ddm_neuro.fit.matching import fit
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory


def cycling(an, sde):
    """Cycle rate (net forward transitions / K per time unit) of each run, for ``ring``; None elsewhere."""
    if sde.name != "ring":
        return {}
    try:
        from ddm_neuro.analysis.memory_tasks import ring_centres, visit_sequence
    except ImportError:
        return {}
    p = sde.parameters
    centres = ring_centres(p["K"], p["a"], p["omega"])
    dt = an.data["dt"]
    out = {}
    for name, z in an.data["runs"].items():
        traj = Trajectory(t=np.arange(z.shape[1]) * dt, z=z, dt=dt, meta={})
        v = visit_sequence(traj, centres)
        out[name] = (v.cycle_rate, v.cycle_se, v.forward_fraction, v.n_transitions)
    return out


def run(system, n, duration, trials, seed, steps, fit_size):
    sde = get_system(system)
    t0 = time.perf_counter()
    net = fit(sde, n_neurons=n, seed=seed, steps=steps, progress=False, **fit_size)
    t1 = time.perf_counter()
    sym = fit_symmetric(sde, n_neurons=n, seed=seed, steps=steps, progress=False, **fit_size)
    t2 = time.perf_counter()
    an = analyze(net, sde, duration=duration, trials=trials, seed=seed, symmetric_model=sym)
    t3 = time.perf_counter()
    r = an.results
    e, ro, dec = r["entropy_production_rate"], r["rotation"], r["decomposition"]
    cyc = cycling(an, sde)
    print(f"\n== {system}: N = {n} tanh, fit steps {steps}, seed {seed}; runs {trials} x {duration:g} time units, "
          f"dt = {r['settings']['dt']:.3g}; basis {e['n_basis']} functions")
    print(f"   held-out drift error: network {100 * net.meta['fit']['drift_error']:.3f} %, symmetric W "
          f"{100 * sym.meta['fit']['drift_error']:.1f} %; wall: fit {t1 - t0:.0f} s, symmetric fit {t2 - t1:.0f} s, "
          f"analysis {t3 - t2:.0f} s")
    print(f"   closed form EPR: {'none' if e['closed_form'] is None else format(e['closed_form'], '.4g')}; "
          f"target A {e['target_runs'][0]:.4g}, target B {e['target_runs'][1]:.4g}: |A - B| = {e['baseline']:.3g} "
          f"(expected spread {e['baseline_spread']:.2g})")
    for name, label in (("network", "network"), ("symmetric_fit", "symmetric W")):
        c = r["connectivity"][name]
        v, sh = c["vorticity"], c["drift_shares"]
        print(f"   {label}: ||W_a||/||W|| = {c['asymmetry']:.3g}; latent vorticity (x/y) {v['total'][0]:.4g} = "
              f"W_s {v['symmetric'][0]:.4g} + W_a {v['antisymmetric'][0]:.4g}; drift projection shares leak "
              f"{sh['leak']['projection_share']:.3f}, W_s {sh['symmetric']['projection_share']:.3f}, "
              f"W_a {sh['antisymmetric']['projection_share']:.3f}")
    head = f"   {'run':<14}{'EPR':>18}{'EPR (field)':>13}{'rotation':>18}"
    head += f"{'cycle rate':>18}{'fwd frac':>10}{'transitions':>12}" if cyc else ""
    print(head)
    rows = (("target", "target", "target_a"), ("network", "network", "network"),
            ("symmetric W", "symmetric_fit", "symmetric_fit"))
    for label, key, run_key in rows:
        line = f"   {label:<14}{e[key]:>10.4g} ± {e[key + '_stderr']:<5.2g}" \
               f"{dec[key]['entropy_production_field']:>13.4g}" \
               f"{ro[key][0]:>10.4g} ± {ro[key + '_stderr'][0]:<5.2g}"
        if cyc:
            c = cyc[run_key]
            line += f"{c[0]:>10.4g} ± {c[1]:<5.2g}{c[2]:>10.3f}{c[3]:>12d}"
        print(line)
    if cyc:
        from ddm_neuro.analysis.memory_tasks import risken_current

        p = sde.parameters
        J = risken_current(lambda th: p["omega"] - p["a"] * np.sin(p["K"] * th), p["sigma"] ** 2 / 2)
        print(f"   reference, radius pinned at 1 (Risken): cycle rate J = {J:.4g}, EPR = 4 pi omega J / sigma^2 = "
              f"{4 * np.pi * p['omega'] * J / p['sigma'] ** 2:.4g} (approximate: the radius fluctuates)")
        c = cyc["target_b"]
        print(f"   (target B cycle rate {c[0]:.4g} ± {c[1]:.2g}; target row = mean of A and B for EPR and rotation, "
              "run A for cycling)")
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["ou_rot", "ring"])
    p.add_argument("-n", type=int, default=256)
    p.add_argument("--duration", type=float, default=100.0)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="N = 64, 20 fit steps, 8 x 20 time units")
    a = p.parse_args(argv)
    fit_size = {}
    if a.quick:
        a.n, a.steps, a.duration, a.trials = 64, 20, 20.0, 8
        fit_size = dict(n_train=4000, n_val=1000, n_test=1000, n_noise=100)
    for system in a.systems:
        run(system, a.n, a.duration, a.trials, a.seed, a.steps, fit_size)


if __name__ == "__main__":
    main()
