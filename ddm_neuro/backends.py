"""Simulator back ends, by name.

Each back end is a function ``run(model, duration, *, trials, seed, u, mode, progress, **options)
-> Trajectory``. The core registers ``torch`` (the rate network; mode ``spiking``: the LIF
spiking network of :mod:`ddm_neuro.spiking`) and ``target``
(the model's target SDE itself, for comparisons). Packages outside the core,
such as ``exporters``, add theirs through the ``ddm_neuro.backends`` entry-point
group, so the core never imports them.
"""
from __future__ import annotations

from importlib import metadata

from .errors import DDMError

_REGISTRY = {}


def register(name, modes):
    """Decorator: register a back end under ``name`` supporting ``modes``; duplicates are refused."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"back end {name!r} is already registered")
        _REGISTRY[name] = (fn, tuple(modes))
        return fn
    return deco


def _load_entry_points():
    for ep in metadata.entry_points(group="ddm_neuro.backends"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = (ep, None)


def get_backend(name, mode):
    """The run function for ``name`` in ``mode``, or a :class:`DDMError` listing what exists."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise DDMError(f"unknown backend {name!r} (available: {', '.join(sorted(_REGISTRY))})")
    fn, modes = _REGISTRY[name]
    if modes is None:  # entry point: load on first use
        try:
            fn, modes = fn.load()()
        except ImportError as exc:
            raise DDMError(f"backend {name!r} needs a package that is not installed: {exc}") from None
        _REGISTRY[name] = (fn, tuple(modes))
    if mode not in modes:
        raise DDMError(f"backend {name!r} does not support mode {mode!r} (supports: {', '.join(modes)})")
    return fn


def names():
    """Registered back-end names."""
    _load_entry_points()
    return sorted(_REGISTRY)


@register("torch", modes=("rate", "spiking"))
def _torch(model, duration, *, trials, seed, u, mode, progress, **options):
    if mode == "spiking":  # LIF spiking network, see ddm_neuro.spiking
        from .spiking.simulator import simulate_spiking

        return simulate_spiking(model, duration, trials=trials, seed=seed, u=u, progress=progress, **options)
    from .run.rate import simulate_network

    return simulate_network(model, duration, trials=trials, seed=seed, u=u, progress=progress, **options)


@register("target", modes=("rate", "sde"))
def _target(model, duration, *, trials, seed, u, mode, progress, **options):
    from .run.target import simulate_sde
    from .run.rate import network_steps

    unsupported = sorted(set(options) - {"dt", "record_dt"})
    if unsupported:
        raise DDMError(f"backend 'target' simulates the SDE itself; it does not take {unsupported}")
    sde = model.sde()
    dt, rec = network_steps(model)
    rng = __import__("numpy").random.default_rng(seed)
    z0 = model.init_states[rng.integers(0, len(model.init_states), trials)]
    return simulate_sde(sde, duration, dt=options.get("dt") or dt, record_dt=options.get("record_dt") or rec,
                        trials=trials, seed=rng, z0=z0, u=u, progress=progress,
                        meta={"model_id": model.meta.get("model_id"), "seed": seed})
