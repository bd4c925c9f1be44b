"""Decompositions of a network that implements the rotational Ornstein-Uhlenbeck process.

Fits ``ou_rot`` (dz = -(k I - w J) z ds + sigma dW, k = 1, w = 2, sigma = 1), and a
network with symmetric connectivity for the same SDE, then runs
``ddm_neuro.analysis.analyze`` and writes ``analysis.json`` and figures
(``connectivity.png``, ``connectivity_fields.png``, ``drift_decomposition.png``,
``entropy_production.png``) into ``--out``. It prints the table, whose
entropy production rates reproduce the closed form 2 w^2 / k = 8 for the target
and the network (within the target-vs-target spread) and about 0 for the
symmetric network, which cannot rotate (see benchmarks/RESULTS_analysis.md).

    python examples/decompositions.py --out decompositions          # N = 256, about 2-4 minutes
    python examples/decompositions.py --out decompositions --quick  # N = 64, short runs, under a minute

The same from the command line:

    ddm-neuro fit ou_rot -n 256 -o ou_rot.ddm
    ddm-neuro analyze ou_rot.ddm --symmetric --report decompositions
"""
from __future__ import annotations

import argparse
import sys

from ddm_neuro.analysis import analyze, fit_symmetric, save_report, table
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.sde.systems import get_system


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="decompositions", help="folder for the report (default ./decompositions)")
    p.add_argument("--quick", action="store_true", help="N = 64, 8 trials x 20 time units")
    p.add_argument("--force", action="store_true", help="overwrite report files in --out")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    n, steps, duration, trials = (64, 20, 20.0, 8) if a.quick else (256, 200, 100.0, 16)
    size = dict(n_train=4000, n_val=1000, n_test=1000, n_noise=100) if a.quick else {}
    sde = get_system("ou_rot")
    try:
        from ddm_neuro.analysis.report import check_report_folder

        check_report_folder(a.out, a.force)
        print(f"fitting ou_rot with N = {n} neurons (asymmetric W, then symmetric W) ...", flush=True)
        net = fit(sde, n_neurons=n, steps=steps, seed=a.seed, progress=False, **size)
        sym = fit_symmetric(sde, n_neurons=n, steps=steps, seed=a.seed, progress=False, **size)
        print(f"analysing: 4 runs of {trials} trials x {duration:g} time units ...", flush=True)
        result = analyze(net, sde, duration=duration, trials=trials, seed=a.seed, symmetric_model=sym)
        files = save_report(result, a.out, force=a.force)
    except DDMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"wrote {len(files)} files to {a.out}: " + ", ".join(f.name for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
