"""Associative memory: cue-driven switching between two attractors, network vs target SDE.

The built-in ``switch`` is ``dm = (m - m^3 + c u) dt + sigma dW`` (c = 1,
sigma = 0.25): two wells m = -1, +1; an input u beyond the fold
``|u| > 2 / (3 sqrt 3) = 0.385`` removes one of them and pushes the state into
the other. The script

1. fits N = 256 tanh neurons with the input channel u (``input_range`` [-1, 1]);
2. builds a cue protocol (:func:`ddm_neuro.analysis.memory_tasks.cue_protocol`): 60 pulses of
   random sign, ``u = +-0.8`` for 2 time units, then u = 0 for 3;
3. runs it in the network (torch), in the target SDE, and, when Brian2 and a
   C++ compiler are installed, in Brian2 (``brian2-cpp``: the cue is a TimedArray);
4. measures the switching success (state in the cued well 1-2 time units after
   each pulse), overall and among the pulses that had to move the state, with
   binomial standard errors, and compares each run with the target
   (z = difference / pooled SE);
5. writes ``switching.png`` (cue, latent m of the network and of the target on
   the first 80 time units) and ``success.png`` (success rates with error bars).

At u = 0.8 the passage over the vanished barrier takes ~1.9 time units, so
about half of the needed switches succeed: a regime where the rate depends on
the drift along the whole path (see ``benchmarks/RESULTS_memory.md`` for the
measured figures at 100 pulses, torch vs Brian2 vs target).

Full run: a few minutes on one shared core (compiling the C++ ~30 s of it);
``--quick``: N = 48, 8 pulses, no Brian2 (a smoke run, not a measurement).

    python examples/associative_switching.py [--out DIR] [--quick] [--force]
"""
import time

import numpy as np

from ddm_neuro.plugins import get_backend
from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_directory
from ddm_neuro.analysis.memory_tasks import compare_proportions, cue_protocol, switching_success
from ddm_neuro.sde.systems import get_system

from _common import fit_and_save, fit_options, parse_args, pyplot, run, save  # examples/_common.py



def switching_figure(protocol, runs, path, window=80.0):
    """Cue (top) and latent m of each run (below), first trial, first ``window`` time units."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    t = np.linspace(0, min(window, protocol.duration), 2000)
    axes[0].step(t, protocol.signal.at(t)[:, 0], where="post", color="k", lw=1)
    axes[0].set_ylabel("cue u")
    colours = {"torch": "tab:blue", "target": "tab:gray", "brian2-cpp": "tab:orange"}
    for name, (traj, _) in runs.items():
        keep = traj.t <= window
        axes[1].plot(traj.t[keep], traj.z[0, keep, 0], lw=0.8, color=colours.get(name), alpha=0.85,
                     label="network (torch)" if name == "torch" else "target SDE" if name == "target" else name)
    for on, s in zip(protocol.onsets, protocol.signs):
        if on < window:
            axes[1].axvspan(on, on + protocol.width, color="tab:green" if s > 0 else "tab:red", alpha=0.08, lw=0)
    axes[1].axhline(1, color="k", lw=0.4, ls=":")
    axes[1].axhline(-1, color="k", lw=0.4, ls=":")
    axes[1].set_ylabel("latent m")
    axes[1].set_xlabel("time (SDE units)")
    axes[1].legend(loc="upper right", fontsize=8)
    fig.suptitle("cue-driven switching: pulses (green +, red -) push m between the wells")
    save(fig, path)


def success_figure(results, path):
    """Bar chart: success among all pulses and among pulses that had to move the state, +-1 SE."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    names = list(results)
    x = np.arange(len(names))
    bars = [("rate", "se", "all pulses"), ("switch_rate", "switch_se", "had to switch")]
    for k, (attr, se, label) in enumerate(bars):
        vals = [getattr(results[n], attr) for n in names]
        errs = [getattr(results[n], se) for n in names]
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=errs, capsize=4, label=label)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (+-1 binomial SE)")
    ax.legend(loc="lower right")
    save(fig, path)


def main(argv=None):
    args = parse_args(__doc__, "switching_out", argv)
    t_start = time.perf_counter()
    n, pulses, trials = (48, 8, 2) if args.quick else (256, 60, 4)
    small = fit_options(args)
    sde = get_system("switch")
    with atomic_directory(args.out, force=args.force) as out:
        model = fit_and_save(sde, n, out, small, where=" (over u in [-1, 1])")
        protocol = cue_protocol(pulses, 0.8, 2.0, 3.0, seed=1)
        print(f"== cue protocol: {pulses} pulses, u = +-0.8 for 2, then 0 for 3 ({protocol.duration:g} time units), "
              f"{trials} trials")
        backends = ["torch", "target"] + ([] if args.quick else ["brian2-cpp"])
        runs = {}
        for name in backends:
            t0 = time.perf_counter()
            try:
                traj = get_backend(name, "rate")(model, protocol.duration, trials=trials, seed=2, u=protocol.signal,
                                                 mode="rate", progress=False)
            except DDMError as exc:
                print(f"   {name}: skipped ({exc})")
                continue
            runs[name] = (traj, switching_success(traj, protocol, [-1.0, 1.0]))
            traj.save(out / f"{name}.npz")
            print(f"   {name}: {time.perf_counter() - t0:.1f} s")
        tgt = runs["target"][1]
        print(f"\n{'run':<11} {'success':>8} {'SE':>6} {'had to switch':>13} {'success':>8} {'SE':>6} "
              f"{'z vs target':>11}")
        for name, (_, r) in runs.items():
            z = compare_proportions(int(r.success[r.moved].sum()), max(r.n_moved, 1),
                                    int(tgt.success[tgt.moved].sum()), max(tgt.n_moved, 1))[2]
            print(f"{name:<11} {r.rate:8.3f} {r.se:6.3f} {r.n_moved:13d} {r.switch_rate:8.3f} {r.switch_se:6.3f} "
                  f"{z if name != 'target' else float('nan'):11.2f}")
        switching_figure(protocol, runs, out / "switching.png")
        success_figure({k: v[1] for k, v in runs.items()}, out / "success.png")
    print(f"\nwrote {args.out}/: switching.png, success.png, model.ddm, "
          f"{', '.join(k + '.npz' for k in runs)}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    run(main)
