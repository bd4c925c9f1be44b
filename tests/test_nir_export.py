"""NIR export: the file's structure and weights (the Output is the latent), the noise channels, refusals
and the command line, clear errors for bad files, Norse against the torch spiking simulator, the back ends.
The consumers' step-by-step schemes are in ``test_nir_consumers.py``, old readers in ``test_nir_compat.py``."""
import json
import math

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from ddm_neuro.errors import DDMError, OutputExistsError  # noqa: E402
from ddm_neuro.fit.matching import fit  # noqa: E402
from ddm_neuro.spiking.simulator import simulate_spiking  # noqa: E402
from ddm_neuro.sde.systems import get_system  # noqa: E402
from exporters.nir.export import EDGES, NODES, RNN_EDGES, RNN_NODES, SNNTORCH_DT, export  # noqa: E402
from exporters.nir.layout import NIRFileError, read_network  # noqa: E402

LIF0 = {"name": "lif", "tau_ref": 0.0, "max_rates": (200.0, 400.0)}


@pytest.fixture(scope="module")
def model():
    """2-D OU, N = 100 LIF neurons without refractory period, closed form only."""
    return fit(get_system("ou"), n_neurons=100, neuron=LIF0, steps=0, n_train=4000, n_val=1000, n_test=500,
               n_noise=100, seed=2, progress=False)


@pytest.fixture(scope="module")
def nir_path(model, tmp_path_factory):
    return export(model, tmp_path_factory.mktemp("nir") / "ou.nir", progress=False)


# ---------------------------------------------------------------- the file
def test_file_is_nir_with_the_documented_structure(model, nir_path):
    g = nir.read(nir_path)
    assert {k: type(v).__name__ for k, v in g.nodes.items()} == NODES
    assert [tuple(e) for e in g.edges] == EDGES                       # the chain first: one-edge importers follow it
    rnn = g.nodes["rnn"]
    assert {k: type(v).__name__ for k, v in rnn.nodes.items()} == RNN_NODES
    assert {tuple(e) for e in rnn.edges} == set(RNN_EDGES)
    dt, tau, tau_m = SNNTORCH_DT, model.tau, model.neuron.params["tau_m"]
    a_s, a_m = dt / tau, dt / tau_m
    lif, li = rnn.nodes["rnn.lif"], g.nodes["latent"]
    assert np.allclose(lif.tau_syn, tau) and np.allclose(lif.tau_mem, tau_m)
    assert np.allclose(lif.r, tau_m / dt) and np.allclose(lif.w_in, tau / dt)      # snnTorch's r = tau/dt
    assert np.allclose(lif.v_threshold, 1) and np.allclose(lif.v_leak, 0)
    assert np.allclose(lif.v_reset, 0)                     # left out of the file: nir >= 1.0.5 reads the default
    assert np.allclose(li.tau, tau) and np.allclose(li.r, tau / dt) and np.allclose(li.v_leak, 0)
    W, S, D = model.weights(), model.scale[:, None], model.readout
    assert np.allclose(rnn.nodes["rnn.recurrent"].weight, W * a_m / tau, rtol=1e-5, atol=1e-7 * np.abs(W).max())
    assert np.allclose(g.nodes["affine"].bias, model.bias * a_s * a_m, rtol=1e-5)
    # a spike of neuron j moves the latent by S K_j / tau, as it moves x by W_j / tau = E K_j / tau
    assert np.allclose(g.nodes["readout"].weight, S * model.decoders / tau, rtol=1e-5)
    assert np.allclose(g.nodes["readout"].bias, a_s * (S[:, 0] * (D @ model.bias) + model.center), rtol=1e-4,
                       atol=1e-7)
    # the noise reaches the latent exactly as it reaches the synaptic currents: D (affine noise) / a_m
    k = model.n_inputs
    noise_in = np.asarray(g.nodes["affine"].weight, np.float64)[:, k:]
    assert noise_in.shape[1] == model.dim and np.any(noise_in)
    assert np.allclose(S * (D @ noise_in) / a_m, g.nodes["input_latent"].weight[:, k:], rtol=1e-4,
                       atol=1e-6 * np.abs(noise_in).max() / a_m)
    assert g.metadata["time_unit"] == "s" and math.isclose(g.metadata["dt"], dt)
    assert g.metadata["nir_versions"].startswith("nir >= 1.0.4")
    net = read_network(nir_path)
    assert net.info["refractory"].startswith("none") and net.info["sde_spec"] == model.sde_spec
    # the start currents are those of the start states: z = S D I0 / a_m + c
    z0 = model.init_states[:5]
    I0 = net.initial_current(z0)
    assert np.allclose((I0 / a_m) @ (S * D).T + model.center, z0, atol=1e-9 * np.abs(z0).max())


def test_export_refuses_what_nir_cannot_hold(model, tmp_path):
    out = tmp_path / "x.nir"
    with pytest.raises(DDMError, match="holds the spiking LIF network"):
        export(model, out, mode="sde", progress=False)
    from ddm_neuro.network import LatentRNN  # a refractory period: refused once, with the whole fix
    refr = LatentRNN(**{**model.__dict__, "neuron": {**LIF0, "tau_ref": 0.002}})
    with pytest.raises(DDMError, match=r"tau_ref = 2 ms; refit: ddm-neuro fit ou --neuron lif --tau-ref 0 -n 100 "):
        export(refr, out, progress=False)
    tanh = LatentRNN(**{**model.__dict__, "neuron": {"name": "tanh"}})
    with pytest.raises(DDMError, match=r"needs LIF neurons .* ddm-neuro convert MODEL.ddm --backend norse"):
        export(tanh, out, progress=False)
    with pytest.raises(DDMError, match="too coarse"):
        export(model, out, dt=0.01, progress=False)
    with pytest.raises(DDMError, match="dt must be a number of seconds > 0"):
        export(model, out, dt=-1e-4, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_never_overwrites_without_force(model, nir_path, tmp_path):
    out = tmp_path / "a.nir"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError):
        export(model, out, progress=False)
    assert out.read_text() == "keep me"
    export(model, out, force=True, progress=False)
    assert read_network(out).n_neurons == model.n_neurons
    assert [p.name for p in tmp_path.iterdir()] == ["a.nir"]         # no temporary file left behind


def test_cli_export(model, tmp_path, capsys):
    """``--mode`` is implied (NIR holds spiking networks only); ``--dt`` is the file's step in seconds."""
    from ddm_neuro.cli import main

    mpath = tmp_path / "m.ddm"
    model.save(mpath)
    out = tmp_path / "cli.nir"
    assert main(["export", str(mpath), "--format", "nir", "-o", str(out), "--quiet"]) == 0
    assert read_network(out).n_neurons == model.n_neurons and math.isclose(read_network(out).dt, SNNTORCH_DT)
    assert main(["export", str(mpath), "--format", "nir", "--mode", "spiking", "-o", str(out), "--quiet"]) == 2
    capsys.readouterr()
    fine = tmp_path / "fine.nir"
    assert main(["export", str(mpath), "--format", "nir", "--dt", "5e-5", "-o", str(fine), "--quiet"]) == 0
    assert math.isclose(nir.read(fine).metadata["dt"], 5e-5)
    bad = tmp_path / "bad.nir"
    assert main(["export", str(mpath), "--format", "nir", "--dt", "0.01", "-o", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too coarse" in err[0] and not bad.exists()
    from ddm_neuro.network import LatentRNN                    # the natural command on a refractory model: one refusal
    refr = tmp_path / "refr.ddm"
    LatentRNN(**{**model.__dict__, "neuron": {**LIF0, "tau_ref": 0.002}}).save(refr)
    assert main(["export", str(refr), "--format", "nir", "-o", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refit: ddm-neuro fit ou --neuron lif --tau-ref 0 -n 100" in err[0] and not bad.exists()


# ---------------------------------------------------------------- bad files
def test_files_of_another_structure_are_refused(nir_path, tmp_path):
    from exporters.nir.consumers import run_norse

    bad = tmp_path / "text.nir"
    bad.write_text("not hdf5")
    with pytest.raises(NIRFileError, match="not a readable NIR file"):
        run_norse(bad, 0.01)
    with pytest.raises(NIRFileError, match="no such NIR file"):
        run_norse(tmp_path / "missing.nir", 0.01)
    g = nir.read(nir_path)
    n = g.nodes["rnn"].nodes["rnn.lif"].v_threshold.size
    ff = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": nir.LIF(
        tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n)),
        "output": nir.Output(np.array([n]))}, edges=[("input", "lif"), ("lif", "output")],
        metadata={"ddm_neuro": json.dumps({"format_version": 2})})
    nir.write(tmp_path / "ff.nir", ff)
    with pytest.raises(NIRFileError, match=r"missing nodes \['affine', 'latent', 'readout', 'rnn'\]; "
                                           r"unexpected nodes \['lif'\]"):
        read_network(tmp_path / "ff.nir")
    g.edges = [e if e != ("latent", "output") else ("readout", "output") for e in g.edges]
    nir.write(tmp_path / "nolatent.nir", g)
    with pytest.raises(NIRFileError, match=r"not a ddm_neuro NIR network: unexpected nodes \['output_latent'\]"):
        read_network(tmp_path / "nolatent.nir")             # nir gives the dangling latent an Output of its own
    g = nir.read(nir_path)
    g.edges = [e for e in g.edges if e != ("input_latent", "latent")] + [("input_latent", "output")]
    nir.write(tmp_path / "noinput.nir", g)
    with pytest.raises(NIRFileError, match=r"edges differ \(missing \[\('input_latent', 'latent'\)\], "
                                           r"unexpected \[\('input_latent', 'output'\)\]"):
        read_network(tmp_path / "noinput.nir")
    g = nir.read(nir_path)
    g.nodes["rnn"].nodes["rnn.lif"].r = g.nodes["rnn"].nodes["rnn.lif"].r * 10      # exported for another dt
    nir.write(tmp_path / "r.nir", g)
    with pytest.raises(NIRFileError, match="r = tau_mem/dt fails"):
        read_network(tmp_path / "r.nir")
    g = nir.read(nir_path)
    g.metadata = {}
    nir.write(tmp_path / "nometa.nir", g)
    with pytest.raises(NIRFileError, match="without ddm_neuro metadata"):
        read_network(tmp_path / "nometa.nir")
    g = nir.read(nir_path)
    g.metadata = {**g.metadata, "ddm_neuro": json.dumps({**json.loads(g.metadata["ddm_neuro"]), "format_version": 1})}
    nir.write(tmp_path / "v1.nir", g)
    with pytest.raises(NIRFileError, match=r"format version 1, this reader knows 2 \(export the model again\)"):
        read_network(tmp_path / "v1.nir")


def test_the_step_is_the_files(nir_path, model, tmp_path):
    from exporters.nir.consumers import run_norse, run_snntorch

    with pytest.raises(DDMError, match=r"written for dt = 0.0001 s .* cannot run at dt = 0.001 s"):
        run_norse(nir_path, 0.01, dt=1e-3)
    fine = export(model, tmp_path / "fine.nir", dt=5e-5, progress=False)
    with pytest.raises(DDMError, match="snnTorch runs NIR files at its fixed dt = 1e-4 s"):
        run_snntorch(fine, 0.01)


# ---------------------------------------------------------------- consumers
def test_norse_follows_the_torch_spiking_simulator(model, nir_path):
    """Noise-free, same start (latent and phases), same dt: Norse vs :func:`simulate_spiking`.

    The two differ only in how spikes fall on the step (exact times and same-step effect in torch,
    Euler and a one-step delay in the consumer). That error is compared with the spiking network's own
    spread: torch runs from the same latent state but other membrane phases. Mean rates: Euler
    rounds each spike time up to the step, ``r dt / 2`` relative on average, at most ``r_max dt``.
    """
    from exporters.nir.consumers import run_norse

    z0 = np.array([[1.0, -0.5]])
    trials, dur, rec = 4, 0.6, 0.01
    tr = run_norse(nir_path, dur, trials=trials, seed=4, noise=False, z0=z0, record_dt=rec)
    ref = simulate_spiking(model, dur, dt=SNNTORCH_DT / model.time_scale, record_dt=tr.dt, trials=trials, seed=4,
                           noise="none", z0=z0)
    other = simulate_spiking(model, dur, dt=SNNTORCH_DT / model.time_scale, record_dt=tr.dt, trials=trials,
                             seed=99, noise="none", z0=z0)
    err = np.sqrt(np.mean((tr.z - ref.z) ** 2, axis=(0, 2)))
    spread = np.sqrt(np.mean((other.z - ref.z) ** 2, axis=(0, 2)))
    moved = np.sqrt(np.mean((ref.z - ref.z[:, :1]) ** 2, axis=(0, 2)))
    assert moved[-1] > 5 * spread[1:].mean()                       # the latent travels: not a vacuous check
    assert err[1:].mean() < 2 * spread[1:].mean()
    r_max = float(model.neuron.params["max_rates"][1])
    assert abs(tr.meta["mean_rate_hz"] / ref.meta["mean_rate_hz"] - 1) < r_max * SNNTORCH_DT
    # both record their synaptic time, which the verifier's lag for deterministic targets uses
    for t in (tr, ref):
        assert math.isclose(t.meta["tau_syn"], model.tau, rel_tol=1e-9)
        assert math.isclose(t.meta["time_scale"], model.time_scale, rel_tol=1e-9)


def test_noise_channels_carry_the_models_latent_diffusion(model, nir_path):
    """One step's noise channels (standard normal) move the latent by ``input_latent @ xi``: covariance
    ``h T S (K diag(s2) K^T / tau^2 + L L^T) S`` with ``s2`` the model's private intensity less the spikes'
    Poisson share (fano = 1), exactly (no sampling)."""
    from exporters.nir.export import host_noise

    net = read_network(nir_path)
    k, d = model.n_inputs, model.dim
    Bn = np.asarray(net.graph.nodes["input_latent"].weight, np.float64)[:, k:]
    h = net.dt / model.time_scale
    K, S = model.decoders, model.scale
    rates = model.neuron.phi(model.neuron_inputs(model.init_states)).mean(0)
    s2 = np.maximum(model.noise_const - rates, 0)
    want = model.time_scale * (K @ np.diag(s2) @ K.T / model.tau ** 2
                               + model.noise_latent @ model.noise_latent.T) * np.outer(S, S)
    assert np.allclose(Bn @ Bn.T / h, want, rtol=1e-5, atol=1e-8 * np.abs(want).max())
    assert np.allclose(net.graph.metadata["host_noise_sigma2"], s2)
    assert np.allclose(host_noise(model, noise=False)[1], 0) and np.any(s2 > 0) and np.any(s2 == 0)


def test_noise_free_file_has_no_noise_channels(model, tmp_path):
    net = read_network(export(model, tmp_path / "quiet.nir", noise=False, progress=False))
    assert net.n_noise == 0 and net.width == 1 and "input_latent" not in net.graph.nodes      # OU: no inputs
    assert {tuple(e) for e in net.graph.edges} == {e for e in EDGES if "input_latent" not in e}


def test_simulate_backend_runs_the_model_through_nir(model):
    from exporters.nir.backend import make_simulate

    run = make_simulate("norse")
    h = SNNTORCH_DT / model.time_scale
    tr = run(model, 50 * h, trials=2, seed=1, record_dt=10 * h)
    assert tr.meta["backend"] == "norse" and tr.meta["noise"] == "host" and tr.z.shape == (2, 6, model.dim)
    with pytest.raises(DDMError, match="spiking network only"):
        run(model, 0.1, mode="rate")
    with pytest.raises(DDMError, match="no inputs"):
        run(model, 0.1, u=[1.0])
    with pytest.raises(DDMError, match="--coupling does not apply"):
        run(model, 0.1, coupling="dense")


@pytest.mark.slow
def test_norse_round_trip_passes_verify(model, nir_path):
    """OU through NIR and Norse with the host noise: the verifier (baselines from the target SDE) passes."""
    from ddm_neuro.verify import verify
    from exporters.nir.consumers import run_norse

    tr = run_norse(nir_path, 100.0, trials=4, seed=3)
    rep = verify(model.sde(), tr, model_drift=model.latent_drift, seed=1)
    assert rep.passed, {k: v for k, v in rep.metrics.items() if not v["passed"]}


def test_step_matched_export(model, tmp_path):
    """``step_matched``: refuses tau_ref = 0, accepts dt/2 (Norse) and 3 dt/2 (snnTorch); exact-decay constants."""
    from ddm_neuro.network import LatentRNN

    dt = SNNTORCH_DT
    with pytest.raises(DDMError, match=r"fit with tau_ref = dt/2 = 0.05 ms \(Norse\) or 3 dt/2 = 0.15 ms"):
        export(model, tmp_path / "a.nir", step_matched=True, progress=False)
    half = LatentRNN(**{**model.__dict__, "neuron": {**LIF0, "tau_ref": dt / 2}})
    out = export(half, tmp_path / "b.nir", step_matched=True, progress=False)
    net = read_network(out)
    lif = net.lif
    assert np.allclose(1 - dt / net.graph.nodes["latent"].tau, math.exp(-dt / model.tau), rtol=1e-6)
    assert np.allclose(1 - dt / lif.tau_mem, math.exp(-dt / model.neuron.params["tau_m"]), rtol=1e-6)
    assert np.allclose(1 - dt / lif.tau_syn, math.exp(-dt / model.tau), rtol=1e-6)
    assert net.info["step_matched"] == "norse"
    z0 = model.init_states[:5]
    a_m = dt / lif.tau_mem[0]
    assert np.allclose((net.initial_current(z0) / a_m) @ (model.scale[:, None] * model.readout).T + model.center, z0,
                       atol=1e-9 * np.abs(z0).max())
    with pytest.raises(DDMError, match="no refractory period"):
        export(half, tmp_path / "c.nir", progress=False, step_matched=False)
    # by default a tau_ref that a consumer's step supplies is written step-matched for it
    assert read_network(export(half, tmp_path / "c.nir", progress=False)).info["step_matched"] == "norse"
    from ddm_neuro.plugins import get_backend

    with pytest.raises(DDMError, match="step-matched for norse"):
        get_backend("snntorch", "spiking")(half, 0.1, trials=1, seed=0)
    # activity-dependent private noise (activity = phi tau_ref): the channels' G at its mean over the start
    # states, and the state-dependent data with the model's tau_ref (dt/2), not the file's (none)
    half.noise_act = np.linspace(0.0, 2e5, model.n_neurons)
    net = read_network(export(half, tmp_path / "d.nir", step_matched=True, progress=False))
    x0 = half.neuron_inputs(half.init_states)
    want = np.maximum(np.mean(half.noise_var(x0) - half.neuron.phi(x0), axis=0), 0)
    assert np.allclose(net.graph.metadata["host_noise_sigma2"], want)
    assert net.info["noise"]["state_dependent"].startswith("activity-dependent private noise: the host feeds")
    assert net.info["noise"]["state"]["tau_ref"] == dt / 2 and net.info["noise"]["state"]["act_scale"] == dt / 2
    from exporters.nir.hostnoise import host_noise_cov

    z = model.init_states[:4] * 1.5
    x = half.neuron_inputs(z)
    s2 = np.maximum(half.noise_var(x) - half.neuron.phi(x), 0)
    C = np.einsum("an,zn,bn->zab", half.decoders, s2, half.decoders) / half.tau ** 2 + \
        half.noise_latent @ half.noise_latent.T
    assert np.allclose(host_noise_cov(net.graph.metadata, z), C, rtol=1e-9, atol=1e-12 * np.abs(C).max())


# ---------------------------------------------------------------- state-dependent noise
@pytest.fixture(scope="module")
def act_model(model):
    """The OU model with activity-dependent private noise: ``noise_act`` over half the neurons, large enough
    that the host's share changes several-fold across the start states."""
    from ddm_neuro.network import LatentRNN

    act = np.where(np.arange(model.n_neurons) % 2 == 0, 40.0 * model.noise_const.max(), 0.0)
    return LatentRNN(**{**model.__dict__, "noise_act": act})


@pytest.mark.parametrize("fano", [1.0, "regular"])
def test_state_dependent_noise_metadata(act_model, tmp_path, capsys, fano):
    """A model with ``noise_act != 0``: the file's metadata alone gives the model's host covariance
    ``C(z) = K diag(max(sigma^2(x) - F phi(x), 0)) K^T / tau^2 + L L^T`` at any latent state (``F phi`` the
    Poisson count, or regular firing over T: :func:`ddm_neuro.spiking.noise.regular_fano`), against
    ddm_neuro's own ``neuron_inputs``, ``noise_var``, ``phi``; ``A(z) = G^+ chol(C(z))`` puts exactly that
    covariance into the latent (G has full rank here); the note on stderr says so, not "at its mean"."""
    from ddm_neuro.spiking.noise import regular_fano
    from exporters.nir.export import host_noise
    from exporters.nir.hostnoise import STATE_KEYS, host_noise_cov, is_state_dependent, noise_transform

    m = act_model
    path = export(m, tmp_path / "act.nir", fano=fano)
    err = capsys.readouterr().err
    assert "the host scales the noise channels with the state" in err and "written at its mean" not in err
    net = read_network(path)
    meta = net.graph.metadata
    assert is_state_dependent(meta) and all(meta[k].dtype == np.float64 for k in STATE_KEYS)
    assert net.info["noise"]["state"]["rank"] == m.dim and net.info["noise"]["state"]["fano"] == fano
    s2_file, G = host_noise(m, fano)
    assert np.allclose(meta["host_noise_sigma2"], s2_file) and np.array_equal(meta["noise_state_G"], G)
    rng = np.random.default_rng(0)
    z = m.init_states[rng.integers(len(m.init_states), size=50)] * rng.uniform(0.3, 2.0, (50, 1))
    x = m.neuron_inputs(z)
    phi = m.neuron.phi(x)
    spikes = phi if fano == 1.0 else regular_fano(m, z, m.time_scale) * phi
    s2 = np.maximum(m.noise_var(x) - spikes, 0)
    C = np.einsum("an,zn,bn->zab", m.decoders, s2, m.decoders) / m.tau ** 2 + m.noise_latent @ m.noise_latent.T
    got = host_noise_cov(meta, z)
    assert np.allclose(got, C, rtol=1e-9, atol=1e-12 * np.abs(C).max())
    spread = np.trace(C, axis1=1, axis2=2)
    assert spread.max() > 3 * spread.min()                                 # the noise does depend on the state
    A = noise_transform(meta, z)
    assert np.allclose(G @ A @ np.swapaxes(A, 1, 2) @ G.T, C, rtol=1e-8, atol=1e-10 * np.abs(C).max())
    assert np.allclose(m.latent_cov(z) / m.time_scale / np.outer(m.scale, m.scale),     # + the spikes' F phi
                       C + np.einsum("an,zn,bn->zab", m.decoders, np.minimum(spikes, m.noise_var(x)), m.decoders)
                       / m.tau ** 2, rtol=1e-8)
    A_bad = noise_transform(meta, np.array([[np.nan, 0.0], [0.1, 0.2]]))     # a diverged trial: NaN, the rest fine
    assert np.all(np.isnan(A_bad[0])) and np.all(np.isfinite(A_bad[1]))
    with pytest.raises(ValueError, match="z must have 2 values in its last axis"):
        noise_transform(meta, np.zeros((3, 3)))


def test_singular_noise_matrix_keeps_the_part_in_its_range(act_model):
    """Where ``G`` is singular, ``G A A^T G^T = Pi C(z) Pi`` with ``Pi = G G^+`` the projector onto G's range
    (what the file's channels can reach): a rank-1 G in place of the full-rank one, its G^+ from
    :func:`state_noise_metadata`."""
    from exporters.nir.export import build_graph, state_noise_metadata
    from exporters.nir.hostnoise import host_noise_cov, noise_transform

    meta = dict(build_graph(act_model).metadata)
    G = np.asarray(meta["noise_state_G"])
    u, sv, vt = np.linalg.svd(G)
    G1 = sv[0] * np.outer(u[:, 0], vt[0])                                  # rank 1
    arrays, params = state_noise_metadata(act_model, 1.0, G1)
    assert params["rank"] == 1 and np.allclose(arrays["noise_state_G_pinv"], np.linalg.pinv(G1))
    meta.update(arrays)
    z = act_model.init_states[:20]
    C, A = host_noise_cov(meta, z), noise_transform(meta, z)
    Pi = G1 @ arrays["noise_state_G_pinv"]
    assert np.allclose(Pi @ Pi, Pi) and np.isclose(np.trace(Pi), 1)
    assert np.allclose(G1 @ A @ np.swapaxes(A, 1, 2) @ G1.T, Pi @ C @ Pi, atol=1e-10 * np.abs(C).max())


def test_constant_noise_files_are_unchanged(model, nir_path):
    """``noise_act == 0``: no state-dependent data in the file, and a run feeds the same numbers whatever
    ``state_noise`` says (the file is byte-for-byte the one the exporter wrote before, checked by hand)."""
    from exporters.nir.consumers import run_norse
    from exporters.nir.hostnoise import STATE_KEYS, is_state_dependent

    meta = nir.read(nir_path).metadata
    assert not is_state_dependent(meta) and not set(STATE_KEYS) & set(meta) and "noise_state_dependent" not in meta
    info = json.loads(meta["ddm_neuro"])["noise"]
    assert info["state_dependent"] is None and "state" not in info
    h = SNNTORCH_DT / model.time_scale
    a, b = (run_norse(nir_path, 30 * h, trials=2, seed=3, record_dt=5 * h, state_noise=s) for s in (True, False))
    assert np.array_equal(a.z, b.z) and a.meta["state_noise"] is False
    with pytest.raises(DDMError, match="state_noise must be True or False"):
        run_norse(nir_path, 30 * h, state_noise="yes")


def test_calibrate_runs_in_norse(model):
    """The NIR consumers are calibration back ends too (noise on/off by name, the file's own step, no
    coupling option): before, calibrate's noise="none" and coupling="factored" were refused there.
    (At this size the error measurement itself is noise: the mechanics are what is tested.)"""
    from ddm_neuro.spiking.drift_calibration import calibrate_spiking

    out = calibrate_spiking(model, model.sde(), rounds=1, trials=24, duration=3.0, backend="norse", seed=1)
    cal = out.meta["spiking_calibration"]
    assert cal["simulator"] == "norse" and cal["coupling"] is None and len(cal["rounds"]) == 1
    assert np.isfinite(cal["systematic_drift_error"]) and cal["rounds"][0]["mean_rate_hz"] > 10


def test_hostnoise_needs_numpy_only():
    """``exporters/nir/hostnoise.py`` is the one file a host copies next to a recipe: it imports json and numpy
    only (no ddm_neuro, no relative import)."""
    import ast
    from pathlib import Path

    import exporters.nir.hostnoise as hn

    tree = ast.parse(Path(hn.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "json", "numpy"}, names
