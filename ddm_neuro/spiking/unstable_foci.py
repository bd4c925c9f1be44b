r"""Unstable foci: keep the target's unstable spiral fixed points unstable in the spiking network.

A chaotic attractor such as Lorenz's winds around unstable foci (C+-: the
spiral grows at 0.094 per time unit while it turns at 10.2). Near such a
focus the drift is small, and a spiking network's drift error there -- a few
tenths of a per cent of the drift on the attractor, below what the drift
calibration resolves (its estimate's noise is about 1 %) -- can turn the
weak outward spiral into a small stable cycle. Runs that fall into it stay:
the collapse of a spiking Lorenz.

:func:`calibrate_foci` measures what matters directly. Runs are started in
the hole around each unstable focus ``c`` (in its spiral plane, at radii
between 0.3 and 1.3 window widths) and must leave it (reach 2 window widths)
within 1.5 times the target's slowest escape from the same starts. Where a
run does not, the spiral's growth inside a Gaussian window around the focus
is raised by ``kappa``: the decoders are re-solved for the extra drift

.. math:: \Delta f(z) = \kappa\, w(z)\, P (z - c), \qquad
          w(z) = \exp(-|z - c|^2 / 2 s^2),

with ``P`` the projection onto the spiral plane along the other eigen
directions (so the Jacobian at ``c`` gains ``kappa`` on the spiral's real
part and nothing else), and ``kappa`` is doubled until every run leaves. The
push overshoots the target's growth on purpose: a focus that is too unstable
lets the network go on, one that is stable ends it. The measured escape times
before and after are recorded, so the overshoot is visible.
"""
import copy
import dataclasses
import math

import numpy as np
from tqdm.auto import tqdm

from .. import plugins
from ..errors import DDMError
from ..fit.decoders import fit_lambda, resolve_decoders
from ..run.inputs import InputSignal
from ..run.plan import constant_input
from ..run.target import simulate_sde
from .states import attractor_states, fixed_points, mixed_training_states

#: Start radii of the escape runs, in window widths.
START_RADII = (0.3, 1.3)
#: Radius that counts as having left the hole, in window widths.
ESCAPE_RADIUS = 2.0
#: A run must leave within this multiple of the target's slowest escape from the same starts.
ESCAPE_SLACK = 1.5


class Focus:
    """An unstable focus of the target: centre, spiral eigenvalue and its plane.

    Attributes
    ----------
    centre : ndarray (d,)
    growth, rotation : float
        Real and imaginary part of the spiral's eigenvalue (per time unit).
    projection : ndarray (d, d)
        Projection onto the spiral plane along the other eigen directions.
    basis : ndarray (2, d)
        Orthonormal basis of the spiral plane.
    """

    def __init__(self, centre, eigenvalue, projection, basis):
        self.centre = np.asarray(centre, dtype=np.float64)
        self.growth, self.rotation = float(eigenvalue.real), abs(float(eigenvalue.imag))
        self.projection, self.basis = projection, basis

    def radius(self, z):
        """Distance of ``z`` (..., d) from the centre within the spiral plane (along the other directions)."""
        return np.linalg.norm((z - self.centre) @ self.projection.T, axis=-1)

    def starts(self, radii, rng):
        """States in the spiral plane at ``radii`` from the centre, at random angles."""
        th = rng.uniform(0.0, 2.0 * np.pi, size=len(radii))
        return self.centre + np.asarray(radii)[:, None] * (np.cos(th)[:, None] * self.basis[0]
                                                            + np.sin(th)[:, None] * self.basis[1])

    def to_dict(self):
        return {"centre": self.centre.tolist(), "growth": self.growth, "rotation": self.rotation}


def unstable_foci(sde, z_vis, rng, u0=None):
    """The target's fixed points whose Jacobian has a growing complex pair.

    Fixed points from :func:`ddm_neuro.spiking.states.fixed_points`.

    Returns
    -------
    list of Focus
        One per such fixed point (the pair with the largest real part).
    """
    uu = None if u0 is None else np.asarray(u0, dtype=np.float64)[None]
    out = []
    for c in fixed_points(sde, z_vis, rng, u0):
        lam, V = np.linalg.eig(sde.jacobian(c[None], uu)[0])
        spiral = np.flatnonzero((np.abs(lam.imag) > 1e-9) & (lam.real > 0))
        if not len(spiral):
            continue
        i = spiral[np.argmax(lam[spiral].real)]
        pair = np.flatnonzero(np.isclose(lam, np.conj(lam[i])) | np.isclose(lam, lam[i]))
        P = (V[:, pair] @ np.linalg.inv(V)[pair]).real
        q, _ = np.linalg.qr(np.stack([V[:, i].real, V[:, i].imag], 1))
        out.append(Focus(c, lam[i], P, q.T))
    return out


def escape_times(traj, focus, radius):
    """Per trial: the first time its state is ``radius`` or farther from ``focus`` (inf if never)."""
    far = focus.radius(traj.z) >= radius
    hit = far.any(1)
    first = np.where(hit, far.argmax(1), 0)
    return np.where(hit, traj.t[first], np.inf)


def _part(traj, i, n):
    """Trials ``i n`` to ``(i + 1) n`` of ``traj`` (the runs of focus ``i``)."""
    return dataclasses.replace(traj, z=traj.z[i * n:(i + 1) * n])


def push_decoders(model, sde, foci, kappas, window, rng, n_train=20000):
    """A copy of ``model`` whose drift has the extra spiral growth ``kappa`` in a window around each focus.

    The decoders are re-solved (ridge, the fit's lambda) for the extra drift
    ``sum_f kappa_f w_f(z) P_f (z - c_f)`` on the fit's training states plus
    states around the foci; encoders, gains, biases and the noise are kept.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
    foci : list of Focus
    kappas : sequence of float
        Extra growth per focus (per time unit; 0 leaves it).
    window : float
        Width ``s`` of the Gaussian window (SDE units).
    rng : numpy.random.Generator
    n_train : int

    Returns
    -------
    LatentRNN
    """
    lam = fit_lambda(model)
    near = np.concatenate([f.centre + rng.normal(size=(2000, len(f.centre))) * window for f in foci])
    z, u, _ = mixed_training_states(model, sde, near, n_train, rng)

    def extra(q):
        out = np.zeros_like(q)
        for f, k in zip(foci, kappas):
            dz = q - f.centre
            out += k * np.exp(-(dz ** 2).sum(1) / (2 * window ** 2))[:, None] * (dz @ f.projection.T)
        return out

    # decoders give y + tau f_y: an extra drift df (SDE units) is tau df / (scale T) in y units
    target = extra(z) * (model.tau / (model.scale * model.time_scale))
    new = copy.deepcopy(model)
    new.decoders = model.decoders + resolve_decoders(model, z, u, target, lam)
    return new


def calibrate_foci(model, sde, *, backend="torch", trials=8, window=None, steps=5, dt=None, seed=0, u=None,
                   max_duration=200.0, progress=False):
    """Make runs started in the hole around each unstable focus leave it no later than the target's.

    See the module docstring. Each step simulates ``trials`` runs per focus
    (noise-free, the ``backend``'s spiking simulator), started in its spiral
    plane at radii spread over ``START_RADII`` window widths, for
    ``ESCAPE_SLACK`` times the target's slowest escape from the same starts.
    A focus from which a run has not left the hole (``ESCAPE_RADIUS`` window
    widths) gets its ``kappa`` raised: first to twice the target's growth,
    then doubled, at most ``steps`` times.

    Parameters
    ----------
    model : LatentRNN
        A LIF model (calibrate its drift first: :func:`ddm_neuro.spiking.drift_calibration.calibrate_spiking`).
    sde : SDE
        Its target; must have at least one unstable focus inside its attractor.
    backend : str
        Spiking simulator of the runs (as :func:`~ddm_neuro.spiking.drift_calibration.calibrate_spiking`).
    trials : int
        Runs per focus and step.
    window : float, optional
        Width of the window (SDE units); default 0.4 x the attractor's smallest coordinate std.
    steps : int
        Most raises of ``kappa`` per focus.
    dt : float, optional
        Integration step of the spiking simulator (SDE units).
    seed : int
    u : array (k,), optional
        Constant input (models with inputs).
    max_duration : float
        Longest escape runs allowed (SDE units); a focus whose spiral grows so
        slowly that the target needs longer is refused.
    progress : bool

    Returns
    -------
    LatentRNN
        The model with the pushes that made every run leave (the model as
        given when none was needed); ``meta["foci_calibration"]`` holds, per
        focus, its centre, growth, rotation, the ``kappa`` kept, and each
        step's escape times next to the target's. A focus still trapping runs
        after ``steps`` raises is reported there with ``"escaped": false``.

    Raises
    ------
    DDMError
        Not a LIF model, no unstable focus, a focus too slow to leave within
        ``max_duration``, bad options.
    """
    plugins.get("simulator", backend, "spiking")  # an unknown back end: a clear error before anything runs
    if model.neuron.name != "lif":
        raise DDMError(f"foci calibration needs LIF neurons (this model has {model.neuron.name!r})")
    if int(trials) < 2 or int(steps) < 1:
        raise DDMError(f"trials must be >= 2 and steps >= 1 (got {trials}, {steps})")
    rng = np.random.default_rng(seed)
    u0 = constant_input(model, u)
    signal = None if u0 is None else InputSignal.constant(u0)
    z_vis = attractor_states(sde, rng, u0)
    foci = unstable_foci(sde, z_vis, rng, u0)
    if not foci:
        raise DDMError("the target has no unstable focus (a fixed point with a growing spiral) inside its "
                       "attractor: there is nothing for the foci calibration to do")
    s = float(window) if window is not None else 0.4 * float(z_vis.std(0).min())
    if not s > 0:
        raise DDMError(f"window must be > 0 (got {window})")
    n = int(trials)
    radii = np.linspace(START_RADII[0], START_RADII[1], n) * s
    z0 = np.concatenate([f.starts(radii, rng) for f in foci])
    # the target's own escape, noise-free like the network's runs (3x its linear estimate, to be sure)
    quiet = dataclasses.replace(sde, diffusion_fn=lambda z, xp: 0.0 * sde.diffusion_fn(z, xp), spec=None)
    slow = min(foci, key=lambda f: f.growth)
    horizon = 3.0 * math.log(ESCAPE_RADIUS / START_RADII[0]) / slow.growth
    if ESCAPE_SLACK * horizon / 3.0 > max_duration:
        raise DDMError(f"the focus at {np.round(slow.centre, 4).tolist()} grows at only {slow.growth:.3g} per time "
                       f"unit: the target needs about {horizon / 3.0:.3g} time units to leave it, and the escape runs "
                       f"{ESCAPE_SLACK * horizon / 3.0:.3g} (more than max_duration = {max_duration:g})")
    ref = simulate_sde(quiet, horizon, trials=len(z0), seed=0, z0=z0, u=signal)
    t_tgt = [escape_times(_part(ref, i, n), f, ESCAPE_RADIUS * s) for i, f in enumerate(foci)]
    if any(not np.isfinite(t).all() for t in t_tgt):
        raise DDMError("the target itself does not leave the hole around a focus from some starts; "
                       "pass a smaller window")
    duration = ESCAPE_SLACK * max(float(t.max()) for t in t_tgt)
    kappas = [0.0] * len(foci)
    done = [False] * len(foci)
    records = [{**f.to_dict(), "target_escape": t.tolist(), "steps": []} for f, t in zip(foci, t_tgt)]
    current = model
    fastest = {}
    if backend == "torch":  # the fastest engine here for this size
        from ..run.step_loop import fastest_torch

        fastest = fastest_torch(model.n_neurons, len(z0))
    bar = tqdm(total=int(steps) + 1, desc="calibrate foci", disable=not progress)
    for step in range(int(steps) + 1):
        traj = plugins.simulate(current, duration, backend=backend, mode="spiking", trials=len(z0),
                                seed=int(rng.integers(2 ** 31)), u=signal, z0=z0, dt=dt, noise="none", **fastest)
        for i, f in enumerate(foci):
            if done[i]:
                continue
            t_net = escape_times(_part(traj, i, n), f, ESCAPE_RADIUS * s)
            records[i]["steps"].append({"kappa": kappas[i], "escape": [float(x) for x in t_net]})
            done[i] = bool(np.isfinite(t_net).all())
        bar.update()
        if all(done) or step == int(steps):
            break
        kappas = [k if d else (2.0 * f.growth if k == 0 else 2.0 * k) for k, d, f in zip(kappas, done, foci)]
        current = push_decoders(model, sde, foci, kappas, s, rng)
    bar.close()
    out = copy.deepcopy(current)
    for rec, k, d in zip(records, kappas, done):
        rec.update(kappa=k, escaped=d)
    out.meta["foci_calibration"] = {
        "simulator": backend, "trials": n, "window": s, "duration": duration, "seed": seed,
        "start_radii": [float(radii[0]), float(radii[-1])], "escape_radius": ESCAPE_RADIUS * s,
        "input": None if u0 is None else u0.tolist(), "foci": records,
        "engine": {k: traj.meta[k] for k in ("engine", "device", "threads") if k in traj.meta},
    }
    return out


def foci_summary(info):
    """The foci calibration's steps per focus, as printed lines, and its warnings.

    Parameters
    ----------
    info : dict
        ``model.meta["foci_calibration"]`` (from :func:`calibrate_foci`).

    Returns
    -------
    text : str
        The lines for stdout.
    warnings : list of str
        One sentence per focus from which runs still do not leave (the command
        line prints each as ``  warning: ...`` on stderr).
    """
    from ..run.step_loop import engine_text

    how = engine_text(info.get("engine") or {}).strip(" ()")
    lines = [f"unstable foci ({info['simulator']}{', ' + how if how else ''}; {info['trials']} runs each from radii "
             f"{info['start_radii'][0]:.3g}-"
             f"{info['start_radii'][1]:.3g}, leaving at {info['escape_radius']:.3g} within {info['duration']:.3g} "
             "time units):"]
    warnings = []
    slowest = lambda t: max(t) if all(map(math.isfinite, t)) else math.inf  # noqa: E731
    for f in info["foci"]:
        centre = ", ".join(f"{c:.4g}" for c in f["centre"])
        steps = "; ".join(f"kappa {s['kappa']:.3g}: {sum(map(math.isfinite, s['escape']))}/{len(s['escape'])} left "
                          f"(slowest {slowest(s['escape']):.3g})" for s in f["steps"])
        lines.append(f"  focus ({centre}), growth {f['growth']:.3g}, target's slowest escape "
                     f"{max(f['target_escape']):.3g}: {steps}")
        if not f["escaped"]:
            warnings.append(f"runs still stay near the focus ({centre}) at kappa {f['kappa']:.3g}: the network "
                            "can collapse there")
    return "\n".join(lines), warnings
