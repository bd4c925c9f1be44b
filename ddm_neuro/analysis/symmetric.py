r"""A fit constrained to symmetric connectivity, ``W = W^T``: what symmetry cannot do.

With ``D E = I``, a rank-d symmetric ``W = E M E^T`` (``M`` symmetric d x d)
is exactly the usual ``W = E K`` with the decoders constrained to ``K = M E^T``.
The latent drift becomes

.. math:: \tau\,\dot y = -y + M E^T \phi(E y + b),

and ``E^T phi(E y + b) = grad_y V(y)`` with ``V = sum_i Phi(e_i . y + b_i)``
(``Phi' = phi``): ``M`` times a gradient. For a linear target the fitted drift
matrix is then a product of two symmetric matrices, with real eigenvalues: no
rotation, and no sustained cycling. It is "gradient-like", not gradient: with
``M`` not a multiple of the noise covariance a small current remains, so its
entropy production is small, not exactly zero.

The fit uses :func:`ddm_neuro.fit.matching.fit`'s pieces on the same states: a
closed-form ``fit(steps=0)`` gives the normalisation, time scale, initial
encoders, gains and biases (same seed, same states); the training states are
drawn again with the same generators. Then

* **closed form**: ``min_M sum_s |M h_s - Y_s|^2 + lambda tr(M E^T E M)`` over
  symmetric ``M``, with ``h = E^T phi`` and ``Y = y + tau f_y``, is the Sylvester
  equation ``H M + M H = R + R^T`` (``H = h^T h / n + lambda E^T E``,
  ``R = h^T Y / n``), solved in the eigenbasis of ``H``:
  ``M~_ij = C~_ij / (l_i + l_j)``;
* **gradient refinement** (variable projection, as in :func:`~ddm_neuro.fit.matching.fit`):
  encoders, gains, biases and input weights move, with ``M`` solved inside the graph on
  one half of each batch and judged on the other;
* **diffusion**: :func:`ddm_neuro.fit.matching.structure_noise` with ``K = M E^T``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch

from ..fit.decoders import gram
from ..fit.diffusion import target_latent_cov
from ..fit.matching import (FitConfig, TrainableEncoders, TrainingData, fit, input_normalisation, model_errors,
                            structure_noise)
from ..fit.states import held_out_states, training_states, visited_states


def solve_symmetric(H, R):
    """Symmetric ``M`` minimising ``tr(M H M) - 2 tr(M R)`` (torch or numpy, differentiable in torch).

    Parameters
    ----------
    H : (d, d) symmetric positive definite
    R : (d, d)

    Returns
    -------
    M : (d, d), ``H M + M H = R + R^T``.
    """
    xp = torch if isinstance(H, torch.Tensor) else np
    lam, Q = xp.linalg.eigh(H)
    C = Q.T @ (R + R.T) @ Q
    return Q @ (C / (lam[:, None] + lam[None, :])) @ Q.T


def fit_symmetric(sde, config=None, **overrides):
    """Fit a network with symmetric recurrent weights ``W = E M E^T`` to ``sde``.

    Parameters
    ----------
    sde : SDE
    config : FitConfig, optional
    **overrides
        Fields of :class:`~ddm_neuro.fit.matching.FitConfig` (``n_neurons``, ``seed``, ``steps``, ...).

    Returns
    -------
    LatentRNN
        ``W = model.weights()`` is symmetric; ``meta["fit"]["constraint"] == "symmetric"``,
        ``meta["fit"]["latent_matrix"]`` is ``M``, and the held-out drift and
        diffusion errors are reported as for :func:`~ddm_neuro.fit.matching.fit`.
    """
    t_start = time.perf_counter()
    cfg = FitConfig(**{**asdict(config or FitConfig()), **overrides})
    base = fit(sde, cfg, steps=0, progress=False)  # validates cfg; normalisation, T, E0, b0, Bn0
    k, N = sde.n_inputs, cfg.n_neurons
    center, scale, T = base.center, base.scale, base.time_scale
    norm = (center, scale, *input_normalisation(sde))
    u_center, u_scale = norm[2:]
    # the same states as fit(): same generators, same order of draws
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)
    rng_sim, rng_test, _, rng_samp = (np.random.default_rng(s) for s in seeds[:4])
    gen = torch.Generator().manual_seed(int(seeds[4].generate_state(1)[0]))
    z_vis, u_vis, _ = visited_states(sde, rng_sim)
    z_test, u_test, _ = visited_states(sde, rng_test, trials=16, records=1000, batches=2)
    both = training_states(z_vis, u_vis, sde, center, scale, cfg.n_train + cfg.n_val, rng_samp, cfg.margin)
    train = TrainingData(sde, both.take(np.arange(cfg.n_train)), norm, cfg.tau, T)
    test = held_out_states(z_test, u_test, cfg.n_test, rng_samp)
    C_noise = target_latent_cov(sde, train.z[: cfg.n_noise], scale, T)
    neuron = base.neuron
    smooth = neuron.name == "lif"
    lam = base.meta["fit"]["ridge_lambda"]

    E = torch.as_tensor(base.encoders)
    Bn = torch.as_tensor(base.input_weights * u_scale) if k else torch.zeros(N, 0, dtype=torch.float64)
    b = torch.as_tensor(base.bias + (base.input_weights * u_scale) @ (u_center / u_scale) if k else base.bias)
    perp = None
    if cfg.perp_margin > 0:
        D0 = torch.linalg.pinv(E)
        dev = torch.randn(len(train.z), N, generator=gen, dtype=torch.float64) * cfg.perp_margin
        perp = dev - (dev @ D0.T) @ E.T

    def features(E_, b_, Bn_, rows=slice(None), smooth_=False):
        return train.rates(neuron, E_, b_, Bn_, rows, smooth=smooth_, dev=perp)

    def solve_M(E_, b_, Bn_):
        with torch.no_grad():  # the decoders' Gram matrices in the latent basis: h = E^T phi
            H, R = gram(lambda rows: features(E_, b_, Bn_, rows) @ E_, train.target)
            return solve_symmetric(H + lam * E_.T @ E_, R)

    if cfg.steps > 0:
        net = TrainableEncoders(E, Bn, b)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.01)
        f_norm = float((train.f ** 2).sum(1).mean())
        batch = max(cfg.batch, 4 * N)
        half = batch // 2
        for _ in range(cfg.steps):
            rows = torch.randint(0, len(train.z), (batch,), generator=gen)
            E_, _, b_, Bn_ = net.parts()
            h = features(E_, b_, Bn_, rows, smooth_=smooth) @ E_
            M_ = solve_symmetric(h[:half].T @ h[:half] / half + lam * E_.T @ E_,
                                 h[:half].T @ train.target[rows[:half]] / half)
            res = (h[half:] @ M_ - train.target[rows[half:]]) * train.out_w  # M symmetric: h M^T = h M
            loss = (res ** 2).sum(1).mean() / f_norm
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            E, D, b, Bn = (v.detach() for v in net.parts())
    else:
        D = torch.linalg.solve(E.T @ E, E.T)
    M = solve_M(E, b, Bn)
    M = 0.5 * (M + M.T)
    K = M @ E.T
    a, c, L, info = structure_noise(sde, train, neuron, E, b, Bn, K, cfg.tau, C_noise, cfg.n_noise)

    model = base  # same normalisation, time scale, start states and metadata; new structure
    En, Dn, bn, Bnn = (v.detach().numpy().copy() for v in (E, D, b, Bn))
    model.encoders, model.readout, model.decoders = En, Dn, K.numpy().copy()
    model.input_weights = Bnn / u_scale if k else np.zeros((N, 0))
    model.bias = bn - (Bnn @ (u_center / u_scale) if k else 0.0)
    model.noise_act, model.noise_const, model.noise_latent = np.asarray(a), np.asarray(c), np.asarray(L)
    err, derr = model_errors(model, sde, test.z, test.u)
    meta = base.meta["fit"]
    model.meta["fit"] = {
        **meta, "config": asdict(cfg), "constraint": "symmetric", "latent_matrix": M.numpy().tolist(),
        "drift_error": err, "diffusion_error": derr,
        "unconstrained_closed_form_drift_error": meta["drift_error"],
        "drift_error_closed_form": None, "diffusion_error_closed_form": None,
        "private_noise_share": info["private_share"], "wall_time_s": time.perf_counter() - t_start,
    }
    if not (math.isfinite(err) and math.isfinite(derr)):
        from ..errors import DDMError
        raise DDMError(f"{sde.name}: the symmetric fit failed (held-out drift error {err}, diffusion error {derr})")
    return model
