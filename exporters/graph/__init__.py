"""Connectivity-graph export (NetworkX -> GraphML, GEXF, node-link JSON) and core partitioning.

* :mod:`.build` — the network as a :class:`networkx.DiGraph` (one node per
  neuron, one weighted edge per synapse, read-out and SDE in graph attributes);
* :mod:`.export` — ``ddm-neuro export --format graphml | gexf | json``;
* :mod:`.load` — a graph file back into a :class:`~ddm_neuro.network.LatentRNN`;
* :mod:`.partition` — neurons onto cores of a chip, with the cross-core traffic.

Declared to :mod:`ddm_neuro.plugins` by :func:`plugins` (entry point ``graph``);
networkx is imported only where a graph is built or read.
"""
from .build import model_to_graph
from .load import load_graph, load_graph_json, model_from_networkx
from .partition import Partition, partition_network

__all__ = ["plugins", "load_graph", "load_graph_json", "model_from_networkx", "model_to_graph", "Partition",
           "partition_network"]


def plugins():
    """Entry point ``graph`` of ``ddm_neuro.plugins``: the graph export formats."""
    from ddm_neuro.plugins import Option, Plugin

    options = {"core_size": Option(None, "partition the neurons onto cores of this size"),
               "preset": Option(None, "partition for a chip (loihi, loihi2, xylo, spinnaker); checks its limits"),
               "objective": Option("auto", "what the partition keeps inside cores", ("auto", "synapses", "weight")),
               "seed": Option(0, "seed of the partition's refinement and random baseline"),
               "knn": Option(32, "neighbours per neuron the partition refinement looks at")}
    what = {"graphml": "GraphML (networkx, Gephi, yEd)", "gexf": "GEXF (Gephi)", "json": "node-link JSON"}
    return [Plugin(fmt, "format", ("rate", "spiking"), f"exporters.graph.export:export_{fmt}", options,
                   requires=("networkx",), extra="graph", help=f"connectivity graph as {text}")
            for fmt, text in what.items()]
