"""Progress for work that cannot count its own steps (a compiler, a compiled binary)."""
from __future__ import annotations

import contextlib
import threading
import time

from tqdm.auto import tqdm


@contextlib.contextmanager
def ticking(desc, enabled=True, expected=None, interval=0.5):
    """Show a progress bar that advances with the wall clock while the block runs.

    Parameters
    ----------
    desc : str
        What is running, e.g. ``"brian2-cpp: compiling"``.
    enabled : bool
        False: no bar, no thread.
    expected : float, optional
        Seconds the work usually takes: the bar then shows a share and a time
        left (capped just below 100 % until the work ends); without it, only the
        elapsed time.
    interval : float
        Seconds between updates.

    Yields
    ------
    None
    """
    if not enabled:
        yield
        return
    total = float(expected) if expected else None
    fmt = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} (usually about " + f"{total:.0f} s)" if total
           else "{desc}: {elapsed}")
    bar = tqdm(total=total, desc=desc, bar_format=fmt, dynamic_ncols=True)
    done = threading.Event()
    t0 = time.perf_counter()

    def tick():
        while not done.wait(interval):
            elapsed = time.perf_counter() - t0
            bar.n = min(elapsed, 0.99 * total) if total else elapsed
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
        if total:
            bar.n = total
    finally:
        done.set()
        thread.join()
        bar.close()
