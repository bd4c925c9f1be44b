"""Writing files atomically: nothing half-written, nothing overwritten without force."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import DDMError, OutputExistsError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path, force=False):
    """Refuse an existing output path unless ``force``; check the folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DDMError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DDMError(f"{path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path, force=False, mode="wb"):
    """Open a temporary file beside ``path``; move it into place only on success."""
    path = check_output(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise DDMError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, force=False):
    """Build a directory under a temporary name; rename it into place only on success."""
    path = check_output(path, force)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent or "."))
    except OSError as exc:
        raise DDMError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def open_npz(path, error, what):
    """Open an ``.npz`` without pickle; any failure becomes one ``error`` line naming ``path``.

    Parameters
    ----------
    path : Path
    error : type
        The :class:`DDMError` subclass to raise.
    what : str
        "model file", "trajectory file", ... for messages.
    """
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise error(f"{path}: not a {what} (a single numpy array, not an .npz archive)")
        with data:
            yield data
    except DDMError:
        raise
    except Exception as exc:  # zip, zlib, numpy header, JSON, ...: all mean "not readable"
        text = str(exc) or type(exc).__name__
        reason = ("it holds Python objects, which are never loaded" if "pickle" in text
                  else f"{type(exc).__name__}: {text.splitlines()[0][:120]}")
        raise error(f"{path}: not a readable {what} (truncated, corrupt or another format: {reason})") from None
