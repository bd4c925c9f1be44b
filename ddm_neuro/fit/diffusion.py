r"""Diffusion matching: private output noise, topped up by shared latent noise where it cannot reach.

The latent noise covariance per second (see :mod:`ddm_neuro.network`)::

    C_net(x) = sum_j sigma_j^2(x) V_j V_j^T + L L^T,   sigma_j^2(x) = a_j act(x_j) + c_j,  a_j, c_j >= 0

with ``V = K / tau`` (each neuron's output reaches the latent along its decoder)
is matched to ``C*(z) = S^-1 g g^T(z) S^-1 / T`` on training states.

* The private part is linear in ``(a, c)``: a bounded least-squares problem
  (rows: the ``d(d+1)/2`` distinct entries at each state, whitened by the
  target there, ``C*^(-1/2) C C*^(-1/2)``, and each state weighted by
  ``1 / ||.||_F`` so the error is relative in every direction), solved with
  :func:`scipy.optimize.nnls`. A small Tikhonov term pulls each neuron's
  contribution towards an equal share of constant noise: every neuron noisy,
  the biological default, not the sparse solution plain NNLS would give.
* Private noise can only reach the cone spanned by ``V_j V_j^T``: when the
  decoders of one latent direction are all small (a drift that is simple along
  it), that direction cannot get enough noise privately. The shortfall, the
  positive part of ``mean(C* - C_priv)``, is supplied by ``L L^T``, a shared
  noise along the embedding (``E L dW``, d sources for all N neurons). The fit
  alternates the two a few times; the share of private noise is reported.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def _private_lsq(V, act, C_target, prior_weight, use_act):
    """Non-negative least squares for ``(a, c)`` (``a = 0`` unless ``use_act``); see the module docstring."""
    M, d, N = V.shape
    norms = np.sqrt((C_target ** 2).sum((1, 2)))
    iu = np.triu_indices(d)
    mult = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))  # off-diagonal entries count twice in ||.||_F^2
    w = mult[None, :] / np.maximum(norms, norms.max() * 1e-12 + 1e-300)[:, None]      # (M, P)
    outer = V[:, iu[0], :] * V[:, iu[1], :] * w[:, :, None]                           # (M, P, N)
    parts = [outer * act[:, None, :], outer] if use_act else [outer]
    A = np.concatenate(parts, axis=2).reshape(M * len(iu[0]), len(parts) * N)
    b = (C_target[:, iu[0], iu[1]] * w).reshape(-1)
    col = np.sqrt((A ** 2).sum(0))
    col = np.where(col > 0, col, 1.0)
    An = A / col          # solve for each column's contribution
    ones = An[:, -N:].sum(1)
    y0 = max(float(ones @ b) / max(float(ones @ ones), 1e-300), 0.0)
    prior = np.concatenate([np.zeros(A.shape[1] - N), np.full(N, y0)])
    lam = np.sqrt(prior_weight)
    sol, _ = nnls(np.vstack([An, lam * np.eye(A.shape[1])]), np.concatenate([b, lam * prior]),
                  maxiter=50 * A.shape[1])
    sol = sol / col
    return (sol[:N] if use_act else np.zeros(N)), sol[-N:]


def _whitener(C_target, floor=1e-3):
    """``(C* + floor tr(C*)/d I)^(-1/2)`` per state (M, d, d): makes every latent direction count alike."""
    d = C_target.shape[-1]
    reg = C_target + floor * np.trace(C_target, axis1=1, axis2=2)[:, None, None] / d * np.eye(d)
    vals, vecs = np.linalg.eigh(reg)
    vals = np.maximum(vals, vals.max(axis=1, keepdims=True) * 1e-12 + 1e-300)
    return np.einsum("mij,mj,mkj->mik", vecs, 1.0 / np.sqrt(vals), vecs)


def fit_noise(V, act, C_target, prior_weight=1e-2, rounds=4, use_act=True, whiten=True):
    """Fit private noise ``(a, c)`` and the shared top-up ``L``.

    Parameters
    ----------
    V : array (d, N)
        Latent direction of each neuron's output noise (``K / tau``).
    act : array (M, N)
        Neuron activities at the training states.
    C_target : array (M, d, d)
        Target latent covariance per second at those states.
    prior_weight : float
        Weight of the pull towards equal contributions.
    rounds : int
        Alternations between the private part and the shared top-up.
    use_act : bool
        Fit the activity-dependent part ``a`` (False: ``a = 0``, for constant targets).
    whiten : bool
        Fit the private part in coordinates whitened by the target at each
        state, ``C*^(-1/2) (C - C*) C*^(-1/2)``, so a direction with little
        noise (FitzHugh-Nagumo's slow variable) is matched as closely, in
        relative terms, as a noisy one; this is the error a likelihood-based
        check (the verifier's diffusion test) sees. False: plain relative
        Frobenius error.

    Returns
    -------
    a, c : ndarray (N,)
    L : ndarray (d, d)
        Shared latent noise, lower triangular (``L L^T`` per second).
    info : dict
        ``error`` (relative Frobenius error on the training states) and
        ``private_share`` (trace of the private part over the total, averaged).
    """
    V = np.asarray(V, dtype=np.float64)
    C_target = np.asarray(C_target, dtype=np.float64)
    M = len(C_target)
    d, N = V.shape
    Vb = np.broadcast_to(V, (M, d, N))
    norms2 = (C_target ** 2).sum((1, 2))
    if not np.any(norms2 > 0):
        return np.zeros(N), np.zeros(N), np.zeros((d, d)), {"error": 0.0, "private_share": 1.0}
    Q = np.zeros((d, d))
    Wh = _whitener(C_target) if whiten else None
    Vw = Vb if Wh is None else np.einsum("mij,jn->min", Wh, V)
    for _ in range(rounds):
        R = C_target - Q
        a, c = _private_lsq(Vw, act, R if Wh is None else Wh @ R @ Wh, prior_weight, use_act)
        C_priv = np.einsum("an,mn,bn->mab", V, act * a + c, V)
        vals, vecs = np.linalg.eigh((C_target - C_priv).mean(0))
        Q_new = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
        if np.allclose(Q_new, Q, rtol=1e-3, atol=1e-12 * np.sqrt(norms2.mean())):
            break
        Q = Q_new
    C_priv = np.einsum("an,mn,bn->mab", V, act * a + c, V)
    err = np.sqrt(np.mean(((C_priv + Q - C_target) ** 2).sum((1, 2)) / np.maximum(norms2, 1e-300)))
    tr_priv = np.trace(C_priv, axis1=1, axis2=2).mean()
    share = float(tr_priv / max(tr_priv + np.trace(Q), 1e-300))
    vals, vecs = np.linalg.eigh(Q)
    L = np.linalg.qr(((vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T).T, mode="r").T  # L L^T = Q
    return a, c, L, {"error": float(err), "private_share": share}


def target_latent_cov(sde, z, scale, time_scale):
    """``S^-1 g g^T(z) S^-1 / T`` (M, d, d): the latent covariance per second to match."""
    C = sde.diffusion_cov(z)
    return C / (scale[:, None] * scale[None, :]) / time_scale


def fit_noise_for(sde, V, activity, C_target):
    """:func:`fit_noise` as the fit uses it: constant private noise for additive targets (one state
    suffices), activity-dependent otherwise, ``activity()`` (states, N) evaluated only then."""
    if sde.additive:
        return fit_noise(V, np.zeros((1, V.shape[1])), C_target[:1], use_act=False)
    return fit_noise(V, activity(), C_target)



#: States (the first of those given) the noise of a re-solved network is refitted on.
NOISE_STATES = 300


def refit_noise(model, sde, z, u=None, cov_offset=None):
    """Refit ``model``'s noise (in place) for its current decoders on the first :data:`NOISE_STATES` of ``z``.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
        The target whose latent covariance :func:`target_latent_cov` is matched.
    z : array (M, d)
    u : array (M, k), optional
    cov_offset : callable, optional
        ``cov_offset(z)`` (M, d, d), ``y`` units per second, subtracted from the
        target's covariance before the fit; the difference's eigenvalues are
        floored at 5 % of the target's smallest (a covariance stays one).
    """
    z = z[:NOISE_STATES]
    u = None if u is None or not model.n_inputs else u[:NOISE_STATES]
    C = target_latent_cov(sde, z, model.scale, model.time_scale)
    if cov_offset is not None:
        C = _psd_floor(C - cov_offset(z), C)
    a, c, L, _ = fit_noise_for(sde, model.decoders / model.tau,
                               lambda: model.neuron.activity(model.neuron_inputs(z, u)), C)
    model.noise_act, model.noise_const, model.noise_latent = np.asarray(a), np.asarray(c), np.asarray(L)


def _psd_floor(A, C, share=0.05):
    """``A`` with its eigenvalues raised to at least ``share`` of ``C``'s smallest, per state."""
    vals, vecs = np.linalg.eigh(0.5 * (A + np.swapaxes(A, -1, -2)))
    floor = share * np.linalg.eigvalsh(C)[..., :1]
    return np.einsum("mij,mj,mkj->mik", vecs, np.maximum(vals, floor), vecs)
