r"""``verify(sde, traj)``: does a trajectory follow the target SDE? (DESIGN §6)

Steps:

1. check the trajectory (dimension, sampling, finiteness, length) and choose
   the lag :math:`\Delta` (:mod:`.checks`);
2. simulate :data:`N_REFERENCE` independent runs of the target SDE with the
   trajectory's length, trials, sampling, start states and input
   (:mod:`.reference`); the read-out filter, if any, is applied to them too;
3. compute each metric for the trajectory and for the reference runs, and
   judge it against its baseline (:mod:`.thresholds`, :mod:`.report`):
   drift and diffusion at lag Δ (:mod:`.increments`), stationary energy
   distance and autocovariance (:mod:`.stationary`), and by the SDE's tags the
   largest Lyapunov exponent (``chaotic``, needs ``model_drift``), the
   switching rate between wells (``multistable``) and the mean rotation and
   entropy production rate (``nonequilibrium``).

A deterministic target (no diffusion on the visited states, e.g. noise-free
Lorenz) is judged as :mod:`.deterministic` describes: drift against a stated
tolerance with the run's own noise removed, no diffusion or entropy production
metric, reference runs from perturbed starts. A target with noise in some
directions only (singular diffusion) is judged as :mod:`.singular` describes.

**Stability to the verifier's own seed.** Nothing that decides a verdict should
hinge on the verifier's random draw, so: the cells and the lag depend on the
trajectory only (fixed generator :data:`CELL_SEED`); the target increments are
drawn in antithetic pairs, which makes their mean nearly noise-free; drift and
diffusion are judged against their exact null (:mod:`.thresholds`), which the
reference runs only check; the other metrics' baselines rest on
:data:`N_REFERENCE` reference runs, and every metric carries the standard error
of its value and threshold, so that a verdict within that noise is reported as
marginal (:mod:`.report`).
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..run.plan import input_signal
from . import checks, deterministic, increments, singular, stationary
from .extras import tag_metrics
from .report import Report
from .thresholds import MULTIPLES, chi2_multiple, chi2_value_se, f_multiple, null_consistent

#: Number of independent target runs behind the baselines of the stationary distribution,
#: autocorrelation and scalar statistics. Reference runs are batched over all runs and trials
#: (the per-step cost dominates); with 16 the verifier's own seed moves these thresholds by
#: 6-12 % (SD; measured by benchmarks/verify_seed_stability.py), stated per metric as ``threshold_se``.
N_REFERENCE = 16
#: Smallest trajectory integration step (fraction of the default step) that the
#: references reproduce; finer steps are compared with the Heun target (:func:`choose_integration`).
OWN_STEP_FLOOR = 0.25
#: Random splits of the reference trials behind the stationary and autocorrelation baselines.
N_SPLITS = 48
#: Reference runs whose increments are propagated (the check of the drift and diffusion null,
#: the drift signal shared by trajectory and references).
N_PROPAGATED = 8
#: Work cap (starts x draws x steps x d) of the trajectory's own propagations: 4x that of the
#: reference runs (:data:`.increments.MAX_WORK`), so that a 16 x 60 Lorenz run uses all its
#: increments. A subset is a sample of the run's increments, and its statistic a different
#: chi-square draw.
TRAJECTORY_MAX_WORK = 4 * increments.MAX_WORK
#: Seed of the generator behind everything that depends on the trajectory only (cells, lag).
CELL_SEED = 0


def _split_baselines(fns, pool, trials, rng, n_splits=N_SPLITS):
    r"""RMS of each pair metric between disjoint random sets of reference trials, and its noise.

    A set of ``trials`` trials is compared with all the other reference trials
    (``(n_ref - 1) trials``), like the trajectory is compared with all
    ``n_ref trials``; each split is a pair of independent target simulations
    with the trajectory's length and sampling. Each ``fn(ia, ib)`` takes the
    two sets' trial indices into ``pool``.

    Returns
    -------
    baseline : ndarray (len(fns),)
    spread : ndarray
        Standard deviation of one split's value (a pair metric's null spread).
    baseline_se : ndarray
        Standard error of the baseline from the splits' spread of squares, as if the
        splits were independent (they share trials; against the threshold's measured
        spread over verifier seeds it is 15-40 % low, measured by benchmarks/verify_seed_stability.py).
    """
    vals = np.zeros((n_splits, len(fns)))
    for s in range(n_splits):
        perm = rng.permutation(len(pool))
        a, b = perm[:trials], perm[trials:]
        vals[s] = [fn(a, b) for fn in fns]
    base = np.sqrt(np.mean(vals ** 2, axis=0))
    se_sq = (vals ** 2).std(axis=0, ddof=1) / np.sqrt(n_splits)
    return base, vals.std(axis=0, ddof=1), se_sq / (2.0 * np.maximum(base, 1e-300))


def choose_integration(sde, traj, rate, scheme=None, dt_int=None, filter_tau=None):
    r"""Integrator and step of the reference runs and propagations: ``(scheme, h, reason)``.

    The trajectory is compared with the target SDE, so the verifier's own
    discretisation must not show as a model error. Euler–Maruyama at step h
    shifts the mean increment over a lag Δ by about :math:`\tfrac12 h\Delta\,
    \partial f\, f`; on Lorenz (8 x 30) a target trajectory integrated at
    h = 0.00061 verified against propagations at h = 0.001 gave drift ratios
    averaging 1.08 (the earlier false alarms), and against a weak order-2
    (Heun) target 1.26: at that length the step of the *trajectory* is itself
    detectable. Hence:

    * the trajectory says how it was integrated (``meta["integration_dt"]``, written
      by the target and the network back ends, all Euler–Maruyama in the latent
      or, for the rate network, in the neurons, whose latent read-out then steps
      as Euler–Maruyama of the latent SDE) and that step is at least
      :data:`OWN_STEP_FLOOR` of the default step: Euler–Maruyama at that very step,
      so that trajectory and target share the discretisation and its bias cancels
      exactly (the comparison is with the SDE as integrated at the network's step);
    * otherwise (no record, or a step so fine that matching it would be costly
      while its own bias is already small): the default step
      ``min(0.02 / rate, dt)`` with the weak order-2 Heun scheme for additive
      noise (bias O(h^2): on Lorenz 8 x 30 a trajectory integrated at h/8 gave
      drift ratios near 1 against it), Euler–Maruyama at a quarter of it for
      state-dependent noise.

    With a read-out filter the default step is at most ``filter_tau / 10``.
    ``scheme`` / ``dt_int`` override the choice.
    """
    h_default = min(0.02 / rate, traj.dt, filter_tau / 10 if filter_tau else np.inf)
    if scheme or dt_int:
        return scheme or "euler", dt_int or h_default, "given"
    meta = traj.meta if isinstance(traj.meta, dict) else {}
    try:
        h_own = float(meta.get("integration_dt") or 0.0)
    except (TypeError, ValueError):
        h_own = 0.0
    if np.isfinite(h_own) and OWN_STEP_FLOOR * h_default <= h_own <= traj.dt * (1 + 1e-9):
        return "euler", h_own, "euler at the trajectory's own integration step"
    if sde.additive:
        return "heun", h_default, "heun (weak order 2) at the default step"
    return "euler", h_default / 4, "euler at a quarter of the default step (state-dependent noise)"


def _signal(sde, traj):
    if not sde.n_inputs:
        return None
    return input_signal(sde, traj.info.input if isinstance(traj.meta, dict) else None)


def verify(sde, traj, *, delta=None, seed=0, filter_tau=None, model_drift=None, progress=False,
           n_reference=N_REFERENCE, scheme=None, dt_int=None, drift_tolerance=None):
    """Measure whether ``traj`` follows ``sde``, each metric against its target-vs-target baseline.

    Parameters
    ----------
    sde : SDE
        The target.
    traj : Trajectory
        Latent trajectory in SDE coordinates and time units (any backend).
    delta : float, optional
        Lag for drift and diffusion; default from the SDE's time scale (:mod:`.checks`).
    seed : int
        Seed of the reference runs and propagations (cells and lag depend on the trajectory only).
    filter_tau : float, optional
        Time constant of a synaptic filter on the read-out (SDE units); the
        reference runs are filtered the same way and the increment variance
        is corrected by the exact factor.
    model_drift : callable, optional
        ``model_drift(z, u) -> (..., d)``: the model's noise-free latent drift.
        Needed for the Lyapunov exponent of chaotic targets (skipped without it).
    progress : bool
        Show a progress bar over the stages.
    n_reference : int
        Independent target runs behind the baselines.
    scheme, dt_int : optional
        Integrator (``"euler"`` or ``"heun"``) and step of the reference runs and
        propagations; default from the trajectory's recorded integration step
        (:func:`choose_integration`).
    drift_tolerance : float, optional
        Deterministic targets (no diffusion on the visited states), and the
        noise-free directions of a singular diffusion: the relative drift error
        accepted, since there is no target noise to judge against (default
        :data:`.deterministic.DRIFT_TOLERANCE`; :mod:`.deterministic`, :mod:`.singular`).

    Returns
    -------
    Report

    Raises
    ------
    TrajectoryError
        Dimension mismatch, irregular or missing dt, non-finite samples, too short.
    ValueError
        A drift tolerance that is not a positive number.
    """
    if drift_tolerance is not None and not (np.isfinite(drift_tolerance) and drift_tolerance > 0):
        raise ValueError(f"drift tolerance must be a positive number, got {drift_tolerance}")
    t_start = time.perf_counter()
    checks.check_trajectory(sde, traj)
    ss = np.random.SeedSequence(seed)
    _, rng_ref, _, rng_inc, rng_other = (np.random.default_rng(s) for s in ss.spawn(5))
    rng_lag, rng_cells = (np.random.default_rng(s) for s in np.random.SeedSequence(CELL_SEED).spawn(2))
    signal = _signal(sde, traj)
    u0 = None if signal is None else signal.values[0]
    n_rec, d = traj.z.shape[1], traj.dim
    visited = traj.z.reshape(-1, d)[::max(1, traj.z.shape[1] * traj.trials // 2000)]
    rate = max(sde.characteristic_rate(visited, u0), 1e-6)
    noise_free = deterministic.is_deterministic(sde, visited, u0, rate)
    sing = None if noise_free else singular.detect(sde, visited)
    lag_floor = checks.spike_lag(traj) if noise_free and delta is None else None
    delta, k = checks.choose_lag(sde, traj, delta, filter_tau, rng_lag, floor=lag_floor)
    checks.check_length(traj, k, delta)
    scheme, dt_int, integration = choose_integration(sde, traj, rate, scheme, dt_int, filter_tau)
    tolerance_note = drift_tolerance is not None and not noise_free and not (sing and sing.fixed_subspace)
    if drift_tolerance is None:
        drift_tolerance = deterministic.DRIFT_TOLERANCE
    stages = ["reference runs", "increments", "stationary", "extra"]
    bar = tqdm(total=len(stages), desc="verify", disable=not progress)

    from .reference import simulate_references
    perturb = deterministic.START_JITTER * visited.std(0) if noise_free else None
    refs = simulate_references(sde, traj.z[:, 0], n_rec, traj.dt, dt_int, n_ref=n_reference, rng=rng_ref,
                               signal=signal, filter_tau=filter_tau, scheme=scheme, perturb=perturb)
    bar.update()
    report = Report()
    report.info = {"system": sde.name, "variables": list(sde.variables), "trials": traj.trials,
                   "duration": traj.duration, "dt": traj.dt, "delta": delta, "lag_samples": k,
                   "filter_tau": filter_tau, "seed": seed, "n_reference": n_reference,
                   "integration_dt": dt_int, "integration": integration, "backend": traj.meta.get("backend"),
                   "deterministic_target": noise_free, "cell_seed": CELL_SEED, "notes": []}
    if sing is not None:
        report.info["singular_diffusion"] = {"rank": sing.rank, "dim": sing.dim, "fraction": sing.fraction,
                                             "directions": sing.names, "noisy_basis": sing.noisy.tolist()}
    if lag_floor and delta >= lag_floor:
        report.info["notes"].append(f"lag at least the synaptic time constant ({lag_floor:.4g}): below it a spiking "
                                    "run's increments carry spike jitter that the deterministic target has not")
    if tolerance_note:
        report.info["notes"].append("drift tolerance ignored: the target has noise, so its drift is judged "
                                    "against the target's own sampling noise")

    # drift and diffusion at lag delta; cells from the trajectory's own states (seed-free)
    cells = increments.make_cells(traj.z.reshape(-1, d), d, rng_cells)
    if noise_free:
        inc = [deterministic.drift_stats(*increments.increment_pairs(sde, run, traj.t, k, delta, dt_int, rng_inc,
                                                                     signal, draws=1, scheme=scheme), cells, delta)
               for run in [traj.z, *refs]]
        deterministic.judge_drift(report, inc, drift_tolerance, delta)
    else:
        inc = _drift_diffusion(report, sde, traj, refs[:N_PROPAGATED], cells, k, delta, dt_int, rng_inc, signal,
                               scheme, filter_tau, sing, drift_tolerance)
    bar.update()

    # stationary distribution and autocorrelation: trajectory vs all reference runs,
    # baseline over random splits of the reference trials into disjoint sets
    pool = refs.reshape(-1, n_rec, d)
    white = stationary.whitener(pool)
    lags = stationary.acf_lags(pool, traj.dt)
    var_ref = pool.reshape(-1, d).var(0)
    center = pool.reshape(-1, d).mean(0)
    parts = stationary.acf_parts(pool, lags, center)
    ed_fn = lambda ia, ib: stationary.energy_distance(pool[ia], pool[ib], white)  # noqa: E731
    ac_fn = lambda ia, ib: stationary.acf_distance_parts(parts, parts, lags, var_ref, ia, ib)  # noqa: E731
    (ed_b, ac_b), (ed_sd, ac_sd), (ed_se, ac_se) = _split_baselines((ed_fn, ac_fn), pool, traj.trials, rng_other)
    ac_value = stationary.acf_distance_parts(stationary.acf_parts(traj.z, lags, center), parts, lags, var_ref)
    report.add("stationary", stationary.energy_distance(traj.z, pool, white), ed_b, MULTIPLES["stationary"],
               "energy distance (square root) of the visited distributions, whitened",
               value_se=ed_sd, threshold_se=MULTIPLES["stationary"] * ed_se,
               mean=traj.z.reshape(-1, d).mean(0).tolist(),
               covariance=np.atleast_2d(np.cov(traj.z.reshape(-1, d), rowvar=False)).tolist(),
               target_mean=pool.reshape(-1, d).mean(0).tolist(),
               target_covariance=np.atleast_2d(np.cov(pool.reshape(-1, d), rowvar=False)).tolist())
    report.add("autocorrelation", ac_value, ac_b, MULTIPLES["autocorrelation"],
               "RMS difference of normalised autocovariances", value_se=ac_sd,
               threshold_se=MULTIPLES["autocorrelation"] * ac_se, max_lag=float(lags[-1] * traj.dt))
    bar.update()

    tag_metrics(report, sde, traj, refs, model_drift, u0, signal, rate, rng_other)
    bar.update()
    bar.close()
    report.info["seconds"] = time.perf_counter() - t_start
    report.data.update({"refs": refs, "increments": inc, "lags": lags, "delta": delta, "cells": cells,
                        "sde": sde, "model_drift": model_drift})
    return report


def _drift_diffusion(report, sde, traj, refs, cells, k, delta, dt_int, rng_inc, signal, scheme, filter_tau, sing,
                     tolerance):
    """Drift and diffusion metrics at lag ``delta`` against a stochastic target (:mod:`.increments`),
    each against its exact null when the reference runs ``refs`` agree with it (:mod:`.thresholds`);
    with a singular diffusion, in the noisy subspace plus ``drift_noise_free`` (:mod:`.singular`).
    Returns the per-run statistics (trajectory first)."""
    kappa = increments.filter_factor(delta, filter_tau)
    split = sing is not None and sing.fixed_subspace
    sub = sing.noisy if split else None
    inc, free = [], []
    if split:
        proj = traj.z.reshape(-1, traj.dim) @ sing.null
        scale_free = proj.std(0) + 1e-300
    for i, run in enumerate([traj.z, *refs]):
        pairs = increments.increment_pairs(sde, run, traj.t, k, delta, dt_int, rng_inc, signal, scheme=scheme,
                                           antithetic=True,
                                           max_work=TRAJECTORY_MAX_WORK if i == 0 else increments.MAX_WORK)
        inc.append(increments.increment_stats(*pairs, cells, kappa, antithetic=True, subspace=sub))
        if split:
            free.append(singular.noise_free_stats(*pairs, cells, sing.null, scale_free))
    n_ref = len(refs)
    dens = np.array([s["drift_den"] for s in inc[1:]])
    den = float(dens.mean())  # the target's drift signal, shared
    # relative standard error of sqrt(den): the drift's value and threshold share it (the verdict does not)
    scale_se = float(dens.std(ddof=1) / np.sqrt(len(dens)) / (2.0 * den)) if len(dens) > 1 else 0.0
    for s in inc:
        s["drift"] = float(np.sqrt(s["drift_num"] / den))
        s["drift_estimate"] = float(np.sqrt(max(s["drift_num"] - s["drift_bias"], 0.0) / den))
    where = f" in the noisy subspace ({', '.join(v for v in sde.variables if v not in sing.names)})" if split else ""
    run = inc[0]
    # drift: E[drift_num] = drift_null for a trajectory of the target (increments.py)
    null_drift = (run["drift_null"] / den, run["drift_dof"],
                  [s["drift_num"] / s["drift_null"] for s in inc[1:]])
    if run["diffusion_cells"] == 0 or any(s["diffusion_cells"] == 0 for s in inc[1:]):
        # no cell has enough visits for its own spread: the Gaussian relative error, references only
        for s in inc:
            s["diffusion"] = s["diffusion_relative"]
        null_diff, extra_diff = None, {}
        d_sub = run["drift_dof"] // max(run["cells_used"], 1)
        dof_diff = run["cells_used"] * d_sub * (d_sub + 1) // 2
    else:
        null_diff = (run["diffusion_dof"] / run["diffusion_increments"], run["diffusion_dof"],
                     [s["diffusion"] ** 2 * s["diffusion_increments"] / s["diffusion_dof"] for s in inc[1:]])
        dof_diff = run["diffusion_dof"]
        extra_diff = {"relative_error": run["diffusion_relative"]}
    specs = (("drift", f"visit-weighted relative drift error at lag delta, noise-whitened{where}", null_drift,
              run["drift_dof"], {"cells": run["cells_used"], "scale_rel_se": scale_se,
                                  "propagation_noise": run["propagation_noise"]}),
             ("diffusion", f"studentised error of the increment covariance at lag delta (RMS per increment){where}",
              null_diff, dof_diff, {"cells": run["diffusion_cells"] or run["cells_used"], **extra_diff}))
    for name, desc, null, dof, extra in specs:
        if null is None:  # no exact null: the references' RMS (as many increments as the trajectory's or fewer)
            base, ratio = float(np.sqrt(np.mean([s[name] ** 2 for s in inc[1:]]))), None
        else:  # the references' squared metric over its own null: 1 +- sqrt(2 / (n_ref dof)) if the null holds
            base, ratio = float(np.sqrt(null[0])), float(np.mean(null[2]))
        if null is not None and null_consistent(null[2], null[1]):
            mult, tse, how = chi2_multiple(dof), 0.0, "exact null"
        else:
            if null is not None:  # the exact null scaled by what the reference runs measured
                base = base * float(np.sqrt(ratio))
                report.info["notes"].append(
                    f"{name}: the reference runs exceed the exact null by {ratio:.3g}x (more than their "
                    f"own noise allows), so its threshold comes from the {n_ref} reference runs and moves with the "
                    "verifier's seed (threshold_se)")
            mult, how = f_multiple(dof, n_ref), "reference runs"
            tse = mult * base * np.sqrt(1.0 / (2.0 * n_ref * max(dof, 1)))
        report.add(name, run[name], base, mult, desc, value_se=chi2_value_se(run[name], base, dof),
                   threshold_se=tse, estimate=run[f"{name}_estimate"], increments=run["increments"],
                   baseline_from=how, references_null_ratio=ratio, dof=int(dof), **extra)
    if split:
        singular.judge_noise_free(report, free, tolerance, delta, sing)
    return inc
