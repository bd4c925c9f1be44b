"""Read an exported NIR file back and check that it has the structure :mod:`.export` writes.

A consumer run needs more than a valid NIR graph: the node names, types,
shapes, the ``r = tau_mem/dt`` and ``w_in = tau_syn/dt`` convention and the
metadata of :mod:`.export`. :func:`read_network` checks all of them and says
what differs, so a file of another structure fails with one clear line
instead of deep inside a consumer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError

from .export import EDGES, FORMAT_VERSION, NODES


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
    n_neurons, dim, n_inputs : int
        N, d and the width of the graph input (``max(k, 1)``).
    host_sigma2, host_rate_coef : ndarray (N,)
        Private host noise ``max(host_sigma2 + host_rate_coef * phi(x), 0)`` (Hz).
    host_latent : ndarray (N, d)
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
    host_sigma2: np.ndarray
    host_rate_coef: np.ndarray
    host_latent: np.ndarray
    init_current: np.ndarray
    init_states: np.ndarray

    @property
    def time_scale(self):
        """T, seconds of network time per SDE time unit."""
        return float(self.info["time_scale"])

    def rate(self, current, xp=np):
        """The fitted rate curve ``phi(x)`` (Hz) at ``x = I / current_scale``, for the host noise."""
        rc = self.info["rate_curve"]
        j = current / float(self.info["current_scale"]) - 1.0
        pos = j > 0
        jj = xp.where(pos, j, xp.ones_like(j))
        return xp.where(pos, 1.0 / (rc["tau_ref"] + rc["tau_m"] * xp.log1p(1.0 / jj)), xp.zeros_like(j))

    def readout(self, current):
        """Latent ``z = readout.weight @ I + readout.bias`` for synaptic currents I (..., N), numpy."""
        node = self.graph.nodes["readout"]
        return np.asarray(current, dtype=np.float64) @ np.asarray(node.weight, np.float64).T + node.bias

    def initial_current(self, z0, u0=None):
        """Synaptic currents (..., N) at latent states z0 (..., d), the others at rest for input u0."""
        z0 = np.asarray(z0, dtype=np.float64)
        k = int(self.info["n_inputs"])
        u = np.zeros(z0.shape[:-1] + (k,)) if u0 is None else np.broadcast_to(u0, z0.shape[:-1] + (k,))
        full = np.concatenate([z0, np.ones(z0.shape[:-1] + (1,)), u], axis=-1)
        return full @ self.init_current.T


def _fail(path, what):
    raise NIRFileError(f"{path}: {what}")


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
    found = {name: type(node).__name__ for name, node in graph.nodes.items()}
    if found != NODES:
        missing = sorted(set(NODES) - set(found))
        extra = sorted(set(found) - set(NODES))
        wrong = sorted(f"{n} is {found[n]} (expected {NODES[n]})" for n in set(NODES) & set(found)
                       if found[n] != NODES[n])
        _fail(path, "not a ddm_neuro NIR network: " + "; ".join(
            x for x in (f"missing nodes {missing}" if missing else "", f"unexpected nodes {extra}" if extra else "",
                        ", ".join(wrong)) if x)
            + f" (expected nodes {', '.join(f'{k}: {v}' for k, v in NODES.items())})")
    edges = {(str(a), str(b)) for a, b in graph.edges}
    if edges != set(EDGES):
        _fail(path, f"not a ddm_neuro NIR network: edges differ (missing {sorted(set(EDGES) - edges)}, "
                    f"unexpected {sorted(edges - set(EDGES))})")
    meta = graph.metadata or {}
    try:
        info = json.loads(meta["ddm_neuro"])
    except (KeyError, TypeError, ValueError):
        _fail(path, "an NIR graph without ddm_neuro metadata (metadata['ddm_neuro'] missing or not JSON); "
                    "only files written by 'ddm-neuro export --format nir' can be run here")
    if info.get("format_version") != FORMAT_VERSION:
        _fail(path, f"format version {info.get('format_version')!r}, this reader knows {FORMAT_VERSION}")
    lif, n = graph.nodes["lif"], None
    n = int(np.size(lif.v_threshold))
    d = int(np.size(graph.nodes["output"].output_type["output"]) and graph.nodes["output"].output_type["output"][0])
    k = int(graph.nodes["input"].input_type["input"][0])
    shapes = {"affine.weight": (np.shape(graph.nodes["affine"].weight), (n, k)),
              "affine.bias": (np.shape(graph.nodes["affine"].bias), (n,)),
              "recurrent.weight": (np.shape(graph.nodes["recurrent"].weight), (n, n)),
              "readout.weight": (np.shape(graph.nodes["readout"].weight), (d, n)),
              "readout.bias": (np.shape(graph.nodes["readout"].bias), (d,)),
              "metadata host_noise_sigma2": (np.shape(meta.get("host_noise_sigma2")), (n,)),
              "metadata host_noise_rate_coef": (np.shape(meta.get("host_noise_rate_coef")), (n,)),
              "metadata host_noise_latent": (np.shape(meta.get("host_noise_latent")), (n, d)),
              "metadata init_current": (np.shape(meta.get("init_current")), (n, d + 1 + int(info.get("n_inputs", -1))))}
    bad = [f"{name} has shape {got}, expected {want}" for name, (got, want) in shapes.items() if tuple(got) != want]
    if bad or n != info.get("n_neurons") or d != info.get("dim") or k != max(int(info.get("n_inputs", 0)), 1):
        _fail(path, "shapes differ from the exported layout: " + "; ".join(
            bad or [f"N, d, k = {n}, {d}, {k} but the metadata says {info.get('n_neurons')}, {info.get('dim')}, "
                    f"{info.get('n_inputs')}"]))
    dt = float(info["dt"])
    checks = {"v_leak = 0": np.allclose(lif.v_leak, 0), "v_reset = 0": np.allclose(lif.v_reset, 0),
              "v_threshold = 1": np.allclose(lif.v_threshold, 1),
              "r = tau_mem/dt": np.allclose(lif.r, lif.tau_mem / dt, rtol=1e-5),
              "w_in = tau_syn/dt": np.allclose(lif.w_in, lif.tau_syn / dt, rtol=1e-5)}
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        _fail(path, f"CubaLIF parameters break the exported convention (dt = {dt:g} s): {', '.join(bad)} fails")
    return NIRNetwork(path=path, graph=graph, info=info, dt=dt, n_neurons=n, dim=d, n_inputs=k,
                      host_sigma2=np.asarray(meta["host_noise_sigma2"], dtype=np.float64),
                      host_rate_coef=np.asarray(meta["host_noise_rate_coef"], dtype=np.float64),
                      host_latent=np.asarray(meta["host_noise_latent"], dtype=np.float64),
                      init_current=np.asarray(meta["init_current"], dtype=np.float64),
                      init_states=np.asarray(meta["init_states"], dtype=np.float64))
