"""NEST back end and export for ddm_neuro models (rate and spiking mode).

* :mod:`.network` builds and runs the NEST rate network from a plain model spec
  (pure PyNEST; it is also the script shipped in an exported project);
* :mod:`.spiking` the LIF network (shipped beside it);
* :mod:`.backend` is the ``nest`` simulator back end;
* :mod:`.export` writes a self-contained NEST project (``python run.py ...``,
  unchanged under ``mpirun``);
* :mod:`.runner` is that project's ``run.py``.

Declared to the core's plug-in registry (:mod:`ddm_neuro.plugins`) by
:func:`plugins`, the ``ddm_neuro.plugins`` entry point; NEST is imported only
when a run starts.
"""


def plugins():
    """Entry point ``nest`` of ``ddm_neuro.plugins``: the NEST simulator and export format."""
    from ddm_neuro.plugins import Option, Plugin

    from ..spiking_options import plugin_options

    coupling = Option("factored", "recurrent coupling: factored N->d->N (default; spiking: closed from Python each "
                                  "step) or dense W (N^2 synapses; rate: noise-free and input-free only)",
                      ("factored", "dense"))
    common = dict(requires=("nest",), extra="nest")
    return [
        Plugin("nest", "simulator", ("rate", "spiking"), "exporters.nest.backend:run",
               {"coupling": coupling, **plugin_options()},
               help="NEST (rate neurons, or LIF with --mode spiking; threads with --threads)", **common),
        Plugin("nest", "format", ("rate", "spiking"), "exporters.nest.export:export",
               {"coupling": coupling, "fano": Option("regular", "spiking: the spikes' Fano factor counted in the "
                                                                "noise remainder"),
                "trials": Option(1, "independent copies side by side (run.py --trials changes it)"),
                "duration": Option(60.0, "SDE time units: the default run length of run.py"),
                "dt": Option(None, "integration step, SDE units (default: the model's)"),
                "record_dt": Option(None, "recording interval, SDE units (default: the model's)"),
                "threads": Option(1, "NEST threads per process of run.py (run.py --threads changes it)"),
                "noise": Option(True, "False: the noise-free network (spiking: remainder, none or model)")},
               help="a NEST project: python run.py --seed S ... (also under mpirun)", output="dir",
               requires=(), extra="nest"),
    ]
