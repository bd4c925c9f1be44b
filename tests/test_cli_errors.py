"""Command-line errors (DESIGN §5): one line on stderr, exit status 2, no traceback, nothing written."""
import json
import shutil
import subprocess
import tomllib
import warnings
import zlib

import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.sde.spec import sde_from_spec
from ddm_neuro.sde.systems import SPECS, get_system
from ddm_neuro.trajectory import Trajectory

GOOD = {
    "variables": '["v", "w"]',
    "drift": 'v = "-v"\nw = "-w"',
    "diffusion": 'v = "0.5"\nw = "0.5"',
}


def spec_file(folder, name="system.toml", **parts):
    """A TOML spec with some of its parts replaced by raw TOML text."""
    p = {**GOOD, **parts}
    text = f'variables = {p["variables"]}\n\n[drift]\n{p["drift"]}\n\n[diffusion]\n{p["diffusion"]}\n'
    if "domain" in parts:
        text += f'\n[domain]\n{parts["domain"]}\n'
    path = folder / name
    path.write_text(text)
    return str(path)


def model_variant(src, dest, **header_changes):
    """Copy a model file, changing fields of its JSON header."""
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop("__meta__").tobytes().decode())
    header.update(header_changes)
    with open(dest, "wb") as fh:  # a file handle: np.savez would append ".npz" to a path
        np.savez(fh, **arrays, __meta__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    return str(dest)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def run_failing(argv, capsys, folder):
    """Run ``main(argv)`` expecting a user error; check the one-line contract and return stderr."""
    before = listing(folder)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (status, out, err)
    assert err.endswith("\n") and err.count("\n") == 1, f"stderr is not one line: {err!r}"
    assert err.startswith(f"ddm-neuro {argv[0]}: error: "), err
    assert "Traceback" not in err and out == ""
    assert listing(folder) == before, "a file was written or left behind"
    return err


# --------------------------------------------------------------------------- fit
FIT_CASES = {
    "unknown-symbol": (dict(drift='v = "-v + q"\nw = "-w"'), ["drift.v", "unknown symbol 'q'", "known: v, w"]),
    "too-few-drift-entries": (dict(drift='v = "-v"'), ["[drift]", "one entry per variable", "missing ['w']"]),
    "too-many-drift-entries": (dict(drift='v = "-v"\nw = "-w"\nx = "0"'), ["[drift]", "unexpected ['x']"]),
    "diffusion-matrix-rows": (dict(diffusion='matrix = [["0.5", "0"]]'),
                              ["diffusion.matrix", "has 1 rows, expected 2"]),
    "diffusion-matrix-ragged": (dict(diffusion='matrix = [["0.5", "0"], ["0.5"]]'), ["diffusion.matrix", "[2, 1]"]),
    "diffusion-missing-entry": (dict(diffusion='v = "0.5"'), ["[diffusion]", "missing ['w']"]),
    "diffusion-not-finite": (dict(diffusion='v = "log(v)"\nw = "0.5"', domain='v = [-1.0, 1.0]\nw = [-1.0, 1.0]'),
                             ["diffusion.v is not finite over the domain", "(at v="]),
    "diffusion-1/v": (dict(diffusion='v = "1/v"\nw = "0.5"'), ["diffusion.v is not finite", "v=0"]),
    "caret": (dict(drift='v = "-v^3"\nw = "-w"'), ["drift.v", "'**'"]),
    "code": (dict(drift='v = "__import__(\'os\').system(\'echo hi\')"\nw = "-w"'), ["drift.v", "unknown function"]),
    "malformed-toml": (dict(drift='v = "-v'), ["not valid TOML"]),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_refuses_a_bad_spec_file(case, tmp_path, capsys):
    parts, expected = FIT_CASES[case]
    spec = spec_file(tmp_path, **parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        err = run_failing(["fit", spec, "-n", "16", "-o", str(tmp_path / "out.ddm"), "--quiet"], capsys, tmp_path)
    for piece in expected:
        assert piece in err, (piece, err)


@pytest.mark.parametrize("argv, expected", [
    (["fit", "lorenz", "-n", "2"], ["n_neurons", ">= d + k = 3", "(got 2)"]),
    (["fit", "lorentz"], ["unknown system 'lorentz'", *SPECS, ".toml"]),
    (["fit", "ou", "--param", "k=fast"], ["--param k", "'fast' is not a number"]),
    (["fit", "ou", "--param", "kk=2"], ["unknown parameter 'kk'", "known: k, sigma"]),
    (["fit", "ou", "--param", "k"], ["--param expects NAME=VALUE"]),
    (["fit", "ou", "--tau", "-1"], ["argument --tau: must be a finite number > 0, got -1"]),
    (["fit", "ou", "--seed", "-3"], ["argument --seed: must be >= 0, got -3"]),
    (["fit", "ou", "--time-scale", "inf"], ["argument --time-scale: must be a finite number > 0"]),
])
def test_fit_refuses_bad_options(argv, expected, tmp_path, capsys):
    err = run_failing(argv + ["-o", str(tmp_path / "out.ddm"), "--quiet"], capsys, tmp_path)
    for piece in expected:
        assert piece in err, (piece, err)


def test_fit_refuses_an_existing_output(tmp_path, capsys):
    out = tmp_path / "out.ddm"
    out.write_bytes(b"keep me")
    err = run_failing(["fit", "ou", "-n", "16", "-o", str(out), "--quiet"], capsys, tmp_path)
    assert f"{out}: already exists (use --force to overwrite)" in err
    assert out.read_bytes() == b"keep me"


def test_non_finite_diffusion_emits_no_warnings(tmp_path, capsys):
    spec = spec_file(tmp_path, diffusion='v = "log(v)"\nw = "0.5"')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["fit", spec, "-o", str(tmp_path / "out.ddm"), "--quiet"])
    assert status == 2
    assert [str(w.message) for w in caught] == []


# --------------------------------------------------------------------------- simulate
def bad_model(kind, folder, good):
    path = folder / "model.ddm"
    if kind == "truncated":
        raw = good.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "newer":
        model_variant(good, path, version=999)
    elif kind == "trajectory":
        Trajectory(t=np.arange(3) * 0.1, z=np.zeros((1, 3, 2)), dt=0.1).save(path)
    elif kind == "text":
        path.write_text("not a model\n")
    elif kind == "foreign":
        model_variant(good, path, format="someone.else")
    return str(path)


@pytest.mark.parametrize("kind, expected", [
    ("truncated", ["model.ddm: not a readable model file (truncated, corrupt"]),
    ("newer", ["model format version 999 is newer", "upgrade ddm_neuro"]),
    ("trajectory", ["model.ddm: not a ddm_neuro model file (no metadata)"]),
    ("text", ["model.ddm: not a readable model file"]),
    ("foreign", ["model.ddm: not a ddm_neuro model file"]),
    ("missing", ["model.ddm: no such model file"]),
])
def test_simulate_refuses_a_bad_model_file(kind, expected, small_model_path, tmp_path, capsys):
    model = bad_model(kind, tmp_path, small_model_path) if kind != "missing" else str(tmp_path / "model.ddm")
    err = run_failing(["simulate", model, "--duration", "0.5", "-o", str(tmp_path / "out.npz"), "--quiet"],
                      capsys, tmp_path)
    for piece in expected:
        assert piece in err, (piece, err)


def test_simulate_refuses_an_unknown_backend_listing_the_available(small_model_path, tmp_path, capsys):
    err = run_failing(["simulate", str(small_model_path), "--backend", "spinnaker", "--duration", "0.5",
                       "-o", str(tmp_path / "out.npz"), "--quiet"], capsys, tmp_path)
    assert "unknown backend 'spinnaker'" in err and "available:" in err
    assert "torch" in err and "target" in err


def test_simulate_refuses_an_unsupported_mode(small_model_path, tmp_path, capsys):
    err = run_failing(["simulate", str(small_model_path), "--mode", "burst", "--duration", "0.5",
                       "-o", str(tmp_path / "out.npz"), "--quiet"], capsys, tmp_path)
    assert "backend 'torch' does not support mode 'burst'" in err and "supports: rate, spiking" in err


def test_spiking_mode_needs_a_lif_model(small_model_path, tmp_path, capsys):
    err = run_failing(["simulate", str(small_model_path), "--mode", "spiking", "--duration", "0.5",
                       "-o", str(tmp_path / "out.npz"), "--quiet"], capsys, tmp_path)
    assert "--neuron lif" in err


def test_spikes_need_spiking_mode(small_model_path, tmp_path, capsys):
    err = run_failing(["simulate", str(small_model_path), "--spikes", "--duration", "0.5",
                       "-o", str(tmp_path / "out.npz"), "--quiet"], capsys, tmp_path)
    assert "--spikes" in err and "--mode spiking" in err


@pytest.mark.parametrize("options, expected", [
    (["--duration", "0"], "argument --duration: must be a finite number > 0, got 0"),
    (["--duration", "inf"], "argument --duration: must be a finite number > 0, got inf"),
    (["--trials", "0"], "argument --trials: must be a finite number > 0, got 0"),
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--input", "I=1"], "--input given, but this model has no inputs"),
])
def test_simulate_refuses_bad_options(options, expected, small_model_path, tmp_path, capsys):
    err = run_failing(["simulate", str(small_model_path), "--duration", "0.5", *options,
                       "-o", str(tmp_path / "out.npz"), "--quiet"], capsys, tmp_path)
    assert expected in err


def test_simulate_output_exists_then_force(small_model_path, tmp_path, capsys):
    out = tmp_path / "out.npz"
    out.write_bytes(b"keep me")
    argv = ["simulate", str(small_model_path), "--duration", "0.5", "--seed", "2", "-o", str(out), "--quiet"]
    err = run_failing(argv, capsys, tmp_path)
    assert f"{out}: already exists (use --force to overwrite)" in err
    assert out.read_bytes() == b"keep me"

    assert main(argv + ["--force"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == "" and f"wrote {out}" in stdout
    traj = Trajectory.load(out)
    assert traj.duration == pytest.approx(0.5) and traj.dim == 2 and traj.meta["backend"] == "torch"
    assert np.isfinite(traj.z).all()
    assert listing(tmp_path) == ["out.npz"]


def test_simulate_refuses_a_npy_file(tmp_path, capsys):
    model = tmp_path / "model.npy"
    np.save(model, np.zeros(3))
    run_failing(["simulate", str(model), "-o", str(tmp_path / "out.npz")], capsys, tmp_path)


def test_simulate_refuses_a_corrupt_model(small_model_path, tmp_path, capsys, corrupt_deflate):
    model = tmp_path / "model.ddm"
    shutil.copy(small_model_path, model)
    corrupt_deflate(model, "encoders.npy")
    run_failing(["simulate", str(model), "-o", str(tmp_path / "out.npz")], capsys, tmp_path)


# --------------------------------------------------------------------------- systems
def test_systems_lists_the_built_ins(capsys):
    assert main(["systems"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(SPECS)
    for line, (name, spec) in zip(lines, SPECS.items()):
        assert line.endswith(spec["description"])


def test_systems_show_prints_toml_that_parses_and_rebuilds_the_system(capsys):
    assert main(["systems", "--show", "lorenz"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    spec = tomllib.loads(out)
    assert spec["name"] == "lorenz" and spec["variables"] == ["x", "y", "z"]
    z = np.array([[1.0, -2.0, 20.0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(sde_from_spec(spec).drift(z), get_system("lorenz").drift(z))


def test_systems_show_unknown_name(tmp_path, capsys):
    err = run_failing(["systems", "--show", "lorentz"], capsys, tmp_path)
    assert "unknown system 'lorentz'" in err and "lorenz" in err


# --------------------------------------------------------------------------- the installed script
def test_console_script_reports_one_line_and_status_2(tmp_path):
    exe = shutil.which("ddm-neuro")
    assert exe, "the ddm-neuro console script is not installed (pip install -e .)"
    spec = spec_file(tmp_path, drift='v = "-v + q"\nw = "-w"')
    out = tmp_path / "out.ddm"
    proc = subprocess.run([exe, "fit", spec, "-o", str(out), "--quiet"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "ddm-neuro fit: error: drift.v: unknown symbol 'q' in '-v + q' (known: v, w)\n"
    assert not out.exists() and listing(tmp_path) == ["system.toml"]


@pytest.mark.parametrize("options, expected", [
    (["--neuron", "tanh", "--tau-ref", "0"], "--tau-ref and --max-rates set LIF parameters"),
    (["--neuron", "lif", "--tau-ref", "0.002", "--max-rates", "300,600"], "max_rates must satisfy"),
    (["--neuron", "lif", "--tau-ref", "-0.001"], "tau_ref >= 0"),
    (["--neuron", "lif", "--max-rates", "fast"], "expected LOW,HIGH in Hz"),
])
def test_fit_refuses_bad_lif_parameters_before_fitting(options, expected, tmp_path, capsys):
    out = tmp_path / "m.ddm"
    assert main(["fit", "ou", "-n", "16", "--steps", "0", *options, "-o", str(out)]) == 2
    assert expected in capsys.readouterr().err and not out.exists()


def test_fit_and_convert_take_lif_parameters(small_model_path, tmp_path):
    from ddm_neuro.network import LatentRNN

    assert main(["fit", "ou", "-n", "16", "--steps", "0", "--neuron", "lif", "--tau-ref", "0", "--max-rates",
                 "150,250", "--quiet", "-o", str(tmp_path / "m.ddm")]) == 0
    prm = LatentRNN.load(tmp_path / "m.ddm").neuron.params
    assert prm["tau_ref"] == 0.0 and prm["max_rates"] == [150.0, 250.0]
    assert main(["convert", str(small_model_path), "--refit-only", "--steps", "0", "--tau-ref", "0.001", "--quiet",
                 "-o", str(tmp_path / "c.ddm")]) == 0
    assert LatentRNN.load(tmp_path / "c.ddm").neuron.params["tau_ref"] == 0.001
