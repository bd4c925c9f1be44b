"""Brian2 back ends and export for ddm_neuro models (rate mode).

* :mod:`.network` builds the Brian2 network from a plain model spec (pure
  Brian2; it is also the script shipped in an exported project);
* :mod:`.rate` is the ``brian2`` back end (Brian2's runtime device);
* :mod:`.standalone` is the ``brian2-cpp`` back end (generated C++, compiled
  once per network structure and re-run with new seeds, durations and inputs);
* :mod:`.runner` runs a compiled build (numpy only; shipped as ``run.py``);
* :mod:`.export` writes self-contained ``brian2-cpp`` / ``brian2-cuda`` projects.

Registered through the ``ddm_neuro.backends`` and ``ddm_neuro.exporters``
entry points; Brian2 is imported only inside these modules.
"""


def backend():
    """Entry point ``brian2``: ``(run_function, modes)``."""
    import brian2  # noqa: F401  (a missing Brian2 is reported when the back end is chosen)

    from .rate import simulate

    return simulate, ("rate", "spiking")


def backend_cpp():
    """Entry point ``brian2-cpp``: ``(run_function, modes)``."""
    import brian2  # noqa: F401

    from .standalone import simulate

    return simulate, ("rate", "spiking")


def exporters():
    """Entry point ``brian2`` of ``ddm_neuro.exporters``: ``{format: export_function}``."""
    import brian2  # noqa: F401

    from .export import export

    def cpp(model, output, **options):
        return export(model, output, format="brian2-cpp", **options)

    def cuda(model, output, **options):
        return export(model, output, format="brian2-cuda", **options)

    return {"brian2-cpp": cpp, "brian2-cuda": cuda}
