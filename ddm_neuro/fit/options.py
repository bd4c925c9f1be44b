"""How the fit's and the hardware constraint's user options tie together, and what the spiking choice did.

The command line passes its flags here unchanged, so a Python user calling
:func:`fit_settings` or :func:`constrain_limits` gets the same refusals (in
the same words, which name the flags) and the same defaults.
"""
from __future__ import annotations

from ..errors import DDMError


def lif_neuron(neuron, tau_ref=None, max_rates=None):
    """The neuron spec: ``neuron`` itself, or a LIF dict with ``tau_ref`` / ``max_rates`` when given.

    Parameters
    ----------
    neuron : str
        ``"tanh"`` or ``"lif"``.
    tau_ref : float, optional
        LIF refractory period in seconds.
    max_rates : (float, float), optional
        LIF: range of the neurons' maximum rates in Hz.

    Returns
    -------
    str or dict
        ``neuron`` when neither LIF parameter is given, else the checked LIF ``to_dict()`` form.

    Raises
    ------
    DDMError
        LIF parameters for a neuron without them, or values the LIF model refuses
        (checked here: a clear error before fitting).
    """
    given = {k: v for k, v in (("tau_ref", tau_ref), ("max_rates", max_rates)) if v is not None}
    if not given:
        return neuron
    if neuron != "lif":
        raise DDMError(f"--tau-ref and --max-rates set LIF parameters; --neuron {neuron} has none "
                       "(use --neuron lif)")
    from ..neurons import make_neuron

    return make_neuron({"name": "lif", **given}).to_dict()


def fit_settings(*, neuron=None, spiking=False, spike_budget=None, spike_drift_cap=None, tau_ref=None,
                 max_rates=None):
    """The keywords of :func:`ddm_neuro.fit.matching.fit` that the neuron and spiking options choose.

    ``spiking`` (or a ``spike_budget``) chooses the ridge lambda for spike
    jitter as well as rate accuracy (budget
    :data:`~ddm_neuro.fit.matching.SPIKING_BUDGET` unless given), and implies
    LIF neurons; ``spike_drift_cap`` applies to that choice only.

    Parameters
    ----------
    neuron : {"tanh", "lif"}, optional
        Default ``"lif"`` with a spike budget, else ``"tanh"``.
    spiking : bool
    spike_budget : float, optional
        The spikes' predicted latent noise over the target's, at the verifier's lag.
    spike_drift_cap : float, optional
        Largest validation drift error the spiking lambda may accept.
    tau_ref, max_rates : optional
        LIF parameters (:func:`lif_neuron`).

    Returns
    -------
    dict
        ``neuron``, and ``spike_budget`` / ``spike_drift_cap`` where they apply.

    Raises
    ------
    DDMError
        A drift cap without a spiking choice, a spiking choice with a neuron that
        cannot spike, or LIF parameters that do not apply or check.
    """
    budget = spike_budget
    if budget is None and spiking:
        from .matching import SPIKING_BUDGET

        budget = SPIKING_BUDGET
    if spike_drift_cap is not None and budget is None:
        raise DDMError("--spike-drift-cap applies to the spiking lambda choice: add --spiking or --spike-budget")
    neuron = neuron or ("lif" if budget is not None else "tanh")
    if budget is not None and neuron != "lif":
        raise DDMError(f"--spiking/--spike-budget choose the ridge for spiking LIF networks; --neuron {neuron} "
                       "cannot spike (use --neuron lif or leave --neuron out)")
    out = {"neuron": lif_neuron(neuron, tau_ref, max_rates)}
    if budget is not None:
        out["spike_budget"] = budget
    if spike_drift_cap is not None:
        out["spike_drift_cap"] = spike_drift_cap
    return out


def spike_ridge_summary(model):
    """What the spiking ridge choice did, as printed lines (None when the fit made none).

    Parameters
    ----------
    model : LatentRNN
        A fitted model (``meta["fit"]["spike_ridge"]`` is set by a fit with a spike budget).

    Returns
    -------
    str or None
    """
    sr = (model.meta.get("fit") or {}).get("spike_ridge")
    if not sr:
        return None
    lines = [f"  spiking ridge lambda     {sr['lambda']:.4g} = {sr['factor']:.3g} x the rate-accuracy choice; "
             f"predicted spike noise {sr['spike_ratio_final']:.3g} x the target's (rate choice "
             f"{sr['rate_spike_ratio']:.3g}, budget {sr['budget']:g})"]
    if not sr["budget_met"]:
        lines.append(f"  spike budget not met within the drift cap ({sr['drift_cap']:g}): more neurons (-n), a "
                     "longer --tau, or a larger --spike-drift-cap would lower the spike noise")
    return "\n".join(lines)


def constrain_limits(n_neurons, *, preset=None, bits=None, fan_in=None):
    """The weight bits and fan-in a constraint applies: a chip preset's, overridden by those given.

    Parameters
    ----------
    n_neurons : int
        The network's size (a preset's fan-in is capped at it; a chip too small is refused).
    preset : str, optional
        A chip's published limits (:data:`ddm_neuro.presets.PRESETS`: loihi, loihi2, xylo, spinnaker).
    bits, fan_in : int, optional
        Given values; they override the preset's.

    Returns
    -------
    (int or None, int or None)
        ``(bits, fan_in)``.

    Raises
    ------
    DDMError
        An unknown preset, or one whose chip holds fewer neurons than the network.
    """
    if preset:
        from .hardware import preset_limits

        p_bits, p_fan_in = preset_limits(preset, n_neurons)
        bits = p_bits if bits is None else bits
        fan_in = p_fan_in if fan_in is None else fan_in
    return bits, fan_in
