"""Safe parsing of estimator expressions in r.

A string is parsed by Python's ``ast`` and walked against a whitelist: numbers, the
symbol ``r``, ``+ - * / **``, and calls of log, exp, sqrt, Abs, Min, Max.  The sympy
expression is built node by node, so no user string reaches eval, exec, sympify or
parse_expr.  Constant sub-expressions are bounded so that sympy never builds a huge
integer.
"""
from __future__ import annotations

import ast
import math
import re

import sympy as sp

from verify.errors import UsageError

__all__ = ["RATIO", "parse_expression", "parse_with_domain", "as_expression", "as_expression_with_domain", "MAX_LENGTH"]

RATIO = sp.Symbol("r", positive=True)
MAX_LENGTH = 2000
MAX_NODES = 400
MAX_DEPTH = 40
MAX_CONSTANT = 1e300

_FUNCTIONS = {
    "log": (sp.log, 1, 1), "exp": (sp.exp, 1, 1), "sqrt": (sp.sqrt, 1, 1),
    "Abs": (sp.Abs, 1, 1), "abs": (sp.Abs, 1, 1),
    "Min": (sp.Min, 2, 8), "min": (sp.Min, 2, 8), "Max": (sp.Max, 2, 8), "max": (sp.Max, 2, 8),
}
_NAMES = {"r": RATIO, "E": sp.E, "pi": sp.pi}
_BINARY = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b,
}
_ALLOWED = "numbers, r, + - * / **, log, exp, sqrt, Abs, Min, Max"


def _fail(message: str):
    raise UsageError(f"bad expression: {message}")


_DECIMAL = re.compile(r"(?P<mantissa>(\d+\.?\d*|\.\d+))([eE](?P<exponent>[+-]?\d+))?")
MAX_EXPONENT = 400


class _Builder:
    def __init__(self, source: str):
        self.source = source
        self.nodes = 0
        # Where f is defined, as the user wrote it: sympy simplifies exp(log(r - 2)) to
        # r - 2 and sqrt(r - 2)**2 to r - 2, so these are kept before it can.
        self.domain: list[tuple[str, sp.Expr]] = []

    def _record_domain(self, op, left, right):
        if op is ast.Div and right.has(RATIO):
            self.domain.append(("nonzero", right))
        if op is ast.Pow and right.has(RATIO) and left is not sp.E:
            self.domain.append(("positive", left))  # b**g(r) is real for every r only if b > 0
        elif op is ast.Pow and left.has(RATIO):
            if right.is_integer:
                if right.is_negative:
                    self.domain.append(("nonzero", left))
            elif right.is_number and right.is_positive:
                self.domain.append(("nonnegative", left))
            else:
                self.domain.append(("positive", left))

    def build(self, node, depth=0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            _fail(f"more than {MAX_NODES} syntax nodes")
        if depth > MAX_DEPTH:
            _fail(f"nested deeper than {MAX_DEPTH}")
        if isinstance(node, ast.Constant):
            return self._number(node.value, ast.get_source_segment(self.source, node))
        if isinstance(node, ast.Name):
            if node.id not in _NAMES:
                _fail(f"unknown name {node.id!r} (allowed: {_ALLOWED})")
            return _NAMES[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                self._check_power(left, right)
            if isinstance(node.op, ast.Div) and right == 0:
                _fail("division by zero")
            self._record_domain(type(node.op), left, right)
            return self._bounded(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:40]
                _fail(f"unknown function {name!r} (allowed: {_ALLOWED})")
            if node.keywords:
                _fail(f"{node.func.id}() takes no keyword arguments")
            function, low, high = _FUNCTIONS[node.func.id]
            if not low <= len(node.args) <= high:
                _fail(f"{node.func.id}() takes {low}{'' if low == high else f' to {high}'} argument(s)")
            args = [self.build(a, depth + 1) for a in node.args]
            if function is sp.log and args[0].has(RATIO):
                self.domain.append(("positive", args[0]))
            if function is sp.sqrt and args[0].has(RATIO):
                self.domain.append(("nonnegative", args[0]))
            return self._bounded(function(*args))
        _fail(f"{type(node).__name__} is not allowed (allowed: {_ALLOWED})")

    @staticmethod
    def _number(value, literal):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(f"constant {value!r} is not a real number")
        if isinstance(value, float):
            if not math.isfinite(value) or abs(value) > MAX_CONSTANT:
                _fail(f"constant {value!r} is out of range")
            # the literal as written, exactly: a double would turn 1e-400 into 0 and
            # 0.1000000000000000000001 into 0.1
            match = _DECIMAL.fullmatch((literal or "").replace("_", ""))
            if match is None:
                _fail(f"constant {literal!r} is not a plain decimal")
            if match.group("exponent") and abs(int(match.group("exponent"))) > MAX_EXPONENT:
                _fail(f"constant {literal!r} is out of range (|exponent| > {MAX_EXPONENT})")
            return sp.Rational(match.group(0))
        if abs(value) > MAX_CONSTANT:
            _fail("integer constant is too large")
        return sp.Integer(value)

    @staticmethod
    def _check_power(base, exponent):
        if exponent.is_number:
            value = complex(exponent.evalf(30))
            if value.imag != 0 or abs(value.real) > 1000:
                _fail("constant exponents must be real with |exponent| <= 1000")
            if base.is_number and base != 0:
                magnitude = abs(value.real) * abs(math.log(abs(complex(base.evalf(30))) or 1.0))
                if magnitude > math.log(MAX_CONSTANT):
                    _fail("constant power is too large")

    @staticmethod
    def _bounded(expr):
        if expr.is_number:
            if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                _fail("a constant sub-expression is undefined or infinite")
            value = complex(expr.evalf(30))
            if not (math.isfinite(value.real) and math.isfinite(value.imag)):
                _fail("a constant sub-expression is infinite")
            if abs(value) > MAX_CONSTANT:
                _fail("a constant sub-expression is too large")
        return expr


def parse_expression(text: str) -> sp.Expr:
    """The sympy expression in ``R`` for a whitelisted string; UsageError otherwise."""
    return parse_with_domain(text)[0]


def parse_with_domain(text: str):
    """(expression, domain): the domain lists (condition, sub-expression) pairs, condition
    one of "positive", "nonnegative", "nonzero", that must hold at r for f to be defined
    as written (log arguments, bases of fractional powers, divisors)."""
    if not isinstance(text, str):
        _fail("expression must be a string")
    if len(text) > MAX_LENGTH:
        _fail(f"longer than {MAX_LENGTH} characters ({len(text)})")
    if not text.strip():
        _fail("empty")
    if any(ch in text for ch in "\x00\n\r;"):
        _fail("only one line of arithmetic is allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        _fail(f"syntax error at column {error.offset}: {error.msg}")
    except (ValueError, RecursionError, MemoryError):
        _fail("cannot be parsed")
    try:
        builder = _Builder(text.strip())
        expr = builder.build(tree.body)
    except RecursionError:
        _fail("nested too deeply")
    except (ValueError, TypeError, ArithmeticError) as error:  # sympy refusing a node: Min of a complex log
        _fail(f"cannot be built ({type(error).__name__}: {str(error)[:120]})")
    if not expr.free_symbols <= {RATIO}:
        _fail("the only variable allowed is r")
    if expr.has(sp.I) or any(not n.is_real for n in expr.atoms(sp.Number)) or expr.is_real is False:
        _fail("not a real expression (a log or root of a negative constant?)")
    domain = []
    for condition in builder.domain:
        if condition not in domain:
            domain.append(condition)
    return expr, tuple(domain)


_SYMPY_FUNCTIONS = (sp.log, sp.exp, sp.Abs, sp.Min, sp.Max)


def _check_sympy(expr, depth=0):
    if depth > MAX_DEPTH * 2:
        _fail("nested too deeply")
    if expr.is_Symbol:
        if expr.name != "r":
            _fail(f"unknown symbol {expr.name!r}; the only variable allowed is r")
        return
    if expr.is_Number or expr in (sp.E, sp.pi):
        if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan) or not expr.is_real:
            _fail(f"constant {expr} is not a finite real number")
        return
    if not (expr.is_Add or expr.is_Mul or expr.is_Pow or isinstance(expr, _SYMPY_FUNCTIONS)):
        _fail(f"{type(expr).__name__} is not allowed (allowed: {_ALLOWED})")
    for arg in expr.args:
        _check_sympy(arg, depth + 1)


def as_expression_with_domain(expr):
    """(checked expression, domain conditions) for an estimator's ``expr``; a sympy
    expression has no recorded domain beyond its own tree."""
    if isinstance(expr, str):
        return parse_with_domain(expr)
    return as_expression(expr), ()


def as_expression(expr) -> sp.Expr:
    """An estimator's ``expr`` (string or sympy) as a checked sympy expression in ``R``.

    A sympy expression may use its own symbol named ``r``; it is replaced by ``R``
    (positive), and must use only the whitelisted functions.
    """
    if isinstance(expr, str):
        return parse_expression(expr)
    if not isinstance(expr, sp.Basic):
        _fail(f"expected a string or a sympy expression, got {type(expr).__name__}")
    _check_sympy(expr)
    symbols = {s for s in expr.free_symbols if s.name == "r"}
    return expr.xreplace({s: RATIO for s in symbols})
