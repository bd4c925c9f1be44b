"""Model files (``.ddm``, DESIGN §4): exact round trips, and one clear ModelFileError for bad files."""
import json
import shutil
import tokenize
import zlib

import numpy as np
import pytest

from ddm_neuro.errors import DDMError, ModelFileError, OutputExistsError, SpecError
from ddm_neuro.modelio import ARRAYS, FORMAT, FORMAT_VERSION, model_id
from ddm_neuro.network import LatentRNN


def read_raw(path):
    """All arrays of a model file and its decoded header."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop("__meta__").tobytes().decode())
    return arrays, header


def write_raw(path, arrays, header=None, meta_array=None):
    """A hand-made model file (plain ``np.savez``)."""
    if meta_array is None and header is not None:
        meta_array = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    extra = {} if meta_array is None else {"__meta__": meta_array}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays, **extra)
    return path


def refused(path):
    with pytest.raises(ModelFileError) as info:
        LatentRNN.load(path)
    return str(info.value)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trips
def assert_same_model(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.array_equal(x, y), name
    assert (a.w_perp is None) == (b.w_perp is None)
    if a.w_perp is not None:
        np.testing.assert_array_equal(a.w_perp, b.w_perp)
    assert a.neuron.to_dict() == b.neuron.to_dict()
    assert a.tau == b.tau and a.time_scale == b.time_scale
    assert list(a.variables) == list(b.variables) and list(a.inputs) == list(b.inputs)
    assert a.sde_spec == b.sde_spec and a.meta == b.meta


def test_round_trip_is_exact(small_model_fitted, small_model_path):
    loaded = LatentRNN.load(small_model_path)
    assert_same_model(small_model_fitted, loaded)
    assert loaded.meta["model_id"] == model_id(loaded) == model_id(small_model_fitted)
    assert loaded.meta["sde_name"] == "ou" and loaded.meta["seed"] == 3
    assert loaded.meta["fit"]["config"]["n_neurons"] == 32
    z = loaded.init_states[:5]
    np.testing.assert_array_equal(loaded.latent_drift(z), small_model_fitted.latent_drift(z))
    np.testing.assert_array_equal(loaded.sde().drift(z), small_model_fitted.sde().drift(z))
    np.testing.assert_allclose(loaded.sde().drift(z), -z, rtol=1e-12)  # OU with k = 1


def test_save_again_gives_the_same_model(small_model, tmp_path):
    path = tmp_path / "again.ddm"
    small_model.save(path)
    again = LatentRNN.load(path)
    assert_same_model(small_model, again)
    assert listing(tmp_path) == ["again.ddm"]


def test_file_layout_is_arrays_and_json(small_model_path):
    arrays, header = read_raw(small_model_path)
    assert set(ARRAYS) <= set(arrays)
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert header["format"] == FORMAT and header["version"] == FORMAT_VERSION
    assert header["variables"] == ["x", "y"] and header["sde_spec"]["spec"]["name"] == "ou"


def test_refuses_to_overwrite_without_force(small_model, tmp_path):
    path = tmp_path / "m.ddm"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists"):
        small_model.save(path)
    assert path.read_bytes() == b"precious"
    small_model.save(path, force=True)
    assert_same_model(small_model, LatentRNN.load(path))


def test_failed_write_leaves_no_temporary_file(small_model, tmp_path, monkeypatch):
    path = tmp_path / "m.ddm"
    path.write_bytes(b"precious")

    def broken(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError):
        small_model.save(path, force=True)
    assert listing(tmp_path) == ["m.ddm"] and path.read_bytes() == b"precious"


# --------------------------------------------------------------------------- bad files
def test_truncated_file(small_model_path, tmp_path):
    path = tmp_path / "cut.ddm"
    raw = small_model_path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    msg = refused(path)
    assert msg.startswith(f"{path}: not a readable model file (truncated, corrupt")


def test_newer_format_version(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    path = write_raw(tmp_path / "new.ddm", arrays, dict(header, version=999))
    assert refused(path) == (f"{path}: model format version 999 is newer than this ddm_neuro reads "
                             f"({FORMAT_VERSION}); upgrade ddm_neuro")


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", np.random.default_rng(0).bytes(2000)],
                         ids=["empty", "text", "random"])
def test_not_a_zip_file(tmp_path, content):
    path = tmp_path / "m.ddm"
    path.write_bytes(content)
    assert refused(path).startswith(f"{path}: not a readable model file")


def test_not_a_zip_file_message_does_not_suggest_unpickling(tmp_path):
    path = tmp_path / "m.ddm"
    path.write_text("hello, I am a text file\n")
    assert "allow_pickle" not in refused(path)


def test_npz_that_is_not_a_model(tmp_path):
    path = tmp_path / "traj.npz"
    np.savez(path, t=np.arange(3.0), z=np.zeros((1, 3, 2)), dt=1.0, meta=np.array("{}"))
    assert refused(path) == f"{path}: not a ddm_neuro model file (no metadata)"


def test_npz_with_foreign_metadata(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    path = write_raw(tmp_path / "other.ddm", arrays, dict(header, format="someone.else"))
    assert refused(path) == f"{path}: not a ddm_neuro model file"
    path2 = write_raw(tmp_path / "notjson.ddm", arrays, meta_array=np.frombuffer(b"{oops", dtype=np.uint8))
    assert refused(path2).startswith(f"{path2}: not a readable model file")


def test_missing_and_misshapen_arrays(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    fewer = {k: v for k, v in arrays.items() if k != "decoders"}
    assert refused(write_raw(tmp_path / "a.ddm", fewer, header)).endswith("model file lacks arrays ['decoders']")
    bent = dict(arrays, bias=arrays["bias"][:-1])
    assert refused(write_raw(tmp_path / "b.ddm", bent, header)).endswith("array bias has shape (31,), expected (32,)")


def test_incomplete_metadata(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    del header["tau"]
    path = write_raw(tmp_path / "m.ddm", arrays, header)
    assert refused(path) == f"{path}: model metadata lacks 'tau'"


def test_missing_file(tmp_path):
    assert refused(tmp_path / "nope.ddm") == f"{tmp_path / 'nope.ddm'}: no such model file"
    assert refused(tmp_path) == f"{tmp_path}: is a folder, not a model file"


class _Touch:
    """Unpickling this creates a file: proof that a loader unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["encoders", "__meta__"])
def test_object_arrays_are_refused_without_unpickling(small_model_path, tmp_path, where):
    arrays, header = read_raw(small_model_path)
    marker = tmp_path / "PWNED"
    evil = np.array([_Touch(marker)], dtype=object)
    if where == "__meta__":
        path = write_raw(tmp_path / "evil.ddm", arrays, meta_array=evil)
    else:
        path = write_raw(tmp_path / "evil.ddm", dict(arrays, encoders=evil), header)
    assert "not a readable model file" in refused(path)
    assert not marker.exists()


def test_load_never_allows_pickle(small_model_path, monkeypatch):
    calls = []
    real = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", "default"))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    LatentRNN.load(small_model_path)
    assert calls and all(c is False for c in calls)


def test_code_in_an_embedded_spec_never_runs(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    marker = tmp_path / "PWNED"
    header["sde_spec"]["spec"]["drift"]["x"] = f"__import__('os').system('touch {marker}')"
    path = write_raw(tmp_path / "evil.ddm", arrays, header)
    model = LatentRNN.load(path)  # arrays are fine; the spec is only parsed when the SDE is rebuilt
    with pytest.raises(SpecError, match=r"drift\.x: unknown function"):
        model.sde()
    assert not marker.exists()


def test_plain_npy_file_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros(3))
    refused(path)


def test_corrupt_compressed_member_is_refused(small_model_path, tmp_path, corrupt_deflate):
    path = tmp_path / "m.ddm"
    shutil.copy(small_model_path, path)
    corrupt_deflate(path, "encoders.npy")
    assert "not a readable model file" in refused(path)


def test_unparsable_array_header_is_refused(small_model_path, tmp_path, npz_with_bad_header):
    arrays, header = read_raw(small_model_path)
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    del arrays["bias"]
    path = tmp_path / "m.ddm"
    npz_with_bad_header(path, arrays, "bias")
    assert "not a readable model file" in refused(path)


def test_unknown_neuron_model_names_the_file(small_model_path, tmp_path):
    arrays, header = read_raw(small_model_path)
    path = write_raw(tmp_path / "m.ddm", arrays, dict(header, neuron={"name": "izhikevich"}))
    msg = refused(path)
    assert str(path) in msg and "izhikevich" in msg
