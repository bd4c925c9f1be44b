"""SDE specifications: TOML files and dicts compiled into an :class:`SDE`.

The format (see DESIGN §4)::

    name = "fitzhugh_nagumo"
    variables = ["v", "w"]
    inputs = ["I"]                 # optional
    [parameters]
    a = 0.7
    [drift]                        # one expression per variable
    v = "v - v**3/3 - w + I"
    w = "eps*(v + a - b*w)"
    [diffusion]                    # diagonal: one expression per variable
    v = "0.1*sqrt(1 + v**2)"
    w = "0"
    # or: matrix = [["0.1", "0"], ["0.05*v", "0.1"]]   (d x m)
    [input_range]
    I = [0.0, 1.0]
    [domain]                       # optional
    v = [-2.5, 2.5]

Drift and diffusion are Itô. Parameters are substituted before compiling, so
the compiled functions take only states and inputs.
"""
from __future__ import annotations

import copy
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import sympy

from .errors import SpecError
from .expressions import CONSTANTS, FUNCTIONS, CompiledVector, parse
from .sde import SDE

_KNOWN_KEYS = {"name", "description", "variables", "inputs", "parameters", "drift",
               "diffusion", "input_range", "domain", "tags"}
#: Tags a spec may carry; they select the verification statistics (DESIGN §6).
TAGS = ("chaotic", "multistable", "nonequilibrium")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_spec(path, overrides=None):
    """Read a TOML spec file and compile it into an :class:`SDE`.

    Parameters
    ----------
    path : str or Path
    overrides : dict, optional
        Parameter values replacing those in the file.

    Raises
    ------
    SpecError
        If the file cannot be read or parsed, or the spec is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc.strerror}") from None
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    spec.setdefault("name", path.stem)
    return sde_from_spec(spec, overrides=overrides)


def _names(spec, key, required):
    val = spec.get(key, [] if not required else None)
    if val is None:
        raise SpecError(f"spec: missing key '{key}' (a list of names)")
    if isinstance(val, str) or not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise SpecError(f"spec: '{key}' must be a list of names, got {val!r}")
    for v in val:
        if not _IDENT.match(v):
            raise SpecError(f"spec: '{key}' entry {v!r} is not a valid name")
        if v in FUNCTIONS or v in CONSTANTS:
            raise SpecError(f"spec: '{key}' entry {v!r} clashes with a function or constant name")
    if len(set(val)) != len(val):
        raise SpecError(f"spec: '{key}' has duplicate names: {val}")
    return tuple(val)


def _ranges(spec, key, names, required_all):
    table = spec.get(key, {})
    if not isinstance(table, dict):
        raise SpecError(f"spec: [{key}] must be a table of name = [low, high]")
    out = {}
    for name, rng in table.items():
        if name not in names:
            raise SpecError(f"spec: [{key}] names {name!r}, which is not one of {list(names)}")
        ok = isinstance(rng, list) and len(rng) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in rng)
        if not ok or rng[0] >= rng[1]:
            raise SpecError(f"spec: {key}.{name} must be [low, high] with low < high, got {rng!r}")
        out[name] = (float(rng[0]), float(rng[1]))
    if required_all:
        missing = [n for n in names if n not in out]
        if missing:
            raise SpecError(f"spec: [{key}] needs a range for {missing}")
    return out


def sde_from_spec(spec, overrides=None):
    """Compile a spec dict (the parsed TOML) into an :class:`SDE`.

    Parameters
    ----------
    spec : dict
        Keys as in the module docstring.
    overrides : dict, optional
        Parameter values replacing those of the spec (unknown names refused).

    Returns
    -------
    SDE
        With ``sde.spec`` holding the (overridden) spec, so that a model file
        can rebuild it.
    """
    if not isinstance(spec, dict):
        raise SpecError("spec: expected a table at the top level")
    spec = copy.deepcopy(spec)
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise SpecError(f"spec: unknown key(s) {sorted(unknown)} (known: {sorted(_KNOWN_KEYS)})")
    name = spec.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise SpecError(f"spec: 'name' must be a non-empty string, got {name!r}")
    variables = _names(spec, "variables", required=True)
    if not variables:
        raise SpecError("spec: 'variables' must name at least one variable")
    inputs = _names(spec, "inputs", required=False)
    params = spec.get("parameters", {})
    if not isinstance(params, dict):
        raise SpecError("spec: [parameters] must be a table of name = number")
    for key, val in (overrides or {}).items():
        if key not in params:
            raise SpecError(f"{name}: unknown parameter {key!r} (known: {', '.join(sorted(params)) or 'none'})")
        params[key] = val
    spec["parameters"] = params
    for key, val in params.items():
        if not _IDENT.match(key):
            raise SpecError(f"spec: parameter name {key!r} is not a valid name")
        if key in variables or key in inputs:
            raise SpecError(f"spec: parameter {key!r} has the same name as a variable or input")
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise SpecError(f"spec: parameters.{key} must be a finite number, got {val!r}")
    tags = spec.get("tags", [])
    if not isinstance(tags, list) or any(t not in TAGS for t in tags):
        raise SpecError(f"spec: 'tags' must be a list drawn from {list(TAGS)}, got {tags!r}")
    clash = set(variables) & set(inputs)
    if clash:
        raise SpecError(f"spec: {sorted(clash)} named both as variable and input")

    zsym = {v: sympy.Symbol(v, real=True) for v in variables}
    usym = {v: sympy.Symbol(v, real=True) for v in inputs}
    psym = {k: sympy.Symbol(k, real=True) for k in params}
    allsym = {**zsym, **usym, **psym}
    subs = {psym[k]: sympy.Float(v) if isinstance(v, float) else sympy.Integer(v) for k, v in params.items()}

    drift = spec.get("drift")
    if not isinstance(drift, dict):
        raise SpecError("spec: missing [drift] table (one expression per variable)")
    if set(drift) != set(variables):
        missing = [v for v in variables if v not in drift]
        extra = [k for k in drift if k not in variables]
        raise SpecError(f"spec: [drift] needs exactly one entry per variable {list(variables)} "
                        f"(got {len(drift)}; missing {missing}, unexpected {extra})")
    f_exprs = [parse(drift[v], allsym, f"drift.{v}").subs(subs) for v in variables]

    diff = spec.get("diffusion")
    if not isinstance(diff, dict):
        raise SpecError("spec: missing [diffusion] table (one expression per variable, or matrix = [[...]])")
    nosym = {**zsym, **psym}  # diffusion g(z) may not depend on inputs
    d = len(variables)
    if "matrix" in diff:
        if len(diff) != 1:
            raise SpecError("spec: [diffusion] has 'matrix' and other keys; use one form")
        mat = diff["matrix"]
        if not (isinstance(mat, list) and all(isinstance(r, list) for r in mat)):
            raise SpecError(f"spec: diffusion.matrix must be a list of {d} rows, each a list of expressions "
                            f"(one row per variable), got {mat!r}")
        if len(mat) != d:
            raise SpecError(f"spec: diffusion.matrix has {len(mat)} rows, expected {d} (one per variable {list(variables)})")
        m = len(mat[0])
        if m < 1 or any(len(r) != m for r in mat):
            raise SpecError(f"spec: diffusion.matrix rows must all have the same length >= 1, "
                            f"got lengths {[len(r) for r in mat]}")
        g_exprs = [parse(mat[i][j], nosym, f"diffusion.matrix[{i}][{j}]").subs(subs)
                   for i in range(d) for j in range(m)]
        g_shape = (d, m)
    else:
        if set(diff) != set(variables):
            missing = [v for v in variables if v not in diff]
            extra = [k for k in diff if k not in variables]
            raise SpecError(f"spec: [diffusion] needs one entry per variable {list(variables)} or a "
                            f"'matrix' (missing {missing}, unexpected {extra})")
        m = d
        diag = [parse(diff[v], nosym, f"diffusion.{v}").subs(subs) for v in variables]
        g_exprs = [diag[i] if i == j else sympy.Integer(0) for i in range(d) for j in range(d)]
        g_shape = (d, d)

    input_range = _ranges(spec, "input_range", inputs, required_all=bool(inputs))
    domain = _ranges(spec, "domain", variables, required_all=False) or None

    zs, us = list(zsym.values()), list(usym.values())
    try:
        f_c = CompiledVector(f_exprs, zs + us, (d,))
        g_c = CompiledVector(g_exprs, zs, g_shape)
    except Exception as exc:  # sympy printer limits
        raise SpecError(f"{name}: cannot compile expressions: {exc}") from None

    def drift_fn(z, u, xp):
        cols = [z[..., i] for i in range(d)] + [u[..., j] for j in range(len(inputs))]
        return f_c.numpy(*cols) if xp is np else f_c.torch(*cols)

    def diffusion_fn(z, xp):
        cols = [z[..., i] for i in range(d)]
        return g_c.numpy(*cols) if xp is np else g_c.torch(*cols)

    sde = SDE(name=name, variables=variables, drift_fn=drift_fn, diffusion_fn=diffusion_fn,
              noise_dim=m, inputs=inputs, parameters=dict(params), domain=domain,
              input_range=input_range, additive=g_c.constant,
              spec={"kind": "spec", "spec": spec}, description=str(spec.get("description", "")),
              tags=tuple(tags))
    sde.drift_expressions = dict(zip(variables, f_exprs))
    sde.diffusion_expressions = np.array(g_exprs, dtype=object).reshape(g_shape)
    entry_names = {"drift": [f"drift.{v}" for v in variables],
                   "diffusion": ([f"diffusion.matrix[{i}][{j}]" for i in range(d) for j in range(m)]
                                 if "matrix" in diff else
                                 [f"diffusion.{variables[i]}" if i == j else None for i in range(d) for j in range(d)])}
    _check_on_domain(sde, entry_names)
    return sde


def _check_on_domain(sde, entry_names):
    """Check finiteness on the domain grid, naming the first entry that fails."""
    grid = sde.domain_grid()
    where = "domain" if sde.domain and len(sde.domain) == sde.dim else \
        "domain (variables without a range probed on [-1, 1])"
    inputs = [None]
    if sde.n_inputs:
        inputs = [np.array([sde.input_range[k][i] for k in sde.inputs]) for i in (0, 1)]
    with np.errstate(all="ignore"):
        for u in inputs:
            f = sde.drift(grid, u).reshape(len(grid), -1)
            g = sde.diffusion(grid).reshape(len(grid), -1)
            for label, arr in (("drift", f), ("diffusion", g)):
                bad = ~np.isfinite(arr)
                if bad.any():
                    row, col = np.argwhere(bad)[0]
                    at = ", ".join(f"{v}={x:.4g}" for v, x in zip(sde.variables, grid[row]))
                    name = entry_names[label][col] or label
                    raise SpecError(f"{sde.name}: {name} is not finite over the {where} (at {at})")


def to_toml(spec):
    """Render a spec dict as TOML text (for ``ddm-neuro systems --show``)."""
    def val(x):
        if isinstance(x, str):
            return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(x, (list, tuple)):
            return "[" + ", ".join(val(v) for v in x) + "]"
        return repr(float(x)) if isinstance(x, float) else repr(x)

    lines = []
    for key in ("name", "description", "variables", "inputs", "tags"):
        if key in spec and spec[key] not in ("", [], ()):
            lines.append(f"{key} = {val(spec[key])}")
    for table in ("parameters", "drift", "diffusion", "input_range", "domain"):
        if spec.get(table):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {val(v)}" for k, v in spec[table].items()]
    return "\n".join(lines) + "\n"
