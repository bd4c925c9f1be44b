"""Trajectories: what every simulator writes and the verifier reads (DESIGN §4).

File format (``.npz``, no pickle): ``t`` (n,), ``z`` (trials, n, d) float64 in
SDE coordinates with time in SDE units, ``dt`` (scalar, SDE units), ``meta``
(JSON string: backend, mode, model id, seed, duration, ...), optional
``spikes_t`` and ``spikes_i``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DDMError, TrajectoryError
from .fileio import atomic_write, open_npz


@dataclass(frozen=True)
class RunInfo:
    """The metadata of a trajectory that code reads, as typed fields (from ``Trajectory.meta``).

    Attributes
    ----------
    backend, mode : str or None
        The simulator and its mode (``rate``, ``spiking``, ``sde``).
    seed : int or None
    model_id, system : str or None
        The model's id and the target SDE's name.
    variables : list of str or None
    n_neurons : int or None
    input : InputSignal or None
        The run's input ``u(s)`` (None: no inputs).
    readout_filter_tau : float or None
        Set by back ends whose latent read-out is filtered (seconds).
    noise : bool, str or None
    duration : float or None
    trials : int or None
    integration_dt : float or None
    """

    backend: str | None = None
    mode: str | None = None
    seed: int | None = None
    model_id: str | None = None
    system: str | None = None
    variables: list | None = None
    n_neurons: int | None = None
    input: object = None
    readout_filter_tau: float | None = None
    noise: object = None
    duration: float | None = None
    trials: int | None = None
    integration_dt: float | None = None

    @classmethod
    def from_meta(cls, meta):
        """Read the known fields of a ``meta`` dict (others are ignored; absent ones are None)."""
        from .run.inputs import InputSignal

        values = {k: meta.get(k) for k in cls.__dataclass_fields__}
        if values["input"] is not None:
            values["input"] = InputSignal.from_dict(values["input"])
        return cls(**values)


@dataclass
class Trajectory:
    """Latent trajectories sampled on a regular grid.

    Attributes
    ----------
    t : ndarray (n,)
        Sample times in SDE time units.
    z : ndarray (trials, n, d)
        Latent states in SDE coordinates, float64.
    dt : float
        Sampling interval in SDE time units.
    meta : dict
        Backend, mode, model id, seed, duration, variables, inputs, ...
    spikes_t, spikes_i : ndarray, optional
        Spike times (SDE units) and neuron indices (trial 0).
    """

    t: np.ndarray
    z: np.ndarray
    dt: float
    meta: dict = field(default_factory=dict)
    spikes_t: np.ndarray | None = None
    spikes_i: np.ndarray | None = None

    def __post_init__(self):
        if np.iscomplexobj(self.t) or np.iscomplexobj(self.z) or np.iscomplexobj(self.dt):
            raise TrajectoryError("t, z and dt must be real numbers, not complex")
        try:
            self.t = np.asarray(self.t, dtype=np.float64)
            self.z = np.asarray(self.z, dtype=np.float64)
            self.dt = float(self.dt)
        except (TypeError, ValueError) as exc:
            raise TrajectoryError(f"t, z and dt must be numeric arrays ({exc})") from None
        if self.z.ndim == 2:
            self.z = self.z[None]
        validate(self)

    @property
    def info(self):
        """The metadata as typed fields (:class:`RunInfo`)."""
        return RunInfo.from_meta(self.meta)

    @property
    def trials(self):
        """Number of trials."""
        return self.z.shape[0]

    @property
    def dim(self):
        """Latent dimension d."""
        return self.z.shape[2]

    @property
    def duration(self):
        """Time covered per trial, in SDE units."""
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0

    def save(self, path, force=False):
        """Write the trajectory atomically (nothing half-written on failure)."""
        arrays = {"t": self.t, "z": self.z, "dt": np.float64(self.dt),
                  "meta": np.array(json.dumps(self.meta))}
        if self.spikes_t is not None:
            arrays["spikes_t"] = np.asarray(self.spikes_t, dtype=np.float64)
            arrays["spikes_i"] = np.asarray(self.spikes_i, dtype=np.int64)
        with atomic_write(path, force=force) as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path):
        """Read a trajectory file, with one clear :class:`TrajectoryError` line when it is not a valid one.

        Besides what :func:`validate` checks, a file must hold numeric ``t``,
        ``z`` and ``dt``, at least one trial, sample and latent dimension,
        ``meta`` as a JSON object whose known fields have their documented
        types, and matching ``spikes_t`` / ``spikes_i`` (indices
        ``neuron + trial * N`` below ``trials * meta["n_neurons"]``). Shapes
        are checked from the array headers before any data is read.
        Non-finite ``z`` (a diverged run) loads; the verifier reports where it
        starts.
        """
        path = Path(path)
        with open_npz(path, TrajectoryError, "trajectory file") as data:
            missing = [k for k in ("t", "z", "dt", "meta") if k not in data]
            if missing:
                raise TrajectoryError(f"{path}: not a trajectory file (missing {missing})")
            spikes = [k for k in ("spikes_t", "spikes_i") if k in data]
            if len(spikes) == 1:
                raise TrajectoryError(f"{path}: holds {spikes[0]} without "
                                      f"{'spikes_i' if spikes[0] == 'spikes_t' else 'spikes_t'}")
            _check_declared(data, spikes, path)
            t, z, dt = data["t"], data["z"], data["dt"]
            text = str(data["meta"])
            sp_t = data["spikes_t"] if spikes else None
            sp_i = data["spikes_i"] if spikes else None
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise TrajectoryError(f"{path}: not a readable trajectory file ('meta' is not valid JSON)") from None
        try:
            _check_meta(meta)
            if sp_t is not None:
                _check_spikes(sp_t, sp_i, meta, np.shape(z)[0] if np.ndim(z) == 3 else 1)
            return cls(t=t, z=z, dt=float(dt), meta=meta, spikes_t=sp_t, spikes_i=sp_i)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{path}: {exc}") from None


#: Fields of ``meta`` that readers use, and what each must be when present (None is always allowed).
_META_FIELDS = {"mode": "a string", "backend": "a string", "variables": "a list of names",
                "n_neurons": "an integer >= 0", "readout_filter_tau": "a finite number > 0",
                "input": "an input signal {\"times\": [...], \"values\": [[...], ...]}"}


def _meta_field_ok(key, value):
    if key in ("mode", "backend"):
        return isinstance(value, str)
    if key == "variables":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if key == "n_neurons":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if key == "readout_filter_tau":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            return math.isfinite(value) and value > 0
        except OverflowError:  # an integer beyond the double range
            return False
    from .run.inputs import InputSignal

    try:
        InputSignal.from_dict(value)
    except (DDMError, KeyError, TypeError, ValueError, IndexError):
        return False
    return True


def _check_meta(meta):
    """``meta`` must be a JSON object whose known fields have their documented types."""
    if not isinstance(meta, dict):
        raise TrajectoryError(f"'meta' must be a JSON object, got {type(meta).__name__}")
    for key, want in _META_FIELDS.items():
        value = meta.get(key)
        if value is not None and not _meta_field_ok(key, value):
            raise TrajectoryError(f"meta field {key!r} must be {want} (got {value!r:.60})")


def _check_declared(data, spikes, path):
    """Dtypes and shapes from the array headers, before any data is read."""
    for name in ("t", "z", "dt", *spikes):
        kinds = "iu" if name == "spikes_i" else "iuf"
        if data.dtype(name).kind not in kinds:
            what = "integers" if name == "spikes_i" else "numbers"
            raise TrajectoryError(f"{path}: '{name}' must hold {what}, got dtype {data.dtype(name)}")
    if data.dtype("meta").kind != "U" or data.shape("meta") != ():
        raise TrajectoryError(f"{path}: 'meta' must be one JSON string, got a {data.dtype('meta')} array "
                              f"of shape {data.shape('meta')}")
    if data.shape("dt") != ():
        raise TrajectoryError(f"{path}: 'dt' must be a scalar, got shape {data.shape('dt')}")
    t, z = data.shape("t"), data.shape("z")
    if len(z) not in (2, 3):
        raise TrajectoryError(f"{path}: z must have shape (trials, n, d), got {z}")
    z = z if len(z) == 3 else (1, *z)
    if len(t) != 1 or t[0] != z[1]:
        raise TrajectoryError(f"{path}: t has shape {t} but z has {z[1]} samples per trial")
    for size, what in zip(z, ("trials", "samples", "latent dimensions")):
        if size == 0:
            raise TrajectoryError(f"{path}: z has shape {z}: no {what}")
    if spikes:
        shapes = data.shape("spikes_t"), data.shape("spikes_i")
        if len(shapes[0]) != 1 or shapes[0] != shapes[1]:
            raise TrajectoryError(f"{path}: spikes_t and spikes_i must be 1-D of one length, got shapes "
                                  f"{shapes[0]} and {shapes[1]}")


def _check_spikes(spikes_t, spikes_i, meta, trials):
    """Finite spike times; indices ``neuron + trial * N`` within ``0 .. trials * N - 1``."""
    if not np.all(np.isfinite(spikes_t)):
        raise TrajectoryError("spikes_t holds non-finite times")
    n = meta.get("n_neurons")
    top = None if n is None else n * trials
    if len(spikes_i) and (spikes_i.min() < 0 or (top is not None and spikes_i.max() >= top)):
        bad = int(spikes_i.min()) if spikes_i.min() < 0 else int(spikes_i.max())
        limit = "trials x N - 1" if top is None else f"{top - 1} ({trials} trial(s) x {n} neurons)"
        raise TrajectoryError(f"spikes_i holds index {bad}, outside 0..{limit}")


def validate(traj):
    """Check shapes, the increasing regular time grid and the spike arrays' pairing.

    Parameters
    ----------
    traj : Trajectory

    Raises
    ------
    TrajectoryError
    """
    t, z, dt = traj.t, traj.z, traj.dt
    if z.ndim != 3:
        raise TrajectoryError(f"z must have shape (trials, n, d), got {z.shape}")
    if t.ndim != 1 or len(t) != z.shape[1]:
        raise TrajectoryError(f"t has shape {t.shape} but z has {z.shape[1]} samples per trial")
    if not np.all(np.isfinite(t)):
        raise TrajectoryError(f"t has non-finite values (first at index {int(np.argmax(~np.isfinite(t)))})")
    if not np.isfinite(dt) or dt <= 0:
        raise TrajectoryError(f"dt must be a positive number, got {dt}")
    if len(t) > 1:
        with np.errstate(over="ignore", invalid="ignore"):  # t near the float limits: the step check refuses
            steps = np.diff(t)
            off = np.max(np.abs(steps - dt))
        if not np.all(steps > 0):
            i = int(np.argmax(~(steps > 0)))
            raise TrajectoryError(f"t must increase: sample {i + 1} (t = {t[i + 1]:.6g}) follows t = {t[i]:.6g}")
        if not off <= 1e-6 * max(dt, 1e-12) + 1e-9 * abs(t[-1]):
            raise TrajectoryError(f"irregular sampling: t steps range {steps.min():.6g}..{steps.max():.6g}, "
                                  f"dt = {dt:.6g}")
    if (traj.spikes_t is None) != (traj.spikes_i is None):
        raise TrajectoryError("spikes_t and spikes_i go together: give both or neither")
    if traj.spikes_t is not None and (np.ndim(traj.spikes_t) != 1
                                      or np.shape(traj.spikes_t) != np.shape(traj.spikes_i)):
        raise TrajectoryError(f"spikes_t and spikes_i must be 1-D of one length, got shapes "
                              f"{np.shape(traj.spikes_t)} and {np.shape(traj.spikes_i)}")
