"""Shared statistical check of the test suite: a back end's one-step noise has the model's covariance."""
import numpy as np


def assert_one_step_covariance(model, tr):
    """Residuals ``z_{n+1} - z_n - f_net(z_n) dt`` of a run recorded every step are the injected noise:
    their covariance is ``latent_cov dt`` within 4 Wishart entry standard deviations (constant-noise models)."""
    z0, z1 = tr.z[:, :-1].reshape(-1, model.dim), tr.z[:, 1:].reshape(-1, model.dim)
    res = z1 - z0 - model.latent_drift(z0) * tr.dt
    est = res.T @ res / len(res) / tr.dt
    C = model.latent_cov(z0[:1])[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / len(res))  # Wishart entry std
    assert np.all(np.abs(est - C) < 4 * se), (est, C, se)
