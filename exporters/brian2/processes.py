"""Child processes of builds and runs, and SIGTERM: nothing left running, nothing left behind.

Needs only the standard library: it is copied into every exported project
(``processes.py``, beside ``network.py`` and ``run.py``).

* :func:`run_group` runs a command (``make``, the compiled binary) in a
  process group of its own and, if the caller is interrupted (Ctrl-C,
  SIGTERM, a timeout), ends the whole group: ``make``'s ``g++`` children too,
  which a plain ``subprocess.run`` would leave running (it kills only the
  direct child).
* :func:`terminate_as_interrupt` makes SIGTERM raise :class:`Terminated`, a
  :class:`KeyboardInterrupt`, so that the same clean-up as for Ctrl-C runs
  (temporary folders removed, children ended). It is installed only where
  SIGTERM still has its default action (an application's own handler, such
  as the ``ddm-neuro`` command line's, is left in charge) and only in the
  main thread.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

#: Seconds the group has after SIGTERM (compilers remove their temporary files) before SIGKILL.
GRACE_SECONDS = 2.0


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised like Ctrl-C so that every clean-up runs (``signum`` is SIGTERM)."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread.

    Only the first SIGTERM raises; later ones are ignored while the block is
    active, so that the clean-up the first one started is not cut short. The
    previous handler is restored on exit. Where SIGTERM already has a handler
    (or is ignored), or outside the main thread, nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def group_members(pgid):
    """Process ids of the live (not zombie) members of process group ``pgid``; None without ``/proc``."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def _group_gone(proc, pgid):
    if proc.poll() is None:
        return False
    members = group_members(pgid)
    if members is not None:
        return not members
    try:  # no /proc: ask the kernel (zombies count as members there)
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def end_group(proc, grace=GRACE_SECONDS):
    """End the process group led by ``proc`` (started by :func:`run_group`): SIGTERM, then SIGKILL.

    Each signal goes to every member (``make`` and its compilers alike); after
    SIGTERM the members have ``grace`` seconds to exit (``g++`` removes its
    temporary files) before SIGKILL. Returns once ``proc`` is reaped and no
    live member is left, or ``grace`` seconds after SIGKILL.
    """
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while not _group_gone(proc, pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _group_gone(proc, pgid):
            break
    with contextlib.suppress(Exception):
        proc.wait(timeout=grace)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def run_group(args, *, cwd=None, timeout=None, env=None):
    """Run ``args`` in a new process group and wait; ``(returncode, stdout, stderr)`` as text.

    ``env``: the child's environment (default: this process's). On any
    exception while waiting (KeyboardInterrupt, :class:`Terminated`,
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds) the whole group is
    ended (:func:`end_group`) before the exception propagates.
    """
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        end_group(proc)
        raise
    return proc.returncode, out, err
