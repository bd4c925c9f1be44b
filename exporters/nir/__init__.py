"""NIR export of the spiking network, and runs of the exported file in third-party NIR consumers.

* :mod:`.export` writes the LIF network as an NIR graph (``--format nir``;
  the mapping, the time convention and the host noise are stated there);
* :mod:`.layout` reads an exported file back and checks its structure;
* :mod:`.consumers` loads the file in Norse (``from_nir``) or snnTorch
  (``import_from_nir``), simulates it there and returns the latent Trajectory.

NIR, Norse and snnTorch are imported only inside these modules.
"""


def exporters():
    """Entry point ``nir`` of ``ddm_neuro.exporters``: ``{format: export_function}``."""
    import nir  # noqa: F401  (a missing NIR is reported when the format is chosen)

    from .export import export

    return {"nir": export}
