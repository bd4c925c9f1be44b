r"""State-dependent host noise of an exported NIR file, from its metadata alone (numpy only).

This one file imports nothing but ``json`` and ``numpy``: a host that runs an exported file
without ddm_neuro copies it next to its script (the recipes in ``docs/nir-<consumer>.md`` do so).

A file whose model has activity-dependent private noise (``noise_act != 0``, a state-dependent
diffusion) says so in ``metadata["noise_state_dependent"]`` (1) and carries what a host needs to
compute the latent noise covariance at a latent state ``z`` (SDE coordinates) and constant input
``u`` (in the normalised latent ``y``, per network second)::

    x(z, u)  = M @ [z, 1, u]                                   M = metadata["noise_state_inputs"] (N, d + 1 + k)
    s2(x)    = max(noise_const + noise_act * act(x) - F phi(x), 0)
    C(z)     = K diag(s2(x)) K^T / tau^2 + L L^T

with the LIF rate ``phi(x) = 1 / (tau_ref + tau_m log(1 + 1/(x - 1)))`` for ``x > 1`` (else 0),
``act(x) = phi(x) * act_scale`` and the spikes' share ``F phi(x)`` (``fano`` a number), or
``frac(phi T) (1 - frac(phi T)) / T`` (``fano = "regular"``, counted over ``T = fano_lag``
seconds). The file's fixed noise matrix ``G`` (``metadata["noise_state_G"]``, d x d) maps the d
noise channels xi into the latent (``sqrt(dt) S G xi`` per step, and ``a_m sqrt(dt) E G xi`` into the
synaptic currents). Feeding the channels with ``xi' = A(z) xi``, ``xi ~ N(0, I_d)`` and

    A(z) = G^+ R(z),      R(z) R(z)^T = C(z)   (Cholesky; an eigen factor where C(z) is singular)

gives the latent the covariance ``G A A^T G^T = (G G^+) C(z) (G G^+)``. ``G^+`` is stored
(``metadata["noise_state_G_pinv"]``), computed at export in float64 with singular values below
``d * eps * max`` treated as zero. Where ``G`` has full rank (``metadata["noise_state_rank"] = d``,
the usual case) ``G G^+ = I`` and the covariance is exactly ``C(z)``. Where ``G`` is singular,
``G G^+`` is the orthogonal projector onto the range of ``G`` (the directions the file's noise
channels reach): the host supplies the part of ``C(z)`` inside that range and the rest is lost (the
export says so on stderr).

Recompute ``A`` from the latest latent (the file's Output) before each interval in which it is held,
never from a later one: the noise is then non-anticipating (Itô).
"""
from __future__ import annotations

import json

import numpy as np

#: Flat metadata keys (float64 arrays) of a state-dependent file.
STATE_KEYS = ("noise_state_inputs", "noise_state_const", "noise_state_act", "noise_state_decoders",
              "noise_state_latent", "noise_state_G", "noise_state_G_pinv")


def is_state_dependent(metadata):
    """True when the file's metadata carries state-dependent host noise (:data:`STATE_KEYS`).

    Parameters
    ----------
    metadata : dict
        The NIR graph's metadata (``nir.read(path).metadata``).

    Returns
    -------
    bool
    """
    flag = metadata.get("noise_state_dependent", 0)
    return bool(np.any(np.asarray(flag))) and all(key in metadata for key in STATE_KEYS)


def _params(metadata):
    try:
        return json.loads(metadata["ddm_neuro"])["noise"]["state"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("the NIR file's metadata has no state-dependent noise description "
                         "(metadata['ddm_neuro'] noise.state)") from exc


def host_noise_cov(metadata, z, u=None):
    """The host's latent noise covariance ``C(z)`` per network second, in the normalised latent.

    Parameters
    ----------
    metadata : dict
        The NIR graph's metadata, of a file with state-dependent noise (:func:`is_state_dependent`).
    z : array (..., d)
        Latent states, SDE coordinates (the file's Output).
    u : array (k,) or (..., k), optional
        Constant input (default zeros).

    Returns
    -------
    ndarray (..., d, d), float64
    """
    if not is_state_dependent(metadata):
        raise ValueError("this NIR file's noise is not state dependent (metadata noise_state_dependent unset): "
                         "feed standard normals to its noise channels as they are")
    p = _params(metadata)
    M = np.asarray(metadata["noise_state_inputs"], dtype=np.float64)
    K = np.asarray(metadata["noise_state_decoders"], dtype=np.float64)
    L = np.asarray(metadata["noise_state_latent"], dtype=np.float64)
    d, k = K.shape[0], M.shape[1] - K.shape[0] - 1
    z = np.asarray(z, dtype=np.float64)
    if z.shape[-1:] != (d,):
        raise ValueError(f"z must have {d} values in its last axis (got shape {z.shape})")
    u = np.zeros(k) if u is None else np.asarray(u, dtype=np.float64)
    if u.shape[-1:] != (k,):
        raise ValueError(f"u must have {k} values in its last axis (got shape {u.shape})")
    lead = np.broadcast_shapes(z.shape[:-1], u.shape[:-1])
    full = np.concatenate([np.broadcast_to(z, lead + (d,)), np.ones(lead + (1,)),
                           np.broadcast_to(u, lead + (k,))], axis=-1)
    x = full @ M.T
    tau_m, tau_ref = float(p["tau_m"]), float(p["tau_ref"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        j = np.where(x > 1.0, x - 1.0, 1.0)
        phi = np.where(x > 1.0, 1.0 / (tau_ref + tau_m * np.log1p(1.0 / j)), 0.0)
    var = np.asarray(metadata["noise_state_const"], np.float64) + \
        np.asarray(metadata["noise_state_act"], np.float64) * phi * float(p["act_scale"])
    if p["fano"] == "regular":
        lag = float(p["fano_lag"])
        f = np.modf(phi * lag)[0]
        spikes = f * (1.0 - f) / lag
    else:
        spikes = float(p["fano"]) * phi
    s2 = np.maximum(var - spikes, 0.0)
    Kt = K / float(p["tau"])
    return np.einsum("an,...n,bn->...ab", Kt, s2, Kt) + L @ L.T


def _factor(C):
    """``R`` with ``R R^T = C`` for a stack of symmetric PSD matrices: Cholesky, or an eigen factor."""
    try:
        return np.linalg.cholesky(C)
    except np.linalg.LinAlgError:                     # singular somewhere (e.g. no host noise at that state)
        lam, V = np.linalg.eigh(C)
        return V * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]


def noise_transform(metadata, z, u=None):
    """``A(z) = G^+ chol(C(z))``: feed the file's noise channels with ``A(z) @ xi``, ``xi ~ N(0, I_d)``.

    Parameters
    ----------
    metadata : dict
        The NIR graph's metadata, of a file with state-dependent noise (:func:`is_state_dependent`).
    z : array (..., d)
        The latest latent states (the Output), SDE coordinates; rows that are not finite give NaN.
    u : array, optional
        Constant input (default zeros).

    Returns
    -------
    ndarray (..., d, d), float64
        Where the file's ``G`` has full rank, ``G A A^T G^T = C(z)``; where it is singular, the part of
        ``C(z)`` in the range of ``G`` (module docstring).
    """
    z = np.asarray(z, dtype=np.float64)
    C = host_noise_cov(metadata, np.where(np.isfinite(z), z, 0.0), u)
    R = _factor((C + np.swapaxes(C, -1, -2)) / 2)
    A = np.asarray(metadata["noise_state_G_pinv"], dtype=np.float64) @ R
    bad = ~np.all(np.isfinite(z), axis=-1)
    if np.any(bad):
        A = np.where(bad[..., None, None], np.nan, A)
    return A
