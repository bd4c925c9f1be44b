"""``analyze``: connectivity, drift decomposition and entropy production of a trained network.

Runs (all of the same length, trials and sampling, started on the target's
visited distribution): target A, target B (the target-vs-target baseline), the
network, and with ``symmetric`` a fit constrained to ``W = W^T``
(:mod:`.symmetric`). Every statistic of a run is reported with its block
standard error, and the two target runs show what "no difference" looks like.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DDMError
from ..plugins import simulate
from . import connectivity, entropy
from .decomposition import field_summary, split_drift
from .density import LogDensity

#: States used for connectivity shares and drift-decomposition summaries.
N_STATES = 4000


@dataclass
class Analysis:
    """Result of :func:`analyze`.

    Attributes
    ----------
    results : dict
        JSON-ready numbers (``entropy_production_rate``, ``connectivity``, ...).
    data : dict
        Objects and arrays for the figures (not written to JSON).
    """

    results: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)


def _seeds(seed, n):
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def _states(z, n, rng):
    pooled = z.reshape(-1, z.shape[-1])
    pooled = pooled[np.isfinite(pooled).all(axis=1)]
    return pooled[rng.choice(len(pooled), min(n, len(pooled)), replace=False)]


def _run_network(model, duration, trials, seed, progress, label, u=None):
    from ..run.rate import simulate_network

    traj = simulate_network(model, duration, trials=trials, seed=seed, u=u, progress=progress)
    bad = traj.meta.get("diverged_trials") or []
    if len(bad) == traj.trials:
        raise DDMError(f"the {label} diverged in every trial; check the model (ddm-neuro verify) before analysing it")
    keep = np.setdiff1d(np.arange(traj.trials), bad)
    return traj.z[keep], len(bad)


def symmetric_counterpart(model, sde, progress=False):
    """Fit :func:`.symmetric.fit_symmetric` with the model's own fit settings (N, neuron, tau, seed, steps)."""
    from ..fit.matching import FitConfig
    from .symmetric import fit_symmetric

    cfg = dict(model.meta.get("fit", {}).get("config") or {})
    known = set(FitConfig.__dataclass_fields__)
    cfg = {k: v for k, v in cfg.items() if k in known}
    cfg.update(n_neurons=model.n_neurons, neuron=model.neuron.to_dict(), tau=model.tau, progress=progress)
    return fit_symmetric(sde, **cfg)


def analyze(model, sde=None, *, duration=100.0, trials=16, seed=0, symmetric=False, symmetric_model=None,
            currents=None, switching=False, epr_degree=None, progress=False):
    """Decompose a fitted network: connectivity parts, drift split, entropy production.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE, optional
        The target (default: rebuilt from the model file).
    duration : float
        SDE time units per trial of every run.
    trials : int
    seed : int
        Seeds every run (independent streams per run).
    symmetric : bool
        Also fit a network with symmetric ``W`` (same N, neuron and seed) and
        analyse it (or pass ``symmetric_model``).
    symmetric_model : LatentRNN, optional
        A symmetric-only fit to use instead of fitting one.
    currents : bool or None
        Probability currents and entropy production. None: on for d >= 2, off
        for d = 1; True on a 1-D system is an error.
    switching : bool
        Success rate of cue pulses (input-driven models only, :mod:`ddm_neuro.analysis.memory_tasks`).
    epr_degree : int, optional
        Degree of the entropy-production basis (default ``degree_for(d, entropy.EPR_DEGREES)``).
    progress : bool

    Returns
    -------
    Analysis
    """
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise DDMError(f"duration must be a finite number > 0 (got {duration!r})")
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 2:
        raise DDMError(f"trials must be an integer >= 2 (got {trials!r}): standard errors need independent runs")
    sde = sde if sde is not None else model.sde()
    d = model.dim
    if sde.dim != d:
        raise DDMError(f"the SDE has {sde.dim} variables, the model {d}")
    if currents and d == 1:
        raise DDMError("a 1-D system has no probability current (a stationary 1-D diffusion is in detailed "
                       "balance: its current and entropy production are zero); drop --currents, or analyse "
                       "a system with 2 or more variables")
    currents = d >= 2 if currents is None else bool(currents)
    if switching and not model.n_inputs:
        raise DDMError("model has no inputs; a switching analysis needs an input-driven model such as `switch` "
                       "(drop --switching)")
    if symmetric_model is None and symmetric:
        symmetric_model = symmetric_counterpart(model, sde, progress=progress)
    s_a, s_b, s_net, s_sym, s_rng, s_sw = _seeds(seed, 6)
    rng = np.random.default_rng(s_rng)
    run_a = simulate(model, duration, backend="target", mode="sde", trials=trials, seed=s_a, progress=progress)
    dt = run_a.dt
    res = {"system": sde.name, "variables": list(sde.variables),
           "model": {"n_neurons": model.n_neurons, "neuron": model.neuron.name, "tau": model.tau,
                     "time_scale": model.time_scale, "model_id": model.meta.get("model_id"),
                     "constraint": model.meta.get("fit", {}).get("constraint"),
                     "drift_error": model.meta.get("fit", {}).get("drift_error")},
           "settings": {"duration": float(duration), "trials": int(trials), "seed": int(seed), "dt": dt,
                        "inputs": "zero" if model.n_inputs else None},
           "notes": []}
    data = {"model": model, "sde": sde, "sym_model": symmetric_model}
    states = _states(run_a.z, N_STATES, rng)
    data["states"] = states
    res["connectivity"] = {"network": connectivity.connectivity_summary(model, states)}
    if symmetric_model is not None:
        res["connectivity"]["symmetric_fit"] = connectivity.connectivity_summary(symmetric_model, states)
        f = symmetric_model.meta.get("fit", {})
        res["symmetric_fit"] = {"drift_error": f.get("drift_error"), "diffusion_error": f.get("diffusion_error"),
                                "latent_matrix": f.get("latent_matrix"),
                                "max_asymmetry": float(np.abs(symmetric_model.weights()
                                                              - symmetric_model.weights().T).max())}
    if currents:
        _currents(res, data, model, sde, run_a, duration, trials, (s_b, s_net, s_sym), rng, progress, epr_degree)
    elif d == 1:
        res["notes"].append("currents off: a 1-D system is in detailed balance (no probability current)")
    if switching:
        res["switching"] = _switching(model, sde, duration, trials, s_sw, progress)
    return Analysis(res, data)


def _currents(res, data, model, sde, run_a, duration, trials, seeds, rng, progress, degree):
    """Entropy production, rotation and the reversible/irreversible split (fills ``res`` and ``data``)."""
    s_b, s_net, s_sym = seeds
    run_b = simulate(model, duration, backend="target", mode="sde", trials=trials, seed=s_b, progress=progress)
    dt = run_a.dt
    runs = {"target_a": run_a.z, "target_b": run_b.z}
    net_z, lost = _run_network(model, duration, trials, s_net, progress, "network")
    runs["network"] = net_z
    if lost:
        res["notes"].append(f"network: {lost} of {trials} trial(s) diverged and were left out")
    sym = data["sym_model"]
    if sym is not None:
        runs["symmetric_fit"], lost = _run_network(sym, duration, trials, s_sym, progress, "symmetric fit")
        if lost:
            res["notes"].append(f"symmetric fit: {lost} of {trials} trial(s) diverged and were left out")
    basis = entropy.make_basis(run_a.z, degree)
    mu = run_a.z.reshape(-1, sde.dim).mean(0)
    singular = entropy.singular(sde, run_a.z)  # infinite/undefined entropy production: not estimated
    if singular:
        res["notes"].append(singular)
    stats = {k: entropy.run_statistics(z, dt, basis, mu, epr=not singular) for k, z in runs.items()}
    a, b = stats["target_a"], stats["target_b"]
    pair_se = math.hypot(a["entropy_production_stderr"], b["entropy_production_stderr"])
    epr = {"target": 0.5 * (a["entropy_production"] + b["entropy_production"]),
           "target_stderr": 0.5 * pair_se,
           "target_runs": [a["entropy_production"], b["entropy_production"]],
           "baseline": abs(a["entropy_production"] - b["entropy_production"]),
           "baseline_spread": pair_se,
           "network": stats["network"]["entropy_production"],
           "network_stderr": stats["network"]["entropy_production_stderr"],
           "closed_form": entropy.closed_form_epr(sde) if not sde.n_inputs else None,
           "n_basis": len(basis), "basis_degree": max(sum(p) for p in basis.powers),
           "undefined": singular}
    if "symmetric_fit" in stats:
        epr["symmetric_fit"] = stats["symmetric_fit"]["entropy_production"]
        epr["symmetric_fit_stderr"] = stats["symmetric_fit"]["entropy_production_stderr"]
    rot = {"target_runs": [a["rotation"], b["rotation"]],
           "target": (0.5 * (np.array(a["rotation"]) + b["rotation"])).tolist(),
           "target_stderr": (0.5 * np.hypot(a["rotation_stderr"], b["rotation_stderr"])).tolist(),
           "baseline": np.abs(np.subtract(a["rotation"], b["rotation"])).tolist(),
           "network": stats["network"]["rotation"], "network_stderr": stats["network"]["rotation_stderr"],
           "planes": [[sde.variables[i], sde.variables[j]] for i in range(sde.dim) for j in range(i + 1, sde.dim)]}
    if "symmetric_fit" in stats:
        rot["symmetric_fit"] = stats["symmetric_fit"]["rotation"]
        rot["symmetric_fit_stderr"] = stats["symmetric_fit"]["rotation_stderr"]
    res["entropy_production_rate"] = epr
    res["rotation"] = rot
    # drift decomposition: each process with its own drift, noise and stationary density
    target_z = np.concatenate([run_a.z, run_b.z])
    procs = {"target": (sde.drift, sde.diffusion_cov, target_z),
             "network": (model.latent_drift, model.latent_cov, net_z)}
    if sym is not None:
        procs["symmetric_fit"] = (sym.latent_drift, sym.latent_cov, runs["symmetric_fit"])
    dec, dens = {}, {}
    for name, (f_fn, c_fn, z) in procs.items():
        dens[name] = LogDensity.fit(z, rng=rng)
        pts = _states(z, N_STATES, rng)
        parts = split_drift(f_fn, c_fn, dens[name], pts)
        dec[name] = field_summary(parts, c_fn(pts))
        if singular:  # a network's near-singular noise gives a huge finite number, as meaningless
            dec[name]["entropy_production_field"] = None
    res["decomposition"] = dec
    data.update(densities=dens, runs=runs, dt=dt)
    data["procs"] = {k: v[:2] for k, v in procs.items()}


def _switching(model, sde, duration, trials, seed, progress):
    """Success rate of cue pulses, network and target (:mod:`ddm_neuro.analysis.memory_tasks`)."""
    from . import memory_tasks as memory
    from ..verify.switching import find_wells

    rng = np.random.default_rng(seed)
    pooled = model.init_states
    wells, _ = find_wells(lambda z: sde.drift(z, None), pooled, rng)
    if len(wells) < 2:
        raise DDMError(f"{sde.name}: the target has {len(wells)} stable state(s) at zero input; "
                       "a switching analysis needs two or more")
    lo, hi = (np.array([sde.input_range[k][i] for k in sde.inputs]) for i in (0, 1))
    amplitude = float(np.max(np.abs(np.concatenate([lo, hi]))))
    width, gap = 2.0, 4.0  # SDE time units; long enough for the built-in switch to cross
    n_pulses = max(1, int((duration - gap) // (width + gap)))
    proto = memory.cue_protocol(n_pulses, amplitude, width, gap, seed=rng, n_inputs=model.n_inputs)
    net_z = simulate(model, proto.duration, backend="torch", mode="rate", trials=trials, seed=seed, u=proto.signal,
                     progress=progress)
    tgt = simulate(model, proto.duration, backend="target", mode="sde", trials=trials, seed=seed + 1, u=proto.signal,
                   progress=progress)
    out = {"protocol": {"n_pulses": n_pulses, "amplitude": amplitude, "width": width, "gap": gap},
           "wells": wells.tolist()}
    for name, traj in (("network", net_z), ("target", tgt)):
        out[name] = memory.switching_success(traj, proto, wells).to_dict()
    return out
