"""The symbolic layer: decide the pointwise, expectation and gradient claims of
shared/CLAIMS.md for an expression f(r), r > 0.

How a verdict is reached:
- ``proved`` only by exact reasoning: sympy's assumptions, exact identities, or a
  monotonicity argument: on each piece of (0, inf) where f is smooth (Abs, Min, Max are
  split at their switching points), the critical points come from an exact solveset (or
  are isolated by a certified sign change of a derivative whose own critical points are
  exact), so f is strictly monotone between them and its infimum is attained at those
  points or reached at the ends (sympy limits).  Every sign used is exact or certified by
  interval arithmetic.
- ``refuted`` only with a counterexample that interval arithmetic certifies: a value of
  r, two values of r, or an explicit pair of two-point distributions p, q.
- ``undecided`` otherwise, and whenever the hard time limit runs out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import sympy as sp
from mpmath import mpf

from verify.certified import (
    Point, Uncertain, certified_sign, constant_enclosure, enclose, interior_point, point_enclosure, sign_at,
    to_rational,
)
from verify.claims import GRADIENT, POINTWISE, EXPECTATION, PROVED, REFUTED, UNDECIDED, Verdict
from verify.expression import R
from verify.timelimit import Failed, TimedOut, run_all

__all__ = ["decide", "decide_one", "analyse"]

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
    value that is not 0."""
    value = float(x)
    if math.isfinite(value) and (value != 0 or x == 0):
        return value
    return mpmath.nstr(mpf(sp.N(x, 20)) if isinstance(x, sp.Basic) else mpf(x), 17)


# --------------------------------------------------------------------------- values


def _limit(h, point: Point, direction: str):
    """A one-sided limit of h at a point (sympy's Gruntz), checked to be a definite value."""
    target = sp.oo if point.is_infinite_end else point.exact
    try:
        value = sp.limit(h, R, target, direction if not point.is_infinite_end else "-")
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
        value = h.xreplace({R: point.exact})
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


# ------------------------------------------------------------- roots and monotonicity


def _interval(a: Point, b: Point):
    lo = a.exact if a.exact is not None else to_rational(a.lo)
    hi = b.exact if b.exact is not None else to_rational(b.hi)
    return sp.Interval.open(lo, hi)


def _sort_points(points):
    points = sorted(points, key=lambda p: p.approx)
    for left, right in zip(points, points[1:]):
        if not left.hi < right.lo:
            raise Undecided(f"cannot separate the points {left} and {right}")
    return points


def _strictly_inside(point: Point, a: Point, b: Point):
    if point.hi <= 0:
        return False
    if point.lo <= 0:
        raise Undecided(f"cannot tell whether {point} is positive")
    inside_a = a.is_zero_end or a.hi < point.lo
    inside_b = b.is_infinite_end or point.hi < b.lo
    outside = (not a.is_zero_end and point.hi <= a.lo) or (not b.is_infinite_end and point.lo >= b.hi)
    if inside_a and inside_b:
        return True
    if outside or (a.exact is not None and point.exact is not None and sp.simplify(point.exact - a.exact) == 0) \
            or (b.exact is not None and point.exact is not None and sp.simplify(point.exact - b.exact) == 0):
        return False
    raise Undecided(f"cannot place {point} relative to ({a}, {b})")


_LOG_RATIO = sp.Dummy("u", real=True)
ROOT_WIDTH = sp.Rational(1, 10 ** 40)


def _polynomial_solutions(g, a: Point, b: Point):
    """Zeros of g in (a, b) when g's numerator is a polynomial in r or in u = log r and its
    denominator has one sign: isolated by exact real-root isolation (Poly.intervals).
    None when g is not of that form."""
    for variable in (R, _LOG_RATIO):
        expr = g if variable == R else sp.expand_log(g.xreplace({R: sp.exp(_LOG_RATIO)}))
        numerator, denominator = sp.fraction(sp.together(expr))
        if variable == _LOG_RATIO and numerator.has(sp.exp):
            continue
        if not (numerator.is_polynomial(variable) and numerator.has(variable)):
            continue
        if not (denominator.is_positive or denominator.is_negative):
            continue
        try:
            polynomial = sp.Poly(numerator, variable, domain="QQ")  # rational coefficients only
        except (sp.PolynomialError, sp.polys.polyerrors.CoercionFailed, NotImplementedError, ValueError):
            return None
        points = []
        for (low, high), _ in polynomial.intervals(eps=ROOT_WIDTH):
            if variable == R:
                point = Point.at(low) if low == high else Point(None, *_rational_hull(low, high))
            elif low == high:
                point = Point.at(sp.exp(low))
            else:
                point = Point(None, constant_enclosure(sp.exp(low))[0], constant_enclosure(sp.exp(high))[1])
            if (variable == R and high <= 0) or point.hi <= 0:
                continue
            if _strictly_inside(point, a, b):
                points.append(point)
        return _sort_points(points)
    return None


def _rational_hull(low, high):
    return constant_enclosure(low)[0], constant_enclosure(high)[1]


def _exact_solutions(g, a: Point, b: Point):
    """Zeros of g in (a, b) from solveset (or exact real-root isolation of a polynomial
    numerator), or None when neither gives an explicit set."""
    polynomial = _polynomial_solutions(g, a, b)  # exact, and never hangs like solveset can
    if polynomial is not None:
        return polynomial
    try:
        solutions = sp.solveset(g, R, _interval(a, b))
    except Exception:  # noqa: BLE001 - a sympy failure is "not settled", never a verdict
        return _polynomial_solutions(g, a, b)
    if solutions is sp.S.EmptySet:
        return []
    if isinstance(solutions, sp.FiniteSet):
        points = []
        for s in solutions:
            if not (s.is_number and s.is_real):
                return _polynomial_solutions(g, a, b)
            try:
                point = Point.at(s)
            except Uncertain:  # e.g. a CRootOf: no interval rule
                return _polynomial_solutions(g, a, b)
            if _strictly_inside(point, a, b):
                points.append(point)
        return _sort_points(points)
    if isinstance(solutions, (sp.Interval, sp.Union)) and _identically_zero(g):
        return "all"
    return _polynomial_solutions(g, a, b)


def critical_points(h, a: Point, b: Point, depth=0):
    """Points of (a, b) where h' = 0, sorted; or "constant" if h is constant there."""
    derivative = sp.diff(h, R)
    if derivative.is_positive or derivative.is_negative:
        return []
    if _identically_zero(derivative):
        return "constant"
    found = _exact_solutions(derivative, a, b)
    if found == "all":
        return "constant"
    if found is None:
        if depth >= MAX_ROOT_DEPTH:
            raise Undecided(f"cannot solve {derivative} = 0")
        found = roots(derivative, a, b, depth + 1)
        if found == "all":
            return "constant"
    _check_no_missed_sign_change(derivative, a, b, found)
    return found


def _check_no_missed_sign_change(derivative, a, b, points):
    """A guard on solveset: between consecutive critical points, h' must not change sign
    at any of a few sample points (certified); if it does, a root was missed."""
    ends = [a] + list(points) + [b]
    for left, right in zip(ends, ends[1:]):
        samples = _samples_between(left, right, 25)
        signs = {sign_at(derivative, x) for x in samples} - {None}
        if signs == {1, -1}:
            raise Undecided(f"solveset missed a zero of {derivative} in ({left}, {right})")


def _samples_between(a: Point, b: Point, count: int):
    with mpmath.workprec(200):
        if a.is_zero_end and b.is_infinite_end:
            return [mpmath.exp(mpf(t)) for t in range(-(count // 2) * 6, (count // 2) * 6 + 1, 6)]
        lo = a.hi if not a.is_zero_end else b.lo / mpf(2) ** 40
        hi = b.lo if not b.is_infinite_end else a.hi * mpf(2) ** 40
        lo_log, hi_log = mpmath.log(lo), mpmath.log(hi)
        return [mpmath.exp(lo_log + (hi_log - lo_log) * (k + 1) / (count + 1)) for k in range(count)]


def roots(g, a: Point, b: Point, depth=0):
    """Zeros of g in the open interval (a, b): exact where solveset gives them, else
    enclosures isolated by certified sign changes on intervals where g is strictly
    monotone.  "all" if g vanishes identically."""
    found = _exact_solutions(g, a, b)
    if found is not None:
        return found
    turning = critical_points(g, a, b, depth)
    if turning == "constant":
        sample = sign_at(g, interior_point(a, b))
        if sample is None:
            if _identically_zero(g):
                return "all"
            raise Undecided(f"cannot tell the sign of the constant {g}")
        return []
    found = []
    ends = [a] + list(turning) + [b]
    for point in turning:
        if sign_of(value_at(g, point, "+")) in (0, None):
            if point.exact is None or sign_of(value_at(g, point, "+")) is None:
                raise Undecided(f"cannot tell whether {g} vanishes at {point}")
            found.append(point)
    for left, right in zip(ends, ends[1:]):
        left_sign = sign_of(value_at(g, left, "+"))
        right_sign = sign_of(value_at(g, right, "-"))
        if left_sign is None or right_sign is None:
            raise Undecided(f"cannot tell the sign of {g} at the ends of ({left}, {right})")
        if left_sign * right_sign < 0:
            found.append(_snap(g, _isolate(g, left, right, left_sign)))
    return _sort_points(found)


def _snap(g, point: Point) -> Point:
    """An isolated zero that is a simple exact number (r = 1 most often) is made exact,
    if g vanishes there exactly; otherwise the enclosure stays."""
    middle = (point.lo + point.hi) / 2
    for candidate in (sp.nsimplify(float(middle), rational=True, tolerance=1e-12),
                      sp.nsimplify(float(middle), [sp.E], tolerance=1e-12)):
        try:
            inside = Point.at(candidate)
        except (Uncertain, TypeError, ValueError):
            continue
        if point.lo <= inside.lo and inside.hi <= point.hi and _identically_zero(g.xreplace({R: candidate})):
            return inside
    return point


def _isolate(g, a: Point, b: Point, sign_a: int) -> Point:
    """Enclose the one zero of a strictly monotone g between a and b by bisection."""
    with mpmath.workprec(200):
        lo = a.hi if not a.is_zero_end else None
        hi = b.lo if not b.is_infinite_end else None
        if lo is None:
            lo = (hi if hi is not None else mpf(1)) / 2
            for _ in range(40):
                if sign_at(g, lo) == sign_a:
                    break
                lo = lo * lo / 4 if lo < 1 else lo / 4
            else:
                raise Undecided(f"cannot bracket a zero of {g} near 0")
        if hi is None:
            hi = lo * 2 + 1
            for _ in range(40):
                if sign_at(g, hi) == -sign_a:
                    break
                hi = hi * hi + 4
            else:
                raise Undecided(f"cannot bracket a zero of {g} near infinity")
        for _ in range(400):
            if hi - lo <= mpf(2) ** -140 * hi:
                return Point(None, lo, hi)
            middle = mpmath.sqrt(lo * hi) if hi / lo > 4 else (lo + hi) / 2
            middle_sign = sign_at(g, middle)
            if middle_sign is None:
                break
            if middle_sign == sign_a:
                lo = middle
            else:
                hi = middle
        if hi - lo <= mpf(2) ** -100 * hi:
            return Point(None, lo, hi)
        raise Undecided(f"cannot isolate a zero of {g} in ({a}, {b})")


# ------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Cell:
    """An open interval (a, b) of (0, inf) on which the expression is the smooth ``expr``."""

    a: Point
    b: Point
    expr: object


def _innermost_nonsmooth(expr):
    candidates = [node for node in sp.preorder_traversal(expr)
                  if isinstance(node, _NONSMOOTH) and not any(arg.has(*_NONSMOOTH) for arg in node.args)]
    if not candidates:
        return None
    return min(candidates, key=sp.default_sort_key)


def _switch(node):
    """The switching function g of a non-smooth node and its two smooth replacements
    (for g > 0, for g < 0)."""
    if isinstance(node, sp.Abs):
        x = node.args[0]
        return x, x, -x
    first, second, *rest = node.args
    keep = (lambda chosen: node.func(chosen, *rest)) if rest else (lambda chosen: chosen)
    if isinstance(node, sp.Min):  # g = second - first > 0 means first is smaller
        return second - first, keep(first), keep(second)
    return first - second, keep(first), keep(second)


def decompose(expr, a: Point = ZERO, b: Point = INF, forced=()):
    """Split (a, b) into cells on which expr is smooth; ``forced`` adds breakpoints."""
    cells = [Cell(a, b, expr)]
    for point in forced:
        split = []
        for cell in cells:
            if _strictly_inside(point, cell.a, cell.b):
                split += [Cell(cell.a, point, cell.expr), Cell(point, cell.b, cell.expr)]
            else:
                split.append(cell)
        cells = split
    done = []
    while cells:
        cell = cells.pop(0)
        node = _innermost_nonsmooth(cell.expr)
        if node is None:
            done.append(cell)
            continue
        switch, when_positive, when_negative = _switch(node)
        zeros = roots(switch, cell.a, cell.b)
        if zeros == "all":
            cells.insert(0, Cell(cell.a, cell.b, cell.expr.xreplace({node: when_positive})))
            continue
        ends = [cell.a] + list(zeros) + [cell.b]
        pieces = []
        for left, right in zip(ends, ends[1:]):
            sample = interior_point(left, right)
            sign = sign_at(switch, sample)
            if sign is None:
                raise Undecided(f"cannot tell the sign of {switch} at r = {mpmath.nstr(sample, 20)}")
            chosen = when_positive if sign > 0 else when_negative
            pieces.append(Cell(left, right, cell.expr.xreplace({node: chosen})))
        cells = pieces + cells
        if len(cells) + len(done) > MAX_CELLS:
            raise Undecided(f"more than {MAX_CELLS} smooth pieces")
    return done


def cell_at(cells, x: mpf) -> Cell:
    for cell in cells:
        if (cell.a.is_zero_end or cell.a.hi < x) and (cell.b.is_infinite_end or x < cell.b.lo):
            return cell
    raise Undecided(f"r = {mpmath.nstr(x, 20)} is at or too near a breakpoint")


# --------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class Analysis:
    """What every claim needs: where f is undefined, and its smooth pieces."""

    expr: object
    undefined_at: object  # None, or (r, reason)
    domain_known: bool
    cells: tuple | None
    cells_error: str = ""
    breakpoints: tuple = ()  # cusps of fractional powers: always piece ends
    domain: tuple = ()  # the parser's conditions for f to be defined as written


def _bad_point(x, mode):
    """A certified r > 0 where x < 0 (mode "negative"), x <= 0 ("nonpositive") or x = 0
    ("zero"); None when there is none; Undecided when that cannot be settled."""
    if mode == "zero" and x.is_nonzero:
        return None
    if mode == "nonpositive" and x.is_positive:
        return None
    if mode == "negative" and x.is_nonnegative:
        return None
    cells = decompose(x)
    for cell in cells:
        zeros = roots(cell.expr, cell.a, cell.b)
        if zeros == "all":
            if mode != "negative":
                return to_rational(interior_point(cell.a, cell.b))
            continue
        if mode != "zero":  # a sample where x < 0 is a plainer witness than a zero
            ends = [cell.a] + list(zeros) + [cell.b]
            for left, right in zip(ends, ends[1:]):
                sample = interior_point(left, right)
                sign = sign_at(cell.expr, sample)
                if sign is None:
                    raise Undecided(f"cannot tell the sign of {x} at r = {mpmath.nstr(sample, 20)}")
                if sign < 0:
                    return to_rational(sample)
        if mode != "negative" and zeros:
            if zeros[0].exact is None:
                raise Undecided(f"{x} vanishes at a point known only as an enclosure {zeros[0]}")
            return zeros[0].exact
    if mode != "negative":
        for cell in cells[1:]:  # breakpoints between pieces
            if cell.a.exact is not None and _identically_zero(x.xreplace({R: cell.a.exact})):
                return cell.a.exact
    return None


def undefined_point(expr):
    """An r > 0 where expr is undefined (0 to a negative power, log of a non-positive
    number, a fractional power of a negative number), or None if it is defined on all of
    (0, inf)."""
    for node in sp.postorder_traversal(expr):
        if not node.has(R):
            continue
        if isinstance(node, sp.log):
            point = _bad_point(node.args[0], "nonpositive")
            if point is not None:
                return point, f"log of a non-positive number: log({node.args[0]})", node.args[0], "positive"
        elif node.is_Pow and node.args[0] is not sp.E:
            base, exponent = node.args
            if exponent.is_integer and exponent.is_nonnegative:
                continue
            if exponent.is_integer:
                condition = "nonzero"
            elif exponent.is_number and exponent.is_positive:
                condition = "nonnegative"
            else:
                condition = "positive"
            point = _bad_point(base, _DOMAIN_MODES[condition])
            if point is not None:
                return point, f"({base})**({exponent}) is undefined there", base, condition
    return None


def normalise(expr):
    """Factor the base of every non-integer power, so that a square under a root becomes
    an Abs (sqrt(r**2 - 2r + 1) -> Abs(r - 1)) and its kink is split like any other."""
    replacements = {}
    for node in sp.postorder_traversal(expr):
        if node.is_Pow and node.args[0].has(R) and not node.args[1].is_integer and node.args[0] is not sp.E:
            factored = sp.factor(node.args[0])
            if factored != node.args[0]:
                replacements[node] = factored ** node.args[1]
    return expr.xreplace(replacements) if replacements else expr


def power_breakpoints(expr):
    """Zeros in (0, inf) of the bases of non-integer powers: f may have a cusp there that
    no Abs, Min or Max shows, so no smooth piece may contain one."""
    points = []
    for node in sp.preorder_traversal(expr):
        if node.is_Pow and node.args[0].has(R) and not node.args[1].is_integer and node.args[0] is not sp.E:
            for cell in decompose(node.args[0]):
                zeros = roots(cell.expr, cell.a, cell.b)
                if zeros == "all":
                    raise Undecided(f"the base {node.args[0]} vanishes on a whole interval")
                points += zeros
    unique = []
    for point in sorted(points, key=lambda p: p.approx):
        if unique and not unique[-1].hi < point.lo:
            if unique[-1].exact is not None and point.exact is not None and _identically_zero(unique[-1].exact - point.exact):
                continue
            raise Undecided(f"cannot separate the cusps at {unique[-1]} and {point}")
        unique.append(point)
    return tuple(unique)


def domain_violation(domain):
    """A point where a recorded domain condition fails (see parse_with_domain), or None."""
    for condition, sub_expression in domain:
        point = _bad_point(sub_expression, _DOMAIN_MODES[condition])
        if point is not None:
            return point, f"{sub_expression} must be {condition} for f to be defined as written", sub_expression, condition
    return None


@_precise
def analyse(expr, domain=()) -> Analysis:
    try:
        # the domain is checked on f as written, before normalise() factors anything
        undefined = domain_violation(domain) or undefined_point(expr)
        domain_known = True
    except Undecided:
        undefined, domain_known = None, False
    if undefined is not None:
        return Analysis(expr, undefined, True, None, "", domain=domain)
    expr = normalise(expr)
    if expr.has(sp.I):
        return Analysis(expr, None, False, None, "factoring made f complex: its domain is not settled", domain=domain)
    try:
        breakpoints = power_breakpoints(expr)
        cells = tuple(decompose(expr, forced=breakpoints))
        error = ""
    except Undecided as problem:
        breakpoints, cells, error = (), None, str(problem)
    return Analysis(expr, None, domain_known, cells, error, breakpoints, domain)


# ------------------------------------------------------------------ certified search


def _scan_points():
    """Points where a refutation is looked for: the simple ratios first, then dense in
    log r and close to r = 1; all exact doubles."""
    with mpmath.workprec(WORKING_BITS):
        points = [mpmath.exp(mpf(k) / 8) for k in range(-8 * 60, 8 * 60 + 1)]
        points += [mpmath.exp(sign * mpf(k)) for k in range(70, 701, 10) for sign in (1, -1)]
        for k in range(1, 12):
            for sign in (1, -1):
                points.append(mpmath.exp(sign * mpf(10) ** -k))
        dense = sorted(set(mpmath.mpf(float(p)) for p in points))
        simple = [mpmath.mpf(float(x)) for x in SAMPLE_RATIOS]
        return simple, dense


SIMPLE_SCAN, SCAN = _scan_points()


def _counter_r(x, **values):
    example = {"r": _fmt(x)}
    example.update({k: _fmt(v) for k, v in values.items()})
    return example


def find_below(h, threshold=0, skip_one=False):
    """A point where h < threshold, certified; None if the scan finds none."""
    for points in (SIMPLE_SCAN, SCAN):
        best = None
        for x in points:
            if skip_one and x == 1:
                continue
            try:
                lo, hi = enclose(h - threshold, x)
            except Uncertain:
                continue
            if hi < 0 and (best is None or hi < best[1]):
                best = (x, hi)
        if best is not None:
            return best[0]
    return None


def find_concavity(f):
    """Two points a < b with f((a+b)/2) > (f(a) + f(b))/2, certified (the midpoint is
    exact at WORKING_BITS)."""
    for step in (64, 16, 4, 1):  # wide chords first: a plainer counterexample
        for left, right in zip(SCAN[::step], SCAN[2 * step::step]):
            found = _chord(f, left, right)
            if found is not None:
                return found
    return None


def _chord(f, left, right):
    """(a, m, b, excess) if f(m) > (f(a) + f(b))/2 is certified at m = (a + b)/2, else None."""
    middle = mpmath.ldexp(mpmath.fadd(left, right, exact=True), -1)
    try:
        fa, fb, fm = enclose(f, left), enclose(f, right), enclose(f, middle)
    except Uncertain:
        return None
    excess = fm[0] - (fa[1] + fb[1]) / 2
    return (left, middle, right, excess) if excess > 0 else None


def _chord_near(f, point: Point):
    """A certified chord counterexample to convexity around a point where f'' < 0 or
    the slope drops: a, b doubles on either side, ever closer."""
    if point.is_zero_end or point.is_infinite_end:
        return None
    centre = point.approx
    for k in range(2, 40, 2):
        step = centre * mpf(2) ** -k
        found = _chord(f, mpf(float(centre - step)), mpf(float(centre + step)))
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------ the claims


def _need_cells(analysis: Analysis):
    if not analysis.domain_known:
        raise Undecided("could not establish where f is defined")
    if analysis.cells is None:
        raise Undecided(analysis.cells_error or "could not split f into smooth pieces")
    return analysis.cells


def _infimum_argument(cells, transform, strict_away_from_one: bool, what: str, whole=None, continuous=False):
    """Whether transform(piece) >= 0 on every piece (> 0 except at r = 1 when strict).

    On each piece the function is constant or strictly monotone between consecutive
    candidate points (piece ends and exact or isolated critical points), so its values
    lie between the candidates' values.  Finite candidates are attained and must be > 0
    when strict (= 0 allowed only at r = 1); limits at 0 and oo need only be >= 0.
    Returns (True, None), or (False, point) when a candidate fails; raises Undecided when
    a sign is unknown."""
    for position, cell in enumerate(cells):
        h = transform(cell.expr)
        if not strict_away_from_one and h.is_nonnegative:
            continue
        if strict_away_from_one and h.is_positive:
            continue
        turning = critical_points(h, cell.a, cell.b)
        if turning == "constant":
            inside = Point.at(to_rational(interior_point(cell.a, cell.b)))
            sign = sign_of(value_at(h, inside, "+"))
            if sign is None:
                raise Undecided(f"cannot tell the sign of the constant {what} on ({cell.a}, {cell.b})")
            if sign < 0 or (sign == 0 and strict_away_from_one):
                return False, inside
            continue
        points = [cell.a] + list(turning) + [cell.b]
        for index, point in enumerate(points):
            value = value_at(h, point, "+" if index == 0 else "-")
            sign = sign_of(value)
            if sign is None and continuous and index in (0, len(points) - 1):
                # a breakpoint: the function is continuous, so the neighbouring piece
                # has the same value there and may show its sign
                neighbour = position - 1 if index == 0 else position + 1
                if 0 <= neighbour < len(cells):
                    sign = sign_of(value_at(transform(cells[neighbour].expr), point, "-" if index == 0 else "+"))
            if sign is None and whole is not None and point.exact is None and not strict_away_from_one:
                # an isolated breakpoint where the piece touches 0: the whole function
                # (its Min/Max included) may still be enclosed in [0, ...]
                try:
                    if enclose(whole, point.lo, point.hi)[0] >= 0:
                        continue
                except Uncertain:
                    pass
            if sign is None:
                raise Undecided(f"cannot tell the sign of {what} at r = {point}")
            if sign < 0:
                return False, point
            attained = not (point.is_zero_end or point.is_infinite_end)
            if sign == 0 and strict_away_from_one and attained and not (point.exact is not None and point.exact == 1):
                return False, point
    return True, None


class _Claims:
    """Each method returns a Verdict for one claim of shared/CLAIMS.md."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self.f = analysis.expr

    # -- helpers
    def _cells_split_at_one(self):
        """The smooth pieces with r = 1 as a piece end (claims about f near 1 need it)."""
        cells = _need_cells(self.analysis)
        if any(c.a.exact is not None and c.a.exact == 1 for c in cells):
            return cells
        return tuple(decompose(self.f, forced=tuple(self.analysis.breakpoints) + (ONE,)))

    def _undefined(self):
        point, reason, sub_expression, condition = self.analysis.undefined_at
        value = float(sp.N(point, 20))
        return Verdict(REFUTED, "domain analysis", f"f is not defined at r = {point}: {reason}",
                       {"r": value, "exact_r": str(point), "reason": reason,
                        "subexpression": str(sub_expression), "must_be": condition,
                        "value_there": _fmt(sp.N(sub_expression.xreplace({R: point}), 20))})

    def zero_at_one(self):
        for condition, sub_expression in self.analysis.domain:  # f(1) as written
            sign = sign_of(sub_expression.xreplace({R: sp.S.One}))
            if sign is None:
                raise Undecided(f"cannot tell whether {sub_expression} is {condition} at r = 1")
            if {"positive": sign <= 0, "nonnegative": sign < 0, "nonzero": sign == 0}[condition]:
                return Verdict(REFUTED, "domain analysis", f"f(1) is undefined as written: {sub_expression} "
                               f"must be {condition}", {"r": 1.0, "exact_r": "1", "reason": "undefined as written",
                                                        "subexpression": str(sub_expression), "must_be": condition})
        value = self.f.xreplace({R: sp.S.One})
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or value.is_finite is False:
            return Verdict(REFUTED, "exact evaluation", "f(1) is undefined", {"r": 1.0, "f": None})
        if value.is_real is False:
            return Verdict(REFUTED, "exact evaluation", f"f(1) = {value} is not a real number", {"r": 1.0, "f": str(value)})
        if value.is_zero or _identically_zero(value):
            return Verdict(PROVED, "exact evaluation", "f(1) = 0 exactly")
        sign = sign_of(value)
        if sign:
            return Verdict(REFUTED, "exact evaluation, certified enclosure", f"f(1) = {value}",
                           _counter_r(1, f=sp.N(value, 17)))
        raise Undecided(f"cannot tell whether f(1) = {value} is 0")

    def nonnegative(self):
        return self._sign_claim(strict=False)

    def unique_minimum_at_one(self):
        return self._sign_claim(strict=True)

    def _sign_claim(self, strict):
        f_one = self.f.xreplace({R: sp.S.One})
        if strict and (f_one.has(sp.zoo, sp.nan) or not f_one.is_finite):
            return Verdict(REFUTED, "exact evaluation", "f(1) is undefined", {"r": 1.0})
        h = self.f - f_one if strict else self.f
        found = find_below(h, skip_one=strict)
        if found is not None:
            lo, hi = point_enclosure(self.f, found)
            what = f"f(r) < f(1) = {f_one}" if strict else "f(r) < 0"
            return Verdict(REFUTED, "certified interval evaluation", what,
                           _counter_r(found, f=(lo + hi) / 2))
        if not strict and _need_cells(self.analysis) and self.f.is_nonnegative:
            return Verdict(PROVED, "sympy assumptions (r > 0)", "sympy's assumption system derives f >= 0")
        cells = self._cells_split_at_one() if strict else _need_cells(self.analysis)
        ok, point = _infimum_argument(cells, lambda e: e - f_one if strict else e, strict,
                                      "f - f(1)" if strict else "f", whole=self.f, continuous=True)
        if ok:
            return Verdict(PROVED, "monotonicity argument: exact or certified critical points, sympy limits",
                           "on each smooth piece, f is strictly monotone between its critical points; "
                           + ("every candidate value exceeds f(1) except at r = 1" if strict
                              else "every candidate value (critical points, breakpoints, limits) is >= 0"))
        return self._refute_near(h, point, strict)

    def _refute_near(self, h, point: Point, strict):
        """A candidate value is negative: find a certified counterexample near it."""
        candidates = []
        if point.is_zero_end:
            candidates = [mpf(2) ** -k for k in (10, 30, 60, 120, 240, 480)]
        elif point.is_infinite_end:
            candidates = [mpf(2) ** k for k in (10, 30, 60, 120, 240, 480)]
        else:
            x = point.approx
            candidates = [x] + [x * (1 + s * mpf(2) ** -k) for k in (50, 40, 30, 20, 10) for s in (1, -1)]
        what = "f(r) <= f(1) at r != 1" if strict else "f(r) < 0"
        for x in candidates:
            x = mpf(float(x))  # certify the double that the counterexample will show
            if strict and x == 1:
                continue
            sign = sign_at(h, x)
            if sign is not None and (sign < 0 or (strict and sign <= 0)):
                lo, hi = point_enclosure(self.f, x)
                return Verdict(REFUTED, "monotonicity analysis, certified interval evaluation", what,
                               _counter_r(x, f=(lo + hi) / 2))
            if strict and sign is None and _identically_zero(h.xreplace({R: to_rational(x)})):
                return Verdict(REFUTED, "exact evaluation", f"{what}: f(r) = f(1) exactly",
                               _counter_r(x, f=self.f.xreplace({R: to_rational(x)})))
        if not point.is_zero_end and not point.is_infinite_end:
            # the double nearest the point may miss a narrow dip: try 45 digits
            digits = mpmath.nstr(point.approx, 45)
            if sign_at(h, digits) == -1:
                lo, hi = point_enclosure(self.f, digits)
                return Verdict(REFUTED, "monotonicity analysis, certified interval evaluation",
                               f"{what} (r given to 45 digits)", {"r": digits, "f": _fmt((lo + hi) / 2)})
        if strict and point.exact is not None and point.exact != 1 and _identically_zero(h.xreplace({R: point.exact})):
            return Verdict(REFUTED, "exact evaluation", f"f({point.exact}) = f(1) at r = {point.exact} != 1",
                           {"r": float(sp.N(point.exact, 17)), "exact_r": str(point.exact)})
        raise Undecided(f"a candidate value at r = {point} looks negative but no counterexample was certified")

    def convex(self):
        found = find_concavity(self.f)
        if found is not None:
            return self._chord_verdict(found)
        cells = _need_cells(self.analysis)
        ok, point = _infimum_argument(cells, lambda e: sp.diff(e, R, 2), False, "f''")
        if not ok:
            found = _chord_near(self.f, point)
            if found is None:
                raise Undecided(f"f'' looks negative near r = {point} but no chord counterexample was certified")
            return self._chord_verdict(found)
        for left, right in zip(cells, cells[1:]):
            jump = sp.diff(right.expr, R) - sp.diff(left.expr, R)
            sign = sign_of(value_at(jump, left.b, "+"))
            if sign is None:
                raise Undecided(f"cannot tell the slope jump at r = {left.b}")
            if sign < 0:
                found = _chord_near(self.f, left.b)
                if found is None:
                    raise Undecided(f"concave kink at r = {left.b} but no chord counterexample was certified")
                return self._chord_verdict(found)
        return Verdict(PROVED, "f'' >= 0 on each smooth piece (monotonicity argument), slopes increase at breakpoints",
                       f"{len(cells)} smooth piece(s)")

    @staticmethod
    def _chord_verdict(found):
        a, m, b, excess = found
        return Verdict(REFUTED, "certified chord test",
                       "f((a+b)/2) > (f(a) + f(b))/2 for the two ratios r = [a, b]",
                       {"r": [_fmt(a), _fmt(b)], "midpoint": mpmath.nstr(m, 40), "midpoint_excess": _fmt(excess)})

    def subexponential_growth(self):
        return self._growth(math.inf, "subexponential_growth")  # any finite power will do

    def linear_growth_in_log_ratio(self):
        return self._growth(1, "linear_growth_in_log_ratio")

    def _growth(self, max_power, claim):
        cells = _need_cells(self.analysis)
        ends = ((cells[0].expr, ZERO, "+"), (cells[-1].expr, INF, "-"))
        powers = []
        for expr, point, direction in ends:
            for k in range(0, MAX_GROWTH_POWER + 1):
                value = _limit(expr / sp.log(R) ** k if k else expr, point, direction)
                if value.is_finite:
                    powers.append(k)
                    break
            else:
                # beyond |log r|^8: if log|f| / log|log r| -> L < oo, then |f| <= |log r|^(L+1)
                # near that end
                ratio = _limit(sp.log(sp.Abs(expr)) / sp.log(sp.Abs(sp.log(R))), point, direction)
                powers.append(int(sp.floor(ratio)) + 1 if ratio.is_finite and ratio.is_real
                              else ("every" if ratio is sp.oo else None))
        worst = None if (None in powers or "every" in powers) else max(powers)
        if worst is not None and worst <= max_power:
            return Verdict(PROVED, "sympy limits at r -> 0+ and r -> oo; f continuous on (0, oo)",
                           f"f / |log r|^{worst} stays bounded at both ends")
        # refute: at some end, f / |log r|^max_power is unbounded
        for (expr, point, direction), k in zip(ends, powers):
            if k is not None and k != "every" and k <= max_power:
                continue
            if k == "every" and claim == "subexponential_growth":
                power = _limit(sp.log(sp.Abs(expr)) / sp.Abs(sp.log(R)), point, direction)
                detail = (f"|f| grows like a power of r (log|f| / |log r| -> {power}) as r -> {point}"
                          if power.is_positive or power is sp.oo else
                          f"log|f| / log|log r| -> oo as r -> {point}: f outgrows every power of log r")
            elif claim == "subexponential_growth":
                raise Undecided("growth not settled")
            else:
                detail = f"f / |log r|^{max_power} is unbounded as r -> {point}"
            return Verdict(REFUTED, "sympy limits (Gruntz)", detail,
                           _growth_witness(expr, point, 1 if claim == "linear_growth_in_log_ratio" else 8))
        raise Undecided("growth not settled")

    # -- identities
    def _constant_pieces(self, transform, cells, what):
        """Decide whether transform(piece) is one and the same constant on every piece.
        Returns (True, constant) / (False, (x1, v1, x2, v2)); raises Undecided."""
        samples = []
        for x in SAMPLE_RATIOS:
            x = mpf(x.p) / x.q
            try:
                cell = cell_at(cells, x)
                samples.append((x, enclose(transform(cell.expr), x)))
            except (Undecided, Uncertain):
                continue
        for i, (x1, v1) in enumerate(samples):
            for x2, v2 in samples[i + 1:]:
                if v1[1] < v2[0] or v2[1] < v1[0]:
                    return False, (x1, v1, x2, v2)
        constants = []
        for cell in cells:
            h = transform(cell.expr)
            if not _identically_zero(sp.diff(h, R)):
                raise Undecided(f"{what} is not provably constant on ({cell.a}, {cell.b}) and no sample differs")
            constants.append(sp.simplify(h))
        for c in constants[1:]:
            if not _identically_zero(c - constants[0]):
                raise Undecided(f"{what} takes constants {constants[0]} and {c} that are not provably equal")
        return True, constants[0]

    def _gradient(self, transform, what):
        cells = _need_cells(self.analysis)
        constant, found = self._constant_pieces(transform, cells, what)
        if constant:
            return Verdict(PROVED, "exact identity on each smooth piece",
                           f"{what} = {found} (almost everywhere)")
        x1, v1, x2, v2 = found
        values = [_fmt(sum(v1) / 2), _fmt(sum(v2) / 2)]
        if values[0] == values[1]:  # distinct, but not as doubles: show the digits
            values = [mpmath.nstr(sum(v1) / 2, 45), mpmath.nstr(sum(v2) / 2, 45)]
        return Verdict(REFUTED, "certified interval evaluation", f"{what} is not constant",
                       {"r": [_fmt(x1), _fmt(x2)], "values": values})

    def loss_grad_zero(self):
        return self._gradient(lambda e: R * sp.diff(e, R), "r f'(r)")

    def loss_grad_kl_qp(self):
        return self._gradient(lambda e: R * sp.diff(e, R) - sp.log(R), "r f'(r) - log r")

    def loss_grad_kl_pq(self):
        return self._gradient(lambda e: R * sp.diff(e, R) - R, "r f'(r) - r")

    def reward_grad_kl_qp(self):
        return self._gradient(lambda e: e + sp.log(R), "f(r) + log r")

    def unbiased_kl_qp(self):
        return self._unbiased(sp.log(R), "KL(q||p)", "f(r) + log r")

    def unbiased_kl_pq(self):
        return self._unbiased(-R * sp.log(R), "KL(p||q)", "f(r) - r log r")

    def _unbiased(self, shift, kl_name, what):
        f_one = self.f.xreplace({R: sp.S.One})
        if not f_one.is_zero:
            sign = sign_of(f_one) if f_one.is_finite else None
            if sign:
                example = _two_point_pair(self.f, sp.S.One, sp.S.One)
                return Verdict(REFUTED, "exact evaluation", f"f(1) = {f_one} != 0: biased when p = q", example)
            if not _identically_zero(f_one):
                raise Undecided(f"cannot tell whether f(1) = {f_one} is 0")
        cells = self._cells_split_at_one()
        slope = lambda e: (e + shift) / (R - 1)  # noqa: E731 - constant c iff unbiased
        constant, found = self._constant_pieces(slope, cells, f"({what}) / (r - 1)")
        if constant:
            return Verdict(PROVED, "exact identity on each smooth piece",
                           f"{what} = {found} (r - 1): E_q[f] = {kl_name} for every p, q")
        x1, v1, x2, v2 = found
        low, high = _pair_across_one(cells, slope, x1, v1, x2, v2)
        example = _two_point_pair(self.f, low, high)
        return Verdict(REFUTED, "certified two-point counterexample",
                       f"{what} is not c (r - 1): E_q[f] != {kl_name} for the pair below", example)

    def locally_unbiased(self):
        f_one = self.f.xreplace({R: sp.S.One})
        if f_one.has(sp.zoo, sp.nan) or not f_one.is_finite:
            return Verdict(REFUTED, "exact evaluation", "f(1) is undefined", {"r": 1.0})
        if not (f_one.is_zero or _identically_zero(f_one)):
            if sign_of(f_one):
                return Verdict(REFUTED, "exact evaluation", f"f(1) = {f_one} != 0", _counter_r(1, f=sp.N(f_one, 17)))
            raise Undecided(f"cannot tell whether f(1) = {f_one} is 0")
        cells = self._cells_split_at_one()
        left = next(c for c in cells if c.b.exact is not None and c.b.exact == 1)
        right = next(c for c in cells if c.a.exact is not None and c.a.exact == 1)
        values = {}
        for side, cell, direction in (("left", left, "-"), ("right", right, "+")):
            for order in (1, 2):
                derivative = sp.diff(cell.expr, R, order)
                values[(side, order)] = value_at(derivative, ONE, direction)
        slope_jump = sign_of(values[("right", 1)] - values[("left", 1)]) if all(
            not isinstance(v, tuple) for v in values.values()) else None
        if slope_jump:
            return Verdict(REFUTED, "exact one-sided derivatives",
                           "f has a kink at r = 1, so E_q[f] / KL -> oo as p -> q",
                           {"r": 1.0, "f1_left": _fmt(sp.N(values[("left", 1)])),
                            "f1_right": _fmt(sp.N(values[("right", 1)]))})
        for side in ("left", "right"):
            second = values[(side, 2)]
            sign = sign_of(second - 1) if not isinstance(second, tuple) else None
            if sign is None:
                raise Undecided("cannot evaluate f''(1)")
            if sign:
                return Verdict(REFUTED, "exact second derivative",
                               f"f''(1) = {second} != 1, so E_q[f] / KL -> {second} as p -> q"
                               + ("" if left.expr == right.expr else f" (from the {side})"),
                               {"r": 1.0, "f2": _fmt(sp.N(second, 17))})
        if slope_jump is None:
            raise Undecided("cannot compare the one-sided slopes at r = 1")
        return Verdict(PROVED, "exact derivatives at r = 1", "f(1) = 0, f'(1-) = f'(1+), f''(1) = 1 on both sides")


def _growth_witness(expr, point: Point, power: int) -> dict:
    """A ratio where the growth shows: |f(r)| > 10 (1 + |log r|^power), certified; r is a
    string exp(t) when it is beyond double range.  (The refutation itself is the limit.)"""
    sign = -1 if point.is_zero_end else 1
    for j in range(3, 21):
        t = sign * mpf(2) ** j
        x = mpmath.exp(t)
        try:
            lo, hi = enclose(expr, x)
        except Uncertain:
            continue
        if min(abs(lo), abs(hi)) > 10 * (1 + abs(t) ** power) and lo * hi > 0:
            shown = _fmt(x) if mpf("1e-300") < x < mpf("1e300") else f"exp({int(t)})"
            return {"r": shown, "f": mpmath.nstr((lo + hi) / 2, 17), "r_to": str(point.exact),
                    "note": f"|f(r)| > 10 (1 + |log r|^{power}) here; the refutation is the limit"}
    return {"r_to": str(point.exact), "note": "the refutation is the limit; no finite witness below |log r| = 2**20"}


def _pair_across_one(cells, slope, x1, v1, x2, v2):
    """Two ratios r1 < 1 < r2 whose slopes differ (certified), from two that differ."""
    if (x1 < 1) != (x2 < 1):
        return (x1, x2) if x1 < 1 else (x2, x1)
    for other in SAMPLE_RATIOS:
        y = mpf(other.p) / other.q
        if (y < 1) == (x1 < 1):
            continue
        try:
            w = enclose(slope(cell_at(cells, y).expr), y)
        except (Undecided, Uncertain):
            continue
        for x, v in ((x1, v1), (x2, v2)):
            if v[1] < w[0] or w[1] < v[0]:
                return (x, y) if x < 1 else (y, x)
    raise Undecided("no certified pair of ratios on both sides of 1")


def _two_point_pair(f, r1, r2):
    """An explicit pair of two-point distributions with ratios r1 <= 1 <= r2, with exact
    E_q[f], KL(q||p) and KL(p||q) so anyone can re-check the bias."""
    r1 = sp.nsimplify(r1) if not isinstance(r1, sp.Basic) else r1
    r2 = sp.nsimplify(r2) if not isinstance(r2, sp.Basic) else r2
    r1, r2 = to_rational(mpf(r1)) if not isinstance(r1, sp.Rational) else r1, \
        to_rational(mpf(r2)) if not isinstance(r2, sp.Rational) else r2
    if r1 == r2:
        q = [sp.Rational(1, 2), sp.Rational(1, 2)]
        ratios = [sp.S.One, sp.S.One]
    else:
        q = [(r2 - 1) / (r2 - r1), (1 - r1) / (r2 - r1)]
        ratios = [r1, r2]
    p = [qi * ri for qi, ri in zip(q, ratios)]
    mean = sum(qi * f.xreplace({R: ri}) for qi, ri in zip(q, ratios))
    kl_qp = sum(-qi * sp.log(ri) for qi, ri in zip(q, ratios))
    kl_pq = sum(qi * ri * sp.log(ri) for qi, ri in zip(q, ratios))
    def number(value):
        """A float, or 20 digits where a float would show 0 for a non-zero value."""
        value = sp.N(value, 20)
        as_float = float(value)
        return as_float if as_float != 0 or value == 0 else str(value)

    return {
        "q": [str(x) for x in q], "p": [str(x) for x in p],
        "mean": number(mean), "kl_qp": number(kl_qp), "kl_pq": number(kl_pq),
        "note": "two-point distributions on {x1, x2}; mean = E_q[f(p/q)]",
    }


# --------------------------------------------------------------------------- driver


@_precise
def decide_one(analysis: Analysis, claim: str) -> Verdict:
    """One claim's verdict from an analysis (no time limit here: see ``decide``)."""
    claims = _Claims(analysis)
    if analysis.undefined_at is not None and claim != "zero_at_one":
        return claims._undefined()
    try:
        return getattr(claims, claim)()
    except Undecided as reason:
        return Verdict(UNDECIDED, "no proof or certified counterexample found", str(reason)[:300])
    except Uncertain as reason:
        return Verdict(UNDECIDED, "interval enclosure too wide", str(reason)[:300])


def decide(expr, claims, timeout: float = 5.0, jobs: int = 2, domain=()) -> dict:
    """Verdicts for symbolic claims, each under a hard time limit of ``timeout`` seconds
    (a timeout is ``undecided``).  ``domain``: conditions recorded by the parser
    (``parse_with_domain``) for f to be defined as written."""
    unknown = [c for c in claims if c not in POINTWISE + EXPECTATION + GRADIENT]
    if unknown:
        raise ValueError(f"not a symbolic claim: {unknown[0]}")
    analysis = run_all([(analyse, (expr, tuple(domain)))], timeout)[0]
    if isinstance(analysis, (TimedOut, Failed)):
        reason = (f"splitting f into smooth pieces took longer than {timeout:g} s"
                  if isinstance(analysis, TimedOut) else f"analysis failed: {analysis.error}")
        analysis = Analysis(expr, None, False, None, reason)
    results = run_all([(decide_one, (analysis, claim)) for claim in claims], timeout, jobs=jobs)
    verdicts = {}
    for claim, result in zip(claims, results):
        if isinstance(result, TimedOut):
            result = Verdict(UNDECIDED, "time limit", f"no verdict within {timeout:g} s")
        elif isinstance(result, Failed):
            result = Verdict(UNDECIDED, "internal error", result.error)
        verdicts[claim] = result
    return verdicts
