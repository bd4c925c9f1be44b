"""The spike-coordinated network (ddm_neuro/spiking/coordinated.py): its latent has the basis's drift and noise.

The small OU model of the session (2-D, a tanh basis of 32 units) runs as a coordinated network of 200 spiking
neurons on the compiled loop. One-sample residuals ``r = z(s + H) - z(s) - f(z(s)) H`` over a recording interval
H much longer than the spikes' time scale carry the basis's noise ``G H`` plus the change of the read-out error
``e`` (bounded by the decoders' size), which the run also records.
"""
import numpy as np
import pytest

from ddm_neuro.errors import DDMError
from ddm_neuro.spiking.coordinated import (coordinated, decoders, jitter_exponent, jitter_limit, jitter_ratio,
                                           make_coordinated, simulate_coordinated, size_for_jitter, spiking_neurons,
                                           tune_delta)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: Spiking neurons of the test network, and its decoder norm: about 70 Hz on the OU model (tuned once, see
#: test_tuning_reaches_the_rate, and fixed here so the statistics tests do not depend on the tuning).
N, RATE = 200, 70.0
#: Runs of the statistics tests: trials x time units, samples every H time units.
TRIALS, DURATION, H = 8, 60.0, 0.05


@pytest.fixture(scope="module")
def tuned(coordinated_small):
    """``(basis, model, facts)``: the session's coordinated network (conftest.py), N neurons at RATE, pilots every H."""
    return coordinated_small


@pytest.fixture(scope="module")
def noisy_run(tuned):
    _, model, _ = tuned
    z, facts = simulate_coordinated(model, duration=DURATION, trials=TRIALS, record_dt=H, seed=7, error=True)
    return model, z, facts


def test_tuning_reaches_the_rate(tuned):
    basis, model, facts = tuned
    assert abs(facts["rate_hz"] / RATE - 1) <= 0.05, facts["pilots"]
    assert coordinated(model)["delta"] == facts["delta"] and spiking_neurons(model) == N
    assert spiking_neurons(basis) == basis.n_neurons and coordinated(basis) is None
    D = decoders(model)
    assert D.shape == (basis.dim, N) and np.allclose(np.linalg.norm(np.linalg.solve(
        np.asarray(coordinated(model)["whitening"]), D), axis=0), facts["delta"])


def _residuals(model, z):
    z0, z1 = z[:, :-1].reshape(-1, model.dim), z[:, 1:].reshape(-1, model.dim)
    f = model.latent_drift(z0)
    return z1 - z0 - f * H, f * H, z0


def test_latent_has_the_basis_noise(noisy_run):
    """Residual covariance per unit time against the basis's mean noise covariance G on the run's states. Its
    sampling error is Wishart's, ``se_ij = sqrt((G_ij^2 + G_ii G_jj) / n)``; the spikes add the change of the
    read-out error, whose size the run measures (the jitter ratio j, worst direction), so the tolerance adds
    ``(j + 2 sqrt(j)) G`` (the error's own variance and, by Cauchy-Schwarz, its covariance with the noise). A
    noise amplitude 1.2x too large (variance 1.44x) would be caught."""
    check_basis_noise(*noisy_run)


def check_basis_noise(model, z, facts):
    """The residual covariance of a run ``z`` against the basis's G, within Wishart's error plus the allowance for
    the read-out error's change (its jitter ratio, from ``facts["e"]``); a 1.2x noise amplitude would be caught."""
    r, _, z0 = _residuals(model, z)
    n = len(r)
    C = r.T @ r / n / H
    G = np.mean(model.latent_cov(z0[:: 10]), axis=0)
    se = np.sqrt((G ** 2 + np.outer(np.diag(G), np.diag(G))) / n)
    j, _ = jitter_ratio(model, facts["e"], 1, H, z)
    assert 0 < j < 0.1, j
    allow = (j + 2 * np.sqrt(j)) * np.sqrt(np.outer(np.diag(G), np.diag(G)))
    assert np.all(np.abs(C - G) < 4 * se + allow), (C, G, se, allow)
    assert np.any(np.abs(C - 1.44 * G) > 4 * se + allow)            # a 1.2x noise amplitude would be caught


def test_noise_spikes_carry_the_basis_noise(tuned):
    """With noise spikes (neurons firing at random, their jumps of the read-out carrying the noise) the residual
    covariance is the basis's G within Wishart's error plus the tracking error's allowance, as above, and a 1.2x
    noise amplitude would be caught. The spikes no longer track the noise, so their read-out error changes less
    than where they track an injected noise: with decoders 4x smaller than the rate's (16x the spikes needed to
    follow the noise, more than one a step) the tracking network's jitter is more than 4x the noise-spiking one's."""
    basis, _, tuned_facts = tuned
    model = make_coordinated(basis, N, tuned_facts["delta"], rate_hz=RATE, seed=1, noise_spikes=True)
    z, facts = simulate_coordinated(model, duration=DURATION, trials=TRIALS, record_dt=H, seed=11, error=True)
    check_basis_noise(model, z, facts)
    small = {}
    for spikes_noise in (False, True):
        m = make_coordinated(basis, N, tuned_facts["delta"] / 4, rate_hz=RATE, seed=1, noise_spikes=spikes_noise)
        zs, fs = simulate_coordinated(m, duration=10.0, trials=4, record_dt=H, seed=12, error=True)
        small[spikes_noise] = jitter_ratio(m, fs["e"], 1, H, zs)[0]
    assert small[True] * 4 < small[False], small


def _euler(f, z0, duration, step=1e-3):
    """The basis's noise-free path from ``z0`` (fine Euler steps), sampled every H."""
    y, out = np.array(z0, dtype=np.float64), [np.array(z0, dtype=np.float64)]
    per = int(round(H / step))
    for _ in range(int(round(duration / H))):
        for _ in range(per):
            y = y + f(y) * step
        out.append(y.copy())
    return np.array(out)


def test_noise_free_run_follows_the_basis_drift(tuned):
    """Without noise the read-out follows the basis's deterministic path from far starts, to within the read-out
    error's size: the spikes keep ``e`` inside a polytope of the decoders' size, so the path stays within a few
    decoder norms (3 delta, with the whitening's largest gain: the polytope's radius is 0.75 delta). The same path
    with the drift 10 % larger is more than twice that band away, so a wrong drift in the loop would be caught.
    Four times the test network's neurons (delta shrinks about as N^-0.6 at the same rate), for a band narrow
    enough to see a 10 % drift error.

    Closer: the read-out error does not leak, so the read-out is the internal state (an Euler path of the basis's
    drift at the read-out) less an error inside the polytope, and the path stays within one decoder norm of the
    reference (measured 0.4 of it). With the error leaking at 1 / tau, as models made before 2026-12-08 let it,
    the internal state is pulled towards the read-out and the drift is biased by ``-(T / tau) mean(e)``: 1.4 of it,
    and the test sees that too."""
    import copy

    basis, tuned_model, tuned_facts = tuned
    delta = tuned_facts["delta"] * 4 ** -0.6
    model = make_coordinated(basis, 4 * N, delta, rate_hz=RATE, seed=1)
    leaky = copy.deepcopy(model)
    leaky.meta["coordinated"]["error_leak"] = True
    sd = np.sqrt(np.diag(model.latent_cov(model.center[None])[0]))
    z0 = np.array([model.center + 6.0 * sd, model.center - 6.0 * sd * np.array([1.0, -1.0])])
    z, _ = simulate_coordinated(model, duration=4.0, trials=2, record_dt=H, seed=3, z0=z0, noise="none")
    zl, _ = simulate_coordinated(leaky, duration=4.0, trials=2, record_dt=H, seed=3, z0=z0, noise="none")
    gain = np.linalg.norm(np.asarray(coordinated(model)["whitening"]), 2)
    band = 3.0 * delta * gain
    devs, leaky_devs = [], []
    for t in range(2):
        ref = _euler(lambda y: model.latent_drift(y[None])[0], z0[t], 4.0)
        wrong = _euler(lambda y: 1.1 * model.latent_drift(y[None])[0], z0[t], 4.0)
        assert np.abs(z[t] - ref).max() < band, (np.abs(z[t] - ref).max(), band)
        assert np.abs(wrong - ref).max() > 2 * band, (np.abs(wrong - ref).max(), band)
        assert np.abs(ref[-1] - ref[0]).max() > 0.5 * np.abs(z0[t] - model.center).max()   # it moved
        devs.append(np.abs(z[t] - ref).max())
        leaky_devs.append(np.abs(zl[t] - ref).max())
    assert max(devs) < delta * gain < max(leaky_devs), (devs, leaky_devs, delta * gain)


def test_seed_reproduces_the_run_at_any_thread_count(tuned):
    _, model, _ = tuned
    kw = dict(duration=2.0, trials=3, record_dt=H, seed=11)
    a, fa = simulate_coordinated(model, **kw)
    b, _ = simulate_coordinated(model, threads=2, **kw)
    c, _ = simulate_coordinated(model, **{**kw, "seed": 12})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and fa["n_spikes"] > 0


def test_model_file_and_back_ends(tuned, tmp_path):
    """Saved and loaded, the coordinated model runs through plugins.simulate (spiking: the coordinated loop, rate:
    its basis); other back ends and export formats refuse its spiking mode in one line."""
    from ddm_neuro import plugins
    from ddm_neuro.network import LatentRNN

    _, model, _ = tuned
    model.save(tmp_path / "c.ddm")
    back = LatentRNN.load(tmp_path / "c.ddm")
    assert coordinated(back) == coordinated(model)
    traj = plugins.simulate(back, 1.0, mode="spiking", trials=2, seed=1, record_spikes=True)
    traj.save(tmp_path / "c.npz")
    from ddm_neuro.trajectory import Trajectory

    again = Trajectory.load(tmp_path / "c.npz")             # its spike indices checked against N, not the basis
    np.testing.assert_array_equal(again.spikes_i, traj.spikes_i)
    assert traj.meta["network"] == "coordinated" and traj.meta["n_neurons"] == N and traj.meta["n_basis"] == 32 and traj.z.shape[0] == 2
    assert traj.spikes_i.max() < 2 * N and len(traj.spikes_t) > 0 and np.all(np.diff(traj.spikes_t[:10]) >= 0)
    rate = plugins.simulate(back, 1.0, mode="rate", trials=2, seed=1)
    assert rate.meta.get("network") != "coordinated"
    for call in (lambda: plugins.simulate(back, 1.0, backend="brian2", mode="spiking"),
                 lambda: plugins.export(back, tmp_path / "x.nir", format="nir", mode="spiking")):
        with pytest.raises(DDMError, match="spike-coordinated"):
            call()


def test_bad_input():
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.systems import get_system

    lif = fit(get_system("ou"), n_neurons=16, steps=0, n_train=500, n_val=200, n_test=100, n_noise=20, seed=1,
              neuron={"name": "lif"}, progress=False)
    with pytest.raises(DDMError, match="tanh"):
        make_coordinated(lif, 10, 0.1)
    assert size_for_jitter(100, 0.015 * 2 ** 1.3) == 200 and size_for_jitter(100, 0.001) == 50
    assert jitter_exponent([(100, 0.04), (200, 0.01)]) == pytest.approx(2.0)
    assert jitter_exponent([(100, 0.04), (200, 0.039)]) == 1.0 and jitter_exponent([(100, 0.04)]) == 1.3
    assert jitter_limit(32000) == pytest.approx(2 * np.sqrt(2 / 32000))


def test_convert_refuses_coordinated_outside_torch():
    from ddm_neuro.spiking.pipeline import convert_to_spiking
    from ddm_neuro.sde.systems import get_system

    with pytest.raises(DDMError, match="torch"):
        convert_to_spiking(get_system("ou"), backend="brian2", network="coordinated", progress=False)
    with pytest.raises(DDMError, match="--network"):
        convert_to_spiking(get_system("ou"), network="clever", progress=False)
