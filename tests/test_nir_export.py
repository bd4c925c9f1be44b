"""NIR export (issue 6.2) and runs in third-party NIR consumers (issue 6.3): structure, time convention,
agreement with the torch spiking simulator, host noise, and clear errors for bad files and options."""
import math

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from ddm_neuro.errors import DDMError, OutputExistsError  # noqa: E402
from ddm_neuro.fit.matching import fit  # noqa: E402
from ddm_neuro.spiking.simulator import simulate_spiking  # noqa: E402
from ddm_neuro.sde.systems import get_system  # noqa: E402
from exporters.nir.export import EDGES, NODES, SNNTORCH_DT, export  # noqa: E402
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


def euler_reference(model, z0, v0, steps, dt=SNNTORCH_DT, reset_next_step=False, spike_area=1.0):
    """The documented per-step scheme in model units (float64): what both consumers must compute.

    ``spike_area = dt`` is the other reading of the time convention (a spike as a pulse of area dt
    with the continuous-time weight): spikes dt times too weak.
    """
    tau, tau_m = model.tau, model.neuron.params["tau_m"]
    W, x, v = model.weights(), model.neuron_inputs(z0), v0.copy()
    s, fired = np.zeros_like(x), np.zeros_like(x, dtype=bool)
    zs = [x @ model.readout.T * model.scale + model.center]
    for _ in range(steps):
        x = (1 - dt / tau) * x + dt / tau * model.bias + spike_area * s @ W.T / tau
        v = (1 - dt / tau_m) * v + dt / tau_m * x
        if reset_next_step:                    # snnTorch: reset to zero one step after the spike
            v[fired] = 0.0
        fired = v > 1.0
        s = fired.astype(float)
        if not reset_next_step:                # Norse: reset in the step of the spike
            v[fired] = 0.0
        zs.append(x @ model.readout.T * model.scale + model.center)
    return np.array(zs).transpose(1, 0, 2)


def start_phases(seed, trials, n):
    """The membrane potentials the runners draw for ``seed`` (after the noise generator's seed)."""
    rng = np.random.default_rng(seed)
    rng.integers(2 ** 62)
    return rng.uniform(0.0, 1.0, (trials, n))


# ---------------------------------------------------------------- the file
def test_file_is_nir_with_the_documented_structure(model, nir_path):
    g = nir.read(nir_path)
    assert {k: type(v).__name__ for k, v in g.nodes.items()} == NODES
    assert {tuple(e) for e in g.edges} == set(EDGES)
    dt, tau, tau_m = SNNTORCH_DT, model.tau, model.neuron.params["tau_m"]
    lif = g.nodes["lif"]
    assert np.allclose(lif.tau_syn, tau) and np.allclose(lif.tau_mem, tau_m)
    assert np.allclose(lif.r, tau_m / dt) and np.allclose(lif.w_in, tau / dt)      # snnTorch's r = tau/dt
    assert np.allclose(lif.v_threshold, 1) and np.allclose(lif.v_reset, 0) and np.allclose(lif.v_leak, 0)
    W = model.weights()
    assert np.allclose(g.nodes["recurrent"].weight, W * dt / (tau_m * tau), rtol=1e-5, atol=1e-7 * np.abs(W).max())
    assert np.allclose(g.nodes["affine"].bias, model.bias * dt * dt / (tau_m * tau), rtol=1e-5)
    assert g.metadata["time_unit"] == "s" and math.isclose(g.metadata["dt"], dt)
    net = read_network(nir_path)
    assert net.info["refractory"].startswith("none") and net.info["sde_spec"] == model.sde_spec
    # the read-out of the start currents gives back the start states
    z0 = model.init_states[:5]
    assert np.allclose(net.readout(net.initial_current(z0)), z0, atol=1e-5 * np.abs(z0).max())


def test_export_refuses_what_nir_cannot_hold(model, tmp_path):
    out = tmp_path / "x.nir"
    with pytest.raises(DDMError, match="mode spiking"):
        export(model, out, mode="rate", progress=False)
    from ddm_neuro.network import LatentRNN  # a refractory period: refused, saying how to refit
    refr = LatentRNN(**{**model.__dict__, "neuron": {**LIF0, "tau_ref": 0.002}})
    with pytest.raises(DDMError, match=r"tau_ref = 2 ms; refit with tau_ref = 0"):
        export(refr, out, progress=False)
    with pytest.raises(DDMError, match="too coarse"):
        export(model, out, dt=0.01, progress=False)
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


def test_cli_export(nir_path, model, tmp_path):
    from ddm_neuro.cli import main

    mpath = tmp_path / "m.ddm"
    model.save(mpath)
    out = tmp_path / "cli.nir"
    assert main(["export", str(mpath), "--format", "nir", "--mode", "spiking", "-o", str(out), "--quiet"]) == 0
    assert read_network(out).n_neurons == model.n_neurons
    assert main(["export", str(mpath), "--format", "nir", "--mode", "spiking", "-o", str(out), "--quiet"]) == 2


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
    n = g.nodes["lif"].v_threshold.size
    ff = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": nir.LIF(
        tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n)),
        "output": nir.Output(np.array([n]))}, edges=[("input", "lif"), ("lif", "output")])
    nir.write(tmp_path / "ff.nir", ff)
    with pytest.raises(NIRFileError, match=r"missing nodes \['affine', 'readout', 'recurrent'\]; lif is LIF"):
        read_network(tmp_path / "ff.nir")
    g.edges = [e if e != ("recurrent", "lif") else ("recurrent", "readout") for e in g.edges]
    nir.write(tmp_path / "norec.nir", g)
    with pytest.raises(NIRFileError, match=r"edges differ \(missing \[\('recurrent', 'lif'\)\], "
                                           r"unexpected \[\('recurrent', 'readout'\)\]"):
        read_network(tmp_path / "norec.nir")
    g = nir.read(nir_path)
    g.nodes["lif"].r = g.nodes["lif"].r * 10                                  # exported for another dt
    nir.write(tmp_path / "r.nir", g)
    with pytest.raises(NIRFileError, match="r = tau_mem/dt fails"):
        read_network(tmp_path / "r.nir")
    g = nir.read(nir_path)
    g.metadata = {}
    nir.write(tmp_path / "nometa.nir", g)
    with pytest.raises(NIRFileError, match="without ddm_neuro metadata"):
        read_network(tmp_path / "nometa.nir")


def test_the_step_is_the_files(nir_path, model, tmp_path):
    from exporters.nir.consumers import run_norse, run_snntorch

    with pytest.raises(DDMError, match=r"written for dt = 0.0001 s .* cannot run at dt = 0.001 s"):
        run_norse(nir_path, 0.01, dt=1e-3)
    fine = export(model, tmp_path / "fine.nir", dt=5e-5, progress=False)
    with pytest.raises(DDMError, match="snnTorch runs NIR files at its fixed dt = 1e-4 s"):
        run_snntorch(fine, 0.01)


# ---------------------------------------------------------------- consumers
@pytest.mark.parametrize("consumer", ["norse", "snntorch"])
def test_consumer_computes_the_documented_scheme(model, nir_path, consumer):
    """Noise-free: the consumer's latent equals the Euler scheme of the module docstring (float32 rounding)."""
    from exporters.nir import consumers

    pytest.importorskip(consumer)
    run = {"norse": consumers.run_norse, "snntorch": consumers.run_snntorch}[consumer]
    z0 = model.init_states[:3]
    h = SNNTORCH_DT / model.time_scale
    tr = run(nir_path, 300 * h, trials=3, seed=4, noise=False, z0=z0, record_dt=h)
    ref = euler_reference(model, z0, start_phases(4, 3, model.n_neurons), 300,
                          reset_next_step=consumer == "snntorch")
    assert tr.z.shape == ref.shape and math.isclose(tr.meta["integration_dt"], h)
    assert tr.meta["mean_rate_hz"] > 10
    # float32 against float64: currents agree to ~1e-6 of their size; a spike flipped by rounding would
    # move z by a whole spike's jump S |K_j| / tau (~1e-2 here), far beyond this bound
    assert np.abs(tr.z - ref).max() < 1e-4 * np.abs(ref).max()
    # the other reading of the time convention is far off
    wrong = euler_reference(model, z0, start_phases(4, 3, model.n_neurons), 300, spike_area=SNNTORCH_DT,
                            reset_next_step=consumer == "snntorch")
    assert np.abs(tr.z - wrong).max() > 0.1 * np.abs(ref - ref[:, :1]).max()


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


def test_host_noise_current_has_the_models_latent_diffusion(model, nir_path):
    """The noise current the runners add, mapped to the latent, has the covariance the metadata promises:
    ``T S (K diag(sigma2_host) K^T / tau^2 + L L^T) S`` per SDE time unit (sampling error: Wishart)."""
    import torch

    from exporters.nir.consumers import _HostNoise

    net = read_network(nir_path)
    n = 4000
    noise = _HostNoise(net, n, torch.Generator().manual_seed(0), True, torch.float64)
    J = noise().numpy()
    tau_m = model.neuron.params["tau_m"]
    dz = (J * tau_m / net.dt) @ (model.scale[:, None] * model.readout).T         # z jump of one step
    h = net.dt / model.time_scale
    got = dz.T @ dz / n / h
    K, S = model.decoders, model.scale
    want = model.time_scale * (K @ np.diag(np.maximum(net.host_sigma2, 0)) @ K.T / model.tau ** 2
                               + model.noise_latent @ model.noise_latent.T) * np.outer(S, S)
    sd = np.sqrt((want ** 2 + np.outer(np.diag(want), np.diag(want))) / n)   # std of a sample covariance
    assert np.all(np.abs(got - want) < 5 * sd)
    # the host noise is the model's private intensity minus what Poisson-like spikes supply (fano = 1)
    rates = model.neuron.phi(model.neuron_inputs(model.init_states)).mean(0)
    assert np.allclose(net.host_sigma2, model.noise_const - rates)


@pytest.fixture(scope="module")
def silent(model, tmp_path_factory):
    """The model with every bias lowered by 100 and its NIR file: no neuron reaches threshold anywhere it goes
    (inputs x < -2), so the host noise is all of the noise (the spikes' share is zero: host_noise_sigma2 =
    noise_const) and the latent relaxes linearly, which Euler integrates exactly."""
    from ddm_neuro.network import LatentRNN

    quiet = LatentRNN(**{**model.__dict__, "bias": model.bias - 100.0})
    assert quiet.neuron_inputs(quiet.init_states).max() < -1 and not np.any(quiet.noise_act)
    path = export(quiet, tmp_path_factory.mktemp("silent") / "silent.nir", progress=False)
    assert np.allclose(read_network(path).host_sigma2, quiet.noise_const)
    return quiet, path


@pytest.mark.parametrize("consumer", ["norse", "snntorch"])
def test_consumer_noise_and_drift_are_the_models(silent, consumer):
    """The consumer's latent, one sample per step, against the model (the spikes' own noise is left out by
    silencing them, see ``silent``): the residuals ``z' - z - f(z) h`` have the model's covariance ``C h``
    (n = 8 x 500: relative sampling error sqrt(2/n) = 2.2 % on the diagonal; a noise amplitude 1.2 or 0.8
    times the right one moves it by +44 % or -36 %), and two runs of one seed from different starts draw the
    same noise, so their difference moves by ``(f(z_a) - f(z_b)) h``: slope 1 up to float32 rounding."""
    from exporters.nir import consumers

    pytest.importorskip(consumer)
    quiet, path = silent
    run = {"norse": consumers.run_norse, "snntorch": consumers.run_snntorch}[consumer]
    h, d, trials = SNNTORCH_DT / quiet.time_scale, quiet.dim, 8
    a = run(path, 500 * h, trials=trials, seed=5, z0=np.tile([0.8, -0.6], (trials, 1)), record_dt=h)
    b = run(path, 40 * h, trials=trials, seed=5, z0=np.tile([-0.7, 0.9], (trials, 1)), record_dt=h)
    assert a.meta["mean_rate_hz"] == 0 and math.isclose(a.dt, h)
    z0, z1 = a.z[:, :-1].reshape(-1, d), a.z[:, 1:].reshape(-1, d)
    res = z1 - z0 - quiet.latent_drift(z0) * h
    est = res.T @ res / len(res) / h
    C = quiet.latent_cov(z0[:1])[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / len(res))     # Wishart
    assert np.all(np.abs(est - C) < 4 * se), (np.diag(est) / np.diag(C), est, C)
    m = b.z.shape[1]
    step = np.diff(a.z[:, :m] - b.z, axis=1).reshape(-1)
    pred = ((quiet.latent_drift(a.z[:, :m - 1].reshape(-1, d)) - quiet.latent_drift(b.z[:, :-1].reshape(-1, d)))
            * h).reshape(-1)
    assert abs(pred @ step / (pred @ pred) - 1) < 1e-3


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
    lif = net.graph.nodes["lif"]
    assert np.allclose(1 - dt / lif.tau_mem, math.exp(-dt / model.neuron.params["tau_m"]), rtol=1e-6)
    assert np.allclose(1 - dt / lif.tau_syn, math.exp(-dt / model.tau), rtol=1e-6)
    assert net.info["step_matched"] == "norse"
    z0 = model.init_states[:5]
    assert np.allclose(net.readout(net.initial_current(z0)), z0, atol=1e-5 * np.abs(z0).max())
    with pytest.raises(DDMError, match="no refractory period"):
        export(half, tmp_path / "c.nir", progress=False, step_matched=False)
    # by default a tau_ref that a consumer's step supplies is written step-matched for it
    assert read_network(export(half, tmp_path / "c.nir", progress=False)).info["step_matched"] == "norse"
    from ddm_neuro.plugins import get_backend

    with pytest.raises(DDMError, match="step-matched for norse"):
        get_backend("snntorch", "spiking")(half, 0.1, trials=1, seed=0)
    # activity-dependent private noise (activity = phi tau_ref): the host evaluates the rate curve at I
    half.noise_act = np.linspace(0.0, 2e5, model.n_neurons)
    net = read_network(export(half, tmp_path / "d.nir", step_matched=True, progress=False))
    assert np.allclose(net.host_rate_coef, half.noise_act * dt / 2)
    x0 = half.neuron_inputs(z0)
    assert np.allclose(net.rate(net.initial_current(z0)), half.neuron.phi(x0), rtol=1e-6, atol=1e-6)


def test_calibrate_runs_in_norse(model):
    """The NIR consumers are calibration back ends too (noise on/off by name, the file's own step, no
    coupling option): before, calibrate's noise="none" and coupling="factored" were refused there.
    (At this size the error measurement itself is noise: the mechanics are what is tested.)"""
    from ddm_neuro.spiking.drift_calibration import calibrate_spiking

    out = calibrate_spiking(model, model.sde(), rounds=1, trials=24, duration=3.0, backend="norse", seed=1)
    cal = out.meta["spiking_calibration"]
    assert cal["simulator"] == "norse" and cal["coupling"] is None and len(cal["rounds"]) == 1
    assert np.isfinite(cal["systematic_drift_error"]) and cal["rounds"][0]["mean_rate_hz"] > 10
