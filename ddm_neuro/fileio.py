"""Reading and writing files safely.

Writing is atomic (a temporary file or folder beside the output, renamed into
place on success): nothing is half-written, and nothing is overwritten without
``force``. Reading an ``.npz`` archive (:func:`open_npz`) never unpickles, and
checks what the archive declares before any array is decompressed: a regular
file, a zip archive, numeric arrays whose ``.npy`` headers agree with the
archive's member sizes, and at most :data:`MAX_INFLATED_BYTES` of data beyond
the file's own size (a small file that inflates to gigabytes is refused).
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import DDMError, OutputExistsError

#: Most bytes the arrays of one archive may inflate to beyond the archive's own size (4 GiB).
#: Uncompressed members (trajectory files) never count; a compressed model with a dense
#: N x N ``w_perp`` at N = 10 000 inflates by at most 0.8 GB. The environment variable
#: ``DDM_NEURO_MAX_INFLATED_BYTES`` raises or lowers it.
MAX_INFLATED_BYTES = 4 * 2 ** 30
_ENV_CAP = "DDM_NEURO_MAX_INFLATED_BYTES"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_NPY_MAGIC = b"\x93NUMPY"
#: dtype kinds an archive member may hold: bool, integers, floats and (0-d JSON) strings.
_KINDS = "biufU"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _kind_of(path):
    """``"file"``, ``"dir"``, ``"other"`` (device, FIFO, socket) or None when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if exc.errno == errno.ELOOP:
            raise DDMError(f"{path}: a symbolic link loop") from None
        raise DDMError(f"{path}: cannot check it ({exc.strerror})") from None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def check_output(path, force=False, kind="file"):
    """Refuse an output that cannot or may not be written, before any work is done.

    Parameters
    ----------
    path : str or Path
        The file or folder to write.
    force : bool
        Allow replacing an existing output of the right kind.
    kind : {"file", "dir"}
        What will be written at ``path``. An existing output of the other kind
        (a folder where a file goes, a file where a folder goes) or a device,
        FIFO or socket is refused even with ``force``.

    Returns
    -------
    Path

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is not set.
    DDMError
        Wrong kind of existing output, missing or unwritable folder.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path)
    found = _kind_of(path)
    if found == "other":
        raise DDMError(f"{path}: exists and is not a regular file or folder (a device, FIFO or socket); "
                       "choose another output name")
    if found is not None and found != kind:
        what = "a folder" if found == "dir" else "a file"
        goes = "a file" if kind == "file" else "a folder"
        raise DDMError(f"{path}: exists and is {what}, but the output is {goes}; choose another name "
                       f"(--force replaces only {goes})")
    if found is not None and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    parent_kind = _kind_of(parent)
    if parent_kind is None:
        raise DDMError(f"{path}: folder {parent} does not exist")
    if parent_kind != "dir":
        raise DDMError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DDMError(f"{path}: folder {parent} is not writable")
    return path


def _replace(tmp, path):
    try:
        os.replace(tmp, path)
    except OSError as exc:  # the output changed kind after check_output (a folder appeared, ...)
        raise DDMError(f"{path}: cannot put the output in place ({exc.strerror})") from None


@contextlib.contextmanager
def atomic_write(path, force=False, mode="wb"):
    """Open a temporary file beside ``path``; move it into place only on success.

    Parameters
    ----------
    path : str or Path
    force : bool
        Replace an existing file (never a folder).
    mode : str
        Mode of the temporary file (``"wb"``, ``"w"``, ``"w+b"``).

    Yields
    ------
    file object
    """
    path = check_output(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise DDMError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        if _kind_of(path) not in (None, "file"):
            check_output(path, force)  # changed kind while we wrote: the same message as up front
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, force=False):
    """Build a directory under a temporary name; rename it into place only on success.

    Parameters
    ----------
    path : str or Path
    force : bool
        Replace an existing folder (never a file).

    Yields
    ------
    Path
        The temporary folder to fill.
    """
    path = check_output(path, force, kind="dir")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent or "."))
    except OSError as exc:
        raise DDMError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        found = _kind_of(path)
        if found not in (None, "dir"):
            check_output(path, force, kind="dir")
        if path.is_symlink():
            path.unlink()  # --force replaces the link, never the folder it points to
        elif found == "dir":
            shutil.rmtree(path)
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def inflation_cap():
    """The cap on inflated bytes: ``DDM_NEURO_MAX_INFLATED_BYTES`` if set, else :data:`MAX_INFLATED_BYTES`."""
    text = os.environ.get(_ENV_CAP)
    if text is None:
        return MAX_INFLATED_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise DDMError(f"{_ENV_CAP}={text!r} is not a number of bytes") from None
    return value


def _gib(n):
    if n >= 2 ** 30:
        return f"{n / 2 ** 30:.3g} GiB"
    return f"{n / 2 ** 20:.3g} MiB" if n >= 2 ** 20 else f"{n} bytes"


class NpzArchive:
    """A checked ``.npz`` archive: members by name, their declared shape and dtype, arrays on demand.

    Made by :func:`open_npz`; every ``.npy`` header has been read and checked
    before any array data is decompressed.

    Attributes
    ----------
    files : list of str
        Array names (without ``.npy``).
    """

    def __init__(self, npz, headers):
        self._npz = npz
        self._headers = headers
        self.files = [name for name in npz.files if name in headers]

    def __contains__(self, name):
        return name in self._headers

    def __getitem__(self, name):
        if name not in self._headers:
            raise KeyError(name)
        return self._npz[name]

    def shape(self, name):
        """Declared shape of array ``name`` (read from its header, no data)."""
        return self._headers[name][0]

    def dtype(self, name):
        """Declared dtype of array ``name``."""
        return self._headers[name][1]


def _read_npy_header(fh):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _inspect(zf, path, error, what, size):
    """Check every member's declared size and ``.npy`` header; return ``{name: (shape, dtype)}``."""
    members = zf.infolist()
    inflated = sum(max(0, m.file_size - m.compress_size) for m in members)
    cap = inflation_cap()
    if inflated > cap:
        total = sum(m.file_size for m in members)
        raise error(f"{path}: refused: its arrays would inflate to {_gib(total)} from {_gib(size)} on disk, "
                    f"more than the {_gib(cap)} a {what} may add when decompressed (a zip bomb?); "
                    f"set {_ENV_CAP} to allow more")
    headers = {}
    for m in members:
        if not m.filename.endswith(".npy"):
            continue
        name = m.filename[:-4]
        with zf.open(m) as fh:
            shape, fortran, dtype = _read_npy_header(fh)
            start = fh.tell()
        if dtype.hasobject:
            raise error(f"{path}: not a readable {what} (array {name!r} holds Python objects, "
                        "which are never loaded)")
        if dtype.kind not in _KINDS or dtype.fields is not None:
            raise error(f"{path}: array {name!r} has dtype {dtype}; only real numbers and text are read")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > m.file_size - start:
            raise error(f"{path}: array {name!r} declares shape {shape} ({_gib(nbytes)}) but the archive holds "
                        f"{_gib(max(0, m.file_size - start))} for it (truncated or forged)")
        headers[name] = (tuple(shape), dtype)
    return headers


def _open_regular(path, error, what):
    """Open ``path`` for reading if it is a regular file (never blocking on a FIFO)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{path}: a symbolic link loop, not a {what}") from None
        if exc.errno == errno.ENOTDIR:
            raise error(f"{path}: no such {what}") from None
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a device, FIFO or socket), not a {what}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the stat
        fh.close()
        raise error(f"{path}: not a regular file, not a {what}")
    return fh


@contextlib.contextmanager
def open_npz(path, error, what):
    """Open an ``.npz`` without pickle; any failure becomes one ``error`` line naming ``path``.

    Before anything is decompressed the file must be a regular file holding a
    zip archive whose ``.npy`` members have numeric (or string) dtypes and
    headers that agree with the members' sizes, inflating by at most
    :func:`inflation_cap` bytes in all.

    Parameters
    ----------
    path : Path
    error : type
        The :class:`DDMError` subclass to raise.
    what : str
        "model file", "trajectory file", ... for messages.

    Yields
    ------
    NpzArchive
    """
    path = Path(path)
    fh = _open_regular(path, error, what)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        fh.seek(0)
        if head.startswith(_NPY_MAGIC):
            raise error(f"{path}: not a {what} (a single numpy array, not an .npz archive)")
        if not head.startswith(_ZIP_MAGIC):
            kind = ("empty" if not head else "a Python pickle, which is never loaded" if head[:1] == b"\x80"
                    else "not a zip archive")
            raise error(f"{path}: not a readable {what} ({kind})")
        try:
            with zipfile.ZipFile(fh) as zf:
                headers = _inspect(zf, path, error, what, size)
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                yield NpzArchive(data, headers)
        except DDMError:
            raise
        except Exception as exc:  # zip, zlib, numpy header, JSON, ...: all mean "not readable"
            text = str(exc) or type(exc).__name__
            reason = ("it holds Python objects, which are never loaded" if "pickle" in text
                      else f"{type(exc).__name__}: {text.splitlines()[0][:120]}")
            raise error(f"{path}: not a readable {what} (truncated, corrupt or another format: {reason})") from None


def cache_dir(name):
    """Folder ``name`` of compiled builds: under ``$DDM_NEURO_CACHE``, else ``~/.cache/ddm_neuro`` (not created).

    Parameters
    ----------
    name : str
        The kind of build (``"step_loops"``, ``"brian2_cpp"``).

    Returns
    -------
    Path
    """
    root = os.environ.get("DDM_NEURO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ddm_neuro")
    return Path(root) / name
