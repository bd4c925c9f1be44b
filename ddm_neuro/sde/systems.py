"""Built-in SDEs (DESIGN §7), each a spec (see :mod:`ddm_neuro.sde.spec`).

Every built-in is written in the same TOML-equivalent form a user would write,
so ``ddm-neuro systems --show NAME`` prints a file that can be edited and fitted.
Default noise levels are in each spec's ``parameters`` and listed below.

=====================  ==============================================  ===================
name                   drift                                           default noise
=====================  ==============================================  ===================
ou                     -k z (isotropic, 2-D)                           sigma = 1
ou_rot                 -(k I - w J) z, J the 90° rotation              sigma = 1
double_well            z - z^3                                         s * sqrt(1 + c z^2), s = 0.5, c = 0
van_der_pol            x' = y, y' = mu (1 - x^2) y - x                 sigma = 0.3 (both)
stuart_landau          Hopf normal form, mu = 1, omega = 2             sigma = 0.2
lorenz                 sigma = 10, rho = 28, beta = 8/3                noise = 1.0 per dim
switch                 m - m^3 + c u (input-driven switch)             sigma = 0.25
ring                   ring of K = 3 wells, solenoidal drive omega     sigma = 0.3
=====================  ==============================================  ===================
"""
from __future__ import annotations

import copy

from ..errors import SpecError
from .spec import sde_from_spec

SPECS = {
    "ou": {
        "description": "Ornstein-Uhlenbeck, isotropic (equilibrium)",
        "variables": ["x", "y"],
        "parameters": {"k": 1.0, "sigma": 1.0},
        "drift": {"x": "-k*x", "y": "-k*y"},
        "diffusion": {"x": "sigma", "y": "sigma"},
        "domain": {"x": [-3.0, 3.0], "y": [-3.0, 3.0]},
    },
    "ou_rot": {
        "description": "Ornstein-Uhlenbeck with rotation A = kI - wJ (nonequilibrium; entropy production 2w^2/k)",
        "tags": ["nonequilibrium"],
        "variables": ["x", "y"],
        "parameters": {"k": 1.0, "w": 2.0, "sigma": 1.0},
        "drift": {"x": "-k*x - w*y", "y": "-k*y + w*x"},
        "diffusion": {"x": "sigma", "y": "sigma"},
        "domain": {"x": [-3.0, 3.0], "y": [-3.0, 3.0]},
    },
    "double_well": {
        "description": "Double well z - z^3; diffusion s*sqrt(1 + c z^2) (c = 0: additive)",
        "tags": ["multistable"],
        "variables": ["z"],
        "parameters": {"s": 0.5, "c": 0.0},
        "drift": {"z": "z - z**3"},
        "diffusion": {"z": "s*sqrt(1 + c*z**2)"},
        "domain": {"z": [-2.0, 2.0]},
    },
    "van_der_pol": {
        "description": "Van der Pol oscillator (limit cycle)",
        "tags": ["nonequilibrium"],
        "variables": ["x", "y"],
        "parameters": {"mu": 1.0, "sigma": 0.3},
        "drift": {"x": "y", "y": "mu*(1 - x**2)*y - x"},
        "diffusion": {"x": "sigma", "y": "sigma"},
        "domain": {"x": [-3.0, 3.0], "y": [-4.0, 4.0]},
    },
    "stuart_landau": {
        "description": "Stuart-Landau / Hopf normal form (limit cycle of radius sqrt(mu))",
        "tags": ["nonequilibrium"],
        "variables": ["x", "y"],
        "parameters": {"mu": 1.0, "omega": 2.0, "beta": 0.0, "sigma": 0.2},
        "drift": {"x": "mu*x - omega*y - (x**2 + y**2)*(x - beta*y)",
                  "y": "mu*y + omega*x - (x**2 + y**2)*(y + beta*x)"},
        "diffusion": {"x": "sigma", "y": "sigma"},
        "domain": {"x": [-1.8, 1.8], "y": [-1.8, 1.8]},
    },
    "lorenz": {
        "description": "Lorenz attractor (chaotic), additive noise",
        "tags": ["chaotic", "nonequilibrium"],
        "variables": ["x", "y", "z"],
        "parameters": {"sigma": 10.0, "rho": 28.0, "beta": 2.6666666666666665, "noise": 1.0},
        "drift": {"x": "sigma*(y - x)", "y": "x*(rho - z) - y", "z": "x*y - beta*z"},
        "diffusion": {"x": "noise", "y": "noise", "z": "noise"},
        "domain": {"x": [-25.0, 25.0], "y": [-30.0, 30.0], "z": [0.0, 55.0]},
    },
    "switch": {
        "description": "Associative memory: two attractors m = +-1, the input u pushes between them",
        "tags": ["multistable"],
        "variables": ["m"],
        "inputs": ["u"],
        "parameters": {"c": 1.0, "sigma": 0.25},
        "drift": {"m": "m - m**3 + c*u"},
        "diffusion": {"m": "sigma"},
        "input_range": {"u": [-1.0, 1.0]},
        "domain": {"m": [-2.0, 2.0]},
    },
    "ring": {
        "description": "Episodic memory: K wells on a ring, visited in order by a solenoidal drive omega < a",
        "tags": ["multistable", "nonequilibrium"],
        "variables": ["x", "y"],
        "parameters": {"K": 3.0, "a": 2.0, "omega": 1.5, "lam": 2.0, "sigma": 0.3},
        "drift": {"x": "lam*(1 - x**2 - y**2)*x - (omega - a*sin(K*atan2(y, x)))*y",
                  "y": "lam*(1 - x**2 - y**2)*y + (omega - a*sin(K*atan2(y, x)))*x"},
        "diffusion": {"x": "sigma", "y": "sigma"},
        "domain": {"x": [-1.8, 1.8], "y": [-1.8, 1.8]},
    },
}


def list_systems():
    """Names and one-line descriptions of the built-in systems."""
    return {name: spec["description"] for name, spec in SPECS.items()}


def builtin_spec(name):
    """A copy of a built-in's spec dict (with its ``name`` set)."""
    if name not in SPECS:
        raise SpecError(f"unknown system {name!r} (built-in: {', '.join(SPECS)}; or give a .toml spec file)")
    spec = copy.deepcopy(SPECS[name])
    spec["name"] = name
    return spec


def get_system(name, **overrides):
    """Build a built-in :class:`~ddm_neuro.sde.equation.SDE`, optionally overriding parameters.

    Examples
    --------
    >>> sde = get_system("lorenz", noise=0.5)
    >>> sde.dim
    3
    """
    return sde_from_spec(builtin_spec(name), overrides=overrides)
