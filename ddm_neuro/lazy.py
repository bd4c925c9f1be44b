"""Packages whose public names are imported on first use, so that importing a package stays cheap.

Used by :mod:`ddm_neuro` (the public API), :mod:`ddm_neuro.fit` and :mod:`ddm_neuro.verify`.
"""
from __future__ import annotations

import importlib
import sys
import types


def lazy_names(package, homes):
    """Install module-level ``__getattr__`` and ``__dir__`` on ``package`` for the names in ``homes``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    homes : dict of str to (str, str or None)
        Each public name and ``(module, attribute)`` it comes from; attribute None: the module itself.
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = homes[name]
        value = importlib.import_module(module)
        value = value if attr is None else getattr(value, attr)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(homes))

    namespace["__getattr__"], namespace["__dir__"] = __getattr__, __dir__


def callable_package(package, name):
    """Make the package ``package`` callable: calling it calls its public name ``name`` (a lazy one too).

    ``ddm_neuro.fit`` and ``ddm_neuro.verify`` are both a package and the function a user calls.
    """
    class CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, name)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"Call :func:`{package}.{name}`."
    sys.modules[package].__class__ = CallablePackage
