"""Slow statistical checks of the verifier (run with ``pytest -m slow``)."""
import numpy as np
import pytest

from ddm_neuro.sde.equation import SDE
from ddm_neuro.run.plan import default_steps
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify
from ddm_neuro.verify.lyapunov import largest_lyapunov

pytestmark = pytest.mark.slow


def test_lorenz_largest_lyapunov_exponent():
    """16 starts x 60 time units: 0.906 within 5 % and within 3 standard errors."""
    sde = get_system("lorenz")
    z0 = simulate_sde(sde, 5.0, trials=16, seed=1).z[:, -1]
    lam = largest_lyapunov(sde.drift, z0, duration=60.0, dt=0.005)
    se = lam.std(ddof=1) / np.sqrt(len(lam))
    assert se < 0.02
    assert abs(lam.mean() - 0.906) < min(0.05 * 0.906, 3 * se + 0.005), (lam.mean(), se)


def test_lorenz_verification_reports_lyapunov_and_passes():
    sde = get_system("lorenz")
    traj = simulate_sde(sde, 60.0, trials=16, seed=2)
    rep = verify(sde, traj, seed=3, model_drift=sde.drift)
    assert rep.passed, rep.table()
    assert abs(rep.metrics["lyapunov"]["target"] - 0.906) < 0.05 * 0.906
    assert rep.info["seconds"] < 60  # 30 s on an idle core; slack for a shared machine


def _wrong(sde, **kw):
    out = SDE.from_callables(lambda z, u=None: kw.get("drift", 1.0) * sde.drift(z, u),
                             lambda z: kw.get("diffusion", 1.0) * sde.diffusion(z), sde.variables,
                             name="wrong", domain=sde.domain)
    out.tags = sde.tags
    return out


def test_ou_false_alarms_and_detection():
    """20 target-vs-target pairs: at most 3 false alarms (binomial 95 % bound at a 5 % rate);
    drift x 1.25 at 8 x 250 time units detected at least 18 times out of 20."""
    sde = get_system("ou")
    dt, rec = default_steps(sde)
    wrong = _wrong(sde, drift=1.25)
    fa = det = 0
    for j in range(20):
        good = simulate_sde(sde, 250.0, dt=dt, record_dt=rec, trials=8, seed=100 + j)
        fa += not verify(sde, good, seed=200 + j).passed
        bad = simulate_sde(wrong, 250.0, dt=dt, record_dt=rec, trials=8, seed=300 + j)
        det += not verify(sde, bad, seed=400 + j).passed
    assert fa <= 3 and det >= 18, (fa, det)
