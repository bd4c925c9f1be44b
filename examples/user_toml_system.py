"""A user's own system from a TOML file: fit, simulate with an input, verify, plot.

``examples/fitzhugh_nagumo.toml`` (not a built-in) is the FitzHugh-Nagumo
neuron driven by a current I, with state-dependent noise on v::

    dv = (v - v^3/3 - w + I) dt + 0.1 sqrt(1 + v^2) dW_v
    dw = eps (v + a - b w) dt + 0.02 dW_w          (a = 0.7, b = 0.8, eps = 0.08)

The script loads it (any TOML in the format of DESIGN §4 works: pass its path
as ``--spec``), fits N = 256 tanh neurons over ``I`` in [0, 1], and simulates
the network and the target with a current step ``I = 0`` (excitable: rests)
then ``I = 0.5`` (oscillates: spikes), like the command line's
``--input "I=0:0,40:0.5"``. It verifies the oscillating part against the target
SDE and writes ``attractor.png`` (phase plane, network beside target),
``input_response.png`` (I and v against time) and the verification figures in
``report/``.

Full run: ~2 minutes on one shared core; ``--quick`` (N = 64, short) a smoke
run, not a measurement (so small a network is not expected to pass verification).

    python examples/user_toml_system.py [--spec FILE.toml] [--out DIR] [--quick] [--force]
"""
import time
from pathlib import Path

from ddm_neuro.plugins import get_backend
from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_directory
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.plots import attractor_figure
from ddm_neuro.sde.spec import load_spec
from ddm_neuro.verify import verify

from _common import fit_and_save, fit_options, parse_args, pyplot, run, save  # examples/_common.py

HERE = Path(__file__).resolve().parent



def response_figure(net, tgt, signal, names, path):
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    axes[0].step(net.t, signal.at(net.t)[:, 0], where="post", color="k", lw=1)
    axes[0].set_ylabel(names["input"])
    axes[1].plot(tgt.t, tgt.z[0, :, 0], color="tab:gray", lw=0.8, label="target SDE")
    axes[1].plot(net.t, net.z[0, :, 0], color="tab:blue", lw=0.8, label="network")
    axes[1].set_ylabel(names["variable"])
    axes[1].set_xlabel("time (SDE units)")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle("response to a step of the input (trial 1)")
    save(fig, path)


def main(argv=None):
    args = parse_args(__doc__, "toml_out", argv, extra=lambda ap: ap.add_argument(
        "--spec", default=str(HERE / "fitzhugh_nagumo.toml"), help="SDE spec (TOML)"))
    t_start = time.perf_counter()
    n, trials, rest, duration = (64, 2, 5.0, 20.0) if args.quick else (256, 8, 40.0, 200.0)
    small = fit_options(args)
    sde = load_spec(args.spec)
    if sde.n_inputs != 1:
        raise DDMError(f"{args.spec}: this example steps one input; the spec has {sde.n_inputs} "
                       f"({', '.join(sde.inputs) or 'none'})")
    lo, hi = sde.input_range[sde.inputs[0]]
    step = InputSignal([0.0, rest], [[lo], [lo + 0.5 * (hi - lo)]])
    with atomic_directory(args.out, force=args.force) as out:
        print(f"== {args.spec}: {sde.name}, variables {', '.join(sde.variables)}, input {sde.inputs[0]} in "
              f"[{lo:g}, {hi:g}]")
        model = fit_and_save(sde, n, out, small)
        print(f"== simulate {trials} trials x {rest + duration:g} time units, {sde.inputs[0]} = {lo:g} then "
              f"{step.values[1, 0]:g} from t = {rest:g}")
        runs = {}
        for name, backend, seed in (("network", "torch", 1), ("target", "target", 2)):
            t0 = time.perf_counter()
            runs[name] = get_backend(backend, "rate")(model, rest + duration, trials=trials, seed=seed, u=step,
                                                      mode="rate", progress=False)
            print(f"   {name}: {time.perf_counter() - t0:.1f} s")
        runs["network"].save(out / "network.npz")
        response_figure(runs["network"], runs["target"], step,
                        {"input": sde.inputs[0], "variable": sde.variables[0]}, out / "input_response.png")
        # verify the driven (constant-input) part: cut the trajectories at the step
        net, tgt = (_after(tr, rest, step.values[1]) for tr in (runs["network"], runs["target"]))
        attractor_figure(net, tgt, out / "attractor.png", variables=list(sde.variables),
                         title=f"{sde.name}, {sde.inputs[0]} = {step.values[1, 0]:g}: network (left) vs target (right)")
        print(f"== verify the network at {sde.inputs[0]} = {step.values[1, 0]:g} ({duration:g} time units)")
        report = verify(sde, net, model_drift=model.latent_drift, progress=False)
        print(report.table())
        report.save(out / "report", traj=net)
    figures = sorted(p.relative_to(args.out).as_posix() for p in Path(args.out).rglob("*.png"))
    print(f"\nwrote {args.out}/: {', '.join(figures)}; total {time.perf_counter() - t_start:.0f} s")
    return 0 if (report.passed or args.quick) else 1


def _after(traj, t0, u):
    """The part of ``traj`` from ``t0`` on, restarted at time 0, with its (now constant) input in meta."""
    from ddm_neuro.trajectory import Trajectory

    keep = traj.t >= t0 - 1e-9
    meta = dict(traj.meta, input=InputSignal.constant(u).to_dict(), duration=float(traj.t[-1] - t0))
    return Trajectory(t=traj.t[keep] - traj.t[keep][0], z=traj.z[:, keep], dt=traj.dt, meta=meta)


if __name__ == "__main__":
    run(main)
