"""Hostile input files: each bad model, trajectory or output path ends in one clear line, nothing written.

Every case starts from the session's small fitted model (or a small valid
trajectory) and breaks one thing: an array, a metadata field, the zip
container, or the kind of file at the path.
"""
import io
import json
import os
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from ddm_neuro import fileio
from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError, ModelFileError, OutputExistsError, TrajectoryError
from ddm_neuro.fileio import atomic_directory, atomic_write, check_output
from ddm_neuro.network import LatentRNN
from ddm_neuro.trajectory import Trajectory


# --------------------------------------------------------------------------- helpers
def read_model(path):
    """``(arrays, header)`` of a model file."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(arrays.pop("__meta__").tobytes().decode())


def rewrite_model(src, dest, arrays=None, header=None, drop=(), compress=True):
    """Copy the model file ``src`` to ``dest``, replacing some arrays and header fields."""
    old_arrays, old_header = read_model(src)
    arrays = {k: v for k, v in {**old_arrays, **(arrays or {})}.items() if k not in drop}
    header = {k: v for k, v in {**old_header, **(header or {})}.items() if k not in drop}
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(dest, "wb") as fh:  # a handle: np.savez would append ".npz" to a path
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return dest


def refused_model(path):
    with pytest.raises(ModelFileError) as info:
        LatentRNN.load(path)
    return str(info.value)


def write_traj(path, **changes):
    """A valid trajectory file (2 trials x 300 samples x 2 dims), with arrays replaced or removed (None)."""
    arrays = {"t": np.arange(300) * 0.1, "z": np.random.default_rng(0).normal(size=(2, 300, 2)),
              "dt": np.float64(0.1), "meta": np.array(json.dumps({"backend": "torch", "n_neurons": 32}))}
    arrays.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v for k, v in arrays.items() if v is not None})
    return path


def refused_traj(path):
    with pytest.raises(TrajectoryError) as info:
        Trajectory.load(path)
    return str(info.value)


def npy_bytes(shape, descr="<f8", payload=b""):
    """A ``.npy`` file whose header declares ``shape`` but which holds only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def run_cli(argv, capsys):
    """Run the CLI in-process with every warning an error; return ``(status, stderr)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = main(argv)
    return rc, capsys.readouterr().err


def assert_one_line_failure(rc, err, *pieces):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    for piece in pieces:
        assert piece in lines[0], (piece, lines[0])


@pytest.fixture(scope="module")
def parts(small_model_path):
    return read_model(small_model_path)


# --------------------------------------------------------------------------- model values
def _nan_at(a, index):
    a = a.copy()
    a[index] = np.nan
    return a


BAD_ARRAYS = [  # (case, array, new value from the old arrays, message)
    ("encoders_nan", "encoders", lambda a: _nan_at(a["encoders"], (3, 1)),
     "array encoders holds non-finite values (1; first nan at index (3, 1))"),
    ("decoders_inf", "decoders", lambda a: np.where(np.eye(2, 32) > 0, np.inf, a["decoders"]),
     "array decoders holds non-finite values (2; first inf at index (0, 0))"),
    ("bias_nan", "bias", lambda a: _nan_at(a["bias"], 7), "array bias holds non-finite values (1; first nan at index (7,))"),
    ("init_states_nan", "init_states", lambda a: _nan_at(a["init_states"], (0, 0)),
     "array init_states holds non-finite values"),
    ("noise_const_negative", "noise_const", lambda a: np.full(32, -0.5),
     "array noise_const must be >= 0 (noise intensities); neuron 0 has -0.5"),
    ("noise_act_negative", "noise_act", lambda a: np.concatenate([np.zeros(31), [-1e-3]]),
     "array noise_act must be >= 0 (noise intensities); neuron 31 has -0.001"),
    ("noise_latent_nan", "noise_latent", lambda a: np.full((2, 2), np.nan), "array noise_latent holds non-finite values"),
    ("scale_zero", "scale", lambda a: np.zeros(2), "array scale must be nonzero"),
    ("bias_strings", "bias", lambda a: np.array(["0.1"] * 32), "array bias has dtype <U3, not numbers"),
    ("encoders_complex", "encoders", lambda a: a["encoders"].astype(complex),
     "array 'encoders' has dtype complex128; only real numbers and text are read"),
    ("bias_bool", "bias", lambda a: np.ones(32, dtype=bool), "array bias has dtype bool, not numbers"),
    ("bias_short", "bias", lambda a: a["bias"][:-1], "array bias has shape (31,), expected (32,)"),
    ("decoders_transposed", "decoders", lambda a: a["decoders"].T, "array decoders has shape (32, 2), expected (2, 32)"),
    ("encoders_3d", "encoders", lambda a: a["encoders"][:, :, None],
     "array encoders has shape (32, 2, 1), expected (N, 2)"),
    ("noise_latent_3x3", "noise_latent", lambda a: np.zeros((3, 3)), "array noise_latent has shape (3, 3), expected (2, 2)"),
    ("init_states_empty", "init_states", lambda a: np.zeros((0, 2)),
     "array init_states has shape (0, 2), expected (n0, 2) with n0 >= 1"),
    ("w_perp_shape", "w_perp", lambda a: np.zeros((31, 31)), "array w_perp has shape (31, 31), expected (32, 32)"),
    ("w_perp_nan", "w_perp", lambda a: np.full((32, 32), np.nan), "array w_perp holds non-finite values (1024;"),
    ("encoders_huge", "encoders", lambda a: a["encoders"] * 1e300,
     "arrays readout and encoders disagree: readout @ encoders must be the identity (D E = I), but is off by up to"),
    ("readout_edited", "readout", lambda a: a["readout"] * 1.01, "but is off by up to 0.01"),
]


@pytest.mark.parametrize("case, name, make, message", BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_bad_array_values_are_refused(parts, small_model_path, tmp_path, case, name, make, message):
    path = rewrite_model(small_model_path, tmp_path / "bad.ddm", arrays={name: make(parts[0])})
    msg = refused_model(path)
    assert msg.startswith(f"{path}: ") and message in msg, msg


def test_zero_neurons(small_model_path, tmp_path):
    empty = {"encoders": np.zeros((0, 2)), "decoders": np.zeros((2, 0)), "readout": np.zeros((2, 0)),
             "bias": np.zeros(0), "input_weights": np.zeros((0, 0)), "noise_const": np.zeros(0),
             "noise_act": np.zeros(0)}
    path = rewrite_model(small_model_path, tmp_path / "empty.ddm", arrays=empty)
    assert "array encoders has shape (0, 2): N = 0 neurons, but a model needs N >= max(1, d) = 2" in refused_model(path)


BAD_HEADERS = [
    ("tau_nan", {"tau": float("nan")}, "tau must be a finite number > 0 (seconds), got nan"),
    ("tau_zero", {"tau": 0}, "tau must be a finite number > 0 (seconds), got 0.0"),
    ("tau_negative", {"tau": -0.02}, "tau must be a finite number > 0 (seconds), got -0.02"),
    ("tau_inf", {"tau": float("inf")}, "tau must be a finite number > 0 (seconds), got inf"),
    ("tau_string", {"tau": "0.02"}, "tau must be a number of seconds (got '0.02')"),
    ("tau_bool", {"tau": True}, "tau must be a number of seconds (got True)"),
    ("time_scale_nan", {"time_scale": float("nan")}, "time_scale must be a finite number > 0"),
    ("time_scale_zero", {"time_scale": 0.0}, "time_scale must be a finite number > 0"),
    ("time_scale_list", {"time_scale": [1.0]}, "time_scale must be a number of seconds per SDE time unit"),
    ("version_bool", {"version": True}, "model format version True is not an integer"),
    ("version_float", {"version": 1.0}, "model format version 1.0 is not an integer"),
    ("version_string", {"version": "1"}, "model format version '1' is not an integer"),
    ("version_zero", {"version": 0}, "model format version 0 is not a valid version"),
    ("meta_list", {"meta": [1, 2]}, "model metadata 'meta' must be a JSON object (got list)"),
    ("meta_number", {"meta": 3}, "model metadata 'meta' must be a JSON object (got int)"),
    ("variables_string", {"variables": "xy"}, "model metadata 'variables' must be a list of names (got str)"),
    ("variables_numbers", {"variables": [1, 2]}, "model metadata 'variables' must be a list of names"),
    ("variables_three", {"variables": ["x", "y", "w"]}, "array encoders has shape (32, 2), expected (N, 3)"),
    ("inputs_one", {"inputs": ["I"]}, "array input_weights has shape (32, 0), expected (32, 1)"),
    ("neuron_number", {"neuron": 5}, "model metadata 'neuron' must be a name or a JSON object (got int)"),
    ("neuron_unknown", {"neuron": {"name": "izhikevich"}}, "unknown neuron model 'izhikevich'"),
    ("neuron_extra", {"neuron": {"name": "tanh", "gain": 2}}, "neuron model 'tanh': unknown parameter(s) gain"),
    ("lif_tau_m_nan", {"neuron": {"name": "lif", "tau_m": float("nan")}}, "lif: tau_m must be finite (got nan)"),
    ("lif_tau_m_string", {"neuron": {"name": "lif", "tau_m": "fast"}}, "lif: tau_m must be a number (got 'fast')"),
    ("lif_tau_ref_negative", {"neuron": {"name": "lif", "tau_ref": -1}}, "tau_ref >= 0"),
    ("lif_max_rates_short", {"neuron": {"name": "lif", "max_rates": [200]}}, "lif: max_rates must be [low, high]"),
    ("lif_smoothing_zero", {"neuron": {"name": "lif", "smoothing": 0}}, "lif: smoothing must be > 0"),
    ("spec_list", {"sde_spec": [1]}, "embedded SDE spec (sde_spec) is malformed: expected a JSON object or null"),
    ("spec_empty", {"sde_spec": {}}, "embedded SDE spec (sde_spec) is malformed: expected {\"kind\": \"spec\""),
    ("spec_string", {"sde_spec": {"kind": "spec", "spec": "ou"}}, "sde_spec) is malformed"),
    ("spec_variables", {"sde_spec": {"kind": "spec", "spec": {"variables": ["a"], "drift": {}, "diffusion": {}}}},
     "its variables ['a'] are not the model's ['x', 'y']"),
    ("spec_drift_list", {"sde_spec": {"kind": "spec", "spec": {"variables": ["x", "y"], "drift": ["-x", "-y"],
                                                               "diffusion": {}}}}, "'drift' must be a table (got list)"),
]


@pytest.mark.parametrize("case, header, message", BAD_HEADERS, ids=[c[0] for c in BAD_HEADERS])
def test_bad_metadata_is_refused(small_model_path, tmp_path, case, header, message):
    path = rewrite_model(small_model_path, tmp_path / "bad.ddm", header=header)
    msg = refused_model(path)
    assert msg.startswith(f"{path}: ") and message in msg, msg


@pytest.mark.parametrize("header", ["[1, 2, 3]", "3.5", '"text"', "[" * 100000 + "]" * 100000, '{"version": 1e999'],
                         ids=["list", "number", "string", "deep", "broken"])
def test_metadata_that_is_not_an_object(small_model_path, tmp_path, header):
    arrays, _ = read_model(small_model_path)
    path = tmp_path / "bad.ddm"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays, __meta__=np.frombuffer(header.encode(), dtype=np.uint8))
    msg = refused_model(path)
    assert msg in (f"{path}: not a ddm_neuro model file",
                   f"{path}: not a readable model file (its metadata is not JSON)"), msg


def test_metadata_of_the_wrong_dtype(small_model_path, tmp_path):
    arrays, header = read_model(small_model_path)
    path = tmp_path / "bad.ddm"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays, __meta__=np.array(json.dumps(header)))
    assert refused_model(path) == f"{path}: not a readable model file (its metadata is not JSON text)"


def test_valid_model_still_loads_exactly(small_model_path, tmp_path):
    """The rewrite helper itself changes nothing: a rewritten model loads and equals the original."""
    path = rewrite_model(small_model_path, tmp_path / "same.ddm")
    a, b = LatentRNN.load(small_model_path), LatentRNN.load(path)
    assert np.array_equal(a.decoders, b.decoders) and a.meta == b.meta


def test_construction_checks_values_too(small_model):
    """Python users get the same checks when they build a LatentRNN by hand."""
    fields = {**small_model.__dict__}
    with pytest.raises(DDMError, match=r"array noise_act must be >= 0"):
        LatentRNN(**{**fields, "noise_act": -np.ones(32)})
    with pytest.raises(DDMError, match=r"tau must be a finite number > 0 \(seconds\), got nan"):
        LatentRNN(**{**fields, "tau": float("nan")})
    with pytest.raises(DDMError, match=r"array readout has shape \(2, 31\), expected \(2, 32\)"):
        LatentRNN(**{**fields, "readout": small_model.readout[:, :-1]})
    LatentRNN(**{**fields, "noise_latent": -small_model.noise_latent})  # any sign: only L L^T matters


# --------------------------------------------------------------------------- containers and sizes
def test_huge_declared_array_is_refused_before_allocating(small_model_path, tmp_path):
    """An .npy header declaring 1.5e10 doubles (a model with N = 7.5e9) in a file of a few kB."""
    arrays, header = read_model(small_model_path)
    path = tmp_path / "huge.ddm"
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in {**arrays, "__meta__": np.frombuffer(json.dumps(header).encode(), np.uint8)}.items():
            if name == "encoders":
                zf.writestr("encoders.npy", npy_bytes((7_500_000_000, 2), payload=b"\0" * 64))
            else:
                buf = io.BytesIO()
                np.save(buf, value)
                zf.writestr(name + ".npy", buf.getvalue())
    tracemalloc.start()
    try:
        msg = refused_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg == (f"{path}: array 'encoders' declares shape (7500000000, 2) (112 GiB) but the archive holds "
                   "64 bytes for it (truncated or forged)")
    assert peak < 16 * 2 ** 20


def test_zip_bomb_is_refused_before_decompressing(small_model_path, tmp_path, monkeypatch):
    """A real bomb: 32 MiB of zeros deflated to ~32 kB, against a cap lowered to 1 MiB."""
    path = rewrite_model(small_model_path, tmp_path / "bomb.ddm",
                         arrays={"init_states": np.zeros((2 * 2 ** 20, 2))})
    assert path.stat().st_size < 200_000
    monkeypatch.setenv("DDM_NEURO_MAX_INFLATED_BYTES", str(2 ** 20))
    tracemalloc.start()
    try:
        msg = refused_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.startswith(f"{path}: refused: its arrays would inflate to 32 MiB") and "zip bomb" in msg, msg
    assert "more than the 1 MiB a model file may add" in msg and "DDM_NEURO_MAX_INFLATED_BYTES" in msg
    assert peak < 4 * 2 ** 20  # the 32 MiB were never inflated


def test_zip_bomb_at_the_default_cap(small_model_path, tmp_path):
    """Members whose zip entries declare ~4 GiB each: over the default 4 GiB cap, refused from the directory."""
    path = rewrite_model(small_model_path, tmp_path / "bomb.ddm")
    raw = bytearray(path.read_bytes())
    start = raw.index(b"PK\x01\x02")  # central directory: patch the declared uncompressed size of two entries
    for _ in range(2):
        raw[start + 24:start + 28] = struct.pack("<I", 0xFFFFFF00)
        start = raw.index(b"PK\x01\x02", start + 4)
    path.write_bytes(bytes(raw))
    msg = refused_model(path)
    assert "refused: its arrays would inflate to" in msg and "more than the 4 GiB a model file may add" in msg, msg


def test_too_many_start_states(small_model_path, tmp_path):
    path = rewrite_model(small_model_path, tmp_path / "many.ddm", arrays={"init_states": np.zeros((1_000_001, 2))})
    tracemalloc.start()
    try:
        msg = refused_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg == (f"{path}: array init_states holds 1000001 start states, more than the 1000000 a model file "
                   "may hold")
    assert peak < 4 * 2 ** 20


def test_inflation_cap_setting_must_be_a_number(small_model_path, monkeypatch):
    monkeypatch.setenv("DDM_NEURO_MAX_INFLATED_BYTES", "lots")
    with pytest.raises(DDMError, match="DDM_NEURO_MAX_INFLATED_BYTES='lots' is not a number of bytes"):
        LatentRNN.load(small_model_path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable model file (empty)"),
    (b"\x80\x04K\x01.", "not a readable model file (a Python pickle, which is never loaded)"),
    (b"hello\n", "not a readable model file (not a zip archive)"),
    (b"PK\x05\x06" + b"\0" * 18, "not a ddm_neuro model file (no metadata)"),
], ids=["empty", "pickle", "text", "empty_zip"])
def test_not_an_archive(tmp_path, content, message):
    path = tmp_path / "m.ddm"
    path.write_bytes(content)
    assert refused_model(path) == f"{path}: {message}"


def test_truncated_at_every_tenth(small_model_path, tmp_path):
    raw = small_model_path.read_bytes()
    path = tmp_path / "cut.ddm"
    for k in range(1, 10):
        path.write_bytes(raw[: len(raw) * k // 10])
        assert refused_model(path).startswith(f"{path}: not a readable model file"), k


def test_object_dtype_in_a_header_is_refused_without_reading(tmp_path):
    path = tmp_path / "obj.ddm"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__meta__.npy", npy_bytes((3,), descr="|O"))
    assert refused_model(path) == (f"{path}: not a readable model file (array '__meta__' holds Python objects, "
                                   "which are never loaded)")


def test_trajectory_passed_as_a_model_and_back(small_model_path, tmp_path):
    traj = write_traj(tmp_path / "run.npz")
    assert refused_model(traj) == f"{traj}: not a ddm_neuro model file (no metadata)"
    assert refused_traj(small_model_path) == f"{small_model_path}: not a trajectory file (missing ['t', 'z', 'dt', 'meta'])"


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "loop", "missing", "dangling"])
def test_paths_that_are_not_regular_files(tmp_path, kind):
    path = tmp_path / "m.ddm"
    expected = {"folder": "is a folder, not a model file",
                "fifo": "not a regular file (a device, FIFO or socket), not a model file",
                "device": "not a regular file (a device, FIFO or socket), not a model file",
                "loop": "a symbolic link loop, not a model file",
                "missing": "no such model file", "dangling": "no such model file"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would block forever: it must be refused from its stat
    elif kind == "device":
        path = type(path)("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    assert refused_model(path) == f"{path}: {expected}"
    if kind != "device":
        assert refused_traj(path) == f"{path}: {expected.replace('model file', 'trajectory file')}"


# --------------------------------------------------------------------------- trajectories
BAD_TRAJ = [
    ("meta_list", {"meta": np.array("[1, 2]")}, "'meta' must be a JSON object, got list"),
    ("meta_number", {"meta": np.array("3")}, "'meta' must be a JSON object, got int"),
    ("meta_bytes", {"meta": np.frombuffer(b"{}", dtype=np.uint8)}, "'meta' must be one JSON string, got a uint8 array"),
    ("meta_deep", {"meta": np.array("[" * 100000 + "]" * 100000)}, "not a readable trajectory file ('meta' is not"),
    ("filter_tau_string", {"meta": np.array('{"readout_filter_tau": "5 ms"}')},
     "meta field 'readout_filter_tau' must be a finite number > 0 (got '5 ms')"),
    ("filter_tau_nan", {"meta": np.array('{"readout_filter_tau": NaN}')}, "'readout_filter_tau' must be a finite"),
    ("filter_tau_huge_int", {"meta": np.array('{"readout_filter_tau": 1' + "0" * 400 + "}")},
     "'readout_filter_tau' must be a finite"),
    ("mode_number", {"meta": np.array('{"mode": 1}')}, "meta field 'mode' must be a string (got 1)"),
    ("input_broken", {"meta": np.array('{"input": {"times": "soon"}}')}, "meta field 'input' must be an input signal"),
    ("n_neurons_string", {"meta": np.array('{"n_neurons": "32"}')}, "meta field 'n_neurons' must be an integer >= 0"),
    ("dt_string", {"dt": np.array("0.1")}, "'dt' must hold numbers, got dtype <U3"),
    ("dt_vector", {"dt": np.array([0.1, 0.1])}, "'dt' must be a scalar, got shape (2,)"),
    ("dt_nan", {"dt": np.float64(np.nan)}, "dt must be a positive number, got nan"),
    ("t_string", {"t": np.array(["0"] * 300)}, "'t' must hold numbers"),
    ("z_complex", {"z": np.zeros((2, 300, 2), complex)}, "array 'z' has dtype complex128"),
    ("z_bool", {"z": np.zeros((2, 300, 2), bool)}, "'z' must hold numbers, got dtype bool"),
    ("zero_trials", {"z": np.zeros((0, 300, 2))}, "z has shape (0, 300, 2): no trials"),
    ("zero_samples", {"t": np.zeros(0), "z": np.zeros((2, 0, 2))}, "z has shape (2, 0, 2): no samples"),
    ("zero_dims", {"z": np.zeros((2, 300, 0))}, "z has shape (2, 300, 0): no latent dimensions"),
    ("z_4d", {"z": np.zeros((1, 2, 300, 2))}, "z must have shape (trials, n, d), got (1, 2, 300, 2)"),
    ("t_short", {"t": np.arange(299) * 0.1}, "t has shape (299,) but z has 300 samples per trial"),
    ("t_decreasing", {"t": -np.arange(300) * 0.1}, "t must increase: sample 1 (t = -0.1) follows t = 0"),
    ("t_repeats", {"t": np.repeat(np.arange(150) * 0.2, 2)}, "t must increase: sample 1 (t = 0) follows t = 0"),
    ("t_wrong_step", {"dt": np.float64(0.2)}, "irregular sampling: t steps range 0.1..0.1, dt = 0.2"),
    ("t_inf", {"t": np.concatenate([np.arange(299) * 0.1, [np.inf]])}, "t has non-finite values (first at index 299)"),
    ("t_extreme", {"t": np.concatenate([[-1e308, 1e308], np.zeros(298)])}, "t must increase: sample 2"),
    ("spikes_t_alone", {"spikes_t": np.zeros(3)}, "holds spikes_t without spikes_i"),
    ("spikes_i_alone", {"spikes_i": np.zeros(3, np.int64)}, "holds spikes_i without spikes_t"),
    ("spikes_lengths", {"spikes_t": np.zeros(3), "spikes_i": np.zeros(4, np.int64)},
     "spikes_t and spikes_i must be 1-D of one length, got shapes (3,) and (4,)"),
    ("spikes_i_float", {"spikes_t": np.zeros(3), "spikes_i": np.zeros(3)}, "'spikes_i' must hold integers"),
    ("spikes_i_negative", {"spikes_t": np.zeros(3), "spikes_i": np.array([0, -1, 2])},
     "spikes_i holds index -1, outside 0..63 (2 trial(s) x 32 neurons)"),
    ("spikes_i_too_big", {"spikes_t": np.zeros(3), "spikes_i": np.array([0, 64, 2])},
     "spikes_i holds index 64, outside 0..63 (2 trial(s) x 32 neurons)"),
    ("spikes_t_nan", {"spikes_t": np.array([0.0, np.nan]), "spikes_i": np.array([0, 1])},
     "spikes_t holds non-finite times"),
    ("no_z", {"z": None}, "not a trajectory file (missing ['z'])"),
]


@pytest.mark.parametrize("case, changes, message", BAD_TRAJ, ids=[c[0] for c in BAD_TRAJ])
def test_bad_trajectory_files(tmp_path, case, changes, message):
    path = write_traj(tmp_path / "bad.npz", **changes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = refused_traj(path)
    assert msg.startswith(f"{path}: ") and message in msg, msg


def test_valid_trajectory_with_spikes_and_nan_still_loads(tmp_path):
    """A diverged run (NaN in z) is a valid file: the verifier says where it starts (next test)."""
    z = np.random.default_rng(0).normal(size=(2, 300, 2))
    z[1, 50:] = np.nan
    path = write_traj(tmp_path / "ok.npz", z=z, spikes_t=np.array([0.1, 0.2]), spikes_i=np.array([0, 63]))
    traj = Trajectory.load(path)  # index 63: neuron 31 of trial 1
    assert traj.trials == 2 and np.isnan(traj.z[1, 60, 0]) and traj.spikes_i.tolist() == [0, 63]


# --------------------------------------------------------------------------- the command line
def _bad_model(kind, src, folder):
    path = folder / "bad.ddm"
    if kind == "nan":
        arrays, _ = read_model(src)
        return rewrite_model(src, path, arrays={"decoders": arrays["decoders"] * np.nan})
    if kind == "negative_noise":
        return rewrite_model(src, path, arrays={"noise_const": -np.ones(32)})
    if kind == "tau_zero":
        return rewrite_model(src, path, header={"tau": 0.0})
    if kind == "string_array":
        return rewrite_model(src, path, arrays={"encoders": np.full((32, 2), "x")})
    if kind == "bomb":
        return rewrite_model(src, path, arrays={"init_states": np.zeros((2 ** 20, 2))})
    if kind == "folder":
        path.mkdir()
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("nan", "array decoders holds non-finite values (64; first nan at index (0, 0))"),
    ("negative_noise", "array noise_const must be >= 0"),
    ("tau_zero", "tau must be a finite number > 0 (seconds), got 0.0"),
    ("string_array", "array encoders has dtype <U1, not numbers"),
    ("bomb", "zip bomb"),
    ("folder", "is a folder, not a model file"),
])
def test_simulate_refuses_a_hostile_model_in_one_line(small_model_path, tmp_path, capsys, monkeypatch, kind,
                                                      message):
    monkeypatch.setenv("DDM_NEURO_MAX_INFLATED_BYTES", str(2 ** 20))
    bad = _bad_model(kind, small_model_path, tmp_path)
    out = tmp_path / "out.npz"
    rc, err = run_cli(["simulate", str(bad), "-o", str(out), "--duration", "1", "--quiet"], capsys)
    assert_one_line_failure(rc, err, f"ddm-neuro simulate: error: {bad}: ", message)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.ddm"]


def test_graph_export_refuses_a_nan_model_in_one_line(small_model_path, tmp_path, capsys):
    pytest.importorskip("networkx")
    bad = _bad_model("nan", small_model_path, tmp_path)
    for fmt in ("json", "graphml"):
        out = tmp_path / f"net.{fmt}"
        rc, err = run_cli(["export", str(bad), "--format", fmt, "-o", str(out), "--quiet"], capsys)
        assert_one_line_failure(rc, err, "array decoders holds non-finite values")
        assert not out.exists()


def test_graph_export_refuses_arrays_changed_after_loading(small_model, tmp_path):
    """The last line of defence: arrays that turned NaN after the model was built never reach a graph file."""
    from exporters.graph.export import export_graph

    small_model.decoders[1, 5] = np.nan
    for fmt in ("json", "graphml", "gexf"):
        with pytest.raises(DDMError, match=r"graph export: the model's array decoders holds non-finite values"):
            export_graph(small_model, tmp_path / f"net.{fmt}", format=fmt, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["edges"][0].update(weight="heavy"), "attribute 'weight' is not a finite number (got 'heavy')"),
    (lambda d: d["edges"][0].update(weight=float("nan")), "attribute 'weight' is not a finite number (got nan)"),
    (lambda d: d["nodes"][3].update(noise_const=-1.0), "array noise_const must be >= 0"),
    (lambda d: d["nodes"][3].update(bias=float("inf")), "node 3 attribute 'bias' is not a finite number"),
    (lambda d: d["nodes"][3].update(bias=10 ** 400), "node 3 attribute 'bias' is not a finite number"),
    (lambda d: d["nodes"][3].update(id=[3]), "node id [3] is not a neuron index"),
    (lambda d: d["edges"].append(7), "an edge without 'source' and 'target'"),
    (lambda d: d["graph"].update(tau=0.0), "tau must be a finite number > 0"),
], ids=["weight_text", "weight_nan", "noise_negative", "bias_inf", "bias_huge_int", "id_list", "edge_number",
        "tau_zero"])
def test_hostile_graph_json(small_model, tmp_path, edit, message):
    pytest.importorskip("networkx")
    from exporters.graph import load_graph_json
    from exporters.graph.export import export_graph

    path = export_graph(small_model, tmp_path / "net.json", format="json", progress=False)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError) as info:
        load_graph_json(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


def test_graph_json_that_nests_too_deep(tmp_path):
    from exporters.graph import load_graph_json

    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ModelFileError, match="not a readable JSON graph"):
        load_graph_json(path)


@pytest.mark.parametrize("case", ["nan_z", "meta_list", "zero_trials"])
def test_verify_refuses_a_hostile_trajectory_in_one_line(small_model_path, tmp_path, capsys, case):
    z = np.random.default_rng(0).normal(size=(2, 300, 2))
    z[1, 50:] = np.nan
    changes = {"nan_z": {"z": z}, "meta_list": {"meta": np.array("[]")},
               "zero_trials": {"z": np.zeros((0, 300, 2))}}[case]
    path = write_traj(tmp_path / "run.npz", **changes)
    rc, err = run_cli(["verify", str(small_model_path), str(path), "--report", str(tmp_path / "rep")], capsys)
    message = {"nan_z": "non-finite values (NaN/inf) from sample 50 (t = 5, trial 1)",
               "meta_list": f"{path}: 'meta' must be a JSON object, got list",
               "zero_trials": f"{path}: z has shape (0, 300, 2): no trials"}[case]
    assert_one_line_failure(rc, err, message)
    assert not (tmp_path / "rep" / "report.json").exists()


# --------------------------------------------------------------------------- outputs of the wrong kind
def test_simulate_force_onto_a_folder_is_refused_up_front(small_model_path, tmp_path, capsys):
    out = tmp_path / "out.npz"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, err = run_cli(["simulate", str(small_model_path), "-o", str(out), "--duration", "1", "--force", "--quiet"],
                      capsys)
    assert_one_line_failure(rc, err, f"{out}: exists and is a folder, but the output is a file")
    assert (out / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


@pytest.mark.parametrize("force", [False, True])
def test_check_output_kinds(tmp_path, force):
    folder, file = tmp_path / "d", tmp_path / "f"
    folder.mkdir()
    file.write_text("x")
    with pytest.raises(DDMError, match="exists and is a folder, but the output is a file"):
        check_output(folder, force)
    with pytest.raises(DDMError, match="exists and is a file, but the output is a folder"):
        check_output(file, force, kind="dir")
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(DDMError, match="not a regular file or folder"):
        check_output(fifo, force)
    if force:
        assert check_output(file, True) == file and check_output(folder, True, kind="dir") == folder
    else:
        with pytest.raises(OutputExistsError):
            check_output(file)
    with pytest.raises(DDMError, match=f"{file} is not a folder"):
        check_output(file / "x.npz")


def test_atomic_writers_never_cross_kinds(tmp_path):
    folder, file = tmp_path / "d", tmp_path / "f"
    folder.mkdir()
    file.write_text("keep")
    with pytest.raises(DDMError, match="exists and is a folder"):
        with atomic_write(folder, force=True) as fh:
            fh.write(b"data")
    with pytest.raises(DDMError, match="exists and is a file"):
        with atomic_directory(file, force=True) as tmp:
            (tmp / "a").write_text("a")
    assert file.read_text() == "keep" and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # no temporaries left


def test_output_that_turns_into_a_folder_while_writing(tmp_path):
    out = tmp_path / "out.npz"
    with pytest.raises(DDMError, match="exists and is a folder"):
        with atomic_write(out) as fh:
            fh.write(b"data")
            out.mkdir()  # someone else made a folder there meanwhile
    assert out.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_atomic_directory_force_replaces_a_symlink_not_its_target(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    link = tmp_path / "out"
    link.symlink_to(target)
    with atomic_directory(link, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert (target / "keep.txt").read_text() == "mine"
    assert not link.is_symlink() and (link / "new.txt").read_text() == "new"
