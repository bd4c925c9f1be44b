"""The lag-residual estimator (:mod:`ddm_neuro.spiking.lag_error`) measures drift and diffusion errors under noise.

A run of a *different* SDE stands in for a network: 2-D OU with rate 1.5 and
noise 1.2 against the target's 1 and 1. The estimator must find the drift
difference ``-0.5 z`` and the covariance difference ``0.44 I`` (SDE units), and
nothing for a run of the target itself. Expected values are the exact OU
increment moments at the lag (``-0.5 z`` and ``0.44 I`` in the limit of a short lag);
tolerances are set by the null run's own spread (the estimator's sampling
error), scaled by the off run's larger noise (1.2 for the drift, 1.44 for the
covariance), not tuned constants.
"""
import numpy as np
import pytest

from ddm_neuro.fit.matching import fit
from ddm_neuro.spiking.lag_error import lag_residual, relative_cov_error
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system


@pytest.fixture(scope="module")
def setup():
    sde = get_system("ou")
    model = fit(sde, n_neurons=30, neuron="lif", seed=0, steps=0, n_train=4000, n_val=500, n_test=500,
                progress=False)
    return sde, model


def _measured(model, sde, traj, z):
    res = lag_residual(model, sde, traj, 2, np.random.default_rng(1))
    s, T, tau = model.scale, model.time_scale, model.tau
    df = res(z) * s * T / tau                                    # back to SDE units
    dC = res.cov(z) * s[:, None] * s[None, :] * T
    return res, df, dC


def test_lag_residual_finds_a_known_drift_and_diffusion_error_and_none_in_the_target(setup):
    sde, model = setup
    runs = {name: simulate_sde(s, 400.0, trials=8, seed=4, record_dt=0.02)
            for name, s in (("null", sde), ("off", get_system("ou", k=1.5, sigma=1.2)))}
    pool = runs["off"].z.reshape(-1, 2)                    # where both runs measured (the fits are zero elsewhere)
    z = pool[np.random.default_rng(2).choice(len(pool), 400, replace=False)]
    _, df0, dC0 = _measured(model, sde, runs["null"], z)
    res, df1, dC1 = _measured(model, sde, runs["off"], z)
    D = res.delta
    true_df = z * (np.exp(-1.5 * D) - np.exp(-D)) / D                     # mean increments / lag, exact
    true_c = (1.44 * (1 - np.exp(-3 * D)) / 3 - (1 - np.exp(-2 * D)) / 2) / D
    noise_f, noise_C = 1.2 * np.sqrt((df0 ** 2).mean()), 1.44 * np.sqrt((dC0 ** 2).mean())
    assert np.sqrt((true_df ** 2).mean()) > 4 * noise_f          # the run is long enough to tell
    assert np.sqrt(((df1 - true_df) ** 2).mean()) < 3 * noise_f
    assert true_c > 4 * noise_C
    assert np.sqrt(((dC1 - true_c * np.eye(2)) ** 2).mean()) < 3 * noise_C
    rel = relative_cov_error(model, sde, res.cov, z)              # relative to the target's I
    assert abs(rel - true_c) < 3 * noise_C
    far = np.array([[6.0, 0.0], [0.0, -6.0]])               # no state measured out there
    assert not res.supported(far).any() and np.all(res(far) == 0) and np.all(res.cov(far) == 0)
