"""``ddm-neuro export --format brian2-cpp | brian2-cuda``: a self-contained Brian2 project.

The project folder holds everything needed to rebuild and run the network with
only Brian2 and numpy installed (no ddm_neuro)::

    DIR/
      README.md      what is here, how to run and rebuild it, units and conventions
      model.npz      the network's arrays and settings (numpy .npz, no pickle)
      export.json    how the project was built (format, device, trials, dt, ...)
      network.py     the Brian2 script: builds the network from model.npz; `python network.py` regenerates code/
      run.py         runs the compiled code and writes a ddm_neuro trajectory (.npz)
      processes.py   child processes and SIGTERM for network.py and run.py (standard library only)
      spec.py        reads model.npz and computes start states (numpy only)
      trajectory_file.py  checks and writes the output trajectory (numpy only)
      code/          the generated C++ (brian2-cpp: compiled) or CUDA (brian2-cuda: generated, compile on a GPU machine)

The folder is written under a temporary name and renamed into place only when
everything succeeded; a compiler failure keeps the generated project in
``DIR.failed-build`` for inspection and leaves no ``DIR``. An interruption
(Ctrl-C, or SIGTERM, raised as :class:`KeyboardInterrupt` during the export)
ends ``make`` and its compilers and removes the temporary folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.progress import ticking
from ddm_neuro.run.plan import check_positive, spiking_dt
from ddm_neuro.threads import check_threads
from ddm_neuro.fileio import atomic_directory

from . import network as _network
from . import code_patches as _code_patches
from . import processes as _processes
from . import runner as _runner
from .. import spec as _spec
from .. import trajectory_file as _trajectory_file
from .network import CompileError, NetworkError, build_project, save_spec
from .processes import terminate_as_interrupt
from .rate import choose_coupling, model_spec, spiking_fano, spiking_noise
from .standalone import fixed_grid, input_buffer, snap

FORMATS = {"brian2-cpp": "cpp_standalone", "brian2-cuda": "cuda_standalone"}

#: Brian2CUDA preferences that let it generate code without a GPU: no GPU or nvcc detection,
#: a target GPU (H100: compute capability 9.0) and CUDA 13, whose nvcc refuses Brian2CUDA's
#: default ``-std=c++11`` (nvcc keeps the last ``-std``; the host compiler's flags end in it too).
CUDA_CODEGEN_PREFS = {
    "devices.cuda_standalone.cuda_backend.detect_gpus": False,
    "devices.cuda_standalone.cuda_backend.gpu_id": 0,
    "devices.cuda_standalone.cuda_backend.compute_capability": 9.0,
    "devices.cuda_standalone.cuda_backend.cuda_runtime_version": 13.0,
    "devices.cuda_standalone.cuda_backend.detect_cuda": False,
    "devices.cuda_standalone.cuda_backend.extra_compile_args_nvcc": ["-w", "-use_fast_math", "-std=c++17"],
    "codegen.cpp.extra_compile_args_gcc": ["-w", "-O3", "-ffast-math", "-fno-finite-math-only", "-std=c++17"],
}


def _cuda_path():
    """CUDA root for the generated makefile: the local nvcc's, else /usr/local/cuda."""
    nvcc = shutil.which("nvcc")
    return str(Path(nvcc).resolve().parent.parent) if nvcc else "/usr/local/cuda"


def export(model, output, *, format="brian2-cpp", mode="rate", trials=1, duration=60.0, seed=0, dt=None,
           record_dt=None, coupling=None, noise=True, force=False, progress=True, cuda_prefs=None, fano="regular",
           record_spikes=True, threads=1):
    """Write a Brian2 standalone project for ``model`` to the folder ``output``.

    Parameters
    ----------
    model : LatentRNN
    output : str or Path
        Project folder; must not exist unless ``force``.
    format : {"brian2-cpp", "brian2-cuda"}
    mode : {"rate", "spiking"}
        ``"spiking"``: the LIF network (:func:`exporters.brian2.network.build_spiking_network`;
        ``noise`` True/"remainder", False/"none" or "model"; ``fano`` the spikes'
        Fano factor counted in "remainder"; ``record_spikes`` adds spikes to the trajectory).
    trials : int
        Independent copies simulated side by side (fixed by the build).
    duration : float
        SDE time units. brian2-cpp: the default run length and the length of
        the input buffer (runs may be shorter or, without inputs, longer);
        brian2-cuda: the simulated length (fixed by the generated code).
    seed : int
        brian2-cuda: the random seed baked into the code (brian2-cpp takes it per run).
    dt, record_dt, coupling, noise
        As for the simulators (coupling default: dense for small N, else factored).
    cuda_prefs : dict, optional
        Brian2 preferences for Brian2CUDA, added to :data:`CUDA_CODEGEN_PREFS`.
    threads : int
        brian2-cpp: OpenMP threads of the compiled binary, fixed by the build
        (1, the default: no OpenMP, the serial code; K > 1: K threads, each
        with its own random stream, so a seed gives other noise than with 1).
        ``python network.py`` rebuilds with ``export.json``'s count.

    Returns
    -------
    Path
        The project folder.
    """
    if format not in FORMATS:
        raise DDMError(f"unknown export format {format!r} (brian2 formats: {', '.join(FORMATS)})")
    if mode not in ("rate", "spiking"):
        raise DDMError(f"export format {format!r} does not support mode {mode!r} (supports: rate, spiking)")
    coordinated = mode == "spiking" and bool((model.meta or {}).get("coordinated"))
    if coordinated:
        given = [n for n, v in (("dt", dt), ("coupling", coupling)) if v is not None]
        if given:
            raise DDMError(f"a spike-coordinated network's step is set by its N and rate, its coupling is its "
                           f"rank-d inhibition: leave out {', '.join(given)}")
    elif mode == "spiking" and model.neuron.name != "lif":
        raise DDMError(f"spiking mode needs LIF neurons (this model has {model.neuron.name!r}; "
                       "fit with --neuron lif)")
    check_positive(dt=dt, record_dt=record_dt, duration=duration)
    threads = check_threads(1 if threads is None else threads)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DDMError(f"{output}: exists and is not a folder; a {format} project is a folder (choose another name)")
    device = FORMATS[format]
    cuda = device == "cuda_standalone"
    if cuda and threads != 1:
        raise DDMError("threads: a brian2-cuda project runs on the GPU; OpenMP threads are for brian2-cpp")
    if cuda:
        try:
            import brian2cuda  # noqa: F401
        except ImportError as exc:
            raise DDMError("--format brian2-cuda needs Brian2CUDA (GPL-3.0, optional): "
                           f"pip install 'ddm_neuro[cuda]' ({exc})") from None
    elif shutil.which("make") is None:
        raise DDMError("--format brian2-cpp needs 'make' and a C++ compiler (g++ or clang++) on PATH")
    if coordinated:   # only brian2-cpp carries them (ddm_neuro.plugins refuses the others)
        return _export_coordinated(model, output, trials=trials, duration=duration, record_dt=record_dt,
                                   noise=noise, force=force, progress=progress, record_spikes=record_spikes,
                                   threads=threads)
    spiking = {}
    if mode == "spiking":
        noise, dt, coupling = spiking_noise(noise), dt or spiking_dt(model), coupling or "factored"
        spiking = {"mode": "spiking", "fano": spiking_fano(model, fano), "record_spikes": bool(record_spikes)}
    else:
        coupling = choose_coupling(model, coupling, noise)
        noise = bool(noise)
    dt, record_dt = fixed_grid(model, dt, record_dt)   # as the brian2-cpp back end's builds
    n_steps = int(round(duration / record_dt)) * int(round(record_dt / dt))
    arrays, info = model_spec(model)
    build = {"trials": int(trials), "dt": dt, "record_dt": record_dt, "coupling": coupling, "noise": noise, **spiking,
             "input_steps": input_buffer(n_steps) if model.n_inputs else 0,
             "duration": float(duration), "seed": int(seed) if cuda else None,
             **({} if cuda else {"threads": threads})}
    prefs = {**CUDA_CODEGEN_PREFS, "devices.cuda_standalone.cuda_backend.cuda_path": _cuda_path(),
             **(cuda_prefs or {})} if cuda else {}
    failed = output.with_name(output.name + ".failed-build")
    with terminate_as_interrupt(), atomic_directory(output, force=force) as tmp:
        save_spec(tmp / "model.npz", arrays, info)
        (tmp / "export.json").write_text(json.dumps({
            "format": format, "device": device, "mode": mode, "build": build, "model_id": info["model_id"],
            "system": info["sde_name"], "variables": info["variables"], "inputs": info["inputs"],
            "device_prefs": prefs or None}, indent=1))
        shutil.copyfile(_network.__file__, tmp / "network.py")
        shutil.copyfile(_runner.__file__, tmp / "run.py")
        shutil.copyfile(_processes.__file__, tmp / "processes.py")
        shutil.copyfile(_code_patches.__file__, tmp / "code_patches.py")
        shutil.copyfile(_spec.__file__, tmp / "spec.py")
        shutil.copyfile(_trajectory_file.__file__, tmp / "trajectory_file.py")
        if progress:
            print(f"export {format}: generating {'CUDA' if cuda else 'C++'} for N = {model.n_neurons}, "
                  f"{trials} trial(s), {coupling} coupling ...", flush=True)
        try:
            with ticking(f"export {format}: generating" + ("" if cuda else " and compiling"), progress):
                manifest = _build(arrays, info, tmp / "code", build, device, prefs)
        except CompileError as exc:
            _keep_failed(tmp, failed, exc)
        except NetworkError as exc:
            raise DDMError(f"export {format}: {exc}") from None
        (tmp / "README.md").write_text(_readme(format, model, build, manifest))
    if progress:
        note = "compiled" if not cuda else "generated (compile and run it on a machine with a GPU)"
        print(f"wrote {output}/: Brian2 {device} project, {note}")
    return output


def _export_coordinated(model, output, *, trials, duration, record_dt, noise, force, progress, record_spikes,
                        threads):
    """The brian2-cpp project of a spike-coordinated model (``coordinated_network.py``); see :func:`export`, which
    has checked the output, the thread count, the duration and the compiler."""
    from ddm_neuro.run.plan import network_steps

    from . import coordinated_network as _coordinated_network
    from .coordinated import coordinated_spec

    if noise not in (True, False, "model", "none"):
        raise DDMError(f"noise: a spike-coordinated network carries its basis's noise (True or 'model') or none "
                       f"(False or 'none'), got {noise!r}")
    noisy = noise in (True, "model")
    record_dt = snap(record_dt or network_steps(model)[1])
    n_rec = int(round(duration / record_dt)) + 1
    arrays, info = model_spec(model)
    carr, cinfo = coordinated_spec(model)
    build = {"network": "coordinated", "mode": "spiking", "trials": int(trials), "record_dt": record_dt,
             "noise": "model" if noisy else "none", "record_spikes": bool(record_spikes),
             "input_steps": input_buffer(n_rec) if model.n_inputs else 0, "duration": float(duration),
             "threads": threads, "coupling": "coordinated"}
    failed = output.with_name(output.name + ".failed-build")
    with terminate_as_interrupt(), atomic_directory(output, force=force) as tmp:
        save_spec(tmp / "model.npz", arrays, info)
        _coordinated_network.save_coordinated(tmp / "coordinated.npz", carr, cinfo)
        (tmp / "export.json").write_text(json.dumps({
            "format": "brian2-cpp", "device": "cpp_standalone", "mode": "spiking", "build": build,
            "model_id": info["model_id"], "system": info["sde_name"], "variables": info["variables"],
            "inputs": info["inputs"], "device_prefs": None}, indent=1))
        for module, name in ((_network, "network.py"), (_coordinated_network, "coordinated_network.py"),
                             (_runner, "run.py"), (_processes, "processes.py"), (_code_patches, "code_patches.py"),
                             (_spec, "spec.py"), (_trajectory_file, "trajectory_file.py")):
            shutil.copyfile(module.__file__, tmp / name)
        if progress:
            print(f"export brian2-cpp: generating C++ for a spike-coordinated network of {cinfo['n_neurons']} neurons "
                  f"(basis of {model.n_neurons} tanh units), {trials} trial(s) ...", flush=True)
        try:
            with ticking("export brian2-cpp: generating and compiling", progress):
                manifest = _coordinated_network.build_coordinated_project(
                    carr, cinfo, tmp / "code", trials=build["trials"], record_dt=record_dt, noise=noisy,
                    record_spikes=build["record_spikes"], input_steps=max(1, build["input_steps"]), threads=threads)
        except CompileError as exc:
            _keep_failed(tmp, failed, exc)
        build["dt"] = manifest["dt"]
        (tmp / "README.md").write_text(_readme("brian2-cpp", model, build, manifest))
    if progress:
        print(f"wrote {output}/: Brian2 cpp_standalone project (spike-coordinated network), compiled")
    return output


def _keep_failed(tmp, failed, exc):
    """A build that did not compile: its project copied to ``failed`` for inspection; raises the one-line error."""
    if failed.exists():
        shutil.rmtree(failed)
    shutil.copytree(tmp, failed)
    raise DDMError(str(exc).replace(str(tmp), str(failed))
                   + f"\n(the generated project is kept for inspection in {failed})") from None


def _build(arrays, info, code_dir, build, device, prefs):
    opts = {k: build[k] for k in ("trials", "dt", "record_dt", "coupling", "noise", "input_steps", "mode", "fano",
                                  "record_spikes", "threads") if k in build}
    return build_project(arrays, info, code_dir, device=device, compile=device == "cpp_standalone",
                         seed=build["seed"], duration=build["duration"], prefs=prefs, **opts)


def _readme(format, model, build, manifest):
    if build.get("network") == "coordinated":
        return _readme_coordinated(model, build, manifest)
    cuda = format == "brian2-cuda"
    lines = [
        f"# {model.meta.get('sde_name') or 'ddm_neuro'} network: Brian2 {manifest['device']} project",
        "",
        f"Exported by ddm_neuro from model `{model.meta.get('model_id')}`: a "
        f"{'spiking (LIF, exponential synapses)' if build.get('mode') == 'spiking' else 'rate'} network of "
        f"N = {model.n_neurons} {model.neuron.name} neurons (tau = {model.tau * 1e3:g} ms) whose "
        f"{model.dim}-dimensional read-out follows the SDE over ({', '.join(model.variables)})"
        + (f" with inputs ({', '.join(model.inputs)})" if model.n_inputs else "") + ".",
        f"{build['trials']} independent trial(s) run side by side; {build['coupling']} coupling; "
        f"noise: {build['noise'] if isinstance(build['noise'], str) else ('on' if build['noise'] else 'off')}"
        + (f"; {build['threads']} OpenMP threads (fixed by the build)." if build.get("threads", 1) > 1 else "."),
        "",
        "Needs only Python with `brian2` and `numpy<2.4`"
        + (" plus Brian2CUDA and a CUDA GPU." if cuda else " and a C++ compiler (to rebuild)."),
        "",
        "## Files",
        "",
        "* `model.npz`: the network's arrays and settings (`numpy.load(..., allow_pickle=False)`).",
        "* `network.py`: the Brian2 script; `python network.py` regenerates `code/`"
        + (" and compiles it." if not cuda else " (`--no-compile` to generate only)."),
        "* `run.py`: runs the compiled code and writes the latent trajectory (`t`, `z`, `dt`, `meta`) as `.npz`.",
        "* `processes.py`: runs `make` and the binary in their own process group, so that Ctrl-C or SIGTERM "
        "ends them all (used by `network.py` and `run.py`).",
        "* `spec.py`: reads `model.npz` and computes the start states (numpy only).",
        "* `trajectory_file.py`: checks the output before a run and writes the trajectory atomically.",
        "* `code/`: the generated " + ("CUDA project (not compiled here)." if cuda else "C++ project, compiled (`code/main`)."),
        "* `export.json`, `code/build.json`: how it was built and where the results land.",
        "",
        "## Run",
        "",
        "```",
    ]
    if cuda:
        lines += ["python network.py          # on the GPU machine: generate and compile with nvcc",
                  "python run.py -o trajectory.npz",
                  "```", "",
                  f"The CUDA code simulates {build['duration']:g} SDE time units with seed {build['seed']}; "
                  "both are fixed in the generated code (regenerate with `python network.py` after editing "
                  "`export.json`)."]
    else:
        lines += ["python run.py --seed 1 --duration 60 -o trajectory.npz",
                  "python run.py --seed 2 --duration 10 --z0 " + ",".join(["0.5"] * model.dim) + " -o short.npz"]
        if model.n_inputs:
            lines += ["python run.py --seed 1 --duration 20 --input " + ",".join(["1.0"] * model.n_inputs)
                      + " -o cued.npz"]
        lines += ["```", "",
                  "Seed, duration, start state and input are passed to the compiled binary on its command line "
                  "(`--seed=S`, `NAME=VALUE` assignments, Brian2's `run_args` mechanism): nothing is recompiled. "
                  "The binary is compiled for a very long run and stops at `ddm_control.t_stop`."
                  + (f" Inputs can cover up to {build['input_steps']} integration steps." if model.n_inputs else "")]
    lines += [
        "",
        "## Units and conventions",
        "",
        f"* One SDE time unit is T = {model.time_scale:g} s of network time; integration step "
        f"dt = {build['dt']:g} SDE units = {build['dt'] * model.time_scale * 1e3:g} ms; read-out recorded every "
        f"{build['record_dt']:g} SDE units.",
        "* The SDE is Itô. The network's private noise sits at the neurons' outputs and is drawn once per step "
        "(`randn()/sqrt(dt)`, amplitude at the step's start), integrated with Euler: Itô as well, no "
        "Stratonovich correction needed.",
        "* The latent state is `z = S * (D x) + c` (`readout`, `scale`, `center` in model.npz); `run.py` writes z.",
        "",
        "Verify a trajectory against the target SDE with ddm_neuro: "
        "`ddm-neuro verify MODEL.ddm trajectory.npz --report report/`.",
        "",
    ]
    return "\n".join(lines)


def _readme_coordinated(model, build, manifest):
    """README.md of a spike-coordinated network's project."""
    cfg = model.meta["coordinated"]
    m = manifest
    lines = [
        f"# {model.meta.get('sde_name') or 'ddm_neuro'} network: Brian2 cpp_standalone project (spike-coordinated)",
        "",
        f"Exported by ddm_neuro from model `{model.meta.get('model_id')}`: a spike-coordinated network of "
        f"N = {cfg['n_neurons']} neurons (decoders of norm {cfg['delta']:.4g} in whitened latent units, tuned to "
        f"{cfg['rate_hz']:g} Hz) around a basis of {model.n_neurons} tanh rate units, whose "
        f"{model.dim}-dimensional read-out follows the SDE over ({', '.join(model.variables)})"
        + (f" with inputs ({', '.join(model.inputs)})" if model.n_inputs else "") + ". "
        "The read-out is the neurons' filtered spikes; a neuron fires only when its spike reduces the read-out's "
        "error (one spike per step, the largest margin first), so the spikes' noise in the read-out does not add up "
        "over neurons.",
        f"{build['trials']} independent trial(s) run side by side; noise: {build['noise']}"
        + (f"; {build['threads']} OpenMP threads (fixed by the build)." if build['threads'] > 1 else "."),
        "",
        "Needs only Python with `brian2` and `numpy<2.4`, and a C++ compiler (to rebuild).",
        "",
        "## Files",
        "",
        "* `model.npz`: the basis model's arrays and settings; `coordinated.npz`: the network's arrays "
        "(`numpy.load(..., allow_pickle=False)`).",
        "* `coordinated_network.py`: the Brian2 network (groups, synapses, two per-trial C++ functions); "
        "`python network.py` regenerates `code/` and compiles it.",
        "* `run.py`: runs the compiled code and writes the latent trajectory (`t`, `z`, `dt`, `meta`) as `.npz`.",
        "* `network.py`, `processes.py`, `code_patches.py`, `spec.py`, `trajectory_file.py`: what those two use.",
        "* `code/`: the generated C++ project, compiled (`code/main`).",
        "* `export.json`, `code/build.json`: how it was built and where the results land.",
        "",
        "## Run",
        "",
        "```",
        "python run.py --seed 1 --duration 60 -o trajectory.npz",
        "python run.py --seed 2 --duration 10 --z0 " + ",".join(["0.5"] * model.dim) + " -o short.npz",
        *(["python run.py --seed 1 --duration 20 --input " + ",".join(["1.0"] * model.n_inputs) + " -o cued.npz"]
          if model.n_inputs else []),
        "```",
        "",
        "Seed, duration, start state and input are arguments of the compiled binary: nothing is recompiled."
        + (f" Inputs are held over each recording interval; `--input-file` takes one row per recording interval, "
           f"up to {build['input_steps']}." if model.n_inputs else ""),
        "",
        "## Units and conventions",
        "",
        f"* One SDE time unit is T = {model.time_scale:g} s of network time; step {m['step_s'] * 1e6:.4g} us "
        f"(about {cfg['rate_hz'] * cfg['n_neurons'] * m['step_s']:.2g} spikes per step and trial); the basis is "
        f"evaluated every {m['hold']} step(s); read-out recorded every {build['record_dt']:g} SDE units.",
        "* The SDE is Ito: the basis's noise (its covariance's Cholesky factor, held with the basis) enters the "
        "read-out's error once per step, at the step's start values.",
        "* The latent state is `z = xh + c` (the trial row's `xh`, `center` in model.npz); `run.py` writes z.",
        "",
        "Verify a trajectory against the target SDE with ddm_neuro: "
        "`ddm-neuro verify MODEL.ddm trajectory.npz --report report/`.",
        "",
    ]
    return "\n".join(lines)


def export_cpp(model, output, **options):
    """``--format brian2-cpp``: :func:`export` with ``format="brian2-cpp"``."""
    return export(model, output, format="brian2-cpp", **options)


def export_cuda(model, output, **options):
    """``--format brian2-cuda``: :func:`export` with ``format="brian2-cuda"``."""
    return export(model, output, format="brian2-cuda", **options)
