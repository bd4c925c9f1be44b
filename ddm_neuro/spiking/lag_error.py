r"""The spiking network's drift and diffusion error with its own noise on, at the verifier's lag.

The windowed estimator of :mod:`ddm_neuro.spiking.window_error` (:func:`~ddm_neuro.spiking.window_error.bin_errors`)
needs a noise-free run: regressing a window's increment on its mean state is
biased by the diffusion inside the window. But a noisy spiking network's
drift is not its noise-free drift: its LIF membranes filter the fluctuating
input (``tau_m``), so with diffusion the state a neuron "sees" lags and
scatters around the latent, and the realised drift changes with the noise
level. On the double well (N = 1000, ``fit --spiking``) the noise-free drift
error was calibrated from 11.7 % to 3.2 %, yet ``verify`` of the noisy run
still read a drift error of 0.35 against a threshold of 0.17, at every lag
from 0.02 to 0.32 (so it is not spike jitter, which falls with the lag).

This module measures what ``verify`` measures (:mod:`ddm_neuro.verify.increments`):
each observed increment over the lag ``Delta`` from a recorded state ``z_i``
is compared with ``M`` increments of the *target* propagated from the same
``z_i`` over the same ``Delta``. The residual ``r_i = dz_i - mean_m dzeta_im``
has no finite-lag bias whatever the noise, and

* ``E[r | z] / Delta`` is the network's drift minus the target's (SDE units);
* ``E[r r^T | z] - (1 + 1/M) C_hat(z)`` (``C_hat``: the propagated increments'
  covariance) is the network's increment covariance minus the target's.

Both are regressed on a polynomial basis of the start state and returned in
the decoders' units (``y``), ready for :func:`ddm_neuro.spiking.calibration.calibrate_spiking`
to cancel: the drift through the decoders, the diffusion through the model's
noise parameters. The regression's noise falls with the total simulated
time, not with the lag (per increment the signal is ``delta_f Delta`` and the
noise ``sqrt(2 D Delta)``).
"""
from __future__ import annotations

import numpy as np

from ..errors import DDMError
from ..run.plan import input_signal
from ..verify.basis import PolyBasis


class LagResidual:
    """Polynomial fits of the network's drift and diffusion errors at a lag (``y`` units).

    Attributes
    ----------
    basis : PolyBasis
    drift_coef : ndarray (n_basis, d)
        ``e(z) = basis(z) @ drift_coef``: drift error in ``y`` units (the
        decoders' target ``y + tau f_y``), like :class:`~ddm_neuro.spiking.window_error.DriftResidual`.
    cov_coef : ndarray (n_basis, d * d)
        Latent covariance error per network second, ``y`` units (those of
        :func:`ddm_neuro.fit.diffusion.target_latent_cov`).
    delta : float
        The lag (SDE units).
    n_increments : int
    verify_delta : float
        The lag ``verify`` would choose on this run (when ``delta`` was given, they may differ).
    box : tuple of ndarray (d,)
        Per-coordinate 0.5 and 99.5 percentiles of the start states: states
        outside are evaluated at the box's edge (no extrapolation).
    tree, reach :
        The measured states (standardised) and how far from them the fits
        count; farther away both errors read zero (:meth:`supported`).
    """

    def __init__(self, basis, drift_coef, cov_coef, delta, verify_delta, n_increments, box, tree, reach):
        self.basis, self.drift_coef, self.cov_coef = basis, drift_coef, cov_coef
        self.delta, self.verify_delta, self.n_increments = delta, verify_delta, n_increments
        self.box, self.tree, self.reach = box, tree, reach

    def _psi(self, z):
        # held at the edge of the measured region: a polynomial fitted to noisy residuals must not be
        # extrapolated (the decoders are re-solved on states with margins beyond the visited ones)
        return self.basis(np.clip(z, *self.box))

    def supported(self, z):
        """True where ``z`` lies near measured states (within :attr:`reach`, standardised)."""
        dist, _ = self.tree.query((np.atleast_2d(z) - self.basis.mean) / self.basis.scale)
        return dist <= self.reach

    def __call__(self, z):
        """Drift error ``e(z)`` (``y`` units), zero away from the measured states."""
        return (self._psi(z) @ self.drift_coef) * self.supported(z)[:, None]

    def cov(self, z):
        """Covariance error at ``z``: (M, d, d), symmetric, ``y`` units per network second; zero away from data."""
        d = self.drift_coef.shape[1]
        q = (self._psi(z) @ self.cov_coef).reshape(-1, d, d) * self.supported(z)[:, None, None]
        return 0.5 * (q + np.swapaxes(q, 1, 2))


def lag_residual(model, sde, traj, degree, rng, draws=16, delta=None):
    """Measure the network's drift and diffusion error in a (noisy) run at the verifier's lag.

    Parameters
    ----------
    model : LatentRNN
    sde : SDE
        The target.
    traj : Trajectory
        A run of the network (any back end); its recorded input signal (zero
        if none) drives the target's propagations.
    degree : int
        Degree of the polynomial regressions.
    rng : numpy.random.Generator
    draws : int
        Target propagations per start state.
    delta : float, optional
        The lag (SDE units, rounded to the recording grid); default the one
        ``verify`` would choose for ``traj`` (:func:`ddm_neuro.verify.checks.choose_lag`).

    Returns
    -------
    LagResidual
    """
    from ..verify import checks
    from ..verify.core import choose_integration
    from ..verify.increments import increment_pairs

    d = model.dim
    auto = checks.choose_lag(sde, traj, None, None, rng)  # what verify would choose on this run
    delta, k = auto if delta is None else checks.choose_lag(sde, traj, delta)
    signal = input_signal(sde, traj.info.input if sde.n_inputs else None)  # zero if the run recorded none
    u0 = None if signal is None else signal.values[0]
    visited = traj.z.reshape(-1, d)[::max(1, traj.z.shape[1] * traj.trials // 2000)]
    rate = max(sde.characteristic_rate(visited, u0), 1e-6)
    scheme, h, _ = choose_integration(sde, traj, rate)
    starts, obs, tgt = increment_pairs(sde, traj.z, traj.t, k, delta, h, rng, draws=draws, scheme=scheme,
                                       signal=signal)
    keep = np.isfinite(obs).all(1) & np.isfinite(tgt).all((1, 2))
    starts, obs, tgt = starts[keep], obs[keep], tgt[keep]
    basis = PolyBasis.fit_to(starts, degree)
    P = basis(starts)
    if len(P) < 4 * P.shape[1]:
        raise DDMError(f"calibration run too short: {len(P)} increments at lag {delta:.3g} for {P.shape[1]} "
                       "basis functions")
    m = tgt.mean(1)
    r = obs - m
    dev = tgt - m[:, None]
    c_hat = np.einsum("smi,smj->sij", dev, dev) / (draws - 1)
    q = np.einsum("si,sj->sij", r, r) - (1.0 + 1.0 / draws) * c_hat
    s, T, tau = model.scale, model.time_scale, model.tau
    e = r / delta * (tau / (s * T))                                  # y units, as bin_errors
    qy = q / delta / (s[:, None] * s[None, :]) / T                   # as target_latent_cov
    coef = np.linalg.lstsq(P, np.concatenate([e, qy.reshape(len(P), -1)], axis=1), rcond=None)[0]
    box = (np.percentile(starts, 0.5, axis=0), np.percentile(starts, 99.5, axis=0))
    return LagResidual(basis, coef[:, :d], coef[:, d:], delta, auto[0], len(P), box, *_support(starts, basis, rng))


def _support(starts, basis, rng, n=5000):
    """KD-tree of (a sample of) the measured states, standardised, and the reach: 3x their 95th NN distance.

    Inside the bounding box a polynomial is still unconstrained where no state was
    measured (the corners between a bistable system's wells, the holes of a
    chaotic attractor); there the correction is set to zero rather than guessed.
    """
    from scipy.spatial import cKDTree

    pts = (starts[rng.choice(len(starts), min(n, len(starts)), replace=False)] - basis.mean) / basis.scale
    tree = cKDTree(pts)
    nn = tree.query(pts, k=2)[0][:, 1]
    return tree, 3.0 * float(np.percentile(nn, 95))


def relative_cov_error(model, sde, cov_error, z):
    """RMS (Frobenius) of ``cov_error(z)`` (e.g. :meth:`LagResidual.cov`) over states ``z``, relative to the target's."""
    from ..fit.diffusion import target_latent_cov

    C = target_latent_cov(sde, z, model.scale, model.time_scale)
    dC = cov_error(z)
    return float(np.sqrt((dC ** 2).sum((1, 2)).mean() / max((C ** 2).sum((1, 2)).mean(), 1e-300)))
