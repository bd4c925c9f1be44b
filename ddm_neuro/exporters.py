"""Export formats, by name, from installed plug-ins.

The core has no exporter of its own: packages such as the top-level
``exporters`` register theirs under the ``ddm_neuro.exporters`` entry-point
group, as a callable returning ``{format: export_function}`` where
``export_function(model, output, *, mode, force, progress, **options) -> Path``.
The core never imports them directly.
"""
from __future__ import annotations

from importlib import metadata

from .errors import DDMError


def _formats():
    found = {}
    for ep in metadata.entry_points(group="ddm_neuro.exporters"):
        try:
            found.update(ep.load()())
        except ImportError as exc:
            found.setdefault(ep.name, exc)
    return found


def get_exporter(fmt):
    """The export function for ``fmt``, or a :class:`DDMError` listing the installed formats."""
    found = _formats()
    fn = found.get(fmt)
    if fn is None:
        available = sorted(k for k, v in found.items() if callable(v))
        raise DDMError(f"unknown export format {fmt!r} (installed: {', '.join(available) or 'none'})")
    if isinstance(fn, ImportError):
        raise DDMError(f"export format {fmt!r} needs a package that is not installed: {fn}")
    return fn


def formats():
    """Names of the installed export formats."""
    return sorted(k for k, v in _formats().items() if callable(v))
