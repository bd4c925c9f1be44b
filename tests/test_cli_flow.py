"""End to end from the command line alone: a TOML system that is not built in."""
import json
from pathlib import Path

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.network import LatentRNN
from ddm_neuro.trajectory import Trajectory

SPEC = Path(__file__).parent.parent / "examples" / "fitzhugh_nagumo.toml"


def test_toml_system_fits_and_simulates_from_the_command_line(tmp_path, capsys):
    model = tmp_path / "fhn.ddm"
    traj = tmp_path / "fhn.npz"
    assert main(["fit", str(SPEC), "-n", "64", "--steps", "10", "--seed", "1", "-o", str(model), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out drift error" in out and "fitzhugh_nagumo" in out
    m = LatentRNN.load(model)
    assert m.inputs == ["I"] and m.variables == ["v", "w"] and m.n_neurons == 64
    assert m.meta["fit"]["drift_error"] < 0.1
    assert main(["simulate", str(model), "--duration", "5", "--trials", "2", "--seed", "3",
                 "--input", "I=0:0,2:0.8", "-o", str(traj), "--quiet"]) == 0
    t = Trajectory.load(traj)
    assert t.z.shape[0] == 2 and t.z.shape[2] == 2 and np.isfinite(t.z).all()
    assert t.meta["backend"] == "torch" and t.meta["input"]["times"] == [0.0, 2.0]
    assert abs(t.duration - 5.0) < 1e-9
    # inputs outside the fitted range, or malformed steps, are refused
    assert main(["simulate", str(model), "--input", "I=2", "-o", str(tmp_path / "x.npz"), "--quiet"]) == 2
    assert main(["simulate", str(model), "--input", "I=0:0:1", "-o", str(tmp_path / "x.npz"), "--quiet"]) == 2
    assert main(["simulate", str(model), "--input", "I=nan:1", "-o", str(tmp_path / "x.npz"), "--quiet"]) == 2
    assert not (tmp_path / "x.npz").exists()
    # the target backend writes the same format, for comparisons
    tgt = tmp_path / "target.npz"
    assert main(["simulate", str(model), "--backend", "target", "--duration", "5", "-o", str(tgt), "--quiet"]) == 0
    assert Trajectory.load(tgt).meta["backend"] == "target"


def test_model_file_rebuilds_the_sde(tmp_path):
    model = tmp_path / "m.ddm"
    assert main(["fit", "ou_rot", "-n", "24", "--steps", "0", "--param", "w=3", "-o", str(model), "--quiet"]) == 0
    sde = LatentRNN.load(model).sde()
    assert sde.parameters["w"] == 3.0
    np.testing.assert_allclose(sde.drift(np.array([[1.0, 0.0]])), [[-1.0, 3.0]])
    json.dumps(LatentRNN.load(model).meta)  # metadata stays JSON


def test_demo_quick_runs_every_stage_and_passes(tmp_path, capsys):
    """The main job, small: fit, torch, Brian2 runtime and C++ runs, each verified (exit 0 = all passed),
    then the spiking run."""
    pytest.importorskip("brian2")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    rate, spiking = text.split("== spiking")
    assert rate.count("PASSED") == 3 and "skipped" not in rate and "FAILED" not in rate
    # the spiking stage: one command, its verdict in one line, counted in the exit status (0 above)
    assert "spiking ou: PASS in brian2-cpp, N = 200" in spiking
    for name in ("model.ddm", "attractor.png", "report", "brian2.npz", "brian2-cpp.npz", "report_brian2-cpp",
                 "model_spiking.ddm", "spiking.npz", "report_spiking/summary.md", "report_spiking/verify/report.json"):
        assert (out / name).exists(), name
