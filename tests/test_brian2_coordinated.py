"""The spike-coordinated network in Brian2 C++ (exporters/brian2/coordinated.py): the torch loop's drift and noise.

Without noise, the Brian2 C++ network takes the same steps as the torch back end's compiled loop from the same
start states, so their paths and spikes agree to rounding (a wrong drift, input, step or spike rule in Brian2 would
part them at once; the torch loop's drift is checked against the basis in tests/test_coordinated.py). With noise
(the small OU model of the session, 2-D, a tanh basis of 32 units, as 200 spiking neurons), Brian2 draws its own
numbers: one-sample residuals ``r = z(s + H) - z(s) - f(z(s)) H`` carry the basis's noise
``G H`` plus the change of the read-out error (bounded by the decoders' size), as in tests/test_coordinated.py.
"""
import shutil

import numpy as np
import pytest

from ddm_neuro import plugins
from ddm_neuro.errors import DDMError

pytest.importorskip("brian2")
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None,
                                 reason="brian2-cpp needs make and g++")]

#: Spiking neurons and rate of the test network; noisy runs: trials x time units, samples every H time units.
N, RATE = 200, 70.0
TRIALS, DURATION, H = 8, 30.0, 0.05


@pytest.fixture(scope="module")
def model(coordinated_small):
    """The session's coordinated network (conftest.py): the small OU model, N neurons at RATE."""
    return coordinated_small[1]


@pytest.mark.parametrize("noise_spikes", [False, True], ids=["tracked", "noise_spikes"])
def test_noisy_run_has_the_basis_noise(coordinated_small, noise_spikes):
    """Residual covariance per unit time of a Brian2 C++ run against the basis's mean noise covariance G on its
    states, within 4 of Wishart's standard errors ``sqrt((G_ij^2 + G_ii G_jj) / n)`` plus what the read-out error
    adds (the jitter ratio j of the same network, measured on a torch run: ``(j + 2 sqrt(j)) G``). A noise
    amplitude 1.2x too large (variance 1.44x) would be caught. The noise tracked by the spikes, or carried by
    random spikes (their probabilities and jumps computed in Brian2's own kernel)."""
    from ddm_neuro.spiking.coordinated import jitter_ratio, make_coordinated, simulate_coordinated

    basis, model, facts = coordinated_small
    if noise_spikes:
        model = make_coordinated(basis, N, facts["delta"], rate_hz=RATE, seed=1, noise_spikes=True)
    traj = plugins.simulate(model, DURATION, backend="brian2-cpp", mode="spiking", trials=TRIALS, seed=7,
                            record_dt=H)
    z = traj.z
    z0, z1 = z[:, :-1].reshape(-1, model.dim), z[:, 1:].reshape(-1, model.dim)
    r = z1 - z0 - model.latent_drift(z0) * H
    n = len(r)
    C = r.T @ r / n / H
    G = np.mean(model.latent_cov(z0[:: 10]), axis=0)
    se = np.sqrt((G ** 2 + np.outer(np.diag(G), np.diag(G))) / n)
    zt, facts = simulate_coordinated(model, duration=20.0, trials=4, record_dt=H, seed=8, error=True)
    j, _ = jitter_ratio(model, facts["e"], 1, H, zt)
    assert 0 < j < 0.1, j
    allow = (j + 2 * np.sqrt(j)) * np.sqrt(np.outer(np.diag(G), np.diag(G)))
    assert np.all(np.abs(C - G) < 4 * se + allow), (C, G, se, allow)
    assert np.any(np.abs(C - 1.44 * G) > 4 * se + allow)
    assert 0.9 < traj.meta["mean_rate_hz"] / facts["mean_rate_hz"] < 1.1      # the torch run's rate


def test_noise_free_run_takes_the_torch_loops_steps(tmp_path):
    """An input-driven target (``switch``, a small closed-form basis), noise-free, its input stepping between the
    cues: from the same seed and start states the Brian2 C++ read-out and spikes (two OpenMP threads, one per
    trial) are the torch loop's, and the input moved them (its weights reach the latent through the basis units
    here: ``D B`` is 0 in this fit). A second run, other seed and input, reuses the compiled binary and is the
    torch loop's too, and so is a leaky older model's."""
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.run.inputs import InputSignal
    from ddm_neuro.sde.systems import get_system
    from ddm_neuro.spiking.coordinated import make_coordinated

    basis = fit(get_system("switch"), n_neurons=24, steps=0, n_train=1500, n_val=300, n_test=200, n_noise=50,
                seed=2, progress=False)
    model = make_coordinated(basis, 300, 0.03, seed=3)    # N = 300: steps of 9.5 us, the basis held over 2
    u = InputSignal.random_steps(np.array([-0.5]), np.array([0.5]), 0.5, 2.0, np.random.default_rng(4))
    kw = dict(mode="spiking", trials=2, seed=5, noise="none", record_dt=H, u=u, record_spikes=True)
    b = plugins.simulate(model, 2.0, backend="brian2-cpp", threads=2, **kw)   # a thread per trial
    t = plugins.simulate(model, 2.0, backend="torch", threads=1, **kw)
    assert b.meta["backend"] == "brian2-cpp" and b.meta["network"] == "coordinated" and b.z.shape == t.z.shape
    assert b.meta["threads"] == 2
    np.testing.assert_allclose(b.z, t.z, rtol=0, atol=1e-9)
    assert len(b.spikes_t) == len(t.spikes_t) > 50
    ob, ot = np.lexsort((b.spikes_i, b.spikes_t)), np.lexsort((t.spikes_i, t.spikes_t))   # orders differ by trial
    np.testing.assert_array_equal(b.spikes_i[ob], t.spikes_i[ot])
    np.testing.assert_allclose(b.spikes_t[ob], t.spikes_t[ot], rtol=1e-12)
    assert abs(b.meta["mean_rate_hz"] / t.meta["mean_rate_hz"] - 1) < 1e-9
    assert b.meta["integration_dt"] == t.meta["integration_dt"] and t.meta["integration_dt"] * model.time_scale < 1e-5
    still = plugins.simulate(model, 2.0, backend="torch", **{**kw, "u": InputSignal.constant(np.zeros(1))})
    assert np.abs(t.z - still.z).max() > 0.05
    # a second run of the same network and settings reuses the binary, with its own starts, input and seed
    kw2 = {**kw, "seed": 6, "u": InputSignal.random_steps(np.array([-0.5]), np.array([0.5]), 0.5, 2.0,
                                                            np.random.default_rng(6))}
    b2 = plugins.simulate(model, 2.0, backend="brian2-cpp", threads=2, **kw2)
    t2 = plugins.simulate(model, 2.0, backend="torch", threads=1, **kw2)
    assert b.meta["compile_seconds"] > 0 and b2.meta["compile_seconds"] == 0
    np.testing.assert_allclose(b2.z, t2.z, rtol=0, atol=1e-9)
    assert np.abs(b2.z - b.z).max() > 0.05
    # a model file made before the read-out error stopped leaking keeps its leak in Brian2 as in torch
    import copy
    leaky = copy.deepcopy(model)
    del leaky.meta["coordinated"]["error_leak"]
    bl = plugins.simulate(leaky, 2.0, backend="brian2-cpp", threads=2, **kw)
    tl = plugins.simulate(leaky, 2.0, backend="torch", threads=1, **kw)
    np.testing.assert_allclose(bl.z, tl.z, rtol=0, atol=1e-9)
    assert np.abs(bl.z - b.z).max() > 1e-6
    check_exported_project(model, tmp_path, kw)


def check_exported_project(model, tmp_path, kw):
    """``export --format brian2-cpp --mode spiking`` of the coordinated model: the project's own ``run.py`` (start
    state and inputs per recording interval on its command line, nothing recompiled) takes the torch loop's steps."""
    import json
    import subprocess
    import sys

    from ddm_neuro.run.inputs import InputSignal

    out = tmp_path / "project"
    plugins.export(model, out, format="brian2-cpp", mode="spiking", trials=2, duration=2.0, record_dt=H, noise="none")
    assert json.loads((out / "export.json").read_text())["build"]["network"] == "coordinated"
    assert "spike-coordinated" in (out / "README.md").read_text()
    n_rec = int(round(2.0 / H)) + 1
    u_rec = np.where((np.arange(n_rec) // 7) % 2 == 0, 0.5, -0.5)[:, None]   # the cue flips every 7 samples
    np.save(tmp_path / "u.npy", u_rec)
    done = subprocess.run([sys.executable, "run.py", "--seed", "3", "--duration", "2", "--z0", "0.3", "--input-file",
                           str(tmp_path / "u.npy"), "-o", str(tmp_path / "b.npz")], cwd=out, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        zb, meta = f["z"], json.loads(str(f["meta"]))
    t = plugins.simulate(model, 2.0, backend="torch", **{**kw, "u": InputSignal(np.arange(n_rec) * H, u_rec),
                                                          "z0": np.array([0.3])})
    assert zb.shape == t.z.shape and meta["network"] == "coordinated"
    np.testing.assert_allclose(zb, t.z, rtol=0, atol=1e-9)
    assert abs(meta["mean_rate_hz"] / t.meta["mean_rate_hz"] - 1) < 1e-9


def test_what_the_brian2_export_refuses(model, tmp_path):
    """A coordinated network exports as a brian2-cpp project only, with its own step and coupling: one line each,
    nothing written."""
    with pytest.raises(DDMError, match="brian2-cuda format cannot carry.*--format brian2-cpp"):
        plugins.export(model, tmp_path / "cuda", format="brian2-cuda", mode="spiking")
    with pytest.raises(DDMError, match="leave out dt"):
        plugins.export(model, tmp_path / "dt", format="brian2-cpp", mode="spiking", dt=1e-3)
    with pytest.raises(DDMError, match="noise"):
        plugins.export(model, tmp_path / "rem", format="brian2-cpp", mode="spiking", noise="remainder")
    assert not list(tmp_path.iterdir())


def test_what_brian2_cpp_refuses(model):
    """Back ends that cannot run a coordinated network name those that can."""
    with pytest.raises(DDMError, match="torch"):
        plugins.simulate(model, 1.0, backend="brian2", mode="spiking")
