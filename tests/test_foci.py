"""Unstable foci (:mod:`ddm_neuro.spiking.unstable_foci`): found, pushed, and calibrated so that runs leave them.

* Lorenz's C+- are found with the spiral eigenvalue of the exact Jacobian;
  systems without a growing spiral have none.
* A push of ``kappa`` raises the spiral's growth of the (rate) network at
  the focus by about ``kappa`` and leaves the drift far from it alone.
* A van der Pol network whose unstable focus (the origin) was made stable on
  purpose traps runs started near it; the calibration measures that, raises
  ``kappa`` until every run leaves, and records the target's escape next to
  the network's.
"""
import numpy as np
import pytest

from ddm_neuro.spiking.states import attractor_states as _attractor
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.spiking.unstable_foci import calibrate_foci, escape_times, push_decoders, unstable_foci
from ddm_neuro.network import LatentRNN
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory

SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)


@pytest.fixture(scope="module")
def vdp():
    sde = get_system("van_der_pol", sigma=0.0)
    return sde, fit(sde, n_neurons=150, neuron="lif", seed=1, **SMALL)


def jacobian(model, z, eps=1e-4):
    return np.stack([(model.latent_drift((z + eps * e)[None]) - model.latent_drift((z - eps * e)[None]))[0]
                     / (2 * eps) for e in np.eye(len(z))], 1)


def test_lorenz_foci_are_c_plus_and_minus_with_the_exact_spiral():
    sde = get_system("lorenz", noise=0.0)
    rng = np.random.default_rng(0)
    foci = unstable_foci(sde, _attractor(sde, rng, None), rng)
    c = np.sqrt(8 / 3 * 27)
    assert sorted(f.centre[0] for f in foci) == pytest.approx([-c, c], abs=1e-6)  # not round(): a value at a rounding boundary flips
    for f in foci:
        assert f.centre[2] == pytest.approx(27.0, abs=1e-6)
        lam = np.linalg.eigvals(sde.jacobian(f.centre[None])[0])
        spiral = lam[np.argmax(lam.imag)]
        assert f.growth == pytest.approx(spiral.real, rel=1e-3) and f.rotation == pytest.approx(spiral.imag, rel=1e-3)
        P = f.projection
        assert np.allclose(P @ P, P, atol=1e-9) and np.linalg.matrix_rank(P, tol=1e-6) == 2
        stable = np.linalg.eig(sde.jacobian(f.centre[None])[0])[1][:, np.argmin(lam.real)].real
        assert np.linalg.norm(P @ stable) < 1e-6          # the stable direction is projected out
        assert np.allclose(f.basis @ f.basis.T, np.eye(2), atol=1e-9)
        assert np.allclose(f.radius(f.starts(np.array([0.5, 2.0]), rng)), [0.5, 2.0])


@pytest.mark.parametrize("name", ["double_well", "ou_rot"])
def test_systems_without_a_growing_spiral_have_no_unstable_focus(name):
    sde = get_system(name)
    rng = np.random.default_rng(0)
    assert unstable_foci(sde, _attractor(sde, rng, None), rng) == []


def test_escape_times_are_first_crossings_and_inf_for_runs_that_stay(vdp):
    sde, _ = vdp
    rng = np.random.default_rng(0)
    (focus,) = unstable_foci(sde, _attractor(sde, rng, None), rng)
    t = np.arange(11) * 0.1
    r = np.stack([np.linspace(0.1, 1.1, 11), np.full(11, 0.2)])        # leaves at t = 0.5; stays
    z = focus.centre + r[..., None] * focus.basis[0]
    got = escape_times(Trajectory(t=t, z=z, dt=0.1), focus, 0.6)
    assert got[0] == pytest.approx(0.5) and np.isinf(got[1])


def test_push_raises_the_spiral_growth_at_the_focus_and_not_far_from_it(vdp):
    sde, model = vdp
    rng = np.random.default_rng(0)
    (focus,) = unstable_foci(sde, _attractor(sde, rng, None), rng)
    assert focus.growth == pytest.approx(0.5, rel=1e-3)                # mu / 2
    pushed = push_decoders(model, sde, [focus], [1.0], 0.5, rng)
    before = np.linalg.eigvals(jacobian(model, focus.centre)).real.max()
    after = np.linalg.eigvals(jacobian(pushed, focus.centre)).real.max()
    assert after - before == pytest.approx(1.0, abs=0.3)
    far = np.array([[2.0, 0.0], [0.0, 2.5], [-2.0, 0.5]])             # on the limit cycle, 4+ windows out
    change = np.abs(pushed.latent_drift(far) - model.latent_drift(far)).max()
    assert change < 0.05 * np.abs(sde.drift(far)).max()
    assert np.array_equal(pushed.encoders, model.encoders) and np.array_equal(pushed.noise_act, model.noise_act)


def test_calibration_lifts_a_focus_made_stable_on_purpose(vdp):
    sde, model = vdp
    rng = np.random.default_rng(0)
    (focus,) = unstable_foci(sde, _attractor(sde, rng, None), rng)
    stable = push_decoders(model, sde, [focus], [-1.5], 0.5, rng)      # growth 0.5 -> about -1: a sink
    stable.meta = dict(model.meta)
    out = calibrate_foci(stable, sde, trials=6, window=0.5, seed=2)
    (rec,) = out.meta["foci_calibration"]["foci"]
    first = rec["steps"][0]["escape"]
    assert rec["steps"][0]["kappa"] == 0.0 and not np.isfinite(first).all()   # trapped as given
    assert rec["escaped"] and rec["kappa"] > 0
    assert np.isfinite(rec["steps"][-1]["escape"]).all()
    assert np.isfinite(rec["target_escape"]).all()
    assert np.linalg.eigvals(jacobian(out, focus.centre)).real.max() > 0


def test_calibration_refuses_a_target_without_focus_and_a_tanh_model(vdp):
    sde, model = vdp
    with pytest.raises(DDMError, match="no unstable focus"):
        calibrate_foci(model, get_system("ou_rot"), trials=4)
    tanh = LatentRNN.__new__(LatentRNN)
    tanh.__dict__.update(model.__dict__)
    tanh.neuron = type("N", (), {"name": "tanh"})()
    with pytest.raises(DDMError, match="LIF"):
        calibrate_foci(tanh, sde, trials=4)


def test_cli_calibrate_foci_only(vdp, tmp_path, capsys):
    from ddm_neuro.cli import main

    sde, model = vdp
    model.save(tmp_path / "m.ddm")
    assert main(["calibrate", str(tmp_path / "m.ddm"), "--rounds", "0", "-o", str(tmp_path / "c.ddm")]) == 2
    assert "--foci" in capsys.readouterr().err and not (tmp_path / "c.ddm").exists()
    args = ["calibrate", str(tmp_path / "m.ddm"), "--rounds", "0", "--foci", "--foci-trials", "4",
            "-o", str(tmp_path / "c.ddm"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unstable foci" in out and "growth 0.5" in out
    info = LatentRNN.load(tmp_path / "c.ddm").meta["foci_calibration"]
    assert len(info["foci"]) == 1 and len(info["foci"][0]["steps"]) >= 1


def test_calibration_refuses_a_focus_too_slow_to_leave(vdp):
    sde, model = vdp
    with pytest.raises(DDMError, match="max_duration"):
        calibrate_foci(model, sde, trials=4, max_duration=1.0)


def test_cli_calibrate_drift_then_foci_records_both(vdp, tmp_path, capsys):
    from ddm_neuro.cli import main

    sde, model = vdp
    model.save(tmp_path / "m.ddm")
    args = ["calibrate", str(tmp_path / "m.ddm"), "--rounds", "1", "--trials", "8", "--duration", "8", "--foci",
            "--foci-trials", "4", "-o", str(tmp_path / "c.ddm"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "round 0: systematic drift error" in out and "unstable foci" in out
    meta = LatentRNN.load(tmp_path / "c.ddm").meta
    assert meta["spiking_calibration"]["trials"] == 8 and meta["foci_calibration"]["trials"] == 4
