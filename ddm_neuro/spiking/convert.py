"""Convert a fitted network to another neuron model (tanh -> LIF for spiking) by refitting it.

The tanh network's tuning is kept: each neuron's encoder direction ``e_j =
E_j / |E_j|`` and its intercept, the point along ``e_j`` where its input
crosses the curve's turning point (tanh: ``x = 0``, so ``theta_j = -b_j /
|E_j|``, normalised latent units). The LIF network gets the same directions
and intercepts (its threshold 1 sits at ``theta_j``) with gains drawn for
maximum rates in the LIF model's ``max_rates`` range, keeping the tanh model's
tau and time scale; then the usual fit refits decoders in closed form, refines
gains, biases and encoders in torch (``steps``), and matches the diffusion
with the LIF rate curve. Rates stay positive and within ``max_rates`` (default
200–400 Hz at the edge of the normalised range) by construction of the curve.
"""
from __future__ import annotations

import numpy as np

from ..errors import DDMError
from ..fit.matching import fit
from ..modelio import model_id


def tuning_of(model):
    """Encoder directions (N, d + k) and intercepts (N,) of ``model``'s neurons (normalised latent units)."""
    if model.neuron.name != "tanh":
        raise DDMError(f"conversion reads tuning from tanh neurons (this model has {model.neuron.name!r})")
    full = np.concatenate([model.encoders, model.input_weights], axis=1)
    gain = np.linalg.norm(model.encoders, axis=1)
    if np.any(gain <= 0):
        raise DDMError("a neuron has a zero encoder: its direction is undefined")
    theta = -model.bias / gain
    return full / np.linalg.norm(full, axis=1, keepdims=True), theta


def convert(model, sde=None, *, neuron="lif", steps=200, seed=None, progress=False, **fit_options):
    """Refit ``model`` (tanh) with another neuron model, keeping its tuning, tau and time scale.

    Parameters
    ----------
    model : LatentRNN
        A tanh model.
    sde : SDE, optional
        Its target (default ``model.sde()``).
    neuron : str or dict
        Target neuron model (``"lif"`` or a dict with LIF parameters).
    steps : int
        Gradient refinement steps of the refit.
    seed : int, optional
        Default: the model's own fit seed.

    Returns
    -------
    LatentRNN
        ``meta["converted_from"]`` holds the source model id and neuron model.
    """
    sde = sde or model.sde()
    directions, theta = tuning_of(model)
    seed = int(model.meta.get("seed", 0) if seed is None else seed)
    out = fit(sde, n_neurons=model.n_neurons, neuron=neuron, tau=model.tau, time_scale=model.time_scale,
              seed=seed, steps=steps, progress=progress,
              tuning={"directions": directions, "intercepts": np.clip(theta, -0.99, 0.99),
                      "source": model.meta.get("model_id") or model_id(model)}, **fit_options)
    out.meta["converted_from"] = {"model_id": model.meta.get("model_id") or model_id(model),
                                  "neuron": model.neuron.to_dict(),
                                  "drift_error": model.meta.get("fit", {}).get("drift_error")}
    return out
