"""Safe parsing of SDE expressions and compilation to numpy and torch.

Expressions are checked with Python's :mod:`ast` against a whitelist *before*
sympy sees them, so a spec file (or a model file that embeds one) can never run
code. They are then compiled once, with :func:`sympy.lambdify`, into vectorised
functions for numpy and for torch; nothing is evaluated through sympy per sample.

The work of reading one expression is bounded, so that hostile text cannot
hang the caller: an expression is at most :data:`MAX_EXPRESSION_CHARS`
characters and :data:`MAX_NESTING` levels deep; a literal exponent is at most
64 in magnitude; an exponent that is a number only once evaluated (``v**(2*k)``
with a parameter ``k``) is at most :data:`MAX_EXPONENT`; and every constant
must fit a float64 (magnitude at most about 1.8e308) and be real. Powers are
checked *before* they are computed, also when parameters are substituted
(:func:`substitute`), so ``2**(v - v + 10**10)`` is refused instead of being
expanded into ten billion bits; constants such as ``asin(64)`` or
``exp(10**64)``, on which sympy's simplification can loop, are refused as soon
as they appear, and so is a division by zero. What remains of sympy's
automatic simplification is bounded in time (:data:`SYMPY_SECONDS`, applied by
:func:`bounded`).
"""
from __future__ import annotations

import ast
import cmath
import contextlib
import ctypes
import math
import operator
import sys
import threading
import time

import numpy as np
import sympy
from sympy.core.sorting import _nodes, default_sort_key, ordered

from ..errors import SpecError

#: Functions allowed in expressions: name in the spec -> sympy function.
FUNCTIONS = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "atan2": sympy.atan2, "abs": sympy.Abs,
    # an undefined sympy function, so printers emit a plain call (sympy's sign prints as a
    # Python conditional that torch tensors cannot evaluate); real, or sympy would treat it as complex
    # and expand powers of it into real and imaginary parts
    "sign": sympy.Function("sgn", real=True),
}
#: How many arguments each function takes (log's optional second one is the base).
_ARITY = {"atan2": (2,), "log": (1, 2)}
#: Named constants allowed in expressions.
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}

#: Longest expression text accepted (real drift and diffusion terms are < 200 characters).
MAX_EXPRESSION_CHARS = 2000
#: Deepest nesting of parentheses, calls, powers and signs (a chain ``a + b - c`` is one level).
MAX_NESTING = 100
#: Largest magnitude of an exponent that is a number once evaluated, e.g. ``v**k`` with a parameter k.
MAX_EXPONENT = 1000
_MAX_LITERAL_EXPONENT = 64
#: Largest magnitude of an exact constant (and of a constant's numerator and denominator): float64's.
MAX_CONSTANT = sys.float_info.max
_MAX_INT = int(MAX_CONSTANT)
#: Seconds sympy may spend on one expression (or on compiling a spec) before it is refused. Some short
#: expressions send sympy's automatic simplification into a near-endless expansion, e.g.
#: ``abs(tanh((log(v) + log(w) + 1)**64))``: no structural limit catches them all, so time does.
SYMPY_SECONDS = 10.0
_INT64 = 2 ** 63 - 1

_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load,
    ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
)
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_CHAINS = {ast.Add: "add", ast.Sub: "add", ast.Mult: "mul", ast.Div: "mul"}
_AFTER_SUBS = " (after substituting parameters)"


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
    # functions sympy may introduce while simplifying (e.g. re(f(x)) for a function not known to be real)
    ns.update({"re": tensor_fn(torch.real), "im": tensor_fn(torch.zeros_like), "sign": tensor_fn(torch.sign),
               "arg": tensor_fn(torch.angle), "conjugate": tensor_fn(lambda x: x)})
    return ns


class _Overtime(BaseException):
    """Raised inside sympy when :data:`SYMPY_SECONDS` have passed (a BaseException: sympy's own
    ``except Exception`` clauses must not swallow it)."""


@contextlib.contextmanager
def _raise_after(seconds):
    """Raise :class:`_Overtime` in this thread if the block runs longer than ``seconds``.

    A timer thread sets an asynchronous exception in this thread (CPython's
    ``PyThreadState_SetAsyncExc``), which Python raises at the next bytecode:
    no cost while the block is fast. Where the API is missing, there is no limit.
    """
    set_async = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)
    if set_async is None:
        yield
        return
    thread = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"active": True, "fired": False}

    def fire():
        with lock:
            if state["active"]:
                state["fired"] = True
                set_async(thread, ctypes.py_object(_Overtime))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["active"] = False
            if state["fired"]:
                set_async(thread, None)  # clear it, should it not have been raised yet


def deadline():
    """The time (``time.monotonic()``) by which sympy work started now must end: :data:`SYMPY_SECONDS` away."""
    return time.monotonic() + SYMPY_SECONDS


def bounded(fn, message, until=None):
    """``fn()``, refused with one line if it is still running at the time ``until``.

    Parameters
    ----------
    fn : callable
        The sympy work, without arguments.
    message : str or callable
        The error's text (or a function returning it, called on failure);
        `` (sympy ran longer than N s)`` is appended.
    until : float, optional
        A :func:`time.monotonic` time (default :func:`deadline`), shared by
        the steps of one task so that their total is bounded.

    Raises
    ------
    SpecError
        If ``fn`` runs past ``until``.
    """
    until = deadline() if until is None else until
    try:
        with _raise_after(max(until - time.monotonic(), 1e-3)):
            return fn()
    except _Overtime:
        text = message() if callable(message) else message
        raise SpecError(f"{text} (sympy ran longer than {SYMPY_SECONDS:g} s)") from None


def one_line(exc, limit=200):
    """An exception's message as one short line (sympy's messages may span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(text, limit=60):
    """``repr`` of an expression text, shortened for one-line messages."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit - 10]!r}... ({len(text)} characters)"


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
        function calls, an unknown name, text longer than
        :data:`MAX_EXPRESSION_CHARS` or nested deeper than :data:`MAX_NESTING`,
        an exponent beyond its limit, a constant beyond float64's range, or a
        value that is complex, infinite or undefined.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SpecError(f"{where}: expected an expression string, got {type(text).__name__}")
    if isinstance(text, float) and not math.isfinite(text):
        raise SpecError(f"{where}: expected a finite number, got {text!r}")
    if isinstance(text, int) and abs(text) > _MAX_INT:
        raise SpecError(f"{where}: the number {short_int(text)} is beyond float64's range (about 1.8e308)")
    text = str(text).strip()
    if not text:
        raise SpecError(f"{where}: empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SpecError(f"{where}: expression {show(text)} is longer than the limit of "
                        f"{MAX_EXPRESSION_CHARS} characters")
    if "^" in text:
        raise SpecError(f"{where}: '^' is not a power here; write '**' (in {show(text)})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: syntax error in {show(text)}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{where}: expression {show(text)} is nested too deeply to parse "
                        f"(limit {MAX_NESTING} levels)") from None
    _check_tree(tree, text, symbols, where)
    depth = _nesting(tree)
    if depth > MAX_NESTING:
        raise SpecError(f"{where}: expression {show(text)} nests {depth} levels deep (parentheses, calls, "
                        f"powers, signs); the limit is {MAX_NESTING}")
    namespace = {**FUNCTIONS, **CONSTANTS, **symbols}
    expr = sympy.sympify(_evaluate(tree, namespace, text, where))
    _check_value(expr, text, where, "")
    return expr


def _check_tree(tree, text, symbols, where):
    """The whitelist: arithmetic, numbers, known names and calls of known functions."""
    known = sorted(symbols)
    known = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(f"{where}: {type(node).__name__} is not allowed in an expression ({show(text)})")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)) or \
                isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise SpecError(f"{where}: only numbers may appear as literals ({show(text)})")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _check_exponent(node.right, text, where)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", None) or ast.unparse(node.func)
                raise SpecError(f"{where}: unknown function {name[:40]!r} in {show(text)} "
                                f"(allowed: {', '.join(sorted(FUNCTIONS))})")
            if node.func.id in symbols:
                raise SpecError(f"{where}: {node.func.id!r} is a parameter or variable here, not a function "
                                f"({show(text)})")
            if node.keywords:
                raise SpecError(f"{where}: keyword arguments are not allowed ({show(text)})")
            arity = _ARITY.get(node.func.id, (1,))
            if len(node.args) not in arity:
                want = " or ".join(map(str, arity))
                raise SpecError(f"{where}: {node.func.id}() takes {want} argument{'s' if arity != (1,) else ''}, "
                                f"got {len(node.args)} in {show(text)}")
        elif isinstance(node, ast.Name):
            if node.id in FUNCTIONS and node.id not in symbols:
                if id(node) not in called:
                    raise SpecError(f"{where}: function {node.id!r} is used without arguments in {show(text)}; "
                                    f"call it, e.g. {node.id}(x)")
                continue
            if node.id not in symbols and node.id not in CONSTANTS:
                raise SpecError(f"{where}: unknown symbol {node.id[:40]!r} in {show(text)} "
                                f"(known: {known or 'none'})")


def _check_exponent(node, text, where):
    """Refuse exponents that Python would evaluate to astronomically large numbers (``9**9**9``)."""
    if any(isinstance(n, ast.Name) for n in ast.walk(node)):
        return  # checked once its value is known (_check_power)
    inner = node.operand if isinstance(node, ast.UnaryOp) else node
    if isinstance(inner, ast.Constant) and (isinstance(inner.value, bool) or
                                            not isinstance(inner.value, (int, float))):
        raise SpecError(f"{where}: only numbers may appear as literals ({show(text)})")
    if not isinstance(inner, ast.Constant) or abs(inner.value) > _MAX_LITERAL_EXPONENT:
        raise SpecError(f"{where}: a constant exponent must be a number with magnitude <= "
                        f"{_MAX_LITERAL_EXPONENT} ({show(text)})")


def _nesting(tree):
    """Nesting depth of an expression tree; a chain of + and - (or * and /) counts as one level."""
    deepest = 0
    stack = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        group = _CHAINS.get(type(node.op)) if isinstance(node, ast.BinOp) else None
        children = ([node.left, node.right] if isinstance(node, ast.BinOp) else
                    [node.operand] if isinstance(node, ast.UnaryOp) else
                    node.args if isinstance(node, ast.Call) else [])
        for child in children:
            same = group is not None and isinstance(child, ast.BinOp) and _CHAINS.get(type(child.op)) == group
            stack.append((child, depth if same else depth + 1))
    return deepest


def _evaluate(tree, namespace, text, where):
    """Evaluate a whitelisted tree bottom-up with Python's operators, checking each power first.

    The result equals ``eval`` of the text in ``namespace``; the explicit stack
    keeps deep (but allowed) chains such as long sums off Python's recursion.
    """
    values = []
    stack = [(tree.body, False)]
    while stack:
        node, ready = stack.pop()
        if isinstance(node, ast.Constant):
            values.append(_checked(node.value, text, where, ""))
            continue
        if isinstance(node, ast.Name):
            values.append(namespace[node.id])
            continue
        children = ([node.left, node.right] if isinstance(node, ast.BinOp) else
                    [node.operand] if isinstance(node, ast.UnaryOp) else node.args)
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children))
            continue
        args = values[len(values) - len(children):]
        del values[len(values) - len(children):]
        try:
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
                _check_power(args[0], args[1], text, where, "")
                out = _check_real_constant(args[0] ** args[1], text, where, "")
            elif isinstance(node, ast.BinOp):
                if isinstance(node.op, ast.Div) and _is_zero(args[1]):
                    # refused before sympy builds x * zoo, whose simplification can run for minutes
                    raise SpecError(f"{where}: {show(text)} divides by zero")
                out = _BINARY[type(node.op)](*args)
            elif isinstance(node, ast.UnaryOp):
                out = _UNARY[type(node.op)](*args)
            else:
                out = _call(namespace[node.func.id], args, text, where, "")
        except SpecError:
            raise
        except OverflowError:
            raise SpecError(f"{where}: {show(text)} gives a number beyond float64's range (about 1.8e308)") from None
        except Exception as exc:  # noqa: BLE001 - sympy and Python arithmetic fail in many ways
            raise SpecError(f"{where}: cannot evaluate {show(text)}: {one_line(exc)}") from None
        # sums and products of checked numbers stay small; their bound is checked at the next power or call
        cheap = isinstance(node, (ast.BinOp, ast.UnaryOp)) and not isinstance(getattr(node, "op", None), ast.Pow) \
            and isinstance(out, sympy.Basic) and not out.is_Number and out is not sympy.zoo
        values.append(out if cheap else _checked(out, text, where, ""))
    return values[0]


def _check_power(base, exponent, text, where, after):
    """Refuse ``base ** exponent`` before computing it when the exponent or a constant is too large."""
    _checked(base, text, where, after)
    _checked(exponent, text, where, after)
    e = _real_number(exponent)
    if _is_zero(base) and e is not None and e < 0:
        raise SpecError(f"{where}: {show(text)}{after} divides by zero (0 to a negative power)")
    if e is not None and math.isfinite(e) and abs(e) > MAX_EXPONENT:
        raise SpecError(f"{where}: the exponent {_short_number(exponent)} in {show(text)}{after} is beyond the "
                        f"limit of {MAX_EXPONENT} in magnitude")
    b = _real_number(base)
    if e is not None and b is not None and b != 0 and math.isfinite(e) and e * math.log10(abs(b)) > 308.25:
        raise SpecError(f"{where}: {show(text)}{after} has a power of about 10^{e * math.log10(abs(b)):.0f}, "
                        f"beyond float64's range (about 1.8e308)")


def _call(func, args, text, where, after):
    """``func(*args)`` with checked arguments; sympy's own failures become one-line errors."""
    for a in args:
        _checked(a, text, where, after)
    try:
        out = func(*args)
    except TypeError:
        raise  # a wrong number of arguments: reported by the caller
    except Exception as exc:  # noqa: BLE001 - e.g. mpmath on exp(1e64)
        shown = ", ".join(_short_expr(a) for a in args)
        raise SpecError(f"{where}: {show(text)}{after}: {getattr(func, '__name__', func)}({shown}) cannot be "
                        f"evaluated ({type(exc).__name__})") from None
    return _check_real_constant(_checked(out, text, where, after), text, where, after)


def _check_real_constant(x, text, where, after):
    """Refuse a constant that is clearly not real (``asin(64)``) or beyond float64 (``exp(10**64)``).

    sympy keeps such constants unevaluated, and its assumption system and
    numerical evaluation can loop on them (``tanh(asin(64)**v)`` and
    ``tan(exp(10**64))`` never return), so they are approximated here in
    floating point as soon as they appear; a relative imaginary part below
    1e-6 passes (rounding), to be judged later.
    """
    if not isinstance(x, sympy.Basic) or x.is_Number or x.free_symbols:
        return x
    value = _approximate(x)
    if value is not None and not cmath.isfinite(value):
        raise SpecError(f"{where}: {show(text)}{after} has the constant {_short_expr(x)}, beyond float64's range "
                        "(about 1.8e308)")
    if value is not None and abs(value.imag) > 1e-6 * max(1.0, abs(value)):
        raise SpecError(f"{where}: {show(text)}{after} is complex ({_short_expr(x)} is about "
                        f"{value.real:.4g}{value.imag:+.4g}j); drift and diffusion must be real")
    return x


_APPROX = {
    sympy.exp: cmath.exp, sympy.log: cmath.log, sympy.sin: cmath.sin, sympy.cos: cmath.cos,
    sympy.tan: cmath.tan, sympy.sinh: cmath.sinh, sympy.cosh: cmath.cosh, sympy.tanh: cmath.tanh,
    sympy.asin: cmath.asin, sympy.acos: cmath.acos, sympy.atan: cmath.atan, sympy.Abs: abs,
}


def _approximate(x):
    """A complex float for a constant sympy expression: infinite where it overflows, None where unknown."""
    try:
        if x.is_Number:
            return complex(float(x)) if x.is_extended_real and x.is_finite else None
        if x is sympy.pi or x is sympy.E or x is sympy.I:
            return {sympy.pi: complex(math.pi), sympy.E: complex(math.e), sympy.I: 1j}[x]
        args = [_approximate(a) for a in x.args]
        if any(a is None for a in args):
            return None
        if not all(cmath.isfinite(a) for a in args):
            return complex(math.inf)
        if x.is_Add:
            return complex(sum(args))
        if x.is_Mul:
            return complex(math.prod(args))
        if x.is_Pow:
            if args[0] == 0:
                return None
            return complex(args[0] ** args[1])
        if x.func is sympy.log and len(args) == 2:
            return cmath.log(args[0]) / cmath.log(args[1])
        if x.func is sympy.atan2 and not any(a.imag for a in args):
            return complex(math.atan2(args[0].real, args[1].real))
        if x.func is FUNCTIONS["sign"] and not args[0].imag:
            return complex(float(np.sign(args[0].real)))
        fn = _APPROX.get(x.func)
        return complex(fn(*args)) if fn is not None else None
    except OverflowError:
        return complex(math.inf)
    except (ArithmeticError, ValueError, TypeError):
        return None


def _is_zero(x):
    """True for a number (Python or sympy) equal to zero."""
    return (isinstance(x, (int, float)) and not isinstance(x, bool) or isinstance(x, sympy.Number)) and x == 0


def _real_number(x):
    """A float for a real number (Python or sympy), else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return float(x) if abs(x) <= _MAX_INT else math.inf
    if isinstance(x, float):
        return x
    if isinstance(x, sympy.Number) and x.is_extended_real:
        try:
            return float(x)
        except (OverflowError, TypeError, ValueError):
            return None
    return None


def _magnitude(x):
    """``10^k`` for a sympy Float of any size (format() would overflow Python's Decimal)."""
    sign, man, exp, bits = x._mpf_
    k = (exp + bits) * math.log10(2) if man else 0.0
    k_text = f"{k:.0f}" if abs(k) < 1e15 else f"{k:.3g}"
    return f"{'-' if sign else ''}10^{k_text}"


def short_int(n):
    """An integer for a one-line message: its digits, or ``10^k-ish (n digits)`` when long."""
    digits = len(str(abs(n))) if n.bit_length() < 10000 else int(n.bit_length() * math.log10(2)) + 1
    return f"{'-' if n < 0 else ''}10^{digits - 1}-ish ({digits} digits)" if digits > 20 else str(n)


def _short_number(x):
    if isinstance(x, (int, sympy.Integer)):
        return short_int(int(x))
    return f"{float(x):.6g}" if _real_number(x) is not None else str(x)[:40]


def _checked(x, text, where, after):
    """``x`` itself, after checking every number in it fits a float64 (exactly: numerator, denominator).

    An infinite or undefined result (``zoo``, ``nan``, ``oo``) is refused at once: sympy's simplification
    of expressions holding one can run for minutes.
    """
    if isinstance(x, bool):
        return x
    if x is sympy.zoo or x is sympy.nan:
        raise SpecError(f"{where}: {show(text)}{after} is undefined (sympy gives {x}: a division by zero or a pole)")
    if x is sympy.oo or x is sympy.S.NegativeInfinity:
        raise SpecError(f"{where}: {show(text)}{after} is infinite (sympy gives {x})")
    if isinstance(x, complex):
        raise SpecError(f"{where}: {show(text)}{after} is complex; drift and diffusion must be real")
    if isinstance(x, int):
        if abs(x) > _MAX_INT:
            raise SpecError(f"{where}: {show(text)}{after} has the constant {short_int(x)}, beyond float64's "
                            "range (about 1.8e308)")
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise SpecError(f"{where}: {show(text)}{after} gives {x!r}, not a finite number")
        return x
    if isinstance(x, sympy.Basic):
        for n in x.atoms(sympy.Rational):
            if abs(n.p) > _MAX_INT or n.q > _MAX_INT:
                what = short_int(n.p) if abs(n.p) > _MAX_INT else f"1/{short_int(n.q)}"
                raise SpecError(f"{where}: {show(text)}{after} has the exact constant {what}, beyond float64's "
                                "range (about 1.8e308)")
        for n in x.atoms(sympy.Float):
            if not (abs(n) <= MAX_CONSTANT):
                raise SpecError(f"{where}: {show(text)}{after} has a constant of about {_magnitude(n)}, beyond "
                                "float64's range (about 1.8e308)")
    return x


def _check_value(expr, text, where, after):
    """Refuse a value that is not a real expression, or one with a complex, infinite or undefined constant."""
    if not isinstance(expr, sympy.Expr):
        raise SpecError(f"{where}: {show(text)}{after} is not an arithmetic expression "
                        f"(got {type(expr).__name__})")
    _checked(expr, text, where, after)
    if expr.has(sympy.zoo, sympy.nan) or expr.atoms(sympy.AccumBounds):
        raise SpecError(f"{where}: {show(text)}{after} is undefined (sympy gives {_short_expr(expr)}: "
                        "a division by zero or a pole)")
    if expr.has(sympy.oo, -sympy.oo):
        raise SpecError(f"{where}: {show(text)}{after} is infinite (sympy gives {_short_expr(expr)})")
    if expr.has(sympy.I):
        raise SpecError(f"{where}: {show(text)}{after} is complex (sympy gives {_short_expr(expr)}); "
                        "drift and diffusion must be real")


def _short_expr(expr):
    s = str(expr)
    return s if len(s) <= 40 else s[:37] + "..."


def substitute(expr, values, where, text=None):
    """Substitute numbers for symbols, refusing powers and constants that would grow too large.

    The result is ``expr.subs(values)``: the symbols are replaced one at a time,
    in the order sympy's ``subs`` uses, and every node holding one is rebuilt
    as sympy rebuilds it. Only, each power's base and exponent (and each
    function's arguments) are checked *before* sympy computes them, so a
    parameter ``k = 1e10`` in ``2**k`` is refused instead of hanging.

    Parameters
    ----------
    expr : sympy.Expr
        As returned by :func:`parse`.
    values : dict of sympy.Symbol -> sympy.Number
        The parameter values.
    where : str
        Where the expression comes from, e.g. ``"drift.v"``; used in errors.
    text : str, optional
        The expression's text, quoted in errors (default: ``str(expr)``).

    Returns
    -------
    sympy.Expr

    Raises
    ------
    SpecError
        If a power's exponent exceeds :data:`MAX_EXPONENT`, a constant exceeds
        float64's range, or the result is complex, infinite or undefined.
    """
    text = str(expr) if text is None else text
    present = expr.free_symbols & set(values)
    order = list(ordered(present, default=False, keys=(lambda x: -_nodes(x), default_sort_key)))

    def rebuild(e, old, new):
        if e == old:
            return new
        if not e.args:
            return e
        args = [rebuild(a, old, new) for a in e.args]
        if all(a is b for a, b in zip(args, e.args)):
            return e
        try:
            if isinstance(e, sympy.Pow):
                _check_power(args[0], args[1], text, where, _AFTER_SUBS)
                return _check_real_constant(_checked(e.func(*args), text, where, _AFTER_SUBS), text, where,
                                            _AFTER_SUBS)
            if isinstance(e, sympy.Function):
                return _call(e.func, args, text, where, _AFTER_SUBS)
            return e.func(*args)
        except SpecError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SpecError(f"{where}: cannot evaluate {show(text)}{_AFTER_SUBS}: {one_line(exc)}") from None

    out = expr
    for old in order:
        out = rebuild(out, old, values[old])
    _check_value(out, text, where, _AFTER_SUBS if order else "")
    return out


def _float_sign(x):
    """numpy's sign in float64: ``np.sign(0)`` is an int64, and ``(sign(0) + 10**12)**2`` would overflow."""
    return np.sign(np.asarray(x, dtype=np.float64))


_NUMPY_NAMES = {"sgn": _float_sign}


def _float_big_integers(expr):
    """Integers beyond int64 as floats: numpy ufuncs and torch refuse such Python ints."""
    big = {n: sympy.Float(float(n), 17) for n in expr.atoms(sympy.Integer) if abs(n) > _INT64}
    return expr.xreplace(big) if big else expr


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
        # real stand-ins for the arguments, so no printed name can clash with a module's; lambdify's own
        # dummies would be complex, and re-evaluating e.g. abs(tanh((v + 1)**1000)) with them expands the power
        # named and numbered as lambdify names its own (Dummy_<n>, n in descending order of the names), so that
        # terms and factors print in the same order as with lambdify's dummies
        rank = {arg: i for i, arg in enumerate(reversed(list(ordered(self.args))))}
        self._dummies = [sympy.Symbol(f"Dummy_{rank[arg]:03d}", real=True) for arg in self.args]
        swap = dict(zip(self.args, self._dummies))
        self._printable = [_float_big_integers(e).xreplace(swap) for e in self.exprs]
        self._np = sympy.lambdify(self._dummies, self._printable, modules=[_NUMPY_NAMES, "numpy"], dummify=False)
        self._torch = sympy.lambdify(self._dummies, self._printable, modules=[_torch_namespace()], dummify=False)

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

    def probe(self, *columns):
        """Evaluate every entry on numpy arrays, as computed (complex kept), for checks.

        Returns
        -------
        list of (ndarray or None, Exception or None)
            Per entry: its values broadcast to the columns' shape, or the
            error its evaluation raised. Floating-point warnings are silenced.
        """
        like = columns[0]
        with np.errstate(all="ignore"):
            try:
                raw = self._np(*columns)
                return [(np.broadcast_to(np.asarray(o), like.shape), None) for o in raw]
            except Exception:  # noqa: BLE001 - find the entry that fails, one at a time
                pass
            out = []
            for e in self._printable:
                try:
                    f = sympy.lambdify(self._dummies, e, modules=[_NUMPY_NAMES, "numpy"], dummify=False)
                    out.append((np.broadcast_to(np.asarray(f(*columns)), like.shape), None))
                except Exception as exc:  # noqa: BLE001
                    out.append((None, exc))
            return out
