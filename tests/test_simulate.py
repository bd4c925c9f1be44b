"""The torch network simulator against closed forms and the target SDE, with tolerances from sampling error."""
import numpy as np
import pytest
from scipy import linalg, stats

from ddm_neuro.fit.matching import fit
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.run.plan import network_steps
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.sde.systems import get_system

SMALL = dict(n_train=8000, n_val=2000, n_test=2000, progress=False)


@pytest.fixture(scope="module")
def ou_rot():
    sde = get_system("ou_rot")
    return sde, fit(sde, n_neurons=96, steps=30, **SMALL)


def _per_trial_cov(z):
    zc = z - z.mean(axis=1, keepdims=True)
    return np.einsum("tna,tnb->tab", zc, zc) / z.shape[1]


def _rotation_rate(tr):
    """Per-trial mean angular velocity  sum(x dy - y dx) / sum(x^2 + y^2) dt."""
    x, y = tr.z[..., 0], tr.z[..., 1]
    num = (x[:, :-1] * np.diff(y, axis=1) - y[:, :-1] * np.diff(x, axis=1)).sum(1)
    return num / ((x[:, :-1] ** 2 + y[:, :-1] ** 2).sum(1) * tr.dt)


def test_rotational_ou_covariance_and_rotation(ou_rot):
    sde, model = ou_rot
    trials, duration = 16, 60.0
    net = simulate_network(model, duration, trials=trials, seed=11)
    # closed form: A = kI - wJ, Lyapunov  A S + S A^T = sigma^2 I
    k, w, s = (sde.parameters[n] for n in ("k", "w", "sigma"))
    A = np.array([[k, w], [-w, k]])
    S_true = linalg.solve_continuous_lyapunov(A, s ** 2 * np.eye(2))
    covs = _per_trial_cov(net.z)
    se = covs.std(axis=0, ddof=1) / np.sqrt(trials)
    z_cov = (covs.mean(axis=0) - S_true) / se
    assert np.all(np.abs(z_cov) < 4), z_cov
    # rotation rate against the target simulated at the same length
    dt, rec = network_steps(model)
    tgt = simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=12, z0=model.init_states[:trials])
    rn, rt = _rotation_rate(net), _rotation_rate(tgt)
    score = (rn.mean() - rt.mean()) / np.hypot(rn.std(ddof=1), rt.std(ddof=1)) * np.sqrt(trials)
    assert abs(score) < 4, (rn.mean(), rt.mean())
    assert abs(rt.mean() - w) < 4 * rt.std(ddof=1) / np.sqrt(trials) + 0.05 * w  # Euler sampling bias at dt


def test_state_dependent_diffusion_is_matched():
    """Double well with g = s sqrt(1 + z^2): binned increment variance, network vs target, chi-square."""
    sde = get_system("double_well", c=1.0)
    model = fit(sde, n_neurons=96, steps=30, **SMALL)
    assert model.meta["fit"]["diffusion_error"] < 0.05
    assert model.noise_act.max() > 0  # the activity-dependent part is in use
    trials, duration = 16, 100.0
    net = simulate_network(model, duration, trials=trials, seed=21)
    dt, rec = network_steps(model)
    tgt = simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=22, z0=model.init_states[:trials])
    lag = max(1, int(round(0.1 / net.dt)))
    edges = np.linspace(-1.6, 1.6, 9)
    out = []
    for tr in (net, tgt):
        z0 = tr.z[:, :-lag:lag].ravel()
        dz = (tr.z[:, lag::lag] - tr.z[:, :-lag:lag]).ravel()
        idx = np.digitize(z0, edges)
        v, se = [], []
        for b in range(1, len(edges)):
            r = dz[idx == b]
            var = r.var(ddof=1)
            v.append(var)
            se.append(var * np.sqrt(2.0 / (len(r) - 1)))
        out.append((np.array(v), np.array(se)))
    (vn, sn), (vt, st) = out
    z = (vn - vt) / np.hypot(sn, st)
    assert vt[0] > 1.1 * vt[len(vt) // 2]  # the target really is state-dependent here
    assert np.sum(z ** 2) < stats.chi2.ppf(0.999, len(z)), z


def test_factored_and_dense_coupling_agree():
    model = fit(get_system("stuart_landau"), n_neurons=40, steps=0, **SMALL)
    a = simulate_network(model, 2.0, trials=3, seed=5, coupling="factored")
    b = simulate_network(model, 2.0, trials=3, seed=5, coupling="dense")
    np.testing.assert_allclose(a.z, b.z, rtol=1e-9, atol=1e-9)
    assert a.meta["coupling"] == "factored" and b.meta["coupling"] == "dense"


def test_noise_free_network_follows_the_latent_ode():
    """Without noise, the latent read-out obeys dz/ds = f_net(z) (Euler at the same step)."""
    model = fit(get_system("van_der_pol"), n_neurons=64, steps=0, **SMALL)
    tr = simulate_network(model, 1.0, trials=2, seed=1, noise=False, record_dt=network_steps(model)[0])
    lhs = np.diff(tr.z, axis=1) / tr.dt
    rhs = model.latent_drift(tr.z[:, :-1])
    np.testing.assert_allclose(lhs[:, 5:], rhs[:, 5:], rtol=1e-6, atol=1e-6 * np.abs(rhs).max())


def test_input_drives_switching():
    """Associative memory: a positive cue moves the state from the -1 well to the +1 well, and back."""
    sde = get_system("switch")
    model = fit(sde, n_neurons=64, steps=30, **SMALL)
    cue = InputSignal([0.0, 3.0, 6.0, 9.0], [[0.0], [1.0], [0.0], [-1.0]])
    tr = simulate_network(model, 12.0, trials=8, seed=3, z0=[-1.0], u=cue)
    at = lambda s: tr.z[:, int(round(s / tr.dt)), 0]  # noqa: E731
    assert np.all(at(2.9) < 0)
    assert np.all(at(8.9) > 0)
    assert np.all(at(11.9) < 0)
    assert tr.meta["input"]["values"][1] == [1.0]


def test_input_step_reaches_the_latent_without_lag():
    """A step in u moves the off-subspace state at once, so the noise-free network tracks the target ODE."""
    sde = get_system("switch", sigma=0.0)
    model = fit(sde, n_neurons=64, steps=0, **SMALL)
    cue = InputSignal([0.0, 1.0], [[0.0], [0.8]])
    net = simulate_network(model, 3.0, trials=1, seed=0, z0=[-1.0], u=cue)
    tgt = simulate_sde(sde, 3.0, trials=1, seed=0, z0=[-1.0], u=cue, dt=net.meta["integration_dt"],
                       record_dt=net.dt)
    # without the feed-forward path the network lags by tau/T (about 0.5 here): -0.90 vs -0.71 at s = 1.5
    np.testing.assert_allclose(net.z, tgt.z, atol=0.02)


def test_one_diverging_trial_does_not_erase_the_others():
    model = fit(get_system("ou"), n_neurons=32, steps=0, **SMALL)
    tr = simulate_network(model, 1.0, trials=3, seed=0, z0=[[0.0, 0.0], [np.inf, 0.0], [0.5, 0.0]])
    assert tr.meta["diverged_trials"] == [1]
    assert np.isfinite(tr.z[[0, 2]]).all()
