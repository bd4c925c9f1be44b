"""Slow: trajectories from the compiled Brian2 back end pass verification (issue 4's round trip).

The full four-system comparison with torch and Brian2's runtime device is
``benchmarks/brian2_verify.py``; these are two of its cases at a smaller size.
"""
import shutil

import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.fit.matching import fit
from ddm_neuro.sde.systems import get_system
from ddm_neuro.verify import verify

pytest.importorskip("brian2")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("make") is None, reason="brian2-cpp needs make and g++")]


@pytest.mark.parametrize("system, kwargs", [("ou_rot", {}), ("double_well", {"c": 1.0})])
def test_brian2_cpp_trajectory_passes_verify(system, kwargs):
    sde = get_system(system, **kwargs)
    model = fit(sde, n_neurons=128, seed=0, progress=False)
    traj = get_backend("brian2-cpp", "rate")(model, 250.0, trials=8, seed=11, u=None, mode="rate", progress=False)
    report = verify(sde, traj, model_drift=model.latent_drift, seed=5)
    assert report.passed, report.table()
