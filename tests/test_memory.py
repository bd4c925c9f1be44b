"""Associative and episodic memory measurements (ddm_neuro.analysis.memory_tasks).

Synthetic trajectories with known answers check the bookkeeping exactly;
Risken's closed form is checked against limits with known values and against
a direct simulation of the angle SDE (fixed seed, tolerance from the standard
error); a small fitted switch network follows cues as often as the target SDE
does (tolerance from the binomial standard errors).
"""
import math

import numpy as np
import pytest

from ddm_neuro.errors import DDMError
from ddm_neuro.analysis.memory_tasks import (angular_current, compare_proportions, cue_protocol, ring_angle_diffusion,
                              ring_centres, risken_current, risken_density, switching_success, visit_sequence)
from ddm_neuro.trajectory import Trajectory


# --------------------------------------------------------------------------- cue protocol
def test_cue_protocol_layout():
    p = cue_protocol(6, 0.8, 1.5, 3.0, seed=4, lead=2.0)
    assert p.n_pulses == 6 and p.duration == pytest.approx(2.0 + 6 * 4.5)
    np.testing.assert_allclose(p.onsets, 2.0 + 4.5 * np.arange(6))
    assert set(np.unique(p.signs)) <= {-1.0, 1.0}
    # u = sign * amplitude during each pulse, 0 in the lead and the gaps
    np.testing.assert_allclose(p.signal.at(p.onsets + 0.7)[:, 0], 0.8 * p.signs)
    np.testing.assert_allclose(p.signal.at(p.onsets + 1.5 + 1.0)[:, 0], 0.0)
    assert p.signal.at([1.0])[0, 0] == 0.0
    # the same seed gives the same signs; another seed (almost surely) other ones
    np.testing.assert_array_equal(cue_protocol(6, 0.8, 1.5, 3.0, seed=4).signs, p.signs)
    signs = [tuple(cue_protocol(40, 1, 1, 1, seed=s).signs) for s in range(3)]
    assert len(set(signs)) == 3 and all(0.2 < np.mean(np.array(s) > 0) < 0.8 for s in signs)


def test_cue_protocol_channel_and_no_lead():
    p = cue_protocol(3, 1.0, 1.0, 2.0, seed=0, lead=0, n_inputs=2, channel=1)
    assert p.signal.times[0] == 0.0 and p.onsets[0] == 0.0
    assert np.all(p.signal.values[:, 0] == 0) and np.abs(p.signal.values[:, 1]).max() == 1.0


@pytest.mark.parametrize("kwargs, word", [
    (dict(n_pulses=0), "n_pulses"), (dict(n_pulses=2.5), "n_pulses"), (dict(amplitude=-1), "amplitude"),
    (dict(width=0), "width"), (dict(gap=float("nan")), "gap"), (dict(lead=-1), "lead"),
    (dict(channel=1), "channel")])
def test_cue_protocol_refuses_bad_arguments(kwargs, word):
    args = dict(n_pulses=3, amplitude=1.0, width=1.0, gap=2.0, seed=0)
    args.update(kwargs)
    with pytest.raises(DDMError, match=word):
        cue_protocol(**args)


# --------------------------------------------------------------------------- switching success
def _scripted(protocol, fail, dt=0.01, start=-1.0, trials=1):
    """A 1-D trajectory that jumps to the cued well at each pulse's end, except pulses in ``fail``."""
    t = np.arange(int(round(protocol.duration / dt)) + 1) * dt
    z = np.full(len(t), start)
    for j, (on, s) in enumerate(zip(protocol.onsets, protocol.signs)):
        if j in fail:
            continue
        z[t >= on + protocol.width] = s
    return Trajectory(t=t, z=np.repeat(z[None, :, None], trials, axis=0), dt=dt,
                      meta={"input": protocol.signal.to_dict()})


def test_switching_success_counts_a_scripted_run():
    p = cue_protocol(30, 1.0, 1.0, 3.0, seed=2)
    fail = {3, 7, 8, 20}
    traj = _scripted(p, fail, trials=2)
    res = switching_success(traj, p, [-1.0, 1.0])
    # expected by hand: walk through the pulses with the same rule
    state, moved, ok = -1.0, [], []
    for j, s in enumerate(p.signs):
        moved.append(state != s)
        if j not in fail:
            state = s
        ok.append(state == s)
    assert res.n == 60 and res.n_moved == 2 * sum(moved)
    assert res.rate == pytest.approx(np.mean(ok))
    assert res.switch_rate == pytest.approx(np.mean(np.array(ok)[moved]))
    assert res.se == pytest.approx(math.sqrt(res.rate * (1 - res.rate) / 60))
    assert res.hold_rate == 1.0 and 0 < res.switch_rate < 1
    assert res.switch_se_trials == pytest.approx(0.0, abs=1e-12)  # both trials identical


def test_switching_success_judges_the_settle_window_not_the_pulse():
    p = cue_protocol(4, 1.0, 1.0, 3.0, seed=0)
    traj = _scripted(p, set())
    z = traj.z.copy()
    late = (traj.t >= p.onsets[1] + 1.0 + 1.2) & (traj.t < p.onsets[1] + 4.0)
    z[0, late, 0] = -p.signs[1]  # falls back 1.2 after the pulse: a failure
    bad = Trajectory(t=traj.t, z=z, dt=traj.dt, meta=traj.meta)
    assert not switching_success(bad, p, [-1, 1]).success[0, 1]
    assert switching_success(bad, p, [-1, 1], settle=(0.0, 1.0)).success[0, 1]


def test_switching_success_refuses_mismatches():
    p = cue_protocol(5, 1.0, 1.0, 3.0, seed=0)
    traj = _scripted(p, set())
    short = Trajectory(t=traj.t[:300], z=traj.z[:, :300], dt=traj.dt, meta=traj.meta)
    with pytest.raises(DDMError, match="protocol needs"):
        switching_success(short, p, [-1, 1])
    with pytest.raises(DDMError, match="gap"):
        switching_success(traj, p, [-1, 1], settle=(1.0, 4.0))
    with pytest.raises(DDMError, match="different input"):
        switching_success(traj, cue_protocol(5, 1.0, 1.0, 3.0, seed=1), [-1, 1])
    with pytest.raises(DDMError, match="wells"):
        switching_success(traj, p, [1.0])


def test_compare_proportions_by_hand():
    diff, se, z = compare_proportions(30, 50, 20, 50)
    assert diff == pytest.approx(0.2) and se == pytest.approx(math.sqrt(0.5 * 0.5 * 0.04)) and z == pytest.approx(2.0)
    assert compare_proportions(10, 10, 20, 20)[2] == 0.0


# --------------------------------------------------------------------------- visits on a ring
def _path(labels, K, hold=40, excursion=None, dt=0.05):
    """Sit at each labelled well for ``hold`` samples (angles interpolated in between)."""
    centres = ring_centres(K, 2.0, 1.0)
    ang = np.arctan2(centres[:, 1], centres[:, 0])
    theta = []
    for a, b in zip(labels[:-1], labels[1:]):
        step = ((b - a + K // 2) % K - K // 2) * 2 * np.pi / K  # shortest way round
        theta += [ang[a]] * hold + list(ang[a] + step * np.linspace(0, 1, 10, endpoint=False))
    theta += [ang[labels[-1]]] * hold
    theta = np.array(theta)
    if excursion is not None:  # halfway to the next well and back: not a transition
        i, k = excursion
        theta[i:i + 6] = ang[k] + 0.5 * 2 * np.pi / K
    z = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    return Trajectory(t=np.arange(len(theta)) * dt, z=z, dt=dt), centres


def test_visit_sequence_counts_a_hand_built_sequence():
    K = 4
    labels = [0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 0]  # 9 forward, 1 backward (1 -> 0)
    traj, centres = _path(labels, K, excursion=(5, 0))
    res = visit_sequence(traj, centres)
    np.testing.assert_array_equal(res.labels[0], labels)
    assert (res.n_forward, res.n_backward, res.n_other) == (9, 1, 0)
    assert res.forward_fraction == pytest.approx(0.9)
    assert res.cycle_rate == pytest.approx((9 - 1) / (K * traj.duration))
    # dwell: entry to entry = 40 samples held + 10 moving, x dt; the first (censored) visit is left out
    np.testing.assert_allclose(res.dwell_times, np.full(9, 50 * traj.dt))


def test_visit_sequence_skip_and_errors():
    centres = ring_centres(5, 2.0, 1.0)
    jumps = np.repeat(centres[[0, 2, 3]], 20, axis=0)  # 0 -> 2 skips a well (sampled too coarsely to see)
    traj = Trajectory(t=np.arange(60) * 0.1, z=jumps, dt=0.1)
    res = visit_sequence(traj, centres)
    assert (res.n_forward, res.n_backward, res.n_other) == (1, 0, 1)
    with pytest.raises(DDMError, match="K >= 3"):
        visit_sequence(traj, centres[:2])
    with pytest.raises(DDMError, match="core"):
        visit_sequence(traj, centres, core=0.6)
    with pytest.raises(DDMError, match="omega"):
        ring_centres(3, 1.0, 1.5)


@pytest.mark.parametrize("omega", [0.7, -1.3])
def test_angular_current_of_a_rotation(omega):
    t = np.arange(0, 50, 0.01)
    z = np.stack([0.3 + 1.2 * np.cos(omega * t + 1), -0.2 + 1.2 * np.sin(omega * t + 1)], axis=-1)
    traj = Trajectory(t=t, z=np.stack([z, z]), dt=0.01)
    v, se = angular_current(traj, centre=(0.3, -0.2))
    assert v == pytest.approx(omega, rel=1e-9) and se == pytest.approx(0.0, abs=1e-12)
    coarse = Trajectory(t=t[::300], z=traj.z[:, ::300], dt=3.0)
    with pytest.raises(DDMError, match="between samples"):
        angular_current(coarse, centre=(0.3, -0.2))
    # max_jump = π reads each step as the shorter turn (for ω = -1.3, |ω| dt > π: aliased)
    v_alias, _ = angular_current(coarse, centre=(0.3, -0.2), max_jump=math.pi)
    step = np.angle(np.exp(1j * omega * 3.0))
    assert v_alias == pytest.approx(step / 3.0, rel=1e-9)


# --------------------------------------------------------------------------- Risken's closed form
def test_risken_known_limits():
    L = 2 * np.pi
    assert risken_current(lambda x: 1.3 + 0 * x, 0.4) * L == pytest.approx(1.3, rel=1e-4)  # no potential
    assert abs(risken_current(lambda x: -1.5 * np.sin(x), 0.3)) < 1e-12                   # no tilt
    # deterministic limit: <dθ/dt> = sqrt(F^2 - a^2) for F > a
    assert risken_current(lambda x: 2 - np.sin(x), 0.005) * L == pytest.approx(math.sqrt(3), rel=2e-4)
    # reflection: the current of h(θ) is minus that of -h(-θ)
    h = lambda x: 0.4 + 1.2 * np.sin(x) + 0.3 * np.cos(2 * x)  # noqa: E731
    assert risken_current(lambda x: -h(-x), 0.25) == pytest.approx(-risken_current(h, 0.25), rel=1e-10)
    # period 2π/K: same velocity as on the full circle
    g = lambda x: 1.8 - 2 * np.sin(3 * x)  # noqa: E731
    v_full = risken_current(g, 0.1) * L
    assert risken_current(g, 0.1, L=L / 3) * L / 3 == pytest.approx(v_full, rel=1e-4)
    # equilibrium density: Boltzmann
    x, p = risken_density(lambda x: -2 * np.sin(x), 0.5)
    q = np.exp(2 * np.cos(x) / 0.5)
    np.testing.assert_allclose(p, q / (q.sum() * (x[1] - x[0])), rtol=1e-4)
    with pytest.raises(DDMError, match="periodic"):
        risken_current(lambda x: np.sin(0.9 * x), 0.3)


def test_risken_current_matches_a_simulation_of_the_angle():
    """dθ = (F - a sin θ) dt + sqrt(2D) dW, 400 trials x 60 time units after a burn-in of 10, Euler dt = 0.002.

    (Without the burn-in, starts spread uniformly slide forward into the wells
    first and bias the velocity by ~ 1 rad / 60 ~ 4 SE.)
    """
    F, a, D = 1.0, 1.5, 0.3
    rng = np.random.default_rng(11)
    trials, dt, T = 400, 0.002, 60.0
    th = rng.uniform(0, 2 * np.pi, trials)
    sq = math.sqrt(2 * D * dt)
    for k in range(int((10 + T) / dt)):
        if k == int(10 / dt):
            th0 = th.copy()
        th += (F - a * np.sin(th)) * dt + sq * rng.standard_normal(trials)
    v = (th - th0) / T
    mean, se = v.mean(), v.std(ddof=1) / math.sqrt(trials)
    closed = risken_current(lambda x: F - a * np.sin(x), D) * 2 * np.pi
    # Euler's bias at dt = 0.002 is ~ dt x rate ~ 0.3 %, well under the SE (~ 3 %)
    assert abs(mean - closed) < 3.5 * se, (mean, se, closed)
    # the same data reject a closed form with the wrong noise (the test can fail)
    wrong = risken_current(lambda x: F - a * np.sin(x), 0.6 * D) * 2 * np.pi
    assert abs(mean - wrong) > 5 * se, (mean, se, wrong)


def test_ring_angle_diffusion_series():
    for sigma, lam in [(0.3, 10.0), (0.2, 20.0)]:
        v = sigma ** 2 / lam
        D, m = ring_angle_diffusion(sigma, lam)
        assert m == pytest.approx(1 + v + 3 * v ** 2 + 15 * v ** 3, rel=1e-5)
        assert D == pytest.approx(sigma ** 2 * m / 2)


# --------------------------------------------------------------------------- a fitted switch network
@pytest.fixture(scope="module")
def switch_model():
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.systems import get_system

    return fit(get_system("switch"), n_neurons=64, seed=0, steps=100, n_train=6000, n_val=2000, n_test=1000,
               progress=False)


def test_small_switch_network_follows_cues_like_the_target(switch_model):
    """50 pulses x 4 trials at a marginal cue (u = 0.8 for 2 time units: ~60 % of needed switches succeed)."""
    from ddm_neuro.plugins import get_backend

    p = cue_protocol(25, 0.8, 2.0, 2.0, seed=3)
    runs = {}
    for name in ("torch", "target"):
        traj = get_backend(name, "rate")(switch_model, p.duration, trials=4, seed=5, u=p.signal, mode="rate",
                                         progress=False)
        runs[name] = switching_success(traj, p, [-1.0, 1.0], settle=(1.0, 2.0))
    net, tgt = runs["torch"], runs["target"]
    assert net.n_moved > 20 and tgt.n_moved > 20
    diff, se, z = compare_proportions(int(net.success[net.moved].sum()), net.n_moved,
                                      int(tgt.success[tgt.moved].sum()), tgt.n_moved)
    assert 0.2 < tgt.switch_rate < 0.95  # a regime where the rate says something
    assert abs(z) < 3, (net.to_dict(), tgt.to_dict())
    # a network that ignores the cue is told apart by the same measure (the test can fail)
    still = get_backend("torch", "rate")(switch_model, p.duration, trials=4, seed=5,
                                         u=cue_protocol(25, 0.01, 2.0, 2.0, seed=3).signal, mode="rate",
                                         progress=False)
    deaf = switching_success(still, cue_protocol(25, 0.01, 2.0, 2.0, seed=3), [-1.0, 1.0])
    assert compare_proportions(int(deaf.success[deaf.moved].sum()), max(deaf.n_moved, 1),
                               int(tgt.success[tgt.moved].sum()), tgt.n_moved)[2] < -3
