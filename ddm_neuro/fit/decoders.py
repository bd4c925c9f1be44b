r"""Closed-form decoders: ridge regression with the regulariser chosen on held-out data.

Solves ``K = argmin sum_s ||K phi_s - Y_s||^2 + lambda ||K||^2`` (the Neural
Engineering Framework's decoder solve). With ``G = Phi^T Phi / M = Q diag(L) Q^T``,
``K^T = Q diag(1/(L + lambda)) Q^T Phi^T Y / M`` for every lambda at the cost of
one eigendecomposition.

lambda is the *largest* one (relative to ``mean(L)``) whose validation error is
within ``max(tol, 1.5 x best)``: decoders with small norm, because every unit of
decoder norm turns the network's off-subspace noise into latent noise (see
:mod:`ddm_neuro.network`) and amplifies any mismatch of a simulator or chip.
"""
from __future__ import annotations

import numpy as np
import torch

RELATIVE_LAMBDAS = 10.0 ** np.arange(-12, -1.5, 0.5)


def gram(features, Y, chunk=4096):
    """Accumulate ``Phi^T Phi / M`` and ``Phi^T Y / M`` over row chunks.

    Parameters
    ----------
    features : callable
        ``features(rows) -> Phi`` (len(rows), N) torch tensor for a slice of rows.
    Y : torch.Tensor (M, d)
    """
    M = Y.shape[0]
    G = None
    for start in range(0, M, chunk):
        rows = slice(start, min(M, start + chunk))
        phi = features(rows)
        if G is None:
            G = torch.zeros(phi.shape[1], phi.shape[1], dtype=phi.dtype)
            R = torch.zeros(phi.shape[1], Y.shape[1], dtype=phi.dtype)
        G += phi.T @ phi
        R += phi.T @ Y[rows]
    return G / M, R / M


def solve(G, R, lam=None, phi_val=None, Y_val=None, weight=None, norm=1.0, tol=0.0,
          lambdas=RELATIVE_LAMBDAS):
    """Decoders ``K`` (d, N) for a given lambda, or one chosen on validation rows.

    Parameters
    ----------
    G, R : Gram matrix (N, N) and cross term (N, d)
    lam : float, optional
        Absolute lambda; when None it is chosen on ``phi_val, Y_val``.
    phi_val, Y_val : validation features (M, N) and targets (M, d)
    weight : tensor (d,), optional
        Per-output weights of the validation error.
    norm : float
        The validation error is ``sqrt(mean ||(pred - Y) w||^2 / norm)``.
    tol : float
        Acceptable validation error (see module docstring).

    Returns
    -------
    K : torch.Tensor (d, N)
    lam : float
        The absolute lambda used.
    val_error : float or None
        Validation error at that lambda.
    """
    L, Q = torch.linalg.eigh(G)
    L = L.clamp_min(0)
    QR = Q.T @ R
    if lam is not None:
        return (Q @ (QR / (L + lam)[:, None])).T, lam, None
    scale = float(L.mean())
    PQ = phi_val @ Q
    w = torch.ones(R.shape[1], dtype=G.dtype) if weight is None else weight
    errs = []
    for rel in lambdas:
        coef = QR / (L + float(rel) * scale)[:, None]
        errs.append(float((((PQ @ coef - Y_val) * w) ** 2).sum(1).mean() / norm) ** 0.5)
    errs = np.array(errs)
    ok = np.flatnonzero(errs <= max(tol, 1.5 * errs.min()))
    i = int(ok.max())
    lam = float(lambdas[i]) * scale
    return (Q @ (QR / (L + lam)[:, None])).T, lam, float(errs[i])
