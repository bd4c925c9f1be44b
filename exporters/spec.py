"""A trained model as a plain *spec*: arrays plus a JSON-able ``info`` dict; numpy only.

Every exported project (Brian2, NEST) ships this file as ``spec.py`` beside its
network script, so the network is rebuilt from ``model.npz`` without ddm_neuro.

Arrays (float64): ``encoders`` E (N, d), ``decoders`` K (d, N), ``readout`` D
(d, N), ``bias`` b (N,), ``noise_const`` and ``noise_act`` (N,, seconds: the
private output noise ``sigma_j^2(x) = noise_const_j + noise_act_j act(x_j)``),
``noise_latent`` L (d, d), ``input_weights`` B (N, k), ``center`` c and
``scale`` S (d,: ``z = S y + c``), ``init_states`` (M, d: start states drawn
from the fitted region). ``info``: ``tau`` (seconds), ``time_scale`` T
(seconds of network time per SDE time unit), ``neuron`` (``{"name": "tanh" |
"lif", **params}``), ``variables``, ``inputs``, ``model_id``, ``sde_name``,
``default_dt``, ``default_record_dt`` (SDE units).
"""
from __future__ import annotations

import json

import numpy as np

#: Arrays of a spec, in the file ``model.npz`` of an exported project.
ARRAYS = ("encoders", "decoders", "readout", "bias", "noise_const", "noise_act", "noise_latent",
          "input_weights", "center", "scale", "init_states")


def model_spec(model):
    """The plain ``(arrays, info)`` spec of a :class:`ddm_neuro.network.LatentRNN`.

    Raises
    ------
    ddm_neuro.errors.DDMError
        The model has off-subspace recurrent weights (``W_perp``), which no exported network carries.
    """
    from ddm_neuro.errors import DDMError
    from ddm_neuro.run.plan import network_steps

    if model.w_perp is not None:
        raise DDMError("export: models with W_perp (off-subspace recurrent weights) are not supported")
    arrays = {"encoders": model.encoders, "decoders": model.decoders, "readout": model.readout,
              "bias": model.bias, "noise_const": model.noise_const, "noise_act": model.noise_act,
              "noise_latent": model.noise_latent,
              "input_weights": model.input_weights.reshape(model.n_neurons, model.n_inputs),
              "center": model.center, "scale": model.scale, "init_states": model.init_states}
    dt, rec = network_steps(model)
    info = {"tau": float(model.tau), "time_scale": float(model.time_scale), "neuron": model.neuron.to_dict(),
            "variables": list(model.variables), "inputs": list(model.inputs), "model_id": model.meta.get("model_id"),
            "sde_name": model.meta.get("sde_name"), "default_dt": dt, "default_record_dt": rec}
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}, info


def save_spec(path, arrays, info):
    """Write a spec as one ``.npz`` (arrays plus ``info`` as a JSON string; no pickle)."""
    np.savez(path, **{k: np.asarray(arrays[k], dtype=np.float64) for k in ARRAYS},
             info=np.array(json.dumps(info)))


def load_spec(path):
    """Read a spec written by :func:`save_spec`: ``(arrays, info)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in ARRAYS}
        info = json.loads(str(data["info"]))
    return arrays, info


def initial_state(arrays, z0, u0=None):
    """Neuron inputs ``x0`` and input drive ``B u0`` for latent starts ``z0`` (trials, d).

    ``x0 = E (z0 - c) / S + P (b + B u0)`` with ``P = I - E D``: the latent at
    ``z0`` and everything off the latent subspace at rest. Returns flat arrays
    (trials * N,) in the network's neuron order (trial-major).
    """
    E, D = arrays["encoders"], arrays["readout"]
    z0 = np.atleast_2d(np.asarray(z0, dtype=np.float64))
    drive = np.zeros(E.shape[0])
    if u0 is not None and arrays["input_weights"].shape[1]:
        drive = arrays["input_weights"] @ np.asarray(u0, dtype=np.float64)
    rest = arrays["bias"] + drive
    rest = rest - E @ (D @ rest)
    x0 = ((z0 - arrays["center"]) / arrays["scale"]) @ E.T + rest
    return x0.reshape(-1), np.tile(drive, len(z0))


def spiking_state(arrays, x0, coupling, rng):
    """Start values of a spiking network for neuron inputs ``x0`` (trials * N,): a dict by variable.

    ``x = p + E q`` splits into the off-subspace part ``p = x - E D x`` and the
    latent synaptic state ``q = D x`` (factored; dense keeps ``syn = E D x``
    per neuron; uncoupled, ``"none"``, keeps all of ``x`` in ``p``); membrane
    potentials start uniform in [0, 1) (random phases).
    """
    E, D = arrays["encoders"], arrays["readout"]
    N, d = E.shape
    X = np.asarray(x0, dtype=np.float64).reshape(-1, N)
    q = X @ D.T
    syn = q @ E.T
    out = {"p": (X - syn).reshape(-1), "v": rng.uniform(0.0, 1.0, X.size)}
    if coupling == "dense":
        out["syn"] = syn.reshape(-1)
    elif coupling == "factored":
        out["q"] = q.reshape(-1)
    else:  # "none": no synapses; the whole input is the constant part
        out["p"] = X.reshape(-1)
    return out
