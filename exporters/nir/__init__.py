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


def exporters():
    """Entry point ``nir`` of ``ddm_neuro.exporters``: ``{format: export_function}``."""
    import nir  # noqa: F401  (a missing NIR is reported when the format is chosen)

    from .export import export

    return {"nir": export}


def backend_norse():
    """Entry point ``norse`` of ``ddm_neuro.backends``: ``(run_function, modes)``."""
    import norse  # noqa: F401

    from .backend import make_simulate

    return make_simulate("norse"), ("spiking",)


def backend_snntorch():
    """Entry point ``snntorch`` of ``ddm_neuro.backends``: ``(run_function, modes)``."""
    import snntorch  # noqa: F401

    from .backend import make_simulate

    return make_simulate("snntorch"), ("spiking",)
