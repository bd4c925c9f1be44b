r"""Closed-form decoders: ridge regression with the regulariser chosen on held-out data.

Solves ``K = argmin sum_s ||K phi_s - Y_s||^2 + lambda ||K||^2`` (the Neural
Engineering Framework's decoder solve). With ``G = Phi^T Phi / M = Q diag(L) Q^T``,
``K^T = Q diag(1/(L + lambda)) Q^T Phi^T Y / M`` for every lambda at the cost of
one eigendecomposition.

lambda is the *largest* one (relative to ``mean(L)``) whose validation error is
within ``max(tol, 1.5 x best)``: decoders with small norm, because every unit of
decoder norm turns the network's off-subspace noise into latent noise (see
:mod:`ddm_neuro.network`) and amplifies any mismatch of a simulator or chip.
The rule ``"least-error"`` takes the lambda of least validation error instead:
for a network whose drift must be as exact as its decoding allows (the rate
basis of a spike-coordinated network, which has no off-subspace noise to
amplify: stochastic Lorenz's held-out drift error falls from 0.2 % to 0.003 %
at M = 500, FitzHugh-Nagumo's from 0.48 % to 0.034 %, and 10-20x near its fixed
point, where the relative error is what the verifier sees).

A fitted network's decoders are re-solved at its own lambda (:func:`fit_lambda`)
whenever its decoding target changes: the fit's last solve, the spiking
calibration's correction ``K <- K - solve(phi, e)``, the push around an unstable
focus. :func:`ridge_decoders` is that solve from rates; :func:`resolve_decoders`
the same for a :class:`~ddm_neuro.network.LatentRNN`'s neurons on given states;
:func:`with_decoders` the model with new decoders and its noise refitted for them.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..errors import DDMError
from .diffusion import refit_noise

RELATIVE_LAMBDAS = 10.0 ** np.arange(-12, -1.5, 0.5)
#: The rules choosing lambda on validation rows (module docstring).
RIDGE_RULES = ("small-decoders", "least-error")


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
          lambdas=RELATIVE_LAMBDAS, rule="small-decoders"):
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
    rule : str
        One of :data:`RIDGE_RULES`: the largest lambda within the tolerance, or the one of least error.

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
    if rule == "least-error":
        i = int(np.argmin(errs))
    else:
        i = int(np.flatnonzero(errs <= max(tol, 1.5 * errs.min())).max())
    lam = float(lambdas[i]) * scale
    return (Q @ (QR / (L + lam)[:, None])).T, lam, float(errs[i])


def ridge_decoders(rates, target, lam):
    """Ridge decoders ``K`` (d, N) of ``target`` from ``rates`` at a fixed lambda (:func:`gram`, then :func:`solve`).

    Parameters
    ----------
    rates : callable or array (M, N)
        ``rates(rows) -> Phi`` (torch, a slice of rows), or the whole table.
    target : array or torch.Tensor (M, d)
    lam : float
        Absolute lambda.

    Returns
    -------
    torch.Tensor (d, N)
    """
    if not callable(rates):
        table = torch.as_tensor(rates)
        rates = lambda rows: table[rows]  # noqa: E731
    G, R = gram(rates, torch.as_tensor(target))
    return solve(G, R, lam)[0]


def fit_lambda(model):
    """The ridge lambda ``model`` was fitted with (``meta["fit"]["ridge_lambda"]``).

    Raises
    ------
    DDMError
        The model records none (not fitted by :func:`ddm_neuro.fit.matching.fit`).
    """
    lam = float(model.meta.get("fit", {}).get("ridge_lambda") or 0.0)
    if lam <= 0:
        raise DDMError("the model records no ridge lambda (meta.fit.ridge_lambda); refit it with ddm_neuro.fit")
    return lam


def resolve_decoders(model, z, u, target, lam):
    """Ridge decoders (d, N) of ``model``'s neurons for ``target`` on states ``z`` (inputs ``u``).

    Parameters
    ----------
    model : LatentRNN
        Its encoders, biases and input weights give the rates ``phi(x(z, u))``.
    z : array (M, d)
    u : array (M, k) or None
    target : array (M, d)
        What ``K phi`` should decode, ``y`` units (e.g. ``y + tau f_y``, :func:`decoding_target`,
        or a correction to it).
    lam : float
        Absolute ridge lambda (usually :func:`fit_lambda`).

    Returns
    -------
    ndarray (d, N)
    """
    return ridge_decoders(model.neuron.phi(model.neuron_inputs(z, u)), target, lam).numpy().copy()


def decoding_target(model, sde, z, u=None):
    """``y + tau f_y``: the decoders' target for ``sde`` at states ``z`` in ``model``'s latent units.

    Parameters
    ----------
    model : LatentRNN
        Its normalisation ``z = S y + c``, tau and time scale.
    sde : SDE
    z : array (M, d)
    u : array (M, k), optional

    Returns
    -------
    ndarray (M, d)
    """
    y = (z - model.center) / model.scale
    return y + sde.drift(z, u) * (model.tau / (model.scale * model.time_scale))


def with_decoders(model, sde, decoders, z, u=None, cov_offset=None):
    """A copy of ``model`` with ``decoders`` and its noise refitted for them on states ``z``.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
        The target whose diffusion the noise matches.
    decoders : array (d, N)
    z, u : arrays
        States (and inputs) of the noise fit (its first ones, see :func:`ddm_neuro.fit.diffusion.refit_noise`).
    cov_offset : callable, optional
        Subtracted from the target's latent covariance first (see :func:`~ddm_neuro.fit.diffusion.refit_noise`).

    Returns
    -------
    LatentRNN
    """
    new = copy.deepcopy(model)
    new.decoders = decoders
    refit_noise(new, sde, z, u, cov_offset)
    return new


def refit_decoders(model, sde, z, u, lam):
    """A copy of ``model`` with its decoders re-solved for ``y + tau f_y`` at lambda ``lam`` and its noise refitted.

    Encoders, gains, biases and input weights are kept; ``z``, ``u`` are the
    training states (e.g. :func:`ddm_neuro.spiking.states.mixed_training_states`).

    Returns
    -------
    LatentRNN
    """
    return with_decoders(model, sde, resolve_decoders(model, z, u, decoding_target(model, sde, z, u), lam), z, u)
