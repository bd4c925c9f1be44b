"""The conversion's stages for a spike-coordinated network (:mod:`ddm_neuro.spiking.coordinated`).

:func:`~ddm_neuro.spiking.pipeline.convert_to_spiking` comes here for a
target in the torch or brian2-cpp back end (``--network auto``, the default,
unless LIF neurons are asked for: :func:`~ddm_neuro.spiking.pipeline.choose_network`),
or with ``--network coordinated`` (in brian2-cpp the pilot runs that tune
delta run in torch's loop, the same network and steps; the verification in
Brian2 C++):

1. **fit** the basis: a tanh rate network (closed form, with the ridge of least
   drift error, :data:`~ddm_neuro.fit.decoders.RIDGE_RULES`; a tanh source model
   without hardware-constrained weights is used as it is);
2. **coordinate**: tune delta so that N neurons fire at
   :data:`~ddm_neuro.spiking.coordinated.RATE_HZ` (pilot runs), measure the
   spikes' jitter at the verifier's lag (a stochastic target; a deterministic
   one has no noise to size it against: it takes :data:`DETERMINISTIC_N`
   neurons, and verify judges the statistics the jitter perturbs), and where it is above what the
   verification can resolve (:func:`~ddm_neuro.spiking.coordinated.jitter_limit`
   of its number of increments) raise N to what it needs, at most 4x per step
   and measuring again after each, tuning delta again each time. Where tracking
   the noise would need more than ``--max-neurons`` (at 16x the time scale), the
   noise is carried by random spikes instead
   (:func:`~ddm_neuro.spiking.coordinated.noise_spike_map`), sized again from the
   starting N (N first, up to the cap); above the cap, stop and say both N;
3. **verify** on fresh runs (a deterministic chaotic target: collapsed runs
   counted too); where verify fails only on metrics the spikes' jitter moves
   (:data:`JITTER_METRICS`), once more at 1.5 times N.

No calibration: the coordinated network's drift is its basis's drift (the
spikes track it to within their jitter), so there is nothing in the spikes to
correct.
"""
from __future__ import annotations

import math

from ..errors import DDMError

#: Basis size (tanh rate units): tanh M = 500 fits stochastic Lorenz to 0.21 % held-out drift error in 5 s.
BASIS_N = 500
#: Starting N of the spiking neurons (the jitter measured there sets the N used).
START_N = 200
#: N of a deterministic target's network, which has no noise to size the jitter against (noise-free Lorenz passed
#: 20 x 100 at N = 200 with its metrics at 40 % or less of their thresholds, at N = 800 at 30 % or less:
#: RESULTS_conversion.md).
DETERMINISTIC_N = 200
#: The metrics the spikes' jitter moves: where verify fails on these alone, N grows once by GROWTH.
JITTER_METRICS = {"stochastic": {"diffusion"},
                  "deterministic": {"autocorrelation", "rotation", "stationary", "collapse"}}
#: N grows by this factor when verify fails on the metrics the spikes' jitter moves alone (JITTER_METRICS).
GROWTH = 1.5
#: Sizing: N (or T) grows at most this factor between two jitter measurements, at most this many times.
MAX_STEP = 4.0
MAX_RESIZES = 6
#: N grows up to this (or --max-neurons); beyond, the time scale grows instead (the simulation's cost per time unit
#: grows with N x T x (N + basis) at a fixed rate, so T is the cheaper way to more spikes per time unit). With noise
#: spikes N grows up to --max-neurons first: there more neurons lower the jitter far more than a longer time scale.
WORK_N = 800
#: Sizing aims at this share of the jitter limit, so that the next measurement is below the limit rather than on it
#: (Lorenz: 0.00459 against 0.00454 cost a second refit for a 1 % longer time scale).
MARGIN = 0.8
#: The time scale grows at most this factor over the basis fit's.
MAX_TIME_SCALE_FACTOR = 16.0


def coordinated_stages(result, stages, best, sde, model0, plugin, u0, seed, progress, given, *, levels, z_vis, why,
                       kind, chaotic, choice, verify_stage, verify_seed):
    """Run the stages of the module docstring; sets ``result`` as the pipeline's own stages do.

    ``kind`` ("stochastic" or "deterministic") and ``chaotic`` describe the target; ``result.choices`` holds the
    pipeline's choices (``verify_runs`` and ``max_neurons`` are used). ``choice`` (the pipeline's ``Choice``),
    ``verify_stage`` (its verification stage) and ``verify_seed`` (seed offset of verification runs) come from
    :mod:`~ddm_neuro.spiking.pipeline`, which calls this.
    """
    from .coordinated import RATE_HZ, jitter_exponent, jitter_limit, size_for_jitter, tune_delta
    from .noise import verify_lag

    if not plugin.coordinated:
        raise DDMError(f"a spike-coordinated network runs only in the torch and brian2-cpp back ends (its delay-free "
                       f"rank-d inhibition and microsecond steps are not in {plugin.name}); use --backend torch")
    ch = result.choices
    ch["network"] = choice("coordinated", why)
    for k in ("tau_ref", "time_scale_ratio", "spike_budget", "calibration", "steps"):
        ch.pop(k, None)

    usable = model0 is not None and model0.neuron.name == "tanh" and model0.w_perp is None
    stages.start("fit", "the basis: " + (f"the source's {model0.n_neurons} tanh units" if usable else
                                         f"{BASIS_N} tanh rate units, closed form"))
    if usable:
        basis, how = model0, "the source tanh model"
    else:
        basis = _fit_basis(sde, BASIS_N, seed, progress, given["fit_options"])
        how = "fitted from the target SDE (tanh, closed form, ridge of least error)"
    err = basis.meta.get("fit", {}).get("drift_error")
    ch["basis"] = choice(basis.n_neurons, f"{how}; the spiking neurons read their slow input through it "
                                          "(held-out drift error "
                                          + ("n/a" if err is None else f"{100 * err:.2f} %") + ")")
    stages.note(how=how, drift_error=err)
    stages.say(f"{how}; held-out drift error " + ("n/a" if err is None else f"{100 * err:.2f} %"))

    lag = verify_lag(sde, z_vis[:: max(1, len(z_vis) // 2000)], u0)
    cap = ch["max_neurons"].value
    runs = list(ch["verify_runs"].value)
    vt, vd = runs
    n_inc = int(vt * vd / lag)
    limit = jitter_limit(n_inc)
    deterministic = kind == "deterministic"
    n = int(given["n_neurons"]) if given["n_neurons"] is not None else min(
        cap, DETERMINISTIC_N if deterministic else START_N)
    stages.start("coordinate", f"N = {n} spiking neurons: delta tuned to {RATE_HZ:g} Hz on pilot runs"
                 + ("" if plugin.name == "torch" else " in torch (the same network and steps)")
                 + ("" if deterministic else f", the spikes' jitter at verify's lag ({lag:.3g} time units)"))
    model, facts = tune_delta(basis, n, rate_hz=RATE_HZ, seed=seed, record_dt=lag, u=u0, progress=progress)
    spikes_noise, n0, basis0, tracked_need = False, n, basis, None
    if deterministic:   # no noise to size the jitter against: verify judges the statistics it perturbs
        facts["jitter"] = None
    while True:   # the noise tracked by the spikes; where that would need too many neurons, as random spikes
        stages.note(n_neurons=n, delta=facts["delta"], rate_hz=facts["rate_hz"], jitter=facts["jitter"])
        stages.say(f"N = {n}: delta {facts['delta']:.4g}, {facts['rate_hz']:.1f} Hz, " + (
            "a deterministic target (no noise to size the spikes' jitter against: verify judges the statistics)"
            if deterministic else f"jitter {facts['jitter']:.3g}x the basis's noise (limit {limit:.3g} for the "
                                  f"verification's {n_inc} increments at that lag)"))
        if given["n_neurons"] is not None:
            why_n = "given"
        else:
            why_n = ("a deterministic target's (noise-free Lorenz passed at it)" if deterministic
                     else "the starting size")
        if not deterministic:
            why_n += f"; jitter {facts['jitter']:.3g}"
        # The jitter depends on the spikes per SDE time unit, N x rate x T (rate fixed): measured points (N T,
        # jitter). N grows up to WORK_N (or the cap); beyond, the time scale T grows instead (the basis refitted
        # for it): the same spikes per time unit then cost fewer neurons to simulate. Noise spikes: N first, up to
        # the cap (their jitter fell 3x from N = 800 to 1600 for FitzHugh-Nagumo, 1.4x from T to 4 T at N = 800).
        points, t0, stop = [(n * basis.time_scale, facts["jitter"])], basis.time_scale, None
        while not deterministic and facts["jitter"] > limit and len(points) <= MAX_RESIZES:
            T = basis.time_scale
            need_s = size_for_jitter(n * T, facts["jitter"], MARGIN * limit, step=1e-9,
                                     exponent=jitter_exponent(points))
            top = cap if spikes_noise else min(cap, max(n, WORK_N))
            if need_s / T > top and n >= top and T >= MAX_TIME_SCALE_FACTOR * t0 * (1 - 1e-9):
                need = int(math.ceil(need_s / T / 50.0)) * 50
                est = run_seconds(need, basis.n_neurons, T, vt * vd * len(levels), RATE_HZ)
                stop = (need, f"at N = {n} and {T / t0:.3g}x the basis's time scale (the most it takes: "
                              f"{MAX_TIME_SCALE_FACTOR:g}x) their spikes' jitter is {facts['jitter']:.3g}x its noise "
                              f"along its worst direction (limit {limit:.3g}), and --max-neurons is {cap}; raise "
                              f"--max-neurons to {need} (its verification would take about {est / 60:.0f} min of "
                              "runs on one core here)")
                break
            if need_s / T <= top or n < top:
                new_n, new_t = min(top, int(math.ceil(min(need_s / T, MAX_STEP * n) / 50.0)) * 50), T
            else:
                new_n, new_t = n, T * min(need_s / (n * T), MAX_STEP, MAX_TIME_SCALE_FACTOR * t0 / T)
            if new_t != T:
                stages.start("fit", f"the basis again, for a time scale {new_t / T:.3g}x longer ({new_t:.4g} s per "
                                    "time unit): more spikes per time unit at the same N and rate")
                basis = _fit_basis(sde, basis.n_neurons, seed, progress, given["fit_options"], time_scale=new_t)
                err = basis.meta.get("fit", {}).get("drift_error")
                stages.say("held-out drift error " + ("n/a" if err is None else f"{100 * err:.2f} %"))
            model, facts = _resize(basis, n, new_n, facts, rate_hz=RATE_HZ, seed=seed, lag=lag, u0=u0,
                                   stages=stages, progress=progress, limit=limit, scale=(new_t / T),
                                   noise_spikes=spikes_noise)
            points.append((new_n * new_t, facts["jitter"]))
            n = new_n
            why_n = (f"jitter {facts['jitter']:.3g} at N = {n}, T = {basis.time_scale:.4g} s (limit {limit:.3g} for "
                     f"the verification's {n_inc} increments); measured on the way (N x T, jitter): "
                     + ", ".join(f"({m:.4g}, {r:.3g})" for m, r in points[:-1]))
        if stop is None:
            if not deterministic:
                ch["noise"] = choice("spikes" if spikes_noise else "tracked", "the noise tracked by the spikes"
                                     if not spikes_noise else "as random spikes, whose jumps carry it: tracking "
                                     f"it would need N >= {tracked_need} coordinated neurons")
            break
        if spikes_noise:
            result.status = "stopped"
            result.reason = (f"{sde.name} needs N >= {stop[0]} coordinated neurons (with noise spikes; tracking the "
                             f"noise would need N >= {tracked_need}): {stop[1]}")
            stages.end()
            raise DDMError(result.reason)
        # tracking the noise would need too many neurons: the noise as random spikes, from the starting N again
        spikes_noise, tracked_need, n, basis = True, stop[0], n0, basis0
        stages.start("coordinate", f"the noise as random spikes (tracking it would need N >= {tracked_need}): "
                                   f"N = {n}, delta tuned again")
        model, facts = tune_delta(basis, n, rate_hz=RATE_HZ, seed=seed, record_dt=lag, u=u0, progress=progress,
                                  noise_spikes=True)
    ch["time_scale"] = choice(basis.time_scale, "the basis fit's" if basis.time_scale == t0 else
                              f"{basis.time_scale / t0:.3g}x the basis fit's, so that N = {n} neurons at {RATE_HZ:g} "
                              "Hz fire enough spikes per time unit")
    ch["n_neurons"] = choice(n, why_n)
    ch["delta"] = choice(round(facts["delta"], 6), f"tuned to {RATE_HZ:g} Hz mean rate on pilot runs")
    model = _final(basis, n, facts, why_n, spikes_noise)
    best.update(model=model, why=f"coordinated, N = {n}")

    z_collapse = z_vis if deterministic and chaotic else None
    for attempt in (1, 2):
        label = "" if attempt == 1 else f" (N = {n})"
        verify_stage(result, stages, model, sde, plugin, runs, levels, seed + verify_seed + 1000 * attempt,
                     z_collapse, progress, label)
        if any(r.marginal for r in result.reports):
            verify_stage(result, stages, model, sde, plugin, [2 * runs[0], runs[1]], levels,
                         seed + verify_seed + 1000 * attempt + 500, z_collapse, progress, " (marginal: twice the runs)")
        failed = result.failed_metrics()
        if result.passed or not set(failed) <= JITTER_METRICS[kind] or attempt == 2:
            break
        need = int(math.ceil(GROWTH * n / 50.0)) * 50
        if need > cap:
            break
        model, facts = _resize(basis, n, need, facts, rate_hz=RATE_HZ, seed=seed, lag=lag, u0=u0, stages=stages,
                               progress=progress, limit=limit, noise_spikes=spikes_noise)
        n = need
        ch["n_neurons"] = choice(n, f"verify failed on {', '.join(failed)} alone at N = {ch['n_neurons'].value}: "
                                    f"{GROWTH}x the neurons")
        ch["delta"] = choice(round(facts["delta"], 6), f"tuned to {RATE_HZ:g} Hz mean rate on pilot runs")
        model = _final(basis, n, facts, ch["n_neurons"].why, spikes_noise)
        best.update(model=model, why=f"coordinated, N = {n}")
    result.model = model
    result.status = "passed" if result.passed else "failed"
    if not result.passed:
        failed = result.failed_metrics()
        result.reason = (f"verify fails on {', '.join(failed)} with N = {n} coordinated neurons"
                         + (f" (--max-neurons {cap} stops it growing)" if set(failed) <= JITTER_METRICS[kind]
                            else "")
                         + "; the report folder has the figures")
    stages.end()


#: Seconds per step, trial and unit of N + M of the coordinated loop on one core here (N = 550, M = 500 Lorenz:
#: 8 x 250 time units in about 300 s).
SECONDS_PER_STEP_UNIT = 1.4e-9


def run_seconds(n_neurons, n_basis, time_scale, trial_time, rate_hz):
    """Rough seconds of coordinated runs of ``trial_time`` time units in all (trials x duration), one core."""
    from .coordinated import DT_MAX_S, P_SPIKE

    dt = min(DT_MAX_S, P_SPIKE / (n_neurons * rate_hz))
    return SECONDS_PER_STEP_UNIT * (n_neurons + n_basis) * trial_time * time_scale / dt


def _resize(basis, n_old, n_new, facts, *, rate_hz, seed, lag, u0, stages, progress, limit, scale=1.0,
            noise_spikes=False):
    """Tune delta again at ``n_new`` neurons and ``scale`` times the time scale (starting from the old delta scaled
    as delta ~ (N T)^-0.8)."""
    from .coordinated import tune_delta

    stages.start("coordinate", f"N = {n_new} spiking neurons, T = {basis.time_scale:.4g} s, delta tuned again")
    model, facts = tune_delta(basis, n_new, rate_hz=rate_hz, seed=seed, record_dt=lag, u=u0, progress=progress,
                              delta0=facts["delta"] * (n_old / n_new / scale) ** 0.8, noise_spikes=noise_spikes)
    stages.note(n_neurons=n_new, delta=facts["delta"], rate_hz=facts["rate_hz"], jitter=facts["jitter"])
    stages.say(f"N = {n_new}: delta {facts['delta']:.4g}, {facts['rate_hz']:.1f} Hz, jitter {facts['jitter']:.3g}x "
               f"(limit {limit:.3g})")
    return model, facts


def _fit_basis(sde, n_basis, seed, progress, fit_options, time_scale=None):
    """The basis: tanh, closed form, with the ridge of least drift error (its drift is the network's; it has no
    off-subspace noise for large decoders to amplify) unless ``fit_options`` say otherwise."""
    from ..fit.matching import fit

    options = {"ridge": "least-error", **fit_options}
    if time_scale is not None:
        options["time_scale"] = time_scale
    return fit(sde, n_neurons=n_basis, seed=seed, steps=0, progress=progress, **options)


def _final(basis, n, facts, why, noise_spikes=False):
    from .coordinated import RATE_HZ, make_coordinated

    return make_coordinated(basis, n, facts["delta"], rate_hz=RATE_HZ, noise_spikes=noise_spikes, why={
        "n_neurons": why, "rate_hz": facts["rate_hz"], "jitter": facts["jitter"], "pilots": facts["pilots"]})
