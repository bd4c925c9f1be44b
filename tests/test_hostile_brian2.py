"""Hostile conditions around the Brian2 back ends and exports.

SIGTERM while ``make``/``g++`` compile (export and a cold ``simulate --backend
brian2-cpp``), two compiles of one network at once (a lock: one compiles, the
other waits and reuses it; a crashed holder blocks nobody), the exported
``run.py``'s atomic writes, and bad steps, folders and caches: each ends with
one line and leaves no temporary file or process behind.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ddm_neuro.errors import DDMError

b2 = pytest.importorskip("brian2")
CPP = pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None,
                         reason="brian2-cpp needs make and g++")


# ---------------------------------------------------------------- processes
def _processes():
    """``{pid: (ppid, state, cmdline, cwd)}`` of every process (Linux /proc)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            cwd = ""
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (int(fields[1]), fields[0], cmd, cwd)
    return out


def _descendants(pid):
    procs = _processes()
    found, grew = {pid}, True
    while grew:
        grew = False
        for q, (ppid, *_rest) in procs.items():
            if ppid in found and q not in found:
                found.add(q)
                grew = True
    return {q: procs[q] for q in found - {pid}}


def _alive(pids):
    procs = _processes()
    return {q: procs[q][2][:80] for q in pids if q in procs and procs[q][1] not in ("Z", "X")}


def _cli(args, cache, cwd, **env):
    env = {**os.environ, "DDM_NEURO_CACHE": str(cache), "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "ddm_neuro.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _slow_compiler(folder):
    """A C++ compiler for ``CXX`` that, under make, waits a minute before running g++.

    Brian2's makefile compiles with ``$(CXX)``; outside make (Brian2's own flag checks) it is g++ at once.
    A compile then lasts long enough to be interrupted for sure, and the compilers make started are
    easy to find (and must be gone afterwards).
    """
    path = folder / "slow-cxx"
    path.write_text('#!/bin/sh\n[ -n "$MAKELEVEL" ] && sleep 60\nexec g++ "$@"\n')
    path.chmod(0o755)
    return str(path)


def _wait_for_compiler(proc, timeout=120, marker="slow-cxx"):
    """Descendants of ``proc`` seen until a compiler runs under it (``marker`` in a command line)."""
    seen = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before compiling:\n{out}\n{err}")
        kids = _descendants(proc.pid)
        seen.update(kids)
        if any(marker in cmd for _, _, cmd, _ in kids.values()):
            time.sleep(0.3)                       # let make start its compilers
            seen.update(_descendants(proc.pid))
            return seen
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no compiler started")


@CPP
@pytest.mark.parametrize("command", ["export", "simulate"])
def test_sigterm_during_compile_ends_make_and_leaves_nothing(small_model_path, tmp_path, command):
    """SIGTERM while make and its compilers run: exit 143 (or 130) within seconds with one line; make
    and every compiler it started are ended (a plain subprocess.run killed make only and left them
    running), no temporary folder in the output's folder or the cache, no output."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    args = (["export", str(small_model_path), "--format", "brian2-cpp", "-o", "proj", "--quiet"]
            if command == "export" else
            ["simulate", str(small_model_path), "--backend", "brian2-cpp", "--duration", "1", "-o", "t.npz"])
    proc = _cli(args, cache, work, CXX=_slow_compiler(tmp_path))
    seen = _wait_for_compiler(proc)
    assert any(cmd.startswith("make") for _, _, cmd, _ in seen.values())
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGTERM did not end the command within 20 s")
    took = time.monotonic() - t0
    assert proc.returncode in (130, 143), err
    assert took < 10, took
    assert err.strip().splitlines()[-1] in ("ddm-neuro: terminated", "ddm-neuro: interrupted"), err
    assert "Traceback" not in err
    time.sleep(0.2)
    assert not _alive(seen), f"left running: {_alive(seen)}"
    inside = {q: c for q, (_, st, c, cwd) in _processes().items()
              if st not in ("Z", "X") and cwd.startswith(str(tmp_path))}
    assert not inside, f"processes still working in {tmp_path}: {inside}"
    assert list(work.iterdir()) == []
    if cache.exists():
        assert [p.name for p in (cache / "brian2_cpp").iterdir()] == []


@CPP
@pytest.mark.slow
def test_two_cold_compiles_of_one_network_compile_once(small_model_path, tmp_path):
    """Two processes need the same uncached build: one compiles, the other waits and reuses it."""
    cache = tmp_path / "cache"
    args = ["simulate", str(small_model_path), "--backend", "brian2-cpp", "--duration", "1", "--seed", "4",
            "--trials", "3"]
    first = _cli(args + ["-o", "a.npz"], cache, tmp_path)
    _wait_for_compiler(first, marker="make")          # the first holds the lock now
    second = _cli(args + ["-o", "b.npz"], cache, tmp_path)
    results = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    (out1, err1), (out2, err2) = results
    assert "generating and compiling" in out1 and "compiled in" in out1
    assert "generating and compiling" not in out2 and "(cached build)" in out2
    assert "waiting for another build of the same network" in err2
    from ddm_neuro.trajectory import Trajectory

    a, b = Trajectory.load(tmp_path / "a.npz"), Trajectory.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.z, b.z)
    entries = sorted(p.name for p in (cache / "brian2_cpp").iterdir())
    assert len(entries) == 1 and not entries[0].startswith(".") and not entries[0].endswith(".lock"), entries


# ---------------------------------------------------------------- the lock, without a compiler
def _fake_builds(monkeypatch, seconds=0.0):
    """Replace the compile by writing a manifest and an empty 'main'; returns the list of builds made."""
    from exporters.brian2 import standalone

    made = []

    def build_project(arrays, info, directory, **build):
        made.append(str(directory))
        time.sleep(seconds)
        (directory / "build.json").write_text("{}")
        (directory / "main").write_text("")
        return {}

    monkeypatch.setattr(standalone, "build_project", build_project)
    return made


SPEC = ({"w": np.arange(3.0)}, {"name": "toy"}, {"trials": 1})


def test_concurrent_builds_of_one_key_build_once(monkeypatch, tmp_path, capsys):
    from exporters.brian2.standalone import ensure_build

    made = _fake_builds(monkeypatch, seconds=0.5)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(ensure_build(*SPEC, root=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert len(made) == 1
    assert paths[0][0] == paths[1][0] and sorted(p[1] > 0 for p in paths) == [False, True]
    assert "waiting for another build of the same network" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [paths[0][0].name]   # no lock file, no temporary


def test_a_killed_lock_holder_blocks_nobody_and_its_leftovers_go(monkeypatch, tmp_path):
    """A holder killed mid-build (SIGKILL: no clean-up at all) releases the lock with its death; the next
    build removes the temporary folder it left."""
    from exporters.brian2.standalone import build_key, ensure_build

    made = _fake_builds(monkeypatch)
    key = build_key(*SPEC)
    leftover = tmp_path / f".building-{key}-dead"
    leftover.mkdir()
    (leftover / "half.o").write_text("")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)",
                               str(tmp_path / f"{key}.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    threading.Timer(0.5, holder.kill).start()
    t0 = time.monotonic()
    path, _ = ensure_build(*SPEC, root=tmp_path)
    holder.wait()
    assert 0.4 < time.monotonic() - t0 < 10 and len(made) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_an_unfinished_cache_entry_is_rebuilt(monkeypatch, tmp_path):
    from exporters.brian2.standalone import build_key, ensure_build

    made = _fake_builds(monkeypatch)
    entry = tmp_path / build_key(*SPEC)
    entry.mkdir()
    (entry / "build.json").write_text("{trunc")        # no binary, unreadable manifest
    path, compiled = ensure_build(*SPEC, root=tmp_path)
    assert path == entry and compiled > 0 and len(made) == 1 and (entry / "main").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.name]


def test_a_cache_that_cannot_be_used_is_one_line(monkeypatch, tmp_path):
    from exporters.brian2.standalone import ensure_build

    _fake_builds(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DDMError, match="exists and is not a folder"):
        ensure_build(*SPEC, root=blocker)
    with pytest.raises(DDMError, match="cannot create it"):
        ensure_build(*SPEC, root=blocker / "brian2_cpp")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):                # root may write anywhere
            with pytest.raises(DDMError, match="DDM_NEURO_CACHE"):
                ensure_build(*SPEC, root=ro / "brian2_cpp")
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------- the compile's process group
def test_interrupted_command_ends_its_whole_process_group(tmp_path):
    """run_group: an interruption ends the child and every process it started (as make's compilers)."""
    from exporters.brian2.processes import run_group

    # Python's own Ctrl-C handler: once imported, Brian2 installs one that fails when the handler before it was
    # SIG_DFL, so this test's SIGINT would depend on which tests ran earlier in the session
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_a_process_tree(tmp_path, run_group)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_a_process_tree(tmp_path, run_group):
    script = tmp_path / "tree.sh"
    script.write_text(f"sleep 60 &\necho $! > {tmp_path}/grandchild\nsleep 60\n")
    pids = {}

    def interrupt():
        deadline = time.monotonic() + 10
        while not (tmp_path / "grandchild").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        pids["grandchild"] = int((tmp_path / "grandchild").read_text())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        run_group(["sh", str(script)])
    assert not _alive([pids["grandchild"]])
    with pytest.raises(subprocess.TimeoutExpired):      # the timeout ends the group too
        run_group(["sh", "-c", "sleep 60 & sleep 60"], timeout=0.3)


def test_sigterm_becomes_keyboard_interrupt_only_where_nobody_handles_it():
    from exporters.brian2.processes import Terminated, terminate_as_interrupt

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("SIGTERM has a handler in this test process")
    with pytest.raises(Terminated):
        with terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    own = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: own.append(s))
    try:
        with terminate_as_interrupt():                   # an application's own handler stays in charge
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert own == [signal.SIGTERM]


# ---------------------------------------------------------------- run.py's writes
def _traj_args():
    return np.arange(3.0), np.zeros((1, 3, 2)), 0.1, {"backend": "test"}


def test_run_py_writes_atomically_under_a_unique_name(tmp_path, monkeypatch):
    from exporters.brian2 import runner

    out = tmp_path / "t.npz"
    (tmp_path / "t.npz.partial").mkdir()                 # the old fixed temporary name, taken
    runner.write_trajectory(str(out), *_traj_args())
    assert np.load(out)["z"].shape == (1, 3, 2)
    before = out.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.write_trajectory(str(out), *_traj_args(), force=True)
    assert out.read_bytes() == before                    # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz", "t.npz.partial"]


def test_run_py_refuses_outputs_it_cannot_write(tmp_path):
    from exporters.brian2 import runner

    (tmp_path / "d.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        runner.write_trajectory(str(tmp_path / "d.npz"), *_traj_args(), force=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runner.write_trajectory(str(tmp_path / "no" / "t.npz"), *_traj_args())
    (tmp_path / "e.npz").write_text("keep")
    with pytest.raises(FileExistsError, match="--force"):
        runner.write_trajectory(str(tmp_path / "e.npz"), *_traj_args())
    assert (tmp_path / "e.npz").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "e.npz"]


# ---------------------------------------------------------------- bad steps and folders
@pytest.mark.parametrize("backend", ["brian2", "brian2-cpp"])
@pytest.mark.parametrize("bad", [{"dt": 0.0}, {"dt": -0.01}, {"dt": float("nan")}, {"record_dt": float("inf")},
                                 {"duration": -1.0}])
def test_steps_that_do_not_fit_are_refused_before_any_work(small_model, backend, bad, tmp_path, monkeypatch):
    from ddm_neuro.plugins import get_backend

    if backend == "brian2-cpp" and shutil.which("make") is None:
        pytest.skip("brian2-cpp needs make")
    monkeypatch.setenv("DDM_NEURO_CACHE", str(tmp_path))
    bad = dict(bad)
    duration = bad.pop("duration", 1.0)
    with pytest.raises(DDMError, match="must be a finite number > 0"):
        get_backend(backend, "rate")(small_model, duration, trials=1, seed=0, u=None, mode="rate", **bad)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_bad_steps_and_a_file_for_a_folder(small_model, tmp_path):
    from exporters.brian2.export import export

    with pytest.raises(DDMError, match="dt must be a finite number > 0"):
        export(small_model, tmp_path / "p", dt=float("nan"), progress=False)
    (tmp_path / "p").write_text("a file")
    with pytest.raises(DDMError, match="not a folder"):
        export(small_model, tmp_path / "p", force=True, progress=False)
    assert (tmp_path / "p").read_text() == "a file" and [p.name for p in tmp_path.iterdir()] == ["p"]


def test_cuda_export_without_brian2cuda_is_one_line(small_model_path, tmp_path, capsys):
    from ddm_neuro.cli import main

    try:
        import brian2cuda  # noqa: F401
        pytest.skip("Brian2CUDA is installed")
    except ImportError:
        pass
    assert main(["export", str(small_model_path), "--format", "brian2-cuda", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Brian2CUDA" in err[0]
    assert list(tmp_path.iterdir()) == []
