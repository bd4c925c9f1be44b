"""Lorenz end to end: fit, simulate in torch, verify; the same network in Brian2 if installed.

Reproduces the main job (``ddm-neuro demo``) step by step with the Python API:

1. fit N tanh neurons to the built-in ``lorenz`` SDE (noise 1 per dimension);
2. simulate the full network in torch and the target SDE, and draw both
   attractors (``attractor.png``);
3. verify the network's trajectory against the target (drift, diffusion,
   stationary distribution, autocorrelation, Lyapunov exponent, rotation;
   each metric judged against two target runs of the same length):
   ``report/report.json`` and its figures;
4. when Brian2 and a C++ compiler are installed, run the same network as
   generated C++ (``brian2-cpp``) and verify it too (``report_brian2/``).

Full run (N = 512, 8 trials x 40 time units) on one shared core: about
2-3 minutes; ``--quick`` (N = 64, short runs, no Brian2) a few seconds, for
smoke tests only (so small a network is not expected to pass verification).

    python examples/lorenz_end_to_end.py [--out DIR] [--quick] [--force]
"""
import time
from pathlib import Path

import numpy as np

from ddm_neuro.plugins import get_backend
from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_directory
from ddm_neuro.plots import attractor_figure
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

from _common import fit_and_save, fit_options, parse_args, run  # examples/_common.py


def main(argv=None):
    args = parse_args(__doc__, "lorenz_out", argv)
    n, trials, duration = (64, 2, 4.0) if args.quick else (512, 8, 40.0)
    small = fit_options(args)
    t_start = time.perf_counter()
    sde = get_system("lorenz")
    status = 0
    with atomic_directory(args.out, force=args.force) as out:
        model = fit_and_save(sde, n, out, small)

        print(f"== simulate {trials} trials x {duration:g} time units: network (torch) and target SDE")
        net = get_backend("torch", "rate")(model, duration, trials=trials, seed=1, u=None, mode="rate",
                                           progress=False)
        tgt = get_backend("target", "rate")(model, duration, trials=trials, seed=2, u=None, mode="rate",
                                            progress=False)
        net.save(out / "network.npz")
        attractor_figure(net, tgt, out / "attractor.png", variables=list(sde.variables),
                         title=f"Lorenz: {n}-neuron network (left) vs target SDE (right)")
        for name, tr in (("network", net), ("target", tgt)):
            print(f"   {name:<8} mean {np.round(tr.z.mean(axis=(0, 1)), 2)}  std {np.round(tr.z.std(axis=(0, 1)), 2)}")

        print("== verify the network against the target")
        report = verify(sde, net, model_drift=model.latent_drift, progress=False)
        print(report.table())
        report.save(out / "report", traj=net)
        status = 0 if report.passed else 1

        if args.quick:
            print("== brian2-cpp: skipped in --quick (compiling takes ~30 s)")
        else:
            print("== the same network in Brian2 (generated C++, rate mode): 4 trials x 20 time units")
            try:
                b2 = get_backend("brian2-cpp", "rate")(model, 20.0, trials=4, seed=3, u=None, mode="rate",
                                                       progress=False)
            except DDMError as exc:
                print(f"   skipped: {exc}")
            else:
                print(f"   compiled in {b2.meta.get('compile_seconds') or 0:.0f} s")
                rep = verify(sde, b2, model_drift=model.latent_drift, progress=False, seed=1)
                print(rep.table())
                rep.save(out / "report_brian2", traj=b2)
                status = status or (0 if rep.passed else 1)
    figures = sorted(p.relative_to(args.out).as_posix() for p in Path(args.out).rglob("*.png"))
    print(f"\nwrote {args.out}/: {', '.join(figures)}; total {time.perf_counter() - t_start:.0f} s")
    if args.quick:
        return 0  # a 64-neuron smoke run: the verdict above is shown, not required
    return status


if __name__ == "__main__":
    run(main)
