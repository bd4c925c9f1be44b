"""Episodic memory: a ring of wells visited in order, network vs target SDE and Risken's closed form.

The built-in ``ring`` is, in polar form, ``dr = λ(1 - r²) r dt + ...`` and
``dθ = (ω - a sin Kθ) dt + (σ / r) dW``: K wells on the unit circle, tilted by
the solenoidal (non-gradient) drive ω < a, so noise carries the state from
well to well *forward*, k -> k+1 -> ... -> k. Here the radius is pinned
(λ = 10) and the tilt is ω = 1.8 (a = 2, K = 3, σ = 0.3), so the state cycles
about once every 20 time units. The script

1. fits N = 256 tanh neurons to it;
2. simulates the network (torch) and the target SDE;
3. measures the order of visits (:func:`ddm_neuro.analysis.memory_tasks.visit_sequence`: the
   fraction of forward transitions), the cycle rate, the dwell times, and the
   mean angular velocity ``<dθ/dt> = 2π J`` (:func:`ddm_neuro.analysis.memory_tasks.angular_current`),
   against the target and against Risken's closed form for the angle SDE with
   ``D = σ² <r⁻²> / 2`` (:func:`ddm_neuro.analysis.memory_tasks.risken_current`);
4. writes ``phase_portrait.png`` (network beside target), ``angle.png``
   (unwrapped angle vs time, well labels), ``visits.png`` (transition counts)
   and ``angle_density.png`` (stationary angle density vs Risken's).

Full run (8 trials x 200 time units): a few minutes on one shared core;
``--quick`` (N = 64, 2 trials x 10) a smoke run, not a measurement.

    python examples/episodic_cycling.py [--out DIR] [--quick] [--force]
"""
import math
import time

import numpy as np

from ddm_neuro.plugins import get_backend
from ddm_neuro.fileio import atomic_directory
from ddm_neuro.fit.matching import fit
from ddm_neuro.analysis.memory_tasks import (angular_current, compare_proportions, ring_angle_diffusion, ring_centres,
                              risken_current, risken_density, visit_sequence)
from ddm_neuro.plots import attractor_figure
from ddm_neuro.sde.systems import get_system

from _common import fit_options, parse_args, pyplot, run, save  # examples/_common.py

PARAMS = dict(lam=10.0, omega=1.8)  # over the built-in ring's K = 3, a = 2, sigma = 0.3
# Euler step: the default (1.5e-4, from the drift's rates over the whole domain box) is set by the radial
# rate ~ lam r^2 in the box's corners; on the ring the fastest rate is 2 lam = 20, so 5e-4 is ample
STEPS = dict(dt=5e-4, record_dt=5e-3)



def angle_figure(runs, visits, K, path, trials=3):
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    colours = {"network": "tab:blue", "target": "tab:gray"}
    for name, traj in runs.items():
        theta = np.unwrap(np.arctan2(traj.z[..., 1], traj.z[..., 0]), axis=1)
        for i in range(min(trials, traj.trials)):
            axes[0].plot(traj.t, theta[i] / (2 * math.pi), color=colours[name], lw=0.7, alpha=0.8,
                         label=name if i == 0 else None)
        v = visits[name]
        if len(v.labels[0]):  # hold the last well to the end of the run
            ts, ks = np.r_[v.entry_times[0], traj.t[-1]], np.r_[v.labels[0], v.labels[0][-1]]
            axes[1].step(ts, ks + (0.08 if name == "network" else -0.08), where="post", color=colours[name], lw=1,
                         label=f"{name}, trial 1")
    axes[0].set_ylabel("θ / 2π (cycles)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_ylabel("well visited")
    axes[1].set_yticks(range(int(K)))
    axes[1].set_xlabel("time (SDE units)")
    axes[1].legend(loc="upper right", fontsize=8)
    fig.suptitle("directed cycling through the wells (forward = counter-clockwise)")
    save(fig, path)


def visits_figure(visits, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(visits)
    x = np.arange(3)
    for k, name in enumerate(names):
        v = visits[name]
        ax.bar(x + (k - 0.5) * 0.38, [v.n_forward, v.n_backward, v.n_other], 0.38, label=name)
    ax.set_xticks(x, ["forward k→k+1", "backward k→k-1", "other"])
    ax.set_ylabel("transitions")
    ax.legend()
    save(fig, path)


def density_figure(runs, h, D, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 2 * math.pi, 73)
    for name, traj in runs.items():
        theta = np.mod(np.arctan2(traj.z[..., 1], traj.z[..., 0]), 2 * math.pi).ravel()
        ax.hist(theta, bins=bins, density=True, histtype="step", lw=1.2, label=name,
                color={"network": "tab:blue", "target": "tab:gray"}[name])
    x, p = risken_density(h, D)
    ax.plot(x, p, "k--", lw=1, label="Risken (closed form)")
    ax.set_xlabel("θ")
    ax.set_ylabel("stationary density")
    ax.legend()
    save(fig, path)


def main(argv=None):
    args = parse_args(__doc__, "cycling_out", argv)
    t_start = time.perf_counter()
    n, trials, duration = (64, 2, 10.0) if args.quick else (256, 8, 200.0)
    small = fit_options(args)
    sde = get_system("ring", **PARAMS)
    P = {k: float(v) for k, v in sde.parameters.items()}
    K, a, om, sig, lam = P["K"], P["a"], P["omega"], P["sigma"], P["lam"]
    with atomic_directory(args.out, force=args.force) as out:
        print(f"== fit ring (K={K:g}, a={a:g}, omega={om:g}, lam={lam:g}, sigma={sig:g}): N = {n}, seed 0")
        model = fit(sde, n_neurons=n, seed=0, progress=False, **small)
        f = model.meta["fit"]
        print(f"   held-out drift error {f['drift_error']:.2%}, diffusion error {f['diffusion_error']:.2%}")
        model.save(out / "model.ddm")
        print(f"== simulate {trials} trials x {duration:g} time units")
        runs = {}
        for name, backend, seed in (("network", "torch", 1), ("target", "target", 2)):
            t0 = time.perf_counter()
            runs[name] = get_backend(backend, "rate")(model, duration, trials=trials, seed=seed, u=None, mode="rate",
                                                      progress=False, **STEPS)
            runs[name].save(out / f"{name}.npz")
            print(f"   {name}: {time.perf_counter() - t0:.1f} s")
        centres = ring_centres(K, a, om)
        visits = {k: visit_sequence(tr, centres) for k, tr in runs.items()}
        vel = {k: angular_current(tr) for k, tr in runs.items()}
        D, m2 = ring_angle_diffusion(sig, lam)
        h = lambda th: om - a * np.sin(K * th)  # noqa: E731
        v_closed = 2 * math.pi * risken_current(h, D)

        print(f"\n{'run':<8} {'transitions':>11} {'forward':>8} {'SE':>6} {'cycles/unit':>11} {'SE':>7} "
              f"{'mean dwell':>10} {'<dθ/dt>':>8} {'SE':>7}")
        for k in runs:
            v, d = visits[k], visits[k].to_dict()
            print(f"{k:<8} {v.n_transitions:11d} {v.forward_fraction:8.3f} {v.forward_se:6.3f} {v.cycle_rate:11.4f} "
                  f"{v.cycle_se:7.4f} {d['mean_dwell']:10.2f} {vel[k][0]:8.4f} {vel[k][1]:7.4f}")
        print(f"{'Risken':<8} {'':>11} {'':>8} {'':>6} {v_closed / (2 * math.pi):11.4f} {'':>7} {'':>10} "
              f"{v_closed:8.4f}   (D = σ²<r⁻²>/2 = {D:.4f}, <r⁻²> = {m2:.4f})")
        vn, vt = visits["network"], visits["target"]
        if vn.n_transitions and vt.n_transitions:
            zf = compare_proportions(vn.n_forward, vn.n_transitions, vt.n_forward, vt.n_transitions)[2]
            print(f"network vs target: z(forward fraction) = {zf:.2f}, z(<dθ/dt>) = "
                  f"{(vel['network'][0] - vel['target'][0]) / math.hypot(vel['network'][1], vel['target'][1]):.2f}")
        attractor_figure(runs["network"], runs["target"], out / "phase_portrait.png", variables=["x", "y"],
                         title="ring of 3 wells: network (left) vs target SDE (right)")
        angle_figure(runs, visits, K, out / "angle.png")
        visits_figure(visits, out / "visits.png")
        density_figure(runs, h, D, out / "angle_density.png")
    print(f"\nwrote {args.out}/: phase_portrait.png, angle.png, visits.png, angle_density.png, model.ddm, "
          f"network.npz, target.npz; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    run(main)
