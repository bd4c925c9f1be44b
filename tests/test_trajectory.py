"""Trajectory files (DESIGN §4): round trips, refusals with clear messages, atomic writes."""
import json
import pickle
import tokenize
import zlib

import numpy as np
import pytest

from ddm_neuro.errors import DDMError, OutputExistsError, TrajectoryError
from ddm_neuro.trajectory import Trajectory


def make(trials=2, n=11, d=3, dt=0.05, t0=0.0, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return Trajectory(t=t0 + dt * np.arange(n), z=rng.normal(size=(trials, n, d)), dt=dt, **kw)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trips
def test_round_trip(tmp_path):
    meta = {"backend": "torch", "mode": "rate", "model_id": "abc123", "seed": 7, "duration": 0.5,
            "input": {"times": [0.0, 0.2], "values": [[0.0], [1.0]]}}
    traj = make(meta=meta, spikes_t=np.array([0.01, 0.02, 0.3]), spikes_i=np.array([4, 0, 4]))
    path = tmp_path / "traj.npz"
    traj.save(path)
    back = Trajectory.load(path)
    np.testing.assert_array_equal(back.t, traj.t)
    np.testing.assert_array_equal(back.z, traj.z)
    assert back.dt == traj.dt and back.meta == meta
    assert back.z.dtype == np.float64 and back.t.dtype == np.float64
    np.testing.assert_array_equal(back.spikes_t, [0.01, 0.02, 0.3])
    np.testing.assert_array_equal(back.spikes_i, [4, 0, 4])
    assert back.spikes_i.dtype == np.int64
    assert (back.trials, back.dim) == (2, 3) and back.duration == pytest.approx(0.5)
    assert listing(tmp_path) == ["traj.npz"]


def test_file_holds_exactly_the_documented_arrays_without_pickle(tmp_path):
    path = tmp_path / "traj.npz"
    make(meta={"seed": 1}).save(path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["dt", "meta", "t", "z"]
        assert data["t"].shape == (11,) and data["z"].shape == (2, 11, 3) and data["dt"].shape == ()
        assert json.loads(str(data["meta"])) == {"seed": 1}


def test_two_dimensional_z_is_one_trial():
    traj = Trajectory(t=np.arange(4) * 0.1, z=np.zeros((4, 2)), dt=0.1)
    assert traj.z.shape == (1, 4, 2) and traj.trials == 1


def test_times_far_from_zero_are_still_regular():
    traj = make(t0=1000.0, dt=0.001, n=50)
    assert traj.duration == pytest.approx(0.049)


# --------------------------------------------------------------------------- overwriting
def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "traj.npz"
    make(seed=0).save(path)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError) as info:
        make(seed=1).save(path)
    assert str(path) in str(info.value) and "already exists" in str(info.value) and "--force" in str(info.value)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["traj.npz"]


def test_overwrites_with_force(tmp_path):
    path = tmp_path / "traj.npz"
    make(seed=0).save(path)
    new = make(seed=1, trials=3)
    new.save(path, force=True)
    np.testing.assert_array_equal(Trajectory.load(path).z, new.z)
    assert listing(tmp_path) == ["traj.npz"]


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(DDMError) as info:
        make().save(tmp_path / "nope" / "traj.npz")
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_temporary_file_and_keeps_the_original(tmp_path, monkeypatch, existing):
    path = tmp_path / "traj.npz"
    if existing:
        make(seed=0).save(path)
    before = listing(tmp_path), path.read_bytes() if existing else None

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left"):
        make(seed=1).save(path, force=True)
    assert listing(tmp_path) == before[0]  # no .traj.npz.*.tmp left behind
    if existing:
        assert path.read_bytes() == before[1]


# --------------------------------------------------------------------------- invalid arrays
def test_irregular_t():
    t = np.array([0.0, 0.1, 0.25, 0.3, 0.4])
    with pytest.raises(TrajectoryError, match=r"irregular sampling: t steps range 0\.05\.\.0\.15, dt = 0\.1"):
        Trajectory(t=t, z=np.zeros((1, 5, 2)), dt=0.1)


def test_dt_disagreeing_with_t():
    with pytest.raises(TrajectoryError, match="irregular sampling"):
        Trajectory(t=np.arange(5) * 0.1, z=np.zeros((1, 5, 2)), dt=0.2)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_dt(dt):
    with pytest.raises(TrajectoryError, match=f"dt must be a positive number, got {dt}"):
        Trajectory(t=np.arange(5) * 0.1, z=np.zeros((1, 5, 2)), dt=dt)


@pytest.mark.parametrize("t, z, message", [
    (np.arange(5) * 0.1, np.zeros((2, 4, 3)), r"t has shape \(5,\) but z has 4 samples per trial"),
    (np.arange(5) * 0.1, np.zeros((1, 2, 5, 3)), r"z must have shape \(trials, n, d\), got \(1, 2, 5, 3\)"),
    (np.arange(5) * 0.1, np.zeros(5), r"z must have shape \(trials, n, d\), got \(5,\)"),
    ((np.arange(5) * 0.1)[:, None], np.zeros((1, 5, 3)), r"t has shape \(5, 1\)"),
])
def test_wrong_shapes(t, z, message):
    with pytest.raises(TrajectoryError, match=message):
        Trajectory(t=t, z=z, dt=0.1)


def test_nan_in_t_is_refused():
    with pytest.raises(TrajectoryError):
        Trajectory(t=np.array([0.0, 0.1, 0.2, np.nan, 0.4]), z=np.zeros((1, 5, 2)), dt=0.1)


# --------------------------------------------------------------------------- invalid files
def test_truncated_file(tmp_path):
    path = tmp_path / "traj.npz"
    make().save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TrajectoryError) as info:
        Trajectory.load(path)
    assert str(info.value).startswith(f"{path}: not a readable trajectory file")


@pytest.mark.parametrize("content", [b"t,z\n0.0,1.0\n", b"", bytes(range(256)) * 4])
def test_not_an_npz_file(tmp_path, content):
    path = tmp_path / "traj.npz"
    path.write_bytes(content)
    with pytest.raises(TrajectoryError) as info:
        Trajectory.load(path)
    assert str(info.value).startswith(f"{path}: not a readable trajectory file")


def test_npz_that_is_not_a_trajectory(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(TrajectoryError, match=r"not a trajectory file \(missing \['t', 'z', 'dt', 'meta'\]\)"):
        Trajectory.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(TrajectoryError, match="no such trajectory file"):
        Trajectory.load(tmp_path / "nope.npz")


def test_invalid_values_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, t=np.arange(5) * 0.1, z=np.zeros((1, 5, 2)), dt=0.0, meta=np.array("{}"))
    with pytest.raises(TrajectoryError, match=f"^{path}: dt must be a positive number"):
        Trajectory.load(path)
    path2 = tmp_path / "bad2.npz"
    np.savez(path2, t=np.arange(5) * 0.1, z=np.zeros((1, 5, 2)), dt=[0.1, 0.1], meta=np.array("{}"))
    with pytest.raises(TrajectoryError, match=r"'dt' must be a scalar, got shape \(2,\)"):
        Trajectory.load(path2)
    path3 = tmp_path / "bad3.npz"
    np.savez(path3, t=np.arange(5) * 0.1, z=np.zeros((1, 5, 2)), dt=0.1, meta=np.array("{not json"))
    with pytest.raises(TrajectoryError, match=f"^{path3}: not a readable trajectory file"):
        Trajectory.load(path3)


class _Touch:
    """Unpickling this creates a file: proof that a loader unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    np.savez(path, t=np.arange(3) * 0.1, z=np.zeros((1, 3, 1)), dt=0.1,
             meta=np.array([_Touch(marker)], dtype=object))
    pickle.dumps(_Touch(marker))  # the payload itself is valid
    with pytest.raises(TrajectoryError, match="not a readable trajectory file"):
        Trajectory.load(path)
    assert not marker.exists()


def test_plain_npy_file_is_refused(tmp_path):
    path = tmp_path / "traj.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(TrajectoryError):
        Trajectory.load(path)


def test_corrupt_compressed_member_is_refused(tmp_path, corrupt_deflate):
    path = tmp_path / "traj.npz"
    traj = make()
    np.savez_compressed(path, t=traj.t, z=traj.z, dt=traj.dt, meta=np.array("{}"))
    corrupt_deflate(path, "z.npy")
    with pytest.raises(TrajectoryError):
        Trajectory.load(path)


def test_unparsable_array_header_is_refused(tmp_path, npz_with_bad_header):
    path = tmp_path / "traj.npz"
    npz_with_bad_header(path, {"z": np.zeros((1, 3, 1)), "dt": np.float64(0.1), "meta": np.array("{}")}, "t")
    with pytest.raises(TrajectoryError):
        Trajectory.load(path)


def test_non_numeric_z_in_a_file_is_refused(tmp_path):
    path = tmp_path / "traj.npz"
    np.savez(path, t=np.arange(2) * 0.1, z=np.array([[["a"], ["b"]]]), dt=0.1, meta=np.array("{}"))
    with pytest.raises(TrajectoryError):
        Trajectory.load(path)
