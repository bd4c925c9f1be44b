r"""Connectivity split into symmetric and antisymmetric parts, and what each does to the latent drift.

.. math:: W = W_s + W_a,\qquad W_s = \tfrac12 (W + W^T),\qquad W_a = \tfrac12 (W - W^T).

For a fitted network ``W = E K`` (rank d), so ``W_s`` and ``W_a`` have rank at
most 2d and never need forming: with ``U = [E, K^T]`` (N x 2d),
``W_s = U C_s U^T`` and ``W_a = U C_a U^T`` with
``C_s = [[0, I], [I, 0]] / 2`` and ``C_a = [[0, I], [-I, 0]] / 2``, whose nonzero
eigenvalues are those of the 2d x 2d matrix ``C U^T U``.

Each part's contribution to the latent drift (SDE units; see
:mod:`ddm_neuro.network`) is

.. math:: f_{part}(z) = T S D W_{part} \phi(x) / \tau,

and the leak and drive give ``T S D (-x + b + B u) / tau``, so
``f_leak + f_s + f_a`` is the network's latent drift exactly. Summaries on
a set of states: ``rms_ratio = sqrt(mean |f_part|^2 / mean |f|^2)`` (size of
the part), ``projection_share = mean(f_part . f) / mean |f|^2`` (the shares
sum to 1 over leak, symmetric and antisymmetric), and the mean **vorticity**
of each part in each coordinate plane (i, j),
``(d_i f_j - d_j f_i) / 2`` averaged over the states: linear in the field, so
the parts' vorticities add up to the drift's, and the leak's is 0. It says
which part of ``W`` makes the latent state turn (for the rotational OU the
drift's vorticity is w). The shares are blurred by large opposite terms:
``W_s`` and ``W_a`` each carry half of ``D W^T phi`` with opposite signs,
including its constant part, and both cancel most of the leak.
"""
from __future__ import annotations

import numpy as np

PARTS = ("leak", "symmetric", "antisymmetric")


def split_weights(W):
    """Symmetric and antisymmetric parts ``(W_s, W_a)`` of a square matrix, ``W = W_s + W_a``."""
    W = np.asarray(W, dtype=np.float64)
    return 0.5 * (W + W.T), 0.5 * (W - W.T)


def _factored(model):
    """``U = [E, K^T]`` (N, 2d), or None when the model has a dense ``W_perp``."""
    if model.w_perp is not None:
        return None
    return np.concatenate([model.encoders, model.decoders.T], axis=1)


def part_spectra(model):
    """Nonzero eigenvalues of ``W``, ``W_s`` and ``W_a`` and the Frobenius norms.

    Returns
    -------
    dict
        ``eigenvalues``: ``{"W", "symmetric", "antisymmetric"}`` complex arrays
        (``W_s`` real, ``W_a`` imaginary); ``frobenius``: norms of W, W_s, W_a;
        ``asymmetry``: ``||W_a||_F / ||W||_F`` (0 symmetric, 1 antisymmetric).
    """
    U = _factored(model)
    if U is None:
        W = model.weights()
        Ws, Wa = split_weights(W)
        eig = {"W": np.linalg.eigvals(W), "symmetric": np.linalg.eigvalsh(Ws).astype(complex),
               "antisymmetric": np.linalg.eigvals(Wa)}
        norms = {name: float(np.linalg.norm(M)) for name, M in (("W", W), ("symmetric", Ws), ("antisymmetric", Wa))}
    else:
        d = model.dim
        G = U.T @ U
        I, Z = np.eye(d), np.zeros((d, d))
        Cs = 0.5 * np.block([[Z, I], [I, Z]])
        Ca = 0.5 * np.block([[Z, I], [-I, Z]])
        Cw = np.block([[Z, I], [Z, Z]])  # W = E K = U Cw U^T
        eig = {name: np.linalg.eigvals(C @ G) for name, C in (("W", Cw), ("symmetric", Cs), ("antisymmetric", Ca))}
        eig["symmetric"] = eig["symmetric"].real.astype(complex)
        eig["antisymmetric"] = 1j * eig["antisymmetric"].imag
        # ||U C U^T||_F^2 = tr(C G C^T G)
        norms = {name: float(np.sqrt(max(np.trace(C @ G @ C.T @ G), 0.0)))
                 for name, C in (("W", Cw), ("symmetric", Cs), ("antisymmetric", Ca))}
    order = lambda e: e[np.argsort(-np.abs(e))]  # noqa: E731
    eig = {k: order(v) for k, v in eig.items()}
    return {"eigenvalues": eig, "frobenius": norms,
            "asymmetry": norms["antisymmetric"] / max(norms["W"], 1e-300)}


def drift_contributions(model, z, u=None):
    """Latent drift of each part at states ``z`` (SDE units): ``{"leak", "symmetric", "antisymmetric"}``.

    Parameters
    ----------
    model : LatentRNN
    z : array (M, d)
        States in SDE coordinates (off-subspace inputs at rest).
    u : array (M, k) or (k,), optional
        Inputs (None: zero input).

    Returns
    -------
    dict of ndarray (M, d)
        The three fields; their sum is ``model.latent_drift(z, u)``.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    x = model.neuron_inputs(z, u)
    r = model.neuron.phi(x)
    drive = model.bias if not model.n_inputs or u is None else \
        model.bias + np.asarray(u, dtype=np.float64) @ model.input_weights.T
    D, E, K = model.readout, model.encoders, model.decoders
    # D W r with W = E K: K r;  D W^T r = D K^T (E^T r)
    DW = r @ K.T
    DWt = (r @ E) @ (D @ K.T).T
    if model.w_perp is not None:
        DW = DW + r @ (D @ model.w_perp).T
        DWt = DWt + r @ (model.w_perp @ D.T)
    out = {"leak": (-x + drive) @ D.T, "symmetric": 0.5 * (DW + DWt), "antisymmetric": 0.5 * (DW - DWt)}
    unit = model.time_scale * model.scale / model.tau
    return {k: v * unit for k, v in out.items()}


def drift_shares(fields):
    """``rms_ratio`` and ``projection_share`` of each part (module docstring) from :func:`drift_contributions`."""
    total = sum(fields.values())
    norm = float(np.mean(np.sum(total ** 2, axis=-1)))
    norm = max(norm, 1e-300)
    return {k: {"rms_ratio": float(np.sqrt(np.mean(np.sum(v ** 2, -1)) / norm)),
                "projection_share": float(np.mean(np.sum(v * total, -1)) / norm)} for k, v in fields.items()}


def vorticity(model, z, u=None, eps=1e-4):
    """Mean vorticity ``(d_i f_j - d_j f_i) / 2`` of each part per plane (i < j), central differences.

    Returns
    -------
    dict
        ``{"leak", "symmetric", "antisymmetric", "total"}``, each a list of
        d (d - 1) / 2 floats (empty for d = 1).
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    d = z.shape[1]
    h = eps * np.maximum(z.std(0), 1e-6) if len(z) > 1 else np.full(d, eps)
    jac = {}  # part -> (M, d, d) with jac[..., a, b] = d f_a / d z_b
    for j in range(d):
        step = np.zeros(d)
        step[j] = h[j]
        up, down = drift_contributions(model, z + step, u), drift_contributions(model, z - step, u)
        for k in up:
            jac.setdefault(k, np.zeros((len(z), d, d)))[:, :, j] = (up[k] - down[k]) / (2 * h[j])
    out = {k: [float(np.mean(J[:, b, a] - J[:, a, b]) / 2) for a in range(d) for b in range(a + 1, d)]
           for k, J in jac.items()}
    out["total"] = [sum(out[k][i] for k in PARTS) for i in range(len(out["leak"]))]
    return out


def connectivity_summary(model, z, u=None):
    """Spectra, norms, asymmetry and drift shares of ``W_s`` and ``W_a`` on states ``z`` (JSON-ready dict)."""
    spec = part_spectra(model)
    shares = drift_shares(drift_contributions(model, z, u))
    d = model.dim
    top = lambda e: [[float(v.real), float(v.imag)] for v in e[:2 * d]]  # noqa: E731
    return {"frobenius": spec["frobenius"], "asymmetry": spec["asymmetry"], "drift_shares": shares,
            "vorticity": vorticity(model, z, u),
            "eigenvalues": {k: top(v) for k, v in spec["eigenvalues"].items()},
            "constraint": model.meta.get("fit", {}).get("constraint")}
