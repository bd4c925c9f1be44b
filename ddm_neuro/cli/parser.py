"""The argument parser: a table of option rows per command (flags, type, default, help: :mod:`ddm_neuro.options`).

An operation's own options are declared next to it in the library (``FIT``, ``CALIBRATE``, ``SIMULATE``, ...).
"""
from __future__ import annotations

import argparse

from ..fit.options import CONSTRAIN, CONVERT, FIT
from ..options import COUNT, FLAG, REQUIRED, SEED, SPAN, SWITCH, THREADS, add_arguments
from ..run.options import EXPORT, SIMULATE, plugin_help
from ..spiking.calibration import OPTIONS as CALIBRATE
from ..spiking.pipeline import OPTIONS as CONVERT_ALL
from ..verify.options import OPTIONS as VERIFY
from . import commands

MODEL = ("model", str, None, "a fitted model (.ddm)")
QUIET = ("--quiet", FLAG, None, "no progress bars")
THREAD_COUNT = ("--threads K", THREADS, None, "CPU threads for torch and BLAS (default 1, or $DDM_NEURO_THREADS: one "
                "thread is fastest for small networks and on a shared machine)")


def _writes(what="model file to write (.ddm)", force="overwrite an existing output"):
    return [("-o,--output", str, REQUIRED, what), ("--force", FLAG, None, force), QUIET, THREAD_COUNT]


COMMANDS = {
    "systems": ("list built-in systems", [("--show NAME", str, None, "print a built-in's spec as TOML")]),
    "fit": ("fit a network to an SDE", FIT + _writes()),
    "convert": ("a spiking LIF model that passes verify in a back end, from a model or a system: fit, spike noise, "
                "calibration, verification, in one command", [*CONVERT_ALL, *CONVERT, *_writes()]),
    "calibrate": ("calibrate a LIF model's spiking network in the loop (cancel its measured drift error)",
                  [("model", str, None, "a LIF model (.ddm, from fit --neuron lif or convert)"), *CALIBRATE,
                   *_writes()]),
    "simulate": ("simulate a model and write a trajectory", [
        MODEL, *SIMULATE,
        ("--figure", str, None, "PNG to write: trial 0's latent, under its spike raster with --spikes"),
        *_writes("trajectory file to write (.npz)")]),
    "export": ("write the network in another simulator's format (installed plug-ins)",
               [MODEL, *EXPORT, *_writes("folder to write", "replace an existing output folder")]),
    "verify": ("check a trajectory against the model's target SDE", [
        ("model", str, None, "the model (.ddm) the trajectory is a run of"),
        ("trajectory", str, None, "its trajectory (.npz)"),
        ("--report", str, None, "folder for report.json and figures"),
        *VERIFY, ("--force", FLAG, None, "overwrite the files of an existing report"), THREAD_COUNT]),
    "constrain": ("make the weights obey hardware limits (bits, fan-in, sparsity, Dale) and refit",
                  [MODEL, *CONSTRAIN, *_writes()]),
    "analyze": ("decompose a model: W_s/W_a, reversible/irreversible drift, entropy production", [
        MODEL, ("--report DIR", str, None, "folder for analysis.json and PNG figures"),
        ("--json", FLAG, None, "print the results as JSON instead of the table"),
        ("--duration", SPAN, 100.0, "SDE time units per trial of each run (default 100)"),
        ("--trials", COUNT, 16, "trials per run (default 16, at least 2)"), ("--seed", SEED, 0, "(default 0)"),
        ("--symmetric", FLAG, None, "also fit a network with symmetric W (same N, neuron, seed) and compare"),
        ("--switching", FLAG, None, "success rate of cue pulses (input-driven models)"),
        ("--currents", SWITCH, None, "probability currents and entropy production (--no-currents: skip them; "
         "default: on for 2 or more variables)"),
        ("--force", FLAG, None, "overwrite files in the report folder"), QUIET, THREAD_COUNT]),
    "demo": ("the main job: fit Lorenz, simulate, compare, verify, write figures", [
        ("--out", str, "ddm_demo", "output folder (default ./ddm_demo); each stage's files are written there as it "
         "ends, and kept if interrupted"), ("--force", FLAG, None, "replace the demo files in an existing folder"),
        ("--resume", FLAG, None, "reuse the folder's model.ddm (from an interrupted demo)"),
        ("-n", COUNT, 512, "neurons (default 512)"),
        ("--duration", SPAN, 60.0, "SDE time units per trial (default 60)"),
        ("--trials", COUNT, 16, "trials (default 16)"), ("--quick", FLAG, None, "small and short, for a smoke test"),
        QUIET, THREAD_COUNT]),
}


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract (one line on stderr, exit status 2) and plug-in help."""

    plugin_kind = None  # "simulator" or "format": --help lists those plug-ins and the options they declare

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self):
        extra = f"\n{plugin_help(self.plugin_kind)}\n" if self.plugin_kind else ""
        return super().format_help() + extra


def build_parser():
    """The argument parser of ``ddm-neuro`` (exposed for documentation and tests).

    Returns
    -------
    argparse.ArgumentParser
        One sub-command per entry of :data:`COMMANDS`; each sets ``func``, the ``cmd_<name>`` that runs it.
    """
    p = Parser(prog="ddm-neuro", description="Drift-diffusion matching: SDE -> recurrent network.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (text, rows) in COMMANDS.items():
        s = sub.add_parser(name, help=text)
        s.plugin_kind = {"simulate": "simulator", "export": "format"}.get(name)
        add_arguments(s, rows)
        s.set_defaults(func=getattr(commands, f"cmd_{name}"))
    return p
