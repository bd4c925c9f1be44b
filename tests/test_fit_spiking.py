"""Spiking-aware ridge lambda (FitConfig.spike_budget, ``ddm-neuro fit --spiking``)."""
import math

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import SPIKING_BUDGET, fit, spike_ratio
from ddm_neuro.network import LatentRNN
from ddm_neuro.spiking.noise import spike_noise_excess
from ddm_neuro.sde.systems import get_system

SMALL = dict(n_neurons=120, neuron="lif", steps=0, seed=1, n_train=4000, n_val=1500, n_test=1000, n_noise=100,
             progress=False)


@pytest.fixture(scope="module")
def pair():
    """The same small LIF double well fitted for rate accuracy and for spiking."""
    sde = get_system("double_well", c=1.0)
    return sde, fit(sde, **SMALL), fit(sde, spike_budget=SPIKING_BUDGET, **SMALL)


def test_spiking_lambda_is_larger_decoders_smaller_spike_noise_lower(pair):
    sde, rate, spk = pair
    sr = spk.meta["fit"]["spike_ridge"]
    # the walk starts exactly at the rate-accuracy choice of an ordinary fit
    assert sr["rate_lambda"] == pytest.approx(rate.meta["fit"]["ridge_lambda"], rel=1e-9)
    assert spk.meta["fit"]["ridge_lambda"] == pytest.approx(sr["lambda"], rel=1e-12)
    assert sr["factor"] > 10                     # at N = 120 the rate choice is far too noisy for spikes
    assert np.linalg.norm(spk.decoders) < 0.5 * np.linalg.norm(rate.decoders)
    assert sr["spike_ratio"] < 0.2 * sr["rate_spike_ratio"]
    # the library's own count (Poisson) agrees that the spiking fit's spikes are quieter
    z = rate.init_states
    ex_rate = spike_noise_excess(rate, fano=1.0, z=z)["ratio"]
    ex_spk = spike_noise_excess(spk, fano=1.0, z=z)["ratio"]
    assert ex_spk < 0.2 * ex_rate
    # and what it paid: more drift error, within the cap
    assert sr["val_drift_error"] >= sr["rate_val_drift_error"]
    assert sr["val_drift_error"] <= sr["drift_cap"]
    assert math.isfinite(spk.meta["fit"]["drift_error"]) and spk.meta["fit"]["drift_error"] < 0.3


def test_meta_records_the_choice(pair):
    _, rate, spk = pair
    assert "spike_ridge" not in rate.meta["fit"]
    sr = spk.meta["fit"]["spike_ridge"]
    for key in ("budget", "drift_cap", "lag", "rate_lambda", "lambda", "factor", "spike_ratio", "rate_spike_ratio",
                "val_drift_error", "rate_val_drift_error", "budget_met", "limited_by", "grid", "spike_ratio_final",
                "deterministic_target", "fano"):
        assert key in sr, key
    assert sr["budget"] == SPIKING_BUDGET and sr["drift_cap"] == 0.08 and sr["fano"] == 1.0
    assert sr["deterministic_target"] is False
    assert sr["budget_met"] == (sr["spike_ratio"] <= sr["budget"])
    assert sr["limited_by"] in ("budget", "drift_cap", "grid")
    assert 0 < sr["lag"] < 0.1                  # the verifier's lag for the double well (~0.02)
    grid = np.array(sr["grid"])
    assert grid[0, 0] == 1.0 and np.all(np.diff(grid[:, 0]) > 0)
    assert np.all(np.diff(grid[:, 2]) < 0)       # more ridge, less spike noise
    i = int(np.argmin(np.abs(grid[:, 0] - sr["factor"])))
    assert grid[i, 2] == pytest.approx(sr["spike_ratio"])
    # closed form only: the final decoders are the chosen ones
    assert sr["spike_ratio_final"] == pytest.approx(sr["spike_ratio"], rel=1e-9)


def test_spike_ratio_agrees_with_spike_noise_excess(pair):
    """spike_ratio (latent units) is spike_noise_excess's Poisson ratio (SDE units) for the same reference."""
    _, _, m = pair
    z = m.init_states
    r = m.neuron.phi(m.neuron_inputs(z)).mean(0)
    c_lat = m.latent_cov(z).mean(0) / np.outer(m.scale, m.scale) / m.time_scale
    assert spike_ratio(m.decoders, r, c_lat, m.tau) == pytest.approx(spike_noise_excess(m, 1.0, z)["ratio"],
                                                                     rel=1e-6)


def test_rule_end_points():
    sde = get_system("double_well", c=1.0)
    base = fit(sde, **SMALL)
    # a budget the rate choice already meets: nothing changes
    loose = fit(sde, spike_budget=1e9, **SMALL)
    sr = loose.meta["fit"]["spike_ridge"]
    assert sr["factor"] == 1.0 and sr["budget_met"] and sr["limited_by"] == "budget"
    np.testing.assert_allclose(loose.decoders, base.decoders, rtol=1e-8, atol=1e-14)
    # a cap nothing above the rate choice meets: the rate choice is kept
    capped = fit(sde, spike_budget=1e-6, spike_drift_cap=1e-9, **SMALL)
    sr = capped.meta["fit"]["spike_ridge"]
    assert sr["factor"] == 1.0 and not sr["budget_met"] and sr["limited_by"] == "drift_cap"


def test_refinement_keeps_the_spiking_lambda():
    sde = get_system("double_well", c=1.0)
    m = fit(sde, spike_budget=0.05, **{**SMALL, "steps": 8})
    f = m.meta["fit"]
    assert f["ridge_lambda"] == pytest.approx(f["spike_ridge"]["lambda"], rel=1e-12)
    assert f["spike_ridge"]["factor"] > 1
    assert math.isfinite(f["drift_error"]) and f["drift_error"] < 0.3
    assert f["spike_ridge"]["spike_ratio_final"] > 0


def test_deterministic_target_uses_the_drift_over_the_lag():
    sde = get_system("van_der_pol", sigma=0.0)
    m = fit(sde, spike_budget=0.02, **{**SMALL, "n_neurons": 80})
    sr = m.meta["fit"]["spike_ridge"]
    assert sr["deterministic_target"] is True
    assert math.isfinite(sr["spike_ratio"]) and math.isfinite(sr["rate_spike_ratio"])
    assert sr["spike_ratio"] <= sr["rate_spike_ratio"]


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "0.02"])
def test_bad_spike_budget_is_refused(value):
    with pytest.raises(DDMError, match="spike_budget must be None or a finite number > 0"):
        fit(get_system("double_well"), spike_budget=value, **SMALL)


@pytest.mark.parametrize("value", [0, -0.1, float("nan"), None])
def test_bad_drift_cap_is_refused(value):
    with pytest.raises(DDMError, match="spike_drift_cap must be a finite number > 0"):
        fit(get_system("double_well"), spike_budget=0.02, spike_drift_cap=value, **SMALL)


def test_spike_budget_needs_lif():
    with pytest.raises(DDMError, match="needs LIF neurons"):
        fit(get_system("double_well"), spike_budget=0.02, **{**SMALL, "neuron": "tanh"})


def test_cli_spiking_writes_a_spiking_model(tmp_path, capsys):
    out = tmp_path / "dw.ddm"
    assert main(["fit", "double_well", "--param", "c=1", "-n", "150", "--spiking", "--steps", "0", "--quiet",
                 "-o", str(out)]) == 0
    m = LatentRNN.load(out)
    assert m.neuron.name == "lif"               # --spiking implies LIF
    sr = m.meta["fit"]["spike_ridge"]
    assert sr["budget"] == SPIKING_BUDGET and sr["factor"] > 1
    assert "spiking ridge lambda" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--spiking", "--neuron", "tanh"], ["--neuron tanh", "cannot spike"]),
    (["--spike-drift-cap", "0.1"], ["--spike-drift-cap", "--spiking"]),
    (["--spike-budget", "-1"], ["--spike-budget", "must be a finite number > 0"]),
    (["--spike-budget", "x"], ["--spike-budget", "not a number"]),
    (["--spiking", "--ridge", "least-error"], ["--ridge least-error", "--spiking", "give one"]),
    (["--ridge", "smallest"], ["--ridge", "least-error"]),
])
def test_cli_bad_spiking_options(tmp_path, capsys, argv, words):
    out = tmp_path / "m.ddm"
    assert main(["fit", "double_well", "-n", "40", "--steps", "0", "--quiet", "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()
