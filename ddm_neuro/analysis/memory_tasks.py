r"""Associative and episodic memory: measurements on any :class:`~ddm_neuro.trajectory.Trajectory`.

Every function reads trajectories only, so the network (torch), the target SDE
(``target`` back end) and Brian2 runs are measured the same way (numpy only).

**Associative memory** (cue-driven switching between attractors, built-in
``switch``). :func:`cue_protocol` builds an input of cue pulses: after a
``lead`` at u = 0, each pulse holds ``u = ±amplitude`` (random sign) for
``width`` and then ``u = 0`` for ``gap``. :func:`switching_success` labels the
state by its nearest well and counts a pulse as a success when, in the window
``settle = (1, 2)`` time units after the pulse ends, most samples sit in the
cued well (positive cue: the well highest along ``variable``). A pulse *had to
move* the state when most samples in the ``before`` window preceding it sat in
another well. Rates carry the binomial standard error ``sqrt(p (1 - p) / n)``;
:func:`compare_proportions` gives the pooled standard error of a difference.

**Episodic memory** (a ring of wells visited in order, built-in ``ring``).
:func:`visit_sequence` labels the state by well with hysteresis (a label
changes only on entering another well's core) and measures the fraction of
transitions going forward ``k -> k+1 mod K``, the cycle rate (net forward
transitions / K per time unit) and the dwell times. :func:`angular_current`
is the mean angular velocity ``<dθ/dt>``, which equals ``2π J`` for the
stationary probability current ``J`` around the circle.

**Risken's closed form** (Risken, *The Fokker-Planck Equation*, ch. 11) for
``dθ = h(θ) dt + sqrt(2 D) dW`` on a circle of length ``L``, ``h`` periodic
(e.g. ``h = F - V'(θ)``): with ``ψ(x) = ∫_0^x h / D``,

.. math::

    J = \frac{D\,(1 - e^{-\psi(L)})}{\int_0^L dx \int_0^L dy\; e^{\psi(x) - \psi(x + y)}},
    \qquad p(x) = \frac{J}{D}\,\frac{\int_0^L e^{\psi(x) - \psi(x + y)}\,dy}{1 - e^{-\psi(L)}}

(:func:`risken_current`, :func:`risken_density`). The mean velocity is
``J L``. For ``ring`` (``dx = λ(1 - r²) x - h(θ) y``, ``dy = λ(1 - r²) y + h(θ) x``,
additive isotropic noise σ, ``h = ω - a sin Kθ``) Itô's formula gives exactly
``dθ = h(θ) dt + (σ / r) dW_θ`` (the Laplacian of ``atan2`` vanishes, so there
is no drift correction) and ``dr = (λ(1 - r²) r + σ²/(2 r)) dt + σ dW_r``: the
Itô correction lives in the radius, which settles slightly outside 1. With the
radius pinned (λ large) the angle is the 1-D SDE above with
``D = σ² <r⁻²> / 2``; :func:`ring_angle_diffusion` computes ``<r⁻²>`` from the
stationary radial density ``p(r) ∝ r exp(2 λ (r²/2 - r⁴/4) / σ²)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DDMError
from ..run.inputs import InputSignal

__all__ = ["CueProtocol", "cue_protocol", "SwitchingResult", "switching_success", "compare_proportions",
           "VisitResult", "visit_sequence", "ring_centres", "angular_current", "risken_current",
           "risken_density", "ring_angle_diffusion"]


def _positive(name, value, allow_zero=False):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise DDMError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'} (got {value!r})")
    return float(value)


# --------------------------------------------------------------------------- associative memory
@dataclass
class CueProtocol:
    """A train of cue pulses (see :func:`cue_protocol`).

    Attributes
    ----------
    signal : InputSignal
        The input u(s) to simulate with.
    onsets : ndarray (n_pulses,)
        Pulse start times (SDE units).
    signs : ndarray (n_pulses,)
        +1 or -1: the cued direction.
    amplitude, width, gap, lead : float
    """

    signal: InputSignal
    onsets: np.ndarray
    signs: np.ndarray
    amplitude: float
    width: float
    gap: float
    lead: float

    @property
    def n_pulses(self):
        """Number of pulses."""
        return len(self.onsets)

    @property
    def duration(self):
        """Time the protocol needs: lead + n_pulses (width + gap)."""
        return self.lead + self.n_pulses * (self.width + self.gap)


def cue_protocol(n_pulses, amplitude, width, gap, seed=None, *, lead=None, n_inputs=1, channel=0):
    """Cue pulses of random sign: ``u = ±amplitude`` for ``width``, then 0 for ``gap``.

    Parameters
    ----------
    n_pulses : int
    amplitude, width, gap : float
        Pulse height (input units), pulse length and pause after it (SDE time units).
    seed : int or numpy.random.Generator, optional
        Draws the signs (independent, ±1 with probability 1/2).
    lead : float, optional
        Time at u = 0 before the first pulse (default ``gap``), so the first
        pulse, like every other, finds a settled state.
    n_inputs, channel : int
        Input channels of the model and the one that carries the cue (others are 0).

    Returns
    -------
    CueProtocol
    """
    if isinstance(n_pulses, bool) or not isinstance(n_pulses, (int, np.integer)) or n_pulses < 1:
        raise DDMError(f"n_pulses must be an integer >= 1 (got {n_pulses!r})")
    amplitude, width, gap = (_positive(n, v) for n, v in (("amplitude", amplitude), ("width", width), ("gap", gap)))
    lead = gap if lead is None else _positive("lead", lead, allow_zero=True)
    if not (isinstance(channel, (int, np.integer)) and 0 <= channel < n_inputs):
        raise DDMError(f"channel must be an input index in 0..{n_inputs - 1} (got {channel!r})")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=int(n_pulses))
    onsets = lead + np.arange(n_pulses) * (width + gap)
    times, levels = ([0.0], [0.0]) if lead > 0 else ([], [])
    for on, s in zip(onsets, signs):
        times += [on, on + width]
        levels += [s * amplitude, 0.0]
    values = np.zeros((len(times), n_inputs))
    values[:, channel] = levels
    return CueProtocol(InputSignal(times, values), onsets, signs, amplitude, width, gap, lead)


@dataclass
class SwitchingResult:
    """Outcome of :func:`switching_success` (pulses x trials pooled).

    Attributes
    ----------
    success : ndarray (trials, n_pulses) bool
        The state sat in the cued well after the pulse.
    moved : ndarray (trials, n_pulses) bool
        Before the pulse it sat in another well (the cue had to move it).
    """

    success: np.ndarray
    moved: np.ndarray

    @property
    def n(self):
        """Pulses counted (trials x pulses)."""
        return int(self.success.size)

    @property
    def rate(self):
        """Fraction of all pulses after which the state sat in the cued well."""
        return float(self.success.mean())

    @property
    def se(self):
        """Binomial standard error of :attr:`rate`."""
        return _binomial_se(self.rate, self.n)

    @property
    def n_moved(self):
        """Pulses that had to move the state."""
        return int(self.moved.sum())

    @property
    def moved_fraction(self):
        """Fraction of pulses that had to move the state."""
        return self.n_moved / self.n

    @property
    def switch_rate(self):
        """Success among the pulses that had to move the state (nan when none had to)."""
        return float(self.success[self.moved].mean()) if self.n_moved else float("nan")

    @property
    def switch_se(self):
        """Binomial standard error of :attr:`switch_rate`."""
        return _binomial_se(self.switch_rate, self.n_moved)

    @property
    def switch_se_trials(self):
        """Standard error of :attr:`switch_rate` from the spread over trials (cluster-robust; nan for 1 trial).

        ``sqrt(m / (m - 1) * sum_i (k_i - p n_i)^2) / sum_i n_i`` over the m trials,
        ``k_i`` successes among the ``n_i`` moved pulses of trial i. Larger than
        :attr:`switch_se` when pulses within a trial are not independent.
        """
        m = self.moved.shape[0]
        if m < 2 or not self.n_moved:
            return float("nan")
        k = (self.success & self.moved).sum(axis=1)
        n = self.moved.sum(axis=1)
        return float(math.sqrt(m / (m - 1) * np.sum((k - self.switch_rate * n) ** 2)) / n.sum())

    @property
    def hold_rate(self):
        """Success among the pulses that cued the well the state was already in."""
        stay = ~self.moved
        return float(self.success[stay].mean()) if stay.any() else float("nan")

    def to_dict(self):
        """Plain numbers for printing and JSON."""
        return {"n": self.n, "rate": self.rate, "se": self.se, "n_moved": self.n_moved,
                "moved_fraction": self.moved_fraction, "switch_rate": self.switch_rate,
                "switch_se": self.switch_se, "switch_se_trials": self.switch_se_trials, "hold_rate": self.hold_rate}


def _binomial_se(p, n):
    return math.sqrt(p * (1 - p) / n) if n and math.isfinite(p) else float("nan")


def _as_wells(wells, d, what="wells"):
    w = np.asarray(wells, dtype=np.float64)
    w = w[:, None] if w.ndim == 1 and d == 1 else w
    if w.ndim != 2 or w.shape[1] != d or len(w) < 2 or not np.all(np.isfinite(w)):
        raise DDMError(f"{what} must be at least 2 finite points of dimension {d} (the trajectory's), "
                       f"got shape {np.shape(wells)}")
    return w


def _nearest(z, wells):
    """Index of the nearest well for each state z (..., d)."""
    return np.argmin(np.linalg.norm(z[..., None, :] - wells, axis=-1), axis=-1)


def _check_input(traj, signal):
    recorded = (traj.meta or {}).get("input")
    if recorded is None:
        return
    try:
        rec = InputSignal.from_dict(recorded)
    except (DDMError, KeyError, TypeError, ValueError):
        return
    n = min(len(rec.times), len(signal.times))
    same = rec.values.shape[1] == signal.values.shape[1] and np.allclose(rec.times[:n], signal.times[:n]) \
        and np.allclose(rec.values[:n], signal.values[:n])
    if not same:
        raise DDMError("the trajectory was simulated with a different input than this protocol "
                       "(simulate with u=protocol.signal)")


def switching_success(traj, protocol, wells, *, settle=(1.0, 2.0), before=1.0, variable=0, polarity=1):
    """Did the state go to the cued well after each pulse?

    Parameters
    ----------
    traj : Trajectory
        Simulated with ``u = protocol.signal`` for at least ``protocol.duration``.
    protocol : CueProtocol
    wells : array_like (w,) or (w, d)
        Well positions (for ``switch``: ``[-1, 1]``). States are labelled by the nearest well.
    settle : (float, float)
        Window after the pulse's end, in SDE time units, where the state is judged
        (must end within ``protocol.gap``).
    before : float
        Window before the pulse where the start well is read.
    variable : int
        The coordinate a positive cue pushes up: it cues the well highest along it.
    polarity : {1, -1}
        -1 when a positive input pushes ``variable`` down.

    Returns
    -------
    SwitchingResult
    """
    lo, hi = (_positive("settle[0]", settle[0], allow_zero=True), _positive("settle[1]", settle[1]))
    before = _positive("before", before)
    if hi <= lo or hi > protocol.gap + 1e-12:
        raise DDMError(f"settle window {settle} must be increasing and end within the gap ({protocol.gap:g}) "
                       "before the next pulse")
    if polarity not in (1, -1) or not (0 <= variable < traj.dim):
        raise DDMError(f"polarity must be 1 or -1 and variable in 0..{traj.dim - 1} (got {polarity}, {variable})")
    w = _as_wells(wells, traj.dim)
    need = protocol.onsets[-1] + protocol.width + hi
    if traj.t[-1] + 0.5 * traj.dt < need:
        raise DDMError(f"the trajectory covers {traj.t[-1]:g} time units, the protocol needs {need:g} "
                       f"(simulate for protocol.duration = {protocol.duration:g})")
    _check_input(traj, protocol.signal)
    cued = np.where(protocol.signs * polarity > 0, np.argmax(w[:, variable]), np.argmin(w[:, variable]))
    labels = _nearest(traj.z, w)  # (trials, n)
    t = traj.t
    success = np.zeros((traj.trials, protocol.n_pulses), dtype=bool)
    moved = np.zeros_like(success)
    for j, (on, c) in enumerate(zip(protocol.onsets, cued)):
        off = on + protocol.width
        after = (t >= off + lo - 1e-9) & (t <= off + hi + 1e-9)
        pre = (t >= on - before - 1e-9) & (t < on - 1e-9)
        if not pre.any():
            pre = np.arange(len(t)) == np.searchsorted(t, on - 1e-9)
        success[:, j] = (labels[:, after] == c).mean(axis=1) > 0.5
        moved[:, j] = (labels[:, pre] == c).mean(axis=1) < 0.5
    return SwitchingResult(success, moved)


def compare_proportions(k1, n1, k2, n2):
    """Difference of two binomial proportions and its pooled standard error.

    Returns
    -------
    diff, se, z : float
        ``k1/n1 - k2/n2``, ``sqrt(p (1 - p) (1/n1 + 1/n2))`` with ``p`` pooled, and
        ``diff / se`` (0 when both are 0).
    """
    if n1 < 1 or n2 < 1:
        raise DDMError(f"both counts must be >= 1 (got n1={n1}, n2={n2})")
    p = (k1 + k2) / (n1 + n2)
    diff = k1 / n1 - k2 / n2
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    z = 0.0 if diff == 0 else (diff / se if se > 0 else math.copysign(math.inf, diff))
    return diff, se, z


# --------------------------------------------------------------------------- episodic memory
def ring_centres(K, a, omega, radius=1.0):
    """Stable wells of ``h(θ) = ω - a sin Kθ`` on a circle, in forward (counter-clockwise) order.

    ``h = 0`` with ``h' = -a K cos Kθ < 0``: ``θ_k = (arcsin(ω / a) + 2π k) / K``.

    Returns
    -------
    ndarray (K, 2)
        Points ``radius (cos θ_k, sin θ_k)``.
    """
    K = int(K)
    if K < 1 or not (a > 0 and abs(omega) < a):
        raise DDMError(f"wells need K >= 1 and |omega| < a (got K={K}, a={a}, omega={omega}); "
                       "with |omega| >= a the drift rotates without stopping (a limit cycle, no wells)")
    theta = (math.asin(omega / a) + 2 * math.pi * np.arange(K)) / K
    return radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


@dataclass
class VisitResult:
    """Outcome of :func:`visit_sequence`.

    Attributes
    ----------
    labels : list of ndarray
        Per trial, the sequence of wells visited (consecutive repeats removed).
    entry_times : list of ndarray
        Per trial, the time each visit began.
    n_forward, n_backward, n_other : int
        Transitions ``k -> k+1``, ``k -> k-1`` (mod K), and jumps further.
    dwell_times : ndarray
        Intervals between successive well entries, all trials (a trial's first
        visit is excluded when the trial starts inside it: its start was not seen).
    cycle_rate, cycle_se : float
        Net forward transitions / K per time unit, and its standard error
        (from the spread over trials; Poisson ``sqrt(n_f + n_b) / (K T)`` for one trial).
    total_time : float
        Trials x duration.
    """

    labels: list
    entry_times: list
    n_forward: int
    n_backward: int
    n_other: int
    dwell_times: np.ndarray
    cycle_rate: float
    cycle_se: float
    total_time: float

    @property
    def n_transitions(self):
        """All transitions between wells."""
        return self.n_forward + self.n_backward + self.n_other

    @property
    def forward_fraction(self):
        """Fraction of transitions that go forward (nan without transitions)."""
        return self.n_forward / self.n_transitions if self.n_transitions else float("nan")

    @property
    def forward_se(self):
        """Binomial standard error of :attr:`forward_fraction`."""
        return _binomial_se(self.forward_fraction, self.n_transitions)

    @property
    def transition_rate(self):
        """Transitions per time unit."""
        return self.n_transitions / self.total_time

    def to_dict(self):
        """Plain numbers for printing and JSON."""
        dw = self.dwell_times
        return {"n_transitions": self.n_transitions, "n_forward": self.n_forward, "n_backward": self.n_backward,
                "n_other": self.n_other, "forward_fraction": self.forward_fraction, "forward_se": self.forward_se,
                "cycle_rate": self.cycle_rate, "cycle_se": self.cycle_se,
                "mean_dwell": float(dw.mean()) if len(dw) else float("nan"),
                "mean_dwell_se": float(dw.std(ddof=1) / math.sqrt(len(dw))) if len(dw) > 1 else float("nan"),
                "total_time": self.total_time}


def visit_sequence(traj, centres, *, core=0.35):
    """Order of visits to wells at ``centres``, with hysteresis.

    A state is in well ``k``'s core when it lies within ``core`` times the
    distance from ``centres[k]`` to the nearest other centre; the label changes
    only when the state enters another core (fast recrossings of a barrier do
    not count).

    Parameters
    ----------
    traj : Trajectory
    centres : array_like (K, d)
        Well positions **in forward order** (K >= 3, so that forward and
        backward differ); for ``ring`` see :func:`ring_centres`.
    core : float
        Core radius as a fraction of the nearest-centre distance (< 0.5, so cores do not overlap).

    Returns
    -------
    VisitResult
    """
    c = _as_wells(centres, traj.dim, "centres")
    K = len(c)
    if K < 3:
        raise DDMError(f"visit_sequence needs K >= 3 wells to tell forward from backward (got {K})")
    core = _positive("core", core)
    if core >= 0.5:
        raise DDMError(f"core must be < 0.5 so that the cores do not overlap (got {core})")
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    radius = core * dist.min(axis=1)
    labels, entries, dwell, per_trial = [], [], [], []
    nf = nb = no = 0
    for trial in traj.z:
        ok = np.isfinite(trial).all(axis=1)
        d = np.linalg.norm(trial[:, None, :] - c[None], axis=-1)
        inside = (d < radius) & ok[:, None]
        hit = np.flatnonzero(inside.any(axis=1))
        seq = np.argmax(inside[hit], axis=1)
        keep = np.r_[True, seq[1:] != seq[:-1]] if len(seq) else np.zeros(0, dtype=bool)
        seq, times = seq[keep], traj.t[hit[keep]]
        step = (seq[1:] - seq[:-1]) % K
        f, b = int(np.sum(step == 1)), int(np.sum(step == K - 1))
        nf, nb, no = nf + f, nb + b, no + len(step) - f - b
        labels.append(seq)
        entries.append(times)
        censored = len(times) and times[0] <= traj.t[0]  # began in a well: its dwell started unseen
        dwell.append(np.diff(times)[1:] if censored else np.diff(times))
        per_trial.append((f - b) / (K * traj.duration))
    total = traj.trials * traj.duration
    rate = (nf - nb) / (K * total)
    se = float(np.std(per_trial, ddof=1) / math.sqrt(len(per_trial))) if len(per_trial) > 1 \
        else math.sqrt(nf + nb) / (K * total)
    return VisitResult(labels, entries, nf, nb, no, np.concatenate(dwell) if dwell else np.zeros(0),
                       rate, se, total)


def angular_current(traj, centre=(0.0, 0.0), variables=(0, 1), max_jump=math.pi / 2):
    """Mean angular velocity ``<dθ/dt>`` around ``centre`` in the plane of two variables.

    θ is unwrapped along each trial; the velocity is ``(θ(end) - θ(0)) / duration``
    per trial, averaged over trials. It equals ``2π J``, ``J`` the stationary
    probability current around the circle (counter-clockwise positive).

    Parameters
    ----------
    traj : Trajectory
    centre : (float, float)
    variables : (int, int)
        The two coordinates of the plane.
    max_jump : float
        Largest change of θ between samples accepted (radians, at most π). A step
        near π is ambiguous (the state passed close to the centre, or the sampling
        is too coarse) and is refused; with ``max_jump = π`` every step is read as
        the shorter turn.

    Returns
    -------
    velocity, se : float
        Mean over trials and its standard error from their spread (nan for one trial).

    Raises
    ------
    DDMError
        When θ changes by more than ``max_jump`` between two samples.
    """
    i, j = variables
    if traj.dim < 2 or not (0 <= i < traj.dim and 0 <= j < traj.dim) or i == j:
        raise DDMError(f"angular_current needs two distinct variables of a trajectory with d >= 2 "
                       f"(got variables={variables}, d={traj.dim})")
    if not np.isfinite(traj.z).all():
        raise DDMError("angular_current: the trajectory has non-finite values (a diverged trial)")
    theta = np.arctan2(traj.z[..., j] - centre[1], traj.z[..., i] - centre[0])
    jumps = np.abs(np.angle(np.exp(1j * np.diff(theta, axis=1))))
    if not 0 < max_jump <= math.pi:
        raise DDMError(f"max_jump must be in (0, π] (got {max_jump})")
    if jumps.size and jumps.max() > max_jump:
        raise DDMError(f"angular_current: θ moves by up to {jumps.max():.2f} rad between samples, over "
                       f"max_jump = {max_jump:.2f} ({int(np.sum(jumps > max_jump))} steps; record more finely, "
                       "or the state passes too close to the centre: max_jump=math.pi reads each step as the "
                       "shorter turn)")
    theta = np.unwrap(theta, axis=1)
    v = (theta[:, -1] - theta[:, 0]) / traj.duration
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


# --------------------------------------------------------------------------- Risken's closed form
def _risken(drift_fn, D, L, n, reflected=False):
    """Grid, stationary density and current J: shared by :func:`risken_current` and :func:`risken_density`."""
    D, L = _positive("D", D), _positive("L", L)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 16:
        raise DDMError(f"n must be an integer >= 16 (got {n!r})")
    probe = np.linspace(0.0, 2 * L, 4 * n + 1)
    hp = np.asarray(drift_fn(probe), dtype=np.float64)
    if hp.shape != probe.shape or not np.all(np.isfinite(hp)):
        raise DDMError("drift_fn must map an array of angles to finite drifts of the same shape")
    if np.max(np.abs(hp[:2 * n + 1] - hp[2 * n:])) > 1e-8 * (1 + np.max(np.abs(hp))):
        raise DDMError(f"drift_fn is not periodic with period L = {L:g}")
    # resolve psi: one step changes it by at most 1/32 (trapezoid error ~ step^2 / 12)
    n = int(min(max(n, math.ceil(32 * np.max(np.abs(hp)) * L / D)), 1 << 21))
    x = np.linspace(0.0, 2 * L, 2 * n + 1)
    dx = L / n
    h = np.asarray(drift_fn(x), dtype=np.float64)
    if np.trapezoid(h[:n + 1], dx=dx) < 0 and not reflected:  # backward tilt: reflect θ -> -θ, J -> -J
        xr, p, J = _risken(lambda th: -np.asarray(drift_fn(-np.asarray(th))), D, L, n, reflected=True)
        return xr, np.r_[p[:1], p[:0:-1]], -J
    psi = np.r_[0.0, np.cumsum((h[1:] + h[:-1]) / 2) * dx] / D  # psi(x) = int_0^x h / D, two periods
    # inner(x) = int_x^{x+L} exp(psi(x) - psi(s)) ds by cumulative sums anchored at the start of short
    # blocks (psi varies by <= 4 within one), so no exponential overflows and no sum cancels
    inner = np.empty(n)
    i0 = 0
    while i0 < n:
        span = np.maximum.accumulate(psi[i0:n]) - np.minimum.accumulate(psi[i0:n])
        i1 = i0 + max(1, int(np.searchsorted(span, 4.0, side="right")))
        expo = psi[i0] - psi[i0:i1 + n]
        if expo.max() > 700:
            raise DDMError(f"risken_current: a barrier of {expo.max():.0f} D; the noise is too weak for "
                           "this quadrature (the current is exponentially small)")
        e = np.exp(expo)
        G = np.r_[0.0, np.cumsum((e[1:] + e[:-1]) / 2) * dx]
        k = np.arange(i1 - i0)
        inner[i0:i1] = np.exp(psi[i0:i1] - psi[i0]) * (G[k + n] - G[k])
        i0 = i1
    tail = -math.expm1(-psi[n])  # 1 - exp(-psi(L)) >= 0 (up to rounding when there is no tilt)
    J = D * tail / (inner.sum() * dx)  # the outer integrand is periodic: rectangle rule
    return x[:n], J * inner / (D * tail), J


def risken_current(drift_fn, D, L=2 * math.pi, n=2000):
    r"""Stationary probability current of ``dθ = h(θ) dt + sqrt(2 D) dW`` on a circle of length ``L``.

    .. math:: J = D (1 - e^{-\psi(L)}) \Big/ \int_0^L dx \int_0^L dy\, e^{\psi(x) - \psi(x+y)},
              \quad \psi(x) = \int_0^x h(s)\, ds / D

    (Risken ch. 11; for ``h = F - V'`` with V periodic, ``ψ(L) = F L / D``).
    The mean velocity ``<dθ/dt>`` is ``J L``.

    Parameters
    ----------
    drift_fn : callable
        ``h(θ)`` for an array of angles, periodic with period ``L``.
    D : float
        Diffusion coefficient (half the noise variance per unit time).
    L : float
        Period.
    n : int
        Quadrature points per period (trapezoid), raised so that ψ changes by at
        most 1/32 per point (relative error about 1e-4 or less).

    Returns
    -------
    float
        J, probability per unit time crossing any point, forward positive.
    """
    return float(_risken(drift_fn, D, L, n)[2])


def risken_density(drift_fn, D, L=2 * math.pi, n=2000):
    """Stationary density ``p(θ)`` on ``[0, L)`` of the same SDE as :func:`risken_current`.

    Returns
    -------
    theta, p : ndarray (n,)
        Grid and density (integrates to 1 over one period).
    """
    x, p, _ = _risken(drift_fn, D, L, n)
    return x, p


def ring_angle_diffusion(sigma, lam, n=4000, r_min=0.5):
    r"""Effective angular diffusion ``D = σ² <r⁻²> / 2`` of the ``ring`` system.

    ``<r⁻²>`` under the stationary radial density of ``dr = (λ(1 - r²) r + σ²/(2r)) dt + σ dW``,
    ``p(r) ∝ r exp(2 λ (r²/2 - r⁴/4) / σ²)`` (the 2-D density ``exp(-2U/σ²)`` times ``r``),
    restricted to ``r > r_min``: over the whole plane ``<r⁻²>`` diverges
    logarithmically at the origin, where the 1-D reduction of the angle fails
    anyway (its weight is about ``exp(-λ / (2σ²))``, negligible when the radius
    is pinned). In ``ρ = r²`` the density is Gaussian (mean 1, variance
    ``v = σ²/λ``), so ``<r⁻²> ≈ 1 + v + 3v² + 15v³`` for small ``v``.

    Returns
    -------
    D, mean_inv_r2 : float
    """
    sigma, lam, r_min = _positive("sigma", sigma), _positive("lam", lam), _positive("r_min", r_min)
    if r_min >= 1:
        raise DDMError(f"r_min must be < 1 (the ring has radius about 1), got {r_min}")
    width = sigma / math.sqrt(2 * lam)  # radial spread near r = 1
    r = np.linspace(max(r_min, 1 - 12 * width), 1 + 12 * width, n)
    logw = np.log(r) + 2 * lam * (r ** 2 / 2 - r ** 4 / 4) / sigma ** 2
    w = np.exp(logw - logw.max())
    m = float(np.trapezoid(w / r ** 2, r) / np.trapezoid(w, r))
    return sigma ** 2 * m / 2, m
