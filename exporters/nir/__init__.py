"""NIR export of the spiking network, and runs of the exported file in third-party NIR consumers.

* :mod:`.export` writes the LIF network as an NIR graph (``--format nir``;
  the mapping, the time convention and the host noise are stated there);
* :mod:`.layout` reads an exported file back and checks its structure;
* :mod:`.hostnoise` (numpy only) computes, from a file's metadata alone, how the
  host scales the noise channels where the model's noise depends on the state;
* :mod:`.consumers` builds the file's nodes with a consumer's own NIR importer
  (Norse, snnTorch, Rockpool, spyx), steps them and returns the Output, the
  latent, as a Trajectory;
* :mod:`.backend` makes those runs the ``norse``, ``snntorch``, ``rockpool`` and
  ``spyx`` simulate back ends (export to a temporary file, run it there).

NIR and the consumers are imported only inside these modules.
"""


def plugins():
    """Entry point ``nir`` of ``ddm_neuro.plugins``: the NIR format and the back ends of its consumers."""
    from ddm_neuro.plugins import Option, Plugin

    run_options = {"fano": Option(None, "Fano factor of the spikes counted in the host noise (default 1)"),
                   "coupling": Option(None, "not applicable: the NIR graph has one dense recurrent Linear")}
    return [
        Plugin("nir", "format", ("spiking", "rate"), "exporters.nir.export:export",
               {"dt": Option(1e-4, "step in SECONDS the file is written for (default 1e-4, snnTorch's fixed step); "
                                   "stored as metadata['dt']: load the file at that step"),
                "fano": Option(1.0, "spike Fano factor counted against the model's private noise"),
                "noise": Option(True, "False: no noise channels (the noise-free network)"),
                "step_matched": Option(None, "write for the consumer's step (default: when tau_ref matches it)")},
               requires=("nir",), extra="nir", help="NIR graph of the spiking LIF network, Output = the latent "
                                                     "(HDF5; NIR holds spiking networks only: --mode is implied)"),
        Plugin("norse", "simulator", ("spiking",), "exporters.nir.backend:run_norse", run_options,
               requires=("nir", "norse"), extra="nir", help="the exported NIR file run in Norse"),
        Plugin("snntorch", "simulator", ("spiking",), "exporters.nir.backend:run_snntorch", run_options,
               requires=("nir", "snntorch"), extra="nir", help="the exported NIR file run in snnTorch"),
        Plugin("rockpool", "simulator", ("spiking",), "exporters.nir.backend:run_rockpool", run_options,
               requires=("nir", "rockpool"), help="the exported NIR file run in Rockpool (pip install rockpool)"),
        Plugin("spyx", "simulator", ("spiking",), "exporters.nir.backend:run_spyx", run_options,
               requires=("nir", "spyx", "jax"), help="the exported NIR file run in spyx on JAX (pip install spyx "
                                                     "'jax[cpu]')"),
    ]
