"""brian2-cpp builds (compiled once, re-run without recompiling) and exported Brian2 projects.

Small networks only. Each Brian2 path (runtime device, brian2-cpp back end,
an exported project's run.py) checks its own noise and drift against the
model here (:func:`one_step_statistics`); test_backends.py compares the back
ends with each other and test_brian2_verify.py (slow) runs the verifier.
"""
import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.run.inputs import InputSignal
from ddm_neuro.sde.systems import get_system
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
    with pytest.raises(DDMError, match="does not exist|is not a folder"):
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


# ---------------------------------------------------------------- each path's own noise and drift
#: Two starts per trial set: the runs of one seed from each (see :func:`one_step_statistics`).
STARTS = ([1.5, -1.0], [-1.0, 1.2])
#: Trials and recorded steps of the noise run: n = 8 x 500 one-step residuals, so the noise
#: covariance's relative sampling error is sqrt(2/n) = 2.2 % on the diagonal (4 sd: 9 %); a noise
#: amplitude 1.2 (0.8) times too large changes it by +44 % (-36 %).
NOISE_TRIALS, NOISE_STEPS = 8, 500


@pytest.fixture(scope="module")
def ou(small_model_path):
    """The session's small OU model (N = 32): additive noise, private and a shared top-up (factored)."""
    from ddm_neuro.network import LatentRNN

    model = LatentRNN.load(small_model_path)
    assert not np.any(model.noise_act) and np.any(model.noise_latent)
    return model


def one_step_statistics(model, a, b):
    """Noise and drift of one Brian2 path from two runs of one seed (one sample per integration step).

    Noise: the residuals ``r = z_{n+1} - z_n - f(z_n) h`` of run ``a`` (``f`` the
    model's ``latent_drift``, ``h`` the step) are the injected noise, of
    covariance ``C h`` (``C`` the model's ``latent_cov``). Their sample
    covariance per unit time ``est`` has the Wishart standard deviation
    ``se_ij = sqrt((C_ij^2 + C_ii C_jj) / n)`` for ``n`` residuals.

    Drift: run ``b`` starts elsewhere with the same seed; the noise is additive,
    so both runs draw the same noise and ``Delta = z_a - z_b`` moves by
    ``(f(z_a) - f(z_b)) h`` alone. The least-squares slope of its increments on
    that prediction is 1 up to rounding, and 1.1 for a drift 1.1 times too large.

    Returns
    -------
    est, C, se : arrays (d, d)
    slope : float
    """
    h, d = a.dt, model.dim
    z0, z1 = a.z[:, :-1].reshape(-1, d), a.z[:, 1:].reshape(-1, d)
    res = z1 - z0 - model.latent_drift(z0) * h
    est = res.T @ res / len(res) / h
    C = model.latent_cov(z0[:1])[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / len(res))
    m = b.z.shape[1]
    za, zb = a.z[:, :m], b.z
    step = np.diff(za - zb, axis=1).reshape(-1)
    pred = ((model.latent_drift(za[:, :-1].reshape(-1, d)) - model.latent_drift(zb[:, :-1].reshape(-1, d)))
            * h).reshape(-1)
    return est, C, se, float(pred @ step / (pred @ pred))


def assert_noise_and_drift(model, a, b):
    est, C, se, slope = one_step_statistics(model, a, b)
    assert a.z.shape[0] * (a.z.shape[1] - 1) == NOISE_TRIALS * NOISE_STEPS
    assert np.all(np.abs(est - C) < 4 * se), (np.diag(est) / np.diag(C), est, C, se)
    assert abs(slope - 1) < 1e-3, slope


def _starts(i):
    return np.tile(STARTS[i], (NOISE_TRIALS, 1))


def test_runtime_noise_and_drift_are_the_models(ou):
    from ddm_neuro.run.plan import network_steps

    h = network_steps(ou)[0]
    run = get_backend("brian2", "rate")
    kw = dict(trials=NOISE_TRIALS, seed=11, u=None, mode="rate", progress=False, record_dt=h)
    a = run(ou, NOISE_STEPS * h, z0=_starts(0), **kw)
    b = run(ou, 40 * h, z0=_starts(1), **kw)
    assert a.meta["coupling"] == "factored" and a.dt == pytest.approx(h)
    assert_noise_and_drift(ou, a, b)


def test_cpp_noise_and_drift_are_the_models(ou):
    from ddm_neuro.run.plan import network_steps

    h = network_steps(ou)[0]
    a = cpp(ou, NOISE_STEPS * h, trials=NOISE_TRIALS, seed=11, z0=_starts(0), record_dt=h)
    b = cpp(ou, 40 * h, trials=NOISE_TRIALS, seed=11, z0=_starts(1), record_dt=h)
    assert a.meta["build"] == b.meta["build"] and a.dt == pytest.approx(h)
    assert_noise_and_drift(ou, a, b)


@pytest.fixture(scope="module")
def ou_project(ou, tmp_path_factory):
    """The OU model exported (brian2-cpp) with one recorded sample per step and NOISE_TRIALS trials."""
    from ddm_neuro.run.plan import network_steps
    from exporters.brian2.export import export

    out = tmp_path_factory.mktemp("ou_export") / "proj"
    return export(ou, out, trials=NOISE_TRIALS, duration=NOISE_STEPS * network_steps(ou)[0],
                  record_dt=network_steps(ou)[0], progress=False)


def run_py(project, *args, **kw):
    """``python run.py ARGS`` in ``project`` (a subprocess, as a user runs it)."""
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=project, capture_output=True, text=True,
                          **kw)


def test_exported_run_py_noise_and_drift_are_the_models(ou, ou_project, tmp_path):
    from ddm_neuro.run.plan import network_steps

    h = network_steps(ou)[0]
    runs = []
    for i, steps in ((0, NOISE_STEPS), (1, 40)):
        out = tmp_path / f"{i}.npz"
        res = run_py(ou_project, "--seed", 11, "--duration", steps * h, "--z0=" + ",".join(map(str, STARTS[i])),
                     "-o", out)
        assert res.returncode == 0, res.stderr
        runs.append(Trajectory.load(out))
    assert runs[0].dt == pytest.approx(h)
    assert_noise_and_drift(ou, *runs)


def test_run_py_refuses_bad_arguments_in_one_line(ou_project, tmp_path):
    cases = [(["--duration", "nan"], "--duration must be a finite number > 0"),
             (["--z0", "1,2,3"], "--z0 takes 2 numbers"),
             (["--z0", "a,b"], "comma-separated numbers"),
             (["--input-file", tmp_path / "missing.npy"], "missing.npy"),
             (["-o", tmp_path / "no" / "t.npz"], "does not exist"),
             (["-o", tmp_path], "is a folder")]
    for args, message in cases:
        res = run_py(ou_project, *(["-o", tmp_path / "t.npz"] if "-o" not in args else []), *args)
        assert res.returncode == 1 and message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert sorted(p.name for p in (ou_project / "code").glob("run_*")) == []


def test_sigterm_ends_run_py_and_its_simulation(ou_project, tmp_path):
    """SIGTERM while the compiled binary runs: it is ended, its temporary folder removed, nothing written."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "run.py", "--duration", "1e6", "-o", str(tmp_path / "t.npz")],
                            cwd=ou_project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    binary, deadline = None, time.monotonic() + 60
    while binary is None and time.monotonic() < deadline and proc.poll() is None:
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        binary = int(kids[0]) if kids else None
        time.sleep(0.05)
    assert binary is not None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143 and err.strip() == "run.py: interrupted; nothing written", err
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{binary}") or open(f"/proc/{binary}/stat").read().split(") ")[1][0] == "Z"
    assert list(tmp_path.iterdir()) == [] and list((ou_project / "code").glob("run_*")) == []


def test_run_py_runs_from_a_read_only_copy_and_refuses_a_corrupt_model(ou_project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ou_project, copy)
    out = tmp_path / "out"
    out.mkdir()
    for folder in (copy / "code", copy):
        folder.chmod(0o555)
    try:   # the results are read back from the system's temporary folder (root may write anyway)
        res = run_py(copy, "--duration", "0.2", "-o", out / "t.npz")
        assert res.returncode == 0, res.stderr
    finally:
        for folder in (copy, copy / "code"):
            folder.chmod(0o755)
    assert Trajectory.load(out / "t.npz").z.shape[0] == NOISE_TRIALS
    (copy / "model.npz").write_bytes(b"PK\x03\x04 truncated")
    res = run_py(copy, "-o", out / "u.npz")
    assert res.returncode == 1 and "not a readable model file" in res.stderr and len(res.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["t.npz"] and not list((copy / "code").glob("run_*"))
