"""Same seed, same run: every simulator's latent from one checkout, to compare with another's.

Fits three small models (van der Pol rate, the input-driven switch, an OU LIF
network with tau_ref 2 ms and 0) and runs each back end (torch, target, Brian2
runtime and C++, Norse) with fixed seeds. Run it from the root of each
checkout (the code imported is the current folder's; before the restructure
of the run plan the back ends were reached through ``ddm_neuro.backends`` and
``exporters.*.simulate``, which this script also handles), then compare::

    cd /path/to/old && python /path/to/benchmarks/same_runs.py /tmp/old.npz
    cd /path/to/new && python benchmarks/same_runs.py /tmp/new.npz --compare /tmp/old.npz

A refactoring that keeps behaviour prints "identical" for every run.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.getcwd())
os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
os.environ.setdefault("DDM_NEURO_CACHE", os.path.join(tempfile.gettempdir(), "ddm_same_runs_" +
                                                      os.path.basename(os.getcwd())))
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("output", help="npz file to write the latents to")
parser.add_argument("--compare", metavar="NPZ", help="another checkout's file: print identical / max difference")
args = parser.parse_args()
try:
    from ddm_neuro.sde.systems import get_system
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.run.inputs import InputSignal
    from ddm_neuro.plugins import get_backend
    NEW = True
except ImportError:
    from ddm_neuro.systems import get_system
    from ddm_neuro.fit import fit
    from ddm_neuro.inputs import InputSignal
    NEW = False

def backend(name, mode):
    if NEW:
        return get_backend(name, mode)
    if name in ("torch", "target"):
        from ddm_neuro.backends import get_backend as gb
        return gb(name, mode)
    if name == "brian2":
        from exporters.brian2.rate import simulate
        return simulate
    if name == "brian2-cpp":
        from exporters.brian2.standalone import simulate
        return simulate
    from exporters.nir.backend import make_simulate
    return make_simulate(name)

SMALL = dict(steps=0, n_train=3000, n_val=1000, n_test=500, progress=False, seed=0)
out = {}
vdp = fit(get_system("van_der_pol"), n_neurons=40, **SMALL)
for b in ("torch", "target", "brian2", "brian2-cpp"):
    tr = backend(b, "rate")(vdp, 1.0, trials=2, seed=3, u=None, mode="rate", progress=False)
    out[f"vdp_{b}"] = tr.z
sw = fit(get_system("switch"), n_neurons=32, **SMALL)
cue = InputSignal([0.0, 1.0, 2.0], [[0.0], [0.8], [-0.5]])
for b in ("torch", "brian2", "brian2-cpp"):
    out[f"switch_{b}"] = backend(b, "rate")(sw, 3.0, trials=2, seed=5, u=cue, mode="rate", progress=False).z
lif = fit(get_system("ou"), n_neurons=60, neuron="lif", **SMALL)
for b in ("torch", "brian2", "brian2-cpp"):
    tr = backend(b, "spiking")(lif, 0.5, trials=2, seed=7, u=None, mode="spiking", progress=False)
    out[f"lif_{b}"] = tr.z
lif0 = fit(get_system("ou"), n_neurons=60, neuron={"name": "lif", "tau_ref": 0.0}, **SMALL)
for b in ("torch", "norse"):
    out[f"lif0_{b}"] = backend(b, "spiking")(lif0, 0.5, trials=2, seed=7, u=None, mode="spiking", progress=False).z
np.savez(args.output, **out)
print(f"wrote {args.output}: {len(out)} runs ({'run-plan' if NEW else 'pre-run-plan'} layout)")
if args.compare:
    other = np.load(args.compare)
    for key in sorted(set(out) | set(other.files)):
        if key not in out or key not in other.files:
            print(f"{key:22s} only in {'this' if key in out else 'the other'} checkout")
        elif out[key].shape != other[key].shape:
            print(f"{key:22s} shapes differ: {out[key].shape} vs {other[key].shape}")
        elif np.array_equal(out[key], other[key], equal_nan=True):
            print(f"{key:22s} identical")
        else:
            print(f"{key:22s} max |difference| {np.nanmax(np.abs(out[key] - other[key])):.3g}")
