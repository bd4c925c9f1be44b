"""Connectivity-graph export (NetworkX -> GraphML, GEXF, node-link JSON) and core partitioning.

* :mod:`.build` — the network as a :class:`networkx.DiGraph` (one node per
  neuron, one weighted edge per synapse, read-out and SDE in graph attributes);
* :mod:`.export` — ``ddm-neuro export --format graphml | gexf | json``;
* :mod:`.load` — a graph file back into a :class:`~ddm_neuro.network.LatentRNN`;
* :mod:`.partition` — neurons onto cores of a chip, with the cross-core traffic.

Registered under the ``ddm_neuro.exporters`` entry point ``graph``; networkx
is imported only where a graph is built or read.
"""
from .build import model_to_graph
from .load import load_graph, load_graph_json, model_from_networkx
from .partition import Partition, partition_network

__all__ = ["exporters", "load_graph", "load_graph_json", "model_from_networkx", "model_to_graph", "Partition",
           "partition_network"]


def exporters():
    """Entry point ``graph`` of ``ddm_neuro.exporters``: ``{format: export_function}``."""
    import networkx  # noqa: F401  (a missing networkx is reported when the format is chosen)

    from .export import export_graph

    def graphml(model, output, **options):
        return export_graph(model, output, format="graphml", **options)

    def gexf(model, output, **options):
        return export_graph(model, output, format="gexf", **options)

    def json(model, output, **options):
        return export_graph(model, output, format="json", **options)

    return {"graphml": graphml, "gexf": gexf, "json": json}
