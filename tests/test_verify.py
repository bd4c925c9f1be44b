"""Fast tests of the verifier (ddm_neuro.verify); the long calibration is in test_verify_slow.py."""
import json

import numpy as np
import pytest
from scipy.linalg import solve_continuous_lyapunov

from ddm_neuro.errors import DDMError, OutputExistsError, TrajectoryError
from ddm_neuro.sde.equation import SDE
from ddm_neuro.run.plan import default_steps
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.trajectory import Trajectory
from ddm_neuro.verify import Report, run_verify, verify


def scaled(sde, drift=1.0, diffusion=1.0, shift=0.0):
    """A deliberately wrong model around ``sde``."""
    out = SDE.from_callables(lambda z, u=None: drift * sde.drift(z, u) + shift,
                             lambda z: diffusion * sde.diffusion(z), sde.variables, name="wrong",
                             domain=sde.domain)
    out.tags = sde.tags
    return out


def sim(sde, duration, trials, seed, like=None):
    dt, rec = default_steps(like or sde)
    return simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=seed)


@pytest.fixture(scope="module")
def ou():
    return get_system("ou")


@pytest.fixture(scope="module")
def ou_report(ou):
    return verify(ou, sim(ou, 150.0, 8, seed=1), seed=2)


def test_correct_model_passes(ou_report):
    assert ou_report.passed, ou_report.table()
    for name in ("drift", "diffusion", "stationary", "autocorrelation"):
        m = ou_report.metrics[name]
        assert set(m) >= {"value", "baseline", "threshold", "passed"}
        assert 0 < m["baseline"] < m["threshold"]


def test_wrong_drift_fails_with_margin(ou):
    rep = verify(ou, sim(scaled(ou, drift=1.5), 150.0, 8, seed=1, like=ou), seed=2)
    assert not rep.passed
    m = rep.metrics["drift"]
    assert m["value"] > 1.5 * m["threshold"], rep.table()
    # the noise-subtracted estimate recovers the 50 % error within sampling error
    assert 0.35 < m["estimate"] < 0.6


def test_wrong_diffusion_fails(ou):
    rep = verify(ou, sim(scaled(ou, diffusion=1.5), 150.0, 8, seed=3, like=ou), seed=4)
    m = rep.metrics["diffusion"]
    assert not m["passed"] and m["value"] > 2 * m["threshold"], rep.table()
    # covariance x 2.25: relative error about 1.25
    assert 1.0 < m["estimate"] < 1.5


def test_ou_stationary_covariance_matches_lyapunov_equation():
    # non-normal OU: dz = -A z ds + G dW, covariance solves A S + S A^T = G G^T
    A = np.array([[1.0, 0.8], [-0.3, 1.5]])
    G = np.array([[0.8, 0.0], [0.3, 0.5]])
    sde = SDE.from_callables(lambda z: -z @ A.T, G, ("x", "y"), name="ou_nonnormal",
                             domain={"x": (-3, 3), "y": (-3, 3)})
    traj = simulate_sde(sde, 100.0, dt=0.01, record_dt=0.05, trials=16, seed=5, burn_in=5.0)
    rep = verify(sde, traj, seed=6)
    cov = np.array(rep.metrics["stationary"]["covariance"])
    per_trial = np.array([np.cov(z, rowvar=False) for z in traj.z])
    se = per_trial.std(0, ddof=1) / np.sqrt(len(per_trial))
    exact = solve_continuous_lyapunov(A, G @ G.T)
    assert np.all(np.abs(cov - exact) < 4 * se + 1e-3), (cov, exact, se)
    assert rep.passed, rep.table()


@pytest.fixture(scope="module")
def rot_report():
    sde = get_system("ou_rot")
    return verify(sde, sim(sde, 100.0, 16, seed=7), seed=8)


def test_ou_rot_entropy_production_closed_form(rot_report):
    m = rot_report.metrics["entropy_production"]
    k, w = 1.0, 2.0
    assert m["passed"]
    est, se = m["trajectory"][0], m["stderr"][0]
    assert abs(est - 2 * w ** 2 / k) < 4 * se, (est, se)


def test_ou_rot_mean_rotation_closed_form(rot_report):
    m = rot_report.metrics["rotation"]
    est, se = m["trajectory"][0], m["stderr"][0]
    assert abs(est - 2.0 * 1.0 / 1.0) < 4 * se, (est, se)  # w sigma^2 / k


def test_double_well_switching_and_figures(tmp_path):
    sde = get_system("double_well")
    traj = sim(sde, 150.0, 8, seed=9)
    rep = verify(sde, traj, seed=10)
    m = rep.metrics["switching_rate"]
    assert len(m["wells"]) == 2 and np.allclose(sorted(np.ravel(m["wells"])), [-1, 1], atol=1e-4)
    assert m["switches"] > 5
    files = rep.save(tmp_path / "rep", traj=traj)
    names = {f.name for f in files}
    assert {"report.json", "timeseries.png", "phase_portrait.png", "drift_field.png", "marginals.png",
            "autocorrelation.png", "switching_times.png"} <= names
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["passed"] == rep.passed and set(data["metrics"]) == set(rep.metrics)
    for m in data["metrics"].values():
        assert {"value", "baseline", "threshold", "passed"} <= set(m)
    with pytest.raises(OutputExistsError):
        rep.save(tmp_path / "rep", traj=traj)
    rep.save(tmp_path / "rep", traj=traj, force=True)


def test_run_verify_exit_status_and_table(ou, capsys, tmp_path):
    good = sim(ou, 100.0, 4, seed=11)
    assert run_verify(ou, good, report_dir=tmp_path / "r", progress=False) == 0
    out = capsys.readouterr().out
    assert "drift" in out and "PASSED" in out and (tmp_path / "r" / "drift_field.png").is_file()
    bad = sim(scaled(ou, drift=2.0), 100.0, 4, seed=11, like=ou)
    assert run_verify(ou, bad, progress=False) == 1
    assert "FAILED" in capsys.readouterr().out


def test_filtered_readout_is_corrected():
    """A read-out through a synapse (tau_f) lowers the increment variance; filter_tau corrects it."""
    sde = get_system("ou")
    tau = 0.04
    fine = simulate_sde(sde, 150.0, dt=0.002, record_dt=0.002, trials=8, seed=12)
    a = np.exp(-0.002 / tau)
    y = np.empty_like(fine.z)
    y[:, 0] = fine.z[:, 0]
    for n in range(1, fine.z.shape[1]):
        y[:, n] = a * y[:, n - 1] + (1 - a) * fine.z[:, n]
    traj = Trajectory(fine.t[::25], y[:, ::25], 0.05)
    plain = verify(sde, traj, seed=13, delta=0.2)
    assert not plain.metrics["diffusion"]["passed"], plain.table()
    fixed = verify(sde, traj, seed=13, filter_tau=tau)
    assert fixed.info["delta"] >= 5 * tau
    assert fixed.passed, fixed.table()


def test_input_driven_system_runs():
    from ddm_neuro.run.inputs import InputSignal

    sde = get_system("switch")
    u = InputSignal([0.0, 10.0, 20.0], [[0.5], [-0.5], [0.0]])
    traj = simulate_sde(sde, 30.0, dt=0.002, record_dt=0.01, trials=4, seed=14, u=u)
    rep = verify(sde, traj, seed=15)
    assert rep.passed, rep.table()
    assert any("input varies" in n for n in rep.info["notes"])


def test_lorenz_short_with_and_without_model():
    sde = get_system("lorenz")
    traj = simulate_sde(sde, 4.0, trials=4, seed=16)
    rep = verify(sde, traj, seed=17)
    assert "lyapunov" not in rep.metrics and any("lyapunov" in n for n in rep.info["notes"])
    rep = verify(sde, traj, seed=17, model_drift=lambda z, u: 1.25 * sde.drift(z, u))
    m = rep.metrics["lyapunov"]
    assert not m["passed"] and m["model"] > m["target"] * 1.1


def test_heun_propagation_is_weak_order_two():
    """OU from z0 = 2 over 0.5 at h = 0.05: Heun's mean is exact to O(h^2), Euler's is off by O(h)."""
    from ddm_neuro.verify.reference import propagate
    sde = SDE.from_callables(lambda z, u=None: -z, np.eye(1), ("x",), name="ou1")
    sde.additive = True
    exact = 2.0 * np.exp(-0.5)
    se = np.sqrt((1 - np.exp(-1.0)) / 2 / 200_000)
    for scheme, ok in (("heun", True), ("euler", False)):
        inc = propagate(sde, np.array([[2.0]]), np.zeros(1), 0.5, 0.05, draws=200_000,
                        rng=np.random.default_rng(0), scheme=scheme)
        err = abs(2.0 + inc.mean() - exact)
        assert (err < 4 * se) == ok, (scheme, err, se)


def test_integration_follows_the_trajectory_step(ou):
    from ddm_neuro.verify.core import choose_integration
    traj = sim(ou, 50.0, 2, seed=0)  # Euler-Maruyama, records its step
    assert choose_integration(ou, traj, 1.0)[:2] == ("euler", traj.meta["integration_dt"])
    bare = Trajectory(traj.t, traj.z, traj.dt)  # no record of the step: near-exact target
    assert choose_integration(ou, bare, 1.0)[:2] == ("heun", min(0.02, traj.dt))
    traj.meta["integration_dt"] = 1e-5  # finer than matching is worth: Heun at the default step
    assert choose_integration(ou, traj, 1.0)[0] == "heun"
    assert choose_integration(ou, traj, 1.0, scheme="euler", dt_int=0.001)[:2] == ("euler", 0.001)


def test_studentised_diffusion_is_chi_square_under_heavy_tails():
    """Four cells, in one of them the noise level varies 100x (a heavy scale mixture): the
    studentised statistic stays near chi-square with 4 x 3 degrees of freedom."""
    from scipy.stats import chi2

    from ddm_neuro.verify.increments import increment_stats
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10.0]])
    cells = (centres, np.zeros(2), np.ones(2))
    n, M, stud = 2000, 16, []
    starts = np.repeat(centres, n, axis=0)
    for _ in range(150):
        s = np.ones((4 * n, 1))
        s[:n] = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(n, 1)))
        st = increment_stats(starts, s * rng.normal(size=(4 * n, 2)), s[:, None] * rng.normal(size=(4 * n, M, 2)),
                             cells)
        assert st["diffusion_cells"] == 4
        stud.append(st["diffusion"] ** 2 * 4 * n)
    stud = np.array(stud)
    assert 11.0 < stud.mean() < 13.0 and 1.3 < stud.var() / stud.mean() < 2.6  # chi2(12): mean 12, var 24
    assert np.quantile(stud, 0.99) < 1.15 * chi2.ppf(0.99, 12)


# ---------------------------------------------------------------- bad input
def test_dimension_mismatch(ou):
    traj = sim(get_system("double_well"), 10.0, 2, seed=0)
    with pytest.raises(TrajectoryError, match="dimension 1 .* 2 variables"):
        verify(ou, traj)


def test_nan_reports_where_it_starts(ou):
    traj = sim(ou, 50.0, 3, seed=0)
    traj.z[1, 123:, 0] = np.nan
    traj.z[2, 200, 1] = np.inf
    with pytest.raises(TrajectoryError, match=r"from sample 123 \(t = 12\.3, trial 1\)"):
        verify(ou, traj)


def test_too_short_says_how_long(ou):
    traj = sim(ou, 3.0, 1, seed=0)
    with pytest.raises(TrajectoryError, match=r"too short.*at least [0-9.]+ time units"):
        verify(ou, traj)


def test_irregular_or_missing_dt(ou):
    traj = sim(ou, 50.0, 2, seed=0)
    traj.t = traj.t.copy()
    traj.t[10:] += 0.03
    with pytest.raises(TrajectoryError, match="irregular"):
        verify(ou, traj)
    traj = sim(ou, 50.0, 2, seed=0)
    traj.dt = float("nan")
    with pytest.raises(TrajectoryError, match="dt"):
        verify(ou, traj)


def test_errors_are_ddm_errors():
    assert issubclass(TrajectoryError, DDMError)
    assert Report().passed  # an empty report passes vacuously


def test_entropy_production_takes_its_noise_covariance_at_the_lag():
    """A spiking network's latent noise is filtered (synaptic time constant), so its increments at short
    lags understate D and D^-1 inflates the entropy production. The rotational OU (closed form 2 w^2 / k = 8)
    passed through a 0.005 filter: with D from one-sample increments the estimate is several times the
    unfiltered process's; with D from increments over 10 filter constants (as verify passes its lag) the
    two agree within their sampling error (from per-trial estimates)."""
    from scipy.linalg import cholesky, expm
    from scipy.signal import lfilter

    from ddm_neuro.verify import currents
    from ddm_neuro.verify.basis import PolyBasis

    k, w, h, n, trials, tau_f = 1.0, 2.0, 0.0025, 40000, 8, 0.005
    A = np.array([[k, w], [-w, k]])
    M = expm(-A * h)
    C = 0.5 / k * np.eye(2)
    rng = np.random.default_rng(0)
    xi = rng.normal(size=(trials, n, 2)) @ cholesky(C - M @ C @ M.T, lower=True).T
    x = np.empty((trials, n, 2))
    x[:, 0] = rng.normal(size=(trials, 2)) * np.sqrt(C[0, 0])
    for i in range(1, n):
        x[:, i] = x[:, i - 1] @ M.T + xi[:, i]
    a = np.exp(-h / tau_f)
    y = lfilter([1 - a], [1, -a], x, axis=1)
    basis = PolyBasis.fit_to(x.reshape(-1, 2)[::50])

    def est(z, lag):
        per = [currents.entropy_production(z[i:i + 1], h, basis, lag=lag)[0] for i in range(trials)]
        return currents.entropy_production(z, h, basis, lag=lag)[0], np.std(per, ddof=1) / np.sqrt(trials)

    (w1, s_w1), (f1, _), (w20, s_w20), (f20, s_f20) = est(x, 1), est(y, 1), est(x, 20), est(y, 20)
    # the white process: the closed form, but D over a lag of 0.05 is low by about k * lag = 5 % (drift)
    assert abs(w20 - 2 * w ** 2 / k) < 4 * s_w20 + 0.05 * 8, w20
    assert abs(f20 - w20) < 4 * np.hypot(s_w20, s_f20), (f20, w20, s_w20, s_f20)
    assert f1 - w1 > 10 * s_w1, (f1, w1, s_w1)


@pytest.mark.parametrize("times", [(np.array([]), np.array([])), (np.array([1.0, 2.0]), np.array([])),
                                   (np.array([]), np.array([1.5, 3.0]))])
def test_switching_figure_without_switches_warns_nothing(times):
    """An input level at which neither the network nor the target switches (a cue holds one well) still gets its
    figure, titled so, with no matplotlib warning leaking into the conversion's output."""
    import warnings
    from types import SimpleNamespace

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddm_neuro.verify.figures import _switching

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = _switching(SimpleNamespace(data={"switch_times": times}), None, None)
    ax = fig.axes[0]
    assert ("no switches" in ax.get_title()) == (len(times[0]) + len(times[1]) == 0)
    assert (ax.get_legend() is not None) == (len(times[0]) + len(times[1]) > 0)
    plt.close(fig)
