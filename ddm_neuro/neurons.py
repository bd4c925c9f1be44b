r"""Neuron models: the rate function ``phi`` and the activity that scales noise.

Each model maps the input ``x`` (dimensionless; for LIF, 1 is the firing
threshold) to an output ``phi(x)`` and to an *activity* ``a(x)`` in [0, 1] that
sets activity-dependent private noise, ``sigma_i^2 = a_i^{(n)} a(x_i) + c_i``.

* ``tanh``: ``phi(x) = tanh(x)``, ``a(x) = (1 + tanh x) / 2``.
* ``lif``: the LIF steady-state rate (Hz) for a constant normalised input,

  .. math:: \phi(x) = \frac{1}{\tau_{ref} + \tau_m \log(1 + 1/(x - 1))}\ (x > 1), \quad 0\ \text{otherwise},

  ``a(x) = phi(x) tau_ref``. For gradient training a smoothed curve replaces
  ``x - 1`` by ``s log(1 + exp((x - 1)/s))`` (Hunsberger & Eliasmith's soft LIF).
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from .errors import DDMError


def _number(value, what):
    """``value`` as a float if it is a finite real number (not a bool or a string), else a DDMError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DDMError(f"{what} must be a number (got {value!r:.80})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise DDMError(f"{what} must be finite (got {number})")
    return number


class NeuronModel:
    """Base class: subclasses define ``phi`` and ``activity`` for numpy and torch."""

    name = "base"

    def __init__(self, **params):
        self.params = dict(params)

    def to_dict(self):
        """JSON form: ``{"name": ..., **params}``."""
        return {"name": self.name, **self.params}

    def init_gain_bias(self, rng, n, theta=None):
        """Random gains and biases so that ``x = gain (e . y - theta) + offset``.

        Parameters
        ----------
        rng : numpy Generator
        n : int
        theta : ndarray (n,), optional
            Intercepts (where each neuron's tuning turns on, along its encoder);
            default uniform in [-0.95, 0.95].

        Returns
        -------
        gain, bias : ndarray (n,)
            The bias already contains ``-gain * theta`` and the model's offset.
        """
        raise NotImplementedError


class Tanh(NeuronModel):
    """Rate neuron ``phi(x) = tanh(x)`` (no parameters)."""

    name = "tanh"

    def __init__(self):
        super().__init__()

    def phi(self, x, xp=np, smooth=False):
        """Output for input ``x``."""
        return xp.tanh(x)

    def activity(self, x, xp=np):
        """Activity in [0, 1], ``(1 + tanh x)/2``."""
        return 0.5 * (1.0 + xp.tanh(x))

    def init_gain_bias(self, rng, n, theta=None):
        gain = np.exp(rng.uniform(np.log(0.5), np.log(4.0), n))
        theta = rng.uniform(-0.95, 0.95, n) if theta is None else np.asarray(theta, dtype=np.float64)
        return gain, -gain * theta


class LIFRate(NeuronModel):
    """LIF steady-state rate curve (Hz). Parameters in seconds."""

    name = "lif"

    def __init__(self, tau_m=0.02, tau_ref=0.002, max_rates=(200.0, 400.0), smoothing=0.02):
        tau_m, tau_ref, smoothing = (_number(v, f"lif: {k}") for k, v in
                                     (("tau_m", tau_m), ("tau_ref", tau_ref), ("smoothing", smoothing)))
        if tau_m <= 0 or tau_ref < 0:
            raise DDMError(f"lif: tau_m must be > 0 and tau_ref >= 0 (got {tau_m}, {tau_ref})")
        if smoothing <= 0:
            raise DDMError(f"lif: smoothing must be > 0 (got {smoothing})")
        if isinstance(max_rates, (str, bytes)) or np.ndim(max_rates) != 1 or len(max_rates) != 2:
            raise DDMError(f"lif: max_rates must be [low, high] in Hz (got {max_rates!r})")
        lo, hi = (_number(v, "lif: max_rates") for v in max_rates)
        if not 0 < lo <= hi < 1.0 / max(tau_ref, 1e-12):
            limit = f"1/tau_ref = {1 / tau_ref:.0f} Hz" if tau_ref > 0 else "infinity"
            raise DDMError(f"lif: max_rates must satisfy 0 < low <= high < {limit} (got {lo}, {hi})")
        super().__init__(tau_m=float(tau_m), tau_ref=float(tau_ref), max_rates=[float(lo), float(hi)],
                         smoothing=float(smoothing))

    def phi(self, x, xp=np, smooth=False):
        """Firing rate in Hz; ``smooth=True`` gives the soft-LIF curve for gradients."""
        tau_m, tau_ref, s = self.params["tau_m"], self.params["tau_ref"], self.params["smoothing"]
        j = x - 1.0
        if smooth:
            j = s * (xp.logaddexp(j / s, xp.zeros_like(j)) if xp is not np else np.logaddexp(j / s, 0.0))
            pos = j > 1e-12  # below this the rate is < 1e-3 Hz; keep gradients finite there
        else:
            pos = j > 0
        jj = xp.where(pos, j, xp.ones_like(j))
        return xp.where(pos, 1.0 / (tau_ref + tau_m * xp.log1p(1.0 / jj)), xp.zeros_like(j))

    def activity(self, x, xp=np):
        """Rate as a fraction of the maximum ``1/tau_ref`` (without a refractory period: of the
        highest ``max_rates``, so activity-dependent noise still works)."""
        tau_ref = self.params["tau_ref"]
        return self.phi(x, xp) * (tau_ref if tau_ref > 0 else 1.0 / self.params["max_rates"][1])

    def init_gain_bias(self, rng, n, theta=None):
        tau_m, tau_ref = self.params["tau_m"], self.params["tau_ref"]
        rmax = rng.uniform(*self.params["max_rates"], n)
        theta = rng.uniform(-0.95, 0.95, n) if theta is None else np.clip(np.asarray(theta, dtype=np.float64),
                                                                          -0.99, 0.99)
        jmax = 1.0 / np.expm1((1.0 / rmax - tau_ref) / tau_m)
        gain = jmax / (1.0 - theta)
        return gain, 1.0 - gain * theta


NEURONS = {"tanh": Tanh, "lif": LIFRate}


def make_neuron(spec):
    """Build a neuron model from a name or a ``to_dict()`` form.

    Parameters
    ----------
    spec : NeuronModel, str or dict
        ``"tanh"``, ``"lif"``, or ``{"name": ..., **parameters}``.

    Returns
    -------
    NeuronModel

    Raises
    ------
    DDMError
        Unknown model or parameter, or a parameter of the wrong type or value.
    """
    if isinstance(spec, NeuronModel):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise DDMError(f"neuron model must be a name or a table with 'name' (got {spec!r:.80})")
    spec = dict(spec)
    name = spec.pop("name", None)
    if not isinstance(name, str) or name not in NEURONS:
        raise DDMError(f"unknown neuron model {name!r:.80} (known: {', '.join(NEURONS)})")
    known = [p for p in inspect.signature(NEURONS[name]).parameters]
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise DDMError(f"neuron model {name!r}: unknown parameter(s) {', '.join(unknown)} "
                       f"(known: {', '.join(known) or 'none'})")
    return NEURONS[name](**spec)
