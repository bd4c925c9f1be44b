"""The torch spiking simulator (LIF neurons, exponential synapses) and the spike-noise estimate.

* Single LIF neurons at constant input fire at exactly the fitted rate curve
  ``phi(x)``, at 0.1 ms and at a coarse 3 ms step (exact spike times inside a
  step, refractory time carried across steps, several spikes per step).
* Factored (``E K``) and dense (``W``) coupling give the same spikes.
* A fitted LIF model of the 2-D OU (N = 200) run as a spiking network stays
  near the target's stationary law (mean 0, std 1/sqrt 2).
* Spike noise: measured against the Poisson estimate (one recording step) and
  against the regular-firing prediction (lags of tau and 4 tau); injected noise
  has the units the module docstring states.
* Bad input is refused before anything is simulated.
"""
import warnings

import numpy as np
import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.spiking.measure import measure_spike_noise, residual_cov
from ddm_neuro.spiking.noise import SpikeNoiseWarning, regular_fano, spike_noise_cov, spike_noise_excess, warn_spike_noise
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory

# n_train 10000: with 3000 training states the closed form picks a tiny ridge lambda at N = 200 and
# decoders so large that one spike moves z by 2 standard deviations (the spiking network then sits in a corner).
SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)
OU_STD = 1 / np.sqrt(2)  # stationary std of dz = -z dt + dW


def uncoupled(bias, tau=0.02, T=0.1):
    """N LIF neurons with constant inputs ``bias`` (no recurrent weights), d = 1; start states have ``x = b``."""
    N = len(bias)
    E = np.random.default_rng(0).normal(size=(N, 1)) * 0.1
    D = E.T / (E[:, 0] @ E[:, 0])
    return LatentRNN(neuron="lif", tau=tau, time_scale=T, scale=np.ones(1), center=np.zeros(1), encoders=E,
                     decoders=np.zeros((1, N)), readout=D, bias=np.asarray(bias, float),
                     input_weights=np.zeros((N, 0)), noise_const=np.zeros(N), noise_act=np.zeros(N),
                     noise_latent=np.zeros((1, 1)), init_states=np.tile(D @ bias, (4, 1)), sde_spec=None,
                     variables=["z"])


@pytest.fixture(scope="module")
def ou_lif():
    return fit(get_system("ou"), n_neurons=200, neuron="lif", **SMALL)


@pytest.fixture(scope="module")
def measured(ou_lif):
    """Noise-free spiking OU: residual diffusion at one recording step (tau/10), tau and 4 tau."""
    return measure_spike_noise(ou_lif, 30.0, lags=(None, 1.0, 4.0), trials=2, seed=0)


@pytest.mark.parametrize("dt_ms", [0.1, 3.0])
def test_constant_input_rates_are_the_lif_curve(dt_ms):
    rng = np.random.default_rng(1)
    bias = np.exp(rng.uniform(np.log(1.02), np.log(80.0), 60))  # 14 .. 440 Hz (ISI down to 2.3 ms < 3 ms)
    m = uncoupled(bias)
    # x starts at b (init_states), where it stays: no coupling, no noise
    tr = simulate_spiking(m, 5.0, dt=dt_ms * 1e-3 / m.time_scale, seed=2, noise="none", record_spikes=True)
    st, si = tr.spikes_t * m.time_scale, tr.spikes_i
    rates = np.array([(np.sum(si == j) - 1) / np.ptp(st[si == j]) for j in range(len(bias))])
    # exact spike times: the analytic rate to rounding, whatever the step (a spike at the step's end would
    # give 1/(ceil(ISI/h) h): up to 30 % too slow at 3 ms)
    np.testing.assert_allclose(rates, m.neuron.phi(bias), rtol=1e-6)
    assert tr.meta["mode"] == "spiking" and tr.meta["backend"] == "torch"
    assert abs(tr.meta["mean_rate_hz"] / m.neuron.phi(bias).mean() - 1) < 0.02


def test_factored_and_dense_coupling_give_the_same_spikes(ou_lif):
    runs = [simulate_spiking(ou_lif, 2.0, trials=2, seed=4, noise="none", coupling=c, record_spikes=True)
            for c in ("factored", "dense")]
    a, b = runs
    assert len(a.spikes_t) > 1000 and a.meta["coupling"] == "factored" and b.meta["coupling"] == "dense"
    np.testing.assert_array_equal(a.spikes_i, b.spikes_i)
    np.testing.assert_allclose(a.spikes_t, b.spikes_t, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-8)
    assert set(np.unique(a.spikes_i // ou_lif.n_neurons)) == {0, 1}  # both trials, indices neuron + trial N
    assert a.spikes_t.min() >= 0 and a.spikes_t.max() <= 2.0


def test_spikes_round_trip_through_a_trajectory_file(ou_lif, tmp_path):
    tr = simulate_spiking(ou_lif, 0.5, seed=1, record_spikes=True, fano="regular")
    tr.save(tmp_path / "s.npz")
    back = Trajectory.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.spikes_i, tr.spikes_i)
    np.testing.assert_array_equal(back.spikes_t, tr.spikes_t)
    assert back.meta["mode"] == "spiking" and back.meta["fano"] == "regular"


def test_cli_records_spikes_and_draws_the_raster(ou_lif, tmp_path, capsys):
    from ddm_neuro.cli import main

    ou_lif.save(tmp_path / "m.ddm")
    args = ["simulate", str(tmp_path / "m.ddm"), "--mode", "spiking", "--spikes", "--duration", "1",
            "--trials", "2", "--figure", str(tmp_path / "r.png"), "-o", str(tmp_path / "s.npz"), "--quiet"]
    assert main(args) == 0
    tr = Trajectory.load(tmp_path / "s.npz")
    assert len(tr.spikes_t) > 0 and tr.spikes_i.max() < 2 * ou_lif.n_neurons
    assert (tr.spikes_i >= ou_lif.n_neurons).any()  # trial 1's neurons are indexed after trial 0's
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "spike raster and latent" in capsys.readouterr().out
    # the figure is an output like any other: not overwritten without --force, and nothing else written
    (tmp_path / "s.npz").unlink()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()


def test_fitted_lif_model_as_spiking_network_keeps_the_stationary_law(ou_lif):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpikeNoiseWarning)  # regular spike noise is well inside the budget
        tr = get_backend("torch", "spiking")(ou_lif, 40.0, trials=2, seed=1, u=None, mode="spiking",
                                             progress=False, fano="regular")
    assert tr.meta["mode"] == "spiking" and np.isfinite(tr.z).all()
    z = tr.z[:, len(tr.t) // 10:]
    assert np.all(np.abs(z.mean((0, 1))) < 0.3), z.mean((0, 1))
    std = z.std((0, 1))
    assert np.all((0.75 * OU_STD < std) & (std < 1.3 * OU_STD)), std
    assert 20 < tr.meta["mean_rate_hz"] < 300


def test_measured_spike_noise_against_the_estimates(ou_lif, measured):
    m = measured
    z = m.traj.z.reshape(-1, ou_lif.dim)[::4]
    assert np.allclose(m.lags, ou_lif.tau * np.array([0.1, 1.0, 4.0]), rtol=1e-3)
    # one recording step (2 ms, r lag ~ 0.2): nearly Poisson; a periodic train gives F = 1 - r lag
    assert np.all((0.3 < m.ratio_diag[0]) & (m.ratio_diag[0] < 1.0)), m.ratio_diag[0]
    # over tau and 4 tau the count error stays bounded (sigma-delta): F far below 1, falling as 1/lag
    assert m.fano[1] < 0.15 and m.fano[2] < 0.05 and m.fano[2] < 0.4 * m.fano[1], m.fano
    # ... and matches the regular-firing prediction within a factor 1.3 in every entry of the diagonal
    for lag, M in zip(m.lags, m.measured):
        pred = spike_noise_cov(ou_lif, z, fano=regular_fano(ou_lif, z, lag)).mean(0)
        ratio = np.diag(M) / np.diag(pred)
        assert np.all((1 / 1.3 < ratio) & (ratio < 1.3)), (lag, ratio)


def test_injected_noise_has_the_stated_units(ou_lif, measured):
    """noise="model" adds exactly the model's latent covariance on top of the spikes' (one recording step)."""
    tr = simulate_spiking(ou_lif, 30.0, record_dt=measured.traj.dt, trials=2, seed=0, noise="model")
    added = residual_cov(ou_lif, tr, [1])[0] - measured.measured[0]
    zz = tr.z.reshape(-1, ou_lif.dim)[::4]
    expect = ou_lif.latent_cov(zz).mean(0)
    assert np.all(np.abs(np.diag(added) / np.diag(expect) - 1) < 0.2), (added, expect)


def test_spike_noise_above_the_target_is_reported(ou_lif):
    ex = spike_noise_excess(ou_lif, 1.0)  # Poisson spikes: N = 200 is too few for the OU's unit diffusion
    assert ex["ratio"] > 1.5 and ex["n_needed"] >= 1.5 * ou_lif.n_neurons
    assert ex["tau_needed"] == pytest.approx(ex["ratio"] * ou_lif.tau)
    with pytest.warns(SpikeNoiseWarning, match=r"spikes alone are noisier.*along \(x [+-]0\.\d\d, y [+-]0\.\d\d\)"
                                                r".*N >= \d+ \(now 200\).*tau_syn >= [\d.]+ ms"):
        warn_spike_noise(ou_lif, 1.0)
    assert spike_noise_excess(ou_lif, "regular")["ratio"] < 0.2
    # the estimate scales with F and with each neuron's rate
    z = ou_lif.init_states[:5]
    np.testing.assert_allclose(spike_noise_cov(ou_lif, z, fano=0.5), 0.5 * spike_noise_cov(ou_lif, z))


def test_bad_input_is_refused_before_simulating(small_model, ou_lif):
    with pytest.raises(DDMError, match="needs LIF neurons.*fit with --neuron lif"):
        simulate_spiking(small_model, 1.0)  # tanh model
    with pytest.raises(DDMError, match="needs LIF neurons"):
        get_backend("torch", "spiking")(small_model, 1.0, trials=1, seed=0, u=None, mode="spiking", progress=False)
    with pytest.raises(DDMError, match="tau_syn = tau = 20 ms is shorter than 5 steps"):
        simulate_spiking(ou_lif, 1.0, dt=ou_lif.tau / (3 * ou_lif.time_scale))
    with pytest.raises(DDMError, match="no neuron can spike"):
        simulate_spiking(uncoupled(np.linspace(0.0, 0.99, 20)), 1.0)
    with pytest.raises(DDMError, match="noise must be one of"):
        simulate_spiking(ou_lif, 1.0, noise="poisson")
    with pytest.raises(DDMError, match="fano must be"):
        simulate_spiking(ou_lif, 1.0, fano=-1.0)
    with pytest.raises(DDMError, match="coupling"):
        simulate_spiking(ou_lif, 1.0, coupling="sparse")


def test_a_deterministic_target_gets_its_own_warning():
    model = fit(get_system("switch", sigma=0.0), n_neurons=60, neuron="lif", **SMALL)
    ex = spike_noise_excess(model, 1.0)
    assert ex["ratio"] > 1e6 and ex["n_needed"] is None and ex["spike_var"] > 0
    with pytest.warns(SpikeNoiseWarning, match=r"the target has \(almost\) no diffusion along \(m \+1\.00\)"):
        warn_spike_noise(model, 1.0)
