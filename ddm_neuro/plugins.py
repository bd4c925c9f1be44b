"""One registry for simulator back ends and export formats.

A plug-in is declared once, as data: a name, a kind (``"simulator"`` or
``"format"``), the modes it takes, the options it declares (with defaults and
a line of help), the packages it needs, and where its function lives
(``"module:function"``, imported on first use, so listing plug-ins imports no
heavy library).

* A **simulator** is ``run(plan) -> Trajectory``: it receives a checked
  :class:`~ddm_neuro.run.plan.RunPlan` (grid, seed, input, start states, its
  options with defaults filled) and returns ``plan.trajectory(z, backend=...)``.
* A **format** is ``export(model, output, *, mode, force, progress, **options)
  -> Path``; ``options`` are its declared options, defaults filled.

Unknown options are refused with the accepted ones listed; a plug-in whose
package is missing is refused with the ``pip install`` line that adds it;
registering a name twice for one kind is refused.

The core's own, ``torch`` and ``target``, are declared in :data:`CORE`
(functions in :mod:`ddm_neuro.run.backends`).
Other packages (such as the top-level ``exporters``) declare theirs through
the ``ddm_neuro.plugins`` entry-point group: each entry point is a callable
returning a list of :class:`Plugin`. The core never imports them directly.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass, field
from importlib import metadata

from .errors import DDMError
from .run.plan import MODES, plan_run

KINDS = ("simulator", "format")



class PluginWarning(UserWarning):
    """An installed plug-in entry point could not be loaded (it is skipped; the others work)."""


class OptionError(DDMError):
    """Options a plug-in does not declare; ``plugin`` and ``unknown`` say which (the CLI names its flags)."""

    def __init__(self, plugin, unknown):
        self.plugin, self.unknown = plugin, list(unknown)
        accepted = ", ".join(sorted(plugin.options)) or "none"
        super().__init__(f"{plugin.label} does not take {', '.join(map(repr, self.unknown))} (it takes: {accepted})")
_WHAT = {"simulator": "backend", "format": "export format"}


@dataclass(frozen=True)
class Option:
    """One option a plug-in declares.

    Attributes
    ----------
    default : object
        Used when the caller does not give the option.
    help : str
        One line for ``--help`` and error messages.
    choices : tuple, optional
        The accepted values, where the option takes a few named ones.
    """

    default: object = None
    help: str = ""
    choices: tuple | None = None


@dataclass
class Plugin:
    """A simulator back end or an export format, declared as data.

    Attributes
    ----------
    name : str
    kind : {"simulator", "format"}
    modes : tuple of str
        The modes it takes (``rate``, ``spiking``, ``sde``).
    target : str or callable
        ``"module:function"`` (imported on first use) or the function itself.
    options : dict of str to Option
    requires : tuple of str
        Importable package names it needs; missing ones are named with ``extra``.
    extra : str, optional
        The pip extra that installs them (``pip install '.[extra]'``).
    help : str
        One line: what it is.
    output : {"file", "dir"}
        What an export format writes (checked before any work); simulators: "file".
    coordinated : bool
        A simulator that runs spike-coordinated networks in spiking mode
        (:mod:`ddm_neuro.spiking.coordinated`), or a format that exports them; the others refuse them.
    """

    name: str
    kind: str
    modes: tuple
    target: object
    options: dict = field(default_factory=dict)
    requires: tuple = ()
    extra: str | None = None
    help: str = ""
    output: str = "file"
    coordinated: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"plug-in {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.output not in ("file", "dir"):
            raise ValueError(f"plug-in {self.name!r}: output must be 'file' or 'dir', got {self.output!r}")
        self.modes = tuple(self.modes)
        for key, opt in self.options.items():
            if not isinstance(opt, Option):
                raise ValueError(f"plug-in {self.name!r}: option {key!r} must be declared as an Option")

    @property
    def label(self):
        """``backend 'name'`` or ``export format 'name'``, for messages."""
        return f"{_WHAT[self.kind]} {self.name!r}"

    def check_mode(self, mode):
        """Refuse a mode this plug-in does not take, listing the ones it does."""
        if mode not in self.modes:
            unknown = f"unknown mode {mode!r}: " if mode not in MODES else ""
            raise DDMError(f"{unknown}{self.label} does not support mode {mode!r} (supports: {', '.join(self.modes)})")

    def resolve(self, options):
        """The declared options with ``options`` applied; unknown options and values outside ``choices`` refused.

        ``None`` for an option means its default.
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise OptionError(self, unknown)
        out = {}
        for key, opt in self.options.items():
            value = options.get(key)
            value = opt.default if value is None else value
            if opt.choices is not None and value is not None and not _among(value, opt.choices):
                raise DDMError(f"{self.label}: {key} must be one of {', '.join(map(str, opt.choices))} "
                               f"(got {value!r})")
            out[key] = value
        return out

    def load(self):
        """The plug-in's function, importing its module (and checking its packages) on first use."""
        missing = [pkg for pkg in self.requires if importlib.util.find_spec(pkg) is None]
        if missing:
            how = f": pip install '.[{self.extra}]'" if self.extra else ""
            raise DDMError(f"{self.label} needs {', '.join(missing)}, which is not installed{how}")
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise DDMError(f"{self.label} needs a package that is not installed: {exc}") from None
        self.target = fn
        return fn


def _among(value, choices):
    try:
        return value in choices
    except TypeError:  # unhashable or incomparable: not one of them
        return False


_REGISTRY = {kind: {} for kind in KINDS}
_LOADED = []


def register(plugin):
    """Add ``plugin`` to the registry; a second plug-in of one kind and name is refused.

    Returns
    -------
    Plugin
    """
    table = _REGISTRY[plugin.kind]
    if plugin.name in table:
        raise ValueError(f"{plugin.label} is already registered")
    table[plugin.name] = plugin
    return plugin


def simulator(name, modes, *, options=None, requires=(), extra=None, help=""):
    """Decorator: register the decorated ``run(plan)`` as simulator back end ``name``."""
    def deco(fn):
        register(Plugin(name, "simulator", modes, fn, dict(options or {}), tuple(requires), extra,
                        help or (fn.__doc__ or "").strip().split("\n")[0]))
        return fn
    return deco


_COUPLING = Option(None, "recurrent coupling: factored E (K r), O(N d) per step (default), or the dense N x N W",
                   ("factored", "dense"))

#: The core's simulator back ends.
CORE = [
    Plugin("torch", "simulator", ("rate", "spiking"), "ddm_neuro.run.backends:run_torch", {
        "coupling": _COUPLING,
        "fano": Option(None, "spiking: Fano factor of the spikes counted in the noise remainder (default 'regular')"),
        "record_spikes": Option(None, "spiking: store spike times and indices in the trajectory"),
        "chunk": Option(256, "torch loop: integration steps of random numbers drawn at once"),
        "engine": Option("auto", "compiled: the C++ step loop (CPU, --threads); torch: torch's tensor loop (any "
                         "device); auto: compiled where it builds", ("auto", "compiled", "torch")),
        "device": Option("cpu", "cpu, or cuda / cuda:K (a GPU visible to torch; the torch loop runs there)"),
    }, help="the rate network (Euler-Maruyama), its LIF spiking network (exact integration) or a spike-coordinated "
            "network, float64", coordinated=True),
    Plugin("target", "simulator", ("rate", "sde"), "ddm_neuro.run.backends:run_target",
           help="the model's target SDE itself (Euler-Maruyama, Ito) on the network's grid"),
]


def _load_entry_points():
    if _LOADED:
        return
    _LOADED.append(True)
    for plugin in CORE:
        register(plugin)
    for ep in metadata.entry_points(group="ddm_neuro.plugins"):
        try:  # a broken third-party package must not take the core's back ends down with it
            declared = list(ep.load()())
            if not all(isinstance(p, Plugin) for p in declared):
                raise TypeError("it must return a list of ddm_neuro.plugins.Plugin")
        except Exception as exc:  # noqa: BLE001 (any failure of foreign code: reported, skipped)
            warnings.warn(f"plug-in entry point {ep.name!r} ({ep.value}) could not be loaded and is skipped: "
                          f"{type(exc).__name__}: {exc}", PluginWarning, stacklevel=3)
            continue
        for plugin in declared:
            if plugin.name not in _REGISTRY[plugin.kind]:  # an installed copy seen twice: first wins
                register(plugin)


def get(kind, name, mode=None):
    """The :class:`Plugin` of ``kind`` called ``name`` (checked for ``mode`` when given).

    Raises
    ------
    DDMError
        An unknown name (the registered ones are listed) or a mode it does not take.
    """
    _load_entry_points()
    plugin = _REGISTRY[kind].get(name)
    if plugin is None:
        known = ", ".join(sorted(_REGISTRY[kind])) or "none"
        raise DDMError(f"unknown {_WHAT[kind]} {name!r} (available: {known})")
    if mode is not None:
        plugin.check_mode(mode)
    return plugin


def names(kind="simulator"):
    """Registered names of ``kind``, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY[kind])


def plugins(kind="simulator"):
    """Registered plug-ins of ``kind``, by name."""
    _load_entry_points()
    return dict(sorted(_REGISTRY[kind].items()))


def simulate(model, duration, *, backend="torch", mode="rate", trials=1, seed=None, u=None, z0=None, dt=None,
             record_dt=None, noise=None, progress=False, sde=None, threads=None, **options):
    """Simulate ``model`` in a registered back end and return its latent trajectory.

    Parameters
    ----------
    model : LatentRNN
    duration : float
        Recorded time per trial, SDE units.
    backend : str
        A registered simulator (``torch``, ``target``, ``brian2``, ...; :func:`names`).
    mode : str
        ``rate``, ``spiking`` or ``sde``, where the back end takes it.
    trials, seed, u, z0, dt, record_dt, progress, threads
        As :func:`ddm_neuro.run.plan.plan_run`.
    noise : bool or str, optional
        Default: on (``True``; spiking runs: ``"remainder"``).
    sde : SDE, optional
        For ``mode="sde"``: the target (default ``model.sde()``).
    **options
        The back end's declared options (see ``Plugin.options``).

    Returns
    -------
    Trajectory
    """
    plugin = get("simulator", backend, mode)
    _check_coordinated(model, mode, f"the {backend} back end", plugin.coordinated)
    resolved = plugin.resolve(options)
    if noise is None:
        noise = "remainder" if mode == "spiking" else True
    plan = plan_run(model, duration, mode=mode, trials=trials, seed=seed, u=u, z0=z0, dt=dt, record_dt=record_dt,
                    noise=noise, progress=progress, options=resolved, sde=sde, threads=threads)
    return plugin.load()(plan)


def get_backend(name, mode):
    """A run function ``run(model, duration, *, trials, seed, u, progress, **options)`` for ``name`` in ``mode``.

    The back end and mode are checked now; each call goes through :func:`simulate`.
    """
    get("simulator", name, mode)

    def run(model, duration, *, mode=mode, **kwargs):
        return simulate(model, duration, backend=name, mode=mode, **kwargs)

    run.__doc__ = f"Simulate a model in back end {name!r} (see :func:`ddm_neuro.plugins.simulate`)."
    return run


def export(model, output, *, format, mode="rate", force=False, progress=False, **options):
    """Write ``model`` in a registered export ``format``; returns the written path.

    Options are the format's declared ones (unknown ones refused, listing those it takes).
    """
    plugin = get("format", format, mode)
    _check_coordinated(model, mode, f"the {format} format", plugin.coordinated)
    resolved = plugin.resolve(options)
    return plugin.load()(model, output, mode=mode, force=force, progress=progress, **resolved)


def _check_coordinated(model, mode, where, carries):
    """Refuse the spiking mode of a spike-coordinated model where it cannot be carried (``carries``: the simulator
    declares ``coordinated``)."""
    cfg = (getattr(model, "meta", None) or {}).get("coordinated")
    if cfg and mode == "spiking" and not carries:
        raise DDMError(f"this model is a spike-coordinated network ({cfg['n_neurons']} neurons coordinated through "
                       f"delay-free rank-d inhibition at microsecond steps), which {where} cannot carry: run its "
                       "spiking network with --backend torch or brian2-cpp, export it with --format brian2-cpp, or use "
                       "its tanh basis as a rate network "
                       "(--mode rate)")


def get_exporter(fmt):
    """The export function ``export(model, output, *, mode, force, progress, **options)`` of ``fmt``."""
    get("format", fmt)

    def run(model, output, **kwargs):
        return export(model, output, format=fmt, **kwargs)

    return run


def formats():
    """Names of the installed export formats."""
    return names("format")
