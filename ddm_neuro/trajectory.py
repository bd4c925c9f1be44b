"""Trajectories: what every simulator writes and the verifier reads (DESIGN §4).

File format (``.npz``, no pickle): ``t`` (n,), ``z`` (trials, n, d) float64 in
SDE coordinates with time in SDE units, ``dt`` (scalar, SDE units), ``meta``
(JSON string: backend, mode, model id, seed, duration, ...), optional
``spikes_t`` and ``spikes_i``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TrajectoryError
from .fileio import atomic_write, open_npz


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
        """Read a trajectory file, with a clear error when it is not one."""
        path = Path(path)
        with open_npz(path, TrajectoryError, "trajectory file") as data:
            missing = [k for k in ("t", "z", "dt", "meta") if k not in data.files]
            if missing:
                raise TrajectoryError(f"{path}: not a trajectory file (missing {missing})")
            t, z, dt = data["t"], data["z"], data["dt"]
            try:
                meta = json.loads(str(data["meta"]))
            except json.JSONDecodeError:
                raise TrajectoryError(f"{path}: not a readable trajectory file ('meta' is not valid JSON)") from None
            sp_t = data["spikes_t"] if "spikes_t" in data.files else None
            sp_i = data["spikes_i"] if "spikes_i" in data.files else None
        if np.ndim(dt) != 0:
            raise TrajectoryError(f"{path}: 'dt' must be a scalar, got shape {np.shape(dt)}")
        try:
            return cls(t=t, z=z, dt=float(dt), meta=meta, spikes_t=sp_t, spikes_i=sp_i)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{path}: {exc}") from None


def validate(traj):
    """Check shapes and the regular time grid; raise :class:`TrajectoryError`."""
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
        steps = np.diff(t)
        if np.max(np.abs(steps - dt)) > 1e-6 * max(dt, 1e-12) + 1e-9 * abs(t[-1]):
            raise TrajectoryError(f"irregular sampling: t steps range {steps.min():.6g}..{steps.max():.6g}, "
                                  f"dt = {dt:.6g}")
