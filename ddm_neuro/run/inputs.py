"""Input signals ``u(s)`` in SDE time, piecewise constant.

A signal is a list of switch times ``times`` (increasing, first 0) and the value
held from each time until the next, ``values`` of shape (len(times), k).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DDMError


@dataclass
class InputSignal:
    """Piecewise-constant input ``u(s)``: ``values[j]`` holds on ``[times[j], times[j+1])``."""

    times: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim == 1:
            self.values = self.values[:, None]
        if len(self.times) != len(self.values) or len(self.times) == 0:
            raise DDMError(f"input signal: {len(self.times)} times but {len(self.values)} values")
        if not np.all(np.isfinite(self.times)) or self.times[0] != 0 or np.any(np.diff(self.times) <= 0):
            raise DDMError(f"input signal: times must be finite, start at 0 and increase strictly (got {self.times.tolist()})")
        if not np.all(np.isfinite(self.values)):
            raise DDMError("input signal: values must be finite")

    @property
    def n_inputs(self):
        """Number of channels k."""
        return self.values.shape[1]

    @classmethod
    def constant(cls, value):
        """A constant input (scalar or length-k vector)."""
        return cls([0.0], np.atleast_1d(np.asarray(value, dtype=np.float64))[None, :])

    @classmethod
    def random_steps(cls, low, high, hold, duration, rng):
        """Uniform random levels in ``[low, high]`` held for ``hold`` time units each."""
        low, high = np.atleast_1d(low).astype(float), np.atleast_1d(high).astype(float)
        n = int(np.ceil(duration / hold)) + 1
        return cls(np.arange(n) * hold, rng.uniform(low, high, size=(n, len(low))))

    def at(self, s):
        """Values at times ``s`` (array) -> (len(s), k)."""
        idx = np.searchsorted(self.times, np.asarray(s, dtype=np.float64), side="right") - 1
        return self.values[np.clip(idx, 0, len(self.times) - 1)]

    def to_dict(self):
        """JSON-serialisable form."""
        return {"times": self.times.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(d["times"], d["values"])


def parse_input_option(text, input_names, input_range=None):
    """Parse ``--input`` text: ``"I=0.5"`` or ``"I=0:0,5:1"`` (time:value steps), channels separated by ';'.

    Returns an :class:`InputSignal` over the named channels (unnamed ones are 0).
    Values outside ``input_range`` (``{name: (low, high)}``), where the network
    was not fitted, are refused.
    """
    if not input_names:
        raise DDMError("--input given, but this model has no inputs")
    per = {}
    for part in text.split(";"):
        if "=" not in part:
            raise DDMError(f"--input: expected NAME=VALUE or NAME=T0:V0,T1:V1, got {part!r}")
        name, val = (p.strip() for p in part.split("=", 1))
        if name not in input_names:
            raise DDMError(f"--input: unknown input {name!r} (model inputs: {', '.join(input_names)})")
        try:
            if ":" in val:
                steps = [tuple(float(x) for x in s.split(":")) for s in val.split(",")]
            else:
                steps = [(0.0, float(val))]
        except ValueError:
            raise DDMError(f"--input: cannot read numbers in {part!r}") from None
        if any(len(st) != 2 or not all(np.isfinite(st)) for st in steps):
            raise DDMError(f"--input: each step must be TIME:VALUE with finite numbers, got {part!r}")
        if input_range and name in input_range:
            lo, hi = input_range[name]
            bad = [v for _, v in steps if not lo <= v <= hi]
            if bad:
                raise DDMError(f"--input: {name}={bad[0]:g} is outside the fitted input_range [{lo:g}, {hi:g}]")
        per[name] = steps
    times = sorted({t for steps in per.values() for t, _ in steps} | {0.0})
    values = np.zeros((len(times), len(input_names)))
    for k, name in enumerate(input_names):
        steps = sorted(per.get(name, [(0.0, 0.0)]))
        for j, t in enumerate(times):
            cur = [v for ts, v in steps if ts <= t]
            values[j, k] = cur[-1] if cur else 0.0
    return InputSignal(times, values)
