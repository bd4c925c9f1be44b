"""The NIR round trip through third-party consumers, verified against the target SDE.

For Lorenz (noise 1.0) and the double well (built-in default, additive noise), a spiking LIF model with
no refractory period (``tau_ref = 0``, NIR's CubaLIF has none) is fitted,
exported with ``exporters.nir`` (dt = 1e-4 s), built by each consumer's own
NIR importer (Norse, snnTorch, Rockpool, spyx: :mod:`exporters.nir.consumers`),
simulated there with the host noise fed to the file's noise channels, its
Output (the latent) read as a Trajectory and verified with
:func:`ddm_neuro.verify.verify`. Printed: fit errors, the host noise, every
metric's value / baseline / threshold / pass, the consumer's version, the mean
firing rate and the wall time.

    OMP_NUM_THREADS=1 python benchmarks/nir_roundtrip.py [--systems lorenz,double_well]
        [--n 1000] [--consumers norse,snntorch,rockpool,spyx,torch] [--lorenz 8x30] [--double-well 8x100]
        [--models DIR] [--step-matched] [--rate-curve] [--fano regular|F]

``--models DIR`` keeps the fitted models (``DIR/<system>_<N>.ddm``) and reuses them.
``--step-matched`` fits with the ``tau_ref`` the consumer's step supplies and exports
with ``step_matched=True`` (see :mod:`exporters.nir.export`).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify
from exporters.nir.consumers import CONSUMERS as NIR_CONSUMERS
from exporters.nir.consumers import run_file
from exporters.nir.export import STEP_TAU_REF, export
from exporters.nir.layout import read_network

SYSTEMS = {"lorenz": lambda: get_system("lorenz", noise=1.0), "double_well": lambda: get_system("double_well")}
def run_torch(path, duration, *, trials, seed, noise, model=None, fano=1.0):
    """The reference: the same model in the torch spiking simulator (exact spike times) at the same step."""
    from ddm_neuro.spiking.simulator import simulate_spiking

    return simulate_spiking(model, duration, dt=DT / model.time_scale, trials=trials, seed=seed,
                            noise="remainder" if noise else "none", fano=fano)


CONSUMERS = {**{c: (lambda c: lambda path, duration, **kw: run_file(c, path, duration, **kw))(c)
                for c in NIR_CONSUMERS}, "torch": run_torch}
NEURON = {"name": "lif", "tau_ref": 0.0, "max_rates": (200.0, 400.0)}
#: The step (s) of the exported files: snnTorch's fixed one.
DT = 1e-4


def _shape(text):
    trials, duration = text.lower().split("x")
    return int(trials), float(duration)


def get_model(name, n, models, tau_ref=0.0):
    path = Path(models) / (f"{name}_{n}.ddm" if not tau_ref else f"{name}_{n}_tref{tau_ref:g}.ddm") if models else None
    if path is not None and path.exists():
        return LatentRNN.load(path), 0.0
    t0 = time.perf_counter()
    model = fit(SYSTEMS[name](), n_neurons=n, neuron={**NEURON, "tau_ref": tau_ref}, seed=0, progress=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return model, time.perf_counter() - t0


#: Each consumer's step for a file without v_reset: decay, reset rule, spike timing (``exporters.nir.export``,
#: ``tests/test_nir_consumers.py::reference``).
STEPS = {"norse": ("euler", "zero", "same"), "norse, reset_subtract (nir 1.0.4 rule)": ("euler", "subtract", "same"),
         "snntorch": ("euler", "zero", "late reset"), "rockpool": ("exact", "subtract", "same"),
         "spyx": ("euler", "subtract", "late spike")}


def euler_rate_curve(tau_m=0.02, tau=0.02, dt=DT, seconds=2.0):
    """Mean relative error of the rate curve each consumer's step realises, 50-400 Hz.

    300 neurons with constant inputs spread over the rates (the spread averages out the staircase
    of whole-step intervals), random start phases, ``seconds`` of network time, the synaptic current
    at its steady state, per consumer (:data:`STEPS`), default export (tau_ref = 0, the model's tau_m),
    and step_matched for Norse and snnTorch (tau_ref = dt/2 Norse, 3 dt/2 snnTorch; exact-decay tau_mem).
    """
    from ddm_neuro.neurons import make_neuron

    r_target = np.linspace(50.0, 400.0, 300)
    print(f"Rate curve realised by each consumer's step (dt = {dt:g} s, tau_m = {tau_m:g} s), "
          "relative to the fitted curve, over 50-400 Hz:")
    cases = [(c, False) for c in STEPS] + [("norse", True), ("snntorch", True)]
    for consumer, matched in cases:
        decay, reset, timing = STEPS[consumer]
        tau_ref = STEP_TAU_REF[consumer] * dt if matched else 0.0
        tau_file, tau_s = (dt / -np.expm1(-dt / tau_m), dt / -np.expm1(-dt / tau)) if matched else (tau_m, tau)
        x = 1 + 1 / np.expm1((1 / r_target - tau_ref) / tau_m)
        a, a_s = dt / tau_file, dt / tau_s
        drive = a * a_s * x
        if decay == "exact":                               # Rockpool: its dt' = tau/(1 + r), input decays too
            e_m, e_s = np.exp(-dt / (1 + a) / tau_file), np.exp(-dt / (1 + a) / tau_s)
            current = e_s * drive / (1 - e_s)
        else:
            current = drive / a_s
        v = np.random.default_rng(0).uniform(0, 1, x.shape)
        count, fired = np.zeros_like(x), np.zeros(x.shape, dtype=bool)
        for _ in range(int(round(seconds / dt))):
            if timing == "late spike":                     # spyx: spike from the previous step's v
                fired = v > 1.0
                count += fired
                v = v - fired
            v = v * e_m + current if decay == "exact" else (1 - a) * v + current
            if timing == "late reset":                     # snnTorch: reset one step after the spike
                v[fired] = 0.0
            if timing != "late spike":
                fired = v >= 1.0 if decay == "exact" else v > 1.0
                count += fired
                if timing == "same":
                    v = np.where(fired, v - 1.0 if reset == "subtract" else 0.0, v)
        rel = count / seconds / make_neuron({**NEURON, "tau_ref": tau_ref}).phi(x) - 1
        label = f"step_matched (tau_ref {STEP_TAU_REF[consumer]:g} dt)" if matched else "default"
        print(f"  {consumer:40s} {label:30s} mean {100 * rel.mean():+.3f} %, "
              f"mean |error| {100 * np.abs(rel).mean():.3f} %", flush=True)


def run_case(name, n, trials, duration, consumers, models, workdir, step_matched=False, fano=1.0, seed=11):
    sde = SYSTEMS[name]()
    tau_ref = STEP_TAU_REF.get(consumers[0], 0.5) * DT if step_matched else 0.0    # torch: Norse's model
    model, fit_s = get_model(name, n, models, tau_ref)
    f = model.meta["fit"]
    path = export(model, Path(workdir) / f"{name}_{n}.nir", dt=DT, force=True, progress=False,
                  step_matched=step_matched, fano=fano)
    net = read_network(path)
    print(f"\n### {name}: N = {n}, LIF tau_ref = {tau_ref * 1e3:g} ms"
          f"{f' (step_matched for {consumers[0]})' if step_matched else ''}, "
          f"T = {model.time_scale:.4g} s per SDE unit, fit "
          f"{fit_s:.0f} s (0: cached), drift error {100 * f['drift_error']:.3f} %, diffusion error "
          f"{100 * f['diffusion_error']:.3f} %; NIR dt = {net.dt:g} s; host noise sigma2 mean "
          f"{np.mean(net.graph.metadata['host_noise_sigma2']):.4g} Hz (model private {model.noise_const.mean():.4g} "
          f"Hz), {net.n_noise} noise channel(s), spike Fano factor counted: {fano}; "
          f"{trials} trials x {duration:g} SDE units "
          f"({duration * model.time_scale:.3g} s network time, {int(round(duration * model.time_scale / net.dt))} "
          f"steps)", flush=True)
    results = {}
    for consumer in consumers:
        t0 = time.perf_counter()
        extra = {"model": model, "fano": fano} if consumer == "torch" else {}
        traj = CONSUMERS[consumer](path, duration, trials=trials, seed=seed, noise=True, **extra)
        wall = time.perf_counter() - t0
        rep = verify(sde, traj, model_drift=model.latent_drift, seed=5)
        results[consumer] = rep
        print(f"  {consumer} {traj.meta.get('consumer_version') or ''}: {'PASS' if rep.passed else 'FAIL'}; "
              f"simulated in {wall:.0f} s ({traj.meta.get('scheme', 'exact')}), mean rate "
              f"{traj.meta['mean_rate_hz']:.1f} Hz, diverged trials {traj.meta['diverged_trials']}", flush=True)
        print(f"    {'metric':22s}{'value':>12s}{'baseline':>12s}{'threshold':>12s}  pass")
        for m, x in rep.metrics.items():
            print(f"    {m:22s}{x['value']:12.4g}{x['baseline']:12.4g}{x['threshold']:12.4g}  "
                  f"{'yes' if x['passed'] else 'NO'}", flush=True)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="lorenz,double_well")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--consumers", default="norse",
                    help="norse, snntorch, rockpool, spyx and/or torch (the reference: ddm_neuro's spiking "
                         "simulator, no NIR)")
    ap.add_argument("--lorenz", type=_shape, default=(8, 30.0), help="TRIALSxDURATION (default 8x30)")
    ap.add_argument("--double-well", type=_shape, default=(8, 100.0), help="TRIALSxDURATION (default 8x100)")
    ap.add_argument("--models", help="folder to keep and reuse fitted models")
    ap.add_argument("--fano", default=1.0, type=lambda v: v if v == "regular" else float(v),
                    help="spike Fano factor counted against the private noise: a number (default 1) or 'regular'")
    ap.add_argument("--seed", type=int, default=11, help="simulation seed (default 11)")
    ap.add_argument("--rate-curve", action="store_true", help="also print the Euler rate-curve bias (seconds)")
    ap.add_argument("--step-matched", action="store_true",
                    help="fit with the tau_ref the step supplies (dt/2 Norse, 3 dt/2 snnTorch; first consumer) "
                         "and export with step_matched=True")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {"lorenz": args.lorenz, "double_well": args.double_well}
    if args.rate_curve:
        euler_rate_curve()
    with tempfile.TemporaryDirectory() as work:
        for name in filter(None, args.systems.split(",")):
            run_case(name, args.n, *shapes[name], args.consumers.split(","), args.models, work, args.step_matched,
                     args.fano, args.seed)


if __name__ == "__main__":
    main()
