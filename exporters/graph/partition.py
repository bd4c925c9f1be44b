r"""Neurons onto cores: a partition that keeps synapses, and their weight, inside cores.

Neuromorphic chips group neurons into cores of a fixed size (Loihi: 1024,
SpiNNaker: 256 per ARM core under sPyNNaker); a synapse between two cores
costs a message on the chip's network each time its source spikes. Given the
recurrent weights ``W`` (synapse ``j -> i`` where ``W[i, j] != 0``) and a core
size ``s``, :func:`partition_network` assigns the N neurons to
``m = ceil(N / s)`` cores of at most ``s`` neurons (sizes differ by at most
one) so as to keep little of the connectivity between cores.

**Objective.** ``"synapses"``: the number of cross-core synapses;
``"weight"``: their weight mass ``sum_{core(i) != core(j)} |W[i, j]|``;
``"auto"`` (default): synapses when fewer than half of the pairs are
connected, else weight. The fitted networks' ``W = E K`` is dense (every pair
is connected), so for them the count of cross-core synapses, and with it the
traffic, depends only on the core sizes (``1 - sum_c s_c^2 / N^2``) and only
the weight mass can be moved inside cores.

**Method** (``"spectral-kl"``). Recursive bisection: a set of neurons that
must fill ``m`` cores is split into parts for ``ceil(m/2)`` and
``floor(m/2)`` cores. Each split starts from the better of two spectral
orderings of ``A = |W| + |W|^T`` (the Fiedler vector of its Laplacian, which
finds clusters in sparse graphs, and its leading eigenvector, which puts the
strongly connected neurons together, the smaller cut in dense graphs), is
refined by the Kernighan-Lin heuristic of networkx
(:func:`networkx.algorithms.community.kernighan_lin_bisection`, on ``A``
restricted to each neuron's ``knn`` strongest neighbours because KL on a dense
graph is slow in networkx; kept only where it lowers the exact cut), and
polished by greedy pair swaps on the exact cut of the dense ``A``
(:func:`_polish`). ``"random"`` is the baseline: a random permutation cut
into the same core sizes.

**Report.** Totals and per core: neurons, synapses inside, synapses coming in
from and going out to other cores, weight mass likewise, and, given firing
rates, the cross-core traffic: synaptic events per second
(``sum r_j`` over cross-core synapses ``j -> i``) and spike messages per second
(``sum_j r_j`` times the number of other cores holding a target of ``j``:
one multicast packet per destination core, as chip routers send them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ddm_neuro.errors import DDMError

METHODS = ("spectral-kl", "random")
OBJECTIVES = ("auto", "synapses", "weight")


@dataclass
class Partition:
    """A core assignment and its figures.

    Attributes
    ----------
    core : ndarray (N,) of int
        Core of each neuron, ``0 .. n_cores - 1``.
    core_size : int
        The core capacity it was built for.
    method : str
    objective : str
        ``"synapses"`` or ``"weight"``: what the assignment minimised across cores.
    totals : dict
        ``neurons``, ``cores``, ``synapses``, ``synapses_cross``,
        ``synapse_cross_fraction``, ``weight_cross_fraction``, and with rates
        ``synaptic_events_cross_per_s``, ``spike_messages_cross_per_s``.
    cores : list of dict
        Per core: ``core``, ``neurons``, ``synapses_inside``, ``synapses_in``,
        ``synapses_out``, ``weight_inside``, ``weight_in``, ``weight_out`` and
        with rates ``spike_messages_out_per_s``, ``spike_messages_in_per_s``.
    baseline : dict or None
        ``totals`` of a random assignment with the same core sizes.
    limits : dict
        The preset or core size used (``preset``, ``core_size``, ``max_neurons``, ``fan_in``).
    """

    core: np.ndarray
    core_size: int
    method: str
    objective: str
    totals: dict
    cores: list
    baseline: dict | None = None
    limits: dict = field(default_factory=dict)

    def to_dict(self):
        """JSON-able form (``partition.json``)."""
        return {"format": "ddm_neuro.partition", "version": 1, "method": self.method, "objective": self.objective,
                "core_size": self.core_size, "limits": self.limits, "totals": self.totals,
                "random_baseline": self.baseline, "cores": self.cores, "core_of_neuron": self.core.tolist()}

    def summary(self):
        """A few lines for the terminal."""
        t = self.totals
        lines = [f"partition: {t['neurons']} neurons on {t['cores']} core(s) of <= {self.core_size} "
                 f"({self.method}, minimising cross-core {self.objective})",
                 f"  cross-core synapses {t['synapses_cross']} of {t['synapses']} "
                 f"({100 * t['synapse_cross_fraction']:.1f} %), weight mass {100 * t['weight_cross_fraction']:.1f} %"]
        if self.baseline is not None:
            b = self.baseline
            lines.append(f"  random assignment:  synapses {100 * b['synapse_cross_fraction']:.1f} %, "
                         f"weight mass {100 * b['weight_cross_fraction']:.1f} %")
        if "spike_messages_cross_per_s" in t:
            lines.append(f"  cross-core traffic {t['spike_messages_cross_per_s']:.4g} spike messages/s, "
                         f"{t['synaptic_events_cross_per_s']:.4g} synaptic events/s")
        return "\n".join(lines)


def resolve_limits(core_size=None, preset=None):
    """The core size and chip limits from ``core_size`` and/or a preset name.

    An explicit ``core_size`` overrides the preset's; the preset's other limits
    (``max_neurons``, ``fan_in``) still apply.

    Returns
    -------
    dict
        ``preset``, ``core_size``, ``max_neurons``, ``fan_in``.
    """
    from ddm_neuro.presets import get_preset

    limits = {"preset": preset, "core_size": None, "max_neurons": None, "fan_in": None}
    if preset is not None:
        p = get_preset(preset)
        limits.update(core_size=p["core_size"], max_neurons=p["max_neurons"], fan_in=p["fan_in"])
    if core_size is not None:
        if isinstance(core_size, bool) or not isinstance(core_size, (int, np.integer)):
            raise DDMError(f"core_size must be an integer >= 1 (got {core_size!r})")
        limits["core_size"] = int(core_size)
    if limits["core_size"] is None:
        raise DDMError("partition: give a core size (--core-size) or a chip preset (--preset)")
    if limits["core_size"] < 1:
        raise DDMError(f"core_size must be an integer >= 1 (got {limits['core_size']})")
    return limits


def check_limits(weights, limits):
    """Refuse a network a chip cannot hold, naming the limit (total neurons, fan-in)."""
    n = weights.shape[0]
    name = f"preset {limits['preset']!r}" if limits.get("preset") else "the given limits"
    if limits.get("max_neurons") is not None and n > limits["max_neurons"]:
        raise DDMError(f"the network has {n} neurons but {name} holds at most {limits['max_neurons']} "
                       "neurons in total; fit a smaller network (-n) or choose a larger chip")
    if limits.get("fan_in") is not None:
        fan_in = np.count_nonzero(weights, axis=1)
        worst = int(fan_in.argmax())
        if fan_in[worst] > limits["fan_in"]:
            raise DDMError(f"neuron {worst} has {int(fan_in[worst])} incoming synapses but {name} allows a "
                           f"fan-in of at most {limits['fan_in']}; sparsify the network first")


def _balanced_sizes(n, m):
    return [n // m + (1 if c < n % m else 0) for c in range(m)]


def _cut(A, part):
    """Weight of the edges of the symmetric ``A`` between ``part`` (bool) and the rest."""
    return float(A[np.ix_(part, ~part)].sum())


def _spectral_orders(A):
    """Two orderings of the nodes of the symmetric weights ``A``: by the Fiedler vector of its
    Laplacian (sparse, clustered graphs) and by its leading eigenvector (dense graphs, where the
    cut is smallest with the strongly connected neurons together)."""
    from scipy.linalg import eigh

    n = A.shape[0]
    if n <= 2:
        return [np.arange(n)]
    L = np.diag(A.sum(axis=1)) - A
    _, fiedler = eigh(L, subset_by_index=[1, 1], driver="evr")
    _, perron = eigh(A, subset_by_index=[n - 1, n - 1], driver="evr")
    return [np.argsort(v[:, 0], kind="stable") for v in (fiedler, perron)]


def _polish(A, part, candidates=32, max_swaps=None):
    """Greedy pair swaps between the two sides while one lowers the exact cut of ``A``.

    ``gain[v]``: how much the cut drops if v alone changes side (external minus
    internal weight); swapping a and b gains ``gain[a] + gain[b] - 2 A[a, b]``.
    The best swap among the ``candidates`` best nodes of each side is made and
    the gains are updated in O(N) per swap.
    """
    part = part.copy()
    side = np.where(part, 1.0, -1.0)
    # external - internal weight of each node: sum_u A[v, u] * (side[v] != side[u]) - (==)
    gain = -side * (A @ side)
    for _ in range(max_swaps or 4 * A.shape[0]):
        a_all, b_all = np.flatnonzero(part), np.flatnonzero(~part)
        k = min(candidates, len(a_all), len(b_all))
        if k == 0:
            break
        a = a_all[np.argpartition(-gain[a_all], k - 1)[:k]]
        b = b_all[np.argpartition(-gain[b_all], k - 1)[:k]]
        G = gain[a][:, None] + gain[b][None, :] - 2.0 * A[np.ix_(a, b)]
        x, y = np.unravel_index(np.argmax(G), G.shape)
        if G[x, y] <= 1e-12 * max(float(np.abs(gain).max()), 1e-300):
            break
        a, b = a[x], b[y]
        # v's gain changes by 2 side[v] (side[a] A[v, a] + side[b] A[v, b]) (a and b flip)
        gain += 2.0 * side * (side[a] * A[:, a] + side[b] * A[:, b])
        side[a], side[b] = -side[a], -side[b]
        part[a], part[b] = False, True
        gain[a] = -side[a] * (A[a] @ side)
        gain[b] = -side[b] * (A[b] @ side)
    return part


def _knn_graph(A, knn):
    """networkx Graph on A's strongest ``knn`` neighbours per node (union, symmetric)."""
    import networkx as nx

    n = A.shape[0]
    G = nx.Graph()
    G.add_nodes_from(range(n))
    if knn >= n - 1:
        i, j = np.nonzero(np.triu(A, 1))
    else:
        top = np.argpartition(-A, knn, axis=1)[:, :knn]
        rows = np.repeat(np.arange(n), knn)
        i, j = np.minimum(rows, top.ravel()), np.maximum(rows, top.ravel())
        keep = (i != j) & (A[i, j] > 0)
        i, j = i[keep], j[keep]
    G.add_weighted_edges_from((int(a), int(b), float(A[a, b])) for a, b in zip(i, j))
    return G


def _bisect(A, n_first, knn, rng):
    """Split the nodes of ``A`` into a part of ``n_first`` nodes (bool mask) and the rest."""
    from networkx.algorithms.community import kernighan_lin_bisection

    n = A.shape[0]
    if n_first in (0, n) or not A.any():
        part = np.zeros(n, dtype=bool)
        part[:n_first] = True
        return part
    best = None
    for order in _spectral_orders(A):
        part = np.zeros(n, dtype=bool)
        part[order[:n_first]] = True
        if best is None or _cut(A, part) < _cut(A, best):
            best = part
    G = _knn_graph(A, knn)
    first = set(np.flatnonzero(best).tolist())
    a, _ = kernighan_lin_bisection(G, partition=(first, set(range(n)) - first), weight="weight",
                                   seed=int(rng.integers(2 ** 31)))
    refined = np.zeros(n, dtype=bool)
    refined[list(a)] = True
    if refined.sum() == n_first and _cut(A, refined) < _cut(A, best):
        best = refined
    return _polish(A, best)


def _assign(A, nodes, sizes, core, first_id, knn, rng):
    if len(sizes) == 1:
        core[nodes] = first_id
        return
    half = (len(sizes) + 1) // 2
    part = _bisect(A[np.ix_(nodes, nodes)], sum(sizes[:half]), knn, rng)
    _assign(A, nodes[part], sizes[:half], core, first_id, knn, rng)
    _assign(A, nodes[~part], sizes[half:], core, first_id + half, knn, rng)


def random_assignment(n, core_size, seed=0):
    """Neurons on ``ceil(n / core_size)`` cores of balanced sizes, in random order, (n,) int."""
    m = math.ceil(n / core_size)
    core = np.repeat(np.arange(m), _balanced_sizes(n, m))
    return np.random.default_rng(seed).permutation(core)


def partition_figures(weights, core, rates=None):
    """Totals and per-core figures of the assignment ``core`` (see :class:`Partition`).

    Parameters
    ----------
    weights : ndarray (N, N)
        ``W[i, j]``: synapse ``j -> i`` where nonzero.
    core : ndarray (N,) of int
    rates : ndarray (N,), optional
        Firing rates (Hz) for the traffic figures.

    Returns
    -------
    totals : dict
    cores : list of dict
    """
    W = np.asarray(weights, dtype=np.float64)
    n = W.shape[0]
    core = np.asarray(core)
    m = int(core.max()) + 1 if n else 0
    syn = W != 0
    mass = np.abs(W)
    onehot = np.zeros((n, m))
    onehot[np.arange(n), core] = 1.0
    # (target core, source core) block sums
    count_cc = onehot.T @ syn.astype(np.float64) @ onehot
    mass_cc = onehot.T @ mass @ onehot
    n_syn, total_mass = int(syn.sum()), float(mass.sum())
    cross_pairs = core[:, None] != core[None, :]
    inside = int(round(np.trace(count_cc)))
    cross = n_syn - inside
    totals = {"neurons": n, "cores": m, "synapses": n_syn, "synapses_cross": cross,
              "synapse_cross_fraction": cross / n_syn if n_syn else 0.0,
              "weight_cross_fraction": float(mass[cross_pairs].sum() / total_mass) if total_mass else 0.0}
    cores = []
    for c in range(m):
        cores.append({"core": c, "neurons": int(onehot[:, c].sum()),
                      "synapses_inside": int(round(count_cc[c, c])),
                      "synapses_in": int(round(count_cc[c].sum() - count_cc[c, c])),
                      "synapses_out": int(round(count_cc[:, c].sum() - count_cc[c, c])),
                      "weight_inside": float(mass_cc[c, c]),
                      "weight_in": float(mass_cc[c].sum() - mass_cc[c, c]),
                      "weight_out": float(mass_cc[:, c].sum() - mass_cc[c, c])})
    if rates is not None:
        r = np.asarray(rates, dtype=np.float64)
        cross_syn = syn & cross_pairs
        totals["synaptic_events_cross_per_s"] = float(cross_syn.sum(axis=0) @ r)
        # targets of source j in each core: (m, N); a packet per other core with >= 1 target
        reach = (onehot.T @ syn.astype(np.float64)) > 0
        reach[core, np.arange(n)] = False
        msgs = reach * r[None, :]  # msgs[c, j]: messages/s from j into core c
        totals["spike_messages_cross_per_s"] = float(msgs.sum())
        out_per_core = msgs.sum(axis=0) @ onehot
        for c in range(m):
            cores[c]["spike_messages_out_per_s"] = float(out_per_core[c])
            cores[c]["spike_messages_in_per_s"] = float(msgs[c].sum())
    return totals, cores


def partition_network(weights, core_size=None, *, preset=None, rates=None, method="spectral-kl",
                      objective="auto", seed=0, knn=32, baseline=True):
    """Assign neurons to cores of at most ``core_size`` neurons, keeping connectivity inside cores.

    Parameters
    ----------
    weights : array (N, N)
        Recurrent weights, ``W[i, j]`` for the synapse ``j -> i`` (nonzero: a synapse).
    core_size : int, optional
        Neurons per core (>= 1). Overrides the preset's core size.
    preset : str, optional
        A chip from :data:`ddm_neuro.presets.PRESETS` (loihi, loihi2, xylo, spinnaker);
        its total neuron limit and fan-in limit are checked.
    rates : array (N,), optional
        Firing rates in Hz, for the cross-core traffic figures.
    method : {"spectral-kl", "random"}
    objective : {"auto", "synapses", "weight"}
        What to keep inside cores: synapse counts, weight mass, or (auto)
        counts for a sparse ``W`` (under half the pairs connected), else weight.
    seed : int
        Seeds the Kernighan-Lin refinement and the random baseline.
    knn : int
        Neighbours per neuron in the graph the refinement works on.
    baseline : bool
        Also report a random assignment with the same core sizes.

    Returns
    -------
    Partition

    Raises
    ------
    DDMError
        ``core_size`` < 1 or not an integer, an unknown preset, a network larger
        than the chip's total neuron limit or with a fan-in above its limit.
    """
    W = np.asarray(weights, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise DDMError(f"partition: weights must be a square (N, N) matrix with N >= 1 (got shape {W.shape})")
    if not np.all(np.isfinite(W)):
        raise DDMError("partition: weights contain NaN or infinite values")
    if method not in METHODS:
        raise DDMError(f"partition: unknown method {method!r} (known: {', '.join(METHODS)})")
    if objective not in OBJECTIVES:
        raise DDMError(f"partition: unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")
    if rates is not None:
        rates = np.asarray(rates, dtype=np.float64)
        if rates.shape != (W.shape[0],) or not np.all(np.isfinite(rates)) or (rates < 0).any():
            raise DDMError(f"partition: rates must be {W.shape[0]} finite values >= 0 (got shape {rates.shape})")
    limits = resolve_limits(core_size, preset)
    check_limits(W, limits)
    n, s = W.shape[0], limits["core_size"]
    rng = np.random.default_rng(seed)
    if objective == "auto":
        objective = "synapses" if np.count_nonzero(W) < 0.5 * n * n else "weight"
    if method == "random":
        core, objective = random_assignment(n, s, seed), "nothing"
    else:
        M = (W != 0).astype(np.float64) if objective == "synapses" else np.abs(W)
        A = M + M.T
        np.fill_diagonal(A, 0.0)  # a self-synapse is inside its core whatever the assignment
        core = np.zeros(n, dtype=np.int64)
        _assign(A, np.arange(n), _balanced_sizes(n, math.ceil(n / s)), core, 0, max(int(knn), 1), rng)
    totals, cores = partition_figures(W, core, rates)
    base = partition_figures(W, random_assignment(n, s, seed), rates)[0] if baseline else None
    return Partition(core=core, core_size=s, method=method, objective=objective, totals=totals, cores=cores,
                     baseline=base, limits=limits)
