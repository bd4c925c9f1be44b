"""Shared fixtures: one small fitted model per test session.

Fitting is the expensive step (seconds even for a few dozen neurons), so the
file-format and command-line tests share one closed-form fit (``steps=0``) of
the 2-D Ornstein-Uhlenbeck built-in, saved once to a session folder. Tests that
modify a model file copy it first; nobody writes to the shared one.
"""
import pytest
import torch

# The tests' networks are small: one thread is fastest, and several oversubscribe a shared
# machine's cores (a 60-neuron spiking run took 20x longer with two threads under load).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _build_cache(tmp_path_factory):
    """Compiled Brian2 builds go to a per-session folder, never the user's cache."""
    import os

    old = os.environ.get("DDM_NEURO_CACHE")
    os.environ["DDM_NEURO_CACHE"] = str(tmp_path_factory.mktemp("ddm_cache"))
    yield
    if old is None:
        os.environ.pop("DDM_NEURO_CACHE", None)
    else:
        os.environ["DDM_NEURO_CACHE"] = old


@pytest.fixture(scope="session")
def _small_fit(tmp_path_factory):
    from ddm_neuro.fit.matching import fit
    from ddm_neuro.sde.systems import get_system

    model = fit(get_system("ou"), n_neurons=32, steps=0, n_train=3000, n_val=1000, n_test=500,
                n_noise=100, seed=3, progress=False)
    path = tmp_path_factory.mktemp("small_model") / "ou_small.ddm"
    model.save(path)
    return model, path


@pytest.fixture(scope="session")
def small_model_path(_small_fit):
    """Path of a small fitted model file (OU, N = 32, closed form only). Read-only."""
    return _small_fit[1]


@pytest.fixture(scope="session")
def coordinated_small(small_model_path):
    """The small model as a spike-coordinated network of 200 neurons, delta tuned to 70 Hz on pilots recorded every
    0.05 time units: ``(basis, model, facts)`` (:func:`ddm_neuro.spiking.coordinated.tune_delta`). Read-only."""
    from ddm_neuro.network import LatentRNN
    from ddm_neuro.spiking.coordinated import tune_delta

    basis = LatentRNN.load(small_model_path)
    model, facts = tune_delta(basis, 200, rate_hz=70.0, seed=1, record_dt=0.05)
    return basis, model, facts


@pytest.fixture
def small_model_fitted(_small_fit):
    """A deep copy of the model as :func:`ddm_neuro.fit.fit` returned it (after saving)."""
    import copy

    return copy.deepcopy(_small_fit[0])


@pytest.fixture
def small_model(small_model_path):
    """A fresh in-memory copy of the small model (safe to modify)."""
    from ddm_neuro.network import LatentRNN

    return LatentRNN.load(small_model_path)


def _corrupt_deflate(path, member):
    """Make ``member``'s compressed data an invalid deflate stream (length and CRC untouched)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise ValueError(f"{member} is not compressed")
    raw = bytearray(path.read_bytes())
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])
    raw[off + 30 + name_len + extra_len] = 0xFF  # BFINAL=1, BTYPE=11: reserved block type
    path.write_bytes(bytes(raw))


def _npz_with_bad_header(path, arrays, bad):
    """Write an uncompressed npz holding ``arrays`` plus ``bad``.npy whose .npy header is unparsable."""
    import io
    import struct
    import zipfile

    import numpy as np

    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, }"
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            zf.writestr(name + ".npy", buf.getvalue())
        zf.writestr(bad + ".npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                    + np.zeros(3).tobytes())


@pytest.fixture
def corrupt_deflate():
    """``corrupt_deflate(path, member)``: break one compressed member of a zip in place."""
    return _corrupt_deflate


@pytest.fixture
def npz_with_bad_header():
    """``npz_with_bad_header(path, arrays, bad)``: an npz with one unparsable .npy header."""
    return _npz_with_bad_header
