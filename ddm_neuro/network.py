r"""The trained model, :class:`LatentRNN` (the hub of DESIGN §3).

Network, in seconds ``t`` (DESIGN §2)::

    tau dx = ( -x + W (phi(x) + eta) + b + B u(t) ) dt,      eta dt = Sigma(x) dW_t,   x in R^N
    W = E K (+ W_perp with D W_perp = 0),  D E = I_d,  y = D x,  z = S y + c

Noise is **private to each neuron and enters at its output**, like the
variability of a spike train: neuron j's output is ``phi_j(x) + eta_j`` with
independent white ``eta_j`` of intensity ``sigma_j^2(x) = a_j act(x_j) + c_j``
(per second; Poisson-like when ``a`` dominates). Where private noise cannot
reach a latent direction (see :mod:`ddm_neuro.fit.diffusion`), a shared noise
``E L dW'`` (d sources) tops it up. In DESIGN §2's notation the noise matrix is
``Sigma_x = [W diag(sigma) / tau, E L]``. One unit of SDE time is ``T`` seconds
(``time_scale``).

With ``b`` and ``B`` orthogonal to span(E) (``D b = 0``, ``D B = 0``)::

    dy = ( -y + K phi(E y + x_perp) ) dt / tau + K diag(sigma) dW_t / tau + L dW'_t

and, because ``W eta = E K eta`` lies in span(E), the noise never leaves the
latent subspace: ``x_perp`` relaxes deterministically (rate ``1/tau``) to
``b + B u``. The input also has a feed-forward path, ``tau B du/dt`` (a step
in u moves ``x`` by ``B du`` at once), so ``x_perp`` sits at ``b + B u(t)``
and the latent sees the input without a lag of tau. ``W_perp`` (never set
by the fit; hardware constraints, :mod:`ddm_neuro.fit.hardware`, make one) moves
``x_perp`` to a fixed point that depends on ``y`` (:meth:`LatentRNN.settle`,
used by :meth:`LatentRNN.neuron_inputs`) and acts on the noisy outputs too,
which is then not covered by :meth:`LatentRNN.latent_cov`. So the latent process is exactly an Itô SDE with drift
``f_net(z) = T S (-y + K phi(x)) / tau`` and covariance per SDE time unit
``T S (K Sigma^2 K^T / tau^2 + L L^T) S``.

(Noise at the neurons' *inputs* would not stay there: its off-subspace part
re-enters the latent through ``K phi`` as noise coloured on the time scale tau,
typically ten or more times stronger than its direct part, and biases the
drift through the curvature of ``phi``. Output noise avoids both.)

Plain numpy arrays and JSON-able metadata only: no torch objects inside.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model_fields import check_model
from .neurons import NeuronModel, make_neuron



def settle_perp(x, w_perp, phi, tol=1e-9, max_iter=500, accept=1e-4):
    """Solve ``v = W_perp phi(x + v)`` for each row of ``x`` (..., N); return ``(x + v, settled)``.

    The iteration ``v <- v + a (W_perp phi(x + v) - v)`` is the Euler step
    ``a tau`` of the off-subspace dynamics ``tau dv = (-v + W_perp phi(x + v)) dt``;
    each state's ``a`` halves when its update changes direction (an
    overshoot: steep slopes such as the LIF curve's at threshold) and grows
    back by 1.2 (at most 1) otherwise. A state stops when its update is below
    ``tol (1 + max|v|)``; ``settled`` is False when, after ``max_iter`` steps,
    some state's update is still above ``accept (1 + max|v|)`` (no stable rest
    state off the subspace) or not finite. (Neurons held at the LIF threshold,
    where the rate curve's slope is infinite, can keep a state chattering at
    about 1e-4 of its input scale; that counts as settled.)
    """
    shape = np.shape(x)
    x = np.asarray(x, dtype=np.float64).reshape(-1, shape[-1])
    v = np.zeros_like(x)
    step = np.ones(len(x))
    last = np.zeros_like(x)
    live = np.arange(len(x))
    change = np.zeros(0)
    for _ in range(max_iter):
        delta = phi(x[live] + v[live]) @ w_perp.T - v[live]
        flip = np.sum(delta * last[live], axis=1) < 0
        step[live] = np.where(flip, 0.5 * step[live], np.minimum(1.0, 1.2 * step[live]))
        v[live] += step[live, None] * delta
        last[live] = delta
        change = np.max(np.abs(delta), axis=1) / (1.0 + np.max(np.abs(v[live]), axis=1))
        keep = np.isfinite(change) & (change > tol)
        live, change = live[keep], change[keep]
        if not len(live):
            break
    ok = bool(np.all(np.isfinite(v))) and not np.any(change > accept)
    return (x + v).reshape(shape), ok


@dataclass
class LatentRNN:
    """A rate network whose latent read-out implements an SDE.

    Attributes
    ----------
    neuron : NeuronModel
        ``tanh`` or ``lif`` (rate curve).
    tau : float
        Neuron/synapse time constant in seconds.
    time_scale : float
        T, seconds of network time per unit of SDE time.
    scale, center : ndarray (d,)
        Normalisation ``z = scale * y + center``.
    encoders : ndarray (N, d)
        E (gains included).
    decoders : ndarray (d, N)
        K, the latent part of the recurrent weights (``W = E K``).
    readout : ndarray (d, N)
        D, with ``D E = I``.
    bias : ndarray (N,)
        b.
    input_weights : ndarray (N, k)
        B, acting on raw inputs u.
    noise_const, noise_act : ndarray (N,)
        Private output-noise intensities: ``sigma_i^2 = noise_act_i act(x_i) + noise_const_i``
        (output units squared times seconds: ``eta dt = sigma dW``).
    noise_latent : ndarray (d, d)
        L, shared latent noise per square-root second (lower triangular; zeros when
        private noise suffices).
    init_states : ndarray (n0, d)
        Start states in SDE coordinates (samples of the target's visited distribution).
    sde_spec : dict or None
        Spec that rebuilds the target SDE (None for Python-callable SDEs).
    variables, inputs : list of str
    meta : dict
        Fit settings and metrics, seed, format version, ...
    w_perp : ndarray (N, N) or None
        Optional extra recurrent weights with ``D W_perp = 0``.
    """

    neuron: NeuronModel
    tau: float
    time_scale: float
    scale: np.ndarray
    center: np.ndarray
    encoders: np.ndarray
    decoders: np.ndarray
    readout: np.ndarray
    bias: np.ndarray
    input_weights: np.ndarray
    noise_const: np.ndarray
    noise_act: np.ndarray
    noise_latent: np.ndarray
    init_states: np.ndarray
    sde_spec: dict | None
    variables: list
    inputs: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    w_perp: np.ndarray | None = None

    def __post_init__(self):
        self.neuron = make_neuron(self.neuron)
        check_model(self)

    # ------------------------------------------------------------------ sizes
    @property
    def n_neurons(self):
        """N."""
        return self.encoders.shape[0]

    @property
    def dim(self):
        """d."""
        return self.encoders.shape[1]

    @property
    def n_inputs(self):
        """k."""
        return self.input_weights.shape[1]

    # ------------------------------------------------------------------ structure
    def weights(self):
        """Full recurrent weight matrix ``W = E K (+ W_perp)``, (N, N)."""
        W = self.encoders @ self.decoders
        return W if self.w_perp is None else W + self.w_perp

    def sde(self):
        """Rebuild the target SDE from the stored spec."""
        from .errors import ModelFileError
        from .sde.spec import sde_from_spec

        if self.sde_spec is None:
            raise ModelFileError("this model was fitted to Python callables; pass the SDE explicitly")
        if not isinstance(self.sde_spec, dict) or not isinstance(self.sde_spec.get("spec"), dict):
            raise ModelFileError("the model's sde_spec holds no spec table ({'kind': 'spec', 'spec': {...}})")
        return sde_from_spec(self.sde_spec["spec"])

    def to_latent(self, z):
        """``y = (z - c) / S``."""
        return (np.asarray(z, dtype=np.float64) - self.center) / self.scale

    def to_sde(self, y):
        """``z = S y + c``."""
        return np.asarray(y) * self.scale + self.center

    def rest_inputs(self, u=None):
        """Off-subspace rest state ``x_perp* = P (b + B u)`` with ``P = I - E D`` (..., N)."""
        drive = self.bias
        if self.n_inputs and u is not None:
            drive = drive + np.asarray(u, dtype=np.float64) @ self.input_weights.T
        return drive - (drive @ self.readout.T) @ self.encoders.T

    def neuron_inputs(self, z, u=None, perp=None):
        """Neuron inputs ``x = E y + x_perp*`` (+ ``perp``) at latent states z, (..., N).

        With ``W_perp``, ``x_perp*`` is the off-subspace fixed point at each ``y``,
        ``x_perp* = P (b + B u) + W_perp phi(E y + x_perp*)`` (see :meth:`settle`).
        """
        x = self.to_latent(z) @ self.encoders.T + self.rest_inputs(u)
        if self.w_perp is not None:
            x = self.settle(x)[0]
        return x if perp is None else x + perp

    def settle(self, x, tol=1e-9, max_iter=500):
        """Move ``x`` off the subspace to ``x + v`` with ``v = W_perp phi(x + v)``; ``(x + v, converged)``.

        See :func:`settle_perp`.
        """
        if self.w_perp is None:
            return x, True
        return settle_perp(x, self.w_perp, self.neuron.phi, tol=tol, max_iter=max_iter)

    def noise_var(self, x):
        """Private output-noise intensities ``sigma^2(x)`` (..., N)."""
        return self.noise_act * self.neuron.activity(x) + self.noise_const

    # ------------------------------------------------------------------ latent SDE
    def latent_drift(self, z, u=None, perp=None):
        """Latent drift in SDE coordinates, ``T S D(-x + W phi(x) + b + B u) / tau``.

        Parameters
        ----------
        z : array (..., d)
        u : array (..., k), optional
        perp : array (..., N), optional
            Deviation off the latent subspace added to the rest state.
        """
        z = np.asarray(z, dtype=np.float64)
        x = self.neuron_inputs(z, u, perp)
        r = self.neuron.phi(x)
        drive = self.bias if not self.n_inputs or u is None else \
            self.bias + np.asarray(u, dtype=np.float64) @ self.input_weights.T
        rec = (r @ self.decoders.T) @ self.encoders.T  # W r = E (K r), never forming the N x N W
        if self.w_perp is not None:
            rec = rec + r @ self.w_perp.T
        dy = (-x + rec + drive) @ self.readout.T / self.tau
        return self.time_scale * self.scale * dy

    def latent_cov(self, z, u=None):
        """Latent noise covariance per SDE time unit, ``T S (K Sigma^2(x) K^T / tau^2 + L L^T) S`` (..., d, d).

        (``D W = K`` for the latent part; ``W_perp`` does not reach the latent.)
        """
        x = self.neuron_inputs(np.asarray(z, dtype=np.float64), u)
        s2 = self.noise_var(x)
        cov = np.einsum("an,...n,bn->...ab", self.decoders, s2, self.decoders) / self.tau ** 2
        cov = cov + self.noise_latent @ self.noise_latent.T
        return self.time_scale * cov * self.scale[:, None] * self.scale[None, :]

    # ------------------------------------------------------------------ files
    def save(self, path, force=False):
        """Write a ``.ddm`` model file (see :mod:`ddm_neuro.modelio`)."""
        from .modelio import save_model

        save_model(self, path, force=force)

    @classmethod
    def load(cls, path):
        """Read a ``.ddm`` model file (see :mod:`ddm_neuro.modelio`)."""
        from .modelio import load_model

        return load_model(path, cls)
