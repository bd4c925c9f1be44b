"""Issue 4: wall time per simulated second of the rate network, torch vs Brian2 (runtime and C++).

For N = 256, 1024, 4096 rate neurons (tanh, rank d = 3, tau = 20 ms, dt = 0.5 ms
of network time, private output noise on, no inputs) prints the wall time per
simulated second of network time for

* ``torch``          ddm_neuro.run.rate.simulate_network, factored coupling;
* ``b2-rt dense``, ``b2-rt factored``   Brian2's runtime device (numpy target);
* ``cpp dense``, ``cpp factored``, ``cpp none``   the ``brian2-cpp`` back end
  (cpp_standalone); ``none`` is the same neurons without recurrence (the floor).

Recording every 8 steps (not 10): with a power of two the record clock's
times are exact multiples of the integration clock's, so Brian2's scheduler
(absolute tolerance 1e-14 s) keeps both in step on long runs. With 10 steps,
``0.05 * 0.1 != 10 * (0.005 * 0.1)`` in floating point, the record clock
drifts ahead by > 1e-14 s after ~70 s of network time, the run stops (at
``t_stop``) before the last sample is taken, and brian2-cpp fails with
"recorded n - 1 samples, expected n" (a bug in exporters/brian2, reported).

The networks are not fitted: a LatentRNN is built from random arrays of the
right shapes (small weights ~ 1/sqrt(N), ``D E = I``), stable at rest.

How each figure is measured (one process, ``OMP_NUM_THREADS=1`` recommended):

* cpp: a first call compiles the build and runs a short stretch (``compile s``
  is the back end's own ``compile_seconds``); a second call with another seed
  reuses the cached binary and runs long enough to take ~``--target`` seconds
  (capped at ``--cap``). ``s/sim-s`` = that call's wall time / simulated network
  seconds (process start and result read-back included); ``run s/sim-s`` is
  the slope between the two calls' run times (fixed per-run overhead removed)
  and ``overhead s`` the intercept.
* runtime (numpy): a tiny run (setup: building the Brian2 objects) and a longer
  one; ``s/sim-s`` is the slope, ``setup s`` the intercept. A case whose
  predicted setup plus measurement exceeds 60 s (extrapolated from the previous
  N: x (N'/N)^2 for dense, x N'/N for factored) is skipped, with the reason.
* torch: one run long enough to take ~``--target`` seconds; ``s/sim-s`` = wall /
  simulated seconds.

Targets from the issue (hand-written Brian2 networks of the same shape on this
machine: dense 0.091 / 1.35 / 25, factored 0.018 / 0.068 / 0.28 s per simulated
second): factored >= 50x faster than dense at N = 4096 in cpp_standalone, and
factored within 1.5x of the uncoupled floor. Both are printed with PASS/FAIL.

    OMP_NUM_THREADS=1 python benchmarks/brian2_speed.py [--sizes 256,1024,4096] [--target 2] [--cap 30]

Builds go to a temporary ``DDM_NEURO_CACHE`` (removed at the end unless ``--keep-cache``).
"""
import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
_CACHE = tempfile.mkdtemp(prefix="ddm_b2_speed_")
os.environ["DDM_NEURO_CACHE"] = _CACHE  # before any exporters import: builds never touch the user's cache

import numpy as np  # noqa: E402

from ddm_neuro.plugins import get_backend  # noqa: E402
from ddm_neuro.network import LatentRNN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
D_RANK = 3
TAU = 0.02            # seconds
TIME_SCALE = 0.1      # seconds of network time per SDE time unit
DT_NET = 5e-4         # seconds of network time per step
DT = DT_NET / TIME_SCALE          # SDE units (0.005)
RECORD_EVERY = 8       # a power of two: record clock t = 8 h exactly (see the module docstring)
RECORD_DT = RECORD_EVERY * DT     # SDE units
REFERENCE = {"dense": {256: 0.091, 1024: 1.35, 4096: 25.0}, "factored": {256: 0.018, 1024: 0.068, 4096: 0.28}}
TARGET_SPEEDUP = 50.0   # factored vs dense at N = 4096, cpp_standalone
TARGET_FLOOR = 1.5      # factored / uncoupled, cpp_standalone
SKIP_LIMIT = 60.0       # seconds: runtime cases predicted to take longer are skipped


def make_model(n, d=D_RANK, seed=0):
    """A stable random LatentRNN with N = n neurons and rank d (no inputs, no shared latent noise)."""
    rng = np.random.default_rng(seed)
    E = rng.normal(0.0, 1.0, (n, d))
    D = np.linalg.pinv(E)                                   # D E = I
    K = rng.normal(0.0, 0.8 / np.sqrt(n), (d, n))           # latent gain ~ 0.8 phi' < 1: stable
    b = rng.normal(0.0, 0.1, n)
    b = b - E @ (D @ b)                                     # bias off the latent subspace
    return LatentRNN(
        neuron="tanh", tau=TAU, time_scale=TIME_SCALE, scale=np.ones(d), center=np.zeros(d),
        encoders=E, decoders=K, readout=D, bias=b, input_weights=np.zeros((n, 0)),
        noise_const=np.full(n, 1e-3), noise_act=np.full(n, 1e-3), noise_latent=np.zeros((d, d)),
        init_states=rng.normal(0.0, 0.5, (16, d)), sde_spec=None, variables=[f"z{q}" for q in range(d)],
        inputs=[], meta={"sde_name": "speed_benchmark", "model_id": f"speed-N{n}",
                         "fit": {"integration_dt": DT, "record_dt": RECORD_DT}})


def sim_seconds(duration):
    """Network seconds of a run of ``duration`` SDE units."""
    return duration * TIME_SCALE


def duration_for(seconds_net):
    """SDE duration covering ~``seconds_net`` network seconds: a whole number (>= 2) of recording intervals.

    Chosen so that ``duration / n == RECORD_DT`` exactly in floating point: the back ends recompute the
    interval as ``duration / n`` (ddm_neuro.run.target.recording_grid), and a last-bit change of ``dt`` or
    ``record_dt`` changes the brian2-cpp build key, i.e. recompiles (a bug in the back end, reported).
    """
    n0 = max(2, int(round(seconds_net / TIME_SCALE / RECORD_DT)))
    for n in sorted(range(max(2, n0 - 50), n0 + 51), key=lambda n: abs(n - n0)):
        dur = n * RECORD_DT
        if dur / n == RECORD_DT and (dur / n) / RECORD_EVERY == DT:
            return dur
    raise RuntimeError(f"no duration near {seconds_net} s with an exact recording grid")


def check(traj, label):
    z = np.asarray(traj.z)
    if not np.isfinite(z).all():
        raise SystemExit(f"{label}: the trajectory is not finite (benchmark network unstable)")
    return float(np.abs(z).max())


def grow(once, d, base, args):
    """Run ``once(d)`` with longer and longer ``d`` until the run takes ``args.target`` s beyond ``base``.

    Never starts a run predicted to take more than ``args.cap`` s; returns the last ``(d, wall)``.
    """
    while True:
        w = once(d)
        run = w - base
        if run >= args.target or w >= 0.5 * args.cap:
            return d, w
        factor = min(50.0, max(2.0, 1.2 * args.target / max(run, 0.02 * w, 1e-4)))
        factor = min(factor, 0.9 * args.cap / w)
        if factor <= 1.05:
            return d, w
        d = duration_for(sim_seconds(d) * factor)


def bench_torch(model, args):
    run = get_backend("torch", "rate")
    out = {}

    def once(dur, seed=1):
        t0 = time.perf_counter()
        out["traj"] = run(model, dur, trials=1, seed=seed, u=None, mode="rate", progress=False, dt=DT,
                          record_dt=RECORD_DT, coupling="factored")
        return time.perf_counter() - t0

    once(duration_for(0.01), 0)                  # warm-up (first torch calls)
    dur, wall = grow(once, duration_for(0.05), 0.0, args)
    check(out["traj"], f"torch N={model.n_neurons}")
    return {"per_s": wall / sim_seconds(dur), "sim_s": sim_seconds(dur), "wall": wall}


def bench_runtime(model, coupling, args):
    run = get_backend("brian2", "rate")

    def once(dur, seed):
        t0 = time.perf_counter()
        traj = run(model, dur, trials=1, seed=seed, u=None, mode="rate", progress=False, dt=DT,
                   record_dt=RECORD_DT, coupling=coupling)
        check(traj, f"brian2 {coupling} N={model.n_neurons}")
        return time.perf_counter() - t0

    d1 = duration_for(0.005)                     # 10 steps: mostly setup
    w1 = once(d1, 0)
    d2, w2 = grow(lambda d: once(d, 1), duration_for(0.05), w1, args)
    rate = max((w2 - w1) / (sim_seconds(d2) - sim_seconds(d1)), 1e-9)
    setup = w1 - rate * sim_seconds(d1)
    return {"per_s": rate, "setup": setup, "sim_s": sim_seconds(d2), "wall": w2}


def bench_cpp(model, coupling, args):
    run = get_backend("brian2-cpp", "rate")
    d1 = duration_for(0.05)
    t0 = time.perf_counter()
    traj = run(model, d1, trials=1, seed=0, u=None, mode="rate", progress=False, dt=DT, record_dt=RECORD_DT,
               coupling=coupling)
    w1 = time.perf_counter() - t0
    compile_s = float(traj.meta.get("compile_seconds", 0.0))
    if traj.meta.get("coupling") != coupling:
        raise SystemExit(f"brian2-cpp ran coupling {traj.meta.get('coupling')!r}, asked for {coupling!r}")
    check(traj, f"cpp {coupling} N={model.n_neurons}")
    r1 = max(w1 - compile_s, 1e-3)               # first run, without the compile
    out = {}

    def once(dur):
        for _ in range(3):  # the build key hashes exporters/brian2/network.py: an edit meanwhile rebuilds
            t0 = time.perf_counter()
            out["traj"] = run(model, dur, trials=1, seed=1, u=None, mode="rate", progress=False, dt=DT,
                              record_dt=RECORD_DT, coupling=coupling)
            wall = time.perf_counter() - t0
            if float(out["traj"].meta.get("compile_seconds", 0.0)) == 0.0:
                break
            print(f"  (cpp {coupling} N={model.n_neurons}: the build was recompiled -- network.py changed? "
                  "timing again)", flush=True)
        return wall

    d2, w2 = grow(once, 4 * d1, r1, args)
    traj = out["traj"]
    check(traj, f"cpp {coupling} N={model.n_neurons}")
    cached = float(traj.meta.get("compile_seconds", 0.0)) == 0.0
    slope = (w2 - r1) / (sim_seconds(d2) - sim_seconds(d1))
    return {"per_s": w2 / sim_seconds(d2), "run_per_s": slope, "overhead": r1 - slope * sim_seconds(d1),
            "compile": compile_s, "first_wall": w1, "sim_s": sim_seconds(d2), "wall": w2, "cached": cached}


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.3e}"


def table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256,1024,4096")
    ap.add_argument("--target", type=float, default=2.0, help="seconds of wall time a measured run aims at")
    ap.add_argument("--cap", type=float, default=30.0, help="seconds of wall time a measured run may take at most")
    ap.add_argument("--skip", default="", help="comma-separated cases to leave out: torch,rt-dense,rt-factored,"
                                                "cpp-dense,cpp-factored,cpp-none")
    ap.add_argument("--keep-cache", action="store_true", help=f"keep the build folder ({_CACHE})")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))

    import brian2
    import torch
    torch.set_num_threads(1)
    net_py = ROOT / "exporters" / "brian2" / "network.py"
    print(f"python {platform.python_version()}, brian2 {brian2.__version__}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    net_hash = hashlib.sha256(net_py.read_bytes()).hexdigest()[:12]
    print(f"exporters/brian2/network.py sha256 {net_hash}; "
          f"cache {_CACHE}")
    print(f"network: tanh, d = {D_RANK}, tau = {TAU * 1e3:g} ms, dt = {DT_NET * 1e3:g} ms (dt = {DT:g} SDE units x "
          f"time_scale {TIME_SCALE:g} s), record every {RECORD_EVERY} steps, private noise on, 1 trial\n",
          flush=True)

    res = {}
    t_start = time.perf_counter()
    for n in sizes:
        model = make_model(n)
        cases = [("torch", lambda: bench_torch(model, args))]
        for c in ("dense", "factored"):
            cases.append((f"rt-{c}", lambda c=c: bench_runtime(model, c, args)))
        for c in ("dense", "factored", "none"):
            cases.append((f"cpp-{c}", lambda c=c: bench_cpp(model, c, args)))
        for name, fn in cases:
            if name in skip:
                res[(name, n)] = {"skipped": "--skip"}
                continue
            if name.startswith("rt-"):
                reason = predict_skip(res, name, n, sizes)
                if reason:
                    res[(name, n)] = {"skipped": reason}
                    print(f"N={n:5d} {name:13s} skipped: {reason}", flush=True)
                    continue
            t0 = time.perf_counter()
            r = fn()
            r["case_wall"] = time.perf_counter() - t0
            res[(name, n)] = r
            extra = (f", compile {r['compile']:.1f} s" if "compile" in r else "") + \
                    (f", setup {r['setup']:.2f} s" if "setup" in r else "")
            print(f"N={n:5d} {name:13s} {r['per_s']:.4g} s/sim-s  (measured {r['sim_s']:.3g} sim-s in "
                  f"{r['wall']:.2f} s{extra}; case took {r['case_wall']:.1f} s)", flush=True)
    print(f"\nall cases: {time.perf_counter() - t_start:.0f} s")
    end_hash = hashlib.sha256(net_py.read_bytes()).hexdigest()[:12]
    if end_hash != net_hash:
        print(f"WARNING: exporters/brian2/network.py changed during the benchmark ({net_hash} -> {end_hash})")
    print()
    report(res, sizes)
    if args.keep_cache:
        print(f"builds kept in {_CACHE}")
    else:
        shutil.rmtree(_CACHE, ignore_errors=True)


def predict_skip(res, name, n, sizes):
    """Why a runtime case would take more than SKIP_LIMIT seconds, or None (extrapolated from a smaller N)."""
    smaller = [m for m in sizes if m < n and "per_s" in res.get((name, m), {})]
    if not smaller:
        if any(res.get((name, m), {}).get("skipped") for m in sizes if m < n):
            return "a smaller N was already skipped"
        return None
    m = max(smaller)
    prev = res[(name, m)]
    power = 2 if name.endswith("dense") else 1
    f = (n / m) ** power
    setup, per_s = max(prev["setup"], 0.0) * f, prev["per_s"] * f
    # the measurement needs 3 setups, >= 0.06 simulated seconds
    predicted = 3 * setup + per_s * 0.06
    if predicted > SKIP_LIMIT:
        return (f"predicted {predicted:.0f} s > {SKIP_LIMIT:g} s (from N={m}: setup {prev['setup']:.1f} s, "
                f"{prev['per_s']:.3g} s/sim-s, x{f:g} for {'N^2 synapses' if power == 2 else 'N'})")
    return None


def report(res, sizes):
    def cell(name, n, key="per_s"):
        r = res.get((name, n), {})
        return r.get(key) if key in r else ("skipped" if "skipped" in r else None)

    print("Wall time per simulated second of network time (s/sim-s; lower is better)")
    header = ["N", "torch", "b2-rt dense", "b2-rt fact.", "cpp dense", "cpp fact.", "cpp none",
              "ref dense", "ref fact."]
    rows = []
    for n in sizes:
        rows.append([n] + [fmt(cell(c, n)) for c in ("torch", "rt-dense", "rt-factored", "cpp-dense",
                                                      "cpp-factored", "cpp-none")]
                    + [fmt(REFERENCE["dense"].get(n)), fmt(REFERENCE["factored"].get(n))])
    table(rows, header)

    print("\ncpp_standalone detail: compile (first build) and run (cached build)")
    header = ["N", "coupling", "compile s", "first call s", "cached s/sim-s", "run s/sim-s", "overhead s",
              "measured sim-s", "cached?"]
    rows = []
    for n in sizes:
        for c in ("dense", "factored", "none"):
            r = res.get((f"cpp-{c}", n), {})
            if "per_s" not in r:
                rows.append([n, c] + ["skipped"] + ["-"] * 6)
                continue
            rows.append([n, c, fmt(r["compile"]), fmt(r["first_wall"]), fmt(r["per_s"]), fmt(r["run_per_s"]),
                         fmt(r["overhead"]), fmt(r["sim_s"]), "yes" if r["cached"] else "NO"])
    table(rows, header)

    rt = [(n, c) for n in sizes for c in ("dense", "factored") if "setup" in res.get((f"rt-{c}", n), {})]
    if rt:
        print("\nBrian2 runtime (numpy) setup per run (s): " +
              ", ".join(f"N={n} {c} {res[(f'rt-{c}', n)]['setup']:.2f}" for n, c in rt))
    skipped = [(k, v["skipped"]) for k, v in res.items() if "skipped" in v]
    for (name, n), why in skipped:
        print(f"skipped {name} N={n}: {why}")

    print("\nRatios (cpp_standalone, cached-build s/sim-s) and the issue's targets")
    header = ["N", "dense/fact. speed-up", "target", "", "fact./floor", "target", "", "ref speed-up"]
    rows = []
    for n in sizes:
        dn, fc, fl = (cell(f"cpp-{c}", n) for c in ("dense", "factored", "none"))
        num = lambda x: isinstance(x, float)  # noqa: E731
        sp = dn / fc if num(dn) and num(fc) else None
        fr = fc / fl if num(fc) and num(fl) else None
        ref = REFERENCE["dense"].get(n, 0) / REFERENCE["factored"][n] if n in REFERENCE["factored"] else None
        sp_t = f">= {TARGET_SPEEDUP:g}" if n == 4096 else "-"
        sp_ok = ("PASS" if sp >= TARGET_SPEEDUP else "FAIL") if n == 4096 and sp is not None else ""
        fr_ok = ("PASS" if fr <= TARGET_FLOOR else "FAIL") if fr is not None else ""
        rows.append([n, fmt(sp, 4), sp_t, sp_ok, "-" if fr is None else f"{fr:.3f}", f"<= {TARGET_FLOOR:g}", fr_ok,
                     fmt(ref)])
    table(rows, header)
    print("(run-only slopes, process start removed: " + ", ".join(
        f"N={n} speed-up {res[('cpp-dense', n)]['run_per_s'] / res[('cpp-factored', n)]['run_per_s']:.3g}, "
        f"fact./floor {res[('cpp-factored', n)]['run_per_s'] / res[('cpp-none', n)]['run_per_s']:.3f}"
        for n in sizes if all("run_per_s" in res.get((f"cpp-{c}", n), {}) for c in ("dense", "factored", "none")))
        + ")")


if __name__ == "__main__":
    sys.exit(main())
