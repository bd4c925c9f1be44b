"""``ddm-neuro simulate --backend norse | snntorch | rockpool | spyx --mode spiking``: export to NIR, run it there.

The model is written to a temporary NIR file (:func:`.export.export`; its step
in seconds is the plan's ``dt`` times the model's time scale when given, else
1e-4 s; step-matched when the model's ``tau_ref`` is what this consumer's step
supplies) and run by :func:`.consumers.run_file`; the trajectory is the
consumer's Output, with ``meta["backend"]`` naming it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ddm_neuro.errors import DDMError
from ddm_neuro.run.plan import plan_run


def run_consumer(consumer, plan):
    """Run ``plan`` (spiking mode) as an NIR file in ``consumer`` (one of :data:`.consumers.CONSUMERS`)."""
    from .consumers import run_file
    from .export import SNNTORCH_DT, export, matched_consumer

    model = plan.model
    if plan.mode != "spiking":
        raise DDMError(f"backend {consumer!r} runs the spiking network only (use --mode spiking)")
    if plan.options.get("coupling") is not None:
        raise DDMError(f"backend {consumer!r}: the NIR graph has one dense recurrent Linear; "
                       f"--coupling does not apply (got {plan.options['coupling']!r})")
    # noise: on/off, or the spiking simulators' "remainder"/"none" (the host noise is the remainder)
    noise = plan.noise
    noise = {"remainder": True, "none": False}.get(noise, noise) if isinstance(noise, str) else noise
    if noise not in (True, False):
        raise DDMError(f"backend {consumer!r}: noise must be on or off (got {noise!r})")
    if plan.input is not None and len(plan.input.times) != 1:
        raise DDMError("the NIR consumers take a constant input only (got a piecewise-constant signal)")
    dt = SNNTORCH_DT if plan.requested_dt is None else plan.requested_dt * model.time_scale
    matched = matched_consumer(model, dt)
    if matched not in (None, consumer):
        raise DDMError(f"backend {consumer!r}: this model's tau_ref = {model.neuron.params['tau_ref'] * 1e3:g} ms "
                       f"is step-matched for {matched}, whose step supplies it; run it there (or refit)")
    fano = 1.0 if plan.options.get("fano") is None else plan.options["fano"]
    with tempfile.TemporaryDirectory(prefix="ddm_nir_") as tmp:
        path = export(model, Path(tmp) / "model.nir", dt=dt, fano=fano, noise=noise, progress=False,
                      step_matched=matched is not None)
        return run_file(consumer, path, plan.duration, trials=plan.trials, seed=plan.seed, noise=noise, z0=plan.z0,
                      u=plan.u0, record_dt=plan.requested_record_dt, progress=plan.progress)


def run_norse(plan):
    """The ``norse`` back end: ``plan`` as an NIR file in Norse."""
    return run_consumer("norse", plan)


def run_snntorch(plan):
    """The ``snntorch`` back end: ``plan`` as an NIR file in snnTorch."""
    return run_consumer("snntorch", plan)


def run_rockpool(plan):
    """The ``rockpool`` back end: ``plan`` as an NIR file in Rockpool."""
    return run_consumer("rockpool", plan)


def run_spyx(plan):
    """The ``spyx`` back end: ``plan`` as an NIR file in spyx (JAX)."""
    return run_consumer("spyx", plan)


def make_simulate(consumer):
    """``run(model, duration, *, trials, seed, u, mode, progress, noise, record_dt, z0, dt, fano, coupling)``.

    The consumer's back end called directly (``dt`` in SDE units), without the
    registry; the checks are the same.
    """
    def simulate(model, duration, *, trials=1, seed=None, u=None, mode="spiking", progress=False, noise=True,
                 record_dt=None, z0=None, dt=None, fano=None, coupling=None):
        plan = plan_run(model, duration, mode=mode if mode in ("rate", "spiking", "sde") else "spiking",
                        trials=trials, seed=seed, u=u, z0=z0, dt=dt, record_dt=record_dt, noise=noise,
                        progress=progress, options={"fano": fano, "coupling": coupling})
        if mode != "spiking":
            raise DDMError(f"backend {consumer!r} runs the spiking network only (use --mode spiking)")
        return run_consumer(consumer, plan)

    simulate.__doc__ = f"Run ``model`` as an NIR file in {consumer} (see :mod:`exporters.nir.backend`)."
    return simulate
