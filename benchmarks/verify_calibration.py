"""Calibration of the verifier: false alarms, detection, efficiency against the KL bound, speed.

Usage (single thread, niced, as recorded in benchmarks/RESULTS_verify.md)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python benchmarks/verify_calibration.py --quick
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python benchmarks/verify_calibration.py --full

``--jobs N`` runs the pairs of a case in N worker processes (same seeds, same
results as serial); ``--lengths ou=8:250,lorenz=4:20`` overrides the lengths;
``--det-pairs`` sets the pairs of the detection cases separately.

For each system a *target* trajectory (the target SDE itself, a fresh seed) is
verified against the target: a failure is a false alarm. Then trajectories of
deliberately wrong models (drift x 1.25, diffusion x 1.2, drift + 0.5) are
verified: a failure is a detection. The ratio value / baseline of every metric
under the null is stored (``--dump``) to set the pass multiples.

KL bound (Girsanov): KL per unit time = 1/2 <dF^T D^-1 dF> over the stationary
law, D = g g^T; an ideal 5 % / 95 % test needs KL T = 5.41 (two Gaussian
log-likelihood ratios 3.29 standard deviations apart).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ddm_neuro.sde.equation import SDE
from ddm_neuro.run.plan import default_steps
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

#: (trials, duration) per system for false alarms / detection.
LENGTHS = {"ou": (8, 250.0), "double_well": (8, 250.0), "lorenz": (8, 30.0)}
QUICK_LENGTHS = {"ou": (8, 250.0), "double_well": (8, 250.0), "lorenz": (4, 20.0)}
#: Euler-Maruyama step of the simulated trajectories (default: ddm_neuro.run.target.default_steps);
#: the double well's default (0.002, set by the steep walls at |z| = 2) is relaxed to 0.005.
SIM_DT = {"double_well": 0.005}


def wrong(sde, kind, factor):
    """A deliberately wrong model: drift scaled, diffusion scaled, or drift shifted."""
    if kind == "drift_scale":
        f, g = (lambda z, u=None: factor * sde.drift(z, u)), sde.diffusion
    elif kind == "diffusion_scale":
        f, g = (lambda z, u=None: sde.drift(z, u)), (lambda z: factor * sde.diffusion(z))
    else:
        f, g = (lambda z, u=None: sde.drift(z, u) + factor), sde.diffusion
    out = SDE.from_callables(f, g, sde.variables, name=f"{sde.name}_{kind}{factor}", domain=sde.domain)
    out.tags = sde.tags
    return out


def run_case(target, model, trials, duration, seed, dump=None):
    """Simulate ``model`` and verify it against ``target``; return the report."""
    dt, rec = default_steps(target)
    dt = SIM_DT.get(target.name, dt)
    traj = simulate_sde(model, duration, dt=dt, record_dt=rec, trials=trials, seed=seed)
    return verify(target, traj, seed=seed + 7919, model_drift=model.drift)


JOBS = 1


def _one(args):
    """One pair in a worker: (passed, {metric: [value, baseline, threshold, passed]})."""
    name, kind, factor, trials, duration, seed = args
    target = get_system(name)
    model = target if kind is None else wrong(target, kind, factor)
    rep = run_case(target, model, trials, duration, seed)
    return rep.passed, {k: [m["value"], m["baseline"], m["threshold"], m["passed"]] for k, m in rep.metrics.items()}


def rates(name, kind, factor, trials, duration, pairs, seed0, dump=None):
    """Fraction of failing reports over ``pairs`` runs of ``wrong(name, kind, factor)``
    (the target itself when ``kind`` is None), and which metrics failed."""
    work = [(name, kind, factor, trials, duration, seed0 + 1000 * j) for j in range(pairs)]
    if JOBS > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(JOBS) as pool:
            res = pool.map(_one, work)
    else:
        res = [_one(w) for w in work]
    fails, by_metric = 0, {}
    for passed, mets in res:
        fails += not passed
        for k, m in mets.items():
            by_metric[k] = by_metric.get(k, 0) + (not m[3])
        if dump is not None:
            dump.append({"system": name, "model": f"{kind}{factor}" if kind else "target", "trials": trials,
                         "duration": duration,
                         "metrics": mets})
    return fails / pairs, by_metric


def kl_rate(sde, model, seed=0):
    """Girsanov KL per unit time 1/2 <dF^T D^-1 dF> over a long target run (stationary law)."""
    dt, rec = default_steps(sde)
    dt = SIM_DT.get(sde.name, dt)
    traj = simulate_sde(sde, 2000.0, dt=dt, record_dt=rec, trials=4, seed=seed, burn_in=20.0)
    z = traj.z.reshape(-1, sde.dim)
    dF = model.drift(z) - sde.drift(z)
    Di = np.linalg.inv(sde.diffusion_cov(z))
    return 0.5 * float(np.mean(np.einsum("ni,nij,nj->n", dF, Di, dF)))


def efficiency(name, pairs, lengths, trials, seed0, dump=None):
    """Detection rate of drift x 1.1 against total length, and the KL bound."""
    target = get_system(name)
    model = wrong(target, "drift_scale", 1.1)
    kl = kl_rate(target, model)
    rows = []
    for dur in lengths:
        if rows and rows[-1][1] >= 0.95:
            break
        det, _ = rates(name, "drift_scale", 1.1, trials, dur, pairs, seed0, dump)
        rows.append((trials * dur, det))
        print(f"  {name} drift x1.1  {trials} x {dur:g} = {trials * dur:g} time units: detection {det:.0%} ({pairs} pairs)",
              flush=True)
    need = next((T for T, det in rows if det >= 0.95), None)
    print(f"  {name}: KL rate {kl:.4g}/time unit, ideal test needs 5.41/KL = {5.41 / kl:.4g} time units; "
          f"verifier reaches 95 % at {need if need is not None else '> ' + str(rows[-1][0])} time units", flush=True)
    return {"kl_rate": kl, "bound": 5.41 / kl, "rows": rows, "needed": need}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs and shorter Lorenz runs")
    ap.add_argument("--full", action="store_true", help="20+ pairs everywhere (default)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs per case (default 20, quick 8)")
    ap.add_argument("--systems", default="ou,double_well,lorenz")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: rates,efficiency,timing")
    ap.add_argument("--dump", default=None, help="write every run's value/baseline/threshold to this JSON file")
    ap.add_argument("--det-pairs", type=int, default=None, help="pairs per detection case (default: --pairs; 0 skips detection)")
    ap.add_argument("--fa-pairs", type=int, default=None, help="pairs of the false-alarm case (default: --pairs; 0 skips it)")
    ap.add_argument("--lengths", default="", help="overrides, e.g. ou=8:250,lorenz=4:20")
    ap.add_argument("--eff-systems", default="ou,double_well")
    ap.add_argument("--eff-lengths", default=None, help="durations of the efficiency sweep (8 trials), e.g. 250,500,1000")
    ap.add_argument("--eff-pairs", type=int, default=None, help="pairs per efficiency length (default --pairs)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = ap.parse_args(argv)
    global JOBS
    JOBS = args.jobs
    pairs = args.pairs or (8 if args.quick else 20)
    det_pairs = pairs if args.det_pairs is None else args.det_pairs
    fa_pairs = pairs if args.fa_pairs is None else args.fa_pairs
    lengths = dict(QUICK_LENGTHS if args.quick else LENGTHS)
    for item in filter(None, args.lengths.split(",")):
        k, v = item.split("=")
        tr, du = v.split(":")
        lengths[k] = (int(tr), float(du))
    skip = set(filter(None, args.skip.split(",")))
    null_dump, out = [], {}
    t0 = time.time()
    if "rates" not in skip:
        print(f"false alarms and detection, {pairs} pairs per case", flush=True)
        for name in args.systems.split(","):
            target = get_system(name)
            trials, dur = lengths[name]
            out[name] = {}
            if fa_pairs > 0:
                fa, fm = rates(name, None, None, trials, dur, fa_pairs, 1, null_dump)
                print(f"{name:12s} {trials} trials x {dur:g}: false alarms {fa:.0%} ({round(fa * fa_pairs)}/{fa_pairs}) "
                      f"{fm}", flush=True)
                out[name].update({"false_alarm": fa, "by_metric": fm})
            for kind, fac in (("drift_scale", 1.25), ("diffusion_scale", 1.2), ("drift_shift", 0.5)) * (det_pairs > 0):
                det, dm = rates(name, kind, fac, trials, dur, det_pairs, 2, null_dump)
                print(f"{name:12s} {kind} {fac}: detection {det:.0%} ({round(det * det_pairs)}/{det_pairs}) {dm}",
                      flush=True)
                out[name][f"{kind}_{fac}"] = det
    if "efficiency" not in skip:
        print("efficiency against the KL bound (drift x 1.1)", flush=True)
        ep = args.eff_pairs or pairs
        lens = ([float(x) for x in args.eff_lengths.split(",")] if args.eff_lengths
                else [250.0, 500.0] if args.quick else [250.0, 500.0, 1000.0, 2000.0])
        for name in filter(None, args.eff_systems.split(",")):
            out[f"eff_{name}"] = efficiency(name, ep, lens, 8, 3, null_dump)
    if "timing" not in skip:
        lor = get_system("lorenz")
        traj = simulate_sde(lor, 60.0, trials=16, seed=11)
        t = time.perf_counter()
        rep = verify(lor, traj, seed=1, model_drift=lor.drift)
        sec = time.perf_counter() - t
        print(f"timing: 60-time-unit, 16-trial Lorenz trajectory verified in {sec:.1f} s "
              f"({'passed' if rep.passed else 'failed'}; LLE target "
              f"{rep.metrics['lyapunov']['target']:.3f})", flush=True)
        out["timing_s"] = sec
    print(f"total {time.time() - t0:.0f} s", flush=True)
    if args.dump:
        with open(args.dump, "w") as fh:
            json.dump({"runs": null_dump, "summary": out}, fh)


if __name__ == "__main__":
    main()
