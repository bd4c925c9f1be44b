"""Options and results of a spiking run, shared by the Brian2 and NEST back ends (ddm_neuro glue).

``noise`` ("remainder", "none", "model"; True/False), ``fano`` ("regular" or N
numbers >= 0) and ``coupling`` of a spiking run plan, checked; and the spike
record of a run as Trajectory fields.
"""
from __future__ import annotations

import numpy as np

from ddm_neuro.errors import DDMError


def spiking_meta(model, spikes, trials, n_rec, record_dt):
    """``(spikes_t, spikes_i, extra meta)`` of a spiking run from Brian2's ``(t_seconds, i)`` (or None).

    Spike times are stored in SDE time units; ``mean_rate_hz`` is the mean rate per neuron.
    """
    extra = {"tau_syn": model.tau}  # seconds, as the torch spiking simulator records it
    if spikes is None:
        return None, None, extra
    sp_t, sp_i = np.asarray(spikes[0]) / model.time_scale, np.asarray(spikes[1], dtype=np.int64)
    if len(sp_t):
        extra["mean_rate_hz"] = float(len(sp_t) / (model.n_neurons * trials * (n_rec - 1) * record_dt
                                                   * model.time_scale))
    return sp_t, sp_i, extra


def spiking_noise(noise):
    """``noise`` of a spiking run: True -> "remainder", False -> "none", or the string itself."""
    return {True: "remainder", False: "none"}.get(noise, noise) if isinstance(noise, bool) else noise


def spiking_fano(model, fano):
    """``fano`` of a spiking build: ``"regular"`` or a list of N numbers >= 0 (a clear error otherwise)."""
    if isinstance(fano, str):
        if fano != "regular":
            raise DDMError(f"fano must be a number >= 0, N of them, or 'regular' (got {fano!r})")
        return fano
    try:
        F = np.broadcast_to(np.asarray(fano, dtype=np.float64), (model.n_neurons,))
    except ValueError:
        raise DDMError(f"fano must be a number >= 0, {model.n_neurons} of them, or 'regular' "
                       f"(got shape {np.shape(fano)})") from None
    if not (np.all(np.isfinite(F)) and np.all(F >= 0)):
        raise DDMError("fano must be finite and >= 0, or 'regular'")
    return F.tolist()


def spiking_settings(model, plan):
    """``(noise, coupling, fano)`` of a spiking plan, checked (defaults: remainder, factored, regular)."""
    fano = plan.options.get("fano")
    return (spiking_noise(plan.noise), plan.options.get("coupling") or "factored",
            spiking_fano(model, "regular" if fano is None else fano))


def plugin_options():
    """The spiking options every spiking simulator plug-in declares: ``fano`` and ``record_spikes``."""
    from ddm_neuro.plugins import Option

    return {"fano": Option(None, "spiking: Fano factor of the spikes counted in the noise remainder: 'regular' "
                                 "(default) or numbers >= 0"),
            "record_spikes": Option(None, "spiking: store spike times and indices in the trajectory")}
