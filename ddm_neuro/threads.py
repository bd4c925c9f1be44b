"""How many CPU threads the numerical libraries use.

Torch and the BLAS behind numpy start one spinning worker thread per core by
default. For this project's work (networks of a few hundred to a few thousand
neurons, advanced one small time step at a time) that is slower than one
thread even on a quiet machine, and many times slower when another program is
busy on the same cores: the workers spin against it at every step
(``benchmarks/threads.py`` measures both). So the command line runs on one
thread unless ``--threads K`` (or ``DDM_NEURO_THREADS=K``) asks for more, and
Python users choose with :func:`set_threads`.
"""
from __future__ import annotations

import operator
import os
import sys

from .errors import DDMError

#: Environment variable that sets the command line's default thread count.
ENV = "DDM_NEURO_THREADS"
#: Thread count when neither ``--threads`` nor :data:`ENV` says otherwise.
DEFAULT_THREADS = 1
_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_IN_FORCE = []  # the count last set by configure_threads or set_threads


def threads_in_force():
    """The thread count simulators use when a run does not name one.

    The count last set by :func:`configure_threads` (the command line) or
    :func:`set_threads`; before either, :func:`default_threads` (1 unless
    :data:`ENV` says otherwise), so a compiled step loop or a Brian2 C++
    build never starts threads nobody asked for.

    Returns
    -------
    int
    """
    return _IN_FORCE[-1] if _IN_FORCE else default_threads()


def check_threads(k_given):
    """``k`` as a thread count, or a :class:`DDMError` naming what is wrong.

    Parameters
    ----------
    k_given : int

    Returns
    -------
    int
    """
    k = k_given
    try:
        k = operator.index(k) if not isinstance(k, bool) else None
    except TypeError:
        k = None
    if k is None:
        raise DDMError(f"threads must be a positive integer, got {k_given!r}")
    if k < 1:
        raise DDMError(f"threads must be at least 1, got {k}")
    return k


def default_threads():
    """The command line's thread count: :data:`ENV` when set, else :data:`DEFAULT_THREADS`.

    Raises
    ------
    DDMError
        When :data:`ENV` is set to something other than a positive integer.
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        value = int(text)
    except ValueError:
        raise DDMError(f"{ENV}={text!r}: expected a positive integer number of threads") from None
    if value < 1:
        raise DDMError(f"{ENV}={text!r}: expected a positive integer number of threads")
    return value


def configure_threads(k=None):
    """The command line's thread setting: ``--threads K``, else :data:`ENV`, else ``OMP_NUM_THREADS``, else 1.

    Sets the OpenMP/BLAS variables, which torch and numpy read when they are
    loaded (the command line calls this before loading them), and torch's
    own setting when torch is loaded already.

    Parameters
    ----------
    k : int, optional
        Threads asked for on the command line.

    Returns
    -------
    int
        The thread count in force.
    """
    if k is None:
        omp = os.environ.get("OMP_NUM_THREADS", "").strip()
        k = int(omp) if not os.environ.get(ENV, "").strip() and omp.isdigit() and int(omp) > 0 \
            else default_threads()
    k = check_threads(k)
    for name in _BLAS_VARS:
        os.environ[name] = str(k)
    _IN_FORCE.append(k)
    if "torch" in sys.modules:
        set_threads(k)
    return k


def set_threads(k=None):
    """Use ``k`` intra-op threads in torch (default :func:`default_threads`).

    Parameters
    ----------
    k : int, optional
        Number of threads, at least 1.

    Returns
    -------
    int
        The number of threads torch now uses.
    """
    import torch

    k = default_threads() if k is None else check_threads(k)
    _IN_FORCE.append(k)
    torch.set_num_threads(k)
    return torch.get_num_threads()
