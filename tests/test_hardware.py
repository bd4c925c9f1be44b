"""Hardware limits (ddm_neuro.fit.hardware): k-bit weights on a shared scale, fan-in, sparsity, Dale's law, refit."""
import math

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.fit.hardware import constrain, integer_weights, levels, preset_limits
from ddm_neuro.network import LatentRNN
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

#: Small refits: fewer states and steps than the defaults (the limits are enforced the same way).
FAST = dict(steps=40, n_train=3000, n_val=800, n_test=1000, records=400)


@pytest.fixture(scope="module")
def ou():
    sde = get_system("ou")
    model = fit(sde, n_neurons=96, steps=20, n_train=4000, n_val=1000, n_test=1000, n_noise=100, seed=1,
                progress=False)
    return sde, model


@pytest.fixture(scope="module")
def ou_path(ou, tmp_path_factory):
    path = tmp_path_factory.mktemp("hw") / "ou96.ddm"
    ou[1].save(path)
    return path


@pytest.fixture(scope="module")
def four_bits(ou):
    """The same 4-bit limit, rounding only and refitted (same seed: same held-out states)."""
    sde, model = ou
    rounded = constrain(model, sde, bits=4, refit=False, max_drift_error=math.inf, **FAST)
    refitted = constrain(model, sde, bits=4, max_drift_error=math.inf, **FAST)
    return rounded, refitted


def test_quantised_weights_lie_on_a_shared_k_bit_grid(ou, four_bits):
    _, model = ou
    for m in four_bits:
        n, s = integer_weights(m)
        W = m.weights()
        np.testing.assert_allclose(W, s * n, rtol=0, atol=1e-9 * s)  # W = E K' + W_perp reassembles s * n
        assert np.abs(n).max() <= levels(4) == 7
        assert len(np.unique(n)) <= 2 ** 4 - 1
        hw = m.meta["hardware"]
        assert hw["bits"] == 4 and hw["scale"] == s and hw["levels_used"] == len(np.unique(n))
        assert np.allclose(m.readout @ m.w_perp, 0, atol=1e-9)  # D W_perp = 0: the split is exact
    assert four_bits[0].meta["hardware"]["method"] == "round"
    assert model.w_perp is None and "hardware" not in model.meta  # the input model is untouched


def test_refit_beats_rounding_at_4_bits(four_bits):
    rounded, refitted = (m.meta["hardware"] for m in four_bits)
    assert refitted["method"] in ("compensated", "refit")
    assert refitted["drift_error"] < rounded["drift_error"], (refitted["drift_error"], rounded["drift_error"])
    assert rounded["drift_error_before"] == refitted["drift_error_before"]  # same held-out states


def test_fan_in_sparsity_and_dale_are_respected(ou):
    sde, model = ou
    N = model.n_neurons
    m = constrain(model, sde, fan_in=10, sparsity=0.08, dale=True, max_drift_error=math.inf, **FAST)
    W = m.weights()
    nz = np.abs(W) > 1e-12 * np.abs(W).max()
    assert nz.sum(axis=1).max() <= 10
    assert nz.sum() <= math.ceil(0.08 * N * N)
    col_pos = ((W > 0) & nz).any(axis=0)
    col_neg = ((W < 0) & nz).any(axis=0)
    assert not np.any(col_pos & col_neg)  # one sign per presynaptic neuron
    hw = m.meta["hardware"]
    assert hw["fan_in"] == 10 and hw["dale"] is True and hw["max_fan_in"] <= 10 and hw["bits"] is None


def test_8_bit_model_round_trips_and_passes_verify(ou, tmp_path):
    sde, model = ou
    m = constrain(model, sde, bits=8, **FAST)
    path = tmp_path / "q8.ddm"
    m.save(path)
    back = LatentRNN.load(path)
    np.testing.assert_array_equal(back.w_perp, m.w_perp)
    np.testing.assert_array_equal(integer_weights(back)[0], integer_weights(m)[0])
    traj = simulate_network(back, 100.0, trials=8, seed=3)
    report = verify(sde, traj, model_drift=back.latent_drift, seed=4)
    assert report.passed, report


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=1), "bits must be an integer from 2 to 32"),
    (dict(bits=33), "bits must be an integer from 2 to 32"),
    (dict(bits=4.0), "bits must be an integer"),
    (dict(fan_in=0), "fan_in must be an integer from 1 to N = 96"),
    (dict(fan_in=97), "fan_in must be an integer from 1 to N = 96"),
    (dict(sparsity=0.0), r"sparsity .* must be in \(0, 1\]"),
    (dict(sparsity=1.5), r"sparsity .* must be in \(0, 1\]"),
    ({}, "nothing to constrain"),
    (dict(bits=8, steps=-1), "steps must be an integer >= 0"),
])
def test_bad_limits_are_refused(ou, kwargs, match):
    with pytest.raises(DDMError, match=match):
        constrain(ou[1], ou[0], **kwargs)


def test_unrepresentable_bit_width_names_the_limit(ou):
    sde, model = ou
    with pytest.raises(DDMError, match=r"unrepresentable under bits=2: .*use >= \d+ bits"):
        constrain(model, sde, bits=2, refit=False, **FAST)
    with pytest.raises(DDMError, match=r"unrepresentable under bits=6: held-out drift error .* after "
                                       r"quantisation-aware refit \(limit 0 %\)"):
        constrain(model, sde, bits=6, max_drift_error=1e-6, **{**FAST, "steps": 0})


def test_presets():
    assert preset_limits("loihi", 512) == (8, None)
    with pytest.raises(DDMError, match="holds at most 1000 neurons, the model has N = 2048"):
        preset_limits("xylo", 2048)
    with pytest.raises(DDMError, match="unknown hardware preset"):
        preset_limits("truenorth", 10)


def test_cli_constrain(ou_path, tmp_path, capsys):
    out = tmp_path / "q.ddm"
    assert main(["constrain", str(ou_path), "--preset", "xylo", "--steps", "5", "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "bits=8" in text and "held-out drift error" in text and "diffusion error" in text
    m = LatentRNN.load(out)
    assert m.meta["hardware"]["bits"] == 8 and m.meta["hardware"]["method"] in ("compensated", "refit")
    stamp = out.read_bytes()
    # an existing output is kept without --force
    assert main(["constrain", str(ou_path), "--bits", "6", "-o", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == stamp
    # bad input: one line, exit 2, nothing written
    bad = tmp_path / "bad.ddm"
    assert main(["constrain", str(ou_path), "--bits", "1", "-o", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bits must be an integer from 2 to 32" in err and "\n" not in err and not bad.exists()
    assert main(["constrain", str(ou_path), "-o", str(bad), "--quiet"]) == 2
    assert "nothing to constrain" in capsys.readouterr().err and not bad.exists()


def test_latent_drift_is_the_full_networks_at_the_settled_state(four_bits):
    """With W_perp, latent_drift evaluates the N-neuron drift where x_perp is stationary."""
    m = four_bits[1]
    z = m.init_states[:50]
    x = m.neuron_inputs(z)
    dx = -x + m.neuron.phi(x) @ m.weights().T + m.bias  # tau dx/dt of the full network
    P = np.eye(m.n_neurons) - m.encoders @ m.readout
    assert np.abs(dx @ P.T).max() < 1e-6 * np.abs(x).max()  # off-subspace part at rest
    np.testing.assert_allclose(m.latent_drift(z), m.time_scale * m.scale * (dx @ m.readout.T) / m.tau,
                               rtol=1e-9, atol=1e-9 * np.abs(m.latent_drift(z)).max())
    base = m.to_latent(z) @ m.encoders.T + m.rest_inputs()
    assert np.abs(x - base).max() > 1e-4  # the feedback is not negligible at 4 bits (else the test is empty)
