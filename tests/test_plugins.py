"""The plug-in registry: declared options, refusals, and a back end written as docs/writing-a-backend.md says."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ddm_neuro import plugins
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.plugins import Option, OptionError, Plugin
from ddm_neuro.run.plan import network_steps
from ddm_neuro.sde.systems import get_system
from noise_checks import assert_one_step_covariance

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "numpy_backend.py"


@pytest.fixture(scope="module")
def numpy_backend():
    """The docs' example back end, registered once (a second import would be refused as a duplicate)."""
    if "numpy" not in plugins.names("simulator"):
        spec = importlib.util.spec_from_file_location("numpy_backend", EXAMPLE)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return plugins.get("simulator", "numpy")


@pytest.fixture(scope="module")
def ou():
    return fit(get_system("ou"), n_neurons=24, steps=0, n_train=3000, n_val=1000, n_test=500, progress=False,
               seed=0)


def test_the_example_back_end_runs_the_plan_it_is_given(numpy_backend, ou):
    tr = plugins.simulate(ou, 2.0, backend="numpy", trials=3, seed=4, z0=[0.5, -0.5])
    assert tr.meta["backend"] == "numpy" and tr.meta["mode"] == "rate" and tr.meta["seed"] == 4
    assert tr.z.shape == (3, len(tr.t), 2) and np.allclose(tr.z[:, 0], [0.5, -0.5])
    again = plugins.get_backend("numpy", "rate")(ou, 2.0, trials=3, seed=4, z0=[0.5, -0.5])
    np.testing.assert_array_equal(tr.z, again.z)  # one seed, one run


def test_the_example_back_end_has_the_model_drift_and_noise(numpy_backend, ou):
    """Noise-free it agrees with torch to rounding (same scheme); noisy, its one-step residuals have
    the model's latent covariance within the Wishart sampling error (a wrong noise scale fails)."""
    quiet = dict(trials=2, seed=0, noise=False, z0=[[1.0, 0.5], [-1.0, 0.0]])
    a = plugins.simulate(ou, 1.0, backend="torch", **quiet)
    b = plugins.simulate(ou, 1.0, backend="numpy", **quiet)
    np.testing.assert_allclose(b.z, a.z, rtol=0, atol=1e-10)
    dt, _ = network_steps(ou)
    tr = plugins.simulate(ou, 2000 * dt, backend="numpy", trials=4, seed=3, record_dt=dt)
    assert_one_step_covariance(ou, tr)


def test_unknown_options_are_refused_listing_the_accepted_ones(numpy_backend, ou):
    with pytest.raises(OptionError, match=r"backend 'numpy' does not take 'coupling' \(it takes: chunk\)"):
        plugins.simulate(ou, 1.0, backend="numpy", coupling="dense")
    with pytest.raises(DDMError, match="does not take 'cores'.*chunk, coupling, device, engine, fano, record_spikes"):
        plugins.simulate(ou, 1.0, backend="torch", cores=4)


def test_modes_names_duplicates_and_missing_packages_are_refused(numpy_backend, ou):
    with pytest.raises(DDMError, match="backend 'numpy' does not support mode 'spiking' .supports: rate."):
        plugins.simulate(ou, 1.0, backend="numpy", mode="spiking")
    with pytest.raises(DDMError, match="unknown backend 'loihi' .available: .*numpy.*torch"):
        plugins.get("simulator", "loihi")
    with pytest.raises(ValueError, match="already registered"):
        plugins.register(Plugin("numpy", "simulator", ("rate",), lambda plan: None))
    ghost = Plugin("ghost", "format", ("rate",), "ghost_module:export", requires=("no_such_package_xyz",),
                   extra="ghost")
    with pytest.raises(DDMError, match=r"export format 'ghost' needs no_such_package_xyz.*pip install '\.\[ghost\]'"):
        ghost.load()


def test_option_choices_and_defaults_are_applied():
    p = Plugin("p", "simulator", ("rate",), lambda plan: plan,
               {"coupling": Option("factored", "", ("factored", "dense")), "chunk": Option(8, "")})
    assert p.resolve({}) == {"coupling": "factored", "chunk": 8}
    assert p.resolve({"chunk": 2, "coupling": None}) == {"coupling": "factored", "chunk": 2}
    with pytest.raises(DDMError, match="coupling must be one of factored, dense"):
        p.resolve({"coupling": "sparse"})


def test_every_installed_plug_in_declares_its_options_as_data():
    for kind in plugins.KINDS:
        for name, p in plugins.plugins(kind).items():
            assert p.name == name and p.modes and p.help, (kind, name)
            assert all(isinstance(o, Option) and o.help for o in p.options.values()), (kind, name)


def test_a_broken_entry_point_is_skipped_with_a_warning(monkeypatch):
    """A third-party package whose entry point fails to import must not take the core's back ends down."""
    from importlib import metadata

    class Broken:
        name, value = "broken", "no_such_module_xyz:plugins"

        def load(self):
            raise ImportError("No module named 'no_such_module_xyz'")

    class Wrong:
        name, value = "wrong", "wrong:plugins"

        def load(self):
            return lambda: ["not a plugin"]

    monkeypatch.setattr(metadata, "entry_points", lambda group: [Broken(), Wrong()])
    monkeypatch.setattr(plugins, "_REGISTRY", {kind: {} for kind in plugins.KINDS})
    monkeypatch.setattr(plugins, "_LOADED", [])
    with pytest.warns(plugins.PluginWarning) as caught:
        assert plugins.names("simulator") == ["target", "torch"]
    messages = [str(w.message) for w in caught]
    assert any("'broken'" in m and "no_such_module_xyz" in m for m in messages)
    assert any("'wrong'" in m and "list of ddm_neuro.plugins.Plugin" in m for m in messages)
