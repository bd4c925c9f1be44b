"""One-command spiking conversions (issue 21): wall time, N and verify figures per system and back end.

Runs ``ddm-neuro convert SYSTEM --backend B -o OUT/SYSTEM_B.ddm`` for each
system and back end (a subprocess each, timed from outside), then reads the
model's ``meta["conversion"]`` and prints one row per conversion: the verdict,
N, the stages it went through and their times, and the last verification's
values against their thresholds (drift, diffusion, ...). A conversion that
stops at ``--max-neurons`` is a row too (its reason printed).

    OMP_NUM_THREADS=1 python benchmarks/conversion.py --systems ou_rot,double_well --backends torch,brian2-cpp
    OMP_NUM_THREADS=1 python benchmarks/conversion.py --systems examples/toggle_switch.toml --backends torch
    OMP_NUM_THREADS=1 python benchmarks/conversion.py --systems examples/fitzhugh_nagumo.toml --input I=0.5
    OMP_NUM_THREADS=1 python benchmarks/conversion.py --systems lorenz --network coordinated

Each conversion's report folder is ``OUT/SYSTEM_B_report/``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from ddm_neuro.network import LatentRNN

#: Metrics shown (value / threshold), where the report has them.
SHOWN = ("drift", "diffusion", "stationary", "collapse")


def convert(system, backend, out, extra):
    """Run one conversion; returns (exit status, seconds, model path, stderr tail)."""
    stem = Path(system).stem
    path = out / f"{stem}_{backend}.ddm"
    cmd = [sys.executable, "-m", "ddm_neuro.cli", "convert", system, "--backend", backend, "-o", str(path),
           "--force", "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - t0, path, (proc.stdout + proc.stderr).strip().splitlines()[-2:]


def row(system, backend, code, seconds, path, tail):
    if code == 2 or not path.exists():
        return f"| {system} | {backend} | STOPPED ({code}) | | {seconds / 60:.1f} | {' '.join(tail)} |"
    model = LatentRNN.load(path)
    conv, cfg = model.meta["conversion"], model.meta.get("coordinated")
    n = f"{cfg['n_neurons']} coordinated + {model.n_neurons} tanh basis" if cfg else model.n_neurons
    stages = ", ".join(f"{s['name']} {s['seconds']:.0f}" for s in conv["stages"])
    figs = []
    for j, v in enumerate(conv["verify"]):
        parts = [f"{k} {m['value']:.3g}/{m['threshold']:.3g}" for k, m in v["metrics"].items()
                 if k in SHOWN or not m["passed"]]
        figs.append(("" if v["input"] is None else f"u={v['input']}: ") + ", ".join(parts))
    return (f"| {system} | {backend} | **{conv['status'].upper()}** | {n} | {seconds / 60:.1f} | "
            f"{'; '.join(figs)} | {stages} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="ou_rot,double_well", help="comma-separated systems or .toml specs")
    ap.add_argument("--backends", default="torch", help="comma-separated spiking back ends")
    ap.add_argument("--out", default="conversions", help="folder for the models and reports")
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE, passed to every conversion")
    ap.add_argument("--max-neurons", default=None)
    ap.add_argument("--input", default=None, help="NAME=VALUE (';' between inputs), passed to every conversion: "
                                                  "the input the calibration runs at (systems with inputs)")
    ap.add_argument("--network", default=None, help="auto, independent or coordinated (convert --network)")
    ap.add_argument("--seed", default=None, help="passed to every conversion")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    extra = [a for p in args.param for a in ("--param", p)]
    if args.input:
        extra += ["--input", args.input]
    if args.max_neurons:
        extra += ["--max-neurons", args.max_neurons]
    if args.network:
        extra += ["--network", args.network]
    if args.seed:
        extra += ["--seed", args.seed]
    print("| system | back end | verdict | N | wall (min) | verify (value/threshold) | stages (s) |")
    print("|---|---|---|---|---|---|---|")
    for system in args.systems.split(","):
        for backend in args.backends.split(","):
            code, seconds, path, tail = convert(system, backend, out, extra)
            print(row(system, backend, code, seconds, path, tail), flush=True)


if __name__ == "__main__":
    main()
