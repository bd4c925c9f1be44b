"""Core partitioning of a Lorenz LIF network, and what the graph files cost.

Fits Lorenz with N LIF neurons (closed form, ``steps=0``, by default: the
partition depends only on W = E K), then partitions the neurons for Loihi
(1024 neurons per core) and for 256-neuron cores (SpiNNaker-like) and prints,
for the partition and for a random assignment with the same core sizes, the
fraction of synapses and of the weight mass |W| that crosses cores, and the
cross-core traffic from the neurons' mean rates (spike messages/s: one per
destination core; synaptic events/s). The fitted W is dense, so synapse counts
(and hence traffic) do not depend on the assignment; the same figures are
printed for W sparsified to each neuron's ``--fan-in`` strongest inputs, where
they do, with the partition minimising cross-core synapses (the default for a
sparse W) and cross-core weight mass (the default for a dense W). Last, the
export cost (wall time, file size) of the three formats
for an N = ``--export-n`` model, and the JSON load time.

    python benchmarks/graph_partition.py                      # N = 2048, ~2-3 min on one core
    python benchmarks/graph_partition.py --model lorenz.ddm   # an existing model
    python benchmarks/graph_partition.py --n 256 --memory     # quick; with the exports' peak memory
"""
import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.sde.systems import get_system
from exporters.graph import load_graph_json, partition_network
from exporters.graph.build import mean_rates
from exporters.graph.export import export_graph


def sparsify(W, fan_in):
    """Keep each neuron's ``fan_in`` strongest inputs (largest |W[i, j]| in row i)."""
    keep = np.argpartition(-np.abs(W), fan_in - 1, axis=1)[:, :fan_in]
    S = np.zeros_like(W)
    rows = np.arange(len(W))[:, None]
    S[rows, keep] = W[rows, keep]
    return S


def row(label, p, seconds=None):
    t, b = p.totals, p.baseline
    time_text = f"{seconds:7.1f}" if seconds is not None else " " * 7
    print(f"  {label:<40}{t['cores']:>6}"
          f"{100 * t['synapse_cross_fraction']:>9.1f} %{100 * b['synapse_cross_fraction']:>7.1f} %"
          f"{100 * t['weight_cross_fraction']:>9.1f} %{100 * b['weight_cross_fraction']:>7.1f} %"
          f"{t['spike_messages_cross_per_s']:>11.3g}{b['spike_messages_cross_per_s']:>11.3g}"
          f"{t['synaptic_events_cross_per_s']:>11.3g}{b['synaptic_events_cross_per_s']:>11.3g}  {time_text}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="an existing .ddm model (LIF) instead of fitting one")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=0, help="gradient refinement steps of the fit (default 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fan-in", type=int, default=64, help="inputs kept per neuron in the sparsified W")
    ap.add_argument("--export-n", type=int, default=512, help="model size for the export costs (0: skip)")
    ap.add_argument("--memory", action="store_true", help="also measure the exports' peak Python memory")
    args = ap.parse_args()

    if args.model:
        model = LatentRNN.load(args.model)
    else:
        t0 = time.perf_counter()
        model = fit(get_system("lorenz"), n_neurons=args.n, neuron="lif", steps=args.steps, seed=args.seed,
                    progress=False)
        print(f"fitted Lorenz, N = {model.n_neurons} LIF, steps = {args.steps}: held-out drift error "
              f"{100 * model.meta['fit']['drift_error']:.2f} %, {time.perf_counter() - t0:.0f} s")
    W, rates = model.weights(), mean_rates(model)
    print(f"N = {model.n_neurons}, {np.count_nonzero(W)} synapses (dense), mean rate {rates.mean():.1f} Hz "
          f"(max {rates.max():.0f} Hz) over the model's start states")
    print(f"\n  {'':<40}{'cores':>6}{'cross synapses':>19}{'cross |W| mass':>19}{'spike msgs/s':>22}"
          f"{'syn. events/s':>22}{'time':>9}")
    print(f"  {'':<40}{'':>6}{'part.':>11}{'random':>8}{'part.':>11}{'random':>8}{'part.':>11}{'random':>11}"
          f"{'part.':>11}{'random':>11}{'(s)':>9}")
    sparse = sparsify(W, args.fan_in)
    for name, core_size, preset in (("loihi (1024/core)", None, "loihi"), ("256/core", 256, None)):
        for label, matrix, objective in ((f"{name}, dense", W, "auto"),
                                         (f"{name}, fan-in {args.fan_in}", sparse, "auto"),
                                         (f"{name}, fan-in {args.fan_in}", sparse, "weight")):
            t0 = time.perf_counter()
            p = partition_network(matrix, core_size, preset=preset, rates=rates, objective=objective,
                                  seed=args.seed)
            row(f"{label} [{p.objective}]", p, time.perf_counter() - t0)

    if args.export_n:
        small = fit(get_system("lorenz"), n_neurons=args.export_n, neuron="lif", steps=0, seed=args.seed,
                    progress=False)
        print(f"\nexport of a Lorenz N = {args.export_n} LIF model ({np.count_nonzero(small.weights())} edges):")
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("graphml", "gexf", "json"):
                t0 = time.perf_counter()
                out = export_graph(small, Path(tmp) / f"net.{fmt}", format=fmt, progress=False)
                seconds = time.perf_counter() - t0
                text = f"  {fmt:<8} {seconds:6.1f} s  {out.stat().st_size / 1e6:7.1f} MB file"
                if args.memory:  # a second export under tracemalloc (several times slower)
                    tracemalloc.start()
                    export_graph(small, out, format=fmt, progress=False, force=True)
                    text += f"  {tracemalloc.get_traced_memory()[1] / 1e6:7.0f} MB peak Python memory"
                    tracemalloc.stop()
                print(text)
            t0 = time.perf_counter()
            load_graph_json(Path(tmp) / "net.json")
            print(f"  load_graph_json {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
