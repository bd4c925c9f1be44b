r"""Diffusion matching: private noise variances whose latent covariance is the target's.

Latent noise covariance per second (DESIGN §2)::

    C_net(x) = sum_i sigma_i^2(x) D_i D_i^T,    sigma_i^2(x) = a_i act(x_i) + c_i,  a_i, c_i >= 0

is matched to ``C*(z) = S^-1 g g^T(z) S^-1 / T`` on the training states by
minimising ``mean ||C_net - C*||_F^2 / mean ||C*||_F^2`` over softplus-
parametrised ``a, c`` (Adam, torch float64). Additive targets use ``a = 0``.
Starts from uniform ``c`` (every neuron noisy, the biological default).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _inv_softplus(v):
    v = np.maximum(v, 1e-300)
    return np.where(v > 30, v, np.log(np.expm1(np.minimum(v, 30)) + 1e-300))


def fit_noise(D, act, C_target, additive, steps=400, lr=0.05):
    """Fit ``(a, c)``.

    Parameters
    ----------
    D : ndarray (d, N)
        Read-out.
    act : ndarray (M, N)
        Neuron activities at the training states (ignored when ``additive``).
    C_target : ndarray (M, d, d)
        Target latent covariance per second at those states.
    additive : bool

    Returns
    -------
    a, c : ndarray (N,)
    rel_error : float
        ``sqrt(mean ||C_net - C*||^2 / mean ||C*||^2)`` at the end.
    """
    d, N = D.shape
    Dt = torch.as_tensor(D)
    outer = torch.einsum("an,bn->nab", Dt, Dt).reshape(N, d * d)  # D_i D_i^T, flattened
    Ct = torch.as_tensor(C_target).reshape(len(C_target), d * d)
    norm = float((Ct ** 2).sum(1).mean()) or 1.0
    if float(Ct.abs().max()) == 0.0:
        return np.zeros(N), np.zeros(N), 0.0
    c0 = float(torch.trace(Ct.mean(0).reshape(d, d))) / float(torch.trace(outer.sum(0).reshape(d, d)))
    pc = torch.tensor(_inv_softplus(np.full(N, 0.8 * c0)), requires_grad=True)
    params = [pc]
    if not additive:
        pa = torch.tensor(_inv_softplus(np.full(N, 0.4 * c0)), requires_grad=True)
        params.append(pa)
        At = torch.as_tensor(act)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)

    def loss_fn():
        c = F.softplus(pc)
        if additive:
            Cn = (c @ outer)[None, :]
        else:
            Cn = (At * F.softplus(pa) + c) @ outer
        return ((Cn - Ct) ** 2).sum(1).mean() / norm

    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        err = float(loss_fn()) ** 0.5
        a = np.zeros(N) if additive else F.softplus(pa).numpy().copy()
        c = F.softplus(pc).numpy().copy()
    return a, c, err


def target_latent_cov(sde, z, scale, time_scale):
    """``S^-1 g g^T(z) S^-1 / T`` (M, d, d): the latent covariance per second to match."""
    C = sde.diffusion_cov(z)
    return C / (scale[:, None] * scale[None, :]) / time_scale
