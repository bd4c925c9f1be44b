r"""Diffusion matching: private noise variances whose latent covariance is the target's.

The latent noise covariance per second (see :mod:`ddm_neuro.network`)::

    C_net(x) = sum_i sigma_i^2(x) V_i(x) V_i(x)^T,   sigma_i^2(x) = a_i act(x_i) + c_i,  a_i, c_i >= 0

with ``V`` the effective latent noise vectors (``V = D`` when only the direct
path is counted), is matched to ``C*(z) = S^-1 g g^T(z) S^-1 / T`` on training
states by minimising ``mean ||C_net - C*||_F^2 / mean ||C*||_F^2`` over
softplus-parametrised ``a, c`` (Adam, torch float64), starting from uniform
``c``: every neuron noisy, the biological default.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _inv_softplus(v):
    v = np.maximum(np.asarray(v, dtype=np.float64), 1e-12)
    return np.where(v > 30, v, np.log(np.expm1(np.minimum(v, 30))))


def fit_noise(V, act, C_target, steps=300, lr=0.05, init=None):
    """Fit the noise parameters ``(a, c)``.

    Parameters
    ----------
    V : array (M, d, N) or (d, N)
        Latent noise vectors at the training states.
    act : array (M, N)
        Neuron activities at those states.
    C_target : array (M, d, d)
        Target latent covariance per second.
    init : tuple (a, c), optional
        Start values (default: uniform ``c`` matching the mean trace).

    Returns
    -------
    a, c : ndarray (N,)
    rel_error : float
        ``sqrt(mean ||C_net - C*||^2 / mean ||C*||^2)``.
    """
    V = torch.as_tensor(V)
    if V.ndim == 2:
        V = V.expand(len(C_target), *V.shape)
    M, d, N = V.shape
    Ct = torch.as_tensor(C_target)
    norm = float((Ct ** 2).sum((1, 2)).mean())
    if norm == 0.0:
        return np.zeros(N), np.zeros(N), 0.0
    At = torch.as_tensor(act)
    iu = torch.triu_indices(d, d)
    mult = torch.where(iu[0] == iu[1], 1.0, 2.0).to(torch.float64)  # off-diagonals count twice
    outer = (V[:, iu[0], :] * V[:, iu[1], :]).transpose(1, 2).contiguous()  # (M, N, d(d+1)/2)
    Cu = Ct[:, iu[0], iu[1]]
    norm = float(((Cu ** 2) * mult).sum(1).mean())
    if init is None:
        per_unit = torch.einsum("man,man->", V, V) / M
        c0 = float(torch.einsum("maa->", Ct) / M) / float(per_unit)
        init = (np.full(N, 0.1 * c0), np.full(N, 0.9 * c0))
    pa = torch.tensor(_inv_softplus(init[0]), requires_grad=True)
    pc = torch.tensor(_inv_softplus(init[1]), requires_grad=True)
    opt = torch.optim.Adam([pa, pc], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)

    def loss_fn():
        s2 = At * F.softplus(pa) + F.softplus(pc)
        Cn = torch.bmm(s2[:, None, :], outer)[:, 0]
        return (((Cn - Cu) ** 2) * mult).sum(1).mean() / norm

    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return F.softplus(pa).numpy().copy(), F.softplus(pc).numpy().copy(), float(loss_fn()) ** 0.5


def target_latent_cov(sde, z, scale, time_scale):
    """``S^-1 g g^T(z) S^-1 / T`` (M, d, d): the latent covariance per second to match."""
    C = sde.diffusion_cov(z)
    return C / (scale[:, None] * scale[None, :]) / time_scale
