r"""Drift-diffusion matching: fit a :class:`LatentRNN` to an SDE.

1. **States** (:mod:`ddm_neuro.fit.states`): simulate the target; normalise
   ``z = S y + c`` so the visited region maps to about ``[-1, 1]^d``; choose the
   time scale ``T`` so that ``rms(tau |f_y|) = ratio * rms(|y|)``.
2. **Neurons**: random encoders on the sphere of R^(d+k) with gains and
   intercepts (NEF-style); biases and input weights projected off span(E).
3. **Drift, closed form**: ridge decoders (:mod:`ddm_neuro.fit.decoders`) for
   ``K phi(x) = y + tau f_y`` on the training states; among the regularisers
   whose validation error is within tolerance the largest is taken (small
   decoders amplify noise and mismatch least). Training states include
   deviations off the latent subspace (as inputs and initial conditions make
   them) of size ``perp_margin``, so the drift holds there too.
   For spiking LIF networks (``spike_budget``) lambda is chosen for spike jitter
   as well (:func:`spike_aware_ridge`): one spike moves the latent by
   ``K_j / tau``, so larger lambda (smaller decoders) trades decoding accuracy
   for less spike noise.
4. **Drift, gradient refinement** (torch, Adam, float64): encoders, gains,
   biases and input weights move to lower the held-out drift-matching loss, with
   ``K`` solved in closed form inside the graph on one half of each batch and
   judged on the other (variable projection).
5. **Diffusion matching** (:mod:`ddm_neuro.fit.diffusion`): private output-noise
   intensities with ``K Sigma^2(x) K^T / tau^2 = S^-1 g g^T(z) S^-1 / T``.

Errors (reported on held-out states from an independent simulation of the
target, in SDE units): drift ``sqrt(mean ||f_net - f||^2 / mean ||f||^2)``,
diffusion ``sqrt(mean ||C_net - g g^T||_F^2 / mean ||g g^T||_F^2)``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import decoders as ridge
from ..errors import DDMError
from ..network import LatentRNN
from ..neurons import make_neuron
from .diffusion import fit_noise_for, target_latent_cov
from .states import held_out_states, training_states, visited_states


@dataclass
class FitConfig:
    """Settings of :func:`fit` (times in seconds).

    Attributes
    ----------
    n_neurons : int
        N.
    neuron : str or dict
        ``"tanh"`` or ``"lif"`` (or a neuron dict with parameters).
    tau : float
        Neuron time constant (s).
    time_scale : float or None
        T (s per SDE time unit); None chooses it from ``ratio``.
    ratio : float
        ``rms(tau |f_y|) / rms(|y|)`` when choosing T. Smaller: slower latent
        dynamics relative to tau (closer to the time-scale separation that
        spiking and filtered read-outs need; more decoding accuracy needed).
    seed : int
        Seeds everything (numpy and torch generators derived from it).
    n_train, n_val, n_test, n_noise : int
        Training, validation, held-out and noise-fit state counts.
    margin : float
        Jitter and box margin as a fraction of the normalisation scale.
    perp_margin : float
        Std of the off-subspace deviations added to training inputs (neuron input units).
    drift_tol : float
        Validation drift error accepted when choosing the ridge lambda (the
        largest lambda within ``max(drift_tol, 1.5 x best)`` is taken).
    ridge : str
        ``"small-decoders"`` (default: the rule of ``drift_tol``) or
        ``"least-error"``: the lambda of least validation drift error, for a
        network whose drift must be as exact as it can be and that has no
        off-subspace noise for large decoders to amplify (the rate basis of a
        spike-coordinated network; :mod:`ddm_neuro.fit.decoders`).
    spike_budget : float or None
        For networks that will run as spiking networks (LIF neurons only):
        the spike-noise ratio ``rho`` to aim for when choosing the ridge lambda
        (:func:`spike_aware_ridge`); ``None`` (default) chooses lambda for rate
        accuracy alone. ``rho`` is the latent variance that spikes alone add
        over the verifier's lag, counted as Poisson (``F = 1``; at that lag,
        shorter than an inter-spike interval, each spike is a visible jump),
        relative to the target's increment over the same lag, worst latent
        direction (for additive or state-dependent noise about
        :func:`ddm_neuro.spiking.noise.spike_noise_excess`'s ``ratio``; for
        deterministic targets the drift displacement over the lag takes the
        diffusion's place). Starting from the rate-accuracy lambda, the
        smallest lambda on a quarter-decade grid with ``rho <= spike_budget``
        is taken, as long as its validation drift error stays
        ``<= spike_drift_cap``; when the budget cannot be met within the cap,
        the largest lambda within the cap (the smallest decoders). Both spike
        jitter and decoding error show in ``verify``: ``rho`` as a relative
        diffusion excess and a drift bias of about ``rho`` (spike jitter read
        as state), the decoding error as drift error. 0.02 (``ddm-neuro fit
        --spiking``) is about the relative diffusion error that ``verify``
        tolerates on 8 x 250 runs of the double well. The choice and the
        predictions are in ``model.meta["fit"]["spike_ridge"]``; refinement
        (``steps``) keeps the chosen lambda.
    spike_drift_cap : float
        Largest validation drift error (closed form, before refinement, which
        typically halves it) that the spiking lambda choice may accept in
        exchange for smaller decoders. Default 0.08, from the double well at
        N = 1000 (``benchmarks/spiking_verify.py --ridge-factor``): re-solving the
        decoders with more ridge, the spiking network's drift was best near
        300 x the rate-accuracy lambda, where the closed-form validation error
        is about 0.08; beyond, the rate drift error took over.
    steps, batch, lr, resolve_every : int, int, float, int
        Gradient refinement (``steps = 0``: closed form only).
    tuning : dict or None
        Start from given tuning instead of random: ``{"directions": (N, d + k)
        unit encoders, "intercepts": (N,)}`` in normalised latent units (see
        :func:`ddm_neuro.spiking.convert.convert`); gains are drawn as usual.
    progress : bool
    """

    n_neurons: int = 512
    neuron: object = "tanh"
    tau: float = 0.02
    time_scale: float | None = None
    ratio: float = 0.25
    seed: int = 0
    n_train: int = 20000
    n_val: int = 5000
    n_test: int = 5000
    n_noise: int = 300
    margin: float = 0.1
    perp_margin: float = 0.0
    drift_tol: float = 0.003
    ridge: str = "small-decoders"
    spike_budget: float | None = None
    spike_drift_cap: float = 0.08
    steps: int = 200
    batch: int = 4096
    lr: float = 1e-2
    resolve_every: int = 250
    tuning: dict | None = None
    progress: bool = True


class TrainingData:
    """Training states as torch tensors, and the decoding target ``y + tau f_y``.

    Parameters
    ----------
    sde : SDE
    sample : StateSample
        States ``z`` and inputs ``u`` (:mod:`ddm_neuro.fit.states`).
    norm : tuple
        ``(center, scale, u_center, u_scale)``: the latent and input normalisation.
    tau, T : float
        Time constant (s) and time scale (s per SDE time unit).

    Attributes
    ----------
    z, u : ndarray
        The states and inputs as given.
    y, un : torch.Tensor
        Normalised latent states and inputs.
    f : torch.Tensor
        The target's drift at the states.
    target : torch.Tensor
        ``y + tau f_y``, what the decoders decode.
    out_w : torch.Tensor (d,)
        Weights turning a latent decoding error into SDE drift units.
    """

    def __init__(self, sde, sample, norm, tau, T):
        center, scale, u_center, u_scale = norm
        k = sde.n_inputs
        self.z, self.u = sample.z, sample.u
        self.y = torch.as_tensor((sample.z - center) / scale)
        self.un = torch.as_tensor((sample.u - u_center) / u_scale) if k else \
            torch.zeros(len(sample.z), 0, dtype=torch.float64)
        self.f = torch.as_tensor(sde.drift(sample.z, sample.u if k else None))
        self.target = self.y + self.f * (tau / (torch.as_tensor(scale) * T))
        self.out_w = torch.as_tensor(scale * T / tau)  # latent decoding error -> SDE drift units

    def inputs(self, E, b, Bn, rows=slice(None)):
        """Neuron inputs ``x = E y + Bn u_n + b`` (normalised inputs) at ``rows``."""
        return self.y[rows] @ E.T + self.un[rows] @ Bn.T + b

    def rates(self, neuron, E, b, Bn, rows=slice(None), smooth=False, dev=None):
        """Rates ``phi(x + dev)`` at ``rows`` (torch; ``dev``: off-subspace deviations of all rows, optional)."""
        x = self.inputs(E, b, Bn, rows)
        return neuron.phi(x if dev is None else x + dev[rows], torch, smooth=smooth)


def structure_noise(sde, data, neuron, E, b, Bn, K, tau, cov, n):
    """The noise fit for decoders ``K`` on the first ``n`` rows of ``data`` (:func:`~.diffusion.fit_noise_for`).

    Parameters
    ----------
    sde : SDE
    data : TrainingData
    neuron : Neuron
    E, b, Bn : torch.Tensor
        Encoders, biases and normalised input weights of the network.
    K : torch.Tensor (d, N)
        Its decoders.
    tau : float
    cov : ndarray (n, d, d)
        The target's latent covariance at those rows (:func:`~ddm_neuro.fit.diffusion.target_latent_cov`).
    n : int

    Returns
    -------
    a, c, L, info
        As :func:`~ddm_neuro.fit.diffusion.fit_noise`.
    """
    def activity():
        with torch.no_grad():
            return neuron.activity(data.inputs(E, b, Bn, slice(0, n)), torch).numpy()
    return fit_noise_for(sde, K.numpy() / tau, activity, cov)


class TrainableEncoders(torch.nn.Module):
    """Trainable encoders ``E``, normalised input weights ``Bn`` and biases ``b`` of the fit's refinement.

    :meth:`parts` gives ``E``, the read-out ``D = (E^T E)^-1 E^T``, and ``b``
    and ``Bn`` projected off span(E).
    """

    def __init__(self, E, Bn, b):
        super().__init__()
        self.E = torch.nn.Parameter(torch.as_tensor(E).clone())
        self.Bn = torch.nn.Parameter(torch.as_tensor(Bn).clone())
        self.b = torch.nn.Parameter(torch.as_tensor(b).clone())

    def parts(self):
        """``(E, D, b, Bn)`` with ``b`` and ``Bn`` projected off span(E)."""
        E = self.E
        D = torch.linalg.solve(E.T @ E, E.T)
        return E, D, self.b - E @ (D @ self.b), self.Bn - E @ (D @ self.Bn)


def input_normalisation(sde):
    """``(u_center, u_scale)``: the inputs' range mapped to [-1, 1] (empty arrays without inputs)."""
    if not sde.n_inputs:
        return np.zeros(0), np.ones(0)
    ulo = np.array([sde.input_range[n][0] for n in sde.inputs])
    uhi = np.array([sde.input_range[n][1] for n in sde.inputs])
    return (uhi + ulo) / 2, (uhi - ulo) / 2


#: Spiking lambda grid (:func:`spike_aware_ridge`): steps of a quarter decade from the
#: rate-accuracy lambda up to this multiple of the Gram matrix's mean eigenvalue.
SPIKE_LAMBDA_STEP = 10.0 ** 0.25
SPIKE_LAMBDA_MAX = 1.0
#: The spike-noise budget of ``ddm-neuro fit --spiking`` (:attr:`FitConfig.spike_budget`): about the
#: relative diffusion error that ``verify`` tolerates on 8 x 250 runs of the double well.
SPIKING_BUDGET = 0.02


def spike_ratio(K, rates, c_ref, tau):
    r"""Spike-noise ratio of decoders ``K``: worst direction of ``K diag(rates) K^T / tau^2`` against ``c_ref``.

    Parameters
    ----------
    K : array (d, N)
        Decoders (latent units per Hz).
    rates : array (N,)
        Mean firing rates (Hz) over the states of interest (Poisson count: the
        spikes' latent covariance per second averaged over states is
        ``K diag(mean r) K^T / tau^2``).
    c_ref : array (d, d)
        Reference covariance per second in the same latent units (positive definite).
    tau : float
        Synaptic time constant (s).

    Returns
    -------
    float
        ``max_u u^T C_spk u / u^T c_ref u`` (a generalised eigenvalue).
    """
    K = np.asarray(K, dtype=np.float64)
    c_spk = (K * np.asarray(rates, dtype=np.float64)) @ K.T / tau ** 2
    c_ref = np.asarray(c_ref, dtype=np.float64)
    d = c_ref.shape[0]
    vals, vecs = np.linalg.eigh(c_ref + 1e-12 * max(np.trace(c_ref), 1e-300) / d * np.eye(d))
    Wh = vecs / np.sqrt(np.clip(vals, 1e-300, None))
    return float(np.linalg.eigvalsh(Wh.T @ c_spk @ Wh)[-1])


def spike_aware_ridge(G, R, phi_val, Y_val, weight, norm, tol, rates, c_ref, tau, budget, drift_cap):
    r"""Ridge decoders with lambda chosen for a spiking network: decoding error against spike jitter.

    The rule (:attr:`FitConfig.spike_budget`): start from the lambda that
    :func:`ddm_neuro.fit.decoders.solve` picks for rate accuracy, and walk up a grid of
    quarter decades (to ``SPIKE_LAMBDA_MAX x mean eig(G)``) while the
    validation drift error stays ``<= drift_cap``; take the first lambda whose
    spike-noise ratio ``rho`` (:func:`spike_ratio`) is ``<= budget``, or, if the
    budget is not reached within the cap, the last lambda within the cap (the
    smallest decoders affordable). If even the rate-accuracy lambda exceeds the
    cap, it is kept.

    Parameters
    ----------
    G, R, phi_val, Y_val, weight, norm, tol
        As :func:`ddm_neuro.fit.decoders.solve`.
    rates : array (N,)
        Mean rates (Hz) over the validation states.
    c_ref : array (d, d)
        What spike noise is judged against (see :func:`spike_ratio`).
    tau : float
    budget, drift_cap : float

    Returns
    -------
    K : torch.Tensor (d, N)
    lam : float
        Absolute lambda.
    info : dict
        ``rate_lambda``, ``lambda``, ``factor`` (their ratio), ``spike_ratio`` and
        ``val_drift_error`` at the choice and ``rate_spike_ratio``,
        ``rate_val_drift_error`` at the rate-accuracy lambda, ``budget_met``,
        ``limited_by`` (``"budget"``, ``"drift_cap"`` or ``"grid"``) and ``grid``
        (rows ``[factor, val_drift_error, spike_ratio]``).
    """
    L, Q = torch.linalg.eigh(G)
    L = L.clamp_min(0)
    QR = Q.T @ R
    scale = float(L.mean())
    PQ = phi_val @ Q
    w = torch.ones(R.shape[1], dtype=G.dtype) if weight is None else weight
    rates = np.asarray(torch.as_tensor(rates), dtype=np.float64)

    def at(lam):
        coef = QR / (L + lam)[:, None]
        err = float((((PQ @ coef - Y_val) * w) ** 2).sum(1).mean() / norm) ** 0.5
        K = (Q @ coef).T
        return K, err, spike_ratio(K.numpy(), rates, c_ref, tau)

    # the rate-accuracy choice, exactly as ridge.solve makes it
    errs = np.array([at(float(rel) * scale)[1] for rel in ridge.RELATIVE_LAMBDAS])
    ok = np.flatnonzero(errs <= max(tol, 1.5 * errs.min()))
    lam_rate = float(ridge.RELATIVE_LAMBDAS[int(ok.max())]) * scale
    n_grid = 1 + max(0, int(math.floor(math.log(max(SPIKE_LAMBDA_MAX * scale / lam_rate, 1.0))
                                       / math.log(SPIKE_LAMBDA_STEP) + 1e-9)))
    grid, rows = [], []
    limited = "grid"
    for j in range(n_grid):
        lam = lam_rate * SPIKE_LAMBDA_STEP ** j
        K, err, rho = at(lam)
        rows.append([SPIKE_LAMBDA_STEP ** j, err, rho])
        if j > 0 and err > drift_cap:
            limited = "drift_cap"
            break
        grid.append((lam, K, err, rho))
        if rho <= budget:
            limited = "budget"
            break
    lam, K, err, rho = grid[-1]
    info = {"rate_lambda": lam_rate, "lambda": lam, "factor": lam / lam_rate,
            "spike_ratio": rho, "val_drift_error": err,
            "rate_spike_ratio": grid[0][3], "rate_val_drift_error": grid[0][2],
            "budget_met": bool(rho <= budget), "limited_by": limited, "grid": rows}
    return K, lam, info


def fit(sde, config=None, **overrides):
    """Fit a :class:`LatentRNN` to ``sde`` by drift-diffusion matching.

    Parameters
    ----------
    sde : SDE
    config : FitConfig, optional
    **overrides
        Fields of :class:`FitConfig` (e.g. ``n_neurons=256, seed=1``).

    Returns
    -------
    LatentRNN
        ``model.meta["fit"]`` holds the settings and the held-out errors of the
        closed-form start and of the final network, the ridge lambda and the
        wall time; with ``spike_budget``, also ``"spike_ridge"`` (see
        :func:`spike_aware_ridge`'s ``info``, plus ``budget``, ``drift_cap``,
        ``lag`` (the verifier's lag, SDE units), ``deterministic_target``,
        ``fano`` (1: the Poisson count) and ``spike_ratio_final``, the
        predicted ratio with the final, refined network).

    Raises
    ------
    DDMError
        Bad settings (e.g. ``spike_budget`` not a number > 0, or with neurons
        other than LIF), or a fit that fails.
    """
    cfg = FitConfig(**{**asdict(config or FitConfig()), **overrides})
    d, k, N = sde.dim, sde.n_inputs, cfg.n_neurons
    if isinstance(N, bool) or not isinstance(N, int) or N < d + k:
        raise DDMError(f"n_neurons must be an integer >= d + k = {d + k} (got {N})")
    for name in ("tau", "time_scale", "ratio", "drift_tol", "lr"):
        v = getattr(cfg, name)
        if (v is not None or name != "time_scale") and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise DDMError(f"{name} must be a finite number > 0 (got {v})")
    if cfg.ridge not in ridge.RIDGE_RULES:
        raise DDMError(f"ridge must be one of {', '.join(ridge.RIDGE_RULES)} (got {cfg.ridge!r})")
    if cfg.ridge != "small-decoders" and cfg.spike_budget is not None:
        raise DDMError("ridge='least-error' and spike_budget both choose the ridge lambda; give one")
    sb, cap = cfg.spike_budget, cfg.spike_drift_cap
    if sb is not None and (isinstance(sb, bool) or not isinstance(sb, (int, float)) or not math.isfinite(sb)
                           or sb <= 0):
        raise DDMError(f"spike_budget must be None or a finite number > 0 (the spike-noise ratio to aim for, "
                       f"e.g. 0.02), got {sb!r}")
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
        raise DDMError(f"spike_drift_cap must be a finite number > 0 (a relative drift error, e.g. 0.08), got {cap!r}")
    if cfg.steps < 0 or cfg.seed < 0:
        raise DDMError(f"steps and seed must be >= 0 (got {cfg.steps}, {cfg.seed})")
    if sde.n_inputs and set(sde.input_range) != set(sde.inputs):
        raise DDMError(f"{sde.name}: fitting needs an input_range for every input {list(sde.inputs)}")
    t_start = time.perf_counter()
    neuron = make_neuron(cfg.neuron)
    if sb is not None and neuron.name != "lif":
        raise DDMError(f"spike_budget is for spiking networks and needs LIF neurons (neuron='lif'), "
                       f"got {neuron.name!r} neurons")
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)
    rng_sim, rng_test, rng_neur, rng_samp = (np.random.default_rng(s) for s in seeds[:4])
    gen = torch.Generator().manual_seed(int(seeds[4].generate_state(1)[0]))
    smooth = neuron.name == "lif"  # soft-LIF curve for gradients

    # 1. states, normalisation, time scale
    z_vis, u_vis, steps = visited_states(sde, rng_sim, progress=cfg.progress)
    z_test, u_test, _ = visited_states(sde, rng_test, trials=16, records=1000, batches=2)
    sde.check(z_vis, u_vis if k else None, where="visited states")
    lo, hi = np.percentile(z_vis, [0.5, 99.5], axis=0)
    center, scale = (hi + lo) / 2, (hi - lo) / 2
    flat = scale <= 1e-6 * (1.0 + np.abs(center))
    if flat.any():
        names = [v for v, f in zip(sde.variables, flat) if f]
        raise DDMError(f"{sde.name}: the target's visited states do not spread along {names} (the SDE settles "
                       "on a point: nothing to fit there; give it noise or dynamics there)")
    norm = (center, scale, *input_normalisation(sde))
    u_center, u_scale = norm[2:]
    f_vis = sde.drift(z_vis, u_vis if k else None)
    y_vis = (z_vis - center) / scale
    T = cfg.time_scale or cfg.tau * math.sqrt(np.mean(np.sum((f_vis / scale) ** 2, 1)) /
                                              np.mean(np.sum(y_vis ** 2, 1))) / cfg.ratio

    # 2. neurons
    enc = rng_neur.normal(size=(N, d + k))
    theta = None
    if cfg.tuning is not None:
        enc = np.array(cfg.tuning["directions"], dtype=np.float64)
        theta = np.asarray(cfg.tuning["intercepts"], dtype=np.float64)
        if enc.shape != (N, d + k) or theta.shape != (N,):
            raise DDMError(f"tuning: directions must be ({N}, {d + k}) and intercepts ({N},), got "
                           f"{enc.shape} and {theta.shape}")
    enc /= np.linalg.norm(enc, axis=1, keepdims=True)
    gain, bias = neuron.init_gain_bias(rng_neur, N, theta)
    E0 = torch.as_tensor(gain[:, None] * enc[:, :d])
    D0 = torch.linalg.pinv(E0)
    proj = lambda v: v - E0 @ (D0 @ v)  # noqa: E731
    b0, Bn0 = proj(torch.as_tensor(bias)), proj(torch.as_tensor(gain[:, None] * enc[:, d:]))

    # 3. samples
    both = training_states(z_vis, u_vis, sde, center, scale, cfg.n_train + cfg.n_val, rng_samp, cfg.margin)
    train = TrainingData(sde, both.take(np.arange(cfg.n_train)), norm, cfg.tau, T)
    val_rows = np.arange(cfg.n_train, cfg.n_train + cfg.n_val)
    val_rows = val_rows[both.on_attractor[val_rows]]  # judged where it matters
    val = TrainingData(sde, both.take(val_rows), norm, cfg.tau, T)
    test = held_out_states(z_test, u_test, cfg.n_test, rng_samp)
    C_noise = target_latent_cov(sde, train.z[: cfg.n_noise], scale, T)
    perp = None  # off-subspace deviations of the training inputs (fixed draws, projected off span(E0))
    if cfg.perp_margin > 0:
        perp = proj((torch.randn(len(train.z), N, generator=gen, dtype=torch.float64) * cfg.perp_margin).T).T

    f_norm_val = float((val.f ** 2).sum(1).mean())
    spike = {}  # spiking lambda choice (spike_budget)
    if sb is not None:
        from ..verify.checks import C_DELTA  # the verifier's lag rule: C_DELTA / characteristic rate

        pick = np.linspace(0, len(z_vis) - 1, min(len(z_vis), 2000)).astype(int)  # no draws: same seeds as without
        lag = C_DELTA / max(sde.characteristic_rate(z_vis[pick], u_vis[pick] if k else None), 1e-6)
        zv = val.z
        c_diff = target_latent_cov(sde, zv, scale, T).mean(0)
        fv = val.f.numpy()
        c_drift = lag * (fv.T @ fv / len(fv)) / np.outer(scale, scale) / T
        spike["c_ref"] = c_diff + c_drift  # target increment's second moment over the lag, per second
        spike["lag"] = lag
        spike["deterministic"] = bool(np.trace(c_diff) <= 1e-12 * np.trace(spike["c_ref"]))

    def solve_K(E, b, Bn, lam=None):
        with torch.no_grad():
            rates = lambda rows: train.rates(neuron, E, b, Bn, rows, dev=perp)  # noqa: E731
            if lam is not None:
                return ridge.ridge_decoders(rates, train.target, lam), lam
            G, R = ridge.gram(rates, train.target)
            phi_val = val.rates(neuron, E, b, Bn)
            if sb is not None:
                K_, lam_, info = spike_aware_ridge(G, R, phi_val, val.target, train.out_w, f_norm_val,
                                                   cfg.drift_tol, phi_val.mean(0), spike["c_ref"], cfg.tau,
                                                   sb, cfg.spike_drift_cap)
                spike["info"] = info
                return K_, lam_
            return ridge.solve(G, R, None, phi_val, val.target, train.out_w, f_norm_val, cfg.drift_tol,
                               rule=cfg.ridge)[:2]

    def build(E, D, b, Bn, K, a, c, L):
        En, Dn, bn, Bnn, Kn = (v.detach().numpy().copy() for v in (E, D, b, Bn, K))
        B = Bnn / u_scale if k else np.zeros((N, 0))
        b_raw = bn - (Bnn @ (u_center / u_scale) if k else 0.0)
        try:
            return LatentRNN(neuron=neuron, tau=cfg.tau, time_scale=T, scale=scale, center=center,
                             encoders=En, decoders=Kn, readout=Dn, bias=b_raw, input_weights=B,
                             noise_const=np.asarray(c), noise_act=np.asarray(a), noise_latent=np.asarray(L),
                             init_states=z_vis[rng_samp.choice(len(z_vis), min(256, len(z_vis)), replace=False)],
                             sde_spec=sde.spec, variables=list(sde.variables), inputs=list(sde.inputs),
                             meta={"sde_name": sde.name, "seed": cfg.seed, "tags": list(sde.tags)})
        except DDMError as exc:  # e.g. decoders gone non-finite
            raise DDMError(f"{sde.name}: the fit failed ({exc}); check the SDE's parameters, tau and "
                           "time_scale") from None

    def solve_noise(E, b, Bn, K):
        return structure_noise(sde, train, neuron, E, b, Bn, K, cfg.tau, C_noise, cfg.n_noise)

    bar = tqdm(total=cfg.steps + 2, desc=f"fit {sde.name} N={N}", disable=not cfg.progress)
    E, D, b, Bn = E0, D0, b0, Bn0
    K, lam = solve_K(E, b, Bn)
    a, c, L, noise_info = solve_noise(E, b, Bn, K)
    err0, derr0 = model_errors(build(E, D, b, Bn, K, a, c, L), sde, test.z, test.u)
    bar.update()
    bar.set_postfix(drift_err=f"{err0:.2e}")

    # 4. gradient refinement (variable projection: K solved inside the graph)
    if cfg.steps > 0:
        net = TrainableEncoders(E, Bn, b)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.01)
        f_norm = float((train.f ** 2).sum(1).mean())
        M = len(train.z)
        batch = max(cfg.batch, 4 * N)
        eye = torch.eye(N, dtype=torch.float64)
        for step in range(cfg.steps):
            rows = torch.randint(0, M, (batch,), generator=gen)
            half = batch // 2
            E_, D_, b_, Bn_ = net.parts()
            phi = train.rates(neuron, E_, b_, Bn_, rows, smooth=smooth, dev=perp)
            G = phi[:half].T @ phi[:half] / half
            R = phi[:half].T @ train.target[rows[:half]] / half
            K_ = torch.linalg.solve(G + lam * eye, R).T
            res = (phi[half:] @ K_.T - train.target[rows[half:]]) * train.out_w
            loss = (res ** 2).sum(1).mean() / f_norm
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{math.sqrt(float(loss.detach())):.2e}")
        with torch.no_grad():
            E, D, b, Bn = (v.detach() for v in net.parts())
        K, _ = solve_K(E, b, Bn, lam)
        a, c, L, noise_info = solve_noise(E, b, Bn, K)
    model = build(E, D, b, Bn, K, a, c, L)
    err, derr = model_errors(model, sde, test.z, test.u)
    if not (math.isfinite(err) and math.isfinite(derr)):
        raise DDMError(f"{sde.name}: the fit failed (held-out drift error {err}, diffusion error {derr}); "
                       "check the SDE's parameters, tau and time_scale")
    bar.update()
    bar.close()
    model.meta["fit"] = {
        "config": {**asdict(cfg), "tuning": None if cfg.tuning is None else
                   {"source": str(cfg.tuning.get("source", "given"))}},
        "drift_error": err, "diffusion_error": derr,
        "drift_error_closed_form": err0, "diffusion_error_closed_form": derr0,
        "ridge_lambda": lam, "wall_time_s": time.perf_counter() - t_start,
        "private_noise_share": noise_info["private_share"],
        "integration_dt": steps[0], "record_dt": steps[1], "n_test": int(len(test.z)),
    }
    if sb is not None:
        with torch.no_grad():
            rates_final = val.rates(neuron, E, b, Bn).mean(0).numpy()
        info = spike["info"]
        model.meta["fit"]["spike_ridge"] = {
            "budget": float(sb), "drift_cap": float(cfg.spike_drift_cap), "lag": float(spike["lag"]),
            "deterministic_target": spike["deterministic"], "fano": 1.0,
            **info,
            "spike_ratio_final": spike_ratio(model.decoders, rates_final, spike["c_ref"], cfg.tau),
        }
    return model


#: Held-out errors above these are reported as poor fits (typical fits of the built-ins: well below 1 %).
POOR_DRIFT_ERROR = 0.02
POOR_DIFFUSION_ERROR = 0.05


def fit_summary(model, path=None):
    """The held-out errors and settings of a fitted model, as printed lines.

    Parameters
    ----------
    model : LatentRNN
    path : str or Path, optional
        Where it was written (said on the last line).

    Returns
    -------
    str
    """
    f = model.meta["fit"]
    return "\n".join([
        f"fitted {model.meta['sde_name']}: N={model.n_neurons} {model.neuron.name} neurons, "
        f"tau={model.tau * 1e3:g} ms, T={model.time_scale:.4g} s per SDE time unit",
        f"  held-out drift error     {100 * f['drift_error']:.4f} %  (closed-form start "
        f"{100 * f['drift_error_closed_form']:.4f} %)",
        f"  held-out diffusion error {100 * f['diffusion_error']:.3f} %  (closed-form start "
        f"{100 * f['diffusion_error_closed_form']:.3f} %)",
        f"  fit wall time            {f['wall_time_s']:.1f} s" + (f"; wrote {path}" if path else "")])


def fit_warnings(model):
    """Plain-language warnings about a fitted model's held-out errors (empty when the fit is good).

    Parameters
    ----------
    model : LatentRNN
        A model with ``meta["fit"]`` (from :func:`fit`, ``convert`` or ``constrain``).

    Returns
    -------
    list of str
        One sentence per problem: the measured number, the limit, and what usually fixes it.
    """
    f = model.meta.get("fit") or {}
    out = []
    err, derr = f.get("drift_error"), f.get("diffusion_error")
    if err is not None and err > POOR_DRIFT_ERROR:
        cfg = f.get("config") or {}
        fixes = [f"more neurons (-n, now {model.n_neurons})"]
        if cfg.get("steps", 1) == 0:
            fixes.append("gradient refinement (--steps, now 0)")
        fixes.append("a [domain] that covers only where the dynamics go")
        out.append(f"held-out drift error {100 * err:.2f} % is large (above {100 * POOR_DRIFT_ERROR:g} %): the network "
                   f"will not follow the target closely; {', '.join(fixes)} usually lower it")
    if derr is not None and derr > POOR_DIFFUSION_ERROR:
        out.append(f"held-out diffusion error {100 * derr:.2f} % is large (above {100 * POOR_DIFFUSION_ERROR:g} %): "
                   f"more neurons (-n, now {model.n_neurons}) give the noise fit more freedom")
    return out


def model_errors(model, sde, z, u=None):
    """Relative drift and diffusion errors of ``model`` against ``sde`` at states ``z``.

    Returns
    -------
    drift_error, diffusion_error : float
        ``sqrt(mean ||f_net - f||^2 / mean ||f||^2)``, and the same for the
        covariance ``g g^T`` (Frobenius).
    """
    u = u if sde.n_inputs else None
    f = sde.drift(z, u)
    fn = model.latent_drift(z, u)
    derr = math.sqrt(np.sum((fn - f) ** 2) / max(np.sum(f ** 2), 1e-300))
    C = sde.diffusion_cov(z)
    Cn = model.latent_cov(z, u)
    nrm = np.sum(C ** 2)
    cerr = math.sqrt(np.sum((Cn - C) ** 2) / nrm) if nrm > 0 else float(np.sqrt(np.sum(Cn ** 2)))
    return derr, cerr
