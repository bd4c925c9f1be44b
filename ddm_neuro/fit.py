r"""Drift-diffusion matching: fit a :class:`LatentRNN` to an SDE.

1. **States** (:mod:`ddm_neuro.sampling`): simulate the target; normalise
   ``z = S y + c`` so the visited region maps to about ``[-1, 1]^d``; choose the
   time scale ``T`` so that ``rms(tau |f_y|) = ratio * rms(|y|)``.
2. **Neurons**: random encoders on the sphere of R^(d+k) with gains and
   intercepts (NEF-style); biases and input weights projected off span(E).
3. **Closed-form start**, alternating twice: private noise by diffusion matching
   (:mod:`ddm_neuro.noisefit`, counting the noise that returns through the
   off-subspace relaxation), then ridge decoders (:mod:`ddm_neuro.ridge`) for
   ``K phibar(x) = y + tau f_y`` where ``phibar`` averages ``phi`` over the
   network's own off-subspace fluctuations ``s_i = sqrt(tau sigma_i^2 / 2)``.
4. **Gradient refinement** (torch, Adam, float64) of encoders, gains, biases,
   input weights and K on the drift-matching loss, re-solving K in closed form
   at intervals; then the noise and K are re-fitted for the final structure.

Drift error (reported and minimised) is in SDE units:
``sqrt(mean ||f_net(z) - f(z)||^2 / mean ||f(z)||^2)`` with ``f_net`` the
noise-averaged latent drift; diffusion error is
``sqrt(mean ||C_net - g g^T||_F^2 / mean ||g g^T||_F^2)``; both on held-out
states from an independent simulation of the target.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import ridge
from .errors import DDMError
from .network import LatentRNN, effective_noise_vectors
from .neurons import make_neuron, smoothed_dphi, smoothed_phi
from .noisefit import fit_noise, target_latent_cov
from .sampling import held_out_states, training_states, visited_states


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
        dynamics relative to tau (less off-subspace noise, more decoding accuracy needed).
    seed : int
        Seeds everything (numpy and torch generators derived from it).
    n_train, n_val, n_test, n_noise : int
        Training, validation, held-out and noise-fit state counts.
    margin : float
        Jitter and box margin as a fraction of the normalisation scale.
    drift_tol : float
        Validation drift error accepted when choosing the ridge lambda (the
        largest lambda within ``max(drift_tol, 1.5 x best)`` is taken).
    steps, batch, lr, resolve_every : int, int, float, int
        Gradient refinement (``steps = 0``: closed form only).
    progress : bool
    """

    n_neurons: int = 512
    neuron: object = "tanh"
    tau: float = 0.02
    time_scale: float | None = None
    ratio: float = 0.05
    seed: int = 0
    n_train: int = 20000
    n_val: int = 5000
    n_test: int = 5000
    n_noise: int = 2000
    margin: float = 0.1
    drift_tol: float = 0.002
    steps: int = 200
    batch: int = 4096
    lr: float = 1e-2
    resolve_every: int = 250
    progress: bool = True


class _Data:
    """Training states as torch tensors, and the decoding target ``y + tau f_y``."""

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


class _Structure(torch.nn.Module):
    """Trainable E, Bn, b and K; ``D = (E^T E)^-1 E^T``; b, Bn projected off span(E)."""

    def __init__(self, E, Bn, b, K):
        super().__init__()
        self.E = torch.nn.Parameter(torch.as_tensor(E).clone())
        self.Bn = torch.nn.Parameter(torch.as_tensor(Bn).clone())
        self.b = torch.nn.Parameter(torch.as_tensor(b).clone())
        self.k_scale = float(torch.as_tensor(K).pow(2).mean().sqrt()) or 1.0
        self.Kh = torch.nn.Parameter(torch.as_tensor(K).clone() / self.k_scale)

    def parts(self):
        E = self.E
        D = torch.linalg.solve(E.T @ E, E.T)
        return E, D, self.b - E @ (D @ self.b), self.Bn - E @ (D @ self.Bn), self.Kh * self.k_scale


def _inputs(data, E, b, Bn, rows=slice(None)):
    return data.y[rows] @ E.T + data.un[rows] @ Bn.T + b


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
        wall time.
    """
    cfg = FitConfig(**{**asdict(config or FitConfig()), **overrides})
    d, k, N = sde.dim, sde.n_inputs, cfg.n_neurons
    if isinstance(N, bool) or not isinstance(N, int) or N < d + k:
        raise DDMError(f"n_neurons must be an integer >= d + k = {d + k} (got {N})")
    if not cfg.tau > 0 or (cfg.time_scale is not None and not cfg.time_scale > 0) or not cfg.ratio > 0:
        raise DDMError(f"tau, time_scale and ratio must be positive (got {cfg.tau}, {cfg.time_scale}, {cfg.ratio})")
    t_start = time.perf_counter()
    neuron = make_neuron(cfg.neuron)
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)
    rng_sim, rng_test, rng_neur, rng_samp = (np.random.default_rng(s) for s in seeds[:4])
    gen = torch.Generator().manual_seed(int(seeds[4].generate_state(1)[0]))
    smooth = neuron.name == "lif"

    # 1. states, normalisation, time scale
    z_vis, u_vis, steps = visited_states(sde, rng_sim, progress=cfg.progress)
    z_test, u_test, _ = visited_states(sde, rng_test, trials=16, records=1000, batches=2)
    sde.check(z_vis, u_vis if k else None, where="visited states")
    lo, hi = np.percentile(z_vis, [0.5, 99.5], axis=0)
    center, scale = (hi + lo) / 2, np.maximum((hi - lo) / 2, 1e-9)
    if k:
        ulo = np.array([sde.input_range[n][0] for n in sde.inputs])
        uhi = np.array([sde.input_range[n][1] for n in sde.inputs])
        u_center, u_scale = (uhi + ulo) / 2, (uhi - ulo) / 2
    else:
        u_center, u_scale = np.zeros(0), np.ones(0)
    norm = (center, scale, u_center, u_scale)
    f_vis = sde.drift(z_vis, u_vis if k else None)
    y_vis = (z_vis - center) / scale
    T = cfg.time_scale or cfg.tau * math.sqrt(np.mean(np.sum((f_vis / scale) ** 2, 1)) /
                                              np.mean(np.sum(y_vis ** 2, 1))) / cfg.ratio

    # 2. neurons
    enc = rng_neur.normal(size=(N, d + k))
    enc /= np.linalg.norm(enc, axis=1, keepdims=True)
    gain, bias = neuron.init_gain_bias(rng_neur, N)
    E0 = torch.as_tensor(gain[:, None] * enc[:, :d])
    D0 = torch.linalg.pinv(E0)
    proj = lambda v: v - E0 @ (D0 @ v)  # noqa: E731
    b0, Bn0 = proj(torch.as_tensor(bias)), proj(torch.as_tensor(gain[:, None] * enc[:, d:]))

    # 3. samples
    both = training_states(z_vis, u_vis, sde, center, scale, cfg.n_train + cfg.n_val, rng_samp, cfg.margin)
    train = _Data(sde, both.take(np.arange(cfg.n_train)), norm, cfg.tau, T)
    val = _Data(sde, both.take(np.arange(cfg.n_train, cfg.n_train + cfg.n_val)), norm, cfg.tau, T)
    test = held_out_states(z_test, u_test, cfg.n_test, rng_samp)
    nrows = slice(0, cfg.n_noise)
    C_noise = target_latent_cov(sde, train.z[nrows], scale, T)

    def perp_std(x, a, c):
        if a is None:
            return None
        return torch.sqrt(cfg.tau * (torch.as_tensor(a) * neuron.activity(x, torch) + torch.as_tensor(c)) / 2)

    def features(data, E, b, Bn, a, c, rows=slice(None), smooth_=False, order=7):
        x = _inputs(data, E, b, Bn, rows)
        return smoothed_phi(neuron, x, perp_std(x, a, c).detach(), torch, smooth=smooth_, order=order)

    f_norm_val = float((val.f ** 2).sum(1).mean())

    def solve_K(E, b, Bn, a, c, lam=None):
        with torch.no_grad():
            G, R = ridge.gram(lambda rows: features(train, E, b, Bn, a, c, rows), train.target)
            if lam is not None:
                return ridge.solve(G, R, lam)[:2]
            return ridge.solve(G, R, None, features(val, E, b, Bn, a, c), val.target, train.out_w,
                               f_norm_val, cfg.drift_tol)[:2]

    def solve_noise(E, D, b, Bn, K, a, c):
        with torch.no_grad():
            x = _inputs(train, E, b, Bn, nrows)
            std = None if a is None else perp_std(x, a, c)
            V = effective_noise_vectors(K, D, E, smoothed_dphi(neuron, x, std, torch), torch)
            act = neuron.activity(x, torch)
        warm = None if a is None else (a, c)
        return fit_noise(V.numpy(), act.numpy(), C_noise, init=warm, steps=300 if warm is None else 100)[:2]

    def settle(E, D, b, Bn, a, c, lam, rounds=3, rtol=0.02):
        """Alternate K <-> noise until the noise level (which sets phibar) settles; K last."""
        if a is None:
            K, lam = solve_K(E, b, Bn, np.zeros(N), np.zeros(N), lam)
        else:
            K, _ = solve_K(E, b, Bn, a, c, lam)
        for _ in range(rounds):
            a_new, c_new = solve_noise(E, D, b, Bn, K, a, c)
            total = a_new + c_new
            done = a is not None and np.abs(total - (a + c)).sum() < rtol * total.sum()
            a, c = a_new, c_new
            K, _ = solve_K(E, b, Bn, a, c, lam)
            if done:
                break
        return a, c, K, lam

    def build(E, D, b, Bn, K, a, c):
        En, Dn, bn, Bnn, Kn = (v.detach().numpy().copy() for v in (E, D, b, Bn, K))
        B = Bnn / u_scale if k else np.zeros((N, 0))
        b_raw = bn - (Bnn @ (u_center / u_scale) if k else 0.0)
        return LatentRNN(neuron=neuron, tau=cfg.tau, time_scale=T, scale=scale, center=center,
                         encoders=En, decoders=Kn, readout=Dn, bias=b_raw, input_weights=B,
                         noise_const=np.asarray(c), noise_act=np.asarray(a),
                         init_states=z_vis[rng_samp.choice(len(z_vis), min(256, len(z_vis)), replace=False)],
                         sde_spec=sde.spec, variables=list(sde.variables), inputs=list(sde.inputs),
                         meta={"sde_name": sde.name, "seed": cfg.seed, "tags": list(sde.tags)})

    bar = tqdm(total=cfg.steps + 2, desc=f"fit {sde.name} N={N}", disable=not cfg.progress)
    E, D, b, Bn = E0, D0, b0, Bn0
    a, c, K, lam = settle(E, D, b, Bn, None, None, None)
    start = build(E, D, b, Bn, K, a, c)
    err0, derr0 = model_errors(start, sde, test.z, test.u)
    bar.update()
    bar.set_postfix(drift_err=f"{err0:.4f}")

    # 4. gradient refinement
    if cfg.steps > 0:
        net = _Structure(E, Bn, b, K)
        net.Kh.requires_grad_(False)  # K follows E, b in closed form inside the graph
        opt = torch.optim.Adam([net.E, net.Bn, net.b], lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.01)
        f_norm = float((train.f ** 2).sum(1).mean())
        M = len(train.z)
        eye = torch.eye(N, dtype=torch.float64)
        for step in range(cfg.steps):
            rows = torch.randint(0, M, (cfg.batch,), generator=gen)
            fit_rows, test_rows = rows[: cfg.batch // 2], rows[cfg.batch // 2:]
            E_, D_, b_, Bn_, _ = net.parts()
            phi = features(train, E_, b_, Bn_, a, c, rows, smooth_=smooth, order=3)
            p_fit, p_test = phi[: cfg.batch // 2], phi[cfg.batch // 2:]
            G = p_fit.T @ p_fit / len(fit_rows)
            R = p_fit.T @ train.target[fit_rows] / len(fit_rows)
            K_ = torch.linalg.solve(G + lam * eye, R).T
            res = (p_test @ K_.T - train.target[test_rows]) * train.out_w
            loss = (res ** 2).sum(1).mean() / f_norm
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{math.sqrt(float(loss.detach())):.2e}")
        with torch.no_grad():
            E, D, b, Bn, K = (v.detach() for v in net.parts())
        a, c, K, _ = settle(E, D, b, Bn, a, c, lam)
    model = build(E, D, b, Bn, K, a, c)
    err, derr = model_errors(model, sde, test.z, test.u)
    bar.update()
    bar.close()
    model.meta["fit"] = {
        "config": asdict(cfg), "drift_error": err, "diffusion_error": derr,
        "drift_error_closed_form": err0, "diffusion_error_closed_form": derr0,
        "ridge_lambda": lam, "wall_time_s": time.perf_counter() - t_start,
        "integration_dt": steps[0], "record_dt": steps[1], "n_test": int(len(test.z)),
    }
    return model


def model_errors(model, sde, z, u=None):
    """Relative drift and diffusion errors of ``model`` against ``sde`` at states ``z``.

    Returns
    -------
    drift_error, diffusion_error : float
        ``sqrt(mean ||f_net - f||^2 / mean ||f||^2)`` with the noise-averaged
        network drift, and the same for the covariance ``g g^T`` (Frobenius).
    """
    u = u if sde.n_inputs else None
    f = sde.drift(z, u)
    fn = model.latent_drift(z, u, averaged=True)
    derr = math.sqrt(np.sum((fn - f) ** 2) / max(np.sum(f ** 2), 1e-300))
    C = sde.diffusion_cov(z)
    Cn = model.latent_cov(z, u)
    nrm = np.sum(C ** 2)
    cerr = math.sqrt(np.sum((Cn - C) ** 2) / nrm) if nrm > 0 else float(np.sqrt(np.sum(Cn ** 2)))
    return derr, cerr
