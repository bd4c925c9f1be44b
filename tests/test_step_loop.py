"""The compiled step loops of the torch back end against the torch loops, and their own noise and threads.

* Without noise the compiled loop gives the torch loop's run: the same spikes (indices and times)
  and the same latent to rounding, rate and spiking, factored and dense coupling, with an input
  that steps, and with several spikes per step.
* With noise it draws its own normals: their moments and tails are those of N(0, 1) within the
  estimators' sampling error, and a seed gives one run at any thread count.
* The noise scale and the drift are checked per engine elsewhere too (``test_backends.py``
  runs the default engine; here the torch loop's rate noise and the spiking runs' agreement in
  distribution).
* Bad engines and devices, a missing compiler, and a neuron firing without bound are refused in
  one line.
"""
import warnings

import numpy as np
import pytest

from ddm_neuro import plugins
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.run import compiled
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.run.plan import network_steps
from ddm_neuro.sde.systems import get_system
from noise_checks import assert_one_step_covariance

SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)

pytestmark = pytest.mark.filterwarnings("ignore::ddm_neuro.spiking.noise.SpikeNoiseWarning")


@pytest.fixture(scope="module")
def ou_lif():
    return fit(get_system("ou"), n_neurons=200, neuron="lif", **SMALL)


@pytest.fixture(scope="module")
def switch_lif():
    return fit(get_system("switch", sigma=0.0), n_neurons=64, neuron="lif", **SMALL)


def run(model, engine, duration=3.0, **kw):
    kw.setdefault("trials", 2)
    kw.setdefault("seed", 3)
    return plugins.simulate(model, duration, backend="torch", engine=engine, **kw)


def assert_same_spikes(a, b):
    assert len(a.spikes_t) == len(b.spikes_t) > 100
    np.testing.assert_array_equal(a.spikes_i, b.spikes_i)
    np.testing.assert_allclose(a.spikes_t, b.spikes_t, rtol=0, atol=1e-12)


@pytest.mark.parametrize("coupling", ["factored", "dense"])
def test_noise_free_spiking_run_is_the_torch_loops(ou_lif, coupling):
    a = run(ou_lif, "compiled", mode="spiking", noise="none", coupling=coupling, record_spikes=True)
    b = run(ou_lif, "torch", mode="spiking", noise="none", coupling=coupling, record_spikes=True)
    assert a.meta["engine"] == "compiled" and b.meta["engine"] == "torch"
    assert_same_spikes(a, b)
    # rounding only: different summation order (BLAS against loops) and exp/log implementations
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-11)
    assert a.meta["mean_rate_hz"] == pytest.approx(b.meta["mean_rate_hz"], rel=0, abs=1e-12)


def test_input_steps_and_several_spikes_per_step(switch_lif):
    """A stepping input (feed-forward jump) and a 3 ms step, where neurons fire several times per step."""
    cue = InputSignal([0.0, 1.0, 2.0], [[0.0], [0.8], [-0.5]])
    kw = dict(mode="spiking", noise="none", u=cue, z0=[-1.0], record_spikes=True)
    dt = 3e-3 / switch_lif.time_scale
    a, b = run(switch_lif, "compiled", dt=dt, **kw), run(switch_lif, "torch", dt=dt, **kw)
    assert np.ptp(a.z) > 0.5  # the cue moves the state
    per_step = np.bincount(np.floor(a.spikes_t / dt).astype(int) * switch_lif.n_neurons
                           + a.spikes_i % switch_lif.n_neurons)
    assert per_step.max() >= 2
    assert_same_spikes(a, b)
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-10)


@pytest.mark.parametrize("neuron", ["tanh", "lif"])
def test_noise_free_rate_run_is_the_torch_loops(neuron):
    model = fit(get_system("van_der_pol"), n_neurons=48, neuron=neuron, **SMALL)
    cue = None
    a, b = run(model, "compiled", noise=False, u=cue), run(model, "torch", noise=False, u=cue)
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-11)
    a, b = run(model, "compiled", coupling="dense", noise=False), run(model, "torch", coupling="dense", noise=False)
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-11)


def test_normals_have_the_standard_moments_and_tails():
    n = 2_000_000
    x = compiled.normals(compiled.streams(7, 1)[0], n)
    assert abs(x.mean()) < 4 / np.sqrt(n)
    assert abs(x.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(np.mean(x ** 4) - 3) < 4 * np.sqrt(96 / n)  # Var(x^4) = 105 - 9
    for c, p in ((2.0, 0.0455003), (3.0, 0.0026998), (4.0, 6.334e-5)):
        assert abs(np.mean(np.abs(x) > c) - p) < 4 * np.sqrt(p / n)


def test_noise_streams_are_independent_and_seeded():
    s = compiled.streams(11, 3)
    a, b = compiled.normals(s[0].copy(), 200_000), compiled.normals(s[1].copy(), 200_000)
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(len(a))
    np.testing.assert_array_equal(a, compiled.normals(compiled.streams(11, 3)[0], 200_000))
    assert not np.array_equal(a, compiled.normals(compiled.streams(12, 3)[0], 200_000))


def big_uncoupled(n, rate=20.0, seed=0, tau_ref=0.002, bias=None):
    """N LIF neurons near ``rate`` Hz with small random decoders (no fit), d = 3: a network too large to fit here."""
    rng = np.random.default_rng(seed)
    E = rng.normal(0.0, 0.05, (n, 3))
    D = np.linalg.pinv(E)
    x = 1.0 / -np.expm1(-(1.0 / rate - tau_ref) / 0.02)
    b = x * rng.uniform(0.9, 1.1, n) if bias is None else np.full(n, float(bias))
    K = rng.normal(0.0, 0.2 / (np.sqrt(n) * rate), (3, n))
    return LatentRNN(neuron={"name": "lif", "tau_m": 0.02, "tau_ref": tau_ref}, tau=0.02, time_scale=0.1,
                     scale=np.ones(3), center=np.zeros(3), encoders=E, decoders=K, readout=D, bias=b,
                     input_weights=np.zeros((n, 0)), noise_const=np.full(n, 5.0), noise_act=np.zeros(n),
                     noise_latent=np.eye(3) * 0.1, init_states=np.zeros((4, 3)), sde_spec=None,
                     variables=["a", "b", "c"], inputs=[])


@pytest.mark.parametrize("trials", [1, 3])
def test_a_seed_gives_one_run_at_any_thread_count(trials):
    """Trials over threads (3 trials): bit for bit. One trial, neurons over threads: the noise is
    the same (streams belong to blocks of neurons, not threads) and only the sums' order moves."""
    model = big_uncoupled(2 * compiled.block_size() + 100)
    kw = dict(mode="spiking", noise="model", trials=trials, seed=5, record_spikes=True)
    one = run(model, "compiled", 0.5, threads=1, **kw)
    two = run(model, "compiled", 0.5, threads=2, **kw)
    assert two.meta["threads"] == 2
    if trials > 1:
        np.testing.assert_array_equal(one.z, two.z)
        np.testing.assert_array_equal(one.spikes_t, two.spikes_t)
    else:
        np.testing.assert_allclose(one.z, two.z, rtol=0, atol=1e-9 * np.abs(one.z).max())
        assert abs(len(one.spikes_t) - len(two.spikes_t)) <= 2


def test_noisy_spiking_runs_agree_in_distribution(ou_lif):
    """Remainder noise: the compiled loop's own draws give the torch loop's latent variance and rate,
    within the spread over seeds."""
    stats = {}
    for engine in ("compiled", "torch"):
        runs = [run(ou_lif, engine, 6.0, mode="spiking", trials=4, seed=s) for s in range(4)]
        var = [r.z[:, 10:].var(axis=1).mean() for r in runs]
        inc = [np.mean(np.diff(r.z, axis=1) ** 2) / r.dt for r in runs]
        stats[engine] = np.array([var, inc])
    m, s = stats["compiled"].mean(1), stats["compiled"].std(1, ddof=1) / 2
    mt, st = stats["torch"].mean(1), stats["torch"].std(1, ddof=1) / 2
    assert np.all(np.abs(m - mt) < 4 * np.hypot(s, st)), (m, mt, s, st)


def test_torch_loop_rate_noise_has_the_model_covariance():
    """The torch loop (the one a GPU runs) keeps its noise scale: one-step residual covariance = latent_cov dt."""
    model = fit(get_system("ou"), n_neurons=24, **{**SMALL, "n_train": 3000})
    dt, _ = network_steps(model)
    tr = run(model, "torch", 1500 * dt, trials=4, record_dt=dt)
    assert_one_step_covariance(model, tr)


def test_bad_engine_and_device_are_refused(ou_lif):
    with pytest.raises(DDMError, match="engine 'fast' is not one of|must be one of"):
        run(ou_lif, "fast")
    with pytest.raises(DDMError, match="device 'gpu': expected cpu, cuda or cuda:K"):
        run(ou_lif, "auto", device="gpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DDMError, match="--device cuda: no CUDA GPU is visible to torch"):
            run(ou_lif, "auto", device="cuda")
    with pytest.raises(DDMError, match="threads must be at least 1"):
        run(ou_lif, "auto", threads=0)


def test_without_a_compiler_the_torch_loop_runs_and_says_so(ou_lif, monkeypatch):
    monkeypatch.setattr(compiled, "_LIB", [])
    monkeypatch.setattr(compiled, "_FAILED", [])
    monkeypatch.setattr(compiled, "compiler", lambda: None)
    with pytest.warns(UserWarning, match="no C.. compiler found .* the torch loop runs instead"):
        tr = run(ou_lif, "auto", 0.2)
    assert tr.meta["engine"] == "torch"
    with pytest.raises(DDMError, match="no C.. compiler found"):
        run(ou_lif, "compiled", 0.2)


@pytest.mark.parametrize("engine", ["compiled", "torch"])
def test_a_neuron_firing_without_bound_is_refused(engine):
    """tau_ref = 0 and an input far above threshold: no spike budget per step; refused, not a hang."""
    model = big_uncoupled(8, tau_ref=0.0, bias=1e17)
    with pytest.raises(DDMError, match="more than 64 spikes in one step"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(model, engine, 0.1, mode="spiking", noise="none")


def test_a_run_too_large_for_memory_is_refused_with_its_size(monkeypatch):
    """Dense coupling of 60 000 neurons would allocate 29 GB: refused before W is built, naming the size."""
    from ddm_neuro.run import plan

    monkeypatch.setattr(plan, "available_memory", lambda: 8 * 2 ** 30)
    model = big_uncoupled(60_000)
    with pytest.raises(DDMError, match=r"needs about 26.8 GiB .*dense N x N coupling.*more than the 8 GiB"):
        run(model, "compiled", 1.0, coupling="dense")
    with pytest.raises(DDMError, match=r"--trials 4000 needs about .* GiB"):
        run(model, "torch", 1.0, trials=4000)


@pytest.mark.parametrize("args, words", [
    (["--device", "cuda"], "--device cuda: no CUDA GPU is visible to torch"),
    (["--device", "tpu"], "device 'tpu': expected cpu, cuda or cuda:K"),
    (["--backend", "target", "--device", "cpu"], "--backend target does not take --device (taken by: torch)"),
    (["--engine", "fast"], "invalid choice: 'fast'"),
])
def test_cli_refuses_bad_devices_and_engines_in_one_line(small_model_path, tmp_path, capsys, args, words):
    import torch

    from ddm_neuro.cli import main

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    out = tmp_path / "t.npz"
    status = main(["simulate", str(small_model_path), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert status == 2 and words in err and err.count("\n") == 1, err
    assert not out.exists()


def test_cli_says_which_engine_ran(small_model_path, tmp_path, capsys, monkeypatch):
    import torch

    from ddm_neuro import threads
    from ddm_neuro.cli import main

    monkeypatch.setattr(threads, "_IN_FORCE", [])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    before = torch.get_num_threads()
    try:
        assert main(["simulate", str(small_model_path), "-o", str(tmp_path / "t.npz"), "--duration", "1",
                     "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    assert "(compiled step loop, 2 threads)" in capsys.readouterr().out


def test_where_vector_math_does_not_build_the_plain_loop_is_built(monkeypatch, tmp_path, ou_lif):
    """A compiler without this CPU's flags or libmvec: the portable build is used, and the failed variant is
    remembered (not retried on every run); the run is the same to rounding."""
    ref = run(ou_lif, "compiled", 1.0, mode="spiking", noise="none")
    monkeypatch.setenv("DDM_NEURO_CACHE", str(tmp_path))
    monkeypatch.setattr(compiled, "_LIB", [])
    monkeypatch.setattr(compiled, "_FAILED", [])
    monkeypatch.setattr(compiled, "FAST", ("-fno-such-flag-here",))
    plain = run(ou_lif, "compiled", 1.0, mode="spiking", noise="none")
    names = sorted(p.suffix for p in compiled.cache_root().iterdir())
    assert names == [".failed", ".so"]
    np.testing.assert_allclose(plain.z, ref.z, rtol=0, atol=1e-11)
