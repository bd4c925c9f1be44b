"""The ``ddm-neuro`` command line (DESIGN §5): parsing and printing; what to run is the library's.

Exit status: 0; 1 when ``verify`` finds a failing metric; 2 for a user mistake
(one line on stderr); 130 on Ctrl-C and 143 on SIGTERM, after the clean-ups.
"""
from __future__ import annotations

import signal
import sys
import threading

from ..errors import DDMError
from ..threads import configure_threads
from .parser import build_parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up (temporary files, child processes) runs."""


def _terminated(signum, frame):
    raise Terminated()


def main(argv=None):
    """Run ``ddm-neuro``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0; 1 when ``verify`` finds a failing metric; 2 for a user mistake; 130, 143: interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
    try:
        configure_threads(getattr(args, "threads", None))
        return args.func(args) or 0
    except (DDMError, OSError) as exc:  # OSError: a full disk, an unwritable folder...: the machine's, not ours
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        message, status = f"ddm-neuro {args.command}: error: {where}{getattr(exc, 'strerror', None) or exc}", 2
    except KeyboardInterrupt as exc:
        message, status = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        message = f"ddm-neuro: {message}"
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    bars = sys.modules.get("tqdm.std")  # close the bars left open, so that the last line printed is ours
    for bar in list(getattr(getattr(bars, "tqdm", None), "_instances", ())):
        bar.close()
    print(message, file=sys.stderr)
    return status
