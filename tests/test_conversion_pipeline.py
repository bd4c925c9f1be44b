"""One-command spiking conversion (issue 21): choices, the stops, provenance, the report, and the verify gate."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.network import LatentRNN
from ddm_neuro.sde.load import load_sde
from ddm_neuro.sde.systems import get_system
from ddm_neuro.spiking import pipeline
from ddm_neuro.spiking.calibration import cue_levels
from ddm_neuro.spiking.drift_calibration import SETTLED
from ddm_neuro.trajectory import Trajectory

SMALL_FIT = {"n_train": 4000, "n_val": 1000, "n_test": 500}


def test_choices_follow_the_target():
    lz = pipeline.choose(get_system("lorenz", noise=0.0), backend="torch", kind="deterministic", chaotic=True,
                         foci=True)
    assert lz["n_neurons"].value == 2000 and lz["time_scale_ratio"].value == pipeline.CHAOTIC_RATIO
    assert lz["calibration"].value["noise"] == "none" and lz["calibration"].value["foci"]
    assert lz["verify_runs"].value == [20, 100.0] and lz["spike_budget"].value is None
    dw = pipeline.choose(get_system("double_well"), backend="brian2-cpp", kind="stochastic", chaotic=False)
    assert dw["n_neurons"].value == 1000 and dw["spike_budget"].value is not None
    assert dw["calibration"].value["noise"] == "remainder" and not dw["calibration"].value["foci"]
    assert dw["tau_ref"].value == 1e-4 and dw["time_scale_ratio"].value is None  # Brian2: one spike per step
    norse = pipeline.choose(get_system("double_well"), backend="norse", kind="stochastic", chaotic=False,
                            n_neurons=300, tau_ref=None, max_neurons=500)
    assert norse["tau_ref"].value == 0.0 and norse["n_neurons"] == pipeline.Choice(300, "given")
    assert norse["max_neurons"].value == 500


def test_auto_builds_coordinated_networks_where_they_run(small_model):
    """What ``--network auto`` picks: coordinated in torch and brian2-cpp, for stochastic and deterministic targets
    and a tanh source; independent LIF neurons in another back end, for a LIF source or LIF parameters; a given
    network as given."""
    given = {"network": "auto", "tau_ref": None, "max_rates": None}
    for kind in ("stochastic", "deterministic"):
        assert pipeline.choose_network(given, backend="torch", kind=kind)[0] == "coordinated"
        assert pipeline.choose_network(given, backend="brian2-cpp", kind=kind)[0] == "coordinated"
        assert pipeline.choose_network(given, backend="brian2", kind=kind)[0] == "independent"
        assert pipeline.choose_network(given, backend="norse", kind=kind)[0] == "independent"
    assert pipeline.choose_network(given, backend="torch", kind="stochastic", source=small_model)[0] == "coordinated"
    assert pipeline.choose_network({**given, "tau_ref": 1e-4}, backend="torch", kind="stochastic")[0] == "independent"
    lif_source = SimpleNamespace(neuron=SimpleNamespace(name="lif"))  # the neuron name is all it reads
    assert pipeline.choose_network(given, backend="torch", kind="stochastic", source=lif_source)[0] == "independent"
    assert pipeline.choose_network({**given, "network": "independent"}, backend="torch",
                                   kind="stochastic") == ("independent", "given")


def test_cue_levels_are_the_base_and_halfway_to_either_end_of_the_range():
    sw = get_system("switch")
    levels = cue_levels(sw)
    assert [lv.tolist() for lv in levels] == [[0.0], [0.5], [-0.5]]
    assert cue_levels(get_system("ou")) == [None]
    fhn = load_sde(Path(__file__).parents[1] / "examples" / "fitzhugh_nagumo.toml")   # I in [0, 1]: inside it
    assert [lv.tolist() for lv in cue_levels(fhn, np.array([0.5]))] == [[0.5], [0.75], [0.25]]
    assert [lv.tolist() for lv in cue_levels(fhn, np.array([0.25]))] == [[0.25], [0.75]]


def test_collapse_counts_only_runs_that_stop_moving():
    rng = np.random.default_rng(0)
    z_vis = rng.normal(size=(4000, 3)) * 8.0
    z = rng.normal(size=(3, 300, 3)) * 8.0
    z[1, 150:] = 0.05 * rng.normal(size=(150, 3)) + 8.0  # settled on a fixed point
    traj = Trajectory(t=np.arange(300) * 0.1, z=z, dt=0.1)
    assert pipeline.collapsed_runs(traj, z_vis) == [1]


@pytest.mark.parametrize("args, message", [
    (["ou", "--backend", "nest-nope"], "unknown backend"),
    (["ou", "--input", "u=0.5"], "input"),
    (["switch", "--input", "u=3"], "outside"),
    (["ou", "-n", "500", "--max-neurons", "100"], "above --max-neurons"),
    (["nope_system"], "nope_system"),
    (["ou", "--refit-only"], "--refit-only"),
    (["ou", "--tau-ref", "-1"], "tau_ref"),
    (["ou", "--backend", "brian2-cpp", "--tau-ref", "0.00005"], "one spike per neuron per step"),
    (["ou", "--backend", "nest", "--network", "coordinated"], "torch and brian2-cpp"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "spk.ddm"
    assert main(["convert", *args, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_constrained_model_is_refused(small_model, tmp_path, capsys):
    m = small_model
    m.meta["hardware"] = {"bits": 4}
    m.save(tmp_path / "hw.ddm")
    assert main(["convert", str(tmp_path / "hw.ddm"), "-o", str(tmp_path / "s.ddm"), "--quiet"]) == 2
    assert "hardware-constrained" in capsys.readouterr().err
    assert not (tmp_path / "s.ddm").exists()


@pytest.mark.parametrize("network, message", [
    ("independent", r"needs N >= \d+ neurons.*raise --max-neurons to \d+.*about \d+ min.*--network coordinated"),
    ("auto", r"needs N >= \d+ coordinated neurons \(with noise spikes; tracking the noise would need N >= \d+\)"
             r".*jitter.*raise --max-neurons to \d+.*about \d+ min")])
def test_max_neurons_below_what_the_spike_noise_needs_stops_with_the_n(tmp_path, monkeypatch, network, message):
    """Stochastic Lorenz at N = 200: the independent LIF network's spikes alone are many times its diffusion; auto
    builds a spike-coordinated network in torch, whose jitter at N = 200 is still above its limit, and 400 is too
    few (with its time scale held at the fit's: a longer one would otherwise give the spikes it needs), with the
    noise tracked by the spikes and then as random spikes: the message gives both N."""
    from ddm_neuro.spiking import coordinated_conversion

    monkeypatch.setattr(coordinated_conversion, "MAX_TIME_SCALE_FACTOR", 1.0)
    with pytest.raises(DDMError, match=message):
        pipeline.convert_to_spiking(get_system("lorenz"), n_neurons=200, max_neurons=400, output=tmp_path / "x.ddm",
                                    progress=False, steps=0, fit_options=SMALL_FIT, network=network)
    assert not (tmp_path / "x.ddm").exists()


@pytest.fixture
def quick_runs(monkeypatch):
    """Calibration and verification small enough for the default suite (short rounds, 4 x 40 runs)."""
    monkeypatch.setitem(pipeline.CALIBRATION, "stochastic", (8, 40.0, 2))
    monkeypatch.setitem(pipeline.VERIFY_RUNS, "stochastic", (4, 40.0))


def test_an_interrupted_conversion_keeps_the_best_model(tmp_path, monkeypatch, capsys, quick_runs):
    import ddm_neuro.spiking.calibration as calibration

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(calibration, "calibrate", interrupted)
    monkeypatch.setattr(pipeline, "_verify_stage", _fails)
    out = tmp_path / "spk.ddm"
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert_to_spiking(get_system("ou"), n_neurons=60, output=out, progress=False, steps=0,
                                    fit_options=SMALL_FIT, network="independent")
    kept = LatentRNN.load(out)
    assert kept.neuron.name == "lif" and kept.meta["conversion"]["status"] == "interrupted"
    assert "calibrate" in kept.meta["conversion"]["reason"]
    assert f"kept the best model so far (as fitted; not verified) in {out}" in capsys.readouterr().out


def _fails(result, stages, *a, **k):
    stages.start("verify", "(test: skipped, counted as failed)")
    result.passed = False


def test_conversion_end_to_end_writes_provenance_and_report(tmp_path, quick_runs):
    out, rep = tmp_path / "spk.ddm", tmp_path / "rep"
    res = pipeline.convert_to_spiking(get_system("ou"), n_neurons=120, output=out, report_dir=rep, progress=False,
                                      steps=0, fit_options=SMALL_FIT, network="independent")
    model = LatentRNN.load(out)
    conv = model.meta["conversion"]
    assert conv["status"] == res.status and conv["passed"] == res.passed
    names = [s["name"] for s in conv["stages"]]
    first = "verify (as fitted)" if conv["stages"][1]["drift_error"] <= pipeline.VERIFY_FIRST_MAX_DRIFT_ERROR \
        else "calibrate"
    assert names[:4] == ["check", "fit", "spike noise", first]
    assert conv["choices"]["tau_ref"]["value"] == pipeline.TAU_REF
    assert conv["choices"]["network"] == {"value": "independent", "why": "given"}
    assert conv["source"] == {"sde": "ou"} and len(conv["verify"]) == 1
    for name in ("summary.md", "conversion.json", "verify/report.json", "run.png"):
        assert (rep / name).is_file(), name
    assert json.loads((rep / "conversion.json").read_text())["status"] == res.status
    report = json.loads((rep / "verify/report.json").read_text())
    assert report["passed"] == res.reports[0].passed == res.passed
    # fresh runs: the verification's seeds are offset from the calibration's (which are the conversion seed + 1, 2)
    assert res.traj.meta["seed"] >= pipeline.VERIFY_SEED and (res.traj.meta["seed"] - pipeline.VERIFY_SEED) % 500 == 0


@pytest.mark.parametrize("stopped", ["rounds done", SETTLED])
def test_the_verify_gate_fails_a_network_with_the_wrong_noise(tmp_path, quick_runs, monkeypatch, capsys, stopped):
    """A fit whose private noise is 3x too large, with calibration that changes nothing, must end FAIL (exit 1).
    A second calibration that stopped because its measurement was within its own noise is followed by a third
    with four times the runs; one that stopped otherwise is not."""
    import copy

    import ddm_neuro.spiking.calibration as calibration

    real_fit = pipeline._fit

    def loud(*a, **k):
        model, why = real_fit(*a, **k)
        model.noise_act, model.noise_const = 9.0 * model.noise_act, 9.0 * model.noise_const
        model.noise_latent = 3.0 * model.noise_latent
        return model, why

    asked = []

    def unchanged(model, sde, **kw):
        asked.append(kw["trials"])
        out = copy.deepcopy(model)
        out.meta["spiking_calibration"] = {"best_round": int(stopped == SETTLED),  # corrected something, then settled
                                           "systematic_drift_error": 0.0, "stopped": stopped,
                                           "systematic_drift_error_uncalibrated": 0.0}
        return out

    monkeypatch.setattr(pipeline, "_fit", loud)
    monkeypatch.setattr(calibration, "calibrate", unchanged)
    out = tmp_path / "spk.ddm"
    code = main(["convert", "ou", "-n", "120", "--steps", "0", "--network", "independent", "-o", str(out), "--quiet",
                 "--report", str(tmp_path / "r")])
    assert code == 1
    conv = LatentRNN.load(out).meta["conversion"]
    names = [s["name"] for s in conv["stages"]]
    assert conv["status"] == "failed" and names.count("calibrate (again)") == 1
    third = stopped == SETTLED
    assert names.count("calibrate (four times the runs)") == int(third)
    base = pipeline.CALIBRATION["stochastic"][0]
    assert asked == [base, 2 * base] + ([4 * base] if third else [])
    err = capsys.readouterr().err
    assert "diffusion" in err and "--network coordinated" in err      # and what to try instead


HELD_OUT = '''
name = "cubic_rotor"
description = "Cubic confinement with a rotation (held out: never fitted elsewhere)"
variables = ["x", "y"]

[parameters]
w = 0.8
s = 0.5

[drift]
x = "-x**3 - x + w*y"
y = "-y**3 - y - w*x"

[diffusion]
x = "s"
y = "s"

[domain]
x = [-2.0, 2.0]
y = [-2.0, 2.0]
'''


@pytest.mark.slow
def test_a_held_out_2d_sde_converts_in_one_command_and_passes_verify(tmp_path, capsys):
    """A 2-D SDE the suite has never seen, written here as TOML, converted at small N by the command line and
    judged by verify (the conversion's own verification, on runs its calibration did not use)."""
    spec = tmp_path / "rotor.toml"
    spec.write_text(HELD_OUT)
    out = tmp_path / "rotor_spk.ddm"
    code = main(["convert", str(spec), "-n", "300", "--network", "independent", "-o", str(out), "--quiet"])
    text = capsys.readouterr()
    assert code == 0, text.out + text.err
    conv = LatentRNN.load(out).meta["conversion"]
    assert conv["passed"] and conv["verify"][0]["metrics"]["diffusion"]["passed"]
    assert (tmp_path / "rotor_spk_report" / "verify" / "report.json").is_file()


def test_n_grows_to_what_the_spike_noise_needs(tmp_path, monkeypatch):
    """Spikes alone at 320/N of the target's diffusion: N = 200 gives 1.6 (above the 0.8 limit), so the
    conversion refits at ceil(1.6 x 200 / 0.8, to 100) = 400 neurons, where the ratio is 0.8, and goes on."""
    import ddm_neuro.spiking.calibration as calibration
    import ddm_neuro.spiking.noise as noise

    monkeypatch.setattr(noise, "spike_noise_excess", lambda model, **k: {"ratio": 320.0 / model.n_neurons,
                                                                          "ratio_total": 1.0})

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(calibration, "calibrate", interrupted)
    monkeypatch.setattr(pipeline, "VERIFY_FIRST_MAX_DRIFT_ERROR", -1.0)  # straight to calibration
    out = tmp_path / "spk.ddm"
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert_to_spiking(get_system("ou"), n_neurons=200, output=out, progress=False, steps=0,
                                    fit_options=SMALL_FIT, network="independent")
    kept = LatentRNN.load(out)
    assert kept.n_neurons == 400
    why = kept.meta["conversion"]["choices"]["n_neurons"]
    assert why["value"] == 400 and "1.6x" in why["why"] and "N = 200" in why["why"]
    with pytest.raises(DDMError, match=r"needs N >= 400 neurons"):
        pipeline.convert_to_spiking(get_system("ou"), n_neurons=200, max_neurons=300, progress=False, steps=0,
                                    fit_options=SMALL_FIT, network="independent")


@pytest.mark.slow
def test_a_held_out_2d_sde_converts_to_a_coordinated_network_and_passes_verify(tmp_path):
    """The same held-out SDE as a spike-coordinated network (the default network of a stochastic target in torch):
    the basis fitted, delta
    tuned, N sized from the jitter for the verification's increments, and verify passing on fresh runs (4 x 60, so
    that the default suite can afford it; the jitter limit follows the shorter verification)."""
    from ddm_neuro.sde.spec import load_spec
    from ddm_neuro.spiking.coordinated import coordinated

    spec = tmp_path / "rotor.toml"
    spec.write_text(HELD_OUT)
    res = pipeline.convert_to_spiking(load_spec(spec), output=tmp_path / "rotor_scn.ddm",
                                      report_dir=tmp_path / "rep", verify_runs=(4, 60.0), progress=False,
                                      fit_options=SMALL_FIT)
    assert res.passed, res.reason
    cfg = coordinated(LatentRNN.load(tmp_path / "rotor_scn.ddm"))
    assert cfg["n_neurons"] >= 200 and abs(cfg["chosen"]["rate_hz"] / 70 - 1) <= 0.05
    names = [s["name"] for s in res.stages]
    assert names[:3] == ["check", "fit", "coordinate"] and "calibrate" not in names and "verify" in names
    assert res.choices["network"].value == "coordinated" and res.choices["network"].why.startswith("auto")
    # the noise tracked by the spikes (enough here), not carried by random spikes
    assert res.choices["noise"].value == "tracked" and "tracked" in res.choices["noise"].why
    assert cfg["noise_spikes"] == (res.choices["noise"].value == "spikes")
    assert (tmp_path / "rep" / "run.png").is_file() and (tmp_path / "rep" / "verify" / "report.json").is_file()


@pytest.mark.slow
def test_noise_free_lorenz_converts_to_a_coordinated_network_without_collapse(tmp_path):
    """A deterministic chaotic target in torch: auto builds a coordinated network (no jitter sizing: no noise to
    size it against), and verify, with collapsed runs counted, passes on 8 x 40 fresh runs."""
    from ddm_neuro.spiking.coordinated import coordinated

    res = pipeline.convert_to_spiking(get_system("lorenz", noise=0.0), n_neurons=300, verify_runs=(8, 40.0),
                                      output=tmp_path / "lz0.ddm", progress=False, fit_options=SMALL_FIT)
    assert res.choices["network"].value == "coordinated" and "deterministic" in res.choices["network"].why
    assert res.passed, res.reason
    assert res.reports[0].metrics["collapse"]["value"] == 0
    assert coordinated(LatentRNN.load(tmp_path / "lz0.ddm"))["n_neurons"] == 300
    assert "calibrate" not in [s["name"] for s in res.stages]
