r"""A :class:`~ddm_neuro.network.LatentRNN` as a directed graph: one node per neuron, one edge per synapse.

The network (DESIGN §2, :mod:`ddm_neuro.network`)::

    tau dx = ( -x + W (phi(x) + eta) + b + B u ) dt,    W = E K (+ W_perp),   y = D x,   z = S y + c

becomes a graph whose **edge** ``j -> i`` carries ``weight = W[i, j]`` (the
output of neuron j drives neuron i; in spiking mode a spike of j adds
``W[i, j] / tau`` to ``x_i``), for every nonzero ``W[i, j]``, self-loops
included. A model holding ``W_perp`` also puts ``w_perp = W_perp[i, j]`` on
each edge.

Every attribute is a scalar (GraphML and GEXF hold nothing else); vectors and
tables are stored one component per attribute (nodes) or as JSON strings
(graph). Floats are written in Python's shortest round-trip form, so they read
back bit for bit.

**Node** ``j`` (id ``j``, an integer; GraphML/GEXF readers give the string ``"j"``):

==================  =======================================================
``neuron``          ``"tanh"`` or ``"lif"``
``gain``            ``|E[j]|`` (the encoder row includes the gain)
``bias``            ``b[j]``
``encoder_a``       ``E[j, a]`` for latent dimension ``a = 0 .. d-1``
``decoder_a``       ``K[a, j]``
``readout_a``       ``D[a, j]`` (latent read-out ``y = D x``)
``input_m``         ``B[j, m]`` for input ``m = 0 .. k-1``
``noise_const``     ``c_j`` and ``noise_act``: ``a_j`` of the private output
``noise_act``       noise ``sigma_j^2 = a_j act(x_j) + c_j`` (per second)
``sign``            +1 if all of j's outgoing weights are >= 0, -1 if all
                    are <= 0, 0 if mixed (Dale's law holds where it is +-1)
LIF only            ``tau_m``, ``tau_ref`` (s), ``v_threshold`` = 1,
                    ``v_reset`` = 0 (normalised membrane), ``tau_syn`` = tau,
                    ``rate_hz``: mean rate over the model's start states
``core``            the core of a partition (:mod:`.partition`), if any
==================  =======================================================

**Graph attributes**: ``format`` (``"ddm_neuro.graph"``), ``version``,
``mode`` (``"rate"`` or ``"spiking"``), ``n_neurons``, ``dim``,
``n_inputs``, ``neuron`` (name) and ``neuron_model`` (JSON, all
parameters), ``tau``, ``time_scale``, ``has_w_perp``, ``model_id``,
``sde_name``, ``equations`` (text), ``weight_convention`` (text), and as JSON
strings ``variables``, ``inputs``, ``scale``, ``center`` (``z = S y + c``),
``noise_latent`` (L, d x d), ``init_states`` (n0 x d), ``sde_spec`` (the
spec that rebuilds the target SDE, or ``null``) and ``meta`` (fit settings
and metrics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ddm_neuro.errors import DDMError

FORMAT = "ddm_neuro.graph"
FORMAT_VERSION = 1
MODES = ("rate", "spiking")

EQUATIONS = ("tau dx = (-x + W (phi(x) + eta) + b + B u) dt; eta_j dt = sigma_j dW_j, "
             "sigma_j^2 = noise_act_j act(x_j) + noise_const_j; shared noise E L dW'; "
             "y = D x; z = scale * y + center")
SPIKING_EQUATIONS = ("spiking: tau_m dv_j/dt = x_j - v_j; v_j >= v_threshold: spike, v_j <- v_reset, "
                     "silent for tau_ref; a spike of j adds W[i, j] / tau_syn to x_i (exponential synapse, "
                     "tau_syn = tau); rate curve phi = the LIF steady-state rate")
WEIGHT_CONVENTION = "edge j -> i carries weight W[i, j]: neuron j's output drives neuron i"


@dataclass
class GraphData:
    """The graph as plain Python data, shared by the networkx graph and the node-link JSON.

    Attributes
    ----------
    graph : dict
        Graph attributes (scalars and JSON strings).
    nodes : list of dict
        Node attributes, node ``j`` at position ``j``.
    sources, targets : ndarray (n_edges,)
        Edge ``sources[e] -> targets[e]``.
    weights : ndarray (n_edges,)
        ``W[target, source]``.
    w_perp : ndarray (n_edges,) or None
        ``W_perp[target, source]`` when the model holds ``W_perp``.
    """

    graph: dict
    nodes: list
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    w_perp: np.ndarray | None = None

    def edge_attrs(self, e):
        """Attributes of edge ``e`` as a dict of Python floats."""
        out = {"weight": float(self.weights[e])}
        if self.w_perp is not None:
            out["w_perp"] = float(self.w_perp[e])
        return out


def _dumps(value):
    return json.dumps(np.asarray(value, dtype=np.float64).tolist() if isinstance(value, np.ndarray) else value)


def _floats(row):
    return [float(v) for v in row]


def mean_rates(model):
    """Mean output ``phi(x)`` of each neuron over the model's start states (Hz for LIF), (N,).

    The start states are samples of the target's visited distribution, so this
    is the rate each neuron fires at on average while the network runs (inputs
    at zero).
    """
    x = model.neuron_inputs(model.init_states)
    return np.asarray(model.neuron.phi(x), dtype=np.float64).reshape(-1, model.n_neurons).mean(axis=0)


def check_mode(model, mode):
    """Refuse an unknown mode, and spiking mode for a model without LIF neurons."""
    if mode not in MODES:
        raise DDMError(f"graph export: unknown mode {mode!r} (supports: {', '.join(MODES)})")
    if mode == "spiking" and model.neuron.name != "lif":
        raise DDMError(f"spiking mode needs LIF neurons (this model has {model.neuron.name!r}; "
                       "fit with --neuron lif)")


def check_finite(model):
    """Refuse a model whose weights or other arrays hold NaN or inf: a graph file must never carry them.

    :class:`~ddm_neuro.network.LatentRNN` checks its arrays when it is built;
    this catches arrays changed afterwards. (:func:`graph_data` also checks
    the product ``W = E K``, which can overflow.)

    Raises
    ------
    DDMError
        Naming the array and the first bad entry.
    """
    from ddm_neuro.model_fields import ARRAY_FIELDS

    arrays = {name: getattr(model, name) for name in ARRAY_FIELDS}
    if model.w_perp is not None:
        arrays["w_perp"] = model.w_perp
    for name, value in arrays.items():
        _refuse_non_finite(value, f"array {name}")


def _refuse_non_finite(value, what):
    value = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(value)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DDMError(f"graph export: the model's {what} holds non-finite values ({int(bad.sum())}; first "
                       f"{value[where]} at index {where}); a graph file carries only finite numbers")


def graph_data(model, mode="rate", core=None):
    """Describe ``model`` as :class:`GraphData` (see the module docstring for every attribute).

    Parameters
    ----------
    model : LatentRNN
    mode : {"rate", "spiking"}
        What the graph describes; ``"spiking"`` needs LIF neurons.
    core : array (N,) of int, optional
        Core of each neuron (a partition), stored as node attribute ``core``.

    Returns
    -------
    GraphData
    """
    from ddm_neuro.modelio import model_id

    check_mode(model, mode)
    check_finite(model)
    lif = model.neuron.name == "lif"
    W = model.weights()
    _refuse_non_finite(W, "weight matrix W = E K (+ W_perp)")
    n, d, k = model.n_neurons, model.dim, model.n_inputs
    wp = None if model.w_perp is None else np.asarray(model.w_perp, dtype=np.float64)
    present = W != 0 if wp is None else (W != 0) | (wp != 0)
    src, dst = np.nonzero(present.T)  # pairs (j, i) with present[i, j], grouped by source j
    weights = W[dst, src]
    edge_wp = None if wp is None else wp[dst, src]
    neg = (W < 0).any(axis=0)
    pos = (W > 0).any(axis=0)
    sign = np.where(pos & ~neg, 1, np.where(neg & ~pos, -1, 0))
    gain = np.linalg.norm(model.encoders, axis=1)
    graph = {
        "format": FORMAT, "version": FORMAT_VERSION, "mode": mode,
        "n_neurons": int(n), "dim": int(d), "n_inputs": int(k),
        "neuron": model.neuron.name, "neuron_model": json.dumps(model.neuron.to_dict()),
        "tau": float(model.tau), "time_scale": float(model.time_scale),
        "has_w_perp": wp is not None, "model_id": model_id(model),
        "sde_name": str(model.meta.get("sde_name") or (model.sde_spec or {}).get("name") or ""),
        "equations": EQUATIONS + ("; " + SPIKING_EQUATIONS if lif else ""),
        "weight_convention": WEIGHT_CONVENTION,
        "variables": json.dumps(list(model.variables)), "inputs": json.dumps(list(model.inputs)),
        "scale": _dumps(model.scale), "center": _dumps(model.center),
        "noise_latent": _dumps(model.noise_latent), "init_states": _dumps(model.init_states),
        "sde_spec": json.dumps(model.sde_spec), "meta": json.dumps(model.meta),
    }
    rates = mean_rates(model) if lif else None
    nodes = []
    for j in range(n):
        a = {"neuron": model.neuron.name, "gain": float(gain[j]), "bias": float(model.bias[j])}
        a.update({f"encoder_{i}": v for i, v in enumerate(_floats(model.encoders[j]))})
        a.update({f"decoder_{i}": v for i, v in enumerate(_floats(model.decoders[:, j]))})
        a.update({f"readout_{i}": v for i, v in enumerate(_floats(model.readout[:, j]))})
        a.update({f"input_{m}": v for m, v in enumerate(_floats(model.input_weights[j]))})
        a.update(noise_const=float(model.noise_const[j]), noise_act=float(model.noise_act[j]), sign=int(sign[j]))
        if lif:
            a.update(tau_m=float(model.neuron.params["tau_m"]), tau_ref=float(model.neuron.params["tau_ref"]),
                     v_threshold=1.0, v_reset=0.0, tau_syn=float(model.tau), rate_hz=float(rates[j]))
        if core is not None:
            a["core"] = int(core[j])
        nodes.append(a)
    return GraphData(graph, nodes, src, dst, weights, edge_wp)


def to_networkx(data):
    """A :class:`networkx.DiGraph` of :class:`GraphData` (nodes ``0 .. N-1``)."""
    import networkx as nx

    G = nx.DiGraph()
    G.graph.update(data.graph)
    G.add_nodes_from((j, a) for j, a in enumerate(data.nodes))
    if data.w_perp is None:
        G.add_edges_from((int(s), int(t), {"weight": float(w)})
                         for s, t, w in zip(data.sources, data.targets, data.weights))
    else:
        G.add_edges_from((int(s), int(t), {"weight": float(w), "w_perp": float(p)})
                         for s, t, w, p in zip(data.sources, data.targets, data.weights, data.w_perp))
    return G


def to_node_link(data):
    """The node-link JSON form (``directed``, ``multigraph``, ``graph``, ``nodes``, ``edges``).

    The layout is networkx's :func:`networkx.node_link_data` (edges under
    ``"edges"``, networkx >= 3.4's key), so ``networkx.node_link_graph`` reads it.
    """
    nodes = [{"id": j, **a} for j, a in enumerate(data.nodes)]
    edges = [{"source": int(s), "target": int(t), **data.edge_attrs(e)}
             for e, (s, t) in enumerate(zip(data.sources, data.targets))]
    return {"directed": True, "multigraph": False, "graph": dict(data.graph), "nodes": nodes, "edges": edges}


def model_to_graph(model, mode="rate", core=None):
    """The network of ``model`` as a :class:`networkx.DiGraph` (attributes: module docstring).

    Parameters
    ----------
    model : LatentRNN
    mode : {"rate", "spiking"}
    core : array (N,) of int, optional
        A core assignment to store as node attribute ``core``.

    Returns
    -------
    networkx.DiGraph
        Edge ``j -> i`` with ``weight = W[i, j]`` for every nonzero entry of ``W``.
    """
    return to_networkx(graph_data(model, mode=mode, core=core))
