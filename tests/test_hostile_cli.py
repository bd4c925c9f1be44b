"""Hostile command-line use (issue 18): refusals before work, interruption, threads, poor fits.

Each refusal must be one line on stderr, exit status 2, nothing written, and
come *before* the expensive work (the tests patch that work to fail loudly if
it is reached).
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ddm_neuro import demo as demo_module
from ddm_neuro.cli import main
from ddm_neuro.threads import configure_threads

from test_cli_errors import listing, run_failing


def _no_work(*args, **kwargs):
    raise AssertionError("the expensive work started before the refusal")


# ----------------------------------------------------------------------------- refusals before work
def test_figure_format_refused_before_simulating(small_model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ddm_neuro.plugins.simulate", _no_work)
    err = run_failing(["simulate", str(small_model_path), "--figure", str(tmp_path / "x.xyz"),
                       "-o", str(tmp_path / "t.npz")], capsys, tmp_path)
    assert "x.xyz" in err and "png" in err


def test_existing_verify_report_refused_before_verifying(small_model_path, tmp_path, capsys, monkeypatch):
    traj = tmp_path / "t.npz"
    assert main(["simulate", str(small_model_path), "--duration", "2", "-o", str(traj), "--quiet"]) == 0
    report = tmp_path / "rep"
    report.mkdir()
    (report / "report.json").write_text("{}")
    capsys.readouterr()
    monkeypatch.setattr("ddm_neuro.verify.run_verify", _no_work)
    err = run_failing(["verify", str(small_model_path), str(traj), "--report", str(report)], capsys, tmp_path)
    assert "report.json: already exists" in err and (report / "report.json").read_text() == "{}"


def test_report_folder_that_is_a_file_refused(small_model_path, tmp_path, capsys, monkeypatch):
    traj = tmp_path / "t.npz"
    assert main(["simulate", str(small_model_path), "--duration", "2", "-o", str(traj), "--quiet"]) == 0
    (tmp_path / "rep").write_text("not a folder")
    capsys.readouterr()
    monkeypatch.setattr("ddm_neuro.verify.run_verify", _no_work)
    err = run_failing(["verify", str(small_model_path), str(traj), "--report", str(tmp_path / "rep")], capsys,
                      tmp_path)
    assert "is not a folder" in err


@pytest.mark.parametrize("argv, words", [
    (["--duration", "1e12"], "--duration 1e+12 is 5e+13 integration steps"),
    (["--trials", "100000000", "--duration", "1"], "--trials 100000000 needs about"),
])
def test_runs_too_large_refused_up_front(small_model_path, tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.setattr("ddm_neuro.plugins.simulate", _no_work)
    err = run_failing(["simulate", str(small_model_path), *argv, "-o", str(tmp_path / "t.npz")], capsys, tmp_path)
    assert words in err and ("GiB available" in err or "more than the 1e+09" in err)


def test_a_model_whose_tau_makes_runs_endless_is_refused(small_model, tmp_path, capsys, monkeypatch):
    """tau = 1e-12 s is a valid number but a run would take 10^13 steps: refused, not left to spin."""
    small_model.tau = 1e-12
    small_model.save(tmp_path / "m.ddm")
    monkeypatch.setattr("ddm_neuro.plugins.simulate", _no_work)
    err = run_failing(["simulate", str(tmp_path / "m.ddm"), "--duration", "1", "-o", str(tmp_path / "t.npz")],
                      capsys, tmp_path)
    assert "integration steps" in err and "tau 1e-12 s" in err


def test_demo_sizes_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo_module, "fit", _no_work)
    err = run_failing(["demo", "--out", str(tmp_path / "d"), "--duration", "1e12"], capsys, tmp_path)
    assert "more than the demo takes" in err


def test_analyze_too_large_refused_up_front(small_model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ddm_neuro.analysis.analyze", _no_work)
    err = run_failing(["analyze", str(small_model_path), "--duration", "1e13"], capsys, tmp_path)
    assert "more than the 1e+09 a run may take" in err


@pytest.mark.parametrize("value, words", [("0", "must be >= 1"), ("two", "not an integer")])
def test_bad_thread_count(small_model_path, tmp_path, capsys, value, words):
    status = main(["simulate", str(small_model_path), "--threads", value, "-o", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert status == 2 and words in err and err.count("\n") == 1


def test_bad_thread_environment(small_model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDM_NEURO_THREADS", "lots")
    err = run_failing(["simulate", str(small_model_path), "-o", str(tmp_path / "t.npz")], capsys, tmp_path)
    assert "DDM_NEURO_THREADS='lots'" in err


# ----------------------------------------------------------------------------- threads
def test_threads_default_is_one_and_option_sets_it(monkeypatch):
    for name in ("DDM_NEURO_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    try:
        assert configure_threads(None) == 1 and torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("DDM_NEURO_THREADS", "3")
        assert configure_threads(None) == 3
        monkeypatch.delenv("DDM_NEURO_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a user's own setting is kept when nothing else is given
        assert configure_threads(None) == 2
    finally:
        torch.set_num_threads(1)


def test_fresh_process_runs_torch_on_one_thread(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DDM_NEURO_THREADS")}
    code = ("import sys, torch; from ddm_neuro.cli import main; main(['systems']); "
            "from ddm_neuro.threads import configure_threads; configure_threads(None); "
            "print('threads', torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "threads 1"


# ----------------------------------------------------------------------------- demo: keep what is finished
def _fake_simulate(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_demo_keeps_the_model_and_says_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo_module, "simulate_network", _fake_simulate)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-n", "24", "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert listing(out) == ["model.ddm"]
    assert "during the simulate stage: kept model.ddm" in err and str(out) in err and "--resume" in err
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "a temporary file was left behind"
    # --resume reuses it: the fit stage does not run again
    monkeypatch.setattr(demo_module, "fit", _no_work)
    assert main(["demo", "--quick", "-n", "24", "--out", str(out), "--quiet", "--resume"]) == 130
    assert "fit: reusing" in capsys.readouterr().out


def test_demo_folder_refusals(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo_module, "fit", _no_work)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    err = run_failing(["demo", "--quick", "--out", str(tmp_path / "old")], capsys, tmp_path)
    assert "already exists" in err and "--resume" in err
    err = run_failing(["demo", "--quick", "--out", str(tmp_path / "new"), "--resume"], capsys, tmp_path)
    assert "model.ddm does not exist" in err
    err = run_failing(["demo", "--quick", "--out", str(tmp_path / "old"), "--resume", "--force"], capsys, tmp_path)
    assert "give one of them" in err
    (tmp_path / "afile").write_text("x")
    err = run_failing(["demo", "--quick", "--out", str(tmp_path / "afile")], capsys, tmp_path)
    assert "is not a folder" in err


# ----------------------------------------------------------------------------- SIGTERM
def test_sigterm_ends_like_ctrl_c_and_leaves_no_temporary(tmp_path):
    """A fit killed with SIGTERM exits 143 with one line, and leaves neither the output nor a temporary."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ddm_neuro.cli", "fit", "lorenz", "-n", "256", "--steps", "2000",
                             "-o", str(tmp_path / "m.ddm")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # start-up and the fit's first steps (the whole fit takes minutes)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGTERM did not end the fit within 30 s")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "ddm-neuro: terminated"
    assert "Traceback" not in err
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- poor fits are reported
def test_poor_fit_is_warned_with_its_number(tmp_path, capsys):
    assert main(["fit", "lorenz", "-n", "8", "--steps", "0", "-o", str(tmp_path / "m.ddm"), "--quiet"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "drift error" in x)
    assert line.startswith("warning: held-out drift error") and "more neurons (-n, now 8)" in line
    assert "--steps, now 0" in line


def test_good_fit_has_no_warning(small_model_path):
    from ddm_neuro.fit.matching import fit_warnings
    from ddm_neuro.network import LatentRNN

    model = LatentRNN.load(small_model_path)
    assert model.meta["fit"]["drift_error"] < 0.02 and fit_warnings(model) == []
    model.meta["fit"]["drift_error"] = 0.05
    assert "5.00 %" in fit_warnings(model)[0]
