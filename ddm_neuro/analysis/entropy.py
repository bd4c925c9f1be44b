r"""Entropy production rate and mean rotation: closed form (linear systems) and from trajectories.

**From trajectories**: the bias-corrected estimator of
:func:`ddm_neuro.verify.currents.entropy_production` (phase-space velocity on
a polynomial basis, Stratonovich; a lower bound up to noise, see :data:`EPR_DEGREES`) and the mean rotation
:func:`ddm_neuro.verify.currents.rotation`, each with a block standard error
(about 16 blocks: trials or chunks of trials). Every run is judged with the
same basis, standardised on the first target run.

**Closed form** for a linear SDE with additive noise,
``dz = -A (z - m) ds + G dW`` with ``A`` stable and ``D = G G^T`` invertible:
the stationary covariance solves ``A S + S A^T = D`` and, with
``v = -(A - D S^-1 / 2)(z - m)`` the irreversible velocity,

.. math:: \sigma = 2\,\operatorname{tr}\big(M^T D^{-1} M S\big),\qquad M = A - \tfrac12 D S^{-1}.

For the rotational OU process (``A = kI - wJ``, ``D = s^2 I``) this is
``2 w^2 / k``; for the isotropic one 0.
"""
from __future__ import annotations

import numpy as np

from ..verify import currents
from ..verify.basis import PolyBasis, degree_for
from ..verify.extras import block_stat  # block standard errors, as the verifier computes them

#: Default total degree of the estimator's basis for d = 1, 2, 3 and above (:func:`~ddm_neuro.verify.basis.degree_for`):
#: 5 for d <= 2, 3 for d = 3, 1 above. Higher than the verifier's (3, 2, 1): the estimate is the
#: entropy production of the velocity's projection on the basis, a lower bound, and a current
#: concentrated at barriers (the ``ring``'s, between wells) needs the extra degrees (measured on
#: ``ring``, 16 x 100 time units: degree 3 gives 0.28, degree 5 1.36, 7 1.46, 9 1.46).
EPR_DEGREES = (5, 5, 3, 1)


def closed_form_epr(sde, rng=None, n_probe=16):
    """The exact entropy production rate of a linear additive-noise SDE, or None.

    Linearity is checked numerically (the Jacobian is the same at ``n_probe``
    random states of the domain, and ``f`` is affine); input-driven systems are
    taken at u = 0.

    Returns
    -------
    float or None
        None when the drift is not affine, the noise not additive, ``A`` not
        stable or ``D`` singular.
    """
    if not sde.additive:
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    box = sde.domain_box()
    lo, hi = box if box is not None else (-np.ones(sde.dim), np.ones(sde.dim))
    z = rng.uniform(lo, hi, size=(n_probe, sde.dim))
    with np.errstate(all="ignore"):
        J = sde.jacobian(z)
        f = sde.drift(z)
    if not np.all(np.isfinite(J)) or not np.all(np.isfinite(f)):
        return None
    Jm = J.mean(0)
    scale = max(float(np.abs(Jm).max()), 1e-300)
    if np.abs(J - Jm).max() > 1e-6 * scale:
        return None
    c = f - z @ Jm.T  # affine offset, the same everywhere
    if np.abs(c - c.mean(0)).max() > 1e-6 * scale * max(1.0, float(np.abs(z).max())):
        return None
    A = -Jm
    if np.linalg.eigvals(A).real.min() <= 0:
        return None
    D = sde.diffusion_cov(np.zeros((1, sde.dim)))[0]
    ev = np.linalg.eigvalsh(D)
    if ev[0] <= 1e-12 * max(ev[-1], 1e-300):
        return None
    from scipy.linalg import solve_continuous_lyapunov

    S = solve_continuous_lyapunov(A, D)
    M = A - 0.5 * D @ np.linalg.inv(S)
    return float(max(2.0 * np.trace(M.T @ np.linalg.solve(D, M) @ S), 0.0))


def singular(sde, z):
    r"""The note for a target whose diffusion is singular on the states ``z`` (trials, n, d), or None.

    With noise in some directions only, :math:`2\langle v^T D^{-1} v\rangle` is infinite or
    undefined and an estimate from trajectories is an artefact of the fit's regularised
    :math:`\hat D^{-1}` (:mod:`ddm_neuro.verify.singular`, which also sets the rank tolerance).
    """
    from ..verify.singular import detect, note

    sing = detect(sde, np.asarray(z).reshape(-1, sde.dim))
    return None if sing is None else note(sing.names, sing.dim, sing.fraction)


def make_basis(z, degree=None):
    """The polynomial basis of the estimator, standardised on the states ``z`` (trials, n, d).

    ``degree``: its total degree (default ``degree_for(d, EPR_DEGREES)``).
    """
    pooled = np.asarray(z).reshape(-1, np.shape(z)[-1])
    d = pooled.shape[1]
    return PolyBasis.fit_to(pooled[::max(1, len(pooled) // 20000)],
                            degree_for(d, EPR_DEGREES) if degree is None else degree)


def run_statistics(z, dt, basis, mu, epr=True):
    """Entropy production rate and mean rotation of one set of runs, with block standard errors.

    Parameters
    ----------
    z : array (trials, n, d)
    dt : float
        Sampling interval.
    basis : PolyBasis
    mu : array (d,)
        Centre of the rotation (the first target run's mean).
    epr : bool
        Estimate the entropy production; False (a singular diffusion, :func:`singular`)
        gives NaN for it.

    Returns
    -------
    dict
        ``entropy_production``, ``entropy_production_stderr`` (floats) and
        ``rotation``, ``rotation_stderr`` (one per coordinate plane).
    """
    if epr:
        epr, epr_var, _ = block_stat(lambda x: currents.entropy_production(x, dt, basis), z)
    else:
        epr, epr_var = np.array([np.nan]), np.array([np.nan])
    rot, rot_var, _ = block_stat(lambda x: currents.rotation(x, dt, mu), z)
    return {"entropy_production": float(epr[0]), "entropy_production_stderr": float(np.sqrt(epr_var[0])),
            "rotation": rot.tolist(), "rotation_stderr": np.sqrt(rot_var).tolist()}
