"""brian2-cpp builds (compiled once, re-run without recompiling) and exported Brian2 projects.

Small networks only; the statistical checks of the same back ends are in
test_backends.py (noise covariance) and test_brian2_verify.py (slow, verify).
"""
import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ddm_neuro.backends import get_backend
from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.fit import fit
from ddm_neuro.inputs import InputSignal
from ddm_neuro.systems import get_system
from ddm_neuro.trajectory import Trajectory

b2 = pytest.importorskip("brian2")
if shutil.which("make") is None or shutil.which("g++") is None:
    pytest.skip("brian2-cpp needs make and g++", allow_module_level=True)

SMALL = dict(steps=0, n_train=3000, n_val=1000, n_test=500, progress=False)


@pytest.fixture(scope="module")
def vdp():
    return fit(get_system("van_der_pol"), n_neurons=24, **SMALL)


@pytest.fixture(scope="module")
def switch():
    return fit(get_system("switch"), n_neurons=24, **SMALL)


@contextlib.contextmanager
def broken_compiler():
    """Generated code that includes a missing header: the compiler itself fails."""
    old = list(b2.prefs.codegen.cpp.headers)
    b2.prefs.codegen.cpp.headers = old + ['"ddm_no_such_header.h"']
    try:
        yield
    finally:
        b2.prefs.codegen.cpp.headers = old


def cpp(model, duration, **kw):
    kw.setdefault("trials", 2)
    return get_backend("brian2-cpp", "rate")(model, duration, u=kw.pop("u", None), mode="rate", progress=False, **kw)


def test_new_seed_duration_and_input_reuse_the_build(switch):
    a = cpp(switch, 1.0, seed=1)
    b = cpp(switch, 1.0, seed=1)
    c = cpp(switch, 1.0, seed=2)
    d = cpp(switch, 2.5, seed=1, u=InputSignal([0.0, 1.0], [[0.0], [0.6]]))
    np.testing.assert_array_equal(a.z, b.z)                       # a seed reproduces the run
    assert np.abs(a.z - c.z).max() > 1e-3                         # another seed gives other noise
    assert d.duration == pytest.approx(2.5) and np.isfinite(d.z).all()
    builds = {t.meta["build"] for t in (a, b, c, d)}
    assert len(builds) == 1                                       # one compiled build for all four
    assert [t.meta["compile_seconds"] > 0 for t in (b, c, d)] == [False, False, False]


def test_cpp_noise_free_input_run_matches_runtime(switch):
    cue = InputSignal([0.0, 0.5, 1.5], [[0.0], [0.9], [-0.7]])
    kw = dict(trials=1, seed=0, noise=False, z0=[-1.0], u=cue)
    a = get_backend("brian2", "rate")(switch, 2.0, mode="rate", progress=False, **kw)
    b = cpp(switch, 2.0, **kw)
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-10)


def test_compiler_failure_shows_compiler_error_and_keeps_the_build(vdp, tmp_path, monkeypatch):
    monkeypatch.setenv("DDM_NEURO_CACHE", str(tmp_path))
    with broken_compiler():
        with pytest.raises(DDMError, match="ddm_no_such_header.h") as err:
            cpp(vdp, 0.2, seed=0, trials=1)
    kept = list((tmp_path / "brian2_cpp").glob("failed-*"))
    assert len(kept) == 1 and (kept[0] / "makefile").exists() and str(kept[0]) in str(err.value)
    assert not [p for p in (tmp_path / "brian2_cpp").iterdir() if not p.name.startswith("failed-")]


@pytest.fixture(scope="module")
def exported(vdp, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = folder / "vdp.ddm"
    vdp.save(model)
    out = folder / "proj"
    assert main(["export", str(model), "--format", "brian2-cpp", "-o", str(out), "--trials", "2",
                 "--duration", "3", "--quiet"]) == 0
    return model, out


def test_export_writes_a_self_contained_project(exported):
    _, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "model.npz", "export.json", "network.py", "run.py", "code"} <= names
    assert (out / "code" / "main").exists() and (out / "code" / "build.json").exists()
    assert "python run.py" in (out / "README.md").read_text()


def test_exported_project_runs_from_a_copy_without_ddm_neuro(exported, vdp, tmp_path):
    _, out = exported
    copy = tmp_path / "elsewhere"
    shutil.copytree(out, copy)
    block = tmp_path / "block"
    block.mkdir()
    for name in ("ddm_neuro", "exporters"):       # any import of them fails in the child
        (block / f"{name}.py").write_text("raise ImportError('blocked: the export must not need this')\n")
    env = {**os.environ, "PYTHONPATH": str(block)}
    res = subprocess.run([sys.executable, "run.py", "--seed", "5", "--duration", "1.5", "-o", "t.npz"],
                         cwd=copy, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    t = Trajectory.load(copy / "t.npz")
    # the back end makes the same call with the same seed: the same trajectory, bit for bit
    ref = cpp(vdp, 1.5, seed=5, coupling=t.meta["coupling"])
    assert t.z.shape == ref.z.shape == (2, ref.z.shape[1], 2)
    np.testing.assert_array_equal(t.z, ref.z)


def test_export_refuses_existing_output_and_leaves_it(exported, tmp_path):
    model, out = exported
    before = sorted(p.name for p in out.iterdir())
    assert main(["export", str(model), "--format", "brian2-cpp", "-o", str(out), "--quiet"]) == 2
    assert sorted(p.name for p in out.iterdir()) == before


def test_export_compiler_failure_leaves_no_project(vdp, tmp_path, capsys):
    from exporters.brian2.export import export

    with broken_compiler():
        with pytest.raises(DDMError, match="ddm_no_such_header.h"):
            export(vdp, tmp_path / "proj", progress=False)
    assert not (tmp_path / "proj").exists()
    assert (tmp_path / "proj.failed-build" / "code" / "makefile").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_refuses_what_it_cannot_express(vdp, tmp_path):
    from exporters.brian2.export import export

    with pytest.raises(DDMError, match="spiking"):
        export(vdp, tmp_path / "a", mode="spiking", progress=False)
    with pytest.raises(DDMError, match="noise_latent"):
        export(vdp, tmp_path / "b", coupling="dense", progress=False)  # shared top-up needs factored
    import copy

    perp = copy.deepcopy(vdp)
    perp.w_perp = np.zeros((vdp.n_neurons, vdp.n_neurons))
    with pytest.raises(DDMError, match="W_perp"):
        export(perp, tmp_path / "c", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_folder_that_cannot_be_written(vdp, tmp_path):
    from exporters.brian2.export import export

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DDMError, match="does not exist"):
        export(vdp, blocker / "proj", progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # (root may write anywhere; then only the first case applies)
            with pytest.raises(DDMError, match="not writable"):
                export(vdp, ro / "proj", progress=False)
    finally:
        ro.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "ro"] and not list(ro.iterdir())


def test_unknown_export_format_lists_installed(small_model_path, tmp_path, capsys):
    assert main(["export", str(small_model_path), "--format", "nope", "-o", str(tmp_path / "x")]) == 2
    assert "brian2-cpp" in capsys.readouterr().err


def test_cuda_export_generates_code_without_a_gpu(vdp, tmp_path):
    pytest.importorskip("brian2cuda")
    from exporters.brian2.export import export

    out = export(vdp, tmp_path / "cuda", format="brian2-cuda", duration=0.5, seed=3, progress=False)
    code = out / "code"
    assert (code / "makefile").exists() and list(code.glob("code_objects/*.cu"))
    assert "-std=c++17" in (code / "makefile").read_text()
    assert not (code / "main").exists()          # compiled only where a GPU is


def test_runtime_and_cpp_draw_the_same_noise(vdp):
    """Same seed: Brian2's numpy and C++ generators give the same Gaussian stream, so the runs agree."""
    a = get_backend("brian2", "rate")(vdp, 1.0, trials=2, seed=7, u=None, mode="rate", progress=False)
    b = cpp(vdp, 1.0, seed=7)
    c = cpp(vdp, 1.0, seed=8)
    assert np.abs(b.z - a.z).max() < 1e-8 < np.abs(c.z - a.z).max()


def test_long_runs_record_every_sample_on_the_step_grid(vdp):
    """Past ~50 s of network time, i*dt and j*record_dt differ by more than Brian2's absolute 1e-14 s clock
    test; the generated scheduler compares relative to dt, so no sample is lost or taken a step late."""
    duration = 120.0 / vdp.time_scale                       # 120 s of network time
    a = cpp(vdp, duration, trials=1, seed=3, noise=False, z0=[1.0, 0.0])
    b = cpp(vdp, duration - 0.5, trials=1, seed=3, noise=False, z0=[1.0, 0.0])
    assert a.z.shape[1] == round(duration / a.dt) + 1
    assert b.meta["build"] == a.meta["build"] and b.meta["compile_seconds"] == 0   # no rebuild for a new length
    np.testing.assert_array_equal(b.z, a.z[:, :b.z.shape[1]])
