"""Issue 5: spiking networks verified against the target SDE, in torch and Brian2 cpp_standalone.

For rotational OU, the double well (state-dependent diffusion), stochastic Lorenz
(noise 1.0) and two TOML-spec systems (examples/: FitzHugh-Nagumo at a constant input, the toggle switch),
a LIF model is fitted, simulated as a spiking network (exponential synapses,
remainder noise: the model's diffusion minus what the spikes supply) with the
torch simulator and with Brian2's generated C++, and each run is verified.
Printed: each metric's value, baseline and threshold; for the double well also
the switching-time distribution against a target run of the same length
(two-sample Kolmogorov-Smirnov statistic and p-value).

    OMP_NUM_THREADS=1 python benchmarks/spiking_verify.py [--systems ou_rot,double_well] [--backends torch,brian2-cpp] [--quick]
        [--n N] [--spiking | --spike-budget B] [--spike-drift-cap C] [--ratio R] [--save-model DIR | --model DIR]
        [--calibrate TRIALSxDURATION [--cal-rounds R] [--cal-backend B]]

``--spiking`` / ``--spike-budget`` fit with the spiking-aware ridge lambda
(:attr:`ddm_neuro.fit.FitConfig.spike_budget`); ``--n`` overrides each case's N.
``--save-model DIR`` writes each fitted model to ``DIR/<system>.ddm``; ``--model DIR`` reads it
from there instead of fitting (one fit, several backends in separate runs). The backend
``torch-rate`` runs the same model as a rate network (a diagnostic: what is left without spikes).
``--calibrate 32x125`` calibrates each model with its noise on (``ddm-neuro calibrate --noise remainder``,
torch simulator, at the case's input) before it is saved and verified; verification runs use other seeds.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp

from ddm_neuro.plugins import get_backend
from ddm_neuro.fit.matching import fit
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.spec import load_spec
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify
from ddm_neuro.verify.switching import find_wells, switches

ROOT = Path(__file__).resolve().parents[1]
#: name: (SDE factory, N, trials, duration, input)
CASES = {
    "ou_rot": (lambda: get_system("ou_rot"), 1000, 8, 250.0, None),
    "double_well": (lambda: get_system("double_well", c=1.0), 1000, 8, 250.0, None),
    "fitzhugh_nagumo": (lambda: load_spec(ROOT / "examples" / "fitzhugh_nagumo.toml"), 1000, 8, 250.0, [0.5]),
    "toggle_switch": (lambda: load_spec(ROOT / "examples" / "toggle_switch.toml"), 1000, 8, 250.0, None),
    "lorenz": (lambda: get_system("lorenz"), 2000, 16, 60.0, None),
}


def switching_ks(sde, traj, seed):
    """KS test of switching times, spiking run vs a target run of the same trials, length and sampling."""
    target = simulate_sde(sde, traj.t[-1], trials=traj.trials, seed=seed, record_dt=traj.dt)
    rng = np.random.default_rng(seed)
    wells, scale = find_wells(sde.drift, target.z.reshape(-1, sde.dim), rng)
    _, _, w_net = switches(traj.z, traj.dt, wells, scale)
    _, _, w_tgt = switches(target.z, target.dt, wells, scale)
    ks = ks_2samp(w_net, w_tgt)
    return len(w_net), len(w_tgt), float(np.mean(w_net)), float(np.mean(w_tgt)), float(ks.statistic), float(ks.pvalue)


def stronger_ridge(model, sde, factor):
    """Re-solve the decoders with ``factor`` x the fit's ridge lambda (smaller decoders: less spike jitter)."""
    from ddm_neuro.fit.decoders import refit_decoders
    from ddm_neuro.spiking.states import mixed_training_states as _training

    z, u, _ = _training(model, sde, model.init_states, 20000, np.random.default_rng(0))
    return refit_decoders(model, sde, z, u, model.meta["fit"]["ridge_lambda"] * factor)


def calibrate_noisy(model, sde, u, spec, rounds, backend="torch"):
    """Noisy calibration (``calibrate --noise remainder``) with runs ``spec`` = "TRIALSxDURATION"."""
    from ddm_neuro.spiking.drift_calibration import calibrate_spiking

    trials, duration = spec.lower().split("x")
    t0 = time.perf_counter()
    cal = calibrate_spiking(model, sde, rounds=rounds, trials=int(trials), duration=float(duration),
                            noise="remainder", seed=3, backend=backend, u=u, progress=False)
    info = cal.meta["spiking_calibration"]
    for r in info["rounds"]:
        print(f"  calibration round {r['round']}: drift error {100 * r['systematic_drift_error']:.2f} % "
              f"({100 * r['split_half_noise']:.2f}), diffusion error {100 * r['diffusion_error']:.2f} % "
              f"({100 * r['diffusion_split_half_noise']:.2f}) at lag {r['lag']:.3g}", flush=True)
    print(f"  kept round {info['best_round']} ({info['stopped']}); {time.perf_counter() - t0:.0f} s", flush=True)
    return cal


def run_case(name, backends, quick=False, fano="regular", ridge_factor=1.0, n_neurons=None, spike_budget=None,
             spike_drift_cap=None, save_dir=None, load_dir=None, ratio=None, calibrate=None, cal_rounds=4,
             cal_backend="torch"):
    make, n, trials, duration, u = CASES[name]
    if quick:
        n, trials, duration = min(n, 300), 4, duration / 10
    n = n_neurons or n
    sde = make()
    t0 = time.perf_counter()
    extra = {} if spike_budget is None else {"spike_budget": spike_budget}
    if spike_drift_cap is not None:
        extra["spike_drift_cap"] = spike_drift_cap
    if ratio is not None:
        extra["ratio"] = ratio
    if load_dir:
        from ddm_neuro.network import LatentRNN

        model = LatentRNN.load(Path(load_dir) / f"{name}.ddm")
        n = model.n_neurons
        print(f"(model read from {Path(load_dir) / f'{name}.ddm'})")
    else:
        model = fit(sde, n_neurons=n, neuron="lif", seed=0, progress=False, **extra)
    if calibrate:
        model = calibrate_noisy(model, sde, u, calibrate, cal_rounds, cal_backend)
    if save_dir:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        model.save(Path(save_dir) / f"{name}.ddm", force=True)
    if ridge_factor != 1.0:
        model = stronger_ridge(model, sde, ridge_factor)
        print(f"(decoders re-solved with {ridge_factor:g} x the fit's ridge lambda)")
    f = model.meta["fit"]
    print(f"\n### {name}: N = {n} LIF, fit {time.perf_counter() - t0:.0f} s, drift error {100 * f['drift_error']:.3f} %, "
          f"diffusion error {100 * f['diffusion_error']:.3f} %; {trials} trials x {duration:g} time units", flush=True)
    sr = f.get("spike_ridge")
    if sr:
        print(f"  spiking ridge: lambda {sr['lambda']:.4g} = {sr['factor']:.3g} x the rate choice ({sr['limited_by']}); "
              f"predicted spike-noise ratio {sr['rate_spike_ratio']:.3g} -> {sr['spike_ratio']:.3g} "
              f"(after refinement {sr['spike_ratio_final']:.3g}, budget {sr['budget']:g}"
              f"{'' if sr['budget_met'] else ', not met'}); validation drift error "
              f"{100 * sr['rate_val_drift_error']:.2f} -> {100 * sr['val_drift_error']:.2f} % (closed form)", flush=True)
    print(f"  |K| = {np.linalg.norm(model.decoders):.4g}, T = {model.time_scale:.4g} s per time unit", flush=True)
    signal = None if u is None else InputSignal.constant(np.asarray(u, dtype=float))
    reports = {}
    for backend in backends:
        t0 = time.perf_counter()
        if backend == "torch-rate":
            traj = get_backend("torch", "rate")(model, duration, trials=trials, seed=11, u=signal, mode="rate",
                                                progress=False)
        else:
            traj = get_backend(backend, "spiking")(model, duration, trials=trials, seed=11, u=signal,
                                                   mode="spiking", progress=False, fano=fano)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        rep = verify(sde, traj, model_drift=model.latent_drift, seed=5,
                     filter_tau=traj.meta.get("readout_filter_tau"))
        reports[backend] = rep
        print(f"  {backend:10s} {'PASS' if rep.passed else 'FAIL'}  simulated in {wall:.1f} s, "
              f"verified in {time.perf_counter() - t1:.1f} s, "
              f"mean rate {traj.meta.get('mean_rate_hz', float('nan')):.1f} Hz", flush=True)
        if "multistable" in sde.tags:
            n_net, n_tgt, m_net, m_tgt, ks, p = switching_ks(sde, traj, seed=7)
            print(f"    switching times: {n_net} (mean {m_net:.2f}) vs target {n_tgt} (mean {m_tgt:.2f}); "
                  f"KS D = {ks:.3f}, p = {p:.3f}", flush=True)
    names = list(next(iter(reports.values())).metrics)
    print(f"  {'metric':20s}" + "".join(f"{b + ' value/base/thr':>36s}" for b in backends))
    for m in names:
        row = f"  {m:20s}"
        for b in backends:
            x = reports[b].metrics.get(m)
            row += (f"{x['value']:12.4g}{x['baseline']:11.4g}{x['threshold']:11.4g}{'  ' if x['passed'] else ' X'}"
                    if x else f"{'-':>36s}")
        print(row, flush=True)
    return {b: r.passed for b, r in reports.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default=",".join(CASES))
    ap.add_argument("--backends", default="torch,brian2-cpp")
    ap.add_argument("--quick", action="store_true", help="small networks, a tenth of the length")
    ap.add_argument("--fano", default="regular", help="spikes' Fano factor counted in the remainder noise")
    ap.add_argument("--ridge-factor", type=float, default=1.0,
                    help="re-solve the decoders with this multiple of the fit's ridge lambda")
    ap.add_argument("--n", type=int, default=None, help="number of neurons (overrides each case's N)")
    ap.add_argument("--spiking", action="store_true",
                    help="fit with the spiking-aware ridge lambda (FitConfig.spike_budget = 0.02)")
    ap.add_argument("--spike-budget", type=float, default=None,
                    help="fit with the spiking-aware ridge lambda and this spike-noise budget (implies --spiking)")
    ap.add_argument("--spike-drift-cap", type=float, default=None,
                    help="FitConfig.spike_drift_cap for the spiking-aware lambda (default the fit's, 0.08)")
    ap.add_argument("--ratio", type=float, default=None,
                    help="FitConfig.ratio (time-scale separation; smaller: slower latent, larger T)")
    ap.add_argument("--save-model", default=None, metavar="DIR", help="write each fitted model to DIR/<system>.ddm")
    ap.add_argument("--model", default=None, metavar="DIR", help="read the models from DIR/<system>.ddm, no fit")
    ap.add_argument("--calibrate", default=None, metavar="TRIALSxDURATION",
                    help="calibrate each model with its noise on before verifying (calibrate --noise remainder, in "
                         "the --cal-backend simulator), e.g. 32x125")
    ap.add_argument("--cal-rounds", type=int, default=4, help="most calibration rounds (default 4)")
    ap.add_argument("--cal-backend", default="torch", help="simulator of the calibration runs (default torch)")
    args = ap.parse_args(argv)
    budget = args.spike_budget if args.spike_budget is not None else (0.02 if args.spiking else None)
    os.environ.setdefault("DDM_NEURO_CACHE", tempfile.mkdtemp(prefix="ddm_cache_"))
    backends = args.backends.split(",")
    fano = args.fano if args.fano == "regular" else float(args.fano)
    results = {name: run_case(name, backends, args.quick, fano, args.ridge_factor, args.n, budget, args.spike_drift_cap,
                              args.save_model, args.model, args.ratio, args.calibrate, args.cal_rounds,
                              args.cal_backend)
               for name in args.systems.split(",")}
    print("\nsummary: " + ", ".join(f"{k}: " + "/".join("pass" if v[b] else "FAIL" for b in backends)
                                    for k, v in results.items()) + f"  ({'/'.join(backends)})")


if __name__ == "__main__":
    main()
