"""Writing files atomically: nothing half-written, nothing overwritten without force."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DDMError, OutputExistsError


def check_output(path, force=False):
    """Refuse an existing output path unless ``force``; check the folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DDMError(f"{path}: folder {parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_write(path, force=False, mode="wb"):
    """Open a temporary file beside ``path``; move it into place only on success."""
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, force=False):
    """Build a directory under a temporary name; rename it into place only on success."""
    path = check_output(path, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent or "."))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
