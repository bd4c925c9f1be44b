"""Issue 7 (parts 1, 2): associative and episodic memory, network vs target SDE.

(a) **Associative memory** (built-in ``switch``: ``dm = (m - m^3 + c u) dt + sigma dW``,
wells +-1). Fit N = 256 tanh neurons with inputs (seed 0); drive it with cue
protocols (:func:`ddm_neuro.analysis.memory_tasks.cue_protocol`, ``--pulses`` pulses of random
sign, ``u = +-A`` for ``w`` time units, then 0 for 3) and measure the switching
success (:func:`ddm_neuro.analysis.memory_tasks.switching_success`: state in the cued well 1-2
time units after the pulse) in torch, in Brian2 (``brian2-cpp``: generated C++,
the input as a TimedArray) and in the target SDE (``target`` back end), each with
its binomial SE (and the trial-clustered SE). Two protocols: A = 1.0 and A = 0.8
(near the fold at A = 2/(3 sqrt 3) = 0.385 the passage is slow, so the rate is
sensitive to the drift along the way). Then the spontaneous switching rate with
u = 0 (core sets |m -+ 1| < 0.5, :func:`ddm_neuro.verify.switching.switches`):
at the default sigma = 0.25 Kramers gives ~8e-5 per time unit (nothing to see
in any affordable run), so it is also measured on a noisier switch
(sigma = 0.4, refitted), where Kramers gives ~1e-2.

(b) **Episodic memory** (built-in ``ring``: K = 3 wells on the unit circle,
``h(θ) = omega - a sin Kθ``). Cases (``--cases``): ``stiff``, the tilted ring
with the radius pinned ``lam = 10, omega = 1.8`` (fast cycling); ``default``,
the built-in's ``lam = 2, omega = 1.5``; ``weak``, ``lam = 10, omega = 0.2,
sigma = 0.9`` (a weak tilt against strong noise: backward steps are common, so
the forward fraction is a number to compare, not 1). Fit N = 256 each; simulate network (torch) and target; measure the
forward fraction of well-to-well transitions, the cycle rate, the mean dwell
time, and the mean angular velocity ``<dθ/dt> = 2π J`` against Risken's closed
form for ``dθ = h dt + sqrt(2D) dW`` with ``D = sigma^2 <r^-2> / 2`` (and the
naive ``D = sigma^2 / 2``), see :mod:`ddm_neuro.analysis.memory_tasks`.

``z`` = (network - target) / sqrt(SE_net^2 + SE_target^2) (pooled binomial SE
for proportions); |z| < 3 is "compatible".

    OMP_NUM_THREADS=1 python benchmarks/memory.py [--pulses 100] [--trials 4] [--ring-duration 250]
                                                  [--ring-trials 16] [--cases stiff,default,weak]
                                                  [--no-brian2] [--quick] [--only a|b]

Brian2 builds go to a temporary ``DDM_NEURO_CACHE`` (removed at the end).
"""
import argparse
import math
import os
import shutil
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
_CACHE = tempfile.mkdtemp(prefix="ddm_memory_")
os.environ["DDM_NEURO_CACHE"] = _CACHE

import numpy as np  # noqa: E402

from ddm_neuro.plugins import get_backend  # noqa: E402
from ddm_neuro.errors import DDMError  # noqa: E402
from ddm_neuro.fit.matching import fit  # noqa: E402
from ddm_neuro.analysis.memory_tasks import (angular_current, compare_proportions, cue_protocol, ring_angle_diffusion,  # noqa: E402
                              ring_centres, risken_current, switching_success, visit_sequence)
from ddm_neuro.sde.systems import get_system  # noqa: E402
from ddm_neuro.verify.switching import switches  # noqa: E402


def z_of(a, sa, b, sb):
    s = math.hypot(sa, sb)
    return (a - b) / s if s > 0 else (0.0 if a == b else math.inf)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def run(backend, model, duration, u=None, **kw):
    return get_backend(backend, "rate")(model, duration, u=u, mode="rate", progress=False, **kw)


def associative(args):
    print("\n=== (a) associative memory: switch, N = 256, seed 0")
    model, t_fit = timed(fit, get_system("switch"), n_neurons=256, seed=0, progress=False)
    f = model.meta["fit"]
    print(f"fit {t_fit:.1f} s; held-out drift error {f['drift_error']:.2e}, diffusion error {f['diffusion_error']:.2e}")
    backends = ["torch", "target"] + ([] if args.no_brian2 else ["brian2-cpp"])
    for A, w in [(1.0, 2.0), (0.8, 2.0)]:
        p = cue_protocol(args.pulses, A, w, 3.0, seed=1)
        print(f"\n-- cue protocol: {args.pulses} pulses, u = +-{A:g} for {w:g}, then 0 for 3 (lead 3, "
              f"{p.duration:g} time units), {args.trials} trials, protocol seed 1, run seed 2")
        print(f"{'backend':<11} {'success':>8} {'SE':>6} {'moved':>6} {'switch|moved':>12} {'SE':>6} "
              f"{'SE(trials)':>10} {'z vs target':>11} {'wall s':>7}")
        res = {}
        for b in backends:
            try:
                traj, wall = timed(run, b, model, p.duration, trials=args.trials, seed=2, u=p.signal)
            except DDMError as exc:
                print(f"{b:<11} skipped: {exc}")
                continue
            res[b] = (switching_success(traj, p, [-1.0, 1.0]), wall, traj.meta.get("compile_seconds"))
        tgt = res["target"][0]
        for b, (r, wall, comp) in res.items():
            zz = float("nan") if b == "target" else compare_proportions(
                int(r.success[r.moved].sum()), r.n_moved, int(tgt.success[tgt.moved].sum()), tgt.n_moved)[2]
            extra = f" (compile {comp:.0f} s)" if comp else ""
            print(f"{b:<11} {r.rate:8.3f} {r.se:6.3f} {r.n_moved:6d} {r.switch_rate:12.3f} {r.switch_se:6.3f} "
                  f"{r.switch_se_trials:10.3f} {zz:11.2f} {wall:7.1f}{extra}")

    print(f"\n-- spontaneous switching, u = 0: {args.trials * 2} trials x {args.spont_duration:g} time units, "
          "cores |m -+ 1| < 0.5")
    print(f"{'system':<16} {'run':<7} {'switches':>8} {'rate /unit':>10} {'SE':>8} {'Kramers':>9} {'z vs target':>11}")
    for sigma in (0.25, 0.4):
        sde = get_system("switch", sigma=sigma)
        m = model if sigma == 0.25 else fit(sde, n_neurons=256, seed=0, progress=False)
        D = sigma ** 2 / 2
        kramers = math.sqrt(2.0) / (2 * math.pi) * math.exp(-0.25 / D)
        rates = {}
        for b in ("torch", "target"):
            traj = run(b, m, args.spont_duration, trials=args.trials * 2, seed=3)
            n, T, _ = switches(traj.z, traj.dt, np.array([[-1.0], [1.0]]), np.ones(1))
            rates[b] = (n / T, math.sqrt(max(n, 1)) / T, n)
        for b, (r, se, n) in rates.items():
            zz = z_of(r, se, *rates["target"][:2]) if b != "target" else float("nan")
            print(f"switch s={sigma:<6g} {b:<7} {n:8d} {r:10.2e} {se:8.1e} {kramers:9.1e} {zz:11.2f}")
    print("(SE: sqrt(max(n, 1)) / T, Poisson; with n = 0 that is the scale of a 1-count upper bound)")


def episodic(args):
    # the stiff ring's default step (from the drift's rates over the whole domain box, radial rate ~ lam r^2
    # in the corners) is 1.5e-4; on the ring itself the fastest rate is 2 lam = 20, so 5e-4 is ample
    fine = dict(dt=5e-4, record_dt=5e-3)
    cases = {"stiff": ("stiff tilted ring", dict(lam=10.0, omega=1.8), fine),
             "default": ("default ring", {}, {}),
             "weak": ("weakly tilted noisy ring", dict(lam=10.0, omega=0.2, sigma=0.9), fine)}
    for key in args.cases.split(","):
        if key not in cases:
            raise SystemExit(f"--cases: unknown case {key!r} (known: {', '.join(cases)})")
        label, over, steps = cases[key]
        sde = get_system("ring", **over)
        P = sde.parameters
        K, a, om, sig, lam = (float(P[k]) for k in ("K", "a", "omega", "sigma", "lam"))
        print(f"\n=== (b) episodic memory: {label} (K={K:g}, a={a:g}, omega={om:g}, lam={lam:g}, sigma={sig:g}), "
              "N = 256, seed 0")
        model, t_fit = timed(fit, sde, n_neurons=256, seed=0, progress=False)
        f = model.meta["fit"]
        print(f"fit {t_fit:.1f} s; held-out drift error {f['drift_error']:.2e}, diffusion error "
              f"{f['diffusion_error']:.2e}")
        D, m2 = ring_angle_diffusion(sig, lam)
        h = lambda th: om - a * np.sin(K * th)  # noqa: E731
        v_risken = 2 * math.pi * risken_current(h, D)
        v_naive = 2 * math.pi * risken_current(h, sig ** 2 / 2)
        centres = ring_centres(K, a, om)
        out = {}
        for b in ("torch", "target"):
            traj, wall = timed(run, b, model, args.ring_duration, trials=args.ring_trials, seed=args.ring_seed, **steps)
            vis = visit_sequence(traj, centres)
            theta = np.arctan2(traj.z[..., 1], traj.z[..., 0])
            n_amb = int(np.sum(np.abs(np.angle(np.exp(1j * np.diff(theta, axis=1)))) > math.pi / 2))
            v, se = angular_current(traj, max_jump=math.pi)  # n_amb steps near the centre: read as shorter turn
            r = np.linalg.norm(traj.z, axis=-1)
            out[b] = (vis, v, se, wall, float(np.mean(r[r > 0.5] ** -2.0)))
            if n_amb:
                print(f"{b}: {n_amb} sample steps turn by more than π/2 (passes near the centre)")
        print(f"{args.ring_trials} trials x {args.ring_duration:g} time units each, run seed {args.ring_seed}, "
              f"Euler step {traj.meta.get('integration_dt'):.2g}")
        print(f"{'run':<7} {'trans':>6} {'forward':>8} {'SE':>6} {'cycles/unit':>11} {'SE':>7} {'dwell':>6} "
              f"{'SE':>5} {'<dθ/dt>':>8} {'SE':>7} {'<r^-2>':>7} {'wall s':>7}   (<r^-2> over r > 0.5)")
        for b, (vis, v, se, wall, mr) in out.items():
            d = vis.to_dict()
            print(f"{b:<7} {vis.n_transitions:6d} {vis.forward_fraction:8.3f} {vis.forward_se:6.3f} "
                  f"{vis.cycle_rate:11.4f} {vis.cycle_se:7.4f} {d['mean_dwell']:6.2f} {d['mean_dwell_se']:5.2f} "
                  f"{v:8.4f} {se:7.4f} {mr:7.4f} {wall:7.1f}")
        (vn, vel_n, se_n, _, _), (vt, vel_t, se_t, _, _) = out["torch"], out["target"]
        zf = compare_proportions(vn.n_forward, vn.n_transitions, vt.n_forward, vt.n_transitions)[2] \
            if vn.n_transitions and vt.n_transitions else float("nan")
        print(f"network vs target: z(forward) = {zf:.2f}, z(cycle rate) = "
              f"{z_of(vn.cycle_rate, vn.cycle_se, vt.cycle_rate, vt.cycle_se):.2f}, "
              f"z(<dθ/dt>) = {z_of(vel_n, se_n, vel_t, se_t):.2f}")
        print(f"Risken closed form: D = sigma^2 <r^-2>/2 = {D:.5f} (<r^-2> = {m2:.4f}) -> <dθ/dt> = {v_risken:.4f}, "
              f"{v_risken / (2 * math.pi):.4f} cycles/unit; naive D = sigma^2/2 -> {v_naive:.4f}")
        print(f"  target vs closed form: z = {(vel_t - v_risken) / se_t:.2f} "
              f"(relative difference {(vel_t - v_risken) / v_risken:+.1%}); network vs closed form: "
              f"z = {(vel_n - v_risken) / se_n:.2f} ({(vel_n - v_risken) / v_risken:+.1%})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pulses", type=int, default=100)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--spont-duration", type=float, default=500.0)
    ap.add_argument("--ring-duration", type=float, default=250.0)
    ap.add_argument("--ring-trials", type=int, default=16)
    ap.add_argument("--ring-seed", type=int, default=4, help="seed of the ring runs (network and target)")
    ap.add_argument("--cases", default="stiff,default,weak", help="ring cases for part (b)")
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not a measurement)")
    ap.add_argument("--only", choices=["a", "b"], help="run one part")
    args = ap.parse_args()
    if args.quick:
        args.pulses, args.trials, args.spont_duration, args.ring_duration, args.ring_trials = 10, 2, 20.0, 20.0, 2
        args.cases = "stiff"
    t0 = time.perf_counter()
    try:
        if args.only in (None, "a"):
            associative(args)
        if args.only in (None, "b"):
            episodic(args)
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
