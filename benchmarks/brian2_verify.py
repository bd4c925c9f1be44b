"""Issue 4: round-trip verification of Brian2 runs, beside torch, for four systems.

For rotational OU, the double well (state-dependent diffusion), Lorenz and a
TOML-spec system (FitzHugh-Nagumo, examples/, driven by a constant input), the
fitted network is simulated in torch, in Brian2's runtime device and as
compiled C++ (cpp_standalone) with the same trials, length and seed, and each
trajectory is verified against the target SDE. Printed: every metric's value,
baseline and threshold per back end, and the wall time of each run. Brian2's
runtime and C++ generators draw the same Gaussian stream for a seed, so their
trajectories coincide (the max difference is printed); torch draws its own.

    OMP_NUM_THREADS=1 python benchmarks/brian2_verify.py [--systems ou_rot,lorenz] [--quick]
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ddm_neuro.plugins import get_backend
from ddm_neuro.fit.matching import fit
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.sde.spec import load_spec
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

ROOT = Path(__file__).resolve().parents[1]
#: name: (SDE factory, N, trials, duration, input)
CASES = {
    "ou_rot": (lambda: get_system("ou_rot"), 256, 8, 250.0, None),
    "double_well": (lambda: get_system("double_well", c=1.0), 256, 8, 250.0, None),
    "lorenz": (lambda: get_system("lorenz"), 512, 16, 60.0, None),
    "fitzhugh_nagumo": (lambda: load_spec(ROOT / "examples" / "fitzhugh_nagumo.toml"), 256, 8, 250.0, [0.5]),
}
BACKENDS = ("torch", "brian2", "brian2-cpp")


def run_case(name, quick=False):
    make, n, trials, duration, u = CASES[name]
    if quick:
        n, trials, duration = min(n, 128), 4, duration / 10
    sde = make()
    t0 = time.perf_counter()
    model = fit(sde, n_neurons=n, seed=0, progress=False)
    f = model.meta["fit"]
    print(f"\n### {name}: N = {n}, fit {time.perf_counter() - t0:.0f} s, drift error {100 * f['drift_error']:.3f} %, "
          f"diffusion error {100 * f['diffusion_error']:.3f} %; {trials} trials x {duration:g} time units", flush=True)
    signal = None if u is None else InputSignal.constant(np.asarray(u, dtype=float))
    out, trajs = {}, {}
    for backend in BACKENDS:
        t0 = time.perf_counter()
        traj = get_backend(backend, "rate")(model, duration, trials=trials, seed=11, u=signal, mode="rate",
                                            progress=False)
        wall = time.perf_counter() - t0
        rep = verify(sde, traj, model_drift=model.latent_drift, seed=5)
        trajs[backend] = traj
        out[backend] = {"passed": rep.passed, "wall_s": wall, "compile_s": traj.meta.get("compile_seconds"),
                        "metrics": rep.metrics}
        print(f"  {backend:10s} {'PASS' if rep.passed else 'FAIL'}  simulated in {wall:.1f} s"
              + (f" (compile {traj.meta['compile_seconds']:.1f} s)" if traj.meta.get("compile_seconds") else ""),
              flush=True)
    n = min(trajs["brian2"].z.shape[1], trajs["brian2-cpp"].z.shape[1])   # grids agree but for the last digits
    diff = float(np.abs(trajs["brian2"].z[:, :n] - trajs["brian2-cpp"].z[:, :n]).max())
    out["max_abs_diff_runtime_vs_cpp"] = diff
    names = list(out["torch"]["metrics"])
    print(f"  {'metric':20s}" + "".join(f"{b + ' value/base/thr':>36s}" for b in BACKENDS))
    for m in names:
        row = f"  {m:20s}"
        for b in BACKENDS:
            x = out[b]["metrics"].get(m)
            row += (f"{x['value']:12.4g}{x['baseline']:11.4g}{x['threshold']:11.4g}{'  ' if x['passed'] else ' X'}"
                    if x else f"{'-':>36s}")
        print(row)
    print(f"  brian2 runtime vs brian2-cpp, same seed: max |dz| = {diff:.2e}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default=",".join(CASES))
    ap.add_argument("--quick", action="store_true", help="small networks, a tenth of the length")
    ap.add_argument("--json", help="write all figures to this file")
    args = ap.parse_args(argv)
    os.environ.setdefault("DDM_NEURO_CACHE", tempfile.mkdtemp(prefix="ddm_cache_"))
    results = {name: run_case(name, args.quick) for name in args.systems.split(",")}
    print("\nsummary: " + ", ".join(f"{k}: " + "/".join("pass" if v[b]["passed"] else "FAIL" for b in BACKENDS)
                                    for k, v in results.items()) + f"  ({'/'.join(BACKENDS)})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
