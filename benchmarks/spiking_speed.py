"""Issue 5: wall time per simulated second of a spiking network, Brian2 cpp_standalone.

N LIF neurons (default 2000; tau_m = tau_syn = 20 ms, tau_ref = 2 ms), rank
d = 3, dt = 0.1 ms of network time, biases set for ~20 Hz, noise-free, one
trial. Three builds of the same neurons:

* ``dense``     every spike updates N synaptic currents (W = E K as N x N synapses);
* ``factored``  spikes update d latent synaptic variables (N x d synapses), and
  each neuron reads ``E q`` through linked variables;
* ``none``      no recurrence at all: the floor.

The network is not fitted: decoders are random and small (rates stay near 20 Hz).
Each build is compiled once (first call, a short run with the timed runs'
options); then the three are timed in turn, ``--repeats`` rounds, each run
``--seconds`` of network time reusing the binary with a new seed. Printed: the
best wall time per simulated second of each (process start and read-back
included), and the ratios dense / factored and factored / none.

    OMP_NUM_THREADS=1 python benchmarks/spiking_speed.py [--n 2000] [--seconds 10]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("DDM_NEURO_CACHE", tempfile.mkdtemp(prefix="ddm_spk_speed_"))

import numpy as np  # noqa: E402

from ddm_neuro.plugins import get_backend  # noqa: E402
from ddm_neuro.network import LatentRNN  # noqa: E402

TAU, TAU_M, TAU_REF, T = 0.02, 0.02, 0.002, 0.1   # seconds; T: network seconds per SDE unit
DT_NET = 1e-4


def make_model(n, d=3, rate=20.0, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.normal(0.0, 1.0, (n, d)) * 0.05
    D = np.linalg.pinv(E)
    x_rate = 1.0 / -np.expm1(-(1.0 / rate - TAU_REF) / TAU_M)       # LIF input firing at `rate`
    b = x_rate * rng.uniform(0.9, 1.1, n)
    b = b - E @ (D @ b)
    K = rng.normal(0.0, 0.2 / (np.sqrt(n) * rate), (d, n))
    return LatentRNN(neuron={"name": "lif", "tau_m": TAU_M, "tau_ref": TAU_REF}, tau=TAU, time_scale=T,
                     scale=np.ones(d), center=np.zeros(d), encoders=E, decoders=K, readout=D, bias=b,
                     input_weights=np.zeros((n, 0)), noise_const=np.zeros(n), noise_act=np.zeros(n),
                     noise_latent=np.zeros((d, d)), init_states=np.zeros((4, d)), sde_spec=None,
                     variables=[f"z{q}" for q in range(d)], inputs=[],
                     meta={"sde_name": "spiking_speed", "model_id": f"spiking-speed-N{n}",
                           "fit": {"integration_dt": DT_NET / T, "record_dt": 20 * DT_NET / T}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0, help="network seconds of the timed run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = make_model(args.n)
    run = get_backend("brian2-cpp", "spiking")
    dt, rec = DT_NET / T, 20 * DT_NET / T
    per = {c: [] for c in ("dense", "factored", "none")}
    print(f"N = {args.n} LIF, dt = {DT_NET * 1e3:g} ms, {args.seconds:g} s of network time per timed run, "
          f"best of {args.repeats} (runs interleaved, so load from other jobs hits all three alike)")
    for coupling in per:
        t0 = time.perf_counter()
        # the same options as the timed runs (recording spikes is part of the build: it would recompile)
        run(model, 0.5 / T, trials=1, seed=0, mode="spiking", noise=False, dt=dt, record_dt=rec,
            coupling=coupling, progress=False)
        print(f"  {coupling:9s} compiled + first run {time.perf_counter() - t0:5.1f} s", flush=True)
    for r in range(args.repeats):
        for coupling in per:
            t0 = time.perf_counter()
            traj = run(model, args.seconds / T, trials=1, seed=1 + r, mode="spiking", noise=False, dt=dt,
                       record_dt=rec, coupling=coupling, progress=False)
            per[coupling].append((time.perf_counter() - t0) / args.seconds)
            if float(traj.meta.get("compile_seconds", 0.0)) > 0:
                print(f"  warning: {coupling} recompiled on a timed run")
    best = {c: min(v) for c, v in per.items()}
    for c, v in per.items():
        print(f"  {c:9s} {best[c]:7.3f} s per simulated s (runs: {', '.join(f'{x:.3f}' for x in v)})")
    print(f"dense / factored = {best['dense'] / best['factored']:.2f}x;  factored / uncoupled floor = "
          f"{best['factored'] / best['none']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
