"""Brian2 back ends and export for ddm_neuro models (rate mode).

* :mod:`.network` builds the Brian2 network from a plain model spec (pure
  Brian2; it is also the script shipped in an exported project);
* :mod:`.rate` is the ``brian2`` back end (Brian2's runtime device);
* :mod:`.standalone` is the ``brian2-cpp`` back end (generated C++, compiled
  once per network structure and re-run with new seeds, durations and inputs);
* :mod:`.runner` runs a compiled build (numpy only; shipped as ``run.py``);
* :mod:`.export` writes self-contained ``brian2-cpp`` / ``brian2-cuda`` projects.

Declared to the core's plug-in registry (:mod:`ddm_neuro.plugins`) by
:func:`plugins`, the ``ddm_neuro.plugins`` entry point; Brian2 is imported
only when a run or an export starts.
"""


def plugins():
    """Entry point ``brian2`` of ``ddm_neuro.plugins``: the Brian2 simulators and export formats."""
    from ddm_neuro.plugins import Option, Plugin

    coupling = Option(None, "recurrent coupling: factored N->d->N or dense W (default: dense up to 128 neurons "
                            "without shared noise, else factored; spiking: factored)", ("factored", "dense", "none"))
    from ..spiking_options import plugin_options

    spiking = plugin_options()
    common = dict(requires=("brian2",), extra="brian2")
    project = {"trials": Option(1, "independent copies side by side (fixed by the build)"),
               "duration": Option(60.0, "SDE time units: the default run and input-buffer length (brian2-cuda: "
                                        "the simulated length)"),
               "seed": Option(0, "seed baked into brian2-cuda code (brian2-cpp takes one per run)"),
               "dt": Option(None, "integration step, SDE units (default: the simulators')"),
               "record_dt": Option(None, "recording interval, SDE units"),
               "coupling": coupling,
               "noise": Option(True, "False: the noise-free network (spiking: remainder, none or model)"),
               "fano": Option("regular", "spiking: the spikes' Fano factor counted in the noise remainder"),
               "record_spikes": Option(True, "spiking: the project's runs store spike times")}
    return [
        Plugin("brian2", "simulator", ("rate", "spiking"), "exporters.brian2.rate:run",
               {"coupling": coupling, **spiking}, help="Brian2 runtime device (numpy code generation)", **common),
        Plugin("brian2-cpp", "simulator", ("rate", "spiking"), "exporters.brian2.standalone:run",
               {"coupling": coupling, **spiking,
                "cache": Option(None, "folder of compiled builds (default $DDM_NEURO_CACHE or ~/.cache/ddm_neuro)")},
               help="Brian2 cpp_standalone: generated C++, compiled once per network structure (spike-coordinated "
                    "networks: once per run)", coordinated=True, **common),
        Plugin("brian2-cpp", "format", ("rate", "spiking"), "exporters.brian2.export:export_cpp",
               {**project, "threads": Option(1, "OpenMP threads of the generated project (1: no OpenMP)")},
               help="a self-contained Brian2 C++ project (python run.py --seed S ...; spike-coordinated networks "
                    "too)", output="dir", coordinated=True, **common),
        Plugin("brian2-cuda", "format", ("rate", "spiking"), "exporters.brian2.export:export_cuda",
               {**project, "cuda_prefs": Option(None, "Brian2 preferences for Brian2CUDA (Python API)")},
               requires=("brian2",), extra="brian2", output="dir",
               help="a Brian2CUDA project (GPU; generated here, compiled where CUDA is)"),
    ]
