"""Issue 22: round trips through NEST (rate mode) judged by ``verify``, beside torch.

Each case is the command sequence a user types: ``ddm-neuro fit``, then
``simulate --backend nest`` (and ``--backend torch``, the same trials, length
and seed), then ``verify``. Printed per case and back end: every metric's
value and threshold, the verdict and the wall times. A case NEST refuses
(``double_well --param c=1``: activity-dependent noise) prints the refusal.

    OMP_NUM_THREADS=1 python benchmarks/nest_verify.py [--cases ou_rot,double_well,lorenz] [--out DIR]

Figures: ``benchmarks/RESULTS_nest.md``.
"""
import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

from ddm_neuro.cli import main as cli

#: name: (fit arguments, trials, duration)
CASES = {
    "ou_rot": (["ou_rot", "-n", "300"], 16, 60.0),
    "double_well": (["double_well", "-n", "300"], 16, 60.0),
    "double_well_c1": (["double_well", "-n", "300", "--param", "c=1"], 16, 60.0),
    "lorenz": (["lorenz", "-n", "1000"], 16, 60.0),
}


def run(args):
    """``(exit status, wall s, stderr's last line)`` of one ``ddm-neuro`` command."""
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli(args)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return status, time.perf_counter() - t0, lines[-1] if lines else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="ou_rot,double_well,double_well_c1,lorenz")
    ap.add_argument("--backends", default="nest,torch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="folder for models, trajectories and reports (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="nest_verify_"))
    out.mkdir(parents=True, exist_ok=True)
    for name in args.cases.split(","):
        fit_args, trials, duration = CASES[name]
        model = out / f"{name}.ddm"
        status, fit_s, last = run(["fit", *fit_args, "-o", str(model), "--force", "--quiet", "--threads", "1"])
        print(f"## {name}: ddm-neuro fit {' '.join(fit_args)} ({fit_s:.0f} s{'' if status == 0 else ': ' + last})")
        for backend in args.backends.split(","):
            traj, report = out / f"{name}_{backend}.npz", out / f"{name}_{backend}_report"
            status, sim_s, last = run(["simulate", str(model), "--backend", backend, "--trials", str(trials),
                                       "--duration", str(duration), "--seed", str(args.seed), "-o", str(traj),
                                       "--force", "--quiet", "--threads", "1"])
            if status != 0:
                print(f"  {backend}: simulate refused (exit {status}): {last}")
                continue
            status, ver_s, _ = run(["verify", str(model), str(traj), "--report", str(report), "--force"])
            rep = json.loads((report / "report.json").read_text())
            cells = ", ".join(f"{k} {m['value']:.4g}/{m['threshold']:.4g}" for k, m in rep["metrics"].items()
                              if m.get("threshold") is not None)
            verdict = "PASS" if rep["passed"] else "FAIL"
            marginal = f" (marginal: {', '.join(rep['marginal'])})" if rep.get("marginal") else ""
            print(f"  {backend}: {trials} x {duration:g}: {verdict}{marginal}; simulate {sim_s:.0f} s, "
                  f"verify {ver_s:.0f} s; {cells}", flush=True)


if __name__ == "__main__":
    main()
