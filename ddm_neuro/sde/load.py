"""An SDE from what a user names: a built-in system or a TOML spec file."""
from __future__ import annotations

from pathlib import Path


def load_sde(source, overrides=None):
    """The SDE that ``source`` names: a built-in system, or a TOML spec file.

    A name ending in ``.toml``, or naming an existing file that is not a
    built-in's name, is read as a spec (:func:`ddm_neuro.sde.spec.load_spec`);
    anything else is a built-in (:func:`ddm_neuro.sde.systems.get_system`).

    Parameters
    ----------
    source : str or Path
        A built-in name (``ddm-neuro systems`` lists them) or a spec file.
    overrides : dict of str to float, optional
        Parameter values replacing the system's own.

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

    source = str(source)
    if source.endswith(".toml") or (Path(source).exists() and source not in SPECS):
        return load_spec(source, overrides)
    return get_system(source, **(overrides or {}))
