"""The runner recipes in ``docs/nir-<consumer>.md`` (no ddm_neuro inside): each one's code block is run
against that consumer's own step (``test_nir_consumers.reference``) without noise, and with the host
noise against the model's latent covariance. Skipped where the consumer is not installed."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from exporters.nir.consumers import CONSUMERS  # noqa: E402
from exporters.nir.export import SNNTORCH_DT  # noqa: E402
from exporters.nir.layout import read_network  # noqa: E402
from test_nir_consumers import model, need, nir_path, reference, silent, state_noise_file  # noqa: E402,F401  (fixtures)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def recipe(consumer):
    """``simulate`` from the one python block of ``docs/nir-<consumer>.md``."""
    text = (DOCS / f"nir-{consumer}.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, f"docs/nir-{consumer}.md: expected one python block, found {len(blocks)}"
    namespace = {}
    exec(compile(blocks[0], f"docs/nir-{consumer}.md", "exec"), namespace)  # noqa: S102  (our own docs)
    return namespace["simulate"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_recipe_runs_the_consumers_step(model, nir_path, consumer):  # noqa: F811
    need(consumer)
    simulate = recipe(consumer)
    z0, steps, seed = model.init_states[:3], 300, 7
    out = simulate(str(nir_path), z0, steps, seed=seed, noise=False)
    v0 = np.random.default_rng(seed).uniform(0.0, 1.0, (3, model.n_neurons))
    ref = reference(read_network(nir_path), consumer, z0, v0, steps)[:, 1:]
    err, size = np.abs(out - ref), np.abs(ref).max()
    jump = np.abs(read_network(nir_path).graph.nodes["readout"].weight).max()
    assert out.shape == ref.shape and np.quantile(err, 0.99) < 1e-4 * size and err.max() < 1.5 * jump
    noisy = simulate(str(nir_path), z0, 50, seed=seed)
    assert np.all(np.isfinite(noisy)) and np.abs(noisy - ref[:, :50]).max() > 1e-3 * size


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_recipe_adds_the_models_noise(silent, consumer):  # noqa: F811
    """Silenced network (see ``test_nir_consumers.silent``): the recipe's Output has the model's latent
    covariance per step (times ``g^2``; Rockpool decays after adding: ``g = exp(-dt'/tau)``, its drift
    ``(1 - g)/a`` of the Euler one); 8 x 400 samples, sampling error sqrt(2/n) = 2.5 % on the diagonal."""
    need(consumer)
    quiet, path = silent
    h, d, trials = SNNTORCH_DT / quiet.time_scale, quiet.dim, 8
    z = simulate_from(consumer, path, np.tile([0.8, -0.6], (trials, 1)), 400, seed=3)
    a_l = SNNTORCH_DT / quiet.tau
    e = math.exp(-a_l / (1 + a_l)) if consumer == "rockpool" else None
    g_noise, g_drift = (e, (1 - e) / a_l) if e else (1.0, 1.0)
    z0, z1 = z[:, :-1].reshape(-1, d), z[:, 1:].reshape(-1, d)
    res = z1 - z0 - g_drift * quiet.latent_drift(z0) * h
    est = res.T @ res / len(res) / h
    C = g_noise ** 2 * quiet.latent_cov(z0[:1])[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / len(res))
    assert np.all(np.abs(est - C) < 4 * se), (np.diag(est) / np.diag(C))


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_recipe_scales_state_dependent_noise(state_noise_file, consumer):  # noqa: F811
    """A model with state-dependent diffusion (``test_nir_consumers.state_noise_file``, the double well with
    ``c = 1``): the recipe feeds ``A(z) xi`` (``exporters/nir/hostnoise.py``) and the Output's one-step residual,
    normalised by the model's ``latent_cov`` at its start, has variance ``g^2`` (Rockpool's decay after adding,
    as above; 1 elsewhere) from z = 0 and z = 1.5, where the model's noise differs by a factor of about 3:
    24 trials x 300 steps, the first 20 left out, n = 6720 per start, tolerance 4 standard errors sqrt(2/n).
    Plain standard normals (the mean noise) are off by +60 % and -30 % there
    (``test_nir_consumers.test_state_dependent_noise_is_the_models``)."""
    need(consumer)
    dw, path = state_noise_file
    h, trials, steps, skip = SNNTORCH_DT / dw.time_scale, 24, 300, 20
    a_l = SNNTORCH_DT / dw.tau
    e = math.exp(-a_l / (1 + a_l)) if consumer == "rockpool" else None
    g_noise, g_drift = (e, (1 - e) / a_l) if e else (1.0, 1.0)
    for i, start in enumerate((0.0, 1.5)):
        z0 = np.full((trials, 1), start)
        z = np.concatenate([z0[:, None], simulate_from(consumer, path, z0, steps, seed=30 + i)], axis=1)
        a, b = z[:, skip:-1].reshape(-1, 1), z[:, skip + 1:].reshape(-1, 1)
        w = (b - a - g_drift * dw.latent_drift(a) * h)[:, 0] / np.sqrt(dw.latent_cov(a)[:, 0, 0] * h)
        var, se = np.mean(w ** 2) / g_noise ** 2, math.sqrt(2 / w.size)
        assert abs(var - 1) < 4 * se, (start, var, se)


def simulate_from(consumer, path, z0, steps, seed):
    return recipe(consumer)(str(path), z0, steps, seed=seed)
