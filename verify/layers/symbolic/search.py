"""The certified search for counterexamples: scan points of (0, inf) where a claim may
fail, each failure certified by interval arithmetic at the very number shown."""
from __future__ import annotations

import mpmath
from mpmath import mpf

from verify.layers.symbolic.certified import Point, Uncertain, enclose
from verify.layers.symbolic.values import SAMPLE_RATIOS, WORKING_BITS, _fmt

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
    tiny = None  # a certified chord whose excess is lost in rounding at 30 digits
    for step in (64, 16, 4, 1):  # wide chords first: a plainer counterexample
        for left, right in zip(SCAN[::step], SCAN[2 * step::step]):
            found = _chord(f, left, right)
            if found is None:
                continue
            if found[3] > PLAIN_EXCESS * (1 + abs(found[4])):
                return found[:4]
            tiny = tiny or found[:4]
    return tiny


PLAIN_EXCESS = mpf(10) ** -30  # a chord excess anyone can see at 60 digits


def _chord(f, left, right):
    """(a, m, b, excess, upper bound of f(m)) if f(m) > (f(a) + f(b))/2 is certified at
    m = (a + b)/2, else None."""
    middle = mpmath.ldexp(mpmath.fadd(left, right, exact=True), -1)
    try:
        fa, fb, fm = enclose(f, left), enclose(f, right), enclose(f, middle)
    except Uncertain:
        return None
    excess = fm[0] - (fa[1] + fb[1]) / 2
    return (left, middle, right, excess, fm[1]) if excess > 0 else None


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
            return found[:4]
    return None


