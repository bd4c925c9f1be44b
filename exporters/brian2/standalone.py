"""The ``brian2-cpp`` back end: the rate network as generated C++ (Brian2 ``cpp_standalone``).

A build depends only on the network's structure (model arrays, trials, dt,
record interval, coupling, noise on/off, the input buffer's length) and on
the run's thread count (``plan.threads``: 1 builds the serial code, K > 1
Brian2's OpenMP code with K threads, each a cache entry of its own); it is
compiled once into a cache folder and re-run for every seed, duration, start
state and input, which reach the binary on its command line (see
:mod:`exporters.brian2.runner`). The cache lies in ``$DDM_NEURO_CACHE`` or
``~/.cache/ddm_neuro``; builds are written to a temporary folder and renamed
into place, so concurrent runs never see a half-built project, and a build
holds a lock (``<key>.lock``, :func:`build_lock`) so that a second process
needing the same build waits for it instead of compiling it again. A build
that fails to compile is kept under ``failed-*`` for inspection; an
interrupted one (Ctrl-C, SIGTERM) ends its compilers and leaves nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.progress import ticking
from ddm_neuro.run.plan import network_steps, spiking_dt
from ddm_neuro.spiking.coordinated import coordinated

from . import code_patches as _code_patches
from . import network as _network
from .network import CompileError, NetworkError, build_project
from .processes import terminate_as_interrupt
from .rate import choose_coupling, model_spec, spiking_meta, spiking_settings
from .runner import RunError, run_build

def snap(value):
    """``value`` to 12 significant digits: steps recomputed for another run length map to the same build."""
    return float(f"{value:.12g}")


def fixed_grid(model, dt=None, record_dt=None):
    """``(dt, record_dt)`` of a build, independent of any run's length (a new duration must not rebuild).

    A whole number of steps per recorded sample; a run then covers
    ``round(duration / record_dt)`` samples. For durations that are a multiple
    of ``record_dt`` this is the torch simulator's grid exactly; otherwise
    torch stretches ``record_dt`` to end exactly at ``duration`` and the two
    grids differ in the last digits.
    """
    d0, r0 = network_steps(model)
    dt = dt or d0
    record_dt = record_dt or max(r0, dt)
    n_sub = max(1, math.ceil(record_dt / dt - 1e-9))   # as ddm_neuro.run.target.recording_grid: dt never coarser
    record_dt = snap(record_dt)
    # dt derived from the snapped record_dt, not snapped itself: snapping record_dt / 7 to 12 digits made
    # 7 dt differ from record_dt by ~1e-12 relative, and after ~1000 steps the scheduler's clocks fell
    # out of step (the last sample went missing)
    return record_dt / n_sub, record_dt


def cache_root():
    """Folder of compiled builds: ``$DDM_NEURO_CACHE`` or ``~/.cache/ddm_neuro``, plus ``brian2_cpp``."""
    from ddm_neuro.fileio import cache_dir

    return cache_dir("brian2_cpp")


#: Smallest input buffer of a build (steps; 8 MiB per input channel): runs up to this long,
#: with any input, reuse the build; longer ones rebuild once with a buffer twice as long.
MIN_INPUT_STEPS = 2 ** 20


def input_buffer(n_steps):
    """Rows of the input TimedArray a build holds: a power of two >= the run's, at least MIN_INPUT_STEPS."""
    return max(MIN_INPUT_STEPS, 1 << int(np.ceil(np.log2(n_steps + 2))))


def build_key(arrays, info, build):
    """Hash of everything a compiled build depends on (model, structure, Brian2 and this code)."""
    import brian2

    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    h.update(json.dumps([info, build, brian2.__version__], sort_keys=True).encode())
    for source in (_network, _code_patches):
        h.update(Path(source.__file__).read_bytes())
    return h.hexdigest()[:20]


def _complete(path):
    """Whether ``path`` holds a finished build (its manifest readable, its binary there)."""
    try:
        with open(path / "build.json") as fh:
            json.load(fh)
    except (OSError, ValueError):
        return False
    return (path / "main").is_file()


def _cache_folder(root):
    """Create the cache root, or say in one line why it cannot be used."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DDMError(f"brian2-cpp cache {root}: exists and is not a folder (set DDM_NEURO_CACHE to a folder)") \
            from None
    except OSError as exc:
        raise DDMError(f"brian2-cpp cache {root}: cannot create it ({exc.strerror}; set DDM_NEURO_CACHE to a "
                       "writable folder)") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise DDMError(f"brian2-cpp cache {root}: not writable (set DDM_NEURO_CACHE to a writable folder)")


@contextlib.contextmanager
def build_lock(root, key):
    """Hold an exclusive lock on the build ``key`` in ``root`` (``fcntl.flock`` on ``<key>.lock``).

    A second process that needs the same build waits here (saying so on
    stderr) and then finds it built. The lock belongs to an open file: it is
    released when the holder ends in any way (even killed), so a crashed
    build never blocks the next one. The holder removes the lock file before
    it lets go; a waiter that then holds a removed file tries again on a new
    one. Yields True when locked, False where the file system offers no
    locks (then builds may run side by side, as before).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    lock = root / f"{key}.lock"
    said = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    print(f"brian2-cpp: waiting for another build of the same network ({root / key}) ...",
                          file=sys.stderr, flush=True)
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # e.g. a file system without locks (ENOLCK)
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder we waited for removed this file: lock the current one
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _remove_leftovers(root, key, path):
    """Remove what a crashed build of ``key`` left (only called under its lock): its temporary folders
    and an unfinished entry."""
    for old in root.glob(f".building-{key}-*"):
        shutil.rmtree(old, ignore_errors=True)
    if path.exists() or path.is_symlink():
        stale = Path(tempfile.mkdtemp(prefix=f".stale-{key}-", dir=root))
        os.replace(path, stale / "entry")
        shutil.rmtree(stale, ignore_errors=True)


def ensure_build(arrays, info, build, root=None, progress=False):
    """The folder of a compiled build for ``build`` (dict of build_project's structure arguments).

    Reuses a cached build; otherwise generates and compiles one. Concurrent
    calls for the same build (other processes too) wait for the first
    (:func:`build_lock`) and reuse its result. An interruption (Ctrl-C,
    SIGTERM) ends ``make`` and its compilers and removes the temporary folder.
    Returns ``(path, compiled_now_seconds)``.
    """
    root = Path(root or cache_root())
    key = build_key(arrays, info, build)
    path = root / key
    if _complete(path):
        return path, 0.0
    _cache_folder(root)
    with terminate_as_interrupt(), build_lock(root, key) as locked:
        if _complete(path):  # built by the process we waited for
            return path, 0.0
        if locked:
            _remove_leftovers(root, key, path)
        tmp = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=root))
        if progress:
            print(f"brian2-cpp: generating and compiling C++ in {path} (once per network structure) ...", flush=True)
        t0 = time.perf_counter()
        try:
            with ticking("brian2-cpp: generating and compiling", progress):
                build_project(arrays, info, tmp, **build)
        except CompileError as exc:
            failed = root / f"failed-{path.name}-{int(time.time())}"
            tmp.rename(failed)
            raise DDMError(f"{exc}\n(the generated project is kept for inspection in {failed})") from None
        except NetworkError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DDMError(str(exc)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            tmp.rename(path)
        except OSError:  # another process finished the same build first (no locks on this file system)
            shutil.rmtree(tmp, ignore_errors=True)
        return path, time.perf_counter() - t0


def run(plan):
    """Run a plan as compiled C++ (Brian2 ``cpp_standalone``); return the latent Trajectory.

    Modes and options are those of :func:`exporters.brian2.rate.run`, plus
    ``cache`` (the build folder's root, default :func:`cache_root`). The grid
    is the build's (:func:`fixed_grid`, from the requested steps), so that a
    new duration does not rebuild: the first run of a network structure
    compiles it (a few seconds); later runs with any seed, duration, start or
    input reuse the binary.

    ``plan.threads`` (default 1, or the count set by ``--threads``): 1 runs
    the serial build (no OpenMP); K > 1 a build compiled for K OpenMP
    threads, whose waiting threads spin briefly when K cores were idle at the
    start and sleep at once otherwise (:func:`exporters.brian2.runner.binary_env`;
    a wait policy in the environment is kept). Each
    thread draws its own random stream, so one seed gives other noise with
    K > 1 than with 1 thread, of the same law; noise-free runs agree. The
    trajectory's metadata records ``threads``.
    """
    model, trials, duration, seed, progress = plan.model, plan.trials, plan.duration, plan.seed, plan.progress
    if plan.mode == "spiking" and coordinated(model):  # a spike-coordinated network: its own network and build
        from .coordinated import run as run_coordinated

        return run_coordinated(plan)
    if shutil.which("make") is None:
        raise DDMError("backend 'brian2-cpp' needs 'make' and a C++ compiler (g++ or clang++) on PATH")
    threads = int(getattr(plan, "threads", 1) or 1)
    build = {"trials": int(trials), "threads": threads}   # a K-thread build is its own cache entry
    dt = plan.requested_dt
    if plan.mode == "spiking":
        noise, coupling, fano = spiking_settings(model, plan)
        dt = dt or spiking_dt(model)
        build.update(mode="spiking", fano=fano, record_spikes=bool(plan.options.get("record_spikes")))
    else:
        coupling = choose_coupling(model, plan.options.get("coupling"), plan.noise)
        noise = bool(plan.noise)
    dt, record_dt = fixed_grid(model, dt, plan.requested_record_dt)
    n_rec = max(1, int(round(duration / record_dt))) + 1
    n_steps = (n_rec - 1) * int(round(record_dt / dt))
    arrays, info = model_spec(model)
    u_grid = None if plan.input is None else plan.input.at(np.arange(n_steps + 2) * dt)
    build.update(dt=dt, record_dt=record_dt, coupling=coupling, noise=noise,
                 input_steps=0 if u_grid is None else input_buffer(n_steps))
    run_seed = int(np.random.default_rng().integers(2 ** 62)) if seed is None else int(seed)
    with terminate_as_interrupt():  # SIGTERM: make, compilers or the binary ended, temporaries removed
        path, compile_s = ensure_build(arrays, info, build, plan.options.get("cache"), progress)
        t0 = time.perf_counter()
        try:  # the exported project's run.py makes the same call: same seed, same trajectory
            with ticking(f"brian2-cpp: running {trials} x {duration:g} time units", progress):
                y = run_build(str(path), arrays, seed=run_seed, duration=(n_rec - 1) * record_dt, z0=plan.z0,
                              u_steps=u_grid)
        except RunError as exc:
            raise DDMError(f"brian2-cpp: {exc}") from None
    y, spikes = y if isinstance(y, tuple) else (y, None)
    if progress:
        print(f"brian2-cpp: ran {trials} x {duration:g} time units in {time.perf_counter() - t0:.1f} s"
              + (f" (compiled in {compile_s:.1f} s)" if compile_s else " (cached build)"), flush=True)
    extra = {"device": "cpp_standalone", "coupling": coupling, "noise": noise, "time_scale": model.time_scale,
             "build": path.name, "compile_seconds": compile_s, "threads": threads}
    sp_t = sp_i = None
    if plan.mode == "spiking":
        sp_t, sp_i, more = spiking_meta(model, spikes, trials, y.shape[1], record_dt)
        fano = build["fano"]
        extra.update(more, fano=fano if isinstance(fano, str) or len(set(fano)) > 1 else fano[0])
    return plan.trajectory(y * model.scale + model.center, backend="brian2-cpp", spikes_t=sp_t, spikes_i=sp_i,
                           grid=(dt, record_dt), **extra)
