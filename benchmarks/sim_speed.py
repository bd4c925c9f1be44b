"""Cost of a network step in every engine: ns per neuron-step, side by side in one run.

The network is that of ``spiking_speed.py`` (:func:`spiking_speed.make_model`):
N LIF neurons, rank d = 3, unfitted (small random decoders), biases set for
~20 Hz, noise-free. ``spiking`` runs it as LIF spiking neurons; ``rate`` runs
the same model as a rate network of LIF-rate neurons (the same ~20 Hz steady
rates, so the latent state stays small and bounded). Network step 0.1 ms,
recorded every 2 ms, ``--trials`` trials batched in one run.

Columns (coupling ``factored`` unless said):

* ``torch C++ 1t`` / ``2t``   torch back end, ``engine="compiled"``: the C++ step
  loop with ``threads=1`` / ``2`` (OpenMP over trials or neuron blocks);
* ``torch loop 1t``           ``engine="torch"``: torch's tensor loop, one thread
  (N <= 2000 only, and shorter runs: it is slow);
* ``B2 fact 1t`` / ``2t``     ``brian2-cpp`` (cpp_standalone), ``threads=1`` / ``2``
  (OpenMP in the generated C++, fixed by the build);
* ``B2 floor 1t`` / ``2t``    ``brian2-cpp`` with ``coupling="none"``: the same
  neurons without recurrence, the uncoupled floor (2t: what OpenMP gives the
  neurons alone, next to ``B2 fact 2t``, whose N -> d decode Brian2 sums in one
  serial loop);
* ``torch CUDA``              ``engine="torch", device="cuda"``, only when torch sees a
  GPU (then N = 200000 is added to the sizes).

Each cell is wall time / (trials x N x steps), best of ``--repeats`` runs, the
runs interleaved across columns so that load from other jobs hits all alike.
Each run covers ~1e8 neuron-steps, within 0.4 to 20 s of network time (the
``net s`` column), and at most 1e9 (N = 128: 19.5 s, N = 50000: 0.4 s, N =
200000: 0.125 s; ``--quick``: ~1e7 within 0.1 to 2 s, at most 1e8; the
torch loop runs 2 s at most, ``--quick`` 0.2 s). Every column is called once
first, untimed: Brian2 compiles its build then (the compile time is printed
once); the timed Brian2 runs reuse the binary with a new seed, and their wall
time includes process start and read-back, as in ``spiking_speed.py``. A
timed run that recompiled is reported. Torch's own intra-op threads are set to
1 (``torch.set_num_threads(1)``): the compiled loops' threads come from
``threads=K`` alone. The engine and thread count each run reports
(``traj.meta``) are printed, so a silent fallback shows; a column that fails
or ignores its thread count prints ``n/a`` with the reason below the table.

After each table: the ratios the issue's goals are stated in (torch C++ 1t /
Brian2 floor, thread speed-ups, the N = 128 wall times and the compiled loop's
per-step cost), next to the goals. The machine load is printed at start and end.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sim_speed.py                 # 128,2000,10000,50000 (~20 min, 2 cores)
    OMP_NUM_THREADS=1 python benchmarks/sim_speed.py --quick         # smoke test: 128,2000 (~4 min)
    OMP_NUM_THREADS=1 python benchmarks/sim_speed.py --busy          # and again beside one busy process
    python benchmarks/sim_speed.py --modes rate --sizes 2000 --columns c1,b1,floor
    python benchmarks/sim_speed.py --sizes 10000 --columns b1,b2 --seconds 2    # Brian2's threads, long runs
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

from first_run import busy_core
from spiking_speed import DT_NET, T, make_model  # sets DDM_NEURO_CACHE to a fresh folder (first calls compile)

import numpy as np  # noqa: E402

from ddm_neuro.plugins import simulate  # noqa: E402

RECORD_NET = 2e-3            # recording interval, network seconds
WORK = (1e8, 1e9)            # neuron-steps per run: at least (within SECONDS), at most
SECONDS = (0.4, 20.0)        # network seconds per run: least, most
QUICK_WORK, QUICK_SECONDS = (1e7, 1e8), (0.1, 2.0)
TORCH_LOOP_SECONDS = {False: 2.0, True: 0.2}   # the tensor loop's runs at most (its cost per step hardly varies)
WARMUP_SECONDS = 0.04        # the untimed first call of each column
GPU_SIZE = 200_000


@dataclass(frozen=True)
class Column:
    """One engine configuration: a back end, its options and thread count."""

    key: str
    label: str
    backend: str
    options: dict
    threads: int = 1
    max_n: int | None = None

    def runs_at(self, n):
        return self.max_n is None or n <= self.max_n


COLUMNS = [
    Column("c1", "torch C++ 1t", "torch", {"engine": "compiled", "coupling": "factored"}, 1),
    Column("c2", "torch C++ 2t", "torch", {"engine": "compiled", "coupling": "factored"}, 2),
    Column("loop", "torch loop 1t", "torch", {"engine": "torch", "coupling": "factored"}, 1, max_n=2000),
    Column("b1", "B2 fact 1t", "brian2-cpp", {"coupling": "factored"}, 1),
    Column("b2", "B2 fact 2t", "brian2-cpp", {"coupling": "factored"}, 2),
    Column("floor", "B2 floor 1t", "brian2-cpp", {"coupling": "none"}, 1),
    Column("floor2", "B2 floor 2t", "brian2-cpp", {"coupling": "none"}, 2),
]
CUDA = Column("cuda", "torch CUDA", "torch", {"engine": "torch", "device": "cuda", "coupling": "factored"}, 1)


@dataclass
class Cell:
    """The timed runs of one column at one N."""

    walls: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    compile_s: float = 0.0
    read_back: str = ""
    failed: str = ""

    @property
    def wall(self):
        return min(self.walls) if self.walls and not self.failed else None


def network_seconds(n, trials, quick):
    """Network seconds per run: ~WORK[0] neuron-steps, within SECONDS, and at most WORK[1] neuron-steps."""
    (least, most), (lo, hi) = (QUICK_WORK, QUICK_SECONDS) if quick else (WORK, SECONDS)
    per_second = trials * n / DT_NET
    return min(max(lo, min(hi, least / per_second)), most / per_second)


def read_back(col, meta):
    """``(text, problem)``: the engine and threads the run reports, and why it is not what was asked (or "")."""
    if col.backend == "brian2-cpp":
        engine, threads = meta.get("device", "?"), meta.get("threads")
        text = f"{engine}, threads {threads}, coupling {meta.get('coupling')}"
        if threads is None and col.threads != 1:
            return text, f"brian2-cpp does not report threads (threads={col.threads} not applied)"
    else:
        engine, threads = meta.get("engine", "?"), meta.get("threads")
        text = f"{engine} on {meta.get('device', '?')}, threads {threads}, coupling {meta.get('coupling')}"
        if engine != col.options["engine"]:
            return text, f"ran engine {engine!r}, not {col.options['engine']!r}"
    if threads is not None and threads != col.threads:
        return text, f"ran {threads} thread(s), not {col.threads}"
    return text, ""


def call(col, model, mode, seconds, trials, seed):
    """One run of ``col``; returns (wall seconds, Trajectory)."""
    t0 = time.perf_counter()
    traj = simulate(model, seconds / T, backend=col.backend, mode=mode, trials=trials, seed=seed, dt=DT_NET / T,
                    record_dt=RECORD_NET / T, noise=False, progress=False, threads=col.threads, **col.options)
    return time.perf_counter() - t0, traj


def steps_of(traj):
    return (len(traj.t) - 1) * int(round(traj.dt / traj.meta["integration_dt"]))


def first_line(exc):
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:160]


def measure(model, mode, n, cols, args):
    """All columns at one N: an untimed first call each, then ``repeats`` interleaved timed rounds."""
    seconds = args.seconds or network_seconds(n, args.trials, args.quick)
    cells = {c.key: Cell(seconds=min(seconds, TORCH_LOOP_SECONDS[args.quick]) if c.key == "loop" else seconds)
             for c in cols}
    notes = []
    for col in cols:
        cell = cells[col.key]
        try:
            _, traj = call(col, model, mode, WARMUP_SECONDS, args.trials, seed=0)
        except Exception as exc:  # noqa: BLE001 (a column that cannot run prints n/a, the others go on)
            cell.failed = first_line(exc)
            continue
        cell.compile_s = float(traj.meta.get("compile_seconds") or 0.0)
        cell.read_back, cell.failed = read_back(col, traj.meta)
        if col.key == "c1":
            z = np.abs(traj.z)
            notes.append(f"first run: max |z| {z.max():.3g}"
                         + (f", mean rate {traj.meta['mean_rate_hz']:.1f} Hz" if "mean_rate_hz" in traj.meta else ""))
    for r in range(args.repeats):
        for col in cols:
            cell = cells[col.key]
            if cell.failed:
                continue
            try:
                wall, traj = call(col, model, mode, cell.seconds, args.trials, seed=1 + r)
            except Exception as exc:  # noqa: BLE001
                cell.failed = first_line(exc)
                continue
            cell.walls.append(wall)
            cell.steps = steps_of(traj)
            if float(traj.meta.get("compile_seconds") or 0.0) > 0:
                notes.append(f"warning: {col.label} recompiled on a timed run ({traj.meta['compile_seconds']:.1f} s "
                             "inside its wall time)")
            if not np.isfinite(traj.z).all():
                notes.append(f"warning: {col.label} diverged (non-finite state)")
    compiles = [f"{c.label} {cells[c.key].compile_s:.1f} s" for c in cols if cells[c.key].compile_s > 0]
    if compiles:
        notes.insert(0, "compiled (untimed first call): " + ", ".join(compiles))
    return cells, notes


def ns(cell, n, trials):
    """ns per neuron-step of a cell, or None."""
    return None if cell is None or cell.wall is None else cell.wall / (trials * n * cell.steps) * 1e9


def fmt(x, spec=".1f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok):
    return "" if ok is None else ("  [met]" if ok else "  [missed]")


def run_mode(mode, sizes, cols, args):
    """Measure and print one mode's table and ratios."""
    what = {"spiking": "LIF spiking neurons", "rate": "LIF-rate neurons"}[mode]
    print(f"\n== {mode}: {what}, d = 3, unfitted (~20 Hz), noise-free; {args.trials} trials batched, dt "
          f"{DT_NET * 1e3:g} ms, record {RECORD_NET * 1e3:g} ms; ns per neuron-step, best of {args.repeats} ==",
          flush=True)
    head = f"{'N':>7} {'net s':>6} " + " ".join(f"{c.label:>14}" for c in cols)
    print(head)
    print("-" * len(head))
    table, all_notes, seen = {}, [], {c.key: set() for c in cols}
    for n in sizes:
        model = make_model(n)
        here = [c for c in cols if c.runs_at(n)]
        if not here:
            print(f"{n:>7}  (no selected column runs at this N)")
            table[n] = {}
            continue
        cells, notes = measure(model, mode, n, here, args)
        table[n] = cells
        row = " ".join(f"{fmt(ns(cells.get(c.key), n, args.trials), '.2f'):>14}" for c in cols)
        print(f"{n:>7} {cells[here[0].key].seconds:>6.3g} {row}", flush=True)
        for c in here:
            cell = cells[c.key]
            if cell.read_back:
                seen[c.key].add(cell.read_back)
            if cell.failed:
                notes.append(f"{c.label}: n/a: {cell.failed}")
        all_notes += [f"  N = {n}: {x}" for x in notes]
    print("\n".join(all_notes))
    print("as run (read back from traj.meta): " + "; ".join(
        f"{c.label}: {' | '.join(sorted(seen[c.key])) or 'n/a'}" for c in cols))
    print_ratios(table, sizes, args.trials)
    return table


def print_ratios(table, sizes, trials):
    """The ratios the issue's goals are stated in, next to the goals."""
    def cell_ns(n, key):
        return ns(table[n].get(key), n, trials)

    print(f"\n{'N':>7} {'C++ 1t/floor':>13} {'torch 2t/1t':>12} {'B2 2t/1t':>10}   (speed-ups: time 1t / time 2t)")
    for n in sizes:
        floor_r = ratio(cell_ns(n, "c1"), cell_ns(n, "floor"))
        b2 = ratio(cell_ns(n, "b1"), cell_ns(n, "b2"))
        marks = verdict(floor_r <= 1.5 if floor_r is not None and n >= 2000 else None).strip()
        marks += (" " + verdict(b2 >= 1.6).strip()) if b2 is not None and n >= 10000 else ""
        print(f"{n:>7} {fmt(floor_r, '.2f', 'x'):>13} {fmt(ratio(cell_ns(n, 'c1'), cell_ns(n, 'c2')), '.2f', 'x'):>12} "
              f"{fmt(b2, '.2f', 'x'):>10}   {marks}".rstrip())
    print("goals: torch C++ 1t within 1.5x of the Brian2 C++ floor at N >= 2000; "
          "Brian2 2 threads >= 1.6x faster than 1 at N >= 10000")
    if 128 in table:
        c1, b1 = table[128].get("c1"), table[128].get("b1")
        w_c, w_b = (None if c is None else c.wall for c in (c1, b1))
        per_step = None if w_c is None else w_c / c1.steps * 1e6
        r = ratio(w_c, w_b)
        print(f"N = 128, same run ({c1.seconds if c1 else float('nan'):.3g} s of network time x {trials} trials): "
              f"torch C++ 1t wall {fmt(w_c, '.3f', ' s')} vs Brian2 C++ factored 1t wall {fmt(w_b, '.3f', ' s')}: "
              f"{fmt(r, '.2f', 'x')} (goal <= 2x){verdict(None if r is None else r <= 2)}")
        print(f"N = 128: torch C++ loop wall per step {fmt(per_step, '.2f', ' us')} ({trials} trials x 128 neurons "
              f"per step; an upper bound on its per-step overhead; goal <= 20 us)"
              f"{verdict(None if per_step is None else per_step <= 20)}")


def load():
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated N (default 128,2000,10000,50000; --quick: 128,2000)")
    p.add_argument("--modes", default="spiking,rate", help="comma-separated: spiking, rate")
    p.add_argument("--trials", type=int, default=4, help="trials batched in one run (default 4)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell, best of (default 2; --quick: 1)")
    p.add_argument("--columns", default=None,
                   help=f"comma-separated subset of {','.join(c.key for c in COLUMNS + [CUDA])} (default: all)")
    p.add_argument("--busy", action="store_true", help="then everything again beside one busy process")
    p.add_argument("--seconds", type=float, default=None,
                   help="network seconds per timed run, every N (default: ~1e8 neuron-steps, see above); longer "
                        "runs shrink the share of process start and read-back in Brian2's wall time")
    p.add_argument("--quick", action="store_true", help="smoke test: N 128,2000, one repeat, ~10x shorter runs")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)
    sizes = [int(s) for s in (args.sizes or ("128,2000" if args.quick else "128,2000,10000,50000")).split(",")]
    modes = args.modes.split(",")
    bad = sorted(set(modes) - {"spiking", "rate"})
    if bad:
        p.error(f"unknown mode(s) {', '.join(bad)} (spiking, rate)")

    import torch

    torch.set_num_threads(1)   # torch's intra-op threads: 1; the compiled loops' threads come from threads=K
    cols = list(COLUMNS)
    if torch.cuda.is_available():
        cols.append(CUDA)
        if not args.quick and args.sizes is None:
            sizes.append(GPU_SIZE)
        gpu = f"GPU visible: {torch.cuda.get_device_name(0)} (column torch CUDA)"
    else:
        gpu = "no GPU visible: CUDA columns skipped"
    if args.columns:
        keep = set(args.columns.split(","))
        unknown = keep - {c.key for c in COLUMNS + [CUDA]}
        if unknown:
            p.error(f"unknown column(s) {', '.join(sorted(unknown))}")
        cols = [c for c in cols if c.key in keep]
        if not cols:
            p.error("none of the selected columns can run here")

    print(f"{os.cpu_count()} cores; load average {load()} (1, 5, 15 min) at start; torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op thread(s); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"{gpu}; build cache {os.environ['DDM_NEURO_CACHE']}")
    passes = [False, True] if args.busy else [False]
    for busy in passes:
        with busy_core(busy):
            if args.busy:
                print(f"\n######## {'beside one busy process' if busy else 'no competing process of ours'} "
                      f"(load {load()}) ########")
            for mode in modes:
                run_mode(mode, sizes, cols, args)
    print(f"\nload average {load()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
