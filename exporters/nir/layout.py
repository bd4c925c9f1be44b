"""Read an exported NIR file back and check that it has the structure :mod:`.export` writes.

A consumer run needs more than a valid NIR graph: the node names, types,
shapes, the nested recurrent graph, the ``r = tau/dt`` and ``w_in = tau_syn/dt``
convention and the metadata of :mod:`.export`. :func:`read_network` checks all
of them and says what differs, so a file of another structure fails with one
clear line instead of deep inside a consumer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError

from .export import EDGES, FORMAT_VERSION, NODES, RNN_EDGES, RNN_NODES


class NIRFileError(DDMError):
    """An NIR file is missing, unreadable or not of the structure this package exports."""


@dataclass
class NIRNetwork:
    """An exported network, read back: the graph, its sizes and its metadata.

    Attributes
    ----------
    path : Path
    graph : nir.NIRGraph
    info : dict
        The decoded ``metadata["ddm_neuro"]`` (see :mod:`.export`).
    dt : float
        Step (seconds) the file was written for.
    n_neurons, dim : int
        N and d.
    n_inputs, n_noise, width : int
        k model inputs, m noise channels, and the width of node ``input`` (``max(k + m, 1)``).
    init_current : ndarray (N, d + 1 + k)
        ``I0 = init_current @ [z0, 1, u0]``: synaptic currents at latent state z0.
    init_states : ndarray (n0, d)
    """

    path: Path
    graph: object
    info: dict
    dt: float
    n_neurons: int
    dim: int
    n_inputs: int
    n_noise: int
    width: int
    init_current: np.ndarray
    init_states: np.ndarray

    @property
    def time_scale(self):
        """T, seconds of network time per SDE time unit."""
        return float(self.info["time_scale"])

    @property
    def lif(self):
        """The ``CubaLIF`` node inside ``rnn``."""
        return self.graph.nodes["rnn"].nodes["rnn.lif"]

    def node(self, name):
        """A top-level node, or ``rnn.lif`` / ``rnn.recurrent`` inside ``rnn``."""
        return self.graph.nodes["rnn"].nodes[name] if name.startswith("rnn.") else self.graph.nodes[name]

    def initial_current(self, z0, u0=None):
        """Synaptic currents (..., N) at latent states z0 (..., d), the others at rest for input u0."""
        z0 = np.asarray(z0, dtype=np.float64)
        k = self.n_inputs
        u = np.zeros(z0.shape[:-1] + (k,)) if u0 is None else np.broadcast_to(u0, z0.shape[:-1] + (k,))
        full = np.concatenate([z0, np.ones(z0.shape[:-1] + (1,)), u], axis=-1)
        return full @ self.init_current.T

    def graph_input(self, u, xi):
        """The values of node ``input``: inputs u (..., k) and noise samples xi (..., m), or one zero channel."""
        parts = [np.broadcast_to(u, np.shape(xi)[:-1] + (self.n_inputs,)), xi]
        out = np.concatenate(parts, axis=-1)
        return out if self.width == out.shape[-1] else np.zeros(out.shape[:-1] + (self.width,))


def _fail(path, what):
    raise NIRFileError(f"{path}: {what}")


def _check_nodes(path, found, expected, optional=()):
    names = {name: type(node).__name__ for name, node in found.items()}
    want = {k: v for k, v in expected.items() if k not in optional or k in names}
    if names == want:
        return
    missing, extra = sorted(set(want) - set(names)), sorted(set(names) - set(want))
    wrong = sorted(f"{n} is {names[n]} (expected {want[n]})" for n in set(want) & set(names) if names[n] != want[n])
    _fail(path, "not a ddm_neuro NIR network: " + "; ".join(
        x for x in (f"missing nodes {missing}" if missing else "", f"unexpected nodes {extra}" if extra else "",
                    ", ".join(wrong)) if x)
        + f" (expected nodes {', '.join(f'{k}: {v}' for k, v in expected.items())})")


def _check_edges(path, edges, expected):
    edges = {(str(a), str(b)) for a, b in edges}
    if edges != set(expected):
        _fail(path, f"not a ddm_neuro NIR network: edges differ (missing {sorted(set(expected) - edges)}, "
                    f"unexpected {sorted(edges - set(expected))})")


def read_network(path):
    """Read and check an NIR file written by :func:`exporters.nir.export.export`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    NIRNetwork

    Raises
    ------
    NIRFileError
        The file is missing or not NIR; or its nodes, edges, shapes, neuron
        parameters or metadata differ from the exported layout (the message
        names what differs).
    """
    import nir

    path = Path(path)
    if not path.is_file():
        _fail(path, "no such NIR file")
    try:
        graph = nir.read(path)
    except Exception as exc:  # h5py, KeyError, ValueError, ...: all mean "not a readable NIR file"
        text = str(exc).splitlines()[0][:120] if str(exc) else ""
        _fail(path, f"not a readable NIR file ({type(exc).__name__}: {text})")
    meta = graph.metadata or {}
    try:
        info = json.loads(meta["ddm_neuro"])
    except (KeyError, TypeError, ValueError):
        _fail(path, "an NIR graph without ddm_neuro metadata (metadata['ddm_neuro'] missing or not JSON); "
                    "only files written by 'ddm-neuro export --format nir' can be run here")
    if info.get("format_version") != FORMAT_VERSION:
        _fail(path, f"format version {info.get('format_version')!r}, this reader knows {FORMAT_VERSION} "
                    "(export the model again)")
    _check_nodes(path, graph.nodes, NODES, optional=("input_latent",))
    has_latent_input = "input_latent" in graph.nodes
    _check_edges(path, graph.edges, [e for e in EDGES if has_latent_input or "input_latent" not in e])
    _check_nodes(path, graph.nodes["rnn"].nodes, RNN_NODES)
    _check_edges(path, graph.nodes["rnn"].edges, RNN_EDGES)
    lif, li = graph.nodes["rnn"].nodes["rnn.lif"], graph.nodes["latent"]
    n, d = int(np.size(lif.v_threshold)), int(np.size(li.tau))
    width = int(graph.nodes["input"].input_type["input"][0])
    k, m = int(info.get("n_inputs", -1)), len(info.get("inputs", {}).get("noise", []))
    shapes = {"affine.weight": (np.shape(graph.nodes["affine"].weight), (n, width)),
              "affine.bias": (np.shape(graph.nodes["affine"].bias), (n,)),
              "rnn.recurrent.weight": (np.shape(graph.nodes["rnn"].nodes["rnn.recurrent"].weight), (n, n)),
              "readout.weight": (np.shape(graph.nodes["readout"].weight), (d, n)),
              "readout.bias": (np.shape(graph.nodes["readout"].bias), (d,)),
              "metadata init_current": (np.shape(meta.get("init_current")), (n, d + 1 + k))}
    if has_latent_input:
        shapes["input_latent.weight"] = (np.shape(graph.nodes["input_latent"].weight), (d, width))
    bad = [f"{name} has shape {got}, expected {want}" for name, (got, want) in shapes.items() if tuple(got) != want]
    if bad or n != info.get("n_neurons") or d != info.get("dim") or width != max(k + m, 1):
        _fail(path, "shapes differ from the exported layout: " + "; ".join(
            bad or [f"N, d, width = {n}, {d}, {width} but the metadata says {info.get('n_neurons')}, "
                    f"{info.get('dim')}, {k} inputs + {m} noise channels"]))
    dt = float(info["dt"])
    checks = {"v_leak = 0": np.allclose(lif.v_leak, 0), "v_threshold = 1": np.allclose(lif.v_threshold, 1),
              "v_reset = 0": np.allclose(getattr(lif, "v_reset", None) if getattr(lif, "v_reset", None) is not None
                                         else 0, 0),
              "r = tau_mem/dt": np.allclose(lif.r, lif.tau_mem / dt, rtol=1e-5),
              "w_in = tau_syn/dt": np.allclose(lif.w_in, lif.tau_syn / dt, rtol=1e-5),
              "latent r = tau/dt": np.allclose(li.r, li.tau / dt, rtol=1e-5),
              "latent tau = tau_syn": np.allclose(li.tau, lif.tau_syn[0], rtol=1e-5)}
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        _fail(path, f"neuron parameters break the exported convention (dt = {dt:g} s): {', '.join(bad)} fails")
    return NIRNetwork(path=path, graph=graph, info=info, dt=dt, n_neurons=n, dim=d, n_inputs=k, n_noise=m,
                      width=width, init_current=np.asarray(meta["init_current"], dtype=np.float64),
                      init_states=np.asarray(meta["init_states"], dtype=np.float64))
