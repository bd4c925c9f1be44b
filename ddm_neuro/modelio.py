"""The ``.ddm`` model file: arrays + JSON metadata in one zip (numpy ``.npz``), no pickle.

Layout: one array per :class:`~ddm_neuro.network.LatentRNN` array field and a
``__meta__`` entry holding UTF-8 JSON with ``format`` = ``"ddm_neuro.model"``,
``version`` (:data:`FORMAT_VERSION`), the neuron model, ``tau``,
``time_scale``, names, the SDE spec and ``meta`` (fit settings, metrics, seed,
model id). Loading uses ``allow_pickle=False``: a file can never run code.
Writing is atomic (temporary file, then rename).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import DDMError, ModelFileError
from .fileio import atomic_write, open_npz

FORMAT = "ddm_neuro.model"
FORMAT_VERSION = 1
ARRAYS = ("scale", "center", "encoders", "decoders", "readout", "bias", "input_weights",
          "noise_const", "noise_act", "noise_latent", "init_states")


def model_id(model):
    """A short content hash of the model's arrays (stable across saves)."""
    h = hashlib.sha256()
    for name in ARRAYS:
        h.update(np.ascontiguousarray(getattr(model, name), dtype=np.float64).tobytes())
    if model.w_perp is not None:  # absent: the same id as before W_perp existed
        h.update(np.ascontiguousarray(model.w_perp, dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


def save_model(model, path, force=False):
    """Write ``model`` to ``path`` atomically; refuse an existing path unless ``force``."""
    meta = dict(model.meta)
    meta["model_id"] = model_id(model)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "neuron": model.neuron.to_dict(),
              "tau": model.tau, "time_scale": model.time_scale, "variables": list(model.variables),
              "inputs": list(model.inputs), "sde_spec": model.sde_spec, "meta": meta}
    arrays = {name: np.asarray(getattr(model, name), dtype=np.float64) for name in ARRAYS}
    if model.w_perp is not None:
        arrays["w_perp"] = np.asarray(model.w_perp, dtype=np.float64)
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic_write(path, force=force) as fh:
        np.savez_compressed(fh, **arrays)
    model.meta["model_id"] = meta["model_id"]


def load_model(path):
    """Read a model file, with one clear error if it is missing, truncated, newer or not a model.

    Raises
    ------
    ModelFileError
    """
    from .network import LatentRNN

    path = Path(path)
    with open_npz(path, ModelFileError, "model file") as data:
        if "__meta__" not in data.files:
            raise ModelFileError(f"{path}: not a ddm_neuro model file (no metadata)")
        try:
            header = json.loads(data["__meta__"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"{path}: not a readable model file (its metadata is not JSON)") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not a ddm_neuro model file")
        version = header.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(f"{path}: model format version {version} is newer than this "
                                 f"ddm_neuro reads ({FORMAT_VERSION}); upgrade ddm_neuro")
        missing = [a for a in ARRAYS if a not in data.files]
        if missing:
            raise ModelFileError(f"{path}: model file lacks arrays {missing}")
        arrays = {a: data[a] for a in ARRAYS}
        w_perp = data["w_perp"] if "w_perp" in data.files else None
    try:
        model = LatentRNN(neuron=header["neuron"], tau=float(header["tau"]),
                          time_scale=float(header["time_scale"]), sde_spec=header.get("sde_spec"),
                          variables=list(header["variables"]), inputs=list(header.get("inputs", [])),
                          meta=dict(header.get("meta", {})), w_perp=w_perp, **arrays)
    except (KeyError, TypeError, ValueError, DDMError) as exc:
        raise ModelFileError(f"{path}: model metadata invalid ({exc})") from None
    _check_shapes(model, path)
    return model


def _check_shapes(model, path):
    n, d = model.encoders.shape if model.encoders.ndim == 2 else (0, 0)
    k = len(model.inputs)
    want = {"scale": (d,), "center": (d,), "encoders": (n, d), "decoders": (d, n), "readout": (d, n),
            "bias": (n,), "input_weights": (n, k), "noise_const": (n,), "noise_act": (n,),
            "noise_latent": (d, d)}
    for name, shape in want.items():
        if getattr(model, name).shape != shape:
            raise ModelFileError(f"{path}: array {name} has shape {getattr(model, name).shape}, expected {shape}")
    if len(model.variables) != d or n < d:
        raise ModelFileError(f"{path}: inconsistent sizes (N={n}, d={d}, variables={model.variables})")
    if model.w_perp is not None and model.w_perp.shape != (n, n):
        raise ModelFileError(f"{path}: w_perp has shape {model.w_perp.shape}, expected {(n, n)}")
