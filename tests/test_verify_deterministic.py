"""Verification against a deterministic target (noise 0): ddm_neuro/verify/deterministic.py."""
import json

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory
from ddm_neuro.verify import verify
from ddm_neuro.verify.deterministic import DRIFT_TOLERANCE, is_deterministic


@pytest.fixture(scope="module")
def vdp():
    sde = get_system("van_der_pol", sigma=0.0)
    return sde, simulate_sde(sde, 30.0, trials=4, seed=1)


@pytest.fixture(scope="module")
def lorenz():
    sde = get_system("lorenz", noise=0.0)
    return sde, simulate_sde(sde, 10.0, trials=4, seed=1)


def _relabel(traj, factor, jitter=0.0, seed=0):
    """The same path claimed to run ``factor`` times faster (drift x factor), optionally with
    independent Gaussian read-out jitter of standard deviation ``jitter`` on every sample."""
    z = traj.z + jitter * np.random.default_rng(seed).normal(size=traj.z.shape)
    return Trajectory(t=traj.t / factor, z=z, dt=traj.dt / factor, meta={"backend": "test"})


def test_noise_free_targets_are_recognised():
    z = np.random.default_rng(0).normal(size=(50, 3)) * 5
    assert is_deterministic(get_system("lorenz", noise=0.0), z, rate=10.0)
    assert not is_deterministic(get_system("lorenz", noise=0.01), z, rate=10.0)


def test_target_passes_with_zero_drift_error_and_independent_references(lorenz):
    sde, tr = lorenz
    rep = verify(sde, tr, seed=5, model_drift=lambda z, u: sde.drift(z))
    assert rep.info["deterministic_target"] and rep.passed, rep.table()
    assert rep.metrics["drift"]["value"] < 1e-3 and rep.metrics["drift"]["threshold"] == DRIFT_TOLERANCE
    # no diffusion metric and no entropy production against a target without noise; both are noted
    assert "diffusion" not in rep.metrics and "entropy_production" not in rep.metrics
    assert any("entropy production skipped" in n for n in rep.info["notes"])
    # perturbed starts make the chaotic reference runs independent: a stationary baseline of exact
    # copies would be near zero
    assert rep.metrics["stationary"]["baseline"] > 0.02


@pytest.mark.parametrize("factor", [1.05, 1.15])
def test_drift_scaled_by_factor_reads_as_that_relative_error(vdp, factor):
    sde, tr = vdp
    rep = verify(sde, _relabel(tr, factor), seed=5)
    value = rep.metrics["drift"]["value"]
    assert abs(value - (factor - 1)) < 0.25 * (factor - 1), value
    assert rep.metrics["drift"]["passed"] == (value <= DRIFT_TOLERANCE)
    assert not rep.passed  # 5 % and 15 % are both above the default 3 %
    loose = verify(sde, _relabel(tr, factor), seed=5, drift_tolerance=0.3)
    assert loose.metrics["drift"]["passed"] and loose.metrics["drift"]["threshold"] == 0.3


def test_run_noise_is_removed_from_the_drift_and_reported(vdp):
    sde, tr = vdp
    s = 0.01
    rep = verify(sde, _relabel(tr, 1.0, jitter=s), seed=5)
    m = rep.metrics["drift"]
    assert m["raw"] > 2 * m["value"] and m["noise_floor"] > 0.01
    # jitter of variance s^2 on both ends of an increment: covariance 2 s^2 / lag per coordinate
    expected = 2 * s ** 2 / rep.info["delta"] * 2
    assert rep.info["run_diffusion"]["trace"] == pytest.approx(expected, rel=0.15)
    # too much jitter for the tolerance: the run cannot resolve it and fails, saying so
    noisy = verify(sde, _relabel(tr, 1.0, jitter=0.03), seed=5)
    assert not noisy.metrics["drift"]["passed"]
    assert any("cannot resolve" in n for n in noisy.info["notes"])


def test_tolerance_is_checked_and_ignored_for_stochastic_targets():
    sde = get_system("ou")
    tr = simulate_sde(sde, 20.0, trials=2, seed=1)
    rep = verify(sde, tr, seed=5, drift_tolerance=0.5)
    assert not rep.info["deterministic_target"] and "diffusion" in rep.metrics
    assert any("drift tolerance ignored" in n for n in rep.info["notes"])
    with pytest.raises(ValueError, match="drift tolerance"):
        verify(sde, tr, drift_tolerance=-1.0)


def test_cli_spiking_run_of_a_chaotic_target_skips_the_rate_lyapunov(tmp_path, lorenz, capsys):
    from ddm_neuro.fit.matching import fit

    sde, tr = lorenz
    model = fit(sde, n_neurons=32, steps=0, n_train=2000, n_val=500, n_test=300, n_noise=50, seed=0,
                progress=False)
    model.save(tmp_path / "m.ddm")
    Trajectory(t=tr.t, z=tr.z, dt=tr.dt, meta={**tr.meta, "mode": "spiking"}).save(tmp_path / "spk.npz")
    assert main(["verify", str(tmp_path / "m.ddm"), str(tmp_path / "spk.npz"), "--report",
                 str(tmp_path / "rep"), "--drift-tolerance", "0.05"]) == 0
    err = capsys.readouterr().err
    assert "spiking run" in err and "Lyapunov check is skipped" in err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert "lyapunov" not in rep["metrics"] and rep["metrics"]["drift"]["threshold"] == 0.05
    assert main(["verify", str(tmp_path / "m.ddm"), str(tmp_path / "spk.npz"), "--drift-tolerance", "0"]) == 2
    assert "--drift-tolerance: must be a finite number > 0" in capsys.readouterr().err


def test_spiking_runs_are_judged_at_lags_of_at_least_the_synaptic_time(lorenz):
    sde, tr = lorenz
    spk = Trajectory(t=tr.t, z=tr.z, dt=tr.dt, meta={**tr.meta, "mode": "spiking", "tau_syn": 0.02,
                                                     "time_scale": 0.5})
    plain = verify(sde, tr, seed=5)
    assert plain.info["delta"] < 0.04
    rep = verify(sde, spk, seed=5)
    assert 0.04 <= rep.info["delta"] < 0.04 + tr.dt and any("synaptic time" in n for n in rep.info["notes"])
    assert verify(sde, spk, seed=5, delta=tr.dt).info["delta"] == pytest.approx(tr.dt)  # asked for: kept
    # a stochastic target keeps its own lag: the spikes' jitter is part of what it is judged on
    noisy = get_system("lorenz")
    assert verify(noisy, spk, seed=5).info["delta"] < 0.04
