"""Certified arguments where sympy answers None or runs out of time.

- ``certified_sign_cover``: h > 0 (or >= 0) on a smooth piece, by interval arithmetic
  (mpmath.iv) with subdivision in u = log r.  Where h vanishes at an exact point z (r = 1
  most often), a Taylor bound with Lagrange remainder: h(z) = ... = h^(k-1)(z) = 0
  exactly and an enclosure of h^(k) near z that excludes 0 fix h's sign there.  The ends
  r -> 0 and r -> oo are enclosed in u over [T, oo): directly, or as g(T) > 0 and g' of
  one sign on the whole tail (g = h(e^u)), recursively.
- ``leading_term``: f(e^u) written as a sum of c u^k e^(a u) (an exponential polynomial
  in u = log r), and its dominant term at u -> +oo or -oo: the exact growth of f at the
  ends, without limits.

Every step is exact (sympy) or an interval enclosure; nothing is sampled.
"""
from __future__ import annotations

import mpmath
import sympy as sp
from mpmath import iv, mpf

from verify.layers.symbolic.certified import Point, Uncertain, enclose, point_enclosure
from verify.core.expression import RATIO
from verify.layers.symbolic.values import Undecided, _identically_zero

LOG_RATIO = sp.Dummy("u", real=True)  # u = log r
TAIL_STARTS = (2, 8, 32, 128, 720)  # |u| where a tail argument starts
TAIL_DEPTH = 3  # derivatives used to carry a sign out to u = +-oo
MAX_TAYLOR_ORDER = 6
NEIGHBOURHOODS = (mpf(2) ** -4, mpf(2) ** -8, mpf(2) ** -14)  # relative radius around a zero
MIN_WIDTH = mpf(2) ** -30  # no subdivision below this width in u
MAX_ENCLOSURES = 3000  # per piece: the argument gives up (undecided) beyond this


class _Budget:
    def __init__(self, count):
        self.left = count

    def spend(self):
        self.left -= 1
        if self.left < 0:
            raise Undecided(f"no certified cover within {MAX_ENCLOSURES} interval evaluations")


def _finite(lo, hi):
    return mpmath.isfinite(lo) and mpmath.isfinite(hi)


def _enclose_r(h, lo, hi, budget):
    budget.spend()
    try:
        return enclose(h, lo, hi)
    except Uncertain:
        return None


def _r_range(u_lo, u_hi):
    """An interval of r containing exp([u_lo, u_hi]) (outward rounded)."""
    value = iv.exp(iv.mpf([u_lo, u_hi]))
    return mpf(value.a), mpf(value.b)


def _cover(h, u_lo, u_hi, budget, strict_positive):
    """h > 0 (>= 0 if not strict_positive) for every r with log r in [u_lo, u_hi]."""
    stack = [(u_lo, u_hi)]
    forms = _forms(h)
    while stack:
        lo, hi = stack.pop()
        enclosures = []
        for form in forms:
            enclosure = _enclose_r(form, *_r_range(lo, hi), budget)
            enclosures.append(enclosure)
            if enclosure is not None and (enclosure[0] > 0 or (not strict_positive and enclosure[0] >= 0)):
                break
        else:
            enclosure = None
        if enclosure is not None:
            continue
        enclosure = enclosures[0]
        if enclosure is not None and enclosure[1] < 0:
            return False  # negative there: a refutation, not for this argument
        if hi - lo < MIN_WIDTH:
            return False
        middle = (lo + hi) / 2
        stack += [(middle, hi), (lo, middle)]
    return True


def _forms(h):
    """Equal forms of h whose enclosures differ: as given, and over a common denominator
    (which often removes a cancellation such as (r - 1)/r at r -> oo)."""
    forms = [h]
    try:
        together = sp.together(h)
        if together != h:
            forms.append(together)
    except Exception:  # noqa: BLE001 - a sympy failure only loses a form
        pass
    return forms


def _tail(h, start, side, depth, budget, strict_positive):
    """h(r) > 0 (>= 0) for log r in [start, oo) (side +1) or (-oo, start] (side -1),
    enclosed in u = log r: directly, or as h > 0 at the start with h moving away from 0
    on the whole tail (h' >= 0 going right, h' <= 0 going left; dh/du = r dh/dr)."""
    lo, hi = (start, mpmath.inf) if side > 0 else (-mpmath.inf, start)
    budget.spend()
    dominated = dominant_sign_on_tail(h, side * start, side)
    if dominated is not None:
        return dominated > 0
    for form in _forms(h):
        budget.spend()
        try:
            enclosure = enclose(form.xreplace({RATIO: sp.exp(LOG_RATIO)}), lo, hi, variable=LOG_RATIO)
        except Uncertain:
            continue
        if enclosure[0] > 0 or (not strict_positive and enclosure[0] >= 0):
            return True
    if depth == 0:
        return False
    budget.spend()
    try:
        at_start = enclose(h, *_r_range(start, start))  # r = e^start, enclosed
    except Uncertain:
        return False
    if not at_start[0] > 0:
        return False
    slope = sp.diff(h, RATIO)
    return _tail(slope if side > 0 else -slope, start, side, depth - 1, budget, False)


def _taylor_sign(h, z, side_lo, side_hi, sides):
    """h >= 0 on [side_lo, side_hi] (an r-interval with z at one end or inside), where
    h(z) = 0 exactly: the first non-vanishing derivative h^(k)(z), enclosed with all
    lower ones over the interval (finite, so h is C^k there), fixes the sign of
    h(r) = h^(k)(xi) (r - z)^k / k!.  ``sides``: (-1,), (1,) or (-1, 1), the sides of z
    that belong to the piece.  Returns True when h > 0 there except at z."""
    derivatives = [h]
    for k in range(1, MAX_TAYLOR_ORDER + 1):
        derivatives.append(sp.diff(derivatives[-1], RATIO))
        value = derivatives[k].xreplace({RATIO: z})
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            return False
        if _identically_zero(value):
            continue
        for d in derivatives:
            try:
                lo, hi = enclose(d, side_lo, side_hi)
            except Uncertain:
                return False
            if not _finite(lo, hi):
                return False
        lo, hi = enclose(derivatives[k], side_lo, side_hi)
        if not (lo > 0 or hi < 0):
            return False
        sign = 1 if lo > 0 else -1
        if k % 2 == 0:
            return sign > 0
        # odd order: h changes sign at z; positive only on the side where (r - z)^k h^(k) > 0
        return len(sides) == 1 and sign == sides[0]
    return False


def _zero_points(h, a: Point, b: Point):
    """Exact points of [a, b] where h vanishes exactly: r = 1 and the exact finite ends."""
    candidates = [sp.S.One]
    for end in (a, b):
        if end.exact is not None and not end.is_zero_end and not end.is_infinite_end:
            candidates.append(end.exact)
    zeros = []
    for z in candidates:
        if any(z == other for other in zeros):
            continue
        inside = (a.is_zero_end or a.lo <= _approx(z)) and (b.is_infinite_end or _approx(z) <= b.hi)
        if not inside:
            continue
        value = h.xreplace({RATIO: z})
        if value.has(sp.nan, sp.zoo) or not value.is_finite:
            continue
        if _identically_zero(value):
            zeros.append(z)
    return zeros


def _approx(z):
    lo, hi = point_enclosure(z, mpf(1))
    return (lo + hi) / 2


def certified_sign_cover(h, a: Point, b: Point, strict_positive: bool, allowed_zeros=None) -> bool:
    """True when h > 0 on the closed piece [a, b] (its finite ends included, as limits)
    except at exact zeros of h (only those in ``allowed_zeros`` when given; r = 1 or an
    exact piece end otherwise), and h >= 0 at those zeros; False when this argument cannot
    show it (never a refutation).  With ``strict_positive`` False, h >= 0 is enough
    everywhere."""
    budget = _Budget(MAX_ENCLOSURES)
    zeros = _zero_points(h, a, b)
    if allowed_zeros is not None and any(z not in allowed_zeros for z in zeros):
        return False  # a zero elsewhere, even at a piece end, breaks a strict claim
    with mpmath.workprec(200):
        # u-intervals to cover, after cutting out a neighbourhood of each zero
        lo_u = None if a.is_zero_end else mpf(iv.log(iv.mpf(a.lo)).a) if a.lo > 0 else None
        hi_u = None if b.is_infinite_end else mpf(iv.log(iv.mpf(b.hi)).b)
        if not a.is_zero_end and lo_u is None:
            return False
        holes = []
        for z in sorted(zeros, key=_approx):
            zu = mpmath.log(_approx(z))
            for radius in NEIGHBOURHOODS:
                hole = (zu - radius, zu + radius)
                if lo_u is not None:
                    hole = (max(hole[0], lo_u), hole[1])
                if hi_u is not None:
                    hole = (hole[0], min(hole[1], hi_u))
                r_lo, r_hi = _r_range(*hole)
                sides = (1,) if a.exact is not None and z == a.exact else (-1,) if b.exact is not None and z == b.exact \
                    else (-1, 1)
                if _taylor_sign(h, z, r_lo, r_hi, sides):
                    holes.append(hole)
                    break
            else:
                return False
        # tails
        for start in TAIL_STARTS:
            left_start = lo_u if lo_u is not None else -mpf(start)
            right_start = hi_u if hi_u is not None else mpf(start)
            if left_start >= right_start and (lo_u is None or hi_u is None):
                continue
            if lo_u is None and not _tail(h, left_start, -1, TAIL_DEPTH, budget, strict_positive):
                continue
            if hi_u is None and not _tail(h, right_start, +1, TAIL_DEPTH, budget, strict_positive):
                continue
            break
        else:
            return False
        # the middle: [left_start, right_start] minus the holes
        pieces, position = [], left_start
        for hole_lo, hole_hi in sorted(holes):
            if hole_lo > position:
                pieces.append((position, min(hole_lo, right_start)))
            position = max(position, hole_hi)
        if position < right_start:
            pieces.append((position, right_start))
        return all(_cover(h, lo, hi, budget, strict_positive) for lo, hi in pieces if hi > lo)


# ---------------------------------------------------------------- leading terms in log r


def exponential_polynomial(expr, rest=None):
    """f(e^u) as {(a, k): c}, meaning the sum of c u^k e^(a u) with rational a, integer
    k and exact real constants c (terms with equal (a, k) summed); None when f(e^u) is
    not of that form.  With a list ``rest``, terms not of that form are put there (as
    expressions in u) instead."""
    g = sp.expand(sp.powsimp(expr.xreplace({RATIO: sp.exp(LOG_RATIO)}), combine="exp"))
    terms: dict = {}
    for term in sp.Add.make_args(g):
        parsed = _exponential_term(term)
        if parsed is None:
            if rest is None:
                return None
            rest.append(term)
            continue
        coefficient, a, k = parsed
        terms[(a, k)] = terms.get((a, k), sp.S.Zero) + coefficient
    return terms


def _exponential_term(term):
    """(c, a, k) for a term c u^k e^(a u), else None."""
    coefficient, a, k = sp.S.One, sp.S.Zero, 0
    for factor in sp.Mul.make_args(term):
        if not factor.has(LOG_RATIO):
            if not (factor.is_real and factor.is_finite):
                return None
            coefficient *= factor
        elif factor == LOG_RATIO:
            k += 1
        elif factor.is_Pow and factor.base == LOG_RATIO and factor.exp.is_Integer:
            k += int(factor.exp)
        elif isinstance(factor, sp.exp) or (factor.is_Pow and factor.base is sp.E):
            argument = sp.expand(factor.args[0] if isinstance(factor, sp.exp) else factor.exp)
            slope = argument.coeff(LOG_RATIO, 1)
            rest = sp.expand(argument - slope * LOG_RATIO)
            if rest.has(LOG_RATIO) or not slope.is_Rational:
                return None
            a += slope
            coefficient *= sp.exp(rest)
        else:
            return None
    return coefficient, a, k


def leading_term(expr, side: int):
    """(a, k, c): f(r) ~ c r^a |log r|^k as r -> oo (side +1) or r -> 0 (side -1), with
    c != 0 certified; (None, None, 0) when f(e^u) is identically 0; None when f is not an
    exponential polynomial in log r or a leading coefficient cannot be shown non-zero."""
    terms = exponential_polynomial(expr)
    if terms is None:
        return None
    return _leading(terms, side)


def _leading(terms, side):
    """The dominant (a, k, sign) of {(a, k): c} at u -> side * oo (see leading_term)."""
    # order of growth as u -> side * oo: e^(a u) first (by side * a), then |u|^k
    for (a, k) in sorted(terms, key=lambda ak: (side * ak[0], ak[1]), reverse=True):
        c = terms[(a, k)]
        if _identically_zero(c):
            continue
        try:
            lo, hi = point_enclosure(c, mpf(1))
        except Uncertain:
            return None
        if not (lo > 0 or hi < 0):
            return None  # cannot tell whether this term cancels
        return a, k, (1 if lo > 0 else -1) * (1 if side > 0 or k % 2 == 0 else -1)
    return None, None, 0


# ----------------------------------------------------------- certified root isolation

SPLIT = mpf(63) / 128  # off-centre, so that u = 0 (r = 1) is not a split point


def _sign_on(h, u_lo, u_hi, budget):
    """+1 / -1 when h has that sign on all of log r in [u_lo, u_hi] (certified), else None."""
    for form in _forms(h):
        enclosure = _enclose_r(form, *_r_range(u_lo, u_hi), budget)
        if enclosure is not None and (enclosure[0] > 0 or enclosure[1] < 0):
            return 1 if enclosure[0] > 0 else -1
    return None


def certified_roots(g, a: Point, b: Point):
    """The zeros of g in the open piece (a, b), each enclosed to a relative width of
    2**-100, by interval arithmetic alone: the tails have one sign (``_tail``); in the
    middle, an interval where g excludes 0 has no zero, and one where g' excludes 0 (g
    strictly monotone) with a certified sign change at its ends has exactly one.
    Raises Undecided when subdivision does not settle it."""
    budget = _Budget(MAX_ENCLOSURES)
    slope = sp.diff(g, RATIO)
    with mpmath.workprec(200):
        lo_u = None if a.is_zero_end else mpf(iv.log(iv.mpf(a.hi)).b)
        hi_u = None if b.is_infinite_end else mpf(iv.log(iv.mpf(b.lo)).a)
        for start in TAIL_STARTS:
            left = lo_u if lo_u is not None else -mpf(start)
            right = hi_u if hi_u is not None else mpf(start)
            if left >= right:
                continue
            if lo_u is None and not (_tail(g, left, -1, TAIL_DEPTH, budget, True)
                                     or _tail(-g, left, -1, TAIL_DEPTH, budget, True)):
                continue
            if hi_u is None and not (_tail(g, right, 1, TAIL_DEPTH, budget, True)
                                     or _tail(-g, right, 1, TAIL_DEPTH, budget, True)):
                continue
            break
        else:
            raise Undecided(f"cannot show that {g} keeps one sign towards r = 0 or r = oo")
        if lo_u is not None and hi_u is not None and lo_u >= hi_u:
            raise Undecided(f"cannot separate the ends of ({a}, {b})")
        # no zero may hide inside an end's own enclosure (or next to an exact end)
        for end, gap in ((a, None if lo_u is None else (mpf(iv.log(iv.mpf(a.lo)).a), lo_u)),
                         (b, None if hi_u is None else (hi_u, mpf(iv.log(iv.mpf(b.hi)).b)))):
            if gap is None or _sign_on(g, *gap, budget) is not None:
                continue
            if end.exact is not None and _identically_zero(g.xreplace({RATIO: end.exact})) \
                    and _sign_on(slope, *gap, budget) is not None:
                continue  # the only zero there is the end itself, outside the open piece
            raise Undecided(f"cannot tell whether {g} vanishes next to r = {end}")
        found = []
        stack = [(left, right)]
        while stack:
            lo, hi = stack.pop()
            if _sign_on(g, lo, hi, budget) is not None:
                continue
            if _sign_on(slope, lo, hi, budget) is not None:
                ends = (_sign_on(g, lo, lo, budget), _sign_on(g, hi, hi, budget))
                if None not in ends:
                    if ends[0] != ends[1]:
                        found.append(_bisect(g, lo, hi, ends[0], budget))
                    continue
            if hi - lo < MIN_WIDTH:
                raise Undecided(f"cannot isolate the zeros of {g} near r = {mpmath.nstr(mpmath.exp(lo), 20)}")
            middle = lo + (hi - lo) * SPLIT
            stack += [(middle, hi), (lo, middle)]
        # the open piece excludes its ends: a zero enclosed at an end is not inside
        return sorted(found, key=lambda p: p.lo)


def _bisect(g, lo, hi, sign_lo, budget):
    """Enclose the one zero of g (strictly monotone) with log r in [lo, hi]."""
    r_lo, r_hi = _r_range(lo, lo)[1], _r_range(hi, hi)[0]
    for _ in range(400):
        if r_hi - r_lo <= mpf(2) ** -100 * r_hi:
            return Point(None, r_lo, r_hi)
        middle = (r_lo + r_hi) / 2
        sign = _sign_on_r(g, middle, budget)
        if sign is None:
            break
        if sign == sign_lo:
            r_lo = middle
        else:
            r_hi = middle
    if r_hi - r_lo <= mpf(2) ** -60 * r_hi:
        return Point(None, r_lo, r_hi)
    raise Undecided(f"cannot isolate a zero of {g} near r = {mpmath.nstr(r_lo, 20)}")


def _sign_on_r(g, x, budget):
    budget.spend()
    try:
        lo, hi = point_enclosure(g, x)
    except Uncertain:
        return None
    return 1 if lo > 0 else -1 if hi < 0 else None


def bounded_growth_power(expr, side: int, max_power: int):
    """The least k <= max_power such that the k-th derivative of g(u) = f(e^u) in u has
    a finite enclosure on a whole tail u >= T (side +1) or u <= -T (side -1): then
    |f| <= A + B |log r|^k at that end (integrate k times).  None if none is found."""
    g = expr.xreplace({RATIO: sp.exp(LOG_RATIO)})
    derivative = g
    for k in range(max_power + 1):
        if k:
            derivative = sp.diff(derivative, LOG_RATIO)
        for form in _forms(derivative):
            for start in TAIL_STARTS:
                lo, hi = (mpf(start), mpmath.inf) if side > 0 else (-mpmath.inf, -mpf(start))
                try:
                    enclosure = enclose(form, lo, hi, variable=LOG_RATIO)
                except Uncertain:
                    continue
                if _finite(*enclosure):
                    return k
    return None


def dominant_sign_on_tail(h, distance, side: int):
    """The sign of h for every |log r| >= distance on one side (side +1: r -> oo, -1:
    r -> 0), when h(e^u) is an exponential polynomial whose leading term c u^k e^(a u)
    outweighs all the others there: each other term divided by it is
    (c_i / c) |u|^m e^(-b |u|) with b >= 0, non-increasing in |u| once |u| >= m / b, so
    its size on the tail is at most its size at |u| = distance; if those sizes add up to
    less than 1 (interval arithmetic), h has the leading term's sign.  None otherwise."""
    distance = mpf(distance)
    if distance < 1:
        return None
    others = []  # terms that are not c u^k e^(a u): allowed if sympy knows their sign
    terms = exponential_polynomial(h, others)
    if not terms:
        return None
    lead = _leading(terms, side)
    if lead is None or lead[0] is None:
        return None
    a, k, sign = lead
    for term in others:
        if not ((sign > 0 and term.is_nonnegative) or (sign < 0 and term.is_nonpositive)):
            return None
    c = terms[(a, k)]
    total = iv.mpf(0)
    try:
        c_enclosure = iv.mpf(point_enclosure(c, mpf(1)))
        for (a_i, k_i), c_i in terms.items():
            if (a_i, k_i) == (a, k) or _identically_zero(c_i):
                continue
            decay = side * (a - a_i)  # >= 0: the leading term grows at least as fast
            power = k_i - k
            if decay < 0 or (decay == 0 and power >= 0):
                return None
            if decay > 0 and power > 0 and distance < power / decay:
                return None  # |u|^m e^(-b |u|) still increasing at this distance
            ratio = iv.mpf(point_enclosure(c_i, mpf(1))) / c_enclosure
            size = abs(ratio) * iv.mpf(distance) ** int(power) * iv.exp(-iv.mpf(decay.p) / decay.q * distance)
            total += size
    except (Uncertain, ZeroDivisionError):
        return None
    return sign if mpf(total.b) < 1 else None
