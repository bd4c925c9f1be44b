"""An SDE from what a user names: a built-in system or a TOML spec file."""
from __future__ import annotations

from pathlib import Path

from ..errors import DDMError


def load_sde(source, overrides=None):
    """The SDE that ``source`` names: a built-in system, or a TOML spec file.

    A name ending in ``.toml``, or naming an existing file that is not a
    built-in's name, is read as a spec (:func:`ddm_neuro.sde.spec.load_spec`);
    anything else is a built-in (:func:`ddm_neuro.sde.systems.get_system`).

    Parameters
    ----------
    source : str or Path
        A built-in name (``ddm-neuro systems`` lists them) or a spec file.
    overrides : dict of str to float, or list of str, optional
        Parameter values replacing the system's own; as texts ``"NAME=VALUE"``
        (the command line's ``--param``), read by :func:`parse_overrides`.

    Returns
    -------
    SDE

    Raises
    ------
    DDMError
        An unknown system, a spec that does not parse or check, or an unknown parameter.
    """
    from .spec import load_spec
    from .systems import SPECS, get_system

    if overrides is not None and not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    source = str(source)
    if source.endswith(".toml") or (Path(source).exists() and source not in SPECS):
        return load_spec(source, overrides)
    return get_system(source, **(overrides or {}))


def parse_overrides(items):
    """Parameter overrides from texts ``"NAME=VALUE"``.

    Parameters
    ----------
    items : iterable of str

    Returns
    -------
    dict of str to float

    Raises
    ------
    DDMError
        A text without ``=``, or a value that is not a number.
    """
    out = {}
    for item in items or []:
        if "=" not in item:
            raise DDMError(f"--param expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise DDMError(f"--param {name}: {value!r} is not a number") from None
    return out
