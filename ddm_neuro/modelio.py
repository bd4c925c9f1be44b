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
from .model_fields import ARRAY_FIELDS, check_sizes

FORMAT = "ddm_neuro.model"
FORMAT_VERSION = 1
ARRAYS = ARRAY_FIELDS
#: Largest JSON header a model file may hold (fit metrics and calibration logs are kilobytes).
MAX_META_BYTES = 64 * 2 ** 20
#: Most start states (``init_states`` rows) a model file may hold (a fit stores at most 256).
MAX_START_STATES = 1_000_000
#: Largest ``max |D E - I|`` accepted on load (fitted models: ~1e-15).
READOUT_TOLERANCE = 1e-6


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


def load_model(path, cls):
    """Read a model file, with one clear error if it is missing, truncated, newer or not a model.

    Everything is checked before the model is used: the archive before any
    array is decompressed (:func:`~ddm_neuro.fileio.open_npz`), then the
    metadata's types, every array's dtype and declared shape against N, d and
    k, the embedded SDE spec's structure (its expressions are compiled only
    when the SDE is rebuilt), the values (:func:`~ddm_neuro.model_fields.check_model`:
    finite numbers, positive time constants, non-negative noise, a valid
    neuron model) and the read-out identity ``D E = I``.

    Parameters
    ----------
    path : str or Path
    cls : type
        The model class to build (:class:`~ddm_neuro.network.LatentRNN`; its
        ``load`` passes itself, so this module needs no import of it).

    Returns
    -------
    LatentRNN

    Raises
    ------
    ModelFileError
        One line naming the file, the field and the problem.
    """

    path = Path(path)
    with open_npz(path, ModelFileError, "model file") as data:
        header = _read_header(data, path)
        fields = _header_fields(header, path)
        missing = [a for a in ARRAYS if a not in data]
        if missing:
            raise ModelFileError(f"{path}: model file lacks arrays {missing}")
        names = ARRAYS + (("w_perp",) if "w_perp" in data else ())
        for name in names:
            if data.dtype(name).kind not in "iuf":
                raise ModelFileError(f"{path}: array {name} has dtype {data.dtype(name)}, not numbers")
        try:  # from the .npy headers: nothing decompressed yet
            check_sizes({name: data.shape(name) for name in names}, fields["variables"], fields["inputs"])
        except DDMError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        problem = _spec_problem(fields["sde_spec"], fields["variables"], fields["inputs"])
        if problem:
            raise ModelFileError(f"{path}: embedded SDE spec (sde_spec) is malformed: {problem}")
        n0 = data.shape("init_states")[0]
        if n0 > MAX_START_STATES:
            raise ModelFileError(f"{path}: array init_states holds {n0} start states, more than the "
                                 f"{MAX_START_STATES} a model file may hold")
        arrays = {a: np.asarray(data[a], dtype=np.float64) for a in names}
    w_perp = arrays.pop("w_perp", None)
    try:
        model = cls(**fields, w_perp=w_perp, **arrays)
    except DDMError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    with np.errstate(all="ignore"):  # overflow shows as inf, refused below
        off = float(np.max(np.abs(model.readout @ model.encoders - np.eye(model.dim))))
    if not off <= READOUT_TOLERANCE:
        raise ModelFileError(f"{path}: arrays readout and encoders disagree: readout @ encoders must be the identity "
                             f"(D E = I), but is off by up to {off:.3g}; the file was edited or damaged")
    return model


def _read_header(data, path):
    """The decoded JSON header of an open model archive, checked to be this format and version."""
    if "__meta__" not in data:
        raise ModelFileError(f"{path}: not a ddm_neuro model file (no metadata)")
    shape, dtype = data.shape("__meta__"), data.dtype("__meta__")
    if len(shape) != 1 or dtype.kind != "u" or dtype.itemsize != 1:
        raise ModelFileError(f"{path}: not a readable model file (its metadata is not JSON text)")
    if shape[0] > MAX_META_BYTES:
        raise ModelFileError(f"{path}: its metadata is {shape[0]} bytes, more than the {MAX_META_BYTES} "
                             "a model file may hold")
    try:
        header = json.loads(data["__meta__"].tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: not a readable model file (its metadata is not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a ddm_neuro model file")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path}: model format version {version!r:.40} is not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {version} is newer than this "
                             f"ddm_neuro reads ({FORMAT_VERSION}); upgrade ddm_neuro")
    if version < 1:
        raise ModelFileError(f"{path}: model format version {version} is not a valid version (1..{FORMAT_VERSION})")
    return header


def _header_fields(header, path):
    """The :class:`LatentRNN` keyword arguments held in the header, their JSON types checked."""
    missing = [k for k in ("neuron", "tau", "time_scale", "variables") if k not in header]
    if missing:
        raise ModelFileError(f"{path}: model metadata lacks {', '.join(repr(k) for k in missing)}")
    fields = {"neuron": header["neuron"], "tau": header["tau"], "time_scale": header["time_scale"],
              "variables": header["variables"], "inputs": header.get("inputs", []),
              "sde_spec": header.get("sde_spec"), "meta": header.get("meta", {})}
    for key, kind in (("variables", list), ("inputs", list), ("meta", dict), ("neuron", (dict, str))):
        if not isinstance(fields[key], kind):
            want = {list: "a list of names", dict: "a JSON object"}.get(kind, "a name or a JSON object")
            raise ModelFileError(f"{path}: model metadata '{key}' must be {want} "
                                 f"(got {type(fields[key]).__name__})")
    for key in ("variables", "inputs"):
        if not all(isinstance(v, str) for v in fields[key]):
            raise ModelFileError(f"{path}: model metadata '{key}' must be a list of names (got {fields[key]!r:.80})")
    return fields


def _spec_problem(sde_spec, variables, inputs):
    """What is structurally wrong with an embedded spec (None if nothing); expressions are not parsed here."""
    if sde_spec is None:
        return None
    if not isinstance(sde_spec, dict):
        return f"expected a JSON object or null, got {type(sde_spec).__name__}"
    if sde_spec.get("kind") != "spec" or not isinstance(sde_spec.get("spec"), dict):
        return "expected {\"kind\": \"spec\", \"spec\": {...}}"
    spec = sde_spec["spec"]
    if spec.get("variables") != list(variables):
        return f"its variables {spec.get('variables')!r:.80} are not the model's {list(variables)}"
    if spec.get("inputs", []) != list(inputs):
        return f"its inputs {spec.get('inputs')!r:.80} are not the model's {list(inputs)}"
    for key in ("drift", "diffusion"):
        if not isinstance(spec.get(key), dict):
            return f"'{key}' must be a table (got {type(spec.get(key)).__name__})"
    for key in ("parameters", "input_range", "domain"):
        if not isinstance(spec.get(key, {}), dict):
            return f"'{key}' must be a table (got {type(spec.get(key)).__name__})"
    return None
