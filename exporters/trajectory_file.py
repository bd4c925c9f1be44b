"""The trajectory file of an exported project's ``run.py``: checked before a run, written atomically.

Needs only numpy and the standard library: it is copied into every exported
project (Brian2, NEST) as ``trajectory_file.py``. The format is ddm_neuro's
trajectory (``t``, ``z``, ``dt``, ``meta`` as JSON; optional ``spikes_t`` in
SDE units and ``spikes_i``), which ``ddm-neuro verify`` reads.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def check_output(path, force=False):
    """Refuse an output that exists (unless ``force``), is a folder, or lies in a missing folder.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is not set.
    OSError
        ``path`` is a folder, or its folder is missing or not writable.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; the output is a file (.npz)")
    if os.path.lexists(path) and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: folder {parent} is not writable")


def write_trajectory(path, t, z, dt, meta, force=False, spikes=None):
    """Write ddm_neuro's trajectory format (``t``, ``z``, ``dt``, ``meta`` JSON; optional
    ``spikes_t`` in SDE units, ``spikes_i``), atomically.

    The file is written under a unique temporary name in the same folder and
    renamed into place; on any failure or interruption the temporary file is
    removed and ``path`` is untouched.
    """
    check_output(path, force)
    extra = {} if spikes is None else {"spikes_t": np.asarray(spikes[0], dtype=np.float64),
                                       "spikes_i": np.asarray(spikes[1], dtype=np.int64)}
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, t=t, z=z, dt=np.float64(dt), meta=np.array(json.dumps(meta)), **extra)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
