"""``ddm-neuro export --format graphml | gexf | json``: the network as a graph file.

* ``graphml`` — :func:`networkx.write_graphml`; every attribute of
  :mod:`.build` (graph, nodes, edges), floats at full double precision
  (Python's shortest round-trip form). Read back with
  ``networkx.read_graphml(path)`` (node ids become strings ``"0" .. "N-1"``) or
  as a model with :func:`exporters.graph.load_graph`.
* ``gexf`` — :func:`networkx.write_gexf` (GEXF 1.2): nodes with all their
  attributes and weighted edges, doubles written at full precision by
  networkx. GEXF as networkx writes it has no graph attributes, so the
  graph-level ones (read-out scale and centre, tau, the SDE, ...) go as one
  JSON object into ``<meta><description>``, which networkx's reader skips.
  The GEXF schema types an edge ``weight`` as ``xs:float``; networkx reads
  the double back exactly, but tools that follow the schema (Gephi) may keep
  only single precision.
* ``json`` — networkx's node-link layout (``directed``, ``multigraph``,
  ``graph``, ``nodes``, ``edges``), read by ``networkx.node_link_graph(data)``
  (networkx >= 3.4; older versions: ``link="edges"``) and, exactly, by
  :func:`exporters.graph.load_graph_json`.

With ``core_size`` or ``preset`` the neurons are also partitioned onto cores
(:mod:`.partition`): each node gets a ``core`` attribute and the figures go to
``OUT.partition.json`` beside the graph (``OUT`` without its suffix).
Files are written under a temporary name and renamed into place; nothing is
overwritten without ``force``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.fileio import atomic_write, check_output

from .build import GraphData, check_finite, check_mode, graph_data, mean_rates, to_networkx, to_node_link

FORMATS = ("graphml", "gexf", "json")
#: Options the command line passes to every exporter that do not apply to a graph.
IGNORED_OPTIONS = ("trials", "duration", "noise", "coupling")


def partition_path(output):
    """Where the partition figures of the graph file ``output`` go: ``OUT.partition.json``."""
    output = Path(output)
    return output.with_name(output.stem + ".partition.json")


def _write_gexf(G, fh):
    import xml.etree.ElementTree as ET

    from networkx.readwrite.gexf import GEXFWriter

    writer = GEXFWriter(encoding="utf-8", prettyprint=True, version="1.2draft")
    writer.add_graph(G)  # writes nodes and edges; of the graph attributes only mode/name are used
    meta = writer.xml.find("meta")
    if meta is None:  # pragma: no cover - networkx always writes <meta>
        meta = ET.SubElement(writer.xml, "meta")
    ET.SubElement(meta, "description").text = json.dumps(G.graph)
    writer.write(fh)


def _write_json(data, fh, chunk=65536):
    """Write :func:`~.build.to_node_link` of ``data`` to ``fh``, the edges in chunks (no list of N^2 dicts)."""
    head = to_node_link(GraphData(data.graph, data.nodes, data.sources[:0], data.targets[:0], data.weights[:0],
                                  None if data.w_perp is None else data.w_perp[:0]))
    text = json.dumps(head)
    fh.write(text[:text.rindex("[")].encode("utf-8") + b"[")  # up to the empty edge list
    if not np.all(np.isfinite(data.weights)) or (data.w_perp is not None and not np.all(np.isfinite(data.w_perp))):
        raise DDMError("graph export: non-finite edge weights; a JSON graph carries only finite numbers")
    fmt = float.__repr__  # = json.dumps on finite floats
    for start in range(0, len(data.weights), chunk):
        stop = min(start + chunk, len(data.weights))
        if data.w_perp is None:
            parts = (f'{{"source": {s}, "target": {t}, "weight": {fmt(w)}}}' for s, t, w in
                     zip(data.sources[start:stop].tolist(), data.targets[start:stop].tolist(),
                         data.weights[start:stop].tolist()))
        else:
            parts = (f'{{"source": {s}, "target": {t}, "weight": {fmt(w)}, "w_perp": {fmt(p)}}}' for s, t, w, p in
                     zip(data.sources[start:stop].tolist(), data.targets[start:stop].tolist(),
                         data.weights[start:stop].tolist(), data.w_perp[start:stop].tolist()))
        fh.write(((", " if start else "") + ", ".join(parts)).encode("utf-8"))
    fh.write(b"]}")


def export_graph(model, output, *, format="graphml", mode="rate", force=False, progress=True, core_size=None,
                 preset=None, objective="auto", seed=0, knn=32, **options):
    """Write the network of ``model`` as a graph file (and its core partition).

    Parameters
    ----------
    model : LatentRNN
    output : str or Path
        The graph file; must not exist unless ``force``.
    format : {"graphml", "gexf", "json"}
    mode : {"rate", "spiking"}
        Recorded in the graph; ``"spiking"`` needs LIF neurons (their
        parameters are on every node either way).
    force, progress : bool
    core_size : int, optional
        Partition the neurons onto cores of this many neurons.
    preset : str, optional
        Partition for a chip preset (loihi, loihi2, xylo, spinnaker); its
        limits are checked. ``core_size`` overrides its core size.
    objective : {"auto", "synapses", "weight"}
        What the partition keeps inside cores (:func:`.partition.partition_network`).
    seed : int
        Seed of the partition's refinement and random baseline.
    knn : int
        Neighbours per neuron the partition refinement looks at.
    **options
        ``trials``, ``duration``, ``noise`` and ``coupling`` (passed by the
        command line to every exporter) do not apply to a graph and are
        ignored; anything else is an error.

    Returns
    -------
    Path
        The graph file.
    """
    if format not in FORMATS:
        raise DDMError(f"unknown graph format {format!r} (graph formats: {', '.join(FORMATS)})")
    unknown = sorted(set(options) - set(IGNORED_OPTIONS))
    if unknown:
        raise DDMError(f"export {format}: unknown option(s) {', '.join(unknown)} "
                       "(known: core_size, preset, objective, seed, knn)")
    check_mode(model, mode)
    check_finite(model)  # before partitioning or writing anything
    output = check_output(output, force)
    part = None
    if core_size is not None or preset is not None:
        from .partition import partition_network

        part_out = check_output(partition_path(output), force)
        if progress:
            print(f"export {format}: partitioning {model.n_neurons} neurons onto cores ...", flush=True)
        rates = mean_rates(model) if model.neuron.name == "lif" else None
        part = partition_network(model.weights(), core_size, preset=preset, rates=rates, objective=objective,
                                  seed=seed, knn=knn)
    data = graph_data(model, mode=mode, core=None if part is None else part.core)
    if progress:
        print(f"export {format}: {model.n_neurons} neurons, {len(data.weights)} synapses -> {output}", flush=True)
    if format == "json":
        writer = lambda fh: _write_json(data, fh)  # noqa: E731
    else:
        import networkx as nx

        G = to_networkx(data)
        writer = (lambda fh: nx.write_graphml(G, fh)) if format == "graphml" else (lambda fh: _write_gexf(G, fh))
    if part is not None:
        info = {"graph": output.name, "model_id": data.graph["model_id"], **part.to_dict()}
        with atomic_write(part_out, force=force) as fh:
            fh.write(json.dumps(info, indent=1).encode("utf-8"))
    try:
        with atomic_write(output, force=force) as fh:
            writer(fh)
    except BaseException:
        if part is not None:
            part_out.unlink(missing_ok=True)
        raise
    if part is not None and progress:
        print(part.summary().replace("partition:", f"export {format}: partition:", 1))
        print(f"export {format}: wrote {part_out}")
    return output



def export_graphml(model, output, **options):
    """``--format graphml``: :func:`export_graph` with ``format="graphml"``."""
    return export_graph(model, output, format="graphml", **options)


def export_gexf(model, output, **options):
    """``--format gexf``: :func:`export_graph` with ``format="gexf"``."""
    return export_graph(model, output, format="gexf", **options)


def export_json(model, output, **options):
    """``--format json``: :func:`export_graph` with ``format="json"`` (node-link)."""
    return export_graph(model, output, format="json", **options)
