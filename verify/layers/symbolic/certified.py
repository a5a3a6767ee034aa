"""Certified numerics for the symbolic layer: interval arithmetic (mpmath.iv) on sympy
expressions, and points of (0, inf) that are exact or enclosed.

A refutation is only reported when an interval enclosure proves it, so every
counterexample re-checks at any precision.
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp
from mpmath import iv, mpf

from verify.core.expression import RATIO

DIGITS = 50  # working precision of enclosures; refutations need far fewer


class Uncertain(Exception):
    """The enclosure is too wide (or undefined) to decide."""


def _iv_pow(base, exponent_expr, exponent):
    if exponent_expr.is_Integer:
        n = int(exponent_expr)
        return base ** n if n >= 0 else 1 / (base ** (-n))
    if exponent_expr == sp.Rational(1, 2):
        return iv.sqrt(base)
    if _lower(base) <= 0:
        raise Uncertain("non-integer power of a non-positive interval")
    return iv.exp(exponent * iv.log(base))


def _lower(x):
    return mpf(x.a)


def _upper(x):
    return mpf(x.b)


def _abs(x):
    lo, hi = _lower(x), _upper(x)
    if lo >= 0:
        return x
    if hi <= 0:
        return -x
    return iv.mpf([0, max(-lo, hi)])


def _min(x, y):
    return iv.mpf([min(_lower(x), _lower(y)), min(_upper(x), _upper(y))])


def _max(x, y):
    return iv.mpf([max(_lower(x), _lower(y)), max(_upper(x), _upper(y))])


def _exact_number(value) -> iv.mpf:
    if value.is_Rational:
        return iv.mpf(int(value.p)) / iv.mpf(int(value.q))
    if value is sp.E:
        return iv.e
    if value is sp.pi:
        return iv.pi
    raise Uncertain(f"no enclosure for the constant {value}")


def _walk(expr, x, variable=RATIO):
    if expr == variable:  # not "is": a pickled expression may carry an equal copy of R
        return x
    if expr.is_Number or expr in (sp.E, sp.pi):
        if expr.is_Float:
            return _exact_number(sp.Rational(expr))  # a Float is exactly a dyadic rational
        if expr in (sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise Uncertain("infinite constant")
        return _exact_number(expr)
    if expr.is_Add:
        total = _walk(expr.args[0], x, variable)
        for arg in expr.args[1:]:
            total = total + _walk(arg, x, variable)
        return total
    if expr.is_Mul:
        total = _walk(expr.args[0], x, variable)
        for arg in expr.args[1:]:
            total = total * _walk(arg, x, variable)
        return total
    if expr.is_Pow:
        base, exponent = expr.args
        if base is sp.E:
            return iv.exp(_walk(exponent, x, variable))
        return _iv_pow(_walk(base, x, variable), exponent, _walk(exponent, x, variable))
    if isinstance(expr, sp.exp):
        return iv.exp(_walk(expr.args[0], x, variable))
    if isinstance(expr, sp.log):
        arg = _walk(expr.args[0], x, variable)
        if _lower(arg) <= 0:
            raise Uncertain("log of an interval that reaches 0")
        return iv.log(arg)
    if isinstance(expr, sp.Abs):
        return _abs(_walk(expr.args[0], x, variable))
    if isinstance(expr, (sp.Min, sp.Max)):
        combine = _min if isinstance(expr, sp.Min) else _max
        values = [_walk(a, x, variable) for a in expr.args]
        total = values[0]
        for value in values[1:]:
            total = combine(total, value)
        return total
    raise Uncertain(f"no interval rule for {type(expr).__name__}")


def enclose(expr, lo, hi=None, digits=DIGITS, variable=RATIO):
    """An interval containing expr(r) for every r in [lo, hi]; Uncertain if none.
    ``variable``: the symbol that ranges over [lo, hi] (r unless told; the ends may be
    infinite, e.g. u = log r over [T, inf])."""
    saved = iv.prec
    iv.prec = int(digits * 3.33)
    try:
        x = iv.mpf([lo, lo if hi is None else hi])
        try:
            value = _walk(expr, x, variable)
        except (ZeroDivisionError, ValueError, mpmath.libmp.ComplexResult) as error:
            raise Uncertain(str(error)) from None
        lo_value, hi_value = _lower(value), _upper(value)
        if mpmath.isnan(lo_value) or mpmath.isnan(hi_value):
            raise Uncertain("undefined")
        return lo_value, hi_value
    finally:
        iv.prec = saved


# Point evaluations whose enclosure straddles 0 are repeated at these precisions: a
# sign can hide below 50 digits (k3 - 1e-400 at r = 1).
RETRY_DIGITS = (300, 1500)


def point_enclosure(expr, x):
    """The enclosure of expr at the point x, sharpened until it excludes 0 if it can."""
    lo, hi = enclose(expr, x)
    for digits in RETRY_DIGITS:
        if lo > 0 or hi < 0 or lo == hi == 0:
            break
        lo, hi = enclose(expr, x, digits=digits)
    return lo, hi


def constant_enclosure(value):
    return point_enclosure(value, mpf(1))


def certified_sign(lo, hi):
    """+1 / -1 when the enclosure excludes 0, 0 when it is exactly [0, 0], else None."""
    if lo == hi == 0:
        return 0
    if lo > 0:
        return 1
    if hi < 0:
        return -1
    return None


def sign_at(expr, x):
    """The certified sign of expr at the exact point x (an mpf), or None."""
    try:
        return certified_sign(*point_enclosure(expr, x))
    except Uncertain:
        return None


def to_rational(x: mpf) -> sp.Rational:
    """The exact rational value of a binary mpf."""
    man, exp = mpmath.mpf(x).man_exp
    return sp.Integer(man) * sp.Integer(2) ** exp


@dataclass(frozen=True)
class Point:
    """A point of [0, inf]: exact (a sympy number, 0 or oo) or an enclosure [lo, hi]."""

    exact: object = None
    lo: object = None
    hi: object = None

    @staticmethod
    def at(value) -> "Point":
        value = value if isinstance(value, sp.Basic) else sp.Integer(value)  # only 0 and 1 come in as ints
        if value is sp.oo:
            return Point(sp.oo, mpmath.inf, mpmath.inf)
        if value == 0:
            return Point(sp.S.Zero, mpf(0), mpf(0))
        lo, hi = constant_enclosure(value)
        return Point(value, lo, hi)

    @property
    def is_zero_end(self):
        return self.exact is not None and self.exact == 0

    @property
    def is_infinite_end(self):
        return self.exact is sp.oo

    @property
    def approx(self) -> mpf:
        if self.is_infinite_end:
            return mpmath.inf
        return (self.lo + self.hi) / 2

    def __str__(self):
        if self.exact is not None:
            return str(self.exact)
        return f"[{mpmath.nstr(self.lo, 20)}, {mpmath.nstr(self.hi, 20)}]"


def interior_point(a: Point, b: Point) -> mpf:
    """A point strictly inside (a, b): geometric middle, or a step beyond a finite end."""
    lo = a.hi
    hi = b.lo
    if a.is_zero_end and b.is_infinite_end:
        return mpf(1)
    if a.is_zero_end:
        return hi / 2
    if b.is_infinite_end:
        return lo * 2
    return mpmath.sqrt(lo * hi)
