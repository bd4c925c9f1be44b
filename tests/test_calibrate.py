"""Measurements behind the spiking calibration (:mod:`ddm_neuro.spiking.drift_calibration`).

* The windowed drift-error estimator is unbiased: on a noise-free *rate*
  network, whose drift error is known exactly, it recovers that error.
* The realised rate curve of neurons at constant input is the analytic one
  (the torch simulator places spikes exactly), within the count's resolution.
* One calibration round runs end to end and records what it measured; a drift error put
  into the decoders on purpose is measured and cancelled.
"""
import copy

import numpy as np
import pytest

from ddm_neuro.spiking.drift_calibration import calibrate_spiking
from ddm_neuro.spiking.rate_curve import effective_rate
from ddm_neuro.spiking.window_error import bin_errors, drift_residual, systematic_drift_error
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system

SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)


@pytest.fixture(scope="module")
def vdp():
    sde = get_system("van_der_pol", sigma=0.0)
    return sde, fit(sde, n_neurons=60, neuron="lif", seed=1, **SMALL)


def test_window_estimator_recovers_a_rate_networks_known_drift_error(vdp):
    sde, model = vdp
    h = model.meta["fit"]["integration_dt"]
    # recorded at every integration step: the estimator's trapezoid rule then differs from the Euler
    # path only by a boundary term (f_end - f_start) / (2 k)
    traj = simulate_network(model, 20.0, trials=4, seed=0, noise=False, dt=h, record_dt=h)
    zm, e = bin_errors(model, sde, traj)
    # exact: the Euler network's increments are left sums of its latent drift T S (K phi - y) / tau;
    # the estimator compares them with the trapezoid average of the target's drift along the same path
    z = traj.z
    f_net = model.latent_drift(z.reshape(-1, 2)).reshape(z.shape)
    f = sde.drift(z.reshape(-1, 2)).reshape(z.shape)
    k = round(2 * model.tau / (traj.dt * model.time_scale))
    m = (z.shape[1] - 1) // k
    trap = lambda a: (a[:, 1:] + a[:, :-1]).sum(1) / (2 * (a.shape[1] - 1))  # noqa: E731
    ex = np.stack([f_net[:, i * k:(i + 1) * k].mean(1) - trap(f[:, i * k:(i + 1) * k + 1])
                   for i in range(m)], 1).reshape(-1, 2)
    got = e * (model.scale * model.time_scale / model.tau)
    scale = np.sqrt((ex ** 2).mean())
    assert scale > 0
    assert np.sqrt(((got - ex) ** 2).mean()) < 1e-6 * scale
    res = drift_residual(model, sde, traj)
    assert 0 < systematic_drift_error(model, sde, res, z.reshape(-1, 2)) < 1


def test_realised_rate_curve_at_constant_input_is_the_analytic_one():
    N, T = 40, 0.1
    x0 = np.linspace(1.05, 4.0, N)
    E = np.random.default_rng(0).normal(size=(N, 1)) * 0.1
    model = LatentRNN(neuron="lif", tau=0.02, time_scale=T, scale=np.ones(1), center=np.zeros(1), encoders=E,
                      decoders=np.zeros((1, N)), readout=E.T / (E[:, 0] @ E[:, 0]), bias=x0,
                      input_weights=np.zeros((N, 0)), noise_const=np.zeros(N), noise_act=np.zeros(N),
                      noise_latent=np.zeros((1, 1)), init_states=np.zeros((1, 1)), sde_spec={}, variables=["z"])
    traj = simulate_spiking(model, 20.0, trials=1, seed=0, z0=np.zeros(1), noise="none", record_spikes=True)
    curve = effective_rate(model, traj)
    n_spikes = len(traj.spikes_t)
    assert n_spikes > 1000
    # a regular train's count over a window is off by at most one spike: per bin ratio error <= windows/predicted
    assert np.all(np.abs(curve.ratio - 1) < 0.05), curve.to_dict()
    assert np.allclose(curve(x0), model.neuron.phi(x0), rtol=0.05)


def test_calibration_round_trip_records_its_measurements(vdp):
    sde, model = vdp
    cal = calibrate_spiking(model, sde, rounds=2, duration=8.0, trials=8, seed=0)
    info = cal.meta["spiking_calibration"]
    assert 1 <= len(info["rounds"]) <= 2
    assert info["systematic_drift_error"] == min(r["systematic_drift_error"] for r in info["rounds"])
    assert all(r["split_half_noise"] > 0 for r in info["rounds"])
    assert cal.decoders.shape == model.decoders.shape and np.isfinite(cal.decoders).all()


def test_calibration_cancels_a_drift_error_it_measures(vdp):
    """Decoders 8 % too large give the spiking network a gross drift error; one round of
    cancellation must remove most of it (measured on fresh runs by the same estimator)."""
    sde, _ = vdp
    bad = fit(sde, n_neurons=200, neuron="lif", seed=2, **SMALL)
    bad.decoders = bad.decoders * 1.08
    cal = calibrate_spiking(bad, sde, rounds=3, duration=6.0, trials=32, seed=1)
    info = cal.meta["spiking_calibration"]
    before, after = info["systematic_drift_error_uncalibrated"], info["systematic_drift_error"]
    assert info["best_round"] >= 1
    # the fix is real, not noise: the improvement exceeds 3x the calibrated estimate's split-half noise
    assert before - after > 3 * info["rounds"][info["best_round"]]["split_half_noise"], info["rounds"]
    assert after < 0.5 * before


@pytest.mark.parametrize("kw, match", [({"damping": 0.0}, "damping"), ({"rounds": 0}, "rounds"),
                                       ({"trials": 2}, "trials")])
def test_calibration_rejects_bad_settings(vdp, kw, match):
    sde, model = vdp
    with pytest.raises(DDMError, match=match):
        calibrate_spiking(model, sde, **kw)


def test_calibration_refuses_a_tanh_model():
    sde = get_system("ou")
    model = fit(sde, n_neurons=20, seed=0, **SMALL)
    with pytest.raises(DDMError, match="LIF"):
        calibrate_spiking(model, sde, rounds=1)


def test_cli_calibrate_writes_the_calibrated_model(vdp, tmp_path, capsys):
    from ddm_neuro.cli import main

    sde, model = vdp
    model.save(tmp_path / "m.ddm")
    args = ["calibrate", str(tmp_path / "m.ddm"), "--rounds", "2", "--trials", "8", "--duration", "8",
            "-o", str(tmp_path / "c.ddm"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "round 0: systematic drift error" in out and "noise none" in out  # the default
    assert "(torch, compiled step loop, 1 thread;" in out  # the fastest engine here, and it says so
    cal = LatentRNN.load(tmp_path / "c.ddm")
    info = cal.meta["spiking_calibration"]
    assert info["trials"] == 8 and info["noise"] == "none" and len(info["rounds"]) >= 1
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # no overwrite without --force


def test_cli_calibrate_refuses_runs_too_short_before_simulating(vdp, tmp_path, capsys):
    from ddm_neuro.cli import main

    _, model = vdp
    model.save(tmp_path / "m.ddm")
    assert main(["calibrate", str(tmp_path / "m.ddm"), "--trials", "4", "--duration", "0.5",
                 "-o", str(tmp_path / "c.ddm"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "calibration runs too short" in err and "trials >=" in err
    assert not (tmp_path / "c.ddm").exists()


def test_cli_calibrate_refuses_an_unknown_backend_before_simulating(vdp, tmp_path, capsys):
    from ddm_neuro.cli import main

    _, model = vdp
    model.save(tmp_path / "m.ddm")
    assert main(["calibrate", str(tmp_path / "m.ddm"), "--backend", "loihi", "-o", str(tmp_path / "c.ddm"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'loihi'" in err and "brian2-cpp" in err
    assert not (tmp_path / "c.ddm").exists()


def test_noisy_calibration_round_records_drift_and_diffusion_at_the_verifiers_lag():
    from ddm_neuro.verify.checks import choose_lag

    sde = get_system("ou")
    model = fit(sde, n_neurons=60, neuron="lif", seed=2, **SMALL)
    cal = calibrate_spiking(model, sde, rounds=1, duration=10.0, trials=8, seed=1, noise="remainder", degree=2)
    info = cal.meta["spiking_calibration"]
    r0 = info["rounds"][0]
    assert info["estimator"].startswith("lag residual") and info["noise"] == "remainder"
    assert all(np.isfinite(r0[k]) and r0[k] > 0 for k in ("systematic_drift_error", "split_half_noise",
                                                           "diffusion_error", "diffusion_split_half_noise"))
    traj = simulate_spiking(model, 2.0, trials=2, seed=0)
    assert r0["lag"] == pytest.approx(choose_lag(sde, traj)[0], rel=1e-3)


@pytest.mark.slow
def test_noisy_calibration_cancels_drift_and_diffusion_errors_it_measures():
    """With the model's noise on (stochastic target), decoders 30 % too large and private noise
    doubled give the spiking network gross drift and diffusion errors; the lag-residual rounds
    must measure both (each well above its split-half noise) and cancel most of each."""
    sde = get_system("ou")
    bad = fit(sde, n_neurons=200, neuron="lif", seed=2, **SMALL)
    bad.decoders = bad.decoders * 1.3
    bad.noise_const, bad.noise_act = bad.noise_const * 2.0, bad.noise_act * 2.0
    cal = calibrate_spiking(bad, sde, rounds=3, duration=100.0, trials=16, seed=1, noise="remainder", degree=2)
    info = cal.meta["spiking_calibration"]
    r0, best = info["rounds"][0], info["rounds"][info["best_round"]]
    assert info["best_round"] >= 1
    assert r0["systematic_drift_error"] > 3 * r0["split_half_noise"], r0
    assert r0["diffusion_error"] > 3 * r0["diffusion_split_half_noise"], r0
    assert best["systematic_drift_error"] < 0.5 * r0["systematic_drift_error"], info["rounds"]
    assert best["diffusion_error"] < 0.5 * r0["diffusion_error"], info["rounds"]


def test_calibration_input_is_checked_against_the_model(vdp):
    sde, model = vdp
    with pytest.raises(DDMError, match="no inputs"):
        calibrate_spiking(model, sde, rounds=1, u=[0.5])


def test_cli_calibrate_refuses_an_input_that_is_not_constant(tmp_path, capsys):
    from ddm_neuro.cli import main

    sde = get_system("switch")
    model = fit(sde, n_neurons=30, neuron="lif", seed=0, **SMALL)
    model.save(tmp_path / "m.ddm")
    assert main(["calibrate", str(tmp_path / "m.ddm"), "--input", "u=0:0,5:1", "--noise", "remainder",
                 "-o", str(tmp_path / "c.ddm"), "--quiet"]) == 2
    assert "constant input" in capsys.readouterr().err
    assert not (tmp_path / "c.ddm").exists()




@pytest.mark.slow
def test_calibration_at_cue_inputs_cancels_an_error_that_only_shows_there():
    """Input weights twice too large leave the switch's drift as fitted at u = 0 and wrong at its cues
    u = +-0.5. Calibrating at the three levels together measures the error at each cue (well above its
    split-half noise) and cancels most of it at each (about 30 s; sigma 0.8 keeps N = 200's spike noise
    small against the target's)."""
    from ddm_neuro.spiking.calibration import calibrate, cue_levels

    sde = get_system("switch", sigma=0.8)
    bad = fit(sde, n_neurons=200, neuron="lif", seed=3, **SMALL)
    bad.input_weights = bad.input_weights * 2.0
    cal = calibrate(bad, sde, rounds=2, duration=100.0, trials=8, noise="remainder", seed=2, cues=True)
    info = cal.meta["spiking_calibration"]
    assert info["levels"] == [lv.tolist() for lv in cue_levels(sde)] == [[0.0], [0.5], [-0.5]]
    first = info["rounds"][0]["levels"]
    best = info["rounds"][info["best_round"]]["levels"]
    assert info["best_round"] >= 1
    for j in (1, 2):
        assert first[j]["systematic_drift_error"] > 3 * first[j]["split_half_noise"], first[j]
        assert best[j]["systematic_drift_error"] < 0.5 * first[j]["systematic_drift_error"], (first[j], best[j])


def test_each_inputs_residual_applies_to_its_own_interleaved_rows():
    """With L inputs, training row j belongs to input j % L (so the noise fit's first rows hold every input):
    the states carry that input and lie where the target and the network go at it, and each input's measured
    residual (and covariance) lands on its rows only."""
    from ddm_neuro.spiking import drift_calibration as dc

    class Res:
        def __init__(self, c):
            self.c = c

        def __call__(self, z):
            return z * 0 + self.c

        def cov(self, z):
            return np.full((len(z), 1, 1), 10 * self.c)

    z = np.arange(7.0)[:, None]
    both = dc._Interleaved([Res(1.0), Res(2.0), Res(3.0)])
    np.testing.assert_array_equal(both(z)[:, 0], [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(both.cov(z[:4])[:, 0, 0], [10, 20, 30, 10])

    rng = np.random.default_rng(0)
    centres = {0.0: 0.0, 0.5: 1.0, -0.5: -1.0}

    class Lv:  # an input level: its input and the target's attractor there
        def __init__(self, u):
            self.u0 = np.array([u])
            self.z_vis = centres[u] + 0.1 * rng.normal(size=(500, 1))

    class Tr:  # the network's run at that level
        def __init__(self, u):
            self.z = centres[u] + 0.1 * rng.normal(size=(2, 50, 1))

    sde = get_system("switch")
    model = fit(sde, n_neurons=20, neuron="lif", seed=0, **SMALL)
    us = (0.0, 0.5, -0.5)
    zt, ut = dc._training_states(model, sde, [Lv(u) for u in us], [Tr(u) for u in us], 300, rng)
    assert zt.shape == (300, 1) and ut.shape == (300, 1)
    np.testing.assert_array_equal(ut[:6, 0], [0.0, 0.5, -0.5, 0.0, 0.5, -0.5])
    for i, u in enumerate(us):   # each input's rows lie around its own attractor (jittered), not the other wells
        assert np.all(ut[i::3, 0] == u)
        assert np.all(np.abs(zt[i::3, 0] - centres[u]) < 0.5), (u, zt[i::3, 0].min(), zt[i::3, 0].max())


def test_calibration_at_cue_inputs_needs_inputs(vdp):
    from ddm_neuro.spiking.calibration import calibrate

    sde, model = vdp
    with pytest.raises(DDMError, match="no inputs"):
        calibrate(model, sde, rounds=1, cues=True)
