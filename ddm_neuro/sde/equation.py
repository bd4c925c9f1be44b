r"""The stochastic differential equation type.

An :class:`SDE` is ``dz = f(z, u) ds + g(z) dW_s`` in the **Itô** sense, with
``z`` in R^d, inputs ``u`` in R^k (possibly k = 0) and ``W`` an m-dimensional
Wiener process. Drift and diffusion are vectorised functions usable with numpy
(float64) and torch.

Three ways to make one: :func:`ddm_neuro.sde.systems.get_system` (built-ins),
:func:`ddm_neuro.sde.spec.sde_from_spec` / :func:`ddm_neuro.sde.spec.load_spec` (a TOML
spec compiled once with sympy) and :meth:`SDE.from_callables` (plain Python).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import SpecError

#: :meth:`SDE.domain_grid` returns at most this many numbers per Jacobian, states x d x d
#: (5 states per dimension up to d = 8).
MAX_GRID_ELEMENTS = 25_000_000


@dataclass
class SDE:
    """An Itô SDE ``dz = f(z, u) ds + g(z) dW``.

    Parameters
    ----------
    name : str
        Short name, used in file metadata and figures.
    variables : tuple of str
        Names of the d state variables.
    drift_fn : callable
        ``drift_fn(z, u, xp) -> (..., d)`` with ``z`` of shape ``(..., d)``,
        ``u`` of shape ``(..., k)`` and ``xp`` the array module (numpy or torch).
    diffusion_fn : callable
        ``diffusion_fn(z, xp) -> (..., d, m)``.
    noise_dim : int
        m, the number of independent Wiener processes.
    inputs : tuple of str
        Names of the k input channels (may be empty).
    parameters : dict
        Parameter values (informational for callables; substituted for specs).
    domain : dict, optional
        ``{variable: (low, high)}``, the box where accuracy matters.
    input_range : dict
        ``{input: (low, high)}``, the range a fit must cover.
    additive : bool
        True when ``g`` does not depend on ``z``.
    spec : dict, optional
        A JSON-serialisable description that rebuilds this SDE
        (``{"kind": "spec", ...}``); None for Python callables.
    description : str
        One line for ``ddm-neuro systems``.
    tags : tuple of str
        Any of ``"chaotic"``, ``"multistable"``, ``"nonequilibrium"``: which
        extra statistics verification computes.
    """

    name: str
    variables: tuple
    drift_fn: Callable
    diffusion_fn: Callable
    noise_dim: int
    inputs: tuple = ()
    parameters: dict = field(default_factory=dict)
    domain: dict | None = None
    input_range: dict = field(default_factory=dict)
    additive: bool = False
    spec: dict | None = None
    description: str = ""
    tags: tuple = ()

    # ------------------------------------------------------------------ basics
    @property
    def dim(self):
        """State dimension d."""
        return len(self.variables)

    @property
    def n_inputs(self):
        """Number of input channels k."""
        return len(self.inputs)

    def _inputs_like(self, z, u, xp):
        batch = z.shape[:-1]
        if self.n_inputs == 0:
            return xp.zeros(batch + (0,), dtype=z.dtype) if xp is np else \
                xp.zeros(batch + (0,), dtype=z.dtype, device=z.device)
        if u is None:
            return xp.zeros(batch + (self.n_inputs,), dtype=z.dtype) if xp is np else \
                xp.zeros(batch + (self.n_inputs,), dtype=z.dtype, device=z.device)
        if xp is np:
            u = np.asarray(u, dtype=np.float64)
            return np.broadcast_to(u, batch + (self.n_inputs,))
        u = xp.as_tensor(u, dtype=z.dtype, device=z.device)
        return u.expand(batch + (self.n_inputs,))

    # ------------------------------------------------------------------ numpy
    def drift(self, z, u=None):
        """Drift ``f(z, u)`` for numpy arrays ``z`` (..., d) -> (..., d).

        ``u`` (..., k) broadcasts against ``z``'s batch shape; None means u = 0.
        """
        z = np.asarray(z, dtype=np.float64)
        return self.drift_fn(z, self._inputs_like(z, u, np), np)

    def diffusion(self, z):
        """Diffusion matrix ``g(z)`` for numpy ``z`` (..., d) -> (..., d, m)."""
        z = np.asarray(z, dtype=np.float64)
        return self.diffusion_fn(z, np)

    def diffusion_cov(self, z):
        """Noise covariance per unit time ``g g^T`` (..., d, d)."""
        g = self.diffusion(z)
        return g @ np.swapaxes(g, -1, -2)

    # ------------------------------------------------------------------ torch
    def drift_torch(self, z, u=None):
        """Drift for torch tensors (same contract as :meth:`drift`)."""
        import torch

        return self.drift_fn(z, self._inputs_like(z, u, torch), torch)

    def diffusion_torch(self, z):
        """Diffusion matrix for torch tensors (..., d) -> (..., d, m)."""
        import torch

        return self.diffusion_fn(z, torch)

    # ------------------------------------------------------------------ checks
    def check(self, z, u=None, where="states"):
        """Evaluate drift and diffusion once and check shapes and finiteness.

        Raises
        ------
        SpecError
            Naming drift or diffusion, the shape received against the shape
            needed, or the first state where a value is not finite.
        """
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        n, d = z.shape
        if d != self.dim:
            raise SpecError(f"{self.name}: states have {d} columns, the SDE has {self.dim} variables")
        try:
            with np.errstate(all="ignore"):
                f = np.asarray(self.drift(z, u))
                g = np.asarray(self.diffusion(z))
        except SpecError:
            raise
        except Exception as exc:  # user callables may fail in any way
            raise SpecError(f"{self.name}: evaluating drift/diffusion failed: {exc}") from None
        if f.shape != (n, d):
            raise SpecError(f"{self.name}: drift returned shape {f.shape}, expected {(n, d)}")
        if g.shape != (n, d, self.noise_dim):
            raise SpecError(f"{self.name}: diffusion returned shape {g.shape}, expected {(n, d, self.noise_dim)}")
        for label, arr in (("drift", f), ("diffusion", g)):
            bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                at = ", ".join(f"{v}={x:.4g}" for v, x in zip(self.variables, z[i]))
                raise SpecError(f"{self.name}: {label} is not finite over the {where} (at {at})")

    def domain_box(self):
        """The domain as arrays ``(low, high)`` of shape (d,), or None without a domain.

        Variables the domain leaves out get ``[-1, 1]`` (used only for start
        states and probes, never as a limit).
        """
        if not self.domain:
            return None
        lo = np.array([self.domain.get(v, (-1.0, 1.0))[0] for v in self.variables], dtype=float)
        hi = np.array([self.domain.get(v, (-1.0, 1.0))[1] for v in self.variables], dtype=float)
        return lo, hi

    def domain_grid(self, per_dim=None, max_points=None):
        """A grid over the domain box (probe states in [-1, 1] without a domain).

        At most ``MAX_GRID_ELEMENTS / d**2`` states (the Jacobians on the grid
        stay below :data:`MAX_GRID_ELEMENTS` numbers): the default points per
        dimension (201, 41, 13 for d = 1, 2, 3; 5 above) shrink beyond d = 8,
        and where even two per dimension are too many (d > 16), the states are
        drawn uniformly from the box with a fixed seed. ``max_points`` lowers
        the bound further.
        """
        box = self.domain_box()
        if box is None:
            box = (-np.ones(self.dim), np.ones(self.dim))
        per_dim = per_dim or {1: 201, 2: 41, 3: 13}.get(self.dim, 5)
        most = MAX_GRID_ELEMENTS // self.dim ** 2
        if max_points is not None:
            most = max(1, min(most, int(max_points)))
        if per_dim ** self.dim > most:
            per_dim = int(np.floor(most ** (1.0 / self.dim) + 1e-9))
            if per_dim < 2:
                return np.random.default_rng(0).uniform(box[0], box[1], size=(most, self.dim))
        axes = [np.linspace(lo, hi, per_dim) for lo, hi in zip(*box)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim)

    def jacobian(self, z, u=None, eps=1e-5):
        """Drift Jacobian by central differences, (..., d, d)."""
        z = np.asarray(z, dtype=np.float64)
        cols = []
        for j in range(self.dim):
            h = np.zeros(self.dim)
            h[j] = eps * max(1.0, float(np.abs(z[..., j]).mean()) if z.size else 1.0)
            cols.append((self.drift(z + h, u) - self.drift(z - h, u)) / (2 * h[j]))
        return np.stack(cols, axis=-1)

    def characteristic_rate(self, z, u=None):
        """Fastest drift rate on visited states: 95th percentile of the Jacobian's spectral radius.

        Used to choose integration steps and verification lags.
        """
        J = self.jacobian(np.atleast_2d(z), u)
        rho = np.abs(np.linalg.eigvals(J)).max(axis=-1)
        return float(np.percentile(rho, 95)) if rho.size else 1.0

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_callables(cls, drift, diffusion, variables, *, inputs=(), name="custom",
                       noise_dim=None, domain=None, input_range=None, parameters=None,
                       description=""):
        """Build an SDE from plain numpy functions.

        Parameters
        ----------
        drift : callable
            ``drift(z, u) -> (..., d)`` for numpy ``z`` (..., d), ``u`` (..., k).
            If the SDE has no inputs, ``drift(z)`` is also accepted.
        diffusion : callable or float or array
            ``diffusion(z)`` returning ``(...,)`` (isotropic), ``(..., d)``
            (diagonal) or ``(..., d, m)``; or a constant scalar, (d,) or (d, m) array.
        variables : sequence of str
            State variable names.

        Notes
        -----
        The functions are checked once, on a few states, for shape and
        finiteness (torchsde-style contract check). Torch evaluation goes
        through numpy (no gradients are needed through f or g).
        """
        variables = tuple(variables)
        d = len(variables)
        inputs = tuple(inputs)
        if d < 1:
            raise SpecError("from_callables: at least one variable is needed")
        if inputs and set(input_range or {}) != set(inputs):
            raise SpecError(f"{name}: input_range must give (low, high) for every input {list(inputs)}")
        try:
            import inspect
            takes_u = len(inspect.signature(drift).parameters) >= 2
        except (TypeError, ValueError):
            takes_u = True

        if callable(diffusion):
            g_user = diffusion
            additive = False
        else:
            const = np.asarray(diffusion, dtype=np.float64)
            if const.ndim > 2 or (const.ndim >= 1 and const.shape[0] != d):
                raise SpecError(f"{name}: constant diffusion has shape {const.shape}, expected a scalar, "
                                f"({d},) or ({d}, m)")
            g_user = lambda z, c=const: np.broadcast_to(c, z.shape[:-1] + c.shape)  # noqa: E731
            additive = True
        probe = np.zeros((3, d))
        g0 = np.asarray(g_user(probe))
        if g0.shape == (3,):         # one number per state: isotropic
            kind, m = "scalar", d
        elif g0.shape == (3, d):     # one number per variable: diagonal
            kind, m = "diagonal", d
        elif g0.ndim == 3 and g0.shape[:2] == (3, d):
            kind, m = "full", g0.shape[2]
        else:
            raise SpecError(f"{name}: diffusion returned shape {g0.shape} for 3 states, expected "
                            f"(3,) (isotropic), (3, {d}) (diagonal) or (3, {d}, m)")
        if noise_dim is not None and noise_dim != m:
            raise SpecError(f"{name}: noise_dim={noise_dim} but diffusion has {m} columns")

        def _to_np(z):
            return z.detach().cpu().numpy() if hasattr(z, "detach") else z

        def _back(arr, like, xp):
            if xp is np:
                return arr
            return xp.as_tensor(arr, dtype=like.dtype, device=like.device)

        def f(z, u, xp):
            zn = _to_np(z)
            out = drift(zn, _to_np(u)) if takes_u else drift(zn)
            return _back(np.asarray(out, dtype=np.float64), z, xp)

        def g(z, xp):
            zn = _to_np(z)
            out = np.asarray(g_user(zn), dtype=np.float64)
            if kind == "scalar":
                out = np.broadcast_to(out, zn.shape[:-1])[..., None, None] * np.eye(d)
            elif kind == "diagonal":
                out = np.broadcast_to(out, zn.shape)[..., :, None] * np.eye(d)
            return _back(out, z, xp)

        sde = cls(name=name, variables=variables, drift_fn=f, diffusion_fn=g, noise_dim=m,
                  inputs=inputs, parameters=dict(parameters or {}), domain=domain,
                  input_range=dict(input_range or {}), additive=additive, spec=None,
                  description=description)
        sde.check(np.zeros((3, d)) + np.arange(3)[:, None] * 0.1, where="probe states")
        return sde
