"""The compiled step loops of the torch back end: built once per machine with g++, loaded with ctypes.

Why this tool: a step of these networks is a few operations per neuron, so
torch's per-operation dispatch (30-50 small operations and a host
synchronisation per step: ~300 µs whatever N is) cost more than the
arithmetic below a few thousand neurons. ``torch.compile`` removes neither the
per-step Python loop nor the data-dependent spike loop (its graphs break on
both, and its first compile takes minutes on two cores); numba would add a
dependency. ``step_loops.cpp`` is plain C++ with a C interface: the compiler
that Brian2's ``cpp_standalone`` already needs builds it in about two
seconds, with no Python or torch headers, and it runs many steps per call,
per neuron, with OpenMP threads over trials (or over neuron blocks when there
are fewer trials than threads).

The build goes to ``$DDM_NEURO_CACHE`` or ``~/.cache/ddm_neuro``, in
``step_loops/<hash of source, compiler and flags>.so``, written to a temporary
name and renamed, so concurrent processes never load a half-written library.
:func:`available` says whether it can be had here; :func:`library` builds or
loads it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DDMError
from ..fileio import cache_dir

SOURCE = Path(__file__).with_name("step_loops.cpp")
FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared", "-std=c++11", "-fno-math-errno")
#: Tried first: this CPU's vector instructions and glibc's vector math (libmvec); FLAGS alone if that fails.
FAST = ("-march=native", "-DDDM_VECMATH")
LINK_FAST = ("-lmvec",)
_LIB = []
_FAILED = []

_i64, _f64, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


class Args(ctypes.Structure):
    """Mirror of ``struct Args`` in ``step_loops.cpp`` (every field 8 bytes, same order)."""

    _fields_ = ([(n, _i64) for n in ("T", "N", "R", "DZ", "KIN", "DS", "spiking", "neuron", "factored",
                                     "private_noise", "remainder", "step0", "nsteps", "n_sub", "threads")]
                + [(n, _f64) for n in ("h", "tau", "time_scale", "tau_m", "tau_ref", "act_scale")]
                + [(n, _ptr) for n in ("E", "Kd", "D", "M", "B", "b", "EL", "na", "nc", "scale", "center", "fano",
                                       "u_steps", "u_prev", "x", "v", "ref", "drive", "out")]
                + [("n_rec", _i64)]
                + [(n, _ptr) for n in ("streams", "n_spikes", "spikes", "overflow")])


class CoordArgs(ctypes.Structure):
    """Mirror of ``struct CoordArgs`` in ``step_loops.cpp`` (the spike-coordinated network's loop)."""

    _fields_ = ([(n, _i64) for n in ("T", "N", "d", "M", "k", "n_int", "sub", "hold", "threads", "noisy",
                                     "max_spikes", "step0", "noise_spikes")]
                + [(n, _f64) for n in ("h", "a", "lk", "ct", "dt_s")]
                + [(n, _ptr) for n in ("D", "thr", "A", "x0", "Kt", "cst", "Bx", "DB", "center", "na", "nc", "Ks",
                                       "LL", "u", "Pinv", "e", "xh", "cmd", "Lc", "cnt", "streams", "out", "oute",
                                       "n_spikes", "spk_t", "spk_i", "spk_n")])


def cache_root():
    """Folder of compiled step loops: ``$DDM_NEURO_CACHE`` or ``~/.cache/ddm_neuro``, plus ``step_loops``."""
    return cache_dir("step_loops")


def compiler():
    """The C++ compiler used: ``$CXX`` or ``g++``, as a path, or None when there is none."""
    return shutil.which(os.environ.get("CXX") or "g++")


def _cpu():
    """What identifies this CPU's instruction set (``-march=native`` builds are kept per CPU)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return "".join(ln for ln in fh if ln.startswith(("model name", "flags")))[:4000].encode()
    except OSError:
        import platform

        return platform.processor().encode()


def _build(cxx):
    text = SOURCE.read_bytes()
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DDMError(f"C++ compiler {cxx}: cannot run it ({exc})") from None
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDMError(f"step-loop cache {root}: cannot create it ({exc.strerror}; set DDM_NEURO_CACHE to a "
                       "writable folder)") from None
    error = None
    for extra, link in ((FAST, LINK_FAST), ((), ())):
        key = hashlib.sha256(text + version + _cpu() + " ".join(FLAGS + extra + link).encode()).hexdigest()[:16]
        target = root / f"step_loops_{key}.so"
        failed = root / f"step_loops_{key}.failed"
        if target.is_file():
            return target
        if failed.is_file():  # this variant did not build here before: do not try it on every run
            continue
        fd, tmp = tempfile.mkstemp(prefix=".build_", suffix=".so", dir=root)
        os.close(fd)
        try:
            done = subprocess.run([cxx, *FLAGS, *extra, str(SOURCE), "-o", tmp, *link], capture_output=True,
                                  text=True, timeout=600)
            if done.returncode == 0:
                os.replace(tmp, target)
                return target
            lines = done.stderr.strip().splitlines() or ["no message"]
            error = next((ln for ln in lines if "error" in ln), lines[-1]).strip()
            if extra:
                failed.write_text(done.stderr)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DDMError(f"compiling the step loops with {cxx} failed: {error}")


def library():
    """The loaded step-loop library, built first if needed.

    Returns
    -------
    ctypes.CDLL

    Raises
    ------
    DDMError
        No C++ compiler, or the build fails (the compiler's last line is quoted).
    """
    if _LIB:
        return _LIB[0]
    if _FAILED:
        raise _FAILED[0]
    cxx = compiler()
    try:
        if cxx is None:
            raise DDMError("no C++ compiler found (g++, or $CXX) to build the compiled step loops")
        lib = ctypes.CDLL(str(_build(cxx)))
    except (DDMError, OSError) as exc:
        err = exc if isinstance(exc, DDMError) else DDMError(f"loading the compiled step loops failed: {exc}")
        _FAILED.append(err)
        raise err from None
    lib.ddm_steps.argtypes = [ctypes.POINTER(Args)]
    lib.ddm_steps.restype = ctypes.c_int
    lib.ddm_coordinated.argtypes = [ctypes.POINTER(CoordArgs)]
    lib.ddm_coordinated.restype = ctypes.c_int
    lib.ddm_seed_streams.argtypes = [ctypes.c_uint64, _i64, _ptr]
    lib.ddm_normals.argtypes = [_ptr, _i64, _ptr]
    lib.ddm_block_size.restype = _i64
    lib.ddm_spikes_new.argtypes = [_i64]
    lib.ddm_spikes_new.restype = _ptr
    lib.ddm_spikes_free.argtypes = [_ptr]
    lib.ddm_spikes_count.argtypes = [_ptr]
    lib.ddm_spikes_count.restype = _i64
    lib.ddm_spikes_take.argtypes = [_ptr, _ptr, _ptr]
    _LIB.append(lib)
    return lib


def available():
    """Whether the compiled step loops can be used here (builds them on first call).

    Returns
    -------
    bool
    """
    try:
        library()
    except DDMError:
        return False
    return True


def why_not():
    """The reason the compiled step loops cannot be used, or None when they can."""
    try:
        library()
    except DDMError as exc:
        return str(exc)
    return None


def streams(key, n):
    """``n`` seeded noise streams (n, 6) uint64 for the step loops, from an integer ``key``."""
    out = np.zeros((n, 6), dtype=np.uint64)
    library().ddm_seed_streams(ctypes.c_uint64(int(key) & (2 ** 64 - 1)), n, out.ctypes.data)
    return out


def normals(state, n):
    """``n`` standard normals drawn from one stream ``state`` (6,) uint64, advanced in place (for tests)."""
    out = np.empty(n)
    library().ddm_normals(state.ctypes.data, n, out.ctypes.data)
    return out


def block_size():
    """Neurons per noise stream (one stream per trial and block)."""
    return int(library().ddm_block_size())
