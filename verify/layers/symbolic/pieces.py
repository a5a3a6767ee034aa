"""Pieces and roots: zeros of an expression on an interval of (0, inf) (exact real-root
isolation, solveset, or certified sign changes between exact critical points), and the
split of f into smooth pieces where Abs, Min and Max switch."""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp
from mpmath import mpf

from verify.layers.symbolic.certified import Point, Uncertain, constant_enclosure, interior_point, sign_at, to_rational
from verify.core.expression import RATIO
from verify.layers.symbolic.bounds import certified_roots
from verify.core.timelimit import StepTimeExceeded, cpu_limited
from verify.layers.symbolic.values import (
    INF, MAX_CELLS, MAX_ROOT_DEPTH, ZERO, Undecided, _identically_zero, _NONSMOOTH, sign_of, value_at,
)

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
    for variable in (RATIO, _LOG_RATIO):
        expr = g if variable == RATIO else sp.expand_log(g.xreplace({RATIO: sp.exp(_LOG_RATIO)}))
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
            if variable == RATIO:
                point = Point.at(low) if low == high else Point(None, *_rational_hull(low, high))
            elif low == high:
                point = Point.at(sp.exp(low))
            else:
                point = Point(None, constant_enclosure(sp.exp(low))[0], constant_enclosure(sp.exp(high))[1])
            if (variable == RATIO and high <= 0) or point.hi <= 0:
                continue
            if _strictly_inside(point, a, b):
                points.append(point)
        return _sort_points(points)
    return None


def _rational_hull(low, high):
    return constant_enclosure(low)[0], constant_enclosure(high)[1]


# CPU seconds for one solveset call: it can spend minutes on a transcendental equation
# that it will not solve; the certified root isolation takes over.
SOLVESET_SECONDS = 1.0


def _exact_solutions(g, a: Point, b: Point):
    """Zeros of g in (a, b) from solveset (or exact real-root isolation of a polynomial
    numerator), or None when neither gives an explicit set."""
    polynomial = _polynomial_solutions(g, a, b)  # exact, and never hangs like solveset can
    if polynomial is not None:
        return polynomial
    try:
        with cpu_limited(SOLVESET_SECONDS):
            solutions = sp.solveset(g, RATIO, _interval(a, b))
    except (Exception, StepTimeExceeded):  # noqa: BLE001 - a sympy failure is "not settled", never a verdict
        return None
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
    derivative = sp.diff(h, RATIO)
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
    try:  # interval arithmetic alone, before sympy's turning points (often a deep recursion)
        return [_snap(g, point) for point in certified_roots(g, a, b)]
    except Undecided:
        pass
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
        if point.lo <= inside.lo and inside.hi <= point.hi and _identically_zero(g.xreplace({RATIO: candidate})):
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


def cell_sample(cell: Cell):
    """A point strictly inside the piece that prints exactly: a double near its
    geometric middle, or a power of two (beyond double range too); None if none fits."""
    def inside(x):
        return (cell.a.is_zero_end or cell.a.hi < x) and (cell.b.is_infinite_end or x < cell.b.lo)

    with mpmath.workprec(200):
        if cell.a.is_zero_end and cell.b.is_infinite_end:
            return mpf(1) / 2
        if cell.a.is_zero_end:
            exponent = int(mpmath.floor(mpmath.log(cell.b.lo, 2))) - 8
        elif cell.b.is_infinite_end:
            exponent = int(mpmath.ceil(mpmath.log(cell.a.hi, 2))) + 8
        else:
            middle = mpmath.sqrt(cell.a.hi * cell.b.lo)
            if mpf("1e-300") < middle < mpf("1e300") and inside(mpf(float(middle))):
                return mpf(float(middle))
            exponent = int(mpmath.nint(mpmath.log(middle, 2)))
        x = mpmath.ldexp(mpf(1), exponent)
        return x if inside(x) else None


def cell_at(cells, x: mpf) -> Cell:
    for cell in cells:
        if (cell.a.is_zero_end or cell.a.hi < x) and (cell.b.is_infinite_end or x < cell.b.lo):
            return cell
    raise Undecided(f"r = {mpmath.nstr(x, 20)} is at or too near a breakpoint")


