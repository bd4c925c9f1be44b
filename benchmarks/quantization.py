"""Issue 6 (part 4) acceptance table: Lorenz drift error vs weight bits, rounding only vs quantisation-aware refit.

Fits Lorenz with N tanh neurons (seed 0), then quantises the recurrent weights
``W`` to k bits on one shared scale (``ddm_neuro.fit.hardware.constrain``) three
ways: rounding only; compensated rounding (the closed-form step of the refit,
``steps=0``); and the full refit (compensated rounding, then Adam with the
straight-through estimator). For each it prints the held-out relative drift
and diffusion errors (as ``ddm_neuro.fit.model_errors``, on the same held-out
states of an independent target simulation for every row), the integer levels
used, the wall time of the constrain call, and whether a torch rate simulation
of ``trials x duration`` passes ``verify`` against the target SDE (with the
failing metrics named with value / threshold; the Lyapunov-exponent check is run for the float model
only, see ``check``).

    python benchmarks/quantization.py                          # N=512, bits 8 6 4, 16 x 60
    python benchmarks/quantization.py --trials 8 --duration 30 # shorter verify runs
"""
import argparse
import math
import time

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit, model_errors
from ddm_neuro.fit.hardware import constrain
from ddm_neuro.network import LatentRNN
from ddm_neuro.fit.states import visited_states
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify


def check(model, sde, args):
    """``(passed, failing metrics, seconds)`` of a torch run of ``model`` under ``verify``."""
    t0 = time.perf_counter()
    traj = simulate_network(model, args.duration, trials=args.trials, seed=1)
    if traj.meta["diverged_trials"]:
        return False, f"{len(traj.meta['diverged_trials'])} trials diverged", time.perf_counter() - t0
    # The Lyapunov check integrates the model's noise-free latent drift (~1e5 calls); with W_perp every call
    # settles x_perp (tens of N x N products per state), an estimated 20+ min at N = 512 on one core: skipped.
    drift = model.latent_drift if model.w_perp is None else None
    rep = verify(sde, traj, model_drift=drift, seed=2)
    failed = [f"{name} {m['value'] / m['threshold']:.2g}x" if m["threshold"] > 0 else name
              for name, m in rep.metrics.items() if not m["passed"]]
    return bool(rep.passed), ",".join(failed) or "-", time.perf_counter() - t0


def unsettled_drift_error(m, sde, z):
    """Relative drift error with ``x_perp`` left at ``P b`` (the feedback through ``W_perp`` ignored)."""
    x = m.to_latent(z) @ m.encoders.T + m.rest_inputs()
    dy = (-x + m.neuron.phi(x) @ m.weights().T + m.bias) @ m.readout.T / m.tau
    f = sde.drift(z)
    return math.sqrt(np.sum((m.time_scale * m.scale * dy - f) ** 2) / np.sum(f ** 2))


def verdict_text(ok, failed, secs):
    return f"{'PASS' if ok else 'FAIL'} (failed: {failed}; {secs:.0f} s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--neuron", default="tanh")
    ap.add_argument("--bits", type=int, nargs="*", default=[8, 6, 4])
    ap.add_argument("--steps", type=int, default=100, help="refit gradient steps")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--model", help="a saved fit to reuse instead of fitting (must be Lorenz)")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    sde = get_system("lorenz")
    t0 = time.perf_counter()
    model = LatentRNN.load(args.model) if args.model else fit(sde, n_neurons=args.n, neuron=args.neuron, seed=0,
                                                               progress=False)
    print(f"Lorenz, N = {model.n_neurons} {model.neuron.name} neurons, fit seed 0 ({time.perf_counter() - t0:.0f} s); "
          f"verify: torch rate runs {args.trials} x {args.duration:g} time units", flush=True)
    head = (f"{'bits':>5} {'method':<12}{'drift err':>11}{'diffusion err':>15}{'levels':>8}"
            f"{'scale':>10}{'time (s)':>10}  verify")
    print(head + "\n" + "-" * (len(head) + 20), flush=True)
    rows = []
    for k in args.bits:
        rows += [(k, "round", dict(refit=False)), (k, "compensated", dict(steps=0)),
                 (k, "refit", dict(steps=args.steps))]
    float_done = False
    rounded, starred = {}, False
    for bits, label, kw in rows:
        t1 = time.perf_counter()
        try:
            m = constrain(model, sde, bits=bits, max_drift_error=math.inf, **kw)
        except DDMError as exc:
            print(f"{bits:>5} {label:<12} refused: {exc}", flush=True)
            continue
        h = m.meta["hardware"]
        wall = time.perf_counter() - t1
        if not float_done:  # the float model's errors, on the same held-out states (same seed)
            float_done = True
            verdict = "" if args.no_verify else verdict_text(*check(model, sde, args))
            print(f"{'float':>5} {'fitted':<12}{100 * h['drift_error_before']:>10.3f}%"
                  f"{100 * h['diffusion_error_before']:>14.3f}%{'-':>8}{'-':>10}{'-':>10}  {verdict}", flush=True)
        if label == "round":
            rounded.setdefault(bits, m)
        shown = label if h["method"] == label or label == "round" else f"{label}*"
        starred |= shown.endswith("*")
        verdict = ""
        if not args.no_verify and label != "compensated":
            verdict = verdict_text(*check(m, sde, args))
        print(f"{bits:>5} {shown:<12}{100 * h['drift_error']:>10.3f}%{100 * h['diffusion_error']:>14.3f}%"
              f"{h['levels_used']:>8}{h['scale']:>10.3g}{wall:>10.1f}  {verdict}", flush=True)
    if starred:
        print("* the refit did not beat its start on the validation states; the best start was kept")
    z, _, _ = visited_states(sde, np.random.default_rng(9), trials=16, records=1000, batches=2)
    z = z[np.random.default_rng(1).choice(len(z), 3000, replace=False)]
    for bits, m in rounded.items():
        print(f"x_perp feedback, {bits} bits rounding only, 3000 other held-out states: drift error "
              f"{100 * model_errors(m, sde, z)[0]:.2f} % with x_perp settled (latent_drift), "
              f"{100 * unsettled_drift_error(m, sde, z):.2f} % with x_perp left at P b")


if __name__ == "__main__":
    main()
