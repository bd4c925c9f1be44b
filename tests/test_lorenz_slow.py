"""Issue 2 acceptance on Lorenz (slow: run with ``pytest -m slow``)."""
import numpy as np
import pytest

from ddm_neuro.fit.matching import fit
from ddm_neuro.run.target import simulate_sde
from ddm_neuro.run.plan import network_steps
from ddm_neuro.run.rate import simulate_network
from ddm_neuro.stats import compare
from ddm_neuro.sde.systems import get_system

pytestmark = pytest.mark.slow


def test_lorenz_512_drift_error_and_60_unit_statistics():
    sde = get_system("lorenz")
    model = fit(sde, n_neurons=512, seed=0, progress=False)
    assert model.meta["fit"]["drift_error"] <= 0.01
    trials, duration = 16, 60.0
    net = simulate_network(model, duration, trials=trials, seed=1)
    lo, hi = sde.domain_box()
    assert np.isfinite(net.z).all() and np.all((net.z >= lo) & (net.z <= hi))  # no divergence
    assert np.all(net.z[:, -1000:].std(axis=1) > 3.0)                         # no collapse onto a point
    dt, rec = network_steps(model)
    rng = np.random.default_rng(7)
    targets = [simulate_sde(sde, duration, dt=dt, record_dt=rec, trials=trials, seed=rng,
                            z0=model.init_states[rng.integers(0, len(model.init_states), trials)])
               for _ in range(2)]
    rows = compare(net, *targets)
    # scores are |difference| / standard error: ~|N(0,1)| when both runs come from the same process
    assert max(r["score"] for r in rows) < 4.0, [(r["name"], round(r["score"], 2)) for r in rows]
