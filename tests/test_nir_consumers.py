"""The exported NIR file in each consumer (Norse, snnTorch, Rockpool, spyx; each skipped where it is not
installed): the Output against a float64 implementation of that consumer's own step, and the noise and drift
of the Output against the model's. Rockpool and spyx: ``pip install rockpool spyx 'jax[cpu]'``."""
import math

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from ddm_neuro.fit.matching import fit  # noqa: E402
from ddm_neuro.sde.systems import get_system  # noqa: E402
from exporters.nir.consumers import CONSUMERS, run_file  # noqa: E402
from exporters.nir.export import SNNTORCH_DT, export  # noqa: E402
from exporters.nir.layout import read_network  # noqa: E402

LIF0 = {"name": "lif", "tau_ref": 0.0, "max_rates": (200.0, 400.0)}
MODULES = {"norse": "norse", "snntorch": "snntorch", "rockpool": "rockpool", "spyx": "spyx"}


def need(consumer):
    pytest.importorskip(MODULES[consumer])
    if consumer == "spyx":
        pytest.importorskip("jax")


@pytest.fixture(scope="module")
def model():
    """2-D OU, N = 100 LIF neurons without refractory period, closed form only."""
    return fit(get_system("ou"), n_neurons=100, neuron=LIF0, steps=0, n_train=4000, n_val=1000, n_test=500,
               n_noise=100, seed=2, progress=False)


@pytest.fixture(scope="module")
def nir_path(model, tmp_path_factory):
    return export(model, tmp_path_factory.mktemp("nir") / "ou.nir", progress=False)


def start_phases(seed, trials, n):
    """The membrane potentials the runners draw for ``seed`` (after the start states and the noise seed)."""
    rng = np.random.default_rng(seed)
    rng.integers(2 ** 62)
    return rng.uniform(0.0, 1.0, (trials, n))


def reference(net, consumer, z0, v0, steps):
    """Noise-free, input-free: each consumer's step, float64, from the file's arrays; the Output
    (trials, steps + 1, d)."""
    g, dt = net.graph, net.dt
    lif, li = net.lif, g.nodes["latent"]
    A_b = np.asarray(g.nodes["affine"].bias, np.float64)
    R = np.asarray(g.nodes["rnn"].nodes["rnn.recurrent"].weight, np.float64)
    Ro, bo = (np.asarray(getattr(g.nodes["readout"], a), np.float64) for a in ("weight", "bias"))
    a_s, a_m, a_l = dt / lif.tau_syn[0], dt / lif.tau_mem[0], dt / li.tau[0]
    I, v, y = net.initial_current(z0), v0.copy(), z0.copy()
    s, fired = np.zeros_like(v), np.zeros(v.shape, dtype=bool)
    ys = [y]
    if consumer == "rockpool":                        # its dt is tau/(1 + r); exact exponential decay
        e_s, e_m = (np.exp(-(lif.tau_mem[0] / (1 + lif.r[0])) / t) for t in (lif.tau_syn[0], lif.tau_mem[0]))
        e_l = np.exp(-(li.tau[0] / (1 + li.r[0])) / li.tau[0])
    for _ in range(steps):
        if consumer in ("norse", "snntorch"):          # Euler; reset to 0 (snnTorch: one step after the spike)
            I = (1 - a_s) * I + A_b + s @ R.T
            v = (1 - a_m) * v + I
            if consumer == "snntorch":
                v[fired] = 0.0
            fired = v > 1.0
            s = fired.astype(float)
            if consumer == "norse":
                v[fired] = 0.0
            y = (1 - a_l) * y + s @ Ro.T + bo
        elif consumer == "rockpool":                   # input decays with the current; subtract the threshold
            I = (I + A_b + s @ R.T) * e_s
            v = v * e_m + I
            s = np.where(v >= 1.0, np.floor(v), 0.0)
            v = v - s
            y = (y + s @ Ro.T + bo) * e_l
        else:                                          # spyx: spike from the previous step's v, then subtract
            s = (v > 1.0).astype(float)
            v = v - s
            I = (1 - a_s) * I + A_b + s @ R.T
            v = (1 - a_m) * v + I
            y = (1 - a_l) * y + s @ Ro.T + bo
        ys.append(y)
    return np.array(ys).transpose(1, 0, 2)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_output_is_the_consumers_documented_step(model, nir_path, consumer):
    """Noise-free: the consumer's Output equals its own step written out in float64, up to float32 rounding
    (Norse, snnTorch: every sample within 1e-4 of the latent's size; Rockpool, spyx: 99 % of the samples,
    as a spike that rounding moves by one step makes a
    one-sample blip of one spike's jump ``S |K_j| / tau``, a few times 1e-4 here, and nothing more). The
    documented steps differ (reset rule, spike timing, exact or Euler decay): another one is far off."""
    need(consumer)
    z0 = model.init_states[:3]
    h = SNNTORCH_DT / model.time_scale
    tr = run_file(consumer, nir_path, 300 * h, trials=3, seed=4, noise=False, z0=z0, record_dt=h)
    ref = reference(read_network(nir_path), consumer, z0, start_phases(4, 3, model.n_neurons), 300)
    assert tr.z.shape == ref.shape and math.isclose(tr.meta["integration_dt"], h)
    assert tr.meta["mean_rate_hz"] > 10
    err, size = np.abs(tr.z - ref), np.abs(ref).max()
    jump = np.abs(read_network(nir_path).graph.nodes["readout"].weight).max()
    if consumer in ("norse", "snntorch"):   # float32 currents agree to ~1e-6 of their size: no spike moves
        assert err.max() < 1e-4 * size
    else:   # rounding may move a spike by one step here (Rockpool measured: one blip, 2.8e-4 of the size)
        assert np.quantile(err, 0.99) < 1e-4 * size and err.max() < 1.5 * jump
    others = [c for c in ("norse", "rockpool", "spyx") if c != consumer]           # the steps do differ
    far = reference(read_network(nir_path), others[0], z0, start_phases(4, 3, model.n_neurons), 300)
    assert np.quantile(np.abs(far - ref), 0.99) > 10 * 1e-4 * size


def test_output_is_the_latent_of_the_synaptic_currents(model, nir_path):
    """In Norse's step, the Output after step n is ``S D x + c`` of the currents after step n + 1:
    ``y_n - z(I_{n+1}) = (1 - a)^n (a z0 - readout.bias)`` exactly, a start transient of 0.5 % of z0 that
    decays with tau_syn."""
    net = read_network(nir_path)
    g, dt = net.graph, net.dt
    z0 = model.init_states[:3]
    v0 = start_phases(4, 3, model.n_neurons)
    a_s, a_m = dt / model.tau, dt / model.neuron.params["tau_m"]
    R = np.asarray(g.nodes["rnn"].nodes["rnn.recurrent"].weight, np.float64)
    Ro, bo = (np.asarray(getattr(g.nodes["readout"], a), np.float64) for a in ("weight", "bias"))
    A_b = np.asarray(g.nodes["affine"].bias, np.float64)
    zI = lambda I: (I / a_m) @ (model.scale[:, None] * model.readout).T + model.center  # noqa: E731
    I, v, y, s = net.initial_current(z0), v0.copy(), z0.copy(), np.zeros_like(v0)
    gap = []
    for n in range(400):
        I = (1 - a_s) * I + A_b + s @ R.T
        v = (1 - a_m) * v + I
        s = (v > 1.0).astype(float)
        v[s > 0] = 0.0
        y_prev, y = y, (1 - a_s) * y + s @ Ro.T + bo
        I_next = (1 - a_s) * I + A_b + s @ R.T
        gap.append(y - zI(I_next) - (1 - a_s) ** (n + 1) * (a_s * z0 - bo))
    assert np.abs(np.array(gap)).max() < 1e-6 * np.abs(z0).max()


@pytest.fixture(scope="module")
def silent(model, tmp_path_factory):
    """The model with every bias lowered by 100 and its NIR file: no neuron reaches threshold anywhere it goes
    (inputs x < -2), so the noise channels carry all of the noise (the spikes' share is zero) and the latent
    relaxes linearly."""
    from ddm_neuro.network import LatentRNN

    quiet = LatentRNN(**{**model.__dict__, "bias": model.bias - 100.0})
    assert quiet.neuron_inputs(quiet.init_states).max() < -1 and not np.any(quiet.noise_act)
    path = export(quiet, tmp_path_factory.mktemp("silent") / "silent.nir", progress=False)
    assert np.allclose(read_network(path).graph.metadata["host_noise_sigma2"], quiet.noise_const)
    return quiet, path


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_output_noise_and_drift_are_the_models(silent, consumer):
    """The Output, one sample per step, against the model (the spikes' own noise is left out by silencing
    them, see ``silent``): the residuals ``z' - z - f(z) h`` have the model's covariance ``C h`` times
    ``g^2`` (n = 8 x 500: relative sampling error sqrt(2/n) = 2.2 % on the diagonal; a noise amplitude 1.2 or
    0.8 times the right one moves it by +44 % or -36 %), and two runs of one seed from different starts draw
    the same noise, so their difference moves by ``g (f(z_a) - f(z_b)) h``, up to float32 rounding.
    ``g = 1`` for Euler; Rockpool decays after adding, ``g = e = exp(-dt'/tau)`` on the noise and
    ``(1 - e) / a`` on the drift, with its ``dt' = tau / (1 + r)``."""
    need(consumer)
    quiet, path = silent
    h, d, trials = SNNTORCH_DT / quiet.time_scale, quiet.dim, 8
    a = run_file(consumer, path, 500 * h, trials=trials, seed=5, z0=np.tile([0.8, -0.6], (trials, 1)), record_dt=h)
    b = run_file(consumer, path, 40 * h, trials=trials, seed=5, z0=np.tile([-0.7, 0.9], (trials, 1)), record_dt=h)
    assert a.meta["mean_rate_hz"] == 0 and math.isclose(a.dt, h)
    a_l = SNNTORCH_DT / quiet.tau
    e = math.exp(-a_l / (1 + a_l)) if consumer == "rockpool" else None
    g_noise, g_drift = (e, (1 - e) / a_l) if e else (1.0, 1.0)
    z0, z1 = a.z[:, :-1].reshape(-1, d), a.z[:, 1:].reshape(-1, d)
    res = z1 - z0 - g_drift * quiet.latent_drift(z0) * h
    est = res.T @ res / len(res) / h
    C = g_noise ** 2 * quiet.latent_cov(z0[:1])[0]
    se = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / len(res))     # Wishart
    assert np.all(np.abs(est - C) < 4 * se), (np.diag(est) / np.diag(C), est, C)
    m = b.z.shape[1]
    step = np.diff(a.z[:, :m] - b.z, axis=1).reshape(-1)
    pred = ((quiet.latent_drift(a.z[:, :m - 1].reshape(-1, d)) - quiet.latent_drift(b.z[:, :-1].reshape(-1, d)))
            * h).reshape(-1)
    assert abs(pred @ step / (pred @ pred) - g_drift) < 1e-3


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_one_variable(tmp_path_factory, consumer):
    """A one-variable model (double well: one latent value, one noise channel) runs in every consumer."""
    need(consumer)
    dw = fit(get_system("double_well"), n_neurons=120, neuron=LIF0, steps=0, n_train=2000, n_val=500, n_test=300,
             n_noise=120, seed=1, progress=False)                # (N = 60 diverges in every simulator)
    path = export(dw, tmp_path_factory.mktemp("dw") / "dw.nir", progress=False)
    h = SNNTORCH_DT / dw.time_scale
    tr = run_file(consumer, path, 30 * h, trials=2, seed=1, record_dt=10 * h, z0=[[1.0]])
    assert tr.z.shape == (2, 4, 1) and np.all(np.isfinite(tr.z)) and np.all(np.abs(tr.z[:, -1] - 1) < 0.5)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_simulate_back_end(model, consumer):
    """Each consumer is a ``simulate`` back end (export to a temporary file, run it there)."""
    need(consumer)
    from ddm_neuro.plugins import get_backend

    h = SNNTORCH_DT / model.time_scale
    tr = get_backend(consumer, "spiking")(model, 40 * h, trials=2, seed=1, record_dt=10 * h)
    assert tr.meta["backend"] == consumer and tr.meta["noise"] == "host" and tr.z.shape == (2, 5, model.dim)
    assert np.all(np.isfinite(tr.z))


@pytest.fixture(scope="module")
def double_well_file(tmp_path_factory):
    """The issue's case: the double well at N = 200, LIF without refractory period, fitted (seed 0) and
    exported with the defaults (one noise channel)."""
    dw = fit(get_system("double_well"), n_neurons=200, neuron=LIF0, seed=0, progress=False)
    return dw, export(dw, tmp_path_factory.mktemp("dw200") / "dw.nir", progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("consumer", CONSUMERS)
def test_double_well_round_trip_passes_verify(double_well_file, consumer):
    """The file's Output, with the host noise on its noise channel, 8 x 100 SDE units: the verifier (baselines
    from the target SDE) passes in Norse, snnTorch and spyx (``benchmarks/RESULTS_nir.md`` has the values).
    Rockpool's step (exact decay at its dt' = dt/(1 + dt/tau), the input decayed before it reaches the
    membrane: rates +0.46 %) leaves this model's drift 5 % above the threshold (0.214 / 0.203; the project's
    own exact simulator: 0.237 / 0.211): there every other metric passes and the drift stays within 10 %."""
    need(consumer)
    from ddm_neuro.verify import verify

    dw, path = double_well_file
    tr = run_file(consumer, path, 100.0, trials=8, seed=11)
    rep = verify(dw.sde(), tr, model_drift=dw.latent_drift, seed=5)
    failed = {k: v for k, v in rep.metrics.items() if not v["passed"]}
    if consumer != "rockpool":
        assert rep.passed, failed
    else:
        assert set(failed) <= {"drift"}, failed
        assert rep.metrics["drift"]["value"] < 1.1 * rep.metrics["drift"]["threshold"], rep.metrics["drift"]


@pytest.fixture(scope="module")
def state_noise_file(tmp_path_factory):
    """Double well with state-dependent diffusion ``0.5 sqrt(1 + z^2)`` (``c = 1``), N = 120 LIF neurons without
    refractory period, closed form: activity-dependent private noise (``noise_act != 0``), exported with the
    defaults (one noise channel)."""
    dw = fit(get_system("double_well", c=1.0), n_neurons=120, neuron=LIF0, steps=0, n_train=2000, n_val=500,
             n_test=300, n_noise=120, seed=1, progress=False)
    assert np.any(dw.noise_act)
    return dw, export(dw, tmp_path_factory.mktemp("dwc1") / "dwc1.nir", progress=False)


def normalised_residuals(model, tr, skip=5):
    """``(z' - z - f(z) h) / sqrt(C(z) h)`` per record interval (d = 1), after ``skip`` intervals of start
    transient: variance 1 where the Output's one-interval noise is the model's ``latent_cov``."""
    z0, z1 = tr.z[:, skip:-1].reshape(-1, 1), tr.z[:, skip + 1:].reshape(-1, 1)
    res = z1 - z0 - model.latent_drift(z0) * tr.dt
    return (res[:, 0] / np.sqrt(model.latent_cov(z0)[:, 0, 0] * tr.dt))


def test_state_dependent_noise_is_the_models(state_noise_file):
    """The host scales the noise channels with the state (``A(z) = G^+ chol(C(z))`` before each record interval):
    in Norse, the Output's residual over one record interval, normalised by the model's ``latent_cov`` at its
    start, has variance 1 from two starts where the model's noise differs by a factor of about 3 (z = 0 and
    z = 1.5; 48 trials x 40 intervals each, the first 5 left out: n = 1680, standard error of the variance
    sqrt(2/n) = 3.5 %, tolerance 4 of them). The spikes supply their share (``F phi``, fano = 1: Poisson-like at
    this lag of a few steps) and the host the rest, at each state.

    The old construction, the file's noise at its mean over the start states (``state_noise=False``: plain
    standard normals on the channels), fails this check at both starts (measured: +60 % at z = 0,
    -30 % at z = 1.5; the new one: +4 %, -1 %), and is asserted to."""
    need("norse")
    dw, path = state_noise_file
    net = read_network(path)
    assert net.n_noise == 1 and int(net.graph.metadata["noise_state_dependent"]) == 1
    h = SNNTORCH_DT / dw.time_scale
    trials, intervals, skip = 48, 40, 5
    ratios = {}
    for state_noise in (True, False):
        for i, z in enumerate((0.0, 1.5)):
            tr = run_file("norse", path, intervals * 6 * h, trials=trials, seed=20 + i, z0=np.full((trials, 1), z),
                          record_dt=6 * h, state_noise=state_noise)
            assert tr.meta["state_noise"] is state_noise and tr.z.shape == (trials, intervals + 1, 1)
            w = normalised_residuals(dw, tr, skip)
            ratios[state_noise, z] = (float(np.mean(w ** 2)), math.sqrt(2 / w.size))
    for z in (0.0, 1.5):
        var, se = ratios[True, z]
        assert abs(var - 1) < 4 * se, ratios
        var, se = ratios[False, z]
        assert abs(var - 1) > 4 * se, ratios                  # the mean noise fails: the check has power
    assert ratios[False, 0.0][0] > 1 > ratios[False, 1.5][0]    # too much noise at 0, too little at 1.5
