r"""Closed-form decoders: ridge regression with the regulariser chosen on held-out data.

Solves ``K = argmin sum_s ||K phi_s - Y_s||^2 + lambda ||K||^2`` (the Neural
Engineering Framework's decoder solve). With ``G = Phi^T Phi / M = Q diag(L) Q^T``,
``K^T = Q diag(1/(L + lambda)) Q^T Phi^T Y / M`` for every lambda at the cost of
one eigendecomposition; lambda (relative to ``mean(L)``) minimises the validation
error.
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


def solve(G, R, phi_val=None, Y_val=None, weight=None, lambdas=RELATIVE_LAMBDAS):
    """Decoders ``K`` (d, N) for the best regulariser on the validation rows.

    Parameters
    ----------
    G, R : Gram matrix (N, N) and cross term (N, d)
    phi_val, Y_val : validation features and targets (omit to use the smallest lambda
        above the numerical floor)
    weight : tensor (d,), optional
        Per-output weights of the validation error.

    Returns
    -------
    K : torch.Tensor (d, N)
    lam : float
        The chosen absolute lambda.
    """
    L, Q = torch.linalg.eigh(G)
    L = L.clamp_min(0)
    QR = Q.T @ R
    scale = float(L.mean())
    if phi_val is None:
        lam = 1e-8 * scale
        return (Q @ (QR / (L + lam)[:, None])).T, lam
    PQ = phi_val @ Q
    w = torch.ones(R.shape[1], dtype=G.dtype) if weight is None else weight
    best = (np.inf, None)
    for rel in lambdas:
        lam = float(rel) * scale
        coef = QR / (L + lam)[:, None]
        err = float((((PQ @ coef - Y_val) * w) ** 2).mean())
        if err < best[0]:
            best = (err, lam)
    lam = best[1]
    return (Q @ (QR / (L + lam)[:, None])).T, lam
