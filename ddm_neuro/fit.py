r"""Drift-diffusion matching: fit a :class:`LatentRNN` to an SDE.

1. **States**: simulate the target (:mod:`ddm_neuro.sampling`); normalise
   ``z = S y + c`` so the visited region maps to about ``[-1, 1]^d``; choose the
   time scale ``T`` so that ``tau |f_y| ~ ratio * |y|`` (the recurrent function
   ``y + tau f_y`` is then not dominated by the identity, and a decoding error
   costs a comparable relative drift error).
2. **Neurons**: random encoders on the sphere of R^(d+k) with gains and
   intercepts (NEF-style); biases and input weights projected off span(E).
3. **Diffusion**: private noise fitted so that ``D Sigma^2 D^T = S^-1 g g^T S^-1 / T``
   (:mod:`ddm_neuro.noisefit`).
4. **Closed-form start**: ridge decoders ``K phi(x) ~ y + tau f_y`` on the training
   states, with ``x`` including the network's own fluctuations off the latent
   subspace, ``P zeta``, ``zeta_i ~ N(0, tau sigma_i^2 / 2)`` (:mod:`ddm_neuro.ridge`).
5. **Gradient refinement** (torch, Adam) of encoders, gains, biases, input weights
   and K on the drift-matching loss, with fresh off-subspace noise every step and
   a ridge re-solve of K at intervals; then a final noise refit and ridge solve.

The loss and the reported drift error are in SDE units,
``sqrt(mean ||f_net(z) - f(z)||^2 / mean ||f(z)||^2)``, where ``f_net`` is the
network's latent drift averaged over its off-subspace fluctuations.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import ridge
from .errors import DDMError
from .network import LatentRNN
from .neurons import make_neuron
from .noisefit import fit_noise, target_latent_cov
from .sampling import held_out_states, training_states, visited_states


@dataclass
class FitConfig:
    """Settings of :func:`fit` (all have defaults; times in seconds).

    Attributes
    ----------
    n_neurons : int
        N.
    neuron : str or dict
        ``"tanh"`` or ``"lif"`` (or a neuron dict).
    tau : float
        Neuron time constant (s).
    time_scale : float or None
        T (s per SDE time unit); None chooses it from ``ratio``.
    ratio : float
        Target ``rms(tau |f_y|) / rms(|y|)`` when choosing T.
    seed : int
        Seeds everything (numpy and torch generators derived from it).
    n_train, n_val, n_test : int
        Training, validation and held-out state counts.
    margin : float
        Jitter and box margin as a fraction of the normalisation scale.
    steps, batch, lr : int, int, float
        Gradient refinement (steps = 0: closed form only).
    resolve_every : int
        Re-solve K in closed form every this many steps.
    progress : bool
    """

    n_neurons: int = 512
    neuron: object = "tanh"
    tau: float = 0.02
    time_scale: float | None = None
    ratio: float = 1.0
    seed: int = 0
    n_train: int = 30000
    n_val: int = 5000
    n_test: int = 5000
    margin: float = 0.1
    steps: int = 1500
    batch: int = 2048
    lr: float = 3e-3
    resolve_every: int = 250
    progress: bool = True
    extra: dict = field(default_factory=dict)


class _Params(torch.nn.Module):
    """Trainable parts of the network (float64)."""

    def __init__(self, E, Bn, b, K):
        super().__init__()
        self.E = torch.nn.Parameter(torch.as_tensor(E))
        self.Bn = torch.nn.Parameter(torch.as_tensor(Bn))
        self.b = torch.nn.Parameter(torch.as_tensor(b))
        self.k_scale = float(np.sqrt(np.mean(K ** 2))) or 1.0
        self.Kh = torch.nn.Parameter(torch.as_tensor(K / self.k_scale))

    def structure(self):
        """E, D = (E^T E)^-1 E^T, and b, Bn projected off span(E)."""
        E = self.E
        D = torch.linalg.solve(E.T @ E, E.T)
        b = self.b - E @ (D @ self.b)
        Bn = self.Bn - E @ (D @ self.Bn)
        return E, D, b, Bn

    @property
    def K(self):
        return self.Kh * self.k_scale


class _Problem:
    """Training data in torch and the feature map ``phi(E y + Bn u~ + b + P zeta)``."""

    def __init__(self, sde, sample, center, scale, u_center, u_scale, tau, T, neuron):
        self.neuron = neuron
        self.y = torch.as_tensor((sample.z - center) / scale)
        self.un = torch.as_tensor((sample.u - u_center) / u_scale) if sde.n_inputs else \
            torch.zeros(len(sample.z), 0, dtype=torch.float64)
        f = sde.drift(sample.z, sample.u if sde.n_inputs else None)
        self.f = torch.as_tensor(f)
        self.target = self.y + torch.as_tensor(tau * f / (scale * T))   # y + tau f_y
        self.out_w = torch.as_tensor(scale * T / tau)                  # latent error -> SDE drift units
        self.z = sample.z
        self.u = sample.u

    def inputs(self, E, b, Bn, rows=slice(None)):
        return self.y[rows] @ E.T + self.un[rows] @ Bn.T + b

    def features(self, E, D, b, Bn, perp_std, gen, rows=slice(None), smooth=False, antithetic_sign=None,
                 zeta=None):
        x = self.inputs(E, b, Bn, rows)
        if perp_std is not None:
            if zeta is None:
                zeta = torch.randn(x.shape, generator=gen, dtype=x.dtype)
            if antithetic_sign is not None:
                zeta = zeta * antithetic_sign
            zeta = zeta * perp_std[rows]
            x = x + zeta - (zeta @ D.T) @ E.T
        return self.neuron.phi(x, torch, smooth=smooth)


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
        ``model.meta["fit"]`` holds the settings and metrics: held-out relative
        drift and diffusion errors of the closed-form start and of the final
        network, the chosen ridge lambda and the wall time.
    """
    cfg = config or FitConfig()
    if overrides:
        cfg = FitConfig(**{**asdict(cfg), **overrides})
    if not isinstance(cfg.n_neurons, int) or cfg.n_neurons < sde.dim + sde.n_inputs:
        raise DDMError(f"n_neurons must be an integer >= d + k = {sde.dim + sde.n_inputs} "
                       f"(got {cfg.n_neurons})")
    if cfg.tau <= 0 or (cfg.time_scale is not None and cfg.time_scale <= 0):
        raise DDMError(f"tau and time_scale must be positive (got {cfg.tau}, {cfg.time_scale})")
    t_start = time.perf_counter()
    neuron = make_neuron(cfg.neuron)
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_sim, rng_test, rng_neur, rng_samp = (np.random.default_rng(s) for s in seeds[:4])
    gen = torch.Generator().manual_seed(int(seeds[4].generate_state(1)[0]))
    d, k, N = sde.dim, sde.n_inputs, cfg.n_neurons

    # 1. states, normalisation, time scale --------------------------------------------
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
    f_vis = sde.drift(z_vis, u_vis if k else None)
    y_vis = (z_vis - center) / scale
    T = cfg.time_scale or cfg.tau * float(np.sqrt(np.mean(np.sum((f_vis / scale) ** 2, 1)) /
                                               np.mean(np.sum(y_vis ** 2, 1)))) / cfg.ratio

    # 2. neurons --------------------------------------------------------------------
    enc = rng_neur.normal(size=(N, d + k))
    enc /= np.linalg.norm(enc, axis=1, keepdims=True)
    gain, bias = neuron.init_gain_bias(rng_neur, N)
    E0 = gain[:, None] * enc[:, :d]
    Bn0 = gain[:, None] * enc[:, d:]
    D0 = np.linalg.pinv(E0)
    P = lambda v: v - E0 @ (D0 @ v)  # noqa: E731
    b0, Bn0 = P(bias), P(Bn0)

    # 3. samples --------------------------------------------------------------------
    train = training_states(z_vis, u_vis, sde, center, scale, cfg.n_train + cfg.n_val, rng_samp, cfg.margin)
    val = train.take(np.arange(cfg.n_train, cfg.n_train + cfg.n_val))
    train = train.take(np.arange(cfg.n_train))
    test = held_out_states(z_test, u_test, cfg.n_test, rng_samp)
    prob = _Problem(sde, train, center, scale, u_center, u_scale, cfg.tau, T, neuron)
    pval = _Problem(sde, val, center, scale, u_center, u_scale, cfg.tau, T, neuron)
    ptest = _Problem(sde, test, center, scale, u_center, u_scale, cfg.tau, T, neuron)
    C_train = target_latent_cov(sde, train.z[:4000], scale, T)
    C_test = target_latent_cov(sde, test.z, scale, T)
    noise_rows = slice(0, 4000)

    def fit_diffusion(E, D, b, Bn):
        with torch.no_grad():
            x = prob.inputs(E, b, Bn, noise_rows)
            act = neuron.activity(x, torch).numpy()
        return fit_noise(D.numpy(), act, C_train, sde.additive)

    def perp_std_for(problem, E, b, Bn, a, c):
        with torch.no_grad():
            act = neuron.activity(problem.inputs(E, b, Bn), torch)
        return torch.sqrt(cfg.tau * (torch.as_tensor(a) * act + torch.as_tensor(c)) / 2)

    def closed_form(E, D, b, Bn, a, c):
        ps_tr = perp_std_for(prob, E, b, Bn, a, c)
        ps_va = perp_std_for(pval, E, b, Bn, a, c)
        with torch.no_grad():
            G, R = ridge.gram(lambda rows: prob.features(E, D, b, Bn, ps_tr, gen, rows), prob.target)
            K, lam = ridge.solve(G, R, pval.features(E, D, b, Bn, ps_va, gen), pval.target, prob.out_w)
        return K, lam

    def evaluate(E, D, b, Bn, K, a, c):
        """Held-out drift error (noise-averaged, antithetic) and diffusion error."""
        ps = perp_std_for(ptest, E, b, Bn, a, c)
        with torch.no_grad():
            acc = 0
            n_pairs = 8
            for _ in range(n_pairs):
                zeta = torch.randn(ptest.y.shape[0], N, generator=gen, dtype=torch.float64)
                for sign in (1.0, -1.0):
                    acc = acc + ptest.features(E, D, b, Bn, ps, gen, zeta=zeta, antithetic_sign=sign)
            phi = acc / (2 * n_pairs)
            f_net = (phi @ K.T - ptest.y) * ptest.out_w
            err = float(((f_net - ptest.f) ** 2).sum(1).mean() / (ptest.f ** 2).sum(1).mean()) ** 0.5
            x = ptest.inputs(E, b, Bn)
            s2 = torch.as_tensor(a) * neuron.activity(x, torch) + torch.as_tensor(c)
            Cn = torch.einsum("an,mn,bn->mab", D, s2, D).numpy()
        Ct = C_test
        nrm = float((Ct ** 2).sum((1, 2)).mean())
        derr = float(((Cn - Ct) ** 2).sum((1, 2)).mean() / nrm) ** 0.5 if nrm > 0 else 0.0
        return err, derr

    bar = tqdm(total=cfg.steps + 2, desc=f"fit {sde.name} N={N}", disable=not cfg.progress)
    E, Bn, b = (torch.as_tensor(v) for v in (E0, Bn0, b0))
    D = torch.as_tensor(D0)
    a, c, _ = fit_diffusion(E, D, b, Bn)
    K, lam = closed_form(E, D, b, Bn, a, c)
    err0, derr0 = evaluate(E, D, b, Bn, K, a, c)
    bar.update()
    bar.set_postfix(drift_err=f"{err0:.4f}")

    # 5. gradient refinement ------------------------------------------------------
    smooth = neuron.name == "lif"
    if cfg.steps > 0:
        params = _Params(E0, Bn0, bias if False else b0, K.numpy())
        opt = torch.optim.Adam(params.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.01)
        ps_all = perp_std_for(prob, E, b, Bn, a, c)
        norm = float((prob.f ** 2).sum(1).mean())
        M = prob.y.shape[0]
        for step in range(cfg.steps):
            rows = torch.randint(0, M, (cfg.batch,), generator=gen)
            E_, D_, b_, Bn_ = params.structure()
            phi = prob.features(E_, D_, b_, Bn_, ps_all, gen, rows, smooth=smooth)
            res = (phi @ params.K.T - prob.target[rows]) * prob.out_w
            loss = (res ** 2).sum(1).mean() / norm
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if (step + 1) % cfg.resolve_every == 0 and step + 1 < cfg.steps:
                with torch.no_grad():
                    E_, D_, b_, Bn_ = params.structure()
                    Knew, _ = closed_form(E_, D_, b_, Bn_, a, c)
                    params.Kh.copy_(Knew / params.k_scale)
                    ps_all = perp_std_for(prob, E_, b_, Bn_, a, c)
            bar.update()
            if step % 25 == 0:
                bar.set_postfix(loss=f"{math.sqrt(float(loss)):.4f}")
        with torch.no_grad():
            E, D, b, Bn = (v.detach() for v in params.structure())
        a, c, _ = fit_diffusion(E, D, b, Bn)
        K, lam = closed_form(E, D, b, Bn, a, c)
    err, derr = evaluate(E, D, b, Bn, K, a, c)
    bar.update()
    bar.close()

    En, Dn, bn, Bnn, Kn = (v.numpy().copy() for v in (E, D, b, Bn, K))
    B = Bnn / u_scale if k else np.zeros((N, 0))
    bias_raw = bn - (Bnn @ (u_center / u_scale) if k else 0.0)
    n_init = min(256, len(z_vis))
    init = z_vis[rng_samp.choice(len(z_vis), n_init, replace=False)]
    elapsed = time.perf_counter() - t_start
    fit_meta = {
        "config": {k_: v for k_, v in asdict(cfg).items() if k_ != "extra"},
        "drift_error": err, "diffusion_error": derr,
        "drift_error_closed_form": err0, "diffusion_error_closed_form": derr0,
        "ridge_lambda": lam, "wall_time_s": elapsed, "integration_dt": steps[0], "record_dt": steps[1],
        "n_test": int(len(test.z)),
    }
    return LatentRNN(neuron=neuron, tau=cfg.tau, time_scale=T, scale=scale, center=center,
                     encoders=En, decoders=Kn, readout=Dn, bias=bias_raw, input_weights=B,
                     noise_const=c, noise_act=a, init_states=init, sde_spec=sde.spec,
                     variables=list(sde.variables), inputs=list(sde.inputs),
                     meta={"format_note": "ddm_neuro LatentRNN", "sde_name": sde.name,
                           "seed": cfg.seed, "fit": fit_meta, "tags": list(sde.tags)})
