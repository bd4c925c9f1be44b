"""What a spiking network costs in NEST with dense coupling (N^2 synapses), beside Brian2 C++.

NEST has no exact factored form for spikes, so a spiking export would carry W = E K as N^2
synapses. This measures that network -- the project's LIF neurons as ``iaf_psc_exp_ps`` (exact
integration and spike times, C_m = tau_m so that the input current is x, V_th = 1, V_reset = 0,
``t_ref`` = tau_ref, exponential synapses tau_syn = tau, weights W / tau, ``I_e`` = bias), spikes only
(no noise remainder: NEST cannot carry it yet, see docs/nest.md) -- against the Brian2 C++ spiking
back end on the same model, noise-free, factored and dense. It is a cost measurement, not a back
end: build time, run time per simulated second, peak memory, mean rate.

    OMP_NUM_THREADS=1 python benchmarks/nest_spiking_cost.py MODEL.ddm [--sizes 2000,10000] [--seconds 0.5]

MODEL is a fitted LIF model; larger N repeat its neurons (see nest_speed.repeated).
Figures: ``benchmarks/RESULTS_nest.md``.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nest_speed import repeated  # noqa: E402


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nest_dense(model, seconds, h_ms=0.1):
    """``(build_s, run_s, mean_rate_hz, rss_mb)`` of the dense spiking network in NEST."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    nest.set(resolution=h_ms, local_num_threads=1, rng_seed=1, print_time=False)
    nm = model.neuron.to_dict()
    tau_ms, tm = model.tau * 1e3, float(nm["tau_m"]) * 1e3
    N = model.n_neurons
    t0 = time.perf_counter()
    neurons = nest.Create("iaf_psc_exp_ps", N, params={
        "C_m": tm, "tau_m": tm, "E_L": 0.0, "V_reset": 0.0, "V_th": 1.0, "t_ref": float(nm["tau_ref"]) * 1e3,
        "tau_syn_ex": tau_ms, "tau_syn_in": tau_ms, "V_min": -1e9})
    neurons.set(I_e=model.bias.tolist(), V_m=np.random.default_rng(0).uniform(0, 1, N).tolist())
    W = (model.encoders @ model.decoders) / model.tau           # a spike adds W_ij / tau to x_i
    nest.Connect(neurons, neurons, "all_to_all", {"synapse_model": "static_synapse", "weight": W, "delay": h_ms})
    rec = nest.Create("spike_recorder")
    nest.Connect(neurons, rec)
    t1 = time.perf_counter()
    nest.Simulate(seconds * 1e3)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, rec.get("n_events") / N / seconds, rss_mb()


def brian2_run(model, seconds, coupling):
    """Wall seconds of a Brian2 C++ spiking run, noise-free (compiled by a short run first), and its mean rate."""
    from ddm_neuro.plugins import get_backend

    run = get_backend("brian2-cpp", "spiking")
    units = seconds / model.time_scale
    run(model, 0.01 * units, trials=1, seed=0, u=None, mode="spiking", progress=False, noise=False, coupling=coupling)
    t0 = time.perf_counter()
    run(model, units, trials=1, seed=1, u=None, mode="spiking", progress=False, noise=False, coupling=coupling)
    wall = time.perf_counter() - t0
    tr = run(model, 0.2 * units, trials=1, seed=1, u=None, mode="spiking", progress=False, noise=False,
             coupling=coupling, record_spikes=True)   # the rate, untimed: Brian2's spike recording is slow
    return wall, tr.meta.get("mean_rate_hz", float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--sizes", default="2000,10000")
    ap.add_argument("--seconds", type=float, default=0.5, help="simulated seconds per timed run")
    ap.add_argument("--brian2-dense-max", type=int, default=2000)
    args = ap.parse_args()
    from ddm_neuro.network import LatentRNN

    base = LatentRNN.load(args.model)
    print(f"{args.model}: N = {base.n_neurons} LIF, {args.seconds:g} s simulated per run, step 0.1 ms; "
          f"load {os.getloadavg()[0]:.2f}")
    print("| N | NEST dense build s | NEST dense s/s | NEST rate Hz | Brian2 C++ factored s/s | Brian2 C++ dense s/s | "
          "NEST dense / Brian2 factored | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        model = repeated(base, max(1, n // base.n_neurons))
        build, run_s, rate, rss = nest_dense(model, args.seconds)
        b2f, b2_rate = brian2_run(model, args.seconds, "factored")
        b2d = brian2_run(model, args.seconds, "dense")[0] if model.n_neurons <= args.brian2_dense_max else None
        print(f"| {model.n_neurons} | {build:.1f} | {run_s / args.seconds:.2f} | {rate:.1f} (Brian2 {b2_rate:.1f}) | "
              f"{b2f / args.seconds:.2f} | {'' if b2d is None else f'{b2d / args.seconds:.2f}'} | "
              f"{run_s / b2f:.1f}x | {rss:.0f} |", flush=True)


if __name__ == "__main__":
    main()
