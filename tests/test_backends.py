"""Every simulator back end on small networks: same scheme, same noise, same inputs.

The torch simulator is the reference; Brian2's runtime device and the compiled
C++ (cpp_standalone) must integrate the same Euler scheme (noise-free runs
agree to rounding) and inject the same noise (one-step residuals have the
model's latent covariance, within sampling error).
"""
import numpy as np
import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.cli import main
from ddm_neuro.fit.matching import fit
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.run.plan import network_steps
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory
from noise_checks import assert_one_step_covariance

pytest.importorskip("brian2")
SMALL = dict(steps=0, n_train=3000, n_val=1000, n_test=500, progress=False)
BACKENDS = ["torch", "brian2", "brian2-cpp"]
BRIAN = ["brian2", "brian2-cpp"]


@pytest.fixture(scope="module")
def vdp():
    return fit(get_system("van_der_pol"), n_neurons=40, **SMALL)


@pytest.mark.parametrize("backend", BRIAN)
@pytest.mark.parametrize("coupling", ["factored", "dense"])
def test_brian2_noise_free_matches_torch(vdp, backend, coupling):
    z0 = [[1.0, 0.5], [-1.0, 0.0]]
    a = simulate_network(vdp, 1.0, trials=2, seed=0, noise=False, z0=z0, coupling=coupling)
    b = get_backend(backend, "rate")(vdp, 1.0, trials=2, seed=0, u=None, mode="rate", progress=False,
                                     noise=False, z0=z0, coupling=coupling)
    assert b.meta["backend"] == backend and b.meta["coupling"] == coupling and b.z.shape == a.z.shape
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", BRIAN)
def test_brian2_inputs_match_torch(backend):
    model = fit(get_system("switch", sigma=0.0), n_neurons=32, **SMALL)
    cue = InputSignal([0.0, 1.0, 2.0], [[0.0], [0.8], [-0.5]])
    a = simulate_network(model, 3.0, trials=1, seed=0, z0=[-1.0], u=cue)
    b = get_backend(backend, "rate")(model, 3.0, trials=1, seed=0, u=cue, mode="rate", progress=False, z0=[-1.0])
    assert np.ptp(a.z) > 0.5  # the cue moves the state: the input path is exercised
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("system, n", [("ou", 24), ("lorenz", 24)])
def test_one_step_noise_has_the_model_covariance(backend, system, n):
    """Residuals z_{n+1} - z_n - f_net(z_n) dt are the injected noise: covariance = latent_cov dt."""
    model = fit(get_system(system), n_neurons=n, **SMALL)
    if system == "lorenz":
        assert np.any(model.noise_latent)  # the shared top-up is exercised here
    dt, _ = network_steps(model)
    run = get_backend(backend, "rate")
    tr = run(model, 2000 * dt, trials=4, seed=3, u=None, mode="rate", progress=False, record_dt=dt)
    assert_one_step_covariance(model, tr)


def test_cli_simulate_with_brian2(tmp_path, vdp):
    model = tmp_path / "m.ddm"
    vdp.save(model)
    out = tmp_path / "b.npz"
    assert main(["simulate", str(model), "--backend", "brian2", "--duration", "0.5", "--trials", "2",
                 "-o", str(out), "--quiet"]) == 0
    t = Trajectory.load(out)
    assert t.meta["backend"] == "brian2" and np.isfinite(t.z).all() and t.z.shape[0] == 2
