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

A spec comes from files and model files that may be hostile, so the work of
reading one is bounded: a spec file is at most :data:`MAX_SPEC_BYTES`, and a
spec has at most :data:`MAX_VARIABLES` variables, :data:`MAX_INPUTS` inputs,
:data:`MAX_NOISE_COLUMNS` noise columns, :data:`MAX_PARAMETERS` parameters,
names of at most :data:`MAX_NAME_CHARS` characters and at most
:data:`MAX_TOTAL_CHARS` characters of expressions (see
:mod:`ddm_neuro.sde.expressions` for the limits on one expression).
"""
from __future__ import annotations

import copy
import keyword
import math
import os
import re
import stat
import tomllib
from pathlib import Path

import numpy as np
import sympy

from ..errors import SpecError
from .expressions import (CONSTANTS, FUNCTIONS, CompiledVector, bounded, deadline, one_line, parse, short_int,
                          show, substitute)
from .equation import SDE

_KNOWN_KEYS = {"name", "description", "variables", "inputs", "parameters", "drift",
               "diffusion", "input_range", "domain", "tags"}
#: Tags a spec may carry; they select the verification statistics (DESIGN §6).
TAGS = ("chaotic", "multistable", "nonequilibrium")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Largest spec file read (real specs are a few hundred bytes).
MAX_SPEC_BYTES = 2 ** 20
#: Most state variables, input channels, noise columns and parameters a spec may have.
MAX_VARIABLES = 32
MAX_INPUTS = 32
MAX_NOISE_COLUMNS = 64
MAX_PARAMETERS = 1000
#: Longest variable, input or parameter name, and longest spec ``name``.
MAX_NAME_CHARS = 64
MAX_SPEC_NAME_CHARS = 100
#: Most characters of expression text in one spec (drift and diffusion together).
MAX_TOTAL_CHARS = 20000


def load_spec(path, overrides=None):
    """Read a TOML spec file and compile it into an :class:`SDE`.

    Parameters
    ----------
    path : str or Path
        A regular file of UTF-8 TOML text, at most :data:`MAX_SPEC_BYTES`.
    overrides : dict, optional
        Parameter values replacing those in the file.

    Raises
    ------
    SpecError
        If the file cannot be read, is not a regular file, is too large, is not
        UTF-8 or not TOML, or the spec is invalid.
    """
    path = Path(path)
    text = _read_spec_text(path)
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{_where(path)}: not valid TOML: {one_line(exc)}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{_where(path)}: not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError(f"{_where(path)}: not valid TOML: {one_line(exc, 120)}") from None
    # the file name stands in for a missing name, made printable and short enough to be one
    stem = "".join(c if c.isprintable() else "_" for c in path.stem)[:MAX_SPEC_NAME_CHARS]
    spec.setdefault("name", stem or "custom")
    return sde_from_spec(spec, overrides=overrides)


def _where(path):
    """A path for a one-line message (``repr`` when it holds control characters)."""
    s = str(path)
    return s if s.isprintable() else repr(s)


def _read_spec_text(path):
    """The text of a spec file: a regular file, at most :data:`MAX_SPEC_BYTES`, UTF-8.

    Opened without blocking (a FIFO would wait for a writer) and checked with
    ``fstat`` before anything is read, so devices such as /dev/zero are refused.
    """
    where = _where(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SpecError(f"{where}: cannot read spec file: {exc.strerror}") from None
    except ValueError as exc:  # e.g. an embedded NUL
        raise SpecError(f"{where}: cannot read spec file: {one_line(exc)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecError(f"{where}: is a directory, not a spec file")
        if not stat.S_ISREG(mode):
            raise SpecError(f"{where}: is not a regular file (a device, FIFO or socket); give a .toml spec file")
        chunks, size = [], 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, MAX_SPEC_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SpecError(f"{where}: cannot read spec file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{where}: spec file is larger than {MAX_SPEC_BYTES // 2 ** 20} MiB; "
                        "a spec is a short TOML text")
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: spec file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start})") from None
    # as text-mode reading did: universal newlines
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _names(spec, key, required, limit):
    val = spec.get(key, [] if not required else None)
    if val is None:
        raise SpecError(f"spec: missing key '{key}' (a list of names)")
    if isinstance(val, str) or not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise SpecError(f"spec: '{key}' must be a list of names, got {_short(val)}")
    if len(val) > limit:
        raise SpecError(f"spec: '{key}' has {len(val)} names; the limit is {limit}")
    for v in val:
        _check_name(v, f"'{key}' entry")
        if v in FUNCTIONS or v in CONSTANTS:
            raise SpecError(f"spec: '{key}' entry {v!r} clashes with a function or constant name")
    if len(set(val)) != len(val):
        raise SpecError(f"spec: '{key}' has duplicate names: {_short(val)}")
    return tuple(val)


def _check_name(name, what):
    """A name usable in expressions: an ASCII identifier, not a Python keyword, not too long."""
    if len(name) > MAX_NAME_CHARS:
        raise SpecError(f"spec: {what} {show(name, 30)} is longer than {MAX_NAME_CHARS} characters")
    if not _IDENT.match(name):
        raise SpecError(f"spec: {what} {show(name, 30)} is not a valid name")
    if keyword.iskeyword(name):
        raise SpecError(f"spec: {what} {name!r} is a Python keyword, which expressions cannot use as a name")


def _short(value, limit=80):
    """``repr`` of a value, shortened for one-line messages."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deeply nested, or an int too long to print
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finite(x):
    """``float(x)`` for a real number that fits a float64, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        x = float(x)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _ranges(spec, key, names, required_all):
    table = spec.get(key, {})
    if not isinstance(table, dict):
        raise SpecError(f"spec: [{key}] must be a table of name = [low, high]")
    out = {}
    for name, rng in table.items():
        if name not in names:
            raise SpecError(f"spec: [{key}] names {_short(name, 40)}, which is not one of {_short(list(names))}")
        lo, hi = (_finite(x) for x in rng) if isinstance(rng, list) and len(rng) == 2 else (None, None)
        if lo is None or hi is None or lo >= hi:
            raise SpecError(f"spec: {key}.{name} must be [low, high] with low < high, got {_short(rng)}")
        if not math.isfinite(hi - lo):
            raise SpecError(f"spec: {key}.{name} = {_short(rng)} is wider than float64's range")
        out[name] = (lo, hi)
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
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise SpecError(f"spec: unknown key(s) {_short(sorted(unknown, key=str))} (known: {sorted(_KNOWN_KEYS)})")
    try:
        spec = copy.deepcopy(spec)
    except RecursionError:
        raise SpecError("spec: nested too deeply") from None
    name = spec.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise SpecError(f"spec: 'name' must be a non-empty string, got {_short(name)}")
    if len(name) > MAX_SPEC_NAME_CHARS or not name.isprintable():
        raise SpecError(f"spec: 'name' must be at most {MAX_SPEC_NAME_CHARS} printable characters, "
                        f"got {show(name, 40)}")
    if not isinstance(spec.get("description", ""), str):
        raise SpecError(f"spec: 'description' must be a string, got {_short(spec['description'])}")
    variables = _names(spec, "variables", required=True, limit=MAX_VARIABLES)
    if not variables:
        raise SpecError("spec: 'variables' must name at least one variable")
    inputs = _names(spec, "inputs", required=False, limit=MAX_INPUTS)
    params = spec.get("parameters", {})
    if not isinstance(params, dict):
        raise SpecError("spec: [parameters] must be a table of name = number")
    if len(params) > MAX_PARAMETERS:
        raise SpecError(f"spec: [parameters] has {len(params)} entries; the limit is {MAX_PARAMETERS}")
    for key in params:
        if not isinstance(key, str):
            raise SpecError(f"spec: parameter name {_short(key, 40)} is not a valid name")
        _check_name(key, "parameter name")
    for key, val in (overrides or {}).items():
        if key not in params:
            known = ", ".join(sorted(params))
            known = known if len(known) <= 200 else known[:197] + "..."
            raise SpecError(f"{name}: unknown parameter {_short(key, 40)} (known: {known or 'none'})")
        params[key] = val
    spec["parameters"] = params
    for key, val in params.items():
        if key in variables or key in inputs:
            raise SpecError(f"spec: parameter {key!r} has the same name as a variable or input")
        if isinstance(val, int) and not isinstance(val, bool) and _finite(val) is None:
            raise SpecError(f"spec: parameters.{key} = {short_int(val)} is beyond float64's range (about 1.8e308)")
        if _finite(val) is None:
            raise SpecError(f"spec: parameters.{key} must be a finite number, got {_short(val, 40)}")
    tags = spec.get("tags", [])
    if not isinstance(tags, list) or any(not isinstance(t, str) or t not in TAGS for t in tags):
        raise SpecError(f"spec: 'tags' must be a list drawn from {list(TAGS)}, got {_short(tags)}")
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
                        f"(got {len(drift)}; missing {_short(missing)}, unexpected {_short(extra)})")
    f_texts = {f"drift.{v}": drift[v] for v in variables}
    _check_total(f_texts)

    until = deadline()  # one time budget for all of the spec's sympy work
    current = {}

    def compile_entries(texts, symbols):
        def run():
            out = []
            for where, text in texts.items():
                current.update(where=where, text=str(text).strip())
                out.append(substitute(parse(text, symbols, where), subs, where, current["text"]))
            return out
        return bounded(run, lambda: f"{current['where']}: {show(current['text'])} is too hard to simplify; "
                                    "write it in a simpler form", until)

    f_exprs = compile_entries(f_texts, allsym)

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
                            f"(one row per variable), got {_short(mat)}")
        if len(mat) != d:
            raise SpecError(f"spec: diffusion.matrix has {len(mat)} rows, expected {d} (one per variable {list(variables)})")
        m = len(mat[0])
        if m < 1 or any(len(r) != m for r in mat):
            raise SpecError(f"spec: diffusion.matrix rows must all have the same length >= 1, "
                            f"got lengths {_short([len(r) for r in mat])}")
        if m > MAX_NOISE_COLUMNS:
            raise SpecError(f"spec: diffusion.matrix has {m} columns (noise channels); the limit is "
                            f"{MAX_NOISE_COLUMNS}")
        g_texts = {f"diffusion.matrix[{i}][{j}]": mat[i][j] for i in range(d) for j in range(m)}
    else:
        if set(diff) != set(variables):
            missing = [v for v in variables if v not in diff]
            extra = [k for k in diff if k not in variables]
            raise SpecError(f"spec: [diffusion] needs one entry per variable {list(variables)} or a "
                            f"'matrix' (missing {_short(missing)}, unexpected {_short(extra)})")
        m = d
        g_texts = {f"diffusion.{v}": diff[v] for v in variables}
    _check_total({**f_texts, **g_texts})
    g_entries = compile_entries(g_texts, nosym)
    if "matrix" in diff:
        g_exprs = g_entries
    else:
        g_exprs = [g_entries[i] if i == j else sympy.Integer(0) for i in range(d) for j in range(d)]
    g_shape = (d, m)

    input_range = _ranges(spec, "input_range", inputs, required_all=bool(inputs))
    domain = _ranges(spec, "domain", variables, required_all=False) or None

    zs, us = list(zsym.values()), list(usym.values())
    try:
        f_c, g_c = bounded(lambda: (CompiledVector(f_exprs, zs + us, (d,)), CompiledVector(g_exprs, zs, g_shape)),
                           f"{name}: compiling the drift and diffusion takes too long", until)
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - sympy printer limits
        raise SpecError(f"{name}: cannot compile expressions: {one_line(exc)}") from None

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
    entry_names = {"drift": list(f_texts),
                   "diffusion": (list(g_texts) if "matrix" in diff else
                                 [f"diffusion.{variables[i]}" if i == j else None for i in range(d) for j in range(d)])}
    chars = sum(len(str(t)) for t in (*f_texts.values(), *g_texts.values()))
    _check_on_domain(sde, {"drift": f_c, "diffusion": g_c}, entry_names, chars)
    return sde


def _check_total(texts):
    total = sum(len(t) for t in texts.values() if isinstance(t, str))
    if total > MAX_TOTAL_CHARS:
        raise SpecError(f"spec: drift and diffusion hold {total} characters of expressions; the limit is "
                        f"{MAX_TOTAL_CHARS}")


def _check_on_domain(sde, compiled, entry_names, chars=0):
    """Evaluate drift and diffusion on the domain grid, naming the first entry that fails.

    An entry fails where its evaluation raises, where it is not finite or where
    it is complex. No floating-point warning escapes. The grid is evaluated in
    blocks of rows, so a wide diffusion matrix does not need the whole grid's
    values at once. Above d = 3, where the grid has 5**d states, long
    expressions (``chars`` characters in all) are probed on fewer states, so
    that states x characters stays below :data:`_PROBE_WORK`.
    """
    grid = sde.domain_grid()
    if sde.dim > 3 and len(grid) * chars > _PROBE_WORK:
        grid = sde.domain_grid(max_points=max(1000, _PROBE_WORK // chars))
    where = "domain" if sde.domain and len(sde.domain) == sde.dim else \
        "domain (variables without a range probed on [-1, 1])"
    inputs = [np.zeros(0)]
    if sde.n_inputs:
        inputs = [np.array([sde.input_range[k][i] for k in sde.inputs]) for i in (0, 1)]

    def at(row):
        return ", ".join(f"{v}={x:.4g}" for v, x in zip(sde.variables, grid[row]))

    for u in inputs:
        for label in ("drift", "diffusion"):
            entries = entry_names[label]
            rows = max(1, _PROBE_NUMBERS // len(entries))
            for first in range(0, len(grid), rows):
                block = grid[first:first + rows]
                cols = [block[:, i] for i in range(sde.dim)]
                if label == "drift":
                    cols += [np.full(len(block), x) for x in u]
                arr, complex_entries = _probe_block(compiled[label], cols, entries, label,
                                                    f"{sde.name}: {{}} cannot be evaluated over the {where}")
                with np.errstate(all="ignore"):
                    bad = ~np.isfinite(arr)
                if bad.any():
                    row, col = np.argwhere(bad)[0]
                    raise SpecError(f"{sde.name}: {entries[col] or label} is not finite over the "
                                    f"{where} (at {at(first + row)})")
                if np.iscomplexobj(arr):  # a complex constant in the compiled code; its values cannot be cast
                    which = [j for j, v in enumerate(complex_entries) if v] or [0]
                    imaginary = arr.imag[:, which] != 0
                    row = int(np.argmax(imaginary.any(axis=1))) if imaginary.any() else 0
                    raise SpecError(f"{sde.name}: {entries[which[0]] or label} is complex over the "
                                    f"{where} (at {at(first + row)}); drift and diffusion must be real")


#: Numbers evaluated at once when probing the domain (rows x entries).
_PROBE_NUMBERS = 2 ** 22
#: Bound on probe states x characters of expression text (about seconds of numpy work).
_PROBE_WORK = 200_000_000


def _probe_block(compiled, cols, entries, label, message):
    """Values of every entry on one block of rows, (rows, entries), and which entries came out complex."""
    values = []
    for col, (val, exc) in enumerate(compiled.probe(*cols)):
        if exc is None:
            try:
                val = np.asarray(val, dtype=complex if np.iscomplexobj(val) else np.float64)
            except (TypeError, ValueError, OverflowError) as err:
                exc = err
        if exc is not None:
            raise SpecError(message.format(entries[col] or label) + f": {one_line(exc, 150)}")
        values.append(val)
    return np.stack(values, axis=-1).reshape(len(cols[0]), -1), [np.iscomplexobj(v) for v in values]


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
