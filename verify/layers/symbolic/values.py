"""Shared pieces of the symbolic layer: constants, the ``Undecided`` signal, and values
of an expression at a point (exact, a checked sympy limit, or an enclosure) with their
certified signs."""
from __future__ import annotations

import math

import mpmath
import sympy as sp
from mpmath import mpf

from verify.layers.symbolic.certified import Point, Uncertain, certified_sign, constant_enclosure, enclose, sign_at
from verify.core.expression import RATIO

MAX_CELLS = 64
# domain condition -> the failure _bad_point looks for
_DOMAIN_MODES = {"positive": "nonpositive", "nonnegative": "negative", "nonzero": "zero"}
MAX_ROOT_DEPTH = 4
MAX_GROWTH_POWER = 8
ZERO, ONE, INF = Point.at(0), Point.at(1), Point.at(sp.oo)
_NONSMOOTH = (sp.Abs, sp.Min, sp.Max)

# Sample ratios: exact rationals, spread over (0, inf) on both sides of 1.
# Simplest first: a counterexample should be easy to read and re-check.
SAMPLE_RATIOS = tuple(sp.Rational(n, d) for n, d in (
    (1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2), (1, 7), (7, 1), (9, 10), (11, 10),
    (1, 20), (20, 1), (1, 1000), (1000, 1), (1, 1000000), (1000000, 1)))
WORKING_BITS = 200  # all mpf arithmetic of this layer runs at this precision


def _precise(function):
    """Run at WORKING_BITS: a midpoint or sample point rounded to 53 bits is not the
    point the enclosure was computed at."""
    def wrapper(*args, **kwargs):
        with mpmath.workprec(WORKING_BITS):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


class Undecided(Exception):
    """The argument cannot be completed: the claim stays undecided (never a guess)."""


def _fmt(x):
    """A float for JSON; 17 digits as a string where a float would be infinite, or 0 for a
    value that is not 0; "2**k" for a power of two beyond double range (exact)."""
    value = float(x)
    if math.isfinite(value) and (value != 0 or x == 0):
        return value
    if isinstance(x, mpf) and x > 0:
        mantissa, exponent = x.man_exp
        if mantissa == 1:
            return f"2**{exponent}"
    return mpmath.nstr(mpf(sp.N(x, 20)) if isinstance(x, sp.Basic) else mpf(x), 17)


# --------------------------------------------------------------------------- values


def _limit(h, point: Point, direction: str):
    """A one-sided limit of h at a point (sympy's Gruntz), checked to be a definite value."""
    target = sp.oo if point.is_infinite_end else point.exact
    try:
        value = sp.limit(h, RATIO, target, direction if not point.is_infinite_end else "-")
    except Exception as error:  # noqa: BLE001 - a sympy failure is "not settled", never a verdict
        raise Undecided(f"limit of {h} at {target}: {type(error).__name__}") from None
    if value.has(sp.AccumBounds, sp.nan, sp.zoo) or isinstance(value, sp.Limit) or value.has(sp.Limit):
        raise Undecided(f"no definite limit of {h} at {target}")
    return value


def _checked_limit(h, point: Point, direction: str):
    """A one-sided limit at an interior point, checked against certified values of h at
    r = point -/+ 2**-k: sympy's limit is sometimes wrong there (e.g. it gives
    (r-1)/sqrt(r**2-2r+1) -> 1 from the left), and a wrong limit must not become a proof."""
    value = _limit(h, point, direction)
    step = -1 if direction == "-" else 1
    samples = []
    for k in (40, 80):
        x = (point.lo if step < 0 else point.hi) + step * mpf(2) ** -k * max(1, abs(point.lo))
        try:
            samples.append(enclose(h, x))
        except Uncertain:
            raise Undecided(f"cannot check the limit of {h} at {point}") from None
    if value.is_finite:
        limit_value = constant_enclosure(value)
        for k, (lo, hi) in zip((40, 80), samples):
            gap = max(abs(lo - limit_value[1]), abs(hi - limit_value[0]))
            if gap > mpf(2) ** (-k // 4) * (1 + abs(limit_value[0])):
                raise Undecided(f"sympy's limit {value} of {h} at {point}{direction} does not match nearby values")
        return value
    sign = 1 if value is sp.oo else -1
    far, near = samples
    if not (certified_sign(*far) == sign and certified_sign(*near) == sign and abs(near[0]) > abs(far[1])):
        raise Undecided(f"sympy's limit {value} of {h} at {point}{direction} does not match nearby values")
    return value


def value_at(h, point: Point, direction: str):
    """h at a cell end, approached from inside the cell: an exact sympy value or an
    enclosure (lo, hi)."""
    if point.exact is not None:
        if point.is_zero_end or point.is_infinite_end:
            return _limit(h, point, direction)
        value = h.xreplace({RATIO: point.exact})
        if value.is_finite and not value.has(sp.nan, sp.zoo, sp.oo):
            return value
        return _checked_limit(h, point, direction)
    try:
        return enclose(h, point.lo, point.hi)
    except Uncertain as error:
        raise Undecided(f"cannot enclose {h} near {point}: {error}") from None


def sign_of(value):
    """+1, 0, -1, or None (unknown) for an exact sympy value or an enclosure."""
    if isinstance(value, tuple):
        return certified_sign(*value)
    if value is sp.oo:
        return 1
    if value is -sp.oo:
        return -1
    if value.is_zero:
        return 0
    if not value.is_real and value.is_real is not None:
        raise Undecided(f"non-real value {value}")
    try:
        return certified_sign(*constant_enclosure(value))
    except Uncertain:
        return None


def _identically_zero(expr) -> bool:
    """True only when sympy reduces expr to 0 exactly."""
    if expr == 0:
        return True
    for x in (mpf(3) / 7, mpf(13) / 5):  # certainly non-zero somewhere: no simplify needed
        if sign_at(expr, x) in (1, -1):
            return False
    for attempt in (
        lambda e: sp.expand(sp.expand_log(e)),  # r > 0: no forcing needed
        sp.simplify,
        lambda e: sp.simplify(sp.expand_log(sp.powsimp(sp.together(e)))),
    ):
        try:
            if attempt(expr) == 0:
                return True
        except Exception:  # noqa: BLE001 - a sympy failure is "not settled", never a verdict
            continue
    return False


