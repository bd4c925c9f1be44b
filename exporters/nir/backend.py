"""``ddm-neuro simulate --backend norse | snntorch --mode spiking``: export to NIR, run it in the consumer.

The model is written to a temporary NIR file (:func:`.export.export`, dt = 1e-4 s;
step-matched when the model's ``tau_ref`` is what this consumer's step supplies)
and run by :func:`.consumers.run_norse` or :func:`.consumers.run_snntorch`; the
trajectory is the consumer's, with ``meta["backend"]`` naming it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.run.inputs import InputSignal


def _constant_input(model, u):
    if u is None or not model.n_inputs:
        if u is not None:
            raise DDMError("an input was given, but this model has no inputs")
        return None
    if isinstance(u, InputSignal):
        if len(u.times) != 1:
            raise DDMError("the NIR consumers take a constant input only (got a piecewise-constant signal)")
        return u.values[0]
    return np.atleast_1d(np.asarray(u, dtype=np.float64))


def make_simulate(consumer):
    """A back-end function ``run(model, duration, *, trials, seed, u, mode, progress, **options)`` for ``consumer``."""
    from . import consumers
    from .export import SNNTORCH_DT, export, matched_consumer

    runner = {"norse": consumers.run_norse, "snntorch": consumers.run_snntorch}[consumer]

    def simulate(model, duration, *, trials=1, seed=None, u=None, mode="spiking", progress=False, noise=True,
                 record_dt=None, z0=None, dt=None, fano=1.0, coupling=None):
        # dt: the file's step in seconds (default 1e-4); noise: on/off, or the spiking simulators'
        # "remainder"/"none" (the host noise is the remainder), so that calibrate can run here too
        dt = SNNTORCH_DT if dt is None else dt
        noise = {"remainder": True, "none": False}.get(noise, noise) if isinstance(noise, str) else noise
        if coupling is not None:
            raise DDMError(f"backend {consumer!r}: the NIR graph has one dense recurrent Linear; "
                           f"--coupling does not apply (got {coupling!r})")
        if mode != "spiking":
            raise DDMError(f"backend {consumer!r} runs the spiking network only (use --mode spiking)")
        if noise not in (True, False):
            raise DDMError(f"backend {consumer!r}: noise must be on or off (got {noise!r})")
        u0 = _constant_input(model, u)
        matched = matched_consumer(model, dt)
        if matched not in (None, consumer):
            raise DDMError(f"backend {consumer!r}: this model's tau_ref = {model.neuron.params['tau_ref'] * 1e3:g} ms "
                           f"is step-matched for {matched}, whose step supplies it; run it there (or refit)")
        with tempfile.TemporaryDirectory(prefix="ddm_nir_") as tmp:
            path = export(model, Path(tmp) / "model.nir", dt=dt, fano=fano, noise=noise, progress=False,
                          step_matched=matched is not None)
            return runner(path, duration, trials=trials, seed=seed, noise=noise, z0=z0, u=u0,
                          record_dt=record_dt, progress=progress)

    simulate.__doc__ = f"Run ``model`` as an NIR file in {consumer} (see :mod:`exporters.nir.backend`)."
    return simulate
