"""Fitting: reproducibility, input checks, accuracy on small networks."""
import numpy as np
import pytest

from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.sde.systems import get_system

SMALL = dict(n_train=6000, n_val=2000, n_test=2000, progress=False)


def test_same_seed_same_model():
    sde = get_system("ou")
    a = fit(sde, n_neurons=32, steps=10, seed=3, **SMALL)
    b = fit(sde, n_neurons=32, steps=10, seed=3, **SMALL)
    c = fit(sde, n_neurons=32, steps=10, seed=4, **SMALL)
    for name in ("encoders", "decoders", "bias", "noise_const", "noise_latent", "init_states"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.encoders, c.encoders)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_neurons_is_refused(n):
    with pytest.raises(DDMError, match="n_neurons must be an integer >= d"):
        fit(get_system("lorenz"), n_neurons=n, **SMALL)


def test_structure_of_fitted_network():
    """D E = I, b and B are off span(E), W = E K, noise non-negative."""
    m = fit(get_system("switch"), n_neurons=48, steps=0, **SMALL)
    np.testing.assert_allclose(m.readout @ m.encoders, np.eye(1), atol=1e-10)
    np.testing.assert_allclose(m.readout @ m.input_weights, 0, atol=1e-10)
    np.testing.assert_allclose(m.readout @ m.rest_inputs(), 0, atol=1e-10)
    np.testing.assert_allclose(m.weights(), m.encoders @ m.decoders)
    assert (m.noise_const >= 0).all() and (m.noise_act >= 0).all()
    assert m.n_inputs == 1 and m.inputs == ["u"]


def test_refinement_does_not_hurt_and_errors_are_reported():
    m = fit(get_system("double_well"), n_neurons=48, steps=60, **SMALL)
    f = m.meta["fit"]
    assert f["drift_error"] <= f["drift_error_closed_form"] * 1.05
    assert f["drift_error"] < 0.02          # 48 neurons, a cubic in 1-D
    assert f["diffusion_error"] < 1e-6      # additive noise is matched exactly by constant private noise


def test_drift_matches_at_held_out_states():
    sde = get_system("van_der_pol")
    m = fit(sde, n_neurons=96, steps=30, **SMALL)
    z = m.init_states
    f, fn = sde.drift(z), m.latent_drift(z)
    rel = np.sqrt(np.sum((f - fn) ** 2) / np.sum(f ** 2))
    assert rel < 0.03
    assert rel == pytest.approx(m.meta["fit"]["drift_error"], rel=1.0)  # same order as the reported error


def test_lif_rate_neurons_fit_and_stay_finite():
    """The LIF rate curve (kink at threshold) trains without NaN gradients and gives positive rates."""
    from ddm_neuro.run.rate import simulate_network

    m = fit(get_system("double_well"), n_neurons=64, neuron="lif", steps=20, **SMALL)
    assert m.neuron.name == "lif"
    assert np.isfinite(m.meta["fit"]["drift_error"]) and m.meta["fit"]["drift_error"] < 0.1
    x = m.neuron_inputs(m.init_states)
    rates = m.neuron.phi(x)
    assert rates.min() >= 0 and rates.max() < 1 / m.neuron.params["tau_ref"]
    assert np.isfinite(simulate_network(m, 2.0, trials=2, seed=0).z).all()


def test_least_error_ridge_fits_the_drift_closer():
    """ridge="least-error" takes the lambda of least validation error: on a chaotic 3-D drift the held-out
    error falls well below the default rule's (which trades accuracy for small decoders), and the decoders grow."""
    sde = get_system("lorenz")
    small = fit(sde, n_neurons=150, steps=0, seed=1, **SMALL)
    exact = fit(sde, n_neurons=150, steps=0, seed=1, ridge="least-error", **SMALL)
    assert exact.meta["fit"]["drift_error"] < 0.5 * small.meta["fit"]["drift_error"]
    assert np.linalg.norm(exact.decoders) > np.linalg.norm(small.decoders)
    assert exact.meta["fit"]["config"]["ridge"] == "least-error"


@pytest.mark.parametrize("kw, words", [({"ridge": "smallest"}, "ridge must be one of"),
                                       ({"ridge": "least-error", "spike_budget": 0.02, "neuron": "lif"},
                                        "give one")])
def test_bad_ridge_rule_is_refused(kw, words):
    with pytest.raises(DDMError, match=words):
        fit(get_system("ou"), n_neurons=16, steps=0, **kw, **SMALL)
