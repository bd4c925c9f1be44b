"""Graph files back into a :class:`~ddm_neuro.network.LatentRNN`.

The node-link JSON form is read with the standard library alone
(:func:`load_graph_json`); GraphML with networkx (:func:`load_graph`). Both
give back the exported model exactly: identical arrays (floats are stored in
their shortest round-trip form) and identical metadata. GEXF written through
networkx holds no graph attributes (read-out scale, SDE, ...), so it is not a
model file. Every problem is one :class:`~ddm_neuro.errors.ModelFileError`
naming the file and what is missing or wrong.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError, ModelFileError

from .build import FORMAT, FORMAT_VERSION

GRAPH_KEYS = ("version", "n_neurons", "dim", "n_inputs", "neuron_model", "tau", "time_scale", "has_w_perp",
              "variables", "inputs", "scale", "center", "noise_latent", "init_states", "sde_spec", "meta")


def load_graph_json(path):
    """Read a node-link JSON graph written by the ``json`` export as a :class:`LatentRNN`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    LatentRNN
        The exported model: identical arrays and ``meta``.

    Raises
    ------
    ModelFileError
        Missing or unreadable file, not a ddm_neuro graph, a newer format
        version, missing attributes, or edges that disagree with the nodes.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such graph file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: not a readable JSON graph ({type(exc).__name__}: {str(exc)[:120]})") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict) or not isinstance(data.get("graph"), dict) or not isinstance(data.get("nodes"), list):
        raise ModelFileError(f"{path}: not a node-link graph (needs 'graph', 'nodes' and 'edges')")
    edges = data.get("edges", data.get("links"))
    if not isinstance(edges, list):
        raise ModelFileError(f"{path}: not a node-link graph (no 'edges' list)")
    if data.get("directed") is not True:
        raise ModelFileError(f"{path}: the graph is not directed; a ddm_neuro network graph is")
    nodes = {}
    for a in data["nodes"]:
        if not isinstance(a, dict) or "id" not in a:
            raise ModelFileError(f"{path}: a node without an 'id'")
        if not isinstance(a["id"], (int, str)):
            raise ModelFileError(f"{path}: node id {a['id']!r:.40} is not a neuron index")
        nodes[a["id"]] = a
    try:
        triples = [(e["source"], e["target"], e) for e in edges if isinstance(e, dict)]
        if len(triples) != len(edges):
            raise TypeError
    except (TypeError, KeyError):
        raise ModelFileError(f"{path}: an edge without 'source' and 'target'") from None
    return model_from_parts(data["graph"], nodes, triples, path)


def load_graph(path):
    """Read a graph file written by the ``json`` or ``graphml`` export as a :class:`LatentRNN`.

    ``.json`` is read by :func:`load_graph_json`; ``.graphml`` / ``.xml`` with
    :func:`networkx.read_graphml`.

    Raises
    ------
    ModelFileError
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_graph_json(path)
    if suffix == ".gexf":
        raise ModelFileError(f"{path}: GEXF holds no graph attributes (read-out, SDE); "
                             "load the .json or .graphml export instead")
    if suffix not in (".graphml", ".xml"):
        raise ModelFileError(f"{path}: unknown graph file type {suffix!r} (readable: .json, .graphml)")
    import networkx as nx

    if not path.is_file():
        raise ModelFileError(f"{path}: no such graph file")
    try:
        G = nx.read_graphml(path)
    except Exception as exc:  # XML and GraphML parse errors of several kinds
        raise ModelFileError(f"{path}: not a readable GraphML file ({type(exc).__name__}: {exc})") from None
    return model_from_networkx(G, path)


def model_from_networkx(G, source="graph"):
    """A :class:`LatentRNN` from a networkx graph built by :func:`~exporters.graph.build.model_to_graph`.

    Node ids may be integers or their string form (as GraphML readers return them).

    Parameters
    ----------
    G : networkx.DiGraph
    source : str
        Name used in error messages (a file path).
    """
    if not G.is_directed():
        raise ModelFileError(f"{source}: the graph is not directed; a ddm_neuro network graph is")
    return model_from_parts(dict(G.graph), dict(G.nodes(data=True)),
                            [(s, t, a) for s, t, a in G.edges(data=True)], source)


def _finite_number(v):
    """True for an int or float (not a bool) that is finite as a double."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond the double range
        return False


def _node_index(node, n, source):
    try:
        j = int(node)
    except (TypeError, ValueError):
        raise ModelFileError(f"{source}: node id {node!r} is not a neuron index 0..{n - 1}") from None
    if str(j) != str(node) or not 0 <= j < n:
        raise ModelFileError(f"{source}: node id {node!r} is not a neuron index 0..{n - 1}")
    return j


def _graph_value(graph, key, source, kind=None):
    if key not in graph:
        raise ModelFileError(f"{source}: graph attribute {key!r} is missing (not a complete ddm_neuro graph "
                             "export; export the model again)")
    value = graph[key]
    if kind == "json":
        if not isinstance(value, str):
            raise ModelFileError(f"{source}: graph attribute {key!r} must be a JSON string")
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ModelFileError(f"{source}: graph attribute {key!r} is not valid JSON") from None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ModelFileError(f"{source}: graph attribute {key!r} must be an integer >= 0 (got {value!r})")
        return int(value)
    if kind == "float":
        if not _finite_number(value):
            raise ModelFileError(f"{source}: graph attribute {key!r} must be a finite number (got {value!r:.40})")
        return float(value)
    return value


def _array(value, shape, key, source):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ModelFileError(f"{source}: graph attribute {key!r} is not a numeric array") from None
    if shape is not None and arr.shape != shape:
        raise ModelFileError(f"{source}: graph attribute {key!r} has shape {arr.shape}, expected {shape}")
    return arr


def _node_columns(nodes, keys, source):
    out = np.empty((len(nodes), len(keys)), dtype=np.float64)
    for j, a in enumerate(nodes):
        for i, key in enumerate(keys):
            if key not in a:
                raise ModelFileError(f"{source}: node {j} lacks attribute {key!r}")
            v = a[key]
            if not _finite_number(v):
                raise ModelFileError(f"{source}: node {j} attribute {key!r} is not a finite number (got {v!r:.40})")
            out[j, i] = v
    return out


def model_from_parts(graph, nodes, edges, source="graph"):
    """Rebuild the :class:`LatentRNN` from graph attributes, nodes and edges.

    Parameters
    ----------
    graph : dict
        Graph attributes.
    nodes : dict
        Node id -> attribute dict.
    edges : list of (source, target, dict)
    source : str or Path
        Name used in error messages.

    Returns
    -------
    LatentRNN
    """
    from ddm_neuro.network import LatentRNN

    fmt = graph.get("format")
    if fmt != FORMAT:
        raise ModelFileError(f"{source}: not a ddm_neuro network graph (graph attribute 'format' is "
                             f"{fmt!r}, expected {FORMAT!r})")
    version = _graph_value(graph, "version", source, "int")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{source}: graph format version {version} is newer than this ddm_neuro reads "
                             f"({FORMAT_VERSION}); upgrade ddm_neuro")
    if version < 1:
        raise ModelFileError(f"{source}: graph format version {version} is not a valid version")
    n = _graph_value(graph, "n_neurons", source, "int")
    d = _graph_value(graph, "dim", source, "int")
    k = _graph_value(graph, "n_inputs", source, "int")
    if n < max(d, 1):
        raise ModelFileError(f"{source}: n_neurons = {n} must be >= dim = {d} and >= 1")
    if len(nodes) != n:
        raise ModelFileError(f"{source}: the graph has {len(nodes)} nodes, its attribute n_neurons says {n}")
    ordered = [None] * n
    for node, a in nodes.items():
        ordered[_node_index(node, n, source)] = a
    variables = _graph_value(graph, "variables", source, "json")
    inputs = _graph_value(graph, "inputs", source, "json")
    if not isinstance(variables, list) or len(variables) != d:
        raise ModelFileError(f"{source}: graph attribute 'variables' must list {d} names (got {variables!r})")
    if not isinstance(inputs, list) or len(inputs) != k:
        raise ModelFileError(f"{source}: graph attribute 'inputs' must list {k} names (got {inputs!r})")
    meta = _graph_value(graph, "meta", source, "json")
    spec = _graph_value(graph, "sde_spec", source, "json")
    neuron = _graph_value(graph, "neuron_model", source, "json")
    if not isinstance(meta, dict):
        raise ModelFileError(f"{source}: graph attribute 'meta' must be a JSON object")
    if spec is not None and not isinstance(spec, dict):
        raise ModelFileError(f"{source}: graph attribute 'sde_spec' must be a JSON object or null")
    init = _array(_graph_value(graph, "init_states", source, "json"), None, "init_states", source)
    if init.ndim != 2 or init.shape[1] != d:
        raise ModelFileError(f"{source}: graph attribute 'init_states' has shape {init.shape}, expected (n0, {d})")
    has_w_perp = _graph_value(graph, "has_w_perp", source)
    if not isinstance(has_w_perp, bool):
        raise ModelFileError(f"{source}: graph attribute 'has_w_perp' must be true or false")
    E, K, D, B = (_node_columns(ordered, [f"{prefix}_{i}" for i in range(count)], source)
                  for prefix, count in (("encoder", d), ("decoder", d), ("readout", d), ("input", k)))
    K, D = K.T.copy(), D.T.copy()
    cols = dict(zip(("bias", "noise_const", "noise_act"),
                    _node_columns(ordered, ["bias", "noise_const", "noise_act"], source).T.copy()))
    w_perp = _edge_matrix(edges, n, "w_perp", source) if has_w_perp else None
    try:
        model = LatentRNN(
            neuron=neuron, tau=_graph_value(graph, "tau", source, "float"),
            time_scale=_graph_value(graph, "time_scale", source, "float"),
            scale=_array(_graph_value(graph, "scale", source, "json"), (d,), "scale", source),
            center=_array(_graph_value(graph, "center", source, "json"), (d,), "center", source),
            encoders=E, decoders=K, readout=D, bias=cols["bias"], input_weights=B,
            noise_const=cols["noise_const"], noise_act=cols["noise_act"],
            noise_latent=_array(_graph_value(graph, "noise_latent", source, "json"), (d, d), "noise_latent", source),
            init_states=init, sde_spec=spec, variables=[str(v) for v in variables],
            inputs=[str(v) for v in inputs], meta=meta, w_perp=w_perp)
    except DDMError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    _check_edges(model, edges, n, source)
    return model


def _edge_matrix(edges, n, key, source):
    M = np.zeros((n, n))
    for s, t, a in edges:
        if key not in a:
            raise ModelFileError(f"{source}: edge {s} -> {t} lacks attribute {key!r}")
        v = a[key]
        if not _finite_number(v):
            raise ModelFileError(f"{source}: edge {s} -> {t} attribute {key!r} is not a finite number "
                                 f"(got {v!r:.40})")
        M[_node_index(t, n, source), _node_index(s, n, source)] = v
    return M


def _check_edges(model, edges, n, source):
    """The edges must carry exactly the model's ``W`` (to rounding): anything else is not this model."""
    W = _edge_matrix(edges, n, "weight", source)
    want = model.weights()
    tol = 1e-12 * max(float(np.abs(want).max(initial=0.0)), 1e-300)
    bad = ~(np.abs(W - want) <= tol)  # NaN anywhere counts as a difference
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ModelFileError(f"{source}: {int(bad.sum())} edge weight(s) differ from encoders x decoders "
                             f"(first: edge {j} -> {i} has {W[i, j]!r}, the nodes give {want[i, j]!r}); "
                             "the graph was edited or is not a complete export")
