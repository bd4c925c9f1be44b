"""Conversion of a tanh-trained network to LIF neurons (issue 5): tuning kept, refitted, spikes."""
import numpy as np
import pytest

from ddm_neuro.cli import main
from ddm_neuro.spiking.convert import convert, tuning_of
from ddm_neuro.errors import DDMError
from ddm_neuro.fit.matching import fit
from ddm_neuro.modelio import model_id
from ddm_neuro.network import LatentRNN
from ddm_neuro.spiking.simulator import simulate_spiking
from ddm_neuro.sde.systems import get_system

SMALL = dict(steps=0, n_train=10000, n_val=1000, n_test=500, progress=False)


@pytest.fixture(scope="module")
def tanh_dw():
    sde = get_system("double_well", c=1.0)
    return sde, fit(sde, n_neurons=150, seed=0, **SMALL)


def test_conversion_keeps_tuning_and_refits_the_drift(tanh_dw):
    sde, model = tanh_dw
    lif = convert(model, sde, steps=0, n_train=10000, n_val=1000, n_test=500)
    assert lif.neuron.name == "lif" and lif.n_neurons == model.n_neurons
    assert lif.tau == model.tau and lif.time_scale == model.time_scale
    d0, _ = tuning_of(model)
    e = lif.encoders / np.linalg.norm(lif.encoders, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((e * d0).sum(1)), 1.0, atol=1e-12)   # same directions (no refinement)
    # the LIF refit is judged like any fit: a few % drift error at this N (LIF curves are kinked)
    assert lif.meta["fit"]["drift_error"] < 0.1
    assert lif.meta["converted_from"]["model_id"] == model_id(model)
    rates = lif.neuron.phi(lif.neuron_inputs(lif.init_states))
    assert rates.min() >= 0 and rates.max() < 1 / lif.neuron.params["tau_ref"]
    traj = simulate_spiking(lif, 2.0, trials=2, seed=0)
    assert np.isfinite(traj.z).all() and traj.meta["mean_rate_hz"] > 1


def test_convert_refuses_a_lif_model(tanh_dw):
    sde, model = tanh_dw
    lif = convert(model, sde, steps=0, n_train=10000, n_val=1000, n_test=500)
    with pytest.raises(DDMError, match="tanh"):
        convert(lif, sde)


def test_cli_convert_writes_a_lif_model_and_never_overwrites(tmp_path, tanh_dw, capsys):
    _, model = tanh_dw
    src, out = tmp_path / "dw.ddm", tmp_path / "dw_lif.ddm"
    model.save(src)
    assert main(["convert", str(src), "--refit-only", "--steps", "0", "-o", str(out), "--quiet"]) == 0
    assert LatentRNN.load(out).neuron.name == "lif"
    assert main(["convert", str(src), "--refit-only", "--steps", "0", "-o", str(out), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err
