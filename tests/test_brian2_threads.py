"""brian2-cpp with OpenMP threads (``plan.threads``): same network, its own build, the same noise scale.

One thread builds exactly the serial code (no OpenMP); K > 1 threads compile
Brian2's OpenMP code with K threads fixed in the binary. Small networks only
(the session's OU model, N = 32): four builds in all, 1 and 2 threads, with and
without noise.
"""
import os
import shutil
import time

import numpy as np
import pytest

from ddm_neuro.plugins import get_backend
from ddm_neuro.run.plan import network_steps

pytest.importorskip("brian2")
if shutil.which("make") is None or shutil.which("g++") is None:
    pytest.skip("brian2-cpp needs make and g++", allow_module_level=True)

#: Noise runs: 8 trials x 400 one-step residuals (n = 3200), see test_noisy_two_thread_run_has_the_noise_scale.
TRIALS, STEPS = 8, 400


def cpp(model, duration, **kw):
    return get_backend("brian2-cpp", "rate")(model, duration, u=None, mode="rate", progress=False, **kw)


@pytest.fixture(scope="module")
def noise_free(small_model_path):
    """Noise-free runs of the OU model from fixed starts with 1 and 2 threads, and a second 2-thread run."""
    from ddm_neuro.network import LatentRNN

    model = LatentRNN.load(small_model_path)
    kw = dict(trials=3, seed=4, noise=False, z0=[[1.5, -1.0], [-1.0, 1.2], [0.3, 0.2]])
    one = cpp(model, 3.0, threads=1, **kw)
    two = cpp(model, 3.0, threads=2, **kw)
    again = cpp(model, 1.0, threads=2, **kw)
    return model, one, two, again


def test_noise_free_two_thread_run_equals_the_one_thread_run(noise_free):
    """Threads split the element-wise loops (state update, output draw) and, since code_patches, the sums of
    Brian2's summed variables (the recurrent input and the read-out): each thread sums a block of synapses,
    and the blocks' partial sums are added in thread order. So the two runs differ only by the rounding of
    a regrouped sum, ~1e-16 relative per step, which this contracting OU model does not amplify; 1e-12 is
    far below any real difference such as a lost, doubled or misplaced block of synapses, which moves z by
    O(1e-3) within a step."""
    _, one, two, _ = noise_free
    assert one.z.shape == two.z.shape and np.isfinite(one.z).all()
    assert np.abs(one.z[:, -1] - one.z[:, 0]).max() > 0.1          # the runs go somewhere
    np.testing.assert_allclose(two.z, one.z, rtol=0, atol=1e-12)


def test_metadata_records_the_thread_count(noise_free):
    _, one, two, again = noise_free
    assert (one.meta["threads"], two.meta["threads"], again.meta["threads"]) == (1, 2, 2)


def test_one_and_two_thread_builds_are_different_cached_builds(noise_free):
    from exporters.brian2.standalone import cache_root

    _, one, two, again = noise_free
    assert one.meta["build"] != two.meta["build"]
    assert two.meta["compile_seconds"] > 0                           # compiled, not the 1-thread binary reused
    assert again.meta["build"] == two.meta["build"] and again.meta["compile_seconds"] == 0   # reused itself
    code = {k: (cache_root() / t.meta["build"] / "main.cpp").read_text() for k, t in ((1, one), (2, two))}
    make = {k: (cache_root() / t.meta["build"] / "makefile").read_text() for k, t in ((1, one), (2, two))}
    assert "omp" not in code[1] and "-fopenmp" not in make[1]         # 1 thread: the serial build of old
    assert "omp_set_num_threads(2)" in code[2] and "-fopenmp" in make[2]
    # the 2-thread build splits every summed variable's synapse loop over its threads; the serial one does not
    from exporters.brian2.code_patches import PARALLEL_MARK

    for k, t in ((1, one), (2, two)):
        summed = sorted((cache_root() / t.meta["build"] / "code_objects").glob("*summed_variable*.cpp"))
        assert summed, k
        assert [PARALLEL_MARK in f.read_text() for f in summed] == [k == 2] * len(summed), (k, summed)


def test_summed_variable_patch_leaves_unrecognised_code_alone(tmp_path):
    """The OpenMP edit applies only to the exact loop Brian2 generates; other code (a serial build, a
    subgroup target, a loop of another shape) stays Brian2's own, and a second call changes nothing."""
    from exporters.brian2.code_patches import PARALLEL_MARK, parallel_summed_variables

    loop = ("    #pragma omp parallel for schedule(static)\n"
            "    for (int _target_idx=0; _target_idx<_target_size; _target_idx++)\n    {{\n"
            "        _ptr_array_v[_target_idx + {start}] = 0;\n    }}\n"
            "    for(int _idx=0; _idx<_ptr_array_N[0]; _idx++)\n    {{\n"
            "        const double _synaptic_var = _ptr_array_K[_idx] * _ptr_array_r[_ptr_array_pre[_idx]];\n"
            "        _ptr_array_v[_ptr_array_post[_idx]] += _synaptic_var;\n    }}\n")
    (tmp_path / "code_objects").mkdir()
    files = {"a_summed_variable_v_codeobject.cpp": loop.format(start=0),
             "b_summed_variable_v_codeobject.cpp": loop.format(start=5),                 # subgroup target
             "c_summed_variable_v_codeobject.cpp": loop.format(start=0).replace("#pragma omp ", ""),  # serial
             "d_stateupdater_codeobject.cpp": loop.format(start=0)}                      # not a summed variable
    for name, text in files.items():
        (tmp_path / "code_objects" / name).write_text(text)
    assert parallel_summed_variables(tmp_path) == ["a_summed_variable_v_codeobject.cpp"]
    patched = (tmp_path / "code_objects" / "a_summed_variable_v_codeobject.cpp").read_text()
    assert PARALLEL_MARK in patched and "_ddm_mine[_ptr_array_post[_idx]] += _synaptic_var;" in patched
    assert "_ptr_array_v[_ptr_array_post[_idx]] += _synaptic_var;" not in patched
    for name, text in files.items():
        if not name.startswith("a"):
            assert (tmp_path / "code_objects" / name).read_text() == text, name
    assert parallel_summed_variables(tmp_path) == []
    assert (tmp_path / "code_objects" / "a_summed_variable_v_codeobject.cpp").read_text() == patched


def _residuals(model, traj):
    """One-step latent residuals ``z_{n+1} - z_n - f(z_n) h`` per trial: array (trials, steps, d)."""
    h, d = traj.dt, model.dim
    z0 = traj.z[:, :-1].reshape(-1, d)
    res = traj.z[:, 1:].reshape(-1, d) - z0 - model.latent_drift(z0) * h
    return res.reshape(traj.z.shape[0], -1, d)


def test_noisy_two_thread_run_has_the_noise_scale(small_model_path):
    """With OpenMP each thread draws from its own generator (seeded ``seed + thread``), so a seed gives other
    noise than with one thread (same distribution); a seed still reproduces its run.

    The one-step residuals ``r`` (latent increment over one integration step minus the model's drift) are the
    injected noise, covariance ``C h``. Each run's sample covariance per unit time over n residuals has the
    Wishart standard deviation ``se_ij = sqrt((C_ij^2 + C_ii C_jj) / n)``; the difference of the two
    independent runs' estimates has sd ``sqrt(2) se``, and 4 of those bound it (n = 3200: 3.5 % of the
    variance, so 10 %; a noise amplitude 1.2 times too large moves the variance by 44 %). The thread halves
    of the neurons must draw independent streams: the residuals of trials 0-3 (thread 0's neurons) and 4-7
    (thread 1's) are uncorrelated, |corr| < 4 / sqrt(n per pair) pooled."""
    from ddm_neuro.network import LatentRNN

    model = LatentRNN.load(small_model_path)
    h = network_steps(model)[0]
    kw = dict(trials=TRIALS, seed=11, z0=np.tile([1.5, -1.0], (TRIALS, 1)), record_dt=h)
    one = cpp(model, STEPS * h, threads=1, **kw)
    two = cpp(model, STEPS * h, threads=2, **kw)
    two_again = cpp(model, STEPS * h, threads=2, **kw)
    assert two.meta["coupling"] == "factored" and two.meta["threads"] == 2 and two.dt == pytest.approx(h)
    np.testing.assert_array_equal(two_again.z, two.z)                  # a seed reproduces the 2-thread run
    r1, r2 = _residuals(model, one), _residuals(model, two)
    n, d = r1.shape[0] * r1.shape[1], model.dim
    est1 = np.einsum("tsi,tsj->ij", r1, r1) / n / h
    est2 = np.einsum("tsi,tsj->ij", r2, r2) / n / h
    C = model.latent_cov(np.zeros((1, d)))[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / n)
    assert np.all(np.abs(est2 - est1) < 4 * np.sqrt(2) * se), (est1, est2, se)
    assert np.all(np.abs(est2 - C) < 4 * se), (est2, C, se)
    half = TRIALS // 2
    a, b = r2[:half].reshape(-1, d), r2[half:].reshape(-1, d)
    corr = np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(d)])
    assert np.all(np.abs(corr) < 4 / np.sqrt(len(a))), corr


def test_binary_environment_spins_only_on_idle_cores_unless_told_otherwise():
    """A K-thread binary's waiting threads spin (bounded) only when K cores were idle at its start, and
    sleep at once (OMP_WAIT_POLICY=PASSIVE) beside busy processes or when the load is unknown; a 1-thread
    binary's environment is untouched; a wait policy the user set is kept."""
    from exporters.brian2.network import NetworkError, openmp_threads
    from exporters.brian2.runner import OPENMP_ENV, OPENMP_SPIN_ENV, binary_env

    base = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    assert binary_env(1, base, idle=0.0) == base
    assert binary_env(2, base, idle=2.0) == {**base, **OPENMP_SPIN_ENV}
    assert binary_env(2, base, idle=1.0) == {**base, **OPENMP_ENV} == {**base, "OMP_WAIT_POLICY": "PASSIVE"}
    assert binary_env(4, base, idle=3.0) == {**base, **OPENMP_ENV}     # 4 threads, 3 idle cores: sleep
    assert binary_env(4, {**base, "OMP_WAIT_POLICY": "ACTIVE"}, idle=0.0)["OMP_WAIT_POLICY"] == "ACTIVE"
    assert binary_env(2, {**base, "GOMP_SPINCOUNT": "5"}, idle=0.0) == {**base, "GOMP_SPINCOUNT": "5"}
    assert (openmp_threads(1), openmp_threads(3)) == (0, 3)       # Brian2's pref: 0 = no OpenMP
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(NetworkError):
            openmp_threads(bad)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="idle cores are read from Linux's /proc/stat")
def test_a_busy_process_makes_the_threads_sleep():
    """With one process spinning on a core, idle_cores sees at most cpu_count - 1 idle cores (plus its
    resolution), and a build for every core is started with sleeping threads."""
    import subprocess
    import sys

    from exporters.brian2.runner import OPENMP_ENV, binary_env, idle_cores

    cores = os.cpu_count() or 1
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        idle = idle_cores(0.3)
        assert idle is not None and idle <= cores - 0.75, idle
        env = binary_env(max(cores, 2), {"PATH": "/bin"})
        assert {k: env.get(k) for k in OPENMP_ENV} == OPENMP_ENV, env
    finally:
        spinner.kill()
        spinner.wait()


def test_export_bakes_the_thread_count_into_the_project(small_model, tmp_path, monkeypatch):
    """--format brian2-cpp takes threads (default 1): export.json, build.json and the generated C++ carry it
    (code generation only here: the compiled 2-thread binary is the back end's, tested above)."""
    import json

    from ddm_neuro import plugins
    from exporters.brian2 import export as export_module

    assert plugins.get("format", "brian2-cpp").options["threads"].default == 1
    assert "threads" not in plugins.get("format", "brian2-cuda").options
    real = export_module.build_project
    monkeypatch.setattr(export_module, "build_project", lambda *a, **kw: real(*a, **{**kw, "compile": False}))
    out = {}
    for k in (1, 2):
        out[k] = plugins.export(small_model, tmp_path / f"p{k}", format="brian2-cpp", **({"threads": k} if k > 1
                                                                                       else {}))
    for k, folder in out.items():
        assert json.loads((folder / "export.json").read_text())["build"]["threads"] == k
        assert json.loads((folder / "code" / "build.json").read_text())["threads"] == k
    assert "omp_set_num_threads(2)" in (out[2] / "code" / "main.cpp").read_text()
    assert "omp" not in (out[1] / "code" / "main.cpp").read_text()
    assert "2 OpenMP threads" in (out[2] / "README.md").read_text()


def test_cli_threads_reach_an_exported_project(small_model_path, tmp_path, monkeypatch):
    """``ddm-neuro export --format brian2-cpp --threads 2``: the global thread count is baked into the project."""
    import json

    import torch

    from ddm_neuro import threads
    from ddm_neuro.cli import main
    from exporters.brian2 import export as export_module

    real = export_module.build_project
    monkeypatch.setattr(export_module, "build_project", lambda *a, **kw: real(*a, **{**kw, "compile": False}))
    monkeypatch.setattr(threads, "_IN_FORCE", [])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    before = torch.get_num_threads()
    try:
        assert main(["export", str(small_model_path), "--format", "brian2-cpp", "--threads", "2",
                     "-o", str(tmp_path / "p2"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "p2" / "export.json").read_text())["build"]["threads"] == 2
