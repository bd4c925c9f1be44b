"""ddm_neuro: drift-diffusion matching of recurrent networks to SDEs.

The public API, imported on first use (``import ddm_neuro`` loads no torch)::

    import ddm_neuro as dn

    sde = dn.load_sde("lorenz")                      # a built-in, or a TOML spec file (dn.load_spec)
    model = dn.fit(sde, n_neurons=512)               # a LatentRNN
    traj = dn.simulate(model, 60.0, trials=16)       # any registered back end: backend="brian2", mode="spiking"
    report = dn.verify(sde, traj, model_drift=model.latent_drift)
    result = dn.analyze(model)
    dn.export(model, "net.graphml", format="graphml")

Plug-ins (simulator back ends, export formats) are in :mod:`ddm_neuro.plugins`;
a run's checked description is :class:`RunPlan` (:func:`plan_run`); user
mistakes raise :class:`DDMError`; :func:`set_threads` sets the CPU threads.
``fit`` and ``verify`` are also the packages :mod:`ddm_neuro.fit` and
:mod:`ddm_neuro.verify`, which are callable.
"""
from .lazy import lazy_names

__version__ = "0.1.0"

#: Each public name and the module it comes from (``None``: the name is that module itself).
_HOME = {
    "fit": ("ddm_neuro.fit", None), "verify": ("ddm_neuro.verify", None), "plugins": ("ddm_neuro.plugins", None),
    "LatentRNN": ("ddm_neuro.network", "LatentRNN"),
    "load_sde": ("ddm_neuro.sde.load", "load_sde"), "load_spec": ("ddm_neuro.sde.spec", "load_spec"),
    "get_system": ("ddm_neuro.sde.systems", "get_system"), "list_systems": ("ddm_neuro.sde.systems", "list_systems"),
    "simulate": ("ddm_neuro.plugins", "simulate"), "export": ("ddm_neuro.plugins", "export"),
    "convert": ("ddm_neuro.spiking.convert", "convert"), "calibrate": ("ddm_neuro.spiking.calibration", "calibrate"),
    "convert_to_spiking": ("ddm_neuro.spiking.pipeline", "convert_to_spiking"),
    "constrain": ("ddm_neuro.fit.hardware", "constrain"), "analyze": ("ddm_neuro.analysis", "analyze"),
    "Report": ("ddm_neuro.verify", "Report"), "Trajectory": ("ddm_neuro.trajectory", "Trajectory"),
    "InputSignal": ("ddm_neuro.run.inputs", "InputSignal"), "RunPlan": ("ddm_neuro.run.plan", "RunPlan"),
    "plan_run": ("ddm_neuro.run.plan", "plan_run"), "set_threads": ("ddm_neuro.threads", "set_threads"),
    "DDMError": ("ddm_neuro.errors", "DDMError"),
}
__all__ = list(_HOME)

lazy_names(__name__, _HOME)
