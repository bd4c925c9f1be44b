"""Graph export (GraphML, GEXF, node-link JSON), loading back, and core partitioning."""
import json
import math

import numpy as np
import pytest

nx = pytest.importorskip("networkx")

from ddm_neuro.cli import main  # noqa: E402
from ddm_neuro.errors import DDMError, ModelFileError  # noqa: E402
from ddm_neuro.plugins import get_exporter  # noqa: E402
from ddm_neuro.modelio import ARRAYS  # noqa: E402
from ddm_neuro.neurons import make_neuron  # noqa: E402
from ddm_neuro.run.rate import simulate_network  # noqa: E402
from exporters.graph import load_graph, load_graph_json, partition_network  # noqa: E402
from exporters.graph.export import partition_path  # noqa: E402
from exporters.graph.partition import partition_figures, random_assignment  # noqa: E402


def _export(model, path, fmt, **options):
    return get_exporter(fmt)(model, path, mode=options.pop("mode", "rate"), force=options.pop("force", False),
                             progress=False, **options)


def _weights_from_edges(G, n):
    W = np.zeros((n, n))
    for s, t, a in G.edges(data=True):
        W[int(t), int(s)] = a["weight"]
    return W


def _assert_same_model(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert (a.w_perp is None) == (b.w_perp is None)
    if a.w_perp is not None:
        assert np.array_equal(a.w_perp, b.w_perp)
    assert a.neuron.to_dict() == b.neuron.to_dict()
    assert (a.tau, a.time_scale) == (b.tau, b.time_scale)
    assert (a.variables, a.inputs, a.sde_spec) == (b.variables, b.inputs, b.sde_spec)
    assert a.meta == b.meta


def _with_w_perp(model, seed=0):
    """Add a W_perp with D W_perp = 0 (leaves the latent SDE unchanged)."""
    rng = np.random.default_rng(seed)
    P = np.eye(model.n_neurons) - model.encoders @ model.readout
    model.w_perp = P @ rng.normal(scale=0.01, size=(model.n_neurons, model.n_neurons))
    return model


def _as_lif(model):
    model.neuron = make_neuron("lif")
    return model


# ----------------------------------------------------------------------------- formats


def test_graphml_gives_back_weights_exactly(small_model, tmp_path):
    out = _export(small_model, tmp_path / "net.graphml", "graphml")
    G = nx.read_graphml(out)  # plain networkx, no ddm_neuro
    n = small_model.n_neurons
    assert G.is_directed() and len(G) == n and G.number_of_edges() == np.count_nonzero(small_model.weights())
    assert np.array_equal(_weights_from_edges(G, n), small_model.weights())  # bit for bit
    assert G.graph["format"] == "ddm_neuro.graph" and G.graph["n_neurons"] == n
    assert np.array_equal(json.loads(G.graph["scale"]), small_model.scale)
    node = G.nodes["3"]
    assert [node[f"encoder_{a}"] for a in range(small_model.dim)] == small_model.encoders[3].tolist()
    assert [node[f"readout_{a}"] for a in range(small_model.dim)] == small_model.readout[:, 3].tolist()
    assert node["gain"] == pytest.approx(np.linalg.norm(small_model.encoders[3]), rel=1e-15)


def test_json_round_trip_is_identical(small_model, tmp_path):
    out = _export(small_model, tmp_path / "net.json", "json")
    back = load_graph_json(out)
    _assert_same_model(small_model, back)
    a = simulate_network(small_model, 0.5, trials=2, seed=7)
    b = simulate_network(back, 0.5, trials=2, seed=7)
    assert np.array_equal(a.z, b.z) and np.array_equal(a.t, b.t)
    G = nx.node_link_graph(json.loads(out.read_text()))  # readable with networkx alone
    assert G.is_directed() and np.array_equal(_weights_from_edges(G, small_model.n_neurons), small_model.weights())


def test_graphml_loads_back_too_and_w_perp_survives(small_model, tmp_path):
    model = _with_w_perp(small_model)
    for fmt in ("json", "graphml"):
        back = load_graph(_export(model, tmp_path / f"net.{fmt}", fmt))
        _assert_same_model(model, back)
    G = nx.read_graphml(tmp_path / "net.graphml")
    assert np.array_equal(_weights_from_edges(G, model.n_neurons), model.weights())


def test_gexf_readable(small_model, tmp_path):
    import xml.etree.ElementTree as ET

    out = _export(small_model, tmp_path / "net.gexf", "gexf")
    G = nx.read_gexf(out)
    assert G.is_directed() and len(G) == small_model.n_neurons
    assert np.array_equal(_weights_from_edges(G, small_model.n_neurons), small_model.weights())
    assert G.nodes["0"]["bias"] == small_model.bias[0]
    ns = {"g": "http://www.gexf.net/1.2draft"}
    desc = ET.parse(out).getroot().find("g:meta/g:description", ns)
    assert json.loads(desc.text)["model_id"] == small_model.meta["model_id"]
    with pytest.raises(ModelFileError, match="GEXF holds no graph attributes"):
        load_graph(out)


def test_spiking_mode_records_lif_parameters(small_model, tmp_path):
    model = _as_lif(small_model)
    out = _export(model, tmp_path / "net.json", "json", mode="spiking")
    data = json.loads(out.read_text())
    assert data["graph"]["mode"] == "spiking" and data["graph"]["neuron"] == "lif"
    node = data["nodes"][0]
    assert (node["tau_m"], node["tau_ref"], node["v_threshold"], node["v_reset"], node["tau_syn"]) == \
        (model.neuron.params["tau_m"], model.neuron.params["tau_ref"], 1.0, 0.0, model.tau)
    assert node["rate_hz"] >= 0
    _assert_same_model(model, load_graph_json(out))


def test_spiking_mode_refused_for_tanh(small_model, tmp_path):
    with pytest.raises(DDMError, match="spiking mode needs LIF"):
        _export(small_model, tmp_path / "net.json", "json", mode="spiking")
    assert not (tmp_path / "net.json").exists()


def test_never_overwrites_without_force(small_model, tmp_path):
    out = tmp_path / "net.json"
    out.write_text("keep")
    with pytest.raises(DDMError, match="already exists"):
        _export(small_model, out, "json")
    assert out.read_text() == "keep"
    _export(small_model, out, "json", force=True)
    assert load_graph_json(out).n_neurons == small_model.n_neurons


# ----------------------------------------------------------------------------- command line


def test_cli_export_end_to_end(small_model_path, tmp_path, capsys):
    out = tmp_path / "net.graphml"
    assert main(["export", str(small_model_path), "--format", "graphml", "-o", str(out),
                 "--core-size", "8", "--quiet"]) == 0
    G = nx.read_graphml(out)
    cores = [a["core"] for _, a in G.nodes(data=True)]
    part = json.loads(partition_path(out).read_text())
    assert part["core_of_neuron"] == [G.nodes[str(j)]["core"] for j in range(len(G))]
    assert max(np.bincount(cores)) <= 8 and part["totals"]["cores"] == math.ceil(len(G) / 8)
    # again without --force: refused, nothing changed
    before = out.read_bytes()
    assert main(["export", str(small_model_path), "--format", "graphml", "-o", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    js = tmp_path / "net.json"
    assert main(["export", str(small_model_path), "--format", "json", "-o", str(js), "--quiet"]) == 0
    assert load_graph_json(js).n_neurons == len(G)


@pytest.mark.parametrize("args, message", [
    (["--core-size", "0"], "core_size must be an integer >= 1 (got 0)"),
    (["--preset", "truenorth"], "unknown hardware preset 'truenorth'"),
    (["--mode", "spiking"], "spiking mode needs LIF"),
    (["--mode", "burst"], "unknown mode 'burst'"),
])
def test_cli_export_errors(small_model_path, tmp_path, capsys, args, message):
    out = tmp_path / "net.json"
    assert main(["export", str(small_model_path), "--format", "json", "-o", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not partition_path(out).exists()
    assert list(tmp_path.iterdir()) == []  # no temporary files left either


# ----------------------------------------------------------------------------- bad graph files


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["graph"].pop("tau"), "graph attribute 'tau' is missing"),
    (lambda d: d["graph"].pop("format"), "not a ddm_neuro network graph"),
    (lambda d: d["graph"].update(version=99), "version 99 is newer"),
    (lambda d: d["graph"].update(scale="[1.0]"), "'scale' has shape (1,), expected (2,)"),
    (lambda d: d["nodes"][5].pop("encoder_1"), "node 5 lacks attribute 'encoder_1'"),
    (lambda d: d["nodes"][2].update(bias="x"), "node 2 attribute 'bias' is not a finite number"),
    (lambda d: d["nodes"].pop(), "the graph has 31 nodes, its attribute n_neurons says 32"),
    (lambda d: d["edges"][4].update(weight=d["edges"][4]["weight"] * 1.5), "edge weight(s) differ"),
    (lambda d: d["edges"][0].pop("weight"), "lacks attribute 'weight'"),
    (lambda d: d.update(directed=False), "not directed"),
    (lambda d: d.pop("edges"), "no 'edges' list"),
])
def test_bad_graph_json_errors(small_model, tmp_path, edit, message):
    assert small_model.n_neurons == 32 and small_model.dim == 2  # the messages above assume these
    path = _edit_json(_export(small_model, tmp_path / "net.json", "json"), edit)
    with pytest.raises(ModelFileError, match=None) as info:
        load_graph_json(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unreadable_graph_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not a readable JSON graph"):
        load_graph_json(tmp_path / "a.json")
    with pytest.raises(ModelFileError, match="no such graph file"):
        load_graph_json(tmp_path / "missing.json")
    (tmp_path / "b.graphml").write_text("<graphml")
    with pytest.raises(ModelFileError, match="not a readable GraphML"):
        load_graph(tmp_path / "b.graphml")


# ----------------------------------------------------------------------------- partitioning


def _planted(n_groups=4, size=30, p_in=0.3, p_out=0.02, seed=1):
    """A sparse network with hidden groups, neurons shuffled so index order does not reveal them."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    group = rng.permutation(np.repeat(np.arange(n_groups), size))
    same = group[:, None] == group[None, :]
    W = np.where(rng.random((n, n)) < np.where(same, p_in, p_out), rng.normal(size=(n, n)), 0.0)
    return W, group


def test_partition_covers_every_neuron_within_core_size():
    W, _ = _planted(n_groups=3, size=37)  # 111 neurons: 12 cores of 9 or 10
    part = partition_network(W, 10, seed=0)
    assert part.core.shape == (111,) and part.core.min() == 0
    sizes = np.bincount(part.core)
    assert len(sizes) == math.ceil(111 / 10) and sizes.max() <= 10 and sizes.sum() == 111
    assert [c["neurons"] for c in part.cores] == sizes.tolist()


def test_partition_beats_random_on_sparse_network():
    W, group = _planted()
    part = partition_network(W, 30, seed=0)
    assert part.objective == "synapses"  # "auto" on a sparse W
    planted = partition_figures(W, group)[0]["synapses_cross"]
    random = [partition_figures(W, random_assignment(len(W), 30, seed=s))[0]["synapses_cross"]
              for s in range(100, 120)]  # not seed 1: _planted draws its groups the same way
    # the planted groups are a perfect answer; random assignments cut ~3/4 of all synapses
    assert part.totals["synapses_cross"] <= planted < min(random)
    assert part.totals["synapses_cross"] < part.baseline["synapses_cross"]
    assert part.totals["weight_cross_fraction"] < part.baseline["weight_cross_fraction"]


def test_partition_figures_match_a_direct_count():
    rng = np.random.default_rng(2)
    n = 23
    W = np.where(rng.random((n, n)) < 0.3, rng.normal(size=(n, n)), 0.0)
    core = rng.integers(0, 4, n)
    rates = rng.uniform(0, 50, n)
    totals, cores = partition_figures(W, core, rates)
    events = msgs = 0.0
    inside = np.zeros(4, int)
    incoming = np.zeros(4, int)
    for j in range(n):
        target_cores = {int(core[i]) for i in range(n) if W[i, j] != 0 and core[i] != core[j]}
        msgs += rates[j] * len(target_cores)
        for i in range(n):
            if W[i, j] != 0:
                if core[i] == core[j]:
                    inside[core[i]] += 1
                else:
                    incoming[core[i]] += 1
                    events += rates[j]
    assert totals["synapses"] == np.count_nonzero(W)
    assert totals["synapses_cross"] == incoming.sum() == sum(c["synapses_out"] for c in cores)
    assert [c["synapses_inside"] for c in cores] == inside.tolist()
    assert [c["synapses_in"] for c in cores] == incoming.tolist()
    assert totals["synaptic_events_cross_per_s"] == pytest.approx(events, rel=1e-12)
    assert totals["spike_messages_cross_per_s"] == pytest.approx(msgs, rel=1e-12)
    assert sum(c["spike_messages_in_per_s"] for c in cores) == pytest.approx(msgs, rel=1e-12)


def test_partition_limits_errors():
    W = np.ones((5, 5))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DDMError, match="core_size must be an integer >= 1"):
            partition_network(W, bad)
    with pytest.raises(DDMError, match="give a core size"):
        partition_network(W)
    with pytest.raises(DDMError, match="1001 neurons but preset 'xylo' holds at most 1000"):
        partition_network(np.zeros((1001, 1001)), preset="xylo")
    with pytest.raises(DDMError, match="unknown objective 'speed'"):
        partition_network(W, 2, objective="speed")
    with pytest.raises(DDMError, match=r"square \(N, N\)"):
        partition_network(np.ones((3, 4)), 2)
    assert partition_network(W, preset="loihi").core_size == 1024  # the preset's core size
    assert partition_network(W, 2, preset="loihi").core.max() == 2  # an explicit size overrides it


def test_export_with_preset_and_lif_traffic(small_model, tmp_path):
    model = _as_lif(small_model)
    out = _export(model, tmp_path / "net.json", "json", preset="spinnaker", core_size=10)
    part = json.loads(partition_path(out).read_text())
    assert part["limits"]["preset"] == "spinnaker" and part["core_size"] == 10
    assert part["totals"]["spike_messages_cross_per_s"] >= 0
    back = load_graph_json(out)  # the core attribute does not get in the way of loading
    _assert_same_model(model, back)


def test_polish_ends_where_no_swap_lowers_the_cut():
    from exporters.graph.partition import _cut, _polish

    rng = np.random.default_rng(4)
    n = 20
    A = np.abs(rng.normal(size=(n, n)))
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    start = np.zeros(n, dtype=bool)
    start[rng.permutation(n)[:9]] = True
    part = _polish(A, start, candidates=n)
    assert part.sum() == 9 and _cut(A, part) < _cut(A, start)
    best = _cut(A, part)
    for a in np.flatnonzero(part):  # a local optimum of pair swaps: checked by recomputing every cut
        for b in np.flatnonzero(~part):
            swapped = part.copy()
            swapped[a], swapped[b] = False, True
            assert _cut(A, swapped) >= best - 1e-12


def test_bad_mode_refused_before_partitioning(small_model, tmp_path, monkeypatch):
    import exporters.graph.partition as partition

    def fail(*args, **kwargs):
        raise AssertionError("partitioned before checking the mode")

    monkeypatch.setattr(partition, "partition_network", fail)
    with pytest.raises(DDMError, match="spiking mode needs LIF"):
        _export(small_model, tmp_path / "net.json", "json", mode="spiking", core_size=4)
    assert list(tmp_path.iterdir()) == []


def test_json_file_is_the_node_link_form(small_model, tmp_path):
    from exporters.graph.build import graph_data, to_node_link

    model = _with_w_perp(small_model)
    out = _export(model, tmp_path / "net.json", "json")  # written edge by edge
    assert json.loads(out.read_text()) == json.loads(json.dumps(to_node_link(graph_data(model))))


def test_cli_core_size_refused_by_formats_without_partitioning(small_model_path, tmp_path, capsys):
    pytest.importorskip("brian2")
    out = tmp_path / "proj"
    assert main(["export", str(small_model_path), "--format", "brian2-cpp", "-o", str(out), "--core-size", "4",
                 "--quiet"]) == 2
    assert "--format brian2-cpp does not take --core-size" in capsys.readouterr().err
    assert not out.exists()
