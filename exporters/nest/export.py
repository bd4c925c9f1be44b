"""``ddm-neuro export MODEL --format nest -o DIR``: a self-contained NEST project.

::

    DIR/
      README.md     what is here, how to run it (threads, MPI), units and conventions
      model.npz     the network's arrays and settings (numpy .npz, no pickle)
      export.json   the build: step, recording interval, coupling, defaults of run.py
      network.py    the PyNEST script (builds, runs and reads back the network; rate mode)
      spiking.py    the spiking (LIF) network (spiking mode; uses network.py's kernel set-up)
      spec.py       reads model.npz and computes start states (numpy only)
      trajectory_file.py  checks and writes the output trajectory (numpy only)
      run.py        python run.py --seed S --duration T -o traj.npz (unchanged under mpirun)

The folder is written under a temporary name and renamed into place only when
complete; an existing folder is replaced only with ``force``. Everything
the project cannot carry is refused before anything is written.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_directory
from ddm_neuro.run.plan import check_positive, network_steps
from ddm_neuro.threads import check_threads

from .. import spec as _spec
from .. import trajectory_file as _trajectory_file
from ..spiking_options import spiking_fano, spiking_noise
from . import network as _network
from . import runner as _runner
from . import spiking as _spiking
from .network import FORMAT, VERSION, NetworkError, check_rate, leak_tau, step_ms
from .spiking import check_spiking


def export(model, output, *, mode=None, trials=1, duration=60.0, dt=None, record_dt=None, coupling="factored",
           threads=1, noise=True, fano="regular", force=False, progress=True):
    """Write the NEST project of ``model`` to the folder ``output``; return its path.

    Parameters
    ----------
    model : LatentRNN
        A tanh model (rate mode) or a LIF model (spiking mode).
    output : str or Path
        The project folder (must not exist unless ``force``).
    mode : {"rate", "spiking"}, optional
        Rate for tanh models; LIF models are always exported as spiking networks (the mode is implied).
    trials, duration, threads : int, float, int
        ``run.py``'s defaults (each also a ``run.py`` option).
    dt, record_dt : float, optional
        Integration step and recording interval, SDE units (default: the model's); fixed by the export.
    coupling : {"factored", "dense"}
    noise : bool or str
        False: the project runs the noise-free network (spiking: "remainder" (True), "none" (False) or "model").
    fano : "regular" or numbers
        Spiking: the spikes' Fano factor counted in the noise remainder.
    force : bool
    progress : bool
        Print a line when done.

    Raises
    ------
    DDMError
        For anything the NEST network cannot carry, or bad settings (nothing is written).
    """
    if model.neuron.name == "lif":   # NEST runs LIF models only as spiking networks: the mode is implied
        mode = "spiking"
    mode = mode or "rate"
    if mode not in ("rate", "spiking"):
        raise DDMError(f"--format nest: mode must be 'rate' or 'spiking', got {mode!r}")
    if model.w_perp is not None or model.meta.get("constrained") or model.meta.get("hardware"):
        raise DDMError("--format nest: this model has hardware-constrained (quantised) weights, which are not of "
                       "the rank-d form E K the NEST network carries; export the unconstrained model")
    check_positive(dt=dt, record_dt=record_dt, duration=duration)
    threads = check_threads(threads)
    if int(trials) != trials or trials < 1:
        raise DDMError(f"trials must be a whole number >= 1, got {trials}")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DDMError(f"{output}: exists and is not a folder; a nest project is a folder (choose another name)")
    arrays, info = _spec.model_spec(model)
    dt0, rec0 = network_steps(model)
    if mode == "spiking":
        dt0 = _spiking.STEP_SECONDS / model.time_scale
    dt, record_dt = dt or dt0, record_dt or max(rec0, dt or dt0)
    record_every = max(1, math.ceil(record_dt / dt - 1e-9))
    dt = record_dt / record_every
    try:
        if mode == "spiking":
            noise = spiking_noise(noise)
            check_spiking(arrays, info, coupling=coupling, noise=noise, h_ms=step_ms(dt, info))
        else:
            check_rate(arrays, info, coupling=coupling, noise=bool(noise), has_input=model.n_inputs > 0)
            leak_tau(info, step_ms(dt, info), coupling)
    except NetworkError as exc:
        raise DDMError(f"--format nest: {exc}") from None
    build = {"trials": int(trials), "duration": float(duration), "dt": dt, "record_every": record_every,
             "threads": threads, "coupling": coupling, "noise": noise if mode == "spiking" else bool(noise)}
    if mode == "spiking":
        build["fano"] = spiking_fano(model, fano)
    with atomic_directory(output, force=force) as tmp:
        _spec.save_spec(tmp / "model.npz", arrays, info)
        (tmp / "export.json").write_text(json.dumps({
            "format": FORMAT, "version": VERSION, "mode": mode, "build": build, "model_id": info["model_id"],
            "system": info["sde_name"], "variables": info["variables"], "inputs": info["inputs"]}, indent=1))
        shutil.copyfile(_network.__file__, tmp / "network.py")
        if mode == "spiking":
            shutil.copyfile(_spiking.__file__, tmp / "spiking.py")
        shutil.copyfile(_runner.__file__, tmp / "run.py")
        shutil.copyfile(_spec.__file__, tmp / "spec.py")
        shutil.copyfile(_trajectory_file.__file__, tmp / "trajectory_file.py")
        (tmp / "README.md").write_text(readme(info, build, arrays["encoders"].shape, mode))
    if progress:
        print(f"export nest: wrote {output} ({mode}, N = {model.n_neurons}, {coupling} coupling; python "
              f"{output}/run.py --seed 1 -o traj.npz)")
    return output


def readme(info, build, shape, mode="rate"):
    """The project's README.md."""
    N, d = shape
    name = info.get("sde_name") or "model"
    h_ms = step_ms(build["dt"], info)
    spiking = mode == "spiking"
    stepped = spiking and (build["coupling"] == "factored" or build["noise"] != "none")
    if spiking:
        neurons = (f"N = {N} LIF neurons (`iaf_psc_exp_ps`: exact integration, exact spike times), latent dimension "
                   f"d = {d}, {build['coupling']} coupling, noise {build['noise']!r}")
        scheme = [
            "* Neurons: `iaf_psc_exp_ps` with C_m = tau_m, V_th = 1, V_reset = E_L = 0, t_ref = tau_ref, "
            "exponential synapses tau_syn = tau; I_e = bias (+ the start input). d `iaf_psc_delta_ps` units per "
            "trial read the latent q out of the spikes exactly; y = D x = D p + q (+ the noise); z = S y + c.",
            "* Coupling: dense: N^2 synapses W / tau with NEST's minimal delay of one step; factored: Python reads "
            "the latent every step and sets d `dc_generator`s (weights E), the spikes of the three steps before "
            "the current arrives replaced by their expectation. See `spiking.py`.",
            "* Noise (Itô): drawn in Python every step from the state before it, filtered with tau and sent "
            "through the same generators.",
        ]
        mpi = ("* Under MPI every rank writes its read-out samples beside the output (hidden `.ddm_nest_rank*.npz`) "
               "and rank 0 merges them: the output folder must be shared by the ranks."
               + (" This build is driven from Python step by step: under MPI the ranks also share the read-out "
                  "every step, which needs `mpi4py` (`pip install mpi4py`)." if stepped else ""))
    else:
        neurons = f"N = {N} tanh rate neurons, latent dimension d = {d}, {build['coupling']} coupling"
        scheme = [
            "* Neurons: `lin_rate_ipn` (x, with mu = bias); `rate_transformer_tanh` relays carry K tanh(x) "
            "(factored coupling; dense: `tanh_rate_ipn` with W = E K); `rate_transformer_lin` units read out y = D x; "
            "z = S y + c.",
            "* NEST integrates rate neurons with exponential Euler; the neurons' time constant is set so that the "
            "latent moves as the Euler step of the model (the relays' one-step delay included). See `network.py`.",
            "* Noise (Itô): d white-noise units carry the latent noise exactly. Activity-dependent noise is driven "
            "from Python step by step (one process).",
        ]
        mpi = ("* Under MPI every rank writes its read-out samples beside the output (hidden `.ddm_nest_rank*.npz`) "
               "and rank 0 merges them: the output folder must be shared by the ranks.")
    return "\n".join([
        f"# {name}: a ddm_neuro network for NEST ({mode} mode)",
        "",
        f"{neurons}. Exported by ddm_neuro (model {info.get('model_id')}). Needs NEST (3.8 or newer) and numpy only.",
        "",
        "## Run",
        "",
        "```",
        "python run.py --seed 1 --duration 60 -o traj.npz               # one process, threads: --threads K",
        "python run.py --seed 1 --trials 16 --threads 2 -o traj.npz",
        "mpirun -np 2 python run.py --seed 1 -o traj.npz                 # an MPI-enabled NEST",
        "ddm-neuro verify MODEL.ddm traj.npz                             # where ddm_neuro is installed",
        "```",
        "",
        "Options: `--z0` (start state, comma-separated; default drawn from the fitted region with the seed), "
        "`--input` (constant input) or `--input-file` (.npy, steps x inputs, on the integration grid), "
        "`--no-noise`, `--force`. Bad input: one line `error: ...`, exit status 2, nothing written.",
        "",
        "The output holds `t` and `z` (trials, samples, d) in SDE time units and coordinates, `dt` and `meta` "
        "(JSON), ddm_neuro's trajectory format; it is written by rank 0, atomically.",
        "",
        "## Units and conventions",
        "",
        f"* One SDE time unit is T = {info['time_scale']:.6g} s of network time; NEST counts ms. The integration "
        f"step is {build['dt']:.6g} SDE units = {h_ms:.6g} ms; a sample every {build['record_every']} steps.",
        *scheme,
        "* Seeds reproduce a run for the same number of threads x MPI ranks (NEST draws one stream per virtual "
        "process).",
        mpi,
        "",
    ])
