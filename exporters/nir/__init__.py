"""NIR export of the spiking network, and runs of the exported file in third-party NIR consumers.

* :mod:`.export` writes the LIF network as an NIR graph (``--format nir``;
  the mapping, the time convention and the host noise are stated there);
* :mod:`.layout` reads an exported file back and checks its structure;
* :mod:`.consumers` loads the file in Norse (``from_nir``) or snnTorch
  (its NIR converters), simulates it there and returns the latent Trajectory;
* :mod:`.backend` makes those runs the ``norse`` and ``snntorch`` simulate back
  ends (export to a temporary file, run it there).

NIR, Norse and snnTorch are imported only inside these modules.
"""


def plugins():
    """Entry point ``nir`` of ``ddm_neuro.plugins``: the NIR format and the Norse and snnTorch back ends."""
    from ddm_neuro.plugins import Option, Plugin

    run_options = {"fano": Option(None, "Fano factor of the spikes counted in the host noise (default 1)"),
                   "coupling": Option(None, "not applicable: the NIR graph has one dense recurrent Linear")}
    return [
        Plugin("nir", "format", ("spiking",), "exporters.nir.export:export",
               {"dt": Option(1e-4, "step in seconds the file is written for (snnTorch's 1e-4 s by default)"),
                "fano": Option(1.0, "spike Fano factor counted against the model's private noise"),
                "noise": Option(True, "False: the host adds no noise"),
                "step_matched": Option(None, "write for the consumer's step (default: when tau_ref matches it)")},
               requires=("nir",), extra="nir", help="NIR graph of the spiking LIF network (HDF5)"),
        Plugin("norse", "simulator", ("spiking",), "exporters.nir.backend:run_norse", run_options,
               requires=("nir", "norse"), extra="nir", help="the exported NIR file run in Norse"),
        Plugin("snntorch", "simulator", ("spiking",), "exporters.nir.backend:run_snntorch", run_options,
               requires=("nir", "snntorch"), extra="nir", help="the exported NIR file run in snnTorch"),
    ]
