"""Stability of ``verify`` to its own seed: values, thresholds and verdicts over verifier seeds.

Usage (single thread, niced; results in benchmarks/RESULTS_verify.md)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python benchmarks/verify_seed_stability.py \
        --cases ou,dw,duffing --trajs 4 --seeds 20 --dump /tmp/stab.json

Each case is a set of fixed trajectories (target SDE with its drift scaled so that the
drift metric lands near its threshold, or the target itself); every trajectory is
verified with verifier seeds ``0 .. seeds - 1``. Printed per case and metric: the
standard deviation over verifier seeds of the value and of the threshold, relative
to the mean threshold and averaged over trajectories, the trajectories whose verdict is not the same for every
seed ("flipped"), and the flip rate: the fraction of verifications that disagree with
their trajectory's majority verdict. ``--spiking MODEL.ddm:TRAJ.npz`` adds a saved
run (verified as ``ddm-neuro verify`` does). Run with ``PYTHONPATH`` pointing at an
older tree to measure the code before a change (metrics without ``marginal`` are
counted as not marginal).

``--false-alarms duffing:20`` verifies 20 fresh target runs of a case's system
(target vs target, one verifier seed each) and counts the failing reports and
metrics: the false-alarm rate, to compare with the design's (about 5 % per report,
1 % per metric; ``ddm_neuro/verify/thresholds.py``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ddm_neuro.sde.equation import SDE
from ddm_neuro.run.plan import default_steps
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

DUFFING = Path(__file__).resolve().parent.parent / "tests" / "duffing.toml"
#: name: (system, drift factor, trials, duration)
CASES = {
    "ou": ("ou", 1.16, 8, 100.0),
    "dw": ("double_well", 1.17, 8, 100.0),
    "duffing": ("duffing", 1.0, 8, 100.0),
    "lorenz": ("lorenz", 1.0, 8, 30.0),
}


def system(name):
    if name == "duffing":
        from ddm_neuro.sde.spec import load_spec
        return load_spec(DUFFING)
    return get_system(name)


def scaled(sde, factor):
    """``sde`` with its drift multiplied by ``factor``."""
    out = SDE.from_callables(lambda z, u=None: factor * sde.drift(z, u), sde.diffusion, sde.variables,
                             name=f"{sde.name}_x{factor}", domain=sde.domain)
    out.tags = sde.tags
    return out


def trajectories(case, n):
    """``n`` fixed trajectories of a case: (target, trajectory, model drift, label)."""
    name, factor, trials, duration = CASES[case]
    sde = system(name)
    model = sde if factor == 1.0 else scaled(sde, factor)
    dt, rec = default_steps(sde)
    dt = {"double_well": 0.005}.get(name, dt)
    for j in range(n):
        traj = simulate_sde(model, duration, dt=dt, record_dt=rec, trials=trials, seed=500 + j)
        yield sde, traj, model.drift, f"{case}#{j}", {}


def saved(spec):
    """A saved run ``MODEL.ddm:TRAJ.npz``, verified as ``ddm-neuro verify`` does."""
    from ddm_neuro.network import LatentRNN
    from ddm_neuro.trajectory import Trajectory

    mpath, tpath = spec.split(":")
    model, traj = LatentRNN.load(mpath), Trajectory.load(tpath)
    sde = model.sde()
    drift = None if traj.meta.get("mode") == "spiking" and "chaotic" in sde.tags else model.latent_drift
    yield sde, traj, drift, Path(tpath).name, {"filter_tau": traj.meta.get("readout_filter_tau")}


def measure(runs, seeds):
    """Verify every run with every seed; returns a list of records."""
    out = []
    for sde, traj, drift, label, kw in runs:
        for s in range(seeds):
            t = time.perf_counter()
            rep = verify(sde, traj, seed=s, model_drift=drift, **kw)
            out.append({"traj": label, "seed": s, "passed": rep.passed, "seconds": time.perf_counter() - t,
                        "metrics": {k: {"value": m["value"], "threshold": m["threshold"], "passed": m["passed"],
                                        "marginal": bool(m.get("marginal", False))}
                                    for k, m in rep.metrics.items()},
                        "notes": rep.info.get("notes", [])})
            print(f"  {label} seed {s}: {'pass' if rep.passed else 'FAIL'} "
                  + " ".join(f"{k} {m['value']:.4g}/{m['threshold']:.4g}{'*' if m.get('marginal') else ''}"
                             for k, m in rep.metrics.items()) + f" ({out[-1]['seconds']:.1f} s)", flush=True)
    return out


def false_alarms(case, pairs):
    """Target-vs-target runs of a case's system: failing reports and metrics."""
    name, _, trials, duration = CASES[case]
    sde = system(name)
    dt, rec = default_steps(sde)
    dt = {"double_well": 0.005}.get(name, dt)
    fails, by_metric, marginal = 0, {}, 0
    for j in range(pairs):
        traj = simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=700 + j)
        rep = verify(sde, traj, seed=j, model_drift=sde.drift)
        fails += not rep.passed
        marginal += any(m.get("marginal") for m in rep.metrics.values())
        for k, m in rep.metrics.items():
            by_metric[k] = by_metric.get(k, 0) + (not m["passed"])
        print(f"  {case} run {j}: {'pass' if rep.passed else 'FAIL'} "
              + " ".join(f"{k} {m['value'] / m['threshold']:.2f}{'*' if m.get('marginal') else ''}"
                         for k, m in rep.metrics.items()), flush=True)
    print(f"{case} {trials} x {duration:g}: false alarms {fails}/{pairs}; by metric {by_metric}; "
          f"reports with a marginal metric {marginal}/{pairs}", flush=True)
    return {"fails": fails, "pairs": pairs, "by_metric": by_metric, "marginal": marginal}


def summarise(records):
    """Per metric: spread of value and threshold over seeds, flips, and whether flips were flagged.

    Spreads are standard deviations over the verifier seeds relative to the mean threshold,
    averaged over trajectories.

    A *minority* verification is one whose verdict differs from its trajectory's majority
    verdict over the seeds; the flip rate is their fraction. "unflagged" counts minority
    verifications whose metric (report: any failing-or-passing metric that decided it) was
    not marked marginal: a flip the report did not warn about.
    """
    by_traj = {}
    for r in records:
        by_traj.setdefault(r["traj"], []).append(r)
    metrics = sorted({k for r in records for k in r["metrics"]})
    lines = []
    for k in metrics + ["report"]:
        cv_v, cv_t, flipped, minority, total, unflagged, marg = [], [], 0, 0, 0, 0, 0
        for recs in by_traj.values():
            if k == "report":
                verdicts = np.array([r["passed"] for r in recs])
                mflag = np.array([any(m["marginal"] for m in r["metrics"].values()) for r in recs])
            else:
                recs = [r for r in recs if k in r["metrics"]]
                if not recs:
                    continue
                v = np.array([r["metrics"][k]["value"] for r in recs])
                th = np.array([r["metrics"][k]["threshold"] for r in recs])
                cv_v.append(v.std(ddof=1) / abs(th.mean()) if len(v) > 1 and th.mean() else 0.0)
                cv_t.append(th.std(ddof=1) / abs(th.mean()) if len(th) > 1 and th.mean() else 0.0)
                verdicts = np.array([r["metrics"][k]["passed"] for r in recs])
                mflag = np.array([r["metrics"][k]["marginal"] for r in recs])
            n_pass = int(verdicts.sum())
            major = n_pass * 2 >= len(verdicts)
            minor = verdicts != major
            flipped += bool(minor.any())
            minority += int(minor.sum())
            unflagged += int((minor & ~mflag).sum())
            total += len(verdicts)
            marg += int(mflag.sum())
        if total == 0:
            continue
        cvs = "" if k == "report" else f"SD value {100 * np.mean(cv_v):5.1f} %  SD threshold {100 * np.mean(cv_t):5.1f} %  "
        lines.append(f"  {k:20s} {cvs}flipped {flipped}/{len(by_traj)} trajectories, flip rate {minority}/{total} = "
                     f"{100 * minority / total:.1f} % (not marked marginal: {unflagged}); marked marginal {marg}/{total}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="ou,dw,duffing", help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("--trajs", type=int, default=4, help="trajectories per case")
    ap.add_argument("--seeds", type=int, default=20, help="verifier seeds 0 .. seeds - 1")
    ap.add_argument("--spiking", action="append", default=[], help="MODEL.ddm:TRAJ.npz (repeatable)")
    ap.add_argument("--false-alarms", action="append", default=[], help="CASE:PAIRS target-vs-target runs")
    ap.add_argument("--dump", default=None, help="JSON file for every record")
    ap.add_argument("--summarise", default=None, help="only summarise an earlier --dump file")
    args = ap.parse_args(argv)
    if args.summarise:
        with open(args.summarise) as fh:
            for name, recs in json.load(fh).items():
                if isinstance(recs, list):
                    print(f"case {name}\n{summarise(recs)}")
        return
    t0 = time.time()
    allrec = {}
    for spec in args.false_alarms:
        case, pairs = spec.split(":")
        allrec[f"false_alarms_{case}"] = false_alarms(case, int(pairs))
    for case in filter(None, args.cases.split(",")):
        print(f"case {case}: {CASES[case]}", flush=True)
        allrec[case] = measure(trajectories(case, args.trajs), args.seeds)
        print(summarise(allrec[case]), flush=True)
    for spec in args.spiking:
        print(f"saved run {spec}", flush=True)
        allrec[spec] = measure(saved(spec), args.seeds)
        print(summarise(allrec[spec]), flush=True)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    if args.dump:
        with open(args.dump, "w") as fh:
            json.dump(allrec, fh)


if __name__ == "__main__":
    main()
