"""Speed of the NEST spiking back end beside Brian2 C++: wall seconds per simulated second.

Runs one fitted LIF model (larger N repeat its neurons, see ``nest_speed.repeated``) through
``simulate --mode spiking`` in each back end, with the noise remainder on (the default), one
trial, one thread, and prints one markdown row per N, ratios side by side:

* NEST factored (the default: the latent current set from Python every step) at NEST's default
  step of 0.025 ms and at the other back ends' 0.1 ms;
* NEST dense (N^2 synapses) at 0.025 ms where it fits (``--dense-max``);
* Brian2 C++ factored at its default 0.1 ms (compiled by a short run first, not timed).

    OMP_NUM_THREADS=1 python benchmarks/nest_spiking_speed.py MODEL.ddm [--sizes 2000,10000] [--seconds 0.2]

Figures: ``benchmarks/RESULTS_nest.md``.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nest_speed import repeated  # noqa: E402


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(backend, model, seconds, **kw):
    """Wall seconds per simulated second of one spiking run."""
    from ddm_neuro.plugins import simulate

    units = seconds / model.time_scale
    if backend == "brian2-cpp":   # compile once (the structure's build is cached), untimed
        simulate(model, 0.01 * units, backend=backend, mode="spiking", seed=0, **kw)
    t0 = time.perf_counter()
    simulate(model, units, backend=backend, mode="spiking", seed=1, **kw)
    return (time.perf_counter() - t0) / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--sizes", default="2000,10000")
    ap.add_argument("--seconds", type=float, default=0.2, help="simulated seconds per timed run")
    ap.add_argument("--dense-max", type=int, default=2000, help="largest N run with NEST dense coupling")
    args = ap.parse_args()
    from ddm_neuro.network import LatentRNN

    base = LatentRNN.load(args.model)
    print(f"{args.model}: N = {base.n_neurons} LIF, {args.seconds:g} s simulated per run, noise remainder, "
          f"1 trial, 1 thread; load {os.getloadavg()[0]:.2f}")
    print("| N | NEST factored 0.025 ms s/s | NEST factored 0.1 ms s/s | NEST dense 0.025 ms s/s | "
          "Brian2 C++ factored 0.1 ms s/s | NEST factored 0.025 / Brian2 | NEST factored 0.1 / Brian2 | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        model = repeated(base, max(1, n // base.n_neurons))
        h01 = 1e-4 / model.time_scale
        nf = timed("nest", model, args.seconds, coupling="factored")
        nf01 = timed("nest", model, args.seconds, coupling="factored", dt=h01)
        nd = timed("nest", model, args.seconds, coupling="dense") if model.n_neurons <= args.dense_max else None
        b2 = timed("brian2-cpp", model, args.seconds, coupling="factored")
        print(f"| {model.n_neurons} | {nf:.2f} | {nf01:.2f} | {'' if nd is None else f'{nd:.1f}'} | {b2:.2f} | "
              f"{nf / b2:.1f}x | {nf01 / b2:.1f}x | {rss_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()
