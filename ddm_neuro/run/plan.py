"""The run plan: one checked description of a simulation, shared by every simulator.

A simulator back end is a function ``run(plan) -> Trajectory``. The plan is
built and checked once, before any work, by :func:`plan_run` from a model and
the run's request (duration, trials, seed, input, start states, step,
recording step, mode, noise). It fixes the time grid (integration step ``dt``
and recording interval ``record_dt`` in SDE time units, a whole number
``n_sub`` of steps per recorded sample, ``n_rec`` samples from ``t = 0``), the
input signal, the given start states, and the back end's own options with
their declared defaults filled in. A simulator then only integrates; it hands
its latent array back through :meth:`RunPlan.trajectory`, which writes the
standard metadata (DESIGN of the trajectory file: ``backend``, ``mode``,
``seed``, ``input``, ...), so every back end's file reads the same.

Every simulator in the project draws its random numbers from
``numpy.random.default_rng(plan.seed)``; the order of its draws (noise seed,
start states, membrane phases) is its own and fixed, so one seed gives one
run per back end.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import DDMError
from ..trajectory import Trajectory
from .inputs import InputSignal
from ..threads import check_threads, threads_in_force

#: Modes a plan can hold: the rate network, the spiking network, the target SDE itself.
MODES = ("rate", "spiking", "sde")

#: Most integration steps a run may take (10^9 steps: days at any network size).
MAX_STEPS = 1e9


# ----------------------------------------------------------------------------- time grids
def network_steps(model):
    """Default ``(dt, record_dt)`` of a rate-network run in SDE units: the fit's, with ``T dt <= tau / 10``."""
    fit = model.meta.get("fit", {})
    dt = fit.get("integration_dt", 1e-3)
    rec = fit.get("record_dt", 5 * dt)
    dt = min(dt, model.tau / (10 * model.time_scale))
    return dt, max(rec, dt)


def spiking_dt(model):
    """Default integration step of a spiking run in SDE units: 0.1 ms of network time, ``1e-4 / T``."""
    return 1e-4 / model.time_scale


def default_steps(sde, states=None, u=None):
    """Integration step and recording interval (SDE time units) of a target-SDE run, from the drift's rates.

    ``dt = 0.02 / rate`` and ``record_dt = 5 dt``, where ``rate`` is the 95th
    percentile of the drift Jacobian's spectral radius over ``states`` (default:
    the domain grid, or a few probe states).

    Returns
    -------
    dt, record_dt : float
    """
    if states is None:
        states = sde.domain_grid()
    if states is None:
        states = np.random.default_rng(0).normal(size=(64, sde.dim))
    rate = max(sde.characteristic_rate(states, u), 1e-3)
    dt = float(f"{0.02 / rate:.2g}")
    return dt, 5 * dt


def recording_grid(duration, dt, record_dt):
    """Samples, recording interval and sub-steps covering exactly ``duration``.

    ``record_dt`` is adjusted so that a whole number of intervals spans
    ``duration``; the integration step is never coarser than ``dt``.

    Returns
    -------
    n_rec, record_dt, n_sub, dt
    """
    n_rec = max(1, int(round(duration / record_dt))) + 1
    record_dt = duration / (n_rec - 1)
    n_sub = max(1, math.ceil(record_dt / dt - 1e-9))
    return n_rec, record_dt, n_sub, record_dt / n_sub


# ----------------------------------------------------------------------------- inputs and start states
def input_signal(owner, u):
    """``u`` (None, constant or :class:`InputSignal`) as an InputSignal for ``owner`` (None without inputs).

    Parameters
    ----------
    owner : LatentRNN or SDE
        Anything with ``n_inputs`` and ``inputs`` (the channel names).
    u : None, array_like or InputSignal

    Raises
    ------
    DDMError
        An input for a model without inputs, or one with the wrong number of channels.
    """
    if not owner.n_inputs:
        if u is not None and not (isinstance(u, InputSignal) and u.n_inputs == 0):
            raise DDMError("an input was given, but this model has no inputs")
        return None
    if u is None:
        return InputSignal.constant(np.zeros(owner.n_inputs))
    u = u if isinstance(u, InputSignal) else InputSignal.constant(u)
    if u.n_inputs != owner.n_inputs:
        raise DDMError(f"input has {u.n_inputs} channels, the model has {owner.n_inputs} ({', '.join(owner.inputs)})")
    return u


def constant_input(owner, u):
    """The value of a constant input ``u`` as an array (k,), or None for a model without inputs.

    Raises
    ------
    DDMError
        ``u`` steps in time (a piecewise-constant signal with more than one level).
    """
    signal = input_signal(owner, u)
    if signal is None:
        return None
    if len(signal.times) > 1:
        raise DDMError("this run takes a constant input (NAME=VALUE), not steps")
    return signal.values[0]


def start_states(model, trials, rng, z0=None):
    """Latent starts (trials, d): ``z0`` broadcast, or drawn with ``rng`` from the model's stored states.

    ``model`` needs ``init_states`` and ``dim``. Raises :class:`DDMError` for a ``z0`` of the wrong shape.
    """
    if z0 is None:
        z0 = model.init_states[rng.integers(0, len(model.init_states), trials)]
    try:
        return np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, model.dim))
    except ValueError:
        raise DDMError(f"z0 has shape {np.shape(z0)}; expected ({model.dim},) or ({trials}, {model.dim})") from None


# ----------------------------------------------------------------------------- run size
def available_memory():
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def run_size(model, duration, trials, *, coupling=None, buffered_steps=0):
    """Bytes a run of ``model`` holds: the recorded latent (twice: kept and written) and the network state.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        SDE time units.
    trials : int
    coupling : {"factored", "dense"}, optional
        ``"dense"`` adds the N x N weight matrix.
    buffered_steps : int
        Steps of private noise drawn ahead (the torch loop draws 256 at a time: trials x N each).

    Returns
    -------
    int
    """
    _, rec = network_steps(model)
    samples = math.floor(duration / rec) + 1
    latent = 2.0 * trials * samples * model.dim * 8
    state = 8.0 * trials * model.n_neurons * 8  # state, rates, noise, ... per neuron and trial (float64)
    dense = 8.0 * model.n_neurons ** 2 if coupling == "dense" else 0.0
    return latent + state + dense + 8.0 * buffered_steps * trials * model.n_neurons


def check_run_size(model, duration, trials, *, coupling=None, buffered_steps=0):
    """Refuse, before any work, a run that cannot fit in memory or would never end, saying what it would need.

    ``coupling`` and ``buffered_steps`` as :func:`run_size`.

    Returns
    -------
    int
        The bytes the run needs (:func:`run_size`).

    Raises
    ------
    DDMError
        When the run takes more than :data:`MAX_STEPS` integration steps, or
        :func:`run_size` exceeds the memory available now.
    """
    dt, rec = network_steps(model)
    steps = duration / dt
    if not steps <= MAX_STEPS:
        raise DDMError(f"--duration {duration:g} is {steps:.3g} integration steps of {dt:.3g} time units "
                       f"(tau {model.tau:.3g} s, {model.time_scale:.3g} s per time unit), more than the "
                       f"{MAX_STEPS:.0e} a run may take: use a shorter --duration, or check the model's tau and "
                       "time_scale")
    need = run_size(model, duration, trials, coupling=coupling, buffered_steps=buffered_steps)
    have = available_memory()
    if have is not None and need > have:
        gib = 2.0 ** 30
        what = "the dense N x N coupling, " if coupling == "dense" else ""
        raise DDMError(f"--duration {duration:g} x --trials {trials} needs about {need / gib:.3g} GiB "
                       f"({model.n_neurons} neurons, {what}{model.dim} latent dimensions recorded every "
                       f"{rec:.3g} time units), more than the {have / gib:.3g} GiB available: "
                       "use a shorter --duration or fewer --trials" + (" or --coupling factored" if what else ""))
    return need


def check_positive(**values):
    """Refuse any value that is given (not None) and not a finite number > 0, naming it."""
    for name, value in values.items():
        if value is None:
            continue
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and value > 0):
            raise DDMError(f"{name} must be a finite number > 0 (SDE time units), got {value!r}")


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class RunPlan:
    """One simulation, checked: what every simulator back end receives.

    Attributes
    ----------
    model : LatentRNN or None
        The network (None for a run of a bare SDE).
    sde : SDE or None
        The target SDE, for ``mode="sde"`` runs (else None; ``model.sde()`` gives it).
    mode : {"rate", "spiking", "sde"}
    duration : float
        Recorded time per trial, SDE units.
    trials : int
    seed : int or None
        Seed of ``numpy.random.default_rng``, from which the simulator draws.
    dt, record_dt : float
        Integration step and recording interval, SDE units; ``record_dt = n_sub * dt``.
    n_rec, n_sub : int
        Recorded samples (including t = 0) and integration steps per sample.
    input : InputSignal or None
        ``u(s)`` in SDE time; None for models without inputs.
    z0 : ndarray (trials, d) or None
        Given start states; None: drawn by :meth:`start_states`.
    noise : bool or str
        The noise switch (spiking runs: ``"remainder"``, ``"none"`` or ``"model"``).
    options : dict
        The back end's own options, declared defaults filled in (:mod:`ddm_neuro.plugins`).
    progress : bool
        Show a progress display.
    requested_dt, requested_record_dt : float or None
        The caller's ``dt`` and ``record_dt`` before defaults and rounding
        (None: the default). Back ends whose grid is fixed by a compiled
        build or a file (brian2-cpp, NIR consumers) lay their grid from these.
    threads : int
        CPU threads the back end may use (compiled step loops, Brian2 C++ OpenMP);
        default :func:`ddm_neuro.threads.threads_in_force` (1 unless set).
    """

    model: object
    sde: object
    mode: str
    duration: float
    trials: int
    seed: int | None
    dt: float
    record_dt: float
    n_rec: int
    n_sub: int
    input: InputSignal | None
    z0: np.ndarray | None
    noise: object = True
    options: dict = field(default_factory=dict)
    progress: bool = False
    requested_dt: float | None = None
    requested_record_dt: float | None = None
    threads: int = 1

    @property
    def n_steps(self):
        """Integration steps of one trial."""
        return (self.n_rec - 1) * self.n_sub

    @property
    def times(self):
        """Recorded sample times (n_rec,), SDE units."""
        return np.arange(self.n_rec) * self.record_dt

    @property
    def dim(self):
        """Latent dimension d."""
        return self.model.dim if self.model is not None else self.sde.dim

    @property
    def variables(self):
        """Names of the latent variables."""
        return list((self.model if self.model is not None else self.sde).variables)

    @property
    def u0(self):
        """The input at t = 0, (k,), or None without inputs."""
        return None if self.input is None else self.input.values[0]

    def start_states(self, rng):
        """Start states (trials, d): the given ``z0``, or drawn with ``rng`` from the model's stored states."""
        if self.z0 is not None:
            return self.z0
        return start_states(self.model, self.trials, rng)

    def input_on_steps(self, extra=2):
        """The input on the integration grid, ``u(k dt)`` for k = 0 .. n_steps + extra - 1, or None."""
        if self.input is None:
            return None
        return self.input.at(np.arange(self.n_steps + extra) * self.dt)

    def trajectory(self, z, *, backend, spikes_t=None, spikes_i=None, grid=None, **extra):
        """Wrap a simulator's latent array as a :class:`Trajectory` with the standard metadata.

        Parameters
        ----------
        z : ndarray (trials, n_rec, d)
            Latent states in SDE coordinates (rows after a divergence may be NaN).
        backend : str
            The simulator's registered name.
        spikes_t, spikes_i : ndarray, optional
            Spike times (SDE units) and indices ``neuron + trial * N``.
        grid : (dt, record_dt), optional
            The back end's own grid, where a compiled build or a file fixes it
            (then ``z`` may hold another number of samples than ``n_rec``).
        **extra
            Further metadata of this back end (coupling, device, fano, ...).

        Returns
        -------
        Trajectory
        """
        z = np.asarray(z, dtype=np.float64)
        dt, record_dt = (self.dt, self.record_dt) if grid is None else (float(grid[0]), float(grid[1]))
        n_rec = self.n_rec if grid is None else z.shape[1] if z.ndim == 3 else -1
        if z.shape != (self.trials, n_rec, self.dim):
            raise DDMError(f"back end {backend!r} returned a latent of shape {z.shape}; the plan expects "
                           f"{(self.trials, n_rec, self.dim)}")
        owner = self.model if self.model is not None else self.sde
        meta = {"backend": backend, "mode": self.mode,
                "model_id": None if self.model is None else self.model.meta.get("model_id"),
                "system": self.sde.name if self.model is None else self.model.meta.get("sde_name"),
                "variables": self.variables, "seed": self.seed, "duration": float(self.duration),
                "trials": int(self.trials), "integration_dt": dt,
                "noise": self.noise if isinstance(self.noise, str) else bool(self.noise),
                "input": None if self.input is None else self.input.to_dict()}
        if self.model is not None:
            meta["n_neurons"] = owner.n_neurons
        finite = np.isfinite(z).all(axis=(1, 2))
        if self.mode != "sde":
            meta["diverged_trials"] = [int(i) for i in np.flatnonzero(~finite)]
        meta.update(extra)
        return Trajectory(t=np.arange(n_rec) * record_dt, z=z, dt=record_dt, meta=meta, spikes_t=spikes_t,
                          spikes_i=spikes_i)


def plan_run(model, duration, *, mode="rate", trials=1, seed=None, u=None, z0=None, dt=None, record_dt=None,
             noise=True, progress=False, options=None, sde=None, threads=None):
    """Build and check the plan of one simulation, before any work.

    Parameters
    ----------
    model : LatentRNN or None
        The network; None with ``sde`` for a run of a bare SDE.
    duration : float
        Recorded time per trial, SDE units.
    mode : {"rate", "spiking", "sde"}
    trials : int
    seed : int, optional
    u : None, array_like or InputSignal
        Input in SDE time.
    z0 : array (d,) or (trials, d), optional
        Start latent states; default: drawn from the model's stored states
        (on the target's visited distribution) by the simulator.
    dt, record_dt : float, optional
        Integration step and recording interval, SDE units. Defaults:
        :func:`network_steps` (rate and sde runs of a model),
        :func:`spiking_dt` (spiking runs), :func:`default_steps` (bare SDE).
    noise : bool or str
    progress : bool
    options : dict, optional
        The back end's resolved options (see :meth:`ddm_neuro.plugins.Plugin.resolve`).
    sde : SDE, optional
        The target (default ``model.sde()`` for ``mode="sde"``).
    threads : int, optional
        CPU threads (default :func:`ddm_neuro.threads.threads_in_force`).

    Returns
    -------
    RunPlan

    Raises
    ------
    DDMError
        A duration, trial count, step or start state that cannot run, or an input that does not fit.
    """
    if mode not in MODES:
        raise DDMError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    check_positive(duration=duration, dt=dt, record_dt=record_dt)
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise DDMError(f"trials must be an integer >= 1 (got {trials!r})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise DDMError(f"seed must be an integer or None (got {seed!r})")
    if model is None and sde is None:
        raise DDMError("a run needs a model or an SDE")
    threads = threads_in_force() if threads is None else check_threads(threads)
    if mode == "sde" and sde is None:
        sde = model.sde()
    owner = model if model is not None else sde
    requested = (None if dt is None else float(dt), None if record_dt is None else float(record_dt))
    if model is not None:
        d0, r0 = network_steps(model)
        if mode == "spiking":
            d0 = spiking_dt(model)
    else:
        d0, r0 = default_steps(sde)
    dt = dt or d0
    record_dt = record_dt or max(r0, dt)
    n_rec, record_dt, n_sub, dt = recording_grid(float(duration), dt, record_dt)
    signal = input_signal(owner, u)
    if z0 is not None:
        try:
            z0 = np.array(np.broadcast_to(np.asarray(z0, dtype=np.float64), (int(trials), owner.dim)))
        except ValueError:
            raise DDMError(f"z0 has shape {np.shape(z0)}; expected ({owner.dim},) or "
                           f"({trials}, {owner.dim})") from None
    return RunPlan(model=model, sde=sde, mode=mode, duration=float(duration), trials=int(trials),
                   seed=None if seed is None else int(seed), dt=float(dt), record_dt=float(record_dt),
                   n_rec=int(n_rec), n_sub=int(n_sub), input=signal, z0=z0, noise=noise,
                   options=dict(options or {}), progress=bool(progress), requested_dt=requested[0],
                   requested_record_dt=requested[1], threads=threads)
