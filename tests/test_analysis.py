"""Decompositions (ddm_neuro.analysis, ``ddm-neuro analyze``): small networks, short runs.

Statistical checks compare with the estimator's own spread, measured on target
runs of the same length (block standard errors), never with tuned constants.
"""
import json

import numpy as np
import pytest

from ddm_neuro.analysis import analyze, closed_form_epr, drift_contributions, fit_symmetric, split_weights
from ddm_neuro.analysis.connectivity import part_spectra
from ddm_neuro.analysis.decomposition import divergence, split_drift
from ddm_neuro.analysis.density import LogDensity
from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.sde.systems import get_system

SMALL = dict(n_train=4000, n_val=1000, n_test=1000, n_noise=100, progress=False)
RUN = dict(duration=20.0, trials=8)


@pytest.fixture(scope="module")
def rot_models():
    """ou_rot (k = 1, w = 2): an ordinary fit and the symmetric-only fit, N = 64, same seed."""
    sde = get_system("ou_rot")
    net = fit(sde, n_neurons=64, steps=20, seed=2, **SMALL)
    sym = fit_symmetric(sde, n_neurons=64, steps=20, seed=2, **SMALL)
    return sde, net, sym


@pytest.fixture(scope="module")
def rot_analysis(rot_models):
    sde, net, sym = rot_models
    return analyze(net, sde, seed=5, symmetric_model=sym, **RUN)


# ----------------------------------------------------------------------------- connectivity
def test_parts_sum_back_to_w_and_to_the_drift(small_model):
    W = small_model.weights()
    Ws, Wa = split_weights(W)
    np.testing.assert_allclose(Ws + Wa, W, atol=1e-12)
    np.testing.assert_array_equal(Ws, Ws.T)
    np.testing.assert_array_equal(Wa, -Wa.T)
    z = small_model.init_states[:50]
    parts = drift_contributions(small_model, z)
    np.testing.assert_allclose(sum(parts.values()), small_model.latent_drift(z), rtol=1e-10, atol=1e-10)
    # the antisymmetric part's drift, computed densely: T S D W_a phi(x) / tau
    x = small_model.neuron_inputs(z)
    dense = (small_model.neuron.phi(x) @ Wa.T) @ small_model.readout.T
    unit = small_model.time_scale * small_model.scale / small_model.tau
    np.testing.assert_allclose(parts["antisymmetric"], dense * unit, rtol=1e-9, atol=1e-9)


def _assert_same_eigenvalues(a, b, tol):
    """Equal as multisets: each of ``a`` paired with its own one of ``b`` (no ordering, which flips on
    real parts of +-1e-16 between builds)."""
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    cost = np.abs(a[:, None] - b[None, :])
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() <= tol, (a, b)


def test_factored_spectra_match_dense(small_model):
    spec = part_spectra(small_model)
    Ws, Wa = split_weights(small_model.weights())
    for name, M in (("symmetric", Ws), ("antisymmetric", Wa)):
        dense = np.linalg.eigvals(M)
        dense = dense[np.argsort(-np.abs(dense))][: 2 * small_model.dim]
        _assert_same_eigenvalues(spec["eigenvalues"][name], dense, tol=1e-8 * np.abs(dense).max())
        assert spec["frobenius"][name] == pytest.approx(np.linalg.norm(M), rel=1e-9)


# ----------------------------------------------------------------------------- density, split, closed form
def test_closed_form_entropy_production():
    assert closed_form_epr(get_system("ou")) == pytest.approx(0.0, abs=1e-9)
    for k, w in ((1.0, 2.0), (0.5, 1.5)):
        assert closed_form_epr(get_system("ou_rot", k=k, w=w, sigma=0.7)) == pytest.approx(2 * w ** 2 / k, rel=1e-8)
    assert closed_form_epr(get_system("ring")) is None
    assert closed_form_epr(get_system("double_well")) is None


def test_score_matching_recovers_a_gaussian():
    rng = np.random.default_rng(0)
    C = np.array([[1.0, 0.6], [0.6, 2.0]])
    m = np.array([0.5, -1.0])
    n = 40000
    z = rng.multivariate_normal(m, C, size=n)
    dens = LogDensity.fit(z, degree=2)
    q = rng.multivariate_normal(m, C, size=200)
    exact = -(q - m) @ np.linalg.inv(C)
    err = np.sqrt(np.mean(np.sum((dens.score(q) - exact) ** 2, 1)) / np.mean(np.sum(exact ** 2, 1)))
    # the precision matrix is estimated with relative error ~ sqrt(2 / n) per entry
    assert err < 5 * np.sqrt(2.0 / n), err


class _ExactGaussian:
    def __init__(self, var):
        self.var = var

    def score(self, z):
        return -np.asarray(z) / self.var


def test_split_of_the_rotational_ou_is_exact():
    k, w, s = 1.0, 2.0, 0.8
    sde = get_system("ou_rot", k=k, w=w, sigma=s)
    z = np.random.default_rng(1).normal(size=(100, 2))
    parts = split_drift(sde.drift, sde.diffusion_cov, _ExactGaussian(s ** 2 / (2 * k)), z)
    np.testing.assert_allclose(parts["reversible"], -k * z, atol=1e-9)
    np.testing.assert_allclose(parts["irreversible"], w * z[:, ::-1] * [-1, 1], atol=1e-9)


def test_divergence_of_a_state_dependent_diffusion():
    z = np.random.default_rng(2).normal(size=(20, 2))
    cov = lambda x: np.einsum("mi,ij->mij", 1 + x ** 2, np.eye(2))  # noqa: E731
    np.testing.assert_allclose(divergence(cov, z), 2 * z, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- entropy production
def _target_se(e):
    """The estimator's spread for one run of this length, pooled over the two target runs."""
    return e["baseline_spread"] / np.sqrt(2.0)


def test_rotational_ou_network_epr_matches_closed_form(rot_analysis):
    e = rot_analysis.results["entropy_production_rate"]
    s = _target_se(e)
    assert e["closed_form"] == pytest.approx(8.0)
    assert abs(e["target"] - 8.0) < 4 * s, e
    assert abs(e["network"] - 8.0) < 4 * s, e
    assert e["baseline"] < 4 * np.sqrt(2) * s, e


def test_isotropic_ou_epr_within_target_spread_of_zero(small_model):
    e = analyze(small_model, seed=3, **RUN).results["entropy_production_rate"]
    s = _target_se(e)
    assert e["closed_form"] == pytest.approx(0.0, abs=1e-9)
    assert abs(e["network"]) < 4 * s, e
    assert abs(e["target"]) < 4 * s, e


def test_symmetric_fit_is_symmetric_and_does_not_cycle(rot_models, rot_analysis):
    _, net, sym = rot_models
    W = sym.weights()
    np.testing.assert_allclose(W, W.T, rtol=0, atol=1e-12 * np.abs(W).max())
    assert sym.meta["fit"]["constraint"] == "symmetric"
    M = np.array(sym.meta["fit"]["latent_matrix"])
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    assert sym.meta["fit"]["drift_error"] > 10 * net.meta["fit"]["drift_error"]  # rotation is out of reach
    r = rot_analysis.results
    e, rot = r["entropy_production_rate"], r["rotation"]
    assert e["network"] - e["symmetric_fit"] > 4 * np.hypot(e["network_stderr"], e["symmetric_fit_stderr"]), e
    assert e["symmetric_fit"] < 0.25 * e["network"], e  # "far below": a non-normal real drift leaves some
    assert abs(rot["symmetric_fit"][0]) < 4 * rot["symmetric_fit_stderr"][0] + 0.1 * abs(rot["network"][0]), rot
    assert r["connectivity"]["symmetric_fit"]["asymmetry"] < 1e-6
    assert r["connectivity"]["network"]["asymmetry"] > 0.1


def _winding(model, duration=5.0):
    """Total angle (rad) the noise-free latent turns around its end point, from three starts."""
    from ddm_neuro.run.rate import simulate_network

    z0 = np.array([[2.0, 0.0], [0.0, -2.0], [-1.5, 1.5]])
    v = simulate_network(model, duration, trials=3, z0=z0, noise=False, seed=0).z
    v = v - v[:, -1:, :]
    theta = np.unwrap(np.arctan2(v[..., 1], v[..., 0]), axis=1)
    far = np.linalg.norm(v, axis=-1) > 1e-3 * np.linalg.norm(v[:, :1], axis=-1)  # before the angle is rounding
    return np.array([abs(t[k][-1] - t[k][0]) for t, k in zip(theta, far)])


def test_symmetric_fit_cannot_cycle(rot_models):
    """Noise-free: the ordinary fit turns w t (~2 rad per time unit) until it has decayed; the symmetric
    one (Jacobian -I + M E^T phi' E, real spectrum) never completes half a turn."""
    _, net, sym = rot_models
    assert np.all(_winding(net) > 2 * np.pi)
    assert np.all(_winding(sym) < np.pi)


def test_analyze_refuses_bad_settings(small_model):
    with pytest.raises(DDMError, match="trials must be an integer >= 2"):
        analyze(small_model, duration=5.0, trials=1)
    with pytest.raises(DDMError, match="duration must be a finite number"):
        analyze(small_model, duration=float("nan"), trials=4)


# ----------------------------------------------------------------------------- command line
def test_cli_json_keys(small_model_path, capsys):
    rc = main(["analyze", str(small_model_path), "--json", "--duration", "10", "--trials", "4", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out)
    e = doc["entropy_production_rate"]
    for key in ("target", "network", "baseline", "closed_form", "target_stderr", "network_stderr"):
        assert key in e and e[key] is not None, key
    shares = doc["connectivity"]["network"]["drift_shares"]
    assert set(shares) == {"leak", "symmetric", "antisymmetric"}
    assert sum(v["projection_share"] for v in shares.values()) == pytest.approx(1.0, abs=1e-9)


def test_cli_report_folder_is_never_overwritten(small_model_path, tmp_path, capsys):
    rep = tmp_path / "rep"
    args = ["analyze", str(small_model_path), "--report", str(rep), "--duration", "5", "--trials", "4", "--quiet"]
    assert main(args) == 0
    names = sorted(p.name for p in rep.iterdir())
    assert names == ["analysis.json", "connectivity.png", "connectivity_fields.png", "drift_decomposition.png",
                     "entropy_production.png"]
    assert "entropy production rate" in capsys.readouterr().out
    before = (rep / "analysis.json").read_bytes()
    assert main(args) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert (rep / "analysis.json").read_bytes() == before
    assert main(args + ["--force", "--seed", "1"]) == 0
    assert (rep / "analysis.json").read_bytes() != before


@pytest.fixture(scope="module")
def well_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("dw") / "dw.ddm"
    fit(get_system("double_well"), n_neurons=16, steps=0, seed=1, **SMALL).save(path)
    return path


def test_bad_input_messages(small_model_path, well_model_path, capsys):
    assert main(["analyze", str(small_model_path), "--switching", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model has no inputs; a switching analysis needs an input-driven model such as `switch`" in err
    assert main(["analyze", str(well_model_path), "--currents", "--quiet"]) == 2
    assert "a 1-D system has no probability current" in capsys.readouterr().err
    # 1-D without asking: currents off silently, connectivity still reported
    assert main(["analyze", str(well_model_path), "--json", "--duration", "5", "--trials", "2", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "entropy_production_rate" not in doc and "network" in doc["connectivity"]


def test_switching_on_an_input_driven_model():
    memory = pytest.importorskip("ddm_neuro.analysis.memory_tasks")
    sde = get_system("switch")
    model = fit(sde, n_neurons=32, steps=0, seed=1, **SMALL)
    r = analyze(model, sde, duration=16.0, trials=8, seed=2, switching=True).results
    sw = r["switching"]
    assert sw["protocol"]["n_pulses"] == 2 and sw["network"]["n"] == sw["target"]["n"] == 16
    n = sw["network"]["n"]
    k_net, k_tgt = (round(sw[key]["rate"] * n) for key in ("network", "target"))
    _, _, score = memory.compare_proportions(k_net, n, k_tgt, n)
    assert abs(score) < 4, sw
    assert "entropy_production_rate" not in r  # 1-D: currents off without asking


@pytest.mark.slow
def test_example_runs_quick(tmp_path, capsys):
    """examples/decompositions.py --quick: fits, analyses, writes the report and prints the EPR table."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "decompositions.py"
    argv = sys.argv
    sys.argv = [str(script), "--out", str(tmp_path / "dec"), "--quick"]
    try:
        with pytest.raises(SystemExit) as exc:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert exc.value.code == 0
    assert "entropy production rate" in capsys.readouterr().out
    assert (tmp_path / "dec" / "analysis.json").is_file()


def test_vorticity_of_the_parts_adds_up(rot_models):
    """The parts' vorticities sum to the drift's, the leak has none, and a symmetric W's W_a has none."""
    from ddm_neuro.analysis.connectivity import vorticity

    sde, net, sym = rot_models
    z = net.init_states
    v = vorticity(net, z)
    assert v["leak"][0] == pytest.approx(0.0, abs=1e-6 * abs(v["symmetric"][0]))
    assert v["total"][0] == pytest.approx(v["symmetric"][0] + v["antisymmetric"][0])
    # the network's drift turns like the target's: vorticity w = 2 (held-out drift error ~0.1 %)
    assert v["total"][0] == pytest.approx(2.0, rel=10 * net.meta["fit"]["drift_error"] + 1e-3)
    assert vorticity(sym, z)["antisymmetric"][0] == pytest.approx(0.0, abs=1e-9)
