"""Brian2 spiking (LIF) networks: runtime and generated C++ agree, and both agree with the torch spiking simulator.

Both integrate the LIF membrane exactly and place spikes at their exact times
inside a step (Brian2 through ``LIF_STEP``); their random streams differ, so the two
spiking simulators are compared statistically; the
two Brian2 devices draw the same random stream for a seed and must agree to
rounding.
"""
import shutil

import numpy as np
import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.spiking.noise import SpikeNoiseWarning
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system

pytest.importorskip("brian2")
CPP = pytest.mark.skipif(shutil.which("make") is None, reason="brian2-cpp needs make and g++")


@pytest.fixture(scope="module")
def lif_ou():
    return fit(get_system("ou"), n_neurons=120, neuron="lif", steps=0, n_train=10000, n_val=1000, n_test=500,
               progress=False)


def run(backend, model, duration, **kw):
    kw.setdefault("trials", 2)
    kw.setdefault("seed", 1)
    return get_backend(backend, "spiking")(model, duration, u=None, mode="spiking", progress=False, **kw)


@CPP
# "none" is slow: "remainder" (the same arithmetic plus the noise) checks the same agreement to the last spike, and
# a noise-free brian2-cpp spiking build is run by test_cpp_records_every_sample_when_record_dt_is_not_a_power_of_two_steps
@pytest.mark.parametrize("noise", [pytest.param("none", marks=pytest.mark.slow), "remainder"])
def test_runtime_and_cpp_spiking_runs_agree(lif_ou, noise):
    # a fixed Fano factor: the same arithmetic in numpy and C++, so the same spikes to the last one
    a = run("brian2", lif_ou, 2.0, noise=noise, record_spikes=True, fano=1.0)
    b = run("brian2-cpp", lif_ou, 2.0, noise=noise, record_spikes=True, fano=1.0)
    assert a.meta["mode"] == b.meta["mode"] == "spiking" and len(a.spikes_t) > 1000
    assert a.meta["tau_syn"] == b.meta["tau_syn"] == lif_ou.tau and b.meta["time_scale"] == lif_ou.time_scale
    np.testing.assert_array_equal(np.sort(a.spikes_i), np.sort(b.spikes_i))
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-10)


@CPP
def test_regular_fano_remainder_runs_alike_in_runtime_and_cpp(lif_ou):
    """The default, fano="regular" (floor() of the rate; C++ may round its last bit differently):
    the same seed gives the same noise to rounding, so trajectories agree until a spike time
    flips (within a few recording steps); after that the runs are as two independent ones
    (counts within their spread)."""
    a = run("brian2", lif_ou, 2.0, noise="remainder", record_spikes=True)
    b = run("brian2-cpp", lif_ou, 2.0, noise="remainder", record_spikes=True)
    assert a.meta["fano"] == b.meta["fano"] == "regular"
    assert abs(len(a.spikes_t) - len(b.spikes_t)) <= 4 * np.sqrt(len(a.spikes_t))
    np.testing.assert_allclose(b.z[:, :2], a.z[:, :2], rtol=0, atol=1e-5)   # same start, same first steps


def test_dense_and_factored_spiking_agree(lif_ou):
    a = run("brian2", lif_ou, 1.0, noise="none", coupling="factored")
    b = run("brian2", lif_ou, 1.0, noise="none", coupling="dense")
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-8)


def test_brian2_spiking_statistics_match_torch_spiking(lif_ou):
    """Same network, same noise mode: firing rates and latent moments agree within the trials' spread."""
    kw = dict(trials=6, seed=2, noise="remainder")
    with pytest.warns(SpikeNoiseWarning, match="spike noise exceeds"):  # this small model's spikes out-noise it
        a = simulate_spiking(lif_ou, 20.0, record_spikes=True, **kw)
    b = run("brian2", lif_ou, 20.0, record_spikes=True, **kw)
    # both integrate the membrane exactly and place spikes at their exact times: the same rate curve;
    # the rates differ by the trials' spread only (6 x 2 s of 120 neurons: ~0.5 % at ~90 Hz)
    ra, rb = (np.array([len(tr.spikes_t[tr.spikes_i // 120 == i]) for i in range(6)]) for tr in (a, b))
    se = np.sqrt(ra.var(ddof=1) / 6 + rb.var(ddof=1) / 6)
    assert abs(ra.mean() - rb.mean()) < 4 * se, (ra, rb)
    for stat in (lambda z: z.mean(1), lambda z: z.std(1)):
        sa, sb = stat(a.z), stat(b.z)                       # per trial, (trials, d)
        se = np.sqrt(sa.var(0, ddof=1) / len(sa) + sb.var(0, ddof=1) / len(sb))
        assert np.all(np.abs(sa.mean(0) - sb.mean(0)) < 4 * se + 1e-12), (sa.mean(0), sb.mean(0), se)


def test_tanh_model_cannot_spike(small_model):
    with pytest.raises(DDMError, match="--neuron lif"):
        run("brian2", small_model, 0.5)


@CPP
def test_spiking_export_runs_from_a_copy_and_matches_the_back_end(lif_ou, tmp_path):
    import subprocess
    import sys

    from ddm_neuro.trajectory import Trajectory
    from exporters.brian2.export import export

    out = export(lif_ou, tmp_path / "proj", mode="spiking", trials=2, duration=1.0, progress=False)
    assert "spiking" in (out / "README.md").read_text()
    res = subprocess.run([sys.executable, "run.py", "--seed", "4", "--duration", "1", "-o", "t.npz"], cwd=out,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    t = Trajectory.load(out / "t.npz")
    ref = run("brian2-cpp", lif_ou, 1.0, seed=4, noise="remainder", record_spikes=True)
    assert t.meta["mode"] == "spiking" and len(t.spikes_t) == len(ref.spikes_t) > 100
    np.testing.assert_array_equal(t.z, ref.z)


def test_spiking_export_refuses_a_tanh_model(small_model, tmp_path):
    from exporters.brian2.export import export

    with pytest.raises(DDMError, match="--neuron lif"):
        export(small_model, tmp_path / "p", mode="spiking", progress=False)
    assert not (tmp_path / "p").exists()


def test_spiking_cuda_export_generates_code_without_a_gpu(lif_ou, tmp_path):
    pytest.importorskip("brian2cuda")
    from exporters.brian2.export import export

    out = export(lif_ou, tmp_path / "cuda", format="brian2-cuda", mode="spiking", duration=0.2, progress=False)
    assert (out / "code" / "makefile").exists() and list((out / "code").glob("code_objects/*.cu"))


@pytest.mark.parametrize("step_ms", [0.1, 1.0])
def test_brian2_realises_the_analytic_lif_rate_curve_at_any_step(step_ms):
    """Uncoupled LIF neurons at constant input fire at phi(x), at 0.1 ms and 1 ms steps: a periodic train
    started at a random phase counts ``D r`` spikes to within (-1, 1 + tau_ref r) over a window D."""
    from ddm_neuro.network import LatentRNN

    N, T, dur = 30, 0.1, 20.0
    x0 = np.linspace(1.05, 4.0, N)
    E = np.random.default_rng(0).normal(size=(N, 1)) * 0.1
    model = LatentRNN(neuron="lif", tau=0.02, time_scale=T, scale=np.ones(1), center=np.zeros(1), encoders=E,
                      decoders=np.zeros((1, N)), readout=E.T / (E[:, 0] @ E[:, 0]), bias=x0,
                      input_weights=np.zeros((N, 0)), noise_const=np.zeros(N), noise_act=np.zeros(N),
                      noise_latent=np.zeros((1, 1)), init_states=np.zeros((1, 1)), sde_spec=None, variables=["z"])
    tr = run("brian2", model, dur, trials=1, seed=0, z0=model.readout @ x0, noise=False, record_spikes=True,
             dt=step_ms * 1e-3 / T)   # z0 = D x0: the inputs start at x0 = b (no transient)
    counts = np.bincount(tr.spikes_i, minlength=N)
    expected = model.neuron.phi(x0) * dur * T
    rate = model.neuron.phi(x0)
    assert np.all((counts - expected > -1) & (counts - expected < 1 + 0.002 * rate)), counts - expected


@CPP
def test_cpp_records_every_sample_when_record_dt_is_not_a_power_of_two_steps(lif_ou):
    """Regression: with 7 steps per sample the build's dt was snapped to 12 digits on its own, 7 dt drifted
    from record_dt by ~1e-12 relative, and after ~1000 steps the clocks fell out of step (one sample lost)."""
    rec = lif_ou.meta["fit"]["record_dt"]
    tr = run("brian2-cpp", lif_ou, 300 * rec, trials=1, noise="none", dt=rec / 7)
    assert tr.z.shape[1] == 301 and np.isfinite(tr.z).all()
