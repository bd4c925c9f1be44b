"""The user options of ``fit``, ``convert`` and ``constrain``: declared, tied together, and what they chose.

:data:`FIT`, :data:`CONVERT` and :data:`CONSTRAIN` declare the options (rows
as in :mod:`ddm_neuro.options`: flag, type, default, help) that the command
line offers. :func:`fit_settings`, :func:`convert_settings` and
:func:`constrain_settings` turn given options into the keywords of
:func:`~ddm_neuro.fit.matching.fit`, :func:`~ddm_neuro.spiking.convert.convert`
and :func:`~ddm_neuro.fit.hardware.constrain`, with the refusals of options
that do not go together (in words that name the flags), so a Python user and
the command line get the same behaviour.
"""
from __future__ import annotations

from ..errors import DDMError
from ..options import APPEND, FLAG, SEED, SPAN, rates

#: LIF neuron parameters (``fit`` and ``convert``).
LIF = [("--tau-ref SECONDS", float, None, "LIF refractory period in seconds (default 0.002; 0 for NIR export, whose "
                                          "CubaLIF has none)"),
       ("--max-rates LOW,HIGH", rates, None, "LIF: range of the neurons' maximum rates in Hz (default 200,400)")]
#: The options of a fit that :func:`fit_settings` takes.
FIT_SETTINGS = [
    ("-n N", int, 512, "number of neurons N (default 512)", "n_neurons"),
    ("--neuron", ("tanh", "lif"), None, "neuron model (default tanh; lif with --spiking/--spike-budget)"),
    ("--seed", SEED, 0, "seed of the random encoders, gains and training states (default 0)"), ("--tau", SPAN, 0.02, "neuron time constant in seconds (default 0.02)"), *LIF,
    ("--time-scale", SPAN, None, "seconds per SDE time unit (default: automatic)"),
    ("--steps", SEED, 200, "gradient refinement steps (0: closed form only)"),
    ("--spiking", FLAG, None, "fit for a spiking LIF network: choose the ridge lambda for spike jitter as well as rate "
     "accuracy (spike-noise budget 0.02 of the target's diffusion; implies --neuron lif)"),
    ("--spike-budget RATIO", SPAN, None, "as --spiking, with this budget: the spikes' predicted latent noise (Poisson "
     "count) over the target's, at the verifier's lag"),
    ("--spike-drift-cap ERR", SPAN, None, "largest validation drift error the spiking lambda may accept for smaller "
     "decoders (default 0.08)"),
    ("--ridge", ("small-decoders", "least-error"), None, "how the ridge lambda is chosen: the largest within the "
     "drift tolerance (small-decoders, the default: robust to noise and mismatch) or the least validation error "
     "(least-error: the most exact drift; what a spike-coordinated conversion's basis uses)")]
#: The options of a fit: the system (:func:`ddm_neuro.sde.load.load_sde`), :data:`FIT_SETTINGS`, parameter overrides.
FIT = [("system", str, None, "built-in name (see 'systems') or a .toml spec file"), *FIT_SETTINGS,
       ("--param NAME=VALUE", APPEND, None, "override an SDE parameter")]
#: The options of a conversion to LIF neurons (:func:`ddm_neuro.spiking.convert.convert`).
CONVERT = [("--neuron", ("lif",), "lif", "neuron model of the refit (lif)"),
           ("--tau-ref SECONDS", float, None, "LIF refractory period in seconds (default: 0.00005 for a conversion, "
            "whose spike noise it sets; 0 in norse; 0.002 with --refit-only)"), LIF[1],
           ("--steps", SEED, None, "gradient refinement steps of the fit (default: 0, closed form, for a conversion "
            "that calibrates; 200 with --refit-only)"),
           ("--seed", SEED, None, "default: the model's own fit seed (a spec: 0)")]
#: The options of :func:`constrain_settings`.
CONSTRAIN = [
    ("--bits", int, None, "weight bits on one shared scale (2..32)"),
    ("--fan-in", int, None, "most nonzero incoming weights per neuron"),
    ("--sparsity", float, None, "fraction of the N x N weights kept, in (0, 1]"),
    ("--dale", FLAG, None, "one sign per neuron's outgoing weights (Dale's law)"),
    ("--preset", str, None, "a chip's published limits (loihi, loihi2, xylo, spinnaker); --bits/--fan-in override "
     "its values"), ("--round-only", FLAG, None, "round and mask only, no quantisation-aware refit"),
    ("--steps", SEED, 300, "gradient steps of the refit (default 300; 0: compensated rounding only)"),
    ("--seed", SEED, 0, "seed of the refit (default 0)")]


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


def fit_settings(*, n_neurons=512, neuron=None, seed=0, tau=0.02, time_scale=None, steps=200, spiking=False,
                 spike_budget=None, spike_drift_cap=None, tau_ref=None, max_rates=None, ridge=None):
    """The keywords of :func:`ddm_neuro.fit.matching.fit` that the options of :data:`FIT_SETTINGS` choose.

    ``spiking`` (or a ``spike_budget``) chooses the ridge lambda for spike
    jitter as well as rate accuracy (budget
    :data:`~ddm_neuro.fit.matching.SPIKING_BUDGET` unless given), and implies
    LIF neurons; ``spike_drift_cap`` applies to that choice only.

    Parameters
    ----------
    n_neurons, seed, tau, time_scale, steps
        Passed on (see :func:`~ddm_neuro.fit.matching.fit`).
    neuron : {"tanh", "lif"}, optional
        Default ``"lif"`` with a spike budget, else ``"tanh"``.
    spiking : bool
    spike_budget : float, optional
        The spikes' predicted latent noise over the target's, at the verifier's lag.
    spike_drift_cap : float, optional
        Largest validation drift error the spiking lambda may accept.
    tau_ref, max_rates : optional
        LIF parameters (:func:`lif_neuron`).
    ridge : {"small-decoders", "least-error"}, optional
        How the ridge lambda is chosen (:data:`~ddm_neuro.fit.decoders.RIDGE_RULES`; default small-decoders).

    Returns
    -------
    dict
        ``n_neurons``, ``neuron``, ``seed``, ``tau``, ``time_scale``, ``steps``, and ``spike_budget`` /
        ``spike_drift_cap`` / ``ridge`` where they apply.

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
    if ridge not in (None, "small-decoders") and budget is not None:
        raise DDMError(f"--ridge {ridge} and --spiking/--spike-budget both choose the ridge lambda; give one")
    neuron = neuron or ("lif" if budget is not None else "tanh")
    if budget is not None and neuron != "lif":
        raise DDMError(f"--spiking/--spike-budget choose the ridge for spiking LIF networks; --neuron {neuron} "
                       "cannot spike (use --neuron lif or leave --neuron out)")
    out = {"n_neurons": n_neurons, "neuron": lif_neuron(neuron, tau_ref, max_rates), "seed": seed, "tau": tau,
           "time_scale": time_scale, "steps": steps}
    if budget is not None:
        out["spike_budget"] = budget
    if spike_drift_cap is not None:
        out["spike_drift_cap"] = spike_drift_cap
    if ridge is not None:
        out["ridge"] = ridge
    return out


def convert_settings(*, neuron="lif", tau_ref=None, max_rates=None, steps=None, seed=None):
    """The keywords of :func:`ddm_neuro.spiking.convert.convert` that the options of :data:`CONVERT` choose.

    Parameters
    ----------
    neuron : str
    tau_ref, max_rates : optional
        LIF parameters (:func:`lif_neuron`).
    steps, seed
        Passed on (``steps`` None: 200; ``seed`` None: the model's own fit seed).

    Returns
    -------
    dict
        ``neuron``, ``steps``, ``seed``.
    """
    return {"neuron": lif_neuron(neuron, tau_ref, max_rates), "steps": 200 if steps is None else steps, "seed": seed}


def fit_report(model, path=None):
    """What a fit gives its user: the summary lines (with the spiking ridge choice) and the warnings.

    Parameters
    ----------
    model : LatentRNN
        A fitted model (from ``fit``, ``convert`` or ``constrain``).
    path : str or Path, optional
        Where it was written (said in the summary).

    Returns
    -------
    text : str
        :func:`~ddm_neuro.fit.matching.fit_summary`, then :func:`spike_ridge_summary` where it applies.
    warnings : list of str
        :func:`~ddm_neuro.fit.matching.fit_warnings`.
    """
    from .matching import fit_summary, fit_warnings

    ridge = spike_ridge_summary(model)
    return fit_summary(model, path) + (f"\n{ridge}" if ridge else ""), fit_warnings(model)


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


def constrain_settings(n_neurons, *, preset=None, bits=None, fan_in=None, sparsity=None, dale=False, round_only=False,
                       steps=300, seed=0):
    """The keywords of :func:`ddm_neuro.fit.hardware.constrain` that the options of :data:`CONSTRAIN` choose.

    Parameters
    ----------
    n_neurons : int
        The network's size (for the preset).
    preset, bits, fan_in
        :func:`constrain_limits`.
    sparsity, dale, steps, seed
        Passed on.
    round_only : bool
        Round and mask only (``refit=False``).

    Returns
    -------
    dict
        ``bits``, ``fan_in``, ``sparsity``, ``dale``, ``refit``, ``steps``, ``seed``.
    """
    bits, fan_in = constrain_limits(n_neurons, preset=preset, bits=bits, fan_in=fan_in)
    return {"bits": bits, "fan_in": fan_in, "sparsity": sparsity, "dale": dale, "refit": not round_only,
            "steps": steps, "seed": seed}
