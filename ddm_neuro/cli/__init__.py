"""The ``ddm-neuro`` command line (DESIGN §5): argument parsing and printing; the rules live in the library.

User mistakes end as one line on stderr and exit status 2; ``verify`` exits 1
when a metric fails; Ctrl-C exits 130 and SIGTERM 143, after the clean-ups.
"""
from __future__ import annotations

import signal
import sys

from ..errors import DDMError
from ..threads import configure_threads
from .parser import build_parser

__all__ = ["main", "build_parser"]


def _close_progress_bars():
    """End the progress bars an interruption left open, so the last line printed is ours."""
    tqdm = sys.modules.get("tqdm.std")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up (temporary files, child processes) runs."""


def _terminate_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` in the main thread; returns the previous handler (or None)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


def main(argv=None):
    """Entry point of ``ddm-neuro``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, 1 (a failed verification), 2 (bad input), 130 (Ctrl-C), 143 (SIGTERM).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    previous = _terminate_as_interrupt()
    try:
        configure_threads(getattr(args, "threads", None))
        return args.func(args)
    except DDMError as exc:
        _close_progress_bars()
        print(f"ddm-neuro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder that became unwritable, ...: the machine's, not ours
        _close_progress_bars()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"ddm-neuro {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        _close_progress_bars()
        print("ddm-neuro: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        _close_progress_bars()
        print("ddm-neuro: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
