"""Torch thread count against CPU contention: one thread vs torch's default, alone and beside a busy process.

Each job runs as its own ``ddm-neuro`` process (the thread count is fixed when
torch loads), timed from start to exit, three times; the median is printed.
"Busy" starts one competing process that spins on one core for the whole job,
as another user's program would. Torch's default is one thread per core
(``--threads`` = ``os.cpu_count()``).

Usage::

    python benchmarks/threads.py                # fit N=128, torch simulation N=512 (about 5 minutes)
    python benchmarks/threads.py --quick        # smaller jobs, one repeat
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from first_run import busy_core


def _timed(cmd, busy):
    with busy_core(busy):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    cores = os.cpu_count() or 1
    cli = [sys.executable, "-m", "ddm_neuro.cli"]
    env_note = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "DDM_NEURO_THREADS")}
    if any(env_note.values()):
        print(f"note: {env_note} is set; --threads overrides it for each job")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_sim, dur = (256, 2.0) if args.quick else (512, 5.0)
        model = tmp / "lorenz.ddm"
        subprocess.run(cli + ["fit", "lorenz", "-n", str(n_sim), "--steps", "0", "-o", str(model), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        jobs = {
            f"fit lorenz N=128 ({30 if args.quick else 100} steps)":
                lambda k, out: cli + ["fit", "lorenz", "-n", "128", "--steps", "30" if args.quick else "100",
                                      "-o", str(out), "--quiet", "--force", "--threads", str(k)],
            f"simulate torch N={n_sim}, 8 trials x {dur:g}":
                lambda k, out: cli + ["simulate", str(model), "--trials", "8", "--duration", str(dur),
                                      "-o", str(out), "--quiet", "--force", "--threads", str(k)],
        }
        print(f"{cores} cores; median of {repeats} run(s) per cell, wall seconds including start-up")
        header = (f"{'job':<40} {'1 thread':>9} {f'{cores} (default)':>12} {'ratio':>6}"
                  f" | {'busy: 1':>8} {f'busy: {cores}':>8} {'ratio':>6}")
        print(header)
        print("-" * len(header))
        for name, make in jobs.items():
            cells = {}
            for busy in (False, True):
                for k in (1, cores):
                    out = tmp / ("out.ddm" if name.startswith("fit") else "out.npz")
                    cells[busy, k] = statistics.median(_timed(make(k, out), busy) for _ in range(repeats))
            print(f"{name:<40} {cells[False, 1]:>9.1f} {cells[False, cores]:>12.1f} "
                  f"{cells[False, cores] / cells[False, 1]:>6.2f} | {cells[True, 1]:>8.1f} {cells[True, cores]:>8.1f} "
                  f"{cells[True, cores] / cells[True, 1]:>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
