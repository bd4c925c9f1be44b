r"""The trained model, :class:`LatentRNN` (the hub of DESIGN §3).

Network, in seconds ``t`` (DESIGN §2)::

    tau dx = ( -x + W phi(x) + b + B u(t) ) dt + tau Sigma(x) dW_t,     x in R^N
    W = E K (+ W_perp with D W_perp = 0),  D E = I_d,  y = D x,  z = S y + c

with private noise ``Sigma = diag(sigma_i)``, ``sigma_i^2 = a_i act(x_i) + c_i``
(per second). One unit of SDE time is ``T`` seconds (``time_scale``). With ``b`` and
``B`` orthogonal to span(E) (``D b = 0``, ``D B = 0``), the latent state obeys

    dy/dt = ( -y + K phi(E y + x_perp) ) / tau + D Sigma dW_t

and ``x_perp`` relaxes (rate ``1/tau``) to ``b + B u`` plus noise. In SDE
coordinates the latent drift is ``f_net(z) = T S (-y + K phi(x)) / tau``.

Private noise also moves ``x_perp`` (stationary std ``s_i = sqrt(tau sigma_i^2 / 2)``),
and that reaches the latent through ``K phi``. Two consequences, both used by the
fit and reported here:

* the drift the network realises is the noise-averaged ``K phibar(x)``, with
  ``phibar(x) = E[phi(x + s xi)]`` (:func:`~ddm_neuro.neurons.smoothed_phi`);
* an impulse of neuron i's noise moves the latent by ``D_i`` directly and by
  ``K diag(phibar') P e_i`` once its off-subspace part has relaxed, so on time
  scales longer than ``tau`` the latent noise vectors are
  ``V(x) = (I - K diag(phibar') E) D + K diag(phibar')`` and the latent covariance
  per SDE time unit is ``T S V Sigma^2 V^T S`` (not just ``T S D Sigma^2 D^T S``).

(These formulas assume ``W_perp = 0``, which is what :func:`ddm_neuro.fit.fit` builds.)

Plain numpy arrays and JSON-able metadata only: no torch objects inside.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .neurons import NeuronModel, make_neuron, smoothed_dphi, smoothed_phi


def effective_noise_vectors(K, D, E, dphi, xp=np):
    """Latent noise vectors ``V = (I - K diag(phi') E) D + K diag(phi')`` (..., d, N).

    Parameters
    ----------
    K, D : (d, N) decoders and read-out
    E : (N, d) encoders
    dphi : (..., N) slope of the (noise-averaged) rate function at each neuron's input
    """
    Kd = K * dphi[..., None, :]
    A = Kd @ E
    eye = xp.eye(K.shape[0], dtype=K.dtype) if xp is np else xp.eye(K.shape[0], dtype=K.dtype)
    return (eye - A) @ D + Kd


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
        Private noise variances per second: ``sigma_i^2 = noise_act_i act(x_i) + noise_const_i``.
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
    init_states: np.ndarray
    sde_spec: dict | None
    variables: list
    inputs: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    w_perp: np.ndarray | None = None

    def __post_init__(self):
        self.neuron = make_neuron(self.neuron)

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
        from .spec import sde_from_spec

        if self.sde_spec is None:
            raise ModelFileError("this model was fitted to Python callables; pass the SDE explicitly")
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
        """Neuron inputs ``x = E y + x_perp*`` (+ ``perp``) at latent states z, (..., N)."""
        x = self.to_latent(z) @ self.encoders.T + self.rest_inputs(u)
        return x if perp is None else x + perp

    def noise_var(self, x):
        """Private noise variances per second ``sigma^2(x)`` (..., N)."""
        return self.noise_act * self.neuron.activity(x) + self.noise_const

    # ------------------------------------------------------------------ latent SDE
    def latent_drift(self, z, u=None, perp=None, averaged=False):
        """Latent drift in SDE coordinates, ``T S D(-x + W phi(x) + b + B u) / tau``.

        Parameters
        ----------
        z : array (..., d)
        u : array (..., k), optional
        perp : array (..., N), optional
            Fluctuation off the latent subspace added to the rest state.
        averaged : bool
            False: the noise-free network's drift. True: averaged over the
            network's own off-subspace fluctuations (``phi`` -> ``phibar``), the
            drift a noisy network realises.
        """
        z = np.asarray(z, dtype=np.float64)
        x = self.neuron_inputs(z, u, perp)
        r = smoothed_phi(self.neuron, x, self.perp_std(z, u)) if averaged else self.neuron.phi(x)
        drive = self.bias if not self.n_inputs or u is None else \
            self.bias + np.asarray(u, dtype=np.float64) @ self.input_weights.T
        dy = (-x + r @ self.weights().T + drive) @ self.readout.T / self.tau
        return self.time_scale * self.scale * dy

    def latent_cov(self, z, u=None, direct_only=False):
        """Latent noise covariance per SDE time unit, ``T S V Sigma^2 V^T S`` (..., d, d).

        ``direct_only=True`` gives ``T S D Sigma^2 D^T S`` (ignoring the noise
        that returns through the off-subspace relaxation).
        """
        z = np.asarray(z, dtype=np.float64)
        x = self.neuron_inputs(z, u)
        s2 = self.noise_var(x)
        if direct_only:
            V = np.broadcast_to(self.readout, x.shape[:-1] + self.readout.shape)
        else:
            dphi = smoothed_dphi(self.neuron, x, self.perp_std(z, u))
            V = effective_noise_vectors(self.decoders, self.readout, self.encoders, dphi)
        cov = np.einsum("...an,...n,...bn->...ab", V, s2, V)
        return self.time_scale * cov * self.scale[:, None] * self.scale[None, :]

    def perp_std(self, z=None, u=None):
        """Stationary std of each neuron's input off the latent subspace, ``sqrt(tau sigma_i^2 / 2)``.

        Evaluated at the rest inputs of states ``z`` when given (..., N), else at the
        constant part only (N,). (Diagonal approximation of ``(tau/2) P Sigma^2 P^T``.)
        """
        s2 = self.noise_const if z is None else self.noise_var(self.neuron_inputs(z, u))
        return np.sqrt(self.tau * s2 / 2.0)

    # ------------------------------------------------------------------ files
    def save(self, path, force=False):
        """Write a ``.ddm`` model file (see :mod:`ddm_neuro.modelio`)."""
        from .modelio import save_model

        save_model(self, path, force=force)

    @classmethod
    def load(cls, path):
        """Read a ``.ddm`` model file (see :mod:`ddm_neuro.modelio`)."""
        from .modelio import load_model

        return load_model(path)
