"""The NEST back end and project in spiking mode (LIF): rate curve, drift, noise scale, export, bad input.

* Uncoupled neurons at constant input fire at the fitted rate curve ``phi(x)``
  (NEST's precise LIF with this project's parameters).
* Drift: a noise-free spiking OU started away from its mean relaxes as the
  torch spiking simulator's does (trial means within their spread), for both
  couplings.
* Noise: ``noise="model"`` adds the model's latent covariance on top of the
  spikes' (one recording step), within the estimator's sampling error.
* The exported project's ``run.py`` reproduces the back end for a seed.

The round trip through ``calibrate --backend nest`` and ``verify`` of the
double well is in ``benchmarks/nest_verify.py`` (minutes).
"""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.network import LatentRNN
from ddm_neuro.plugins import get_backend
from ddm_neuro.sde.systems import get_system
from ddm_neuro.spiking.measure import residual_cov
from ddm_neuro.trajectory import Trajectory

pytest.importorskip("nest")

SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)


@pytest.fixture(scope="module")
def lif_ou():
    return fit(get_system("ou"), n_neurons=120, neuron="lif", **SMALL)


@pytest.fixture(scope="module")
def lif_ou400():
    """Enough neurons that the spikes' own noise leaves a drift error of a few percent visible."""
    return fit(get_system("ou"), n_neurons=400, neuron="lif", **SMALL)


def run(backend, model, duration, **kw):
    kw.setdefault("trials", 2)
    kw.setdefault("seed", 1)
    kw.setdefault("u", None)
    return get_backend(backend, "spiking")(model, duration, progress=False, **kw)


def uncoupled(bias, tau=0.02, T=0.1, tau_ref=0.002):
    """N LIF neurons with constant inputs ``bias`` and no recurrent weights (d = 1); start states have x = b."""
    N = len(bias)
    E = np.random.default_rng(0).normal(size=(N, 1)) * 0.1
    D = E.T / (E[:, 0] @ E[:, 0])
    return LatentRNN(neuron={"name": "lif", "tau_ref": tau_ref}, tau=tau, time_scale=T, scale=np.ones(1),
                     center=np.zeros(1), encoders=E, decoders=np.zeros((1, N)), readout=D,
                     bias=np.asarray(bias, float), input_weights=np.zeros((N, 0)), noise_const=np.zeros(N),
                     noise_act=np.zeros(N), noise_latent=np.zeros((1, 1)), init_states=np.tile(D @ bias, (4, 1)),
                     sde_spec=None, variables=["z"])


@pytest.mark.parametrize("coupling", ["factored", "dense"])
def test_nest_lif_rates_are_the_curve(coupling):
    bias = np.exp(np.random.default_rng(1).uniform(np.log(1.02), np.log(80.0), 40))   # 14 .. 440 Hz
    m = uncoupled(bias)
    tr = run("nest", m, 5.0, trials=1, noise="none", coupling=coupling, record_spikes=True)
    st, si = tr.spikes_t * m.time_scale, tr.spikes_i
    rates = np.array([(np.sum(si == j) - 1) / np.ptp(st[si == j]) for j in range(len(bias))])
    # exact integration and exact spike times: the analytic rate to NEST's root finding
    np.testing.assert_allclose(rates, m.neuron.phi(bias), rtol=1e-6)
    assert tr.meta["backend"] == "nest" and tr.meta["mode"] == "spiking" and tr.meta["coupling"] == coupling
    assert abs(tr.meta["mean_rate_hz"] / m.neuron.phi(bias).mean() - 1) < 0.02
    # x stays at b: the latent read-out is D b throughout (the coupling current cancels the start's split)
    np.testing.assert_allclose(tr.z[0, :, 0], (m.readout @ bias)[0], rtol=0, atol=1e-9)


def test_nest_spiking_input_reaches_the_neurons():
    """A step of the input at t = 2.5 moves each neuron's input by B du at once: the rates after it are
    phi(b + B) (exact spike times), and the read-out follows D (b + B u)."""
    from ddm_neuro.run.inputs import InputSignal

    rng = np.random.default_rng(3)
    bias = rng.uniform(1.5, 4.0, 20)
    B = rng.uniform(0.5, 2.0, (20, 1))
    m = dataclasses.replace(uncoupled(bias), input_weights=B, inputs=["u"])
    u = InputSignal([0.0, 2.5], [[0.0], [1.0]])
    tr = run("nest", m, 5.0, trials=1, noise="none", u=u, record_spikes=True)
    st, si = tr.spikes_t, tr.spikes_i
    late = st > 2.6                                             # one full interval after the step
    rates = np.array([(np.sum(late & (si == j)) - 1) / np.ptp(st[late & (si == j)]) for j in range(20)])
    np.testing.assert_allclose(rates / m.time_scale, m.neuron.phi(bias + B[:, 0]), rtol=1e-6)
    t = tr.t
    expect = np.where(t < 2.5, m.readout @ bias, m.readout @ (bias + B[:, 0]))
    np.testing.assert_allclose(tr.z[0, :, 0], expect, rtol=0, atol=1e-9)


def _relaxation(tr, sign):
    """Per-trial latent (first coordinate, towards the mean) at a quarter, half and all of a run: (trials, 3)."""
    n = len(tr.t) - 1
    return tr.z[:, [n // 4, n // 2, n], 0] * sign


@pytest.mark.parametrize("coupling", ["factored", pytest.param("dense", marks=pytest.mark.slow)])
def test_nest_spiking_drift_is_the_torch_networks(lif_ou400, coupling):
    """Noise-free from z0 = +-1.5, the same start phases: the relaxation toward 0 (the drift) as in the
    torch spiking network, trial means within four standard errors of their difference; a loop gain off
    by 5 % in NEST is told apart the same way."""
    m = lif_ou400
    z0 = np.repeat([[1.5] * m.dim, [-1.5] * m.dim], 16, axis=0)
    sign = np.sign(z0[:, :1])
    kw = dict(trials=32, seed=5, z0=z0, noise="none", record_dt=0.01)
    a = _relaxation(run("torch", m, 0.5, **kw), sign)
    b = _relaxation(run("nest", m, 0.5, coupling=coupling, **kw), sign)
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se), (a.mean(0), b.mean(0), se)
    wrong = dataclasses.replace(m, decoders=m.decoders * 1.05)     # the loop gain 5 % too high
    c = _relaxation(run("nest", wrong, 0.5, coupling=coupling, **kw), sign)
    assert np.abs(c.mean(0) - a.mean(0))[-1] > 4 * se[-1], (c.mean(0), a.mean(0), se)


def test_nest_spiking_noise_has_the_model_scale(lif_ou400):
    """noise="model" adds the model's latent covariance to the spikes' own (one recording step): the
    difference of the residual variances of a noisy and a noise-free run, against latent_cov, within
    four standard errors of the two variance estimates."""
    m = lif_ou400
    kw = dict(trials=8, seed=3, coupling="factored")
    quiet = run("nest", m, 4.0, noise="none", **kw)
    noisy = run("nest", m, 4.0, noise="model", **kw)
    v0, v1 = (residual_cov(m, tr, [1])[0][0, 0] for tr in (quiet, noisy))
    n = quiet.z.shape[0] * (quiet.z.shape[1] - 1)
    z = noisy.z.reshape(-1, m.dim)[::4]
    expect = m.latent_cov(z).mean(0)[0, 0]
    se = np.sqrt(2.0 / n) * np.hypot(v0, v1)
    assert abs((v1 - v0) - expect) < 4 * se, (v1 - v0, expect, se)
    assert se < 0.25 * expect                          # the test can tell the scale from twice or half of it


def test_nest_spiking_threads_and_seeds(lif_ou):
    a = run("nest", lif_ou, 0.5, threads=2, seed=7)
    b = run("nest", lif_ou, 0.5, threads=2, seed=7)
    c = run("nest", lif_ou, 0.5, threads=2, seed=8)
    np.testing.assert_array_equal(a.z, b.z)
    assert a.meta["threads"] == 2 and not np.array_equal(a.z, c.z)


def test_nest_spiking_project_runs_as_the_backend(tmp_path, lif_ou):
    from exporters.nest.export import export

    model_path = tmp_path / "m.ddm"
    lif_ou.save(model_path)
    out = export(lif_ou, tmp_path / "proj", trials=2, duration=0.5, progress=False)   # mode implied by LIF
    exp = json.loads((out / "export.json").read_text())
    assert exp["mode"] == "spiking" and (out / "spiking.py").exists() and "spiking mode" in (out / "README.md").read_text()
    res = subprocess.run([sys.executable, "run.py", "--seed", "4", "-o", "t.npz"], cwd=out, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    t = Trajectory.load(out / "t.npz")
    ref = run("nest", lif_ou, 0.5, seed=4)
    assert t.meta["mode"] == "spiking" and t.meta["mean_rate_hz"] == pytest.approx(ref.meta["mean_rate_hz"], rel=1e-4)
    np.testing.assert_array_equal(t.z, ref.z)


def test_nest_spiking_refusals(lif_ou, small_model):
    with pytest.raises(DDMError, match="--neuron lif"):
        run("nest", small_model, 0.5)
    short = uncoupled(np.full(5, 2.0), tau_ref=1e-5)   # below the 0.025 ms step
    with pytest.raises(DDMError, match="tau_ref"):
        run("nest", short, 0.5)
    with pytest.raises(DDMError, match="--mode spiking"):
        get_backend("nest", "rate")(lif_ou, 0.5, u=None, progress=False)


def test_nest_calibrates_in_nest(lif_ou):
    """calibrate --backend nest: the calibration runs are NEST's (their rates recorded), and the model says so."""
    from ddm_neuro.spiking.calibration import calibrate

    out = calibrate(lif_ou, rounds=1, trials=8, duration=8.0, backend="nest", seed=2)   # 64 windows per half
    info = out.meta["spiking_calibration"]
    assert info["simulator"] == "nest" and info["coupling"] == "factored"
    assert 20 < info["rounds"][0]["mean_rate_hz"] < 300 and np.isfinite(info["systematic_drift_error"])
