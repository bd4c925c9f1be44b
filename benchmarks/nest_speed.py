"""NEST rate-mode speed beside Brian2 C++: wall seconds per simulated second, side by side in one run.

Networks: ``ou_rot`` fitted at N = 1024 (tanh, closed form), and the same
network repeated r times for N = 1024 r (each copy's decoders divided by r and
its private noise intensity multiplied by r: the same SDE, the cost of N
neurons). One trial, noise on (NEST dense: noise-free, the only dense network
NEST carries; a shorter run, ``--dense-duration``), the model's own step. NEST dense is run where its N^2 rate
synapses fit in memory (measured per synapse at the smaller N, projected for
the larger). Times exclude building (NEST: node creation and connection;
Brian2 C++: compilation, run once before the timed run); Brian2 C++ includes
its binary's start and read-back.

    OMP_NUM_THREADS=1 python benchmarks/nest_speed.py [--sizes 1024,4096,16384] [--duration 2]

Figures: ``benchmarks/RESULTS_nest.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import numpy as np


def repeated(model, r):
    """``model`` with every neuron repeated ``r`` times: the same latent SDE, N r neurons."""
    if r == 1:
        return model
    return dataclasses.replace(
        model, encoders=np.tile(model.encoders, (r, 1)), decoders=np.tile(model.decoders, (1, r)) / r,
        readout=np.tile(model.readout, (1, r)) / r, bias=np.tile(model.bias, r),
        input_weights=np.tile(model.input_weights, (r, 1)), noise_const=np.tile(model.noise_const, r) * r,
        noise_act=np.tile(model.noise_act, r) * r, meta=dict(model.meta))


def nest_run(model, duration, coupling, threads=1):
    """``(run_s, build_s, rss_mb)`` of one NEST run (stats of :func:`exporters.nest.network.simulate_rate`)."""
    from exporters.nest.network import simulate_rate
    from exporters.spec import initial_state, model_spec
    from ddm_neuro.run.plan import network_steps

    arrays, info = model_spec(model)
    dt, rec = network_steps(model)
    every = max(1, int(np.ceil(rec / dt - 1e-9)))
    n_rec = int(round(duration / (dt * every))) + 1
    x0, _ = initial_state(arrays, model.init_states[:1])
    _, stats = simulate_rate(arrays, info, trials=1, dt=dt, n_rec=n_rec, record_every=every, x0=x0, seed=1,
                             threads=threads, coupling=coupling, noise=coupling == "factored")
    return stats["run_s"], stats["build_s"], stats["max_rss_mb"]


def brian2_run(model, duration):
    """Wall seconds of a Brian2 C++ factored run (compiled beforehand by a short run of the same structure)."""
    from ddm_neuro.plugins import get_backend

    run = get_backend("brian2-cpp", "rate")
    run(model, 0.1, trials=1, seed=0, u=None, mode="rate", progress=False, coupling="factored")  # compile
    t0 = time.perf_counter()
    run(model, duration, trials=1, seed=1, u=None, mode="rate", progress=False, coupling="factored")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,4096,16384")
    ap.add_argument("--duration", type=float, default=2.0, help="SDE time units per timed run")
    ap.add_argument("--dense-duration", type=float, default=0.2, help="SDE time units of the (slow) dense runs")
    ap.add_argument("--dense-max-gb", type=float, default=6.0, help="skip NEST dense above this projected memory")
    args = ap.parse_args()
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.systems import get_system

    sizes = [int(s) for s in args.sizes.split(",")]
    base = fit(get_system("ou_rot"), n_neurons=1024, steps=0, seed=0, progress=False)
    sim_s = args.duration * base.time_scale
    print(f"ou_rot, T = {base.time_scale:.4f} s per SDE unit, {args.duration:g} SDE units = {sim_s:.3f} s simulated;"
          f" load {os.getloadavg()[0]:.2f}")
    print("| N | NEST factored s/s | NEST dense s/s | Brian2 C++ factored s/s | NEST factored / Brian2 | "
          "NEST dense / factored | NEST build s (factored / dense) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    per_synapse = None
    for n in sizes:
        model = repeated(base, max(1, n // 1024))
        fac, fac_build, _ = nest_run(model, args.duration, "factored")
        projected = None if per_synapse is None else per_synapse * n * n / 2 ** 30
        if projected is not None and projected > args.dense_max_gb:
            den, den_build, den_note = None, None, f"not run: ~{projected:.0f} GB projected"
        else:
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            den, den_build, rss = nest_run(model, args.dense_duration, "dense")
            den *= args.duration / args.dense_duration          # per the same simulated time as the others
            per_synapse = max(rss - rss0, 1.0) * 2 ** 20 / (n * n) if rss > rss0 else per_synapse
            den_note = f"{den / sim_s:.1f}"
        b2 = brian2_run(model, args.duration)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {n} | {fac / sim_s:.2f} | {den_note} | {b2 / sim_s:.2f} | {fac / b2:.2f}x | "
              f"{'' if den is None else f'{den / fac:.1f}x'} | {fac_build:.1f} / "
              f"{'' if den_build is None else f'{den_build:.1f}'} | {rss:.0f} |", flush=True)
    if per_synapse:
        print(f"NEST dense: ~{per_synapse:.0f} bytes per rate synapse (peak RSS growth / N^2)")


if __name__ == "__main__":
    main()
