"""The array fields of a :class:`~ddm_neuro.network.LatentRNN`, their shapes, and the checks of a model's values.

Shared by the model class and the model file reader, which checks shapes from
the file's headers before reading any data.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DDMError

#: The array fields of :class:`~ddm_neuro.network.LatentRNN`, in the order of the model file.
ARRAY_FIELDS = ("scale", "center", "encoders", "decoders", "readout", "bias", "input_weights",
                "noise_const", "noise_act", "noise_latent", "init_states")


def expected_shapes(n, d, k, n0=None):
    """The shape each array field must have for N = ``n`` neurons, d = ``d`` and k = ``k`` inputs.

    Parameters
    ----------
    n, d, k : int
    n0 : int, optional
        Number of start states; ``init_states`` is left out when not given.

    Returns
    -------
    dict
        ``{field: shape}``, with ``w_perp`` (N, N).
    """
    want = {"scale": (d,), "center": (d,), "encoders": (n, d), "decoders": (d, n), "readout": (d, n),
            "bias": (n,), "input_weights": (n, k), "noise_const": (n,), "noise_act": (n,),
            "noise_latent": (d, d), "w_perp": (n, n)}
    if n0 is not None:
        want["init_states"] = (n0, d)
    return want


def _positive(value, name, unit):
    try:
        number = not isinstance(value, (str, bytes)) and np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError):
        number = False
    if not number:
        raise DDMError(f"{name} must be a number of {unit} (got {value!r:.80})")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise DDMError(f"{name} must be a finite number > 0 ({unit}), got {value}")


def _names(value, what):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DDMError(f"{what} must be a list of names (got {value!r:.80})")


def check_sizes(shapes, variables, inputs):
    """Check declared array shapes against each other and the names; return ``(N, d, k)``.

    Parameters
    ----------
    shapes : dict
        ``{field: shape}`` for the fields of :data:`ARRAY_FIELDS` (and ``w_perp`` if present).
    variables, inputs : list of str

    Raises
    ------
    DDMError
        One line naming the first array whose shape disagrees.
    """
    _names(variables, "variables")
    _names(inputs, "inputs")
    enc = tuple(shapes["encoders"])
    d, k = len(variables), len(inputs)
    if len(enc) != 2 or enc[1] != d:
        raise DDMError(f"array encoders has shape {enc}, expected (N, {d}) for the {d} variable(s) "
                       f"{list(variables)}")
    n = enc[0]
    if n < max(d, 1):
        raise DDMError(f"array encoders has shape {enc}: N = {n} neurons, but a model needs N >= max(1, d) = "
                       f"{max(d, 1)}")
    init = tuple(shapes["init_states"])
    if len(init) != 2 or init[1] != d or init[0] < 1:
        raise DDMError(f"array init_states has shape {init}, expected (n0, {d}) with n0 >= 1 start states")
    want = expected_shapes(n, d, k, init[0])
    for name, shape in shapes.items():
        if name in want and tuple(shape) != want[name]:
            raise DDMError(f"array {name} has shape {tuple(shape)}, expected {want[name]}")
    return n, d, k


def check_model(model):
    """Check a :class:`~ddm_neuro.network.LatentRNN`'s fields: types, finite values, signs and consistent shapes.

    Time constants are finite and positive, noise intensities non-negative
    (``noise_latent`` is a factor ``L`` of ``L L^T`` and may take any sign),
    ``scale`` nonzero, every array numeric, finite and of the shape N, d and k
    imply, ``meta`` a dict and ``sde_spec`` a dict or None.

    Raises
    ------
    DDMError
        One line naming the field and the problem.
    """
    _positive(model.tau, "tau", "seconds")
    _positive(model.time_scale, "time_scale", "seconds per SDE time unit")
    if not isinstance(model.meta, dict):
        raise DDMError(f"meta must be a dict (got {type(model.meta).__name__})")
    if model.sde_spec is not None and not isinstance(model.sde_spec, dict):
        raise DDMError(f"sde_spec must be a dict or None (got {type(model.sde_spec).__name__})")
    arrays = {name: getattr(model, name) for name in ARRAY_FIELDS}
    if model.w_perp is not None:
        arrays["w_perp"] = model.w_perp
    for name, value in arrays.items():
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):  # ragged nested lists
            raise DDMError(f"array {name} is not a rectangular array of numbers") from None
        if dtype.kind not in "iuf":
            raise DDMError(f"array {name} must hold numbers (got dtype {dtype})")
    check_sizes({name: np.shape(v) for name, v in arrays.items()}, model.variables, model.inputs)
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            bad = ~np.isfinite(value)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise DDMError(f"array {name} holds non-finite values ({int(bad.sum())}; first "
                               f"{value[where]} at index {where})")
    for name in ("noise_const", "noise_act"):
        value = np.asarray(arrays[name])
        if (value < 0).any():
            j = int(np.argmax(value < 0))
            raise DDMError(f"array {name} must be >= 0 (noise intensities); neuron {j} has {value[j]}")
    if (np.asarray(model.scale) == 0).any():
        raise DDMError("array scale must be nonzero (z = scale * y + center)")
