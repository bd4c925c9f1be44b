"""Safe parsing of SDE expressions and compilation to numpy and torch.

Expressions are checked with Python's :mod:`ast` against a whitelist *before*
sympy sees them, so a spec file (or a model file that embeds one) can never run
code. They are then compiled once, with :func:`sympy.lambdify`, into vectorised
functions for numpy and for torch; nothing is evaluated through sympy per sample.
"""
from __future__ import annotations

import ast
import math

import numpy as np
import sympy

from .errors import SpecError

#: Functions allowed in expressions: name in the spec -> sympy function.
FUNCTIONS = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "atan2": sympy.atan2, "abs": sympy.Abs,
    # an undefined sympy function, so printers emit a plain call (sympy's sign prints as a
    # Python conditional that torch tensors cannot evaluate)
    "sign": sympy.Function("sgn"),
}
_MAX_LITERAL_EXPONENT = 64
#: Named constants allowed in expressions.
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}

_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load,
    ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
)


def _torch_namespace():
    import torch

    def tensor_fn(fn):
        # constant sub-expressions such as sqrt(2) reach torch as Python numbers
        return lambda *a: fn(*(x if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64)
                               for x in a))

    ns = {name: tensor_fn(getattr(torch, name)) for name in
          ("exp", "log", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh",
           "asin", "acos", "atan", "atan2")}
    ns.update({"Abs": tensor_fn(torch.abs), "sgn": tensor_fn(torch.sign), "pi": math.pi, "E": math.e})
    return ns


def parse(text, symbols, where):
    """Parse one expression string into a sympy expression.

    Parameters
    ----------
    text : str or number
        The expression, in Python/sympy syntax (``**`` for powers).
    symbols : dict of str -> sympy.Symbol
        The names the expression may use (variables, inputs, parameters).
    where : str
        Where the expression comes from, e.g. ``"drift.v"``; used in errors.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    SpecError
        On a syntax error, a construct other than arithmetic and whitelisted
        function calls, or an unknown name.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SpecError(f"{where}: expected an expression string, got {type(text).__name__}")
    text = str(text).strip()
    if not text:
        raise SpecError(f"{where}: empty expression")
    if "^" in text:
        raise SpecError(f"{where}: '^' is not a power here; write '**' (in {text!r})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: syntax error in {text!r}: {exc.msg}") from None
    known = sorted(symbols)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(f"{where}: {type(node).__name__} is not allowed in an expression ({text!r})")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)) or \
                isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise SpecError(f"{where}: only numbers may appear as literals ({text!r})")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _check_exponent(node.right, text, where)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", ast.unparse(node.func))
                raise SpecError(f"{where}: unknown function {name!r} in {text!r} "
                                f"(allowed: {', '.join(sorted(FUNCTIONS))})")
            if node.keywords:
                raise SpecError(f"{where}: keyword arguments are not allowed ({text!r})")
        elif isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                continue
            if node.id not in symbols and node.id not in CONSTANTS:
                raise SpecError(f"{where}: unknown symbol {node.id!r} in {text!r} "
                                f"(known: {', '.join(known) or 'none'})")
    namespace = {**FUNCTIONS, **CONSTANTS, **symbols}
    try:
        expr = eval(compile(tree, "<expr>", "eval"), {"__builtins__": {}}, namespace)  # noqa: S307 - AST whitelisted above
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise SpecError(f"{where}: cannot evaluate {text!r}: {exc}") from None
    return sympy.sympify(expr)


def _check_exponent(node, text, where):
    """Refuse exponents that Python would evaluate to astronomically large numbers (``9**9**9``)."""
    if any(isinstance(n, ast.Name) for n in ast.walk(node)):
        return
    inner = node.operand if isinstance(node, ast.UnaryOp) else node
    if not isinstance(inner, ast.Constant) or abs(inner.value) > _MAX_LITERAL_EXPONENT:
        raise SpecError(f"{where}: a constant exponent must be a number with magnitude <= "
                        f"{_MAX_LITERAL_EXPONENT} ({text!r})")


class CompiledVector:
    """A vector (or matrix) of sympy expressions compiled for numpy and torch.

    Calling it with arrays of a common batch shape returns an array of shape
    ``batch + shape``; constant entries are broadcast.
    """

    def __init__(self, exprs, args, shape):
        self.shape = tuple(shape)
        self.exprs = list(exprs)
        self.args = list(args)
        self.constant = not any(e.free_symbols & set(args) for e in self.exprs)
        self._np = sympy.lambdify(self.args, self.exprs, modules=[{"sgn": np.sign}, "numpy"], dummify=True)
        self._torch = sympy.lambdify(self.args, self.exprs, modules=[_torch_namespace()], dummify=True)

    def numpy(self, *columns):
        """Evaluate on numpy arrays of equal shape; returns ``batch + shape``."""
        like = columns[0]
        out = self._np(*columns)
        out = [np.broadcast_to(np.asarray(o, dtype=np.float64), like.shape) for o in out]
        return np.stack(out, axis=-1).reshape(like.shape + self.shape)

    def torch(self, *columns):
        """Evaluate on torch tensors of equal shape; returns ``batch + shape``."""
        import torch

        like = columns[0]
        out = self._torch(*columns)
        out = [o if isinstance(o, torch.Tensor) else torch.full_like(like, float(o)) for o in out]
        out = [o.expand(like.shape) for o in out]
        return torch.stack(out, dim=-1).reshape(like.shape + self.shape)
