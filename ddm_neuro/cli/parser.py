"""The argument parser, declared as one table per command: (flags [METAVAR], type, default, help)."""
from __future__ import annotations

import argparse
import math

from . import commands


def _seed(text):
    """argparse type: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _threads(text):
    """argparse type: a thread count >= 1."""
    value = _seed(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return convert


def _rates(text):
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in Hz, e.g. 200,400 (got {text!r})") from None
    return lo, hi


FLAG, APPEND, REQUIRED = "flag", "append", "required"
COUNT, SPAN = _positive(int), _positive(float)
OUT_MODEL = ("-o,--output", str, REQUIRED, "model file to write (.ddm)")
QUIET = ("--quiet", FLAG, None, "no progress bars")
THREADS = ("--threads K", _threads, None, "CPU threads for torch and BLAS (default 1, or $DDM_NEURO_THREADS: one "
           "thread is fastest for small networks and on a shared machine)")
FORCE = ("--force", FLAG, None, "overwrite an existing output")
LIF = [("--tau-ref SECONDS", float, None, "LIF refractory period in seconds (default 0.002; 0 for NIR export, whose "
                                          "CubaLIF has none)"),
       ("--max-rates LOW,HIGH", _rates, None, "LIF: range of the neurons' maximum rates in Hz (default 200,400)")]
SEED0 = ("--seed", _seed, 0, None)

COMMANDS = {
    "systems": ("list built-in systems", [("--show NAME", str, None, "print a built-in's spec as TOML")]),
    "fit": ("fit a network to an SDE", [
        ("system", str, None, "built-in name (see 'systems') or a .toml spec file"),
        ("-n", int, 512, "number of neurons N (default 512)"),
        ("--neuron", ("tanh", "lif"), None, "neuron model (default tanh; lif with --spiking/--spike-budget)"),
        SEED0, ("--tau", SPAN, 0.02, "neuron time constant in seconds (default 0.02)"), *LIF,
        ("--time-scale", SPAN, None, "seconds per SDE time unit (default: automatic)"),
        ("--steps", _seed, 200, "gradient refinement steps (0: closed form only)"),
        ("--spiking", FLAG, None, "fit for a spiking LIF network: choose the ridge lambda for spike jitter as well as "
         "rate accuracy (spike-noise budget 0.02 of the target's diffusion; implies --neuron lif)"),
        ("--spike-budget RATIO", SPAN, None, "as --spiking, with this budget: the spikes' predicted latent noise "
         "(Poisson count) over the target's, at the verifier's lag"),
        ("--spike-drift-cap ERR", SPAN, None, "largest validation drift error the spiking lambda may accept for "
         "smaller decoders (default 0.08)"),
        ("--param NAME=VALUE", APPEND, None, "override an SDE parameter"), OUT_MODEL, FORCE, QUIET, THREADS]),
    "convert": ("refit a tanh model with LIF neurons (for spiking), keeping its tuning", [
        ("model", str, None, "a fitted model (.ddm)"), ("--neuron", ("lif",), "lif", "neuron model (lif)"), *LIF,
        ("--steps", _seed, 200, "gradient refinement steps of the refit"),
        ("--seed", _seed, None, "default: the model's own fit seed"), OUT_MODEL, FORCE, QUIET, THREADS]),
    "calibrate": ("calibrate a LIF model's spiking network in the loop (cancel its measured drift error)", [
        ("model", str, None, "a LIF model (.ddm, from fit --neuron lif or convert)"),
        ("--backend", str, "torch", "spiking simulator of the calibration runs: torch (default), brian2, brian2-cpp; "
         "use the one the model will run on (the correction is specific to it)"),
        ("--rounds", _seed, 6, "most simulate-measure-refit rounds (default 6; 0 with --foci: only the foci "
         "calibration)"),
        ("--trials", COUNT, 128, "short runs per round (default 128)"),
        ("--duration", SPAN, 1.0, "SDE time units per run (default 1)"),
        ("--damping", float, 1.0, "share of each measured error cancelled (0-1]"),
        ("--noise", ("none", "remainder"), "none", "noise of the calibration runs. none (default): the noise-free "
         "drift, windowed estimator (deterministic targets). remainder: the model's noise on; drift and diffusion "
         "measured at the verifier's lag against the target propagated from the same states, and both corrected "
         "(stochastic targets: the noisy network's drift differs from its noise-free one)"),
        ("--near-fixed-points SHARE", float, 0.0, "share of the runs started near the target's fixed points instead "
         "of on its attractor (chaotic targets: the holes around unstable fixed points, where a spiking Lorenz "
         "collapses, are otherwise never measured; default 0)"),
        ("--foci", FLAG, None, "then make runs started near each unstable focus of the target (a fixed point with a "
         "growing spiral, e.g. Lorenz's C+-) leave it no later than the target's, raising the spiral's growth there "
         "where they do not (a spiking Lorenz otherwise can collapse there)"),
        ("--foci-trials", COUNT, 8, "runs per focus and step (default 8)"),
        ("--input", str, None, "constant input of the calibration runs, NAME=VALUE (';' between inputs; default 0): "
         "calibrate at the input the network will run at"), SEED0, OUT_MODEL, FORCE, QUIET, THREADS]),
    "simulate": ("simulate a model and write a trajectory", [
        ("model", str, None, "a fitted model (.ddm)"),
        ("--backend", str, "torch", "torch (default), target, or an installed plug-in (listed below)"),
        ("--mode", str, "rate", "rate (default) or spiking where the backend supports it"),
        ("--duration", SPAN, 60.0, "SDE time units (default 60)"), ("--trials", COUNT, 1, "trials (default 1)"),
        ("--seed", _seed, 0, "noise seed (default 0: repeated runs are identical unless you change it)"),
        ("--input", str, None, "inputs: NAME=VALUE or NAME=T0:V0,T1:V1 (steps in SDE time); ';' between inputs"),
        ("--no-noise", FLAG, None, "simulate the noise-free network"),
        ("--coupling", ("factored", "dense"), None, "recurrent coupling: factored N->d->N or dense W (default: torch "
         "factored; Brian2 dense up to 128 neurons, else factored)"),
        ("--spikes", FLAG, None, "with --mode spiking: store the spike times in the trajectory (spikes_t, spikes_i)"),
        ("--figure", str, None, "PNG to write: trial 0's latent, under its spike raster with --spikes"),
        ("-o,--output", str, REQUIRED, "trajectory file to write (.npz)"), FORCE, QUIET, THREADS]),
    "export": ("write the network in another simulator's format (installed plug-ins)", [
        ("model", str, None, "a fitted model (.ddm)"),
        ("--format", str, REQUIRED, "brian2-cpp, brian2-cuda, or another installed format (listed below)"),
        ("--mode", str, "rate", "rate (default) or spiking where the format supports it"),
        ("--trials", COUNT, None, "independent copies side by side (default 1)"),
        ("--duration", SPAN, None, "SDE time units: the default run (and input buffer) length; fixed for "
         "brian2-cuda (default 60)"),
        ("--seed", _seed, None, "seed baked into formats that cannot take one per run (default 0)"),
        ("--no-noise", FLAG, None, "export the noise-free network"),
        ("--coupling", ("factored", "dense"), None, "recurrent coupling (default by size)"),
        ("--core-size", int, None, "graph formats: partition the neurons onto cores of this size"),
        ("--preset", str, None, "graph formats: partition for a chip (loihi, loihi2, xylo, spinnaker)"),
        ("-o,--output", str, REQUIRED, "folder to write"),
        ("--force", FLAG, None, "replace an existing output folder"), QUIET, THREADS]),
    "verify": ("check a trajectory against the model's target SDE", [
        ("model", str, None, "the model (.ddm) the trajectory is a run of"),
        ("trajectory", str, None, "the trajectory file (.npz) to check"),
        ("--report", str, None, "folder for report.json and figures"),
        ("--delta", float, None, "lag for drift/diffusion (SDE units; default automatic)"),
        ("--seed", _seed, 0, "seed of the reference runs and propagations (cells and lag depend on the trajectory "
         "only; a verdict within its own noise is marked marginal)"),
        ("--drift-tolerance", SPAN, None, "deterministic targets (noise 0) only: relative drift error accepted "
         "(default 0.03)"), ("--force", FLAG, None, "overwrite the report files"), THREADS]),
    "constrain": ("make the weights obey hardware limits (bits, fan-in, sparsity, Dale) and refit", [
        ("model", str, None, "a fitted model (.ddm)"),
        ("--bits", int, None, "weight bits on one shared scale (2..32)"),
        ("--fan-in", int, None, "most nonzero incoming weights per neuron"),
        ("--sparsity", float, None, "fraction of the N x N weights kept, in (0, 1]"),
        ("--dale", FLAG, None, "one sign per neuron's outgoing weights (Dale's law)"),
        ("--preset", str, None, "a chip's published limits (loihi, loihi2, xylo, spinnaker); --bits/--fan-in "
         "override its values"),
        ("--round-only", FLAG, None, "round and mask only, no quantisation-aware refit"),
        ("--steps", _seed, 300, "gradient steps of the refit (default 300; 0: compensated rounding only)"),
        SEED0, OUT_MODEL, FORCE, QUIET, THREADS]),
    "analyze": ("decompose a model: W_s/W_a, reversible/irreversible drift, entropy production", [
        ("model", str, None, "a fitted model (.ddm)"),
        ("--report DIR", str, None, "folder for analysis.json and PNG figures"),
        ("--json", FLAG, None, "print the results as JSON instead of the table"),
        ("--duration", SPAN, 100.0, "SDE time units per trial of each run (default 100)"),
        ("--trials", COUNT, 16, "trials per run (default 16, at least 2)"), SEED0,
        ("--symmetric", FLAG, None, "also fit a network with symmetric W (same N, neuron, seed) and compare"),
        ("--switching", FLAG, None, "success rate of cue pulses (input-driven models)"),
        ("--force", FLAG, None, "overwrite files in the report folder"), QUIET, THREADS]),
    "demo": ("the main job: fit Lorenz, simulate, compare, verify, write figures", [
        ("--out", str, "ddm_demo", "output folder (default ./ddm_demo); each stage's files are written there as it "
         "ends, and kept if interrupted"),
        ("--force", FLAG, None, "replace the demo files in an existing folder"),
        ("--resume", FLAG, None, "reuse the folder's model.ddm (from an interrupted demo)"),
        ("-n", COUNT, 512, "neurons (default 512)"),
        ("--duration", SPAN, 60.0, "SDE time units per trial (default 60)"),
        ("--trials", COUNT, 16, "trials (default 16)"),
        ("--quick", FLAG, None, "small and short, for a smoke test"), QUIET, THREADS]),
}
#: The plug-in kind whose names and declared options ``--help`` lists, per command.
PLUGIN_HELP = {"simulate": "simulator", "export": "format"}


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract (one line on stderr, exit status 2) and plug-in help."""

    plugin_kind = None

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self):
        text = super().format_help()
        if self.plugin_kind is None:
            return text
        from .. import plugins

        lines = [f"installed {self.plugin_kind}s (modes; options declared, as flags where this command has them):"]
        for name, p in plugins.plugins(self.plugin_kind).items():
            lines.append(f"  {name} ({', '.join(p.modes)}): {p.help}")
            lines += [f"      {key}: {opt.help}" for key, opt in p.options.items()]
        return text + "\n" + "\n".join(lines) + "\n"


def _add(parser, spec, kind, default, text):
    names, _, metavar = spec.partition(" ")
    kw = {"help": text, **({"metavar": metavar} if metavar else {})}
    if kind in (FLAG, APPEND):
        kw["action"] = "store_true" if kind == FLAG else "append"
    elif isinstance(kind, tuple):
        kw["choices"] = kind
    elif kind is not str:
        kw["type"] = kind
    kw.update({"required": True} if default == REQUIRED else {} if default is None else {"default": default})
    parser.add_argument(*names.split(","), **kw)


def build_parser():
    """The argument parser of ``ddm-neuro`` (exposed for documentation and tests)."""
    p = Parser(prog="ddm-neuro", description="Drift-diffusion matching: SDE -> recurrent network.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (text, rows) in COMMANDS.items():
        s = sub.add_parser(name, help=text, description=text)
        s.plugin_kind = PLUGIN_HELP.get(name)
        for row in rows:
            _add(s, *row)
        if name == "analyze":
            g = s.add_mutually_exclusive_group()
            g.add_argument("--currents", dest="currents", action="store_true", default=None,
                           help="probability currents and entropy production (default: on for 2 or more variables)")
            g.add_argument("--no-currents", dest="currents", action="store_false", help="skip them")
        s.set_defaults(func=getattr(commands, f"cmd_{name}"))
    return p
