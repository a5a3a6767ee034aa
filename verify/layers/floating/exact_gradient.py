"""The exact gradient the backward-pass claims compare with: d/dlogq f(e^(logp - logq))
= -g'(t), with g(t) = f(e^t) and t = logp - logq formed exactly.

mpmath evaluates sympy's derivative of the expression (a clamp's derivative is a
Heaviside factor, Abs's a sign), its precision doubled until two evaluations agree (as
``reference.py`` does for f).  At a kink, a Heaviside or sign whose argument is exactly 0
(at ``PROBE_BITS`` and again at ``KINK_BITS``), the derivative is undefined: the two
one-sided derivatives are evaluated ``KINK_OFFSET`` max(1, |t|) away on each side (each
piece is analytic there, so this moves them by far less than any ulp), and the claims
accept a gradient between them or within the budget of one of them (docs/claims.md).

At logp = -inf (r = 0: a masked token) the value and the gradient are the limits as
t -> -inf (``limit_at_minus_infinity``).  For the 16-bit sweeps: ``derivative_taylor``,
a Taylor model of g' near t = 0, where the float64 enclosure of g' cancels."""
from __future__ import annotations

from functools import lru_cache

import mpmath
import sympy as sp

from verify.layers.floating import interval

START_BITS = 128
MAX_BITS = 8192
ZERO_BITS = 8192  # an exact 0 at low precision is looked at again here (as reference.py does)
AGREEMENT = mpmath.mpf(2) ** -80
TINY = mpmath.mpf(2) ** -1200
PROBE_BITS = 256  # a kink is looked for here, and confirmed at KINK_BITS
KINK_BITS = 4096
KINK_OFFSET = mpmath.mpf(2) ** -300
KINK_CHECK_OFFSET = mpmath.mpf(2) ** -600  # the one-sided value must not move between the two
LIMIT_BITS = 256


class Kink(ArithmeticError):
    """A Heaviside or sign evaluated exactly at 0: the derivative is undefined there."""


def _heaviside(x, h0=None):
    if mpmath.isnan(x):
        return x
    if x == 0:
        raise Kink
    return mpmath.mpf(1) if x > 0 else mpmath.mpf(0)


def _sign(x):
    if mpmath.isnan(x):
        return x
    if x == 0:
        raise Kink
    return mpmath.mpf(1) if x > 0 else mpmath.mpf(-1)


_KINKED = {"Heaviside": _heaviside, "sign": _sign}


def _real(value):
    """An mpf, or None for a complex or NaN result."""
    if isinstance(value, (int, float)):
        value = mpmath.mpf(value)
    if not isinstance(value, mpmath.mpf) or mpmath.isnan(value):
        return None
    return value


def _settle(evaluate):
    """A value two evaluations agree on, the second at twice the precision, or None.
    ``evaluate(bits)`` gives None where it cannot say at that precision (a kink that a
    cancellation fakes, an offset lost in rounding): the next precision is tried."""
    bits = START_BITS
    previous = evaluate(bits)
    while bits < MAX_BITS:
        bits *= 2
        current = evaluate(bits)
        if current is None or previous is None:
            previous = current
            continue
        if not (mpmath.isfinite(current) and mpmath.isfinite(previous)):
            return None
        if current == 0 and previous == 0 and bits < ZERO_BITS:
            bits = ZERO_BITS // 2
            previous = evaluate(bits)
            continue
        if abs(current - previous) <= AGREEMENT * abs(current) or max(abs(current), abs(previous)) <= TINY:
            return current
        previous = current
    return None


class ExactGradient:
    """-g'(t) at exact inputs, for a ``Reference``'s expression g(t) = f(e^t)."""

    def __init__(self, reference):
        self.log_ratio = reference.log_ratio
        self.expression = reference.expression
        self.derivative = sp.diff(self.expression, self.log_ratio)
        self._function = sp.lambdify(self.log_ratio, self.derivative, modules=[_KINKED, "mpmath"])
        self._cache: dict = {}
        self._at_zero = None

    def _evaluate(self, t, bits, offset=None):
        """g' at t (+ offset) at ``bits`` of precision; None where undefined or at a kink."""
        with mpmath.workprec(bits):
            try:
                x = +t if offset is None else t + offset
                if offset is not None and x == t:
                    return None  # the offset is lost at this precision
                return _real(self._function(x))
            except (Kink, ZeroDivisionError, ValueError, TypeError, OverflowError):
                return None

    def _kink_at(self, t) -> bool:
        for bits in (PROBE_BITS, KINK_BITS):
            with mpmath.workprec(bits):
                try:
                    self._function(+t)
                    return False
                except Kink:
                    continue
                except (ZeroDivisionError, ValueError, TypeError, OverflowError):
                    return False
        return True

    def _one_sided(self, t, side):
        """The one-sided derivative at a kink: g' at KINK_OFFSET max(1, |t|) on that side,
        if it agrees with g' at KINK_CHECK_OFFSET (so the derivative is bounded there and
        that is its limit), else None: a derivative that grows without bound at the kink
        (t log|t| at 0) has no finite one-sided value, and the pair is left undefined."""
        scale = max(1, abs(t))
        near = _settle(lambda bits: self._evaluate(t, bits, side * KINK_OFFSET * scale))
        nearer = _settle(lambda bits: self._evaluate(t, bits, side * KINK_CHECK_OFFSET * scale))
        if near is None or nearer is None or abs(near - nearer) > AGREEMENT * max(1, abs(nearer)):
            return None
        return nearer

    def derivative_at(self, t):
        """(low, high) of g' at the exact t: equal where g is differentiable, the two
        one-sided derivatives (in order) at a kink; None where g' is undefined."""
        if t in self._cache:
            return self._cache[t]
        found = None
        if self._kink_at(t):
            sides = [self._one_sided(t, side) for side in (-1, 1)]
            if None not in sides:
                found = (min(sides), max(sides))
        else:
            value = _settle(lambda bits: self._evaluate(t, bits))
            found = None if value is None else (value, value)
        self._cache[t] = found
        return found

    def at(self, logp: float, logq: float):
        """(low, high) of the exact gradient with respect to logq, -g'(t), at logp and
        logq (logq finite; logp may be -inf: the limit); None where undefined."""
        if logp == -mpmath.inf:
            limit = self.at_zero()[1]
            return None if limit is None else (limit, limit)
        found = self.derivative_at(mpmath.fsub(logp, logq, exact=True))
        if found is None:
            return None
        return (mpmath.fneg(found[1], exact=True), mpmath.fneg(found[0], exact=True))  # no rounding

    def at_zero(self):
        """(f(0), gradient at r = 0): lim g(t) and lim -g'(t) as t -> -inf (None where no limit is found)."""
        if self._at_zero is None:
            value = limit_at_minus_infinity(self.expression, self.log_ratio)
            slope = limit_at_minus_infinity(self.derivative, self.log_ratio)
            self._at_zero = (value, None if slope is None else mpmath.fneg(slope, exact=True))
        return self._at_zero


@lru_cache(maxsize=64)
def limit_at_minus_infinity(expression, symbol):
    """lim expression as symbol -> -inf, an mpf (+-inf allowed), or None: mpmath at -inf
    first (every operation extended by continuity, an indeterminate form is NaN), else
    sympy's limit."""
    function = sp.lambdify(symbol, expression, modules=[_KINKED, "mpmath"])
    with mpmath.workprec(LIMIT_BITS):
        try:
            value = _real(function(mpmath.mpf("-inf")))
        except (Kink, ZeroDivisionError, ValueError, TypeError, OverflowError):
            value = None
        if value is not None:
            return value
        try:
            limit = sp.limit(expression, symbol, -sp.oo)
        except Exception:  # noqa: BLE001 - sympy cannot say: no reference there
            return None
        if limit == sp.oo:
            return mpmath.mpf("inf")
        if limit == -sp.oo:
            return mpmath.mpf("-inf")
        if limit.is_number and limit.is_real:
            return mpmath.mpf(sp.Float(limit, 80)._mpf_) if not limit.is_Integer else mpmath.mpf(int(limit))
        return None


@lru_cache(maxsize=64)
def derivative_enclosure(expression, symbol):
    """The certified float64 enclosure of g' (``interval.IntervalFunction``) for the sweeps,
    or None.  Each sign(x) of the derivative (Abs's) is written 2 Heaviside(x) - 1: at a
    kink (x = 0 exactly) its enclosure is then [-1, 1], both one-sided derivatives and
    everything between, where sign's own enclosure is [0, 0] (sympy's sign(0)), which the
    kink rule must not be decided on."""
    derivative = sp.diff(expression, symbol).replace(sp.sign, lambda x: 2 * sp.Heaviside(x) - 1)
    try:
        return interval.IntervalFunction(derivative, symbol)
    except (interval.Unsupported, ValueError, TypeError):
        return None


def _branch_at_zero(expression, symbol):
    """The expression with each Min, Max and Abs replaced by the branch it takes at t = 0
    (Unsupported at a tie)."""
    def rec(node):
        if not node.args:
            return node
        args = [rec(a) for a in node.args]
        if isinstance(node, (sp.Min, sp.Max, sp.Abs)):
            values = [sp.N(a.subs(symbol, 0), 40) for a in args]
            if isinstance(node, sp.Abs):
                if values[0] == 0:
                    raise interval.Unsupported("Abs at 0")
                return args[0] if values[0] > 0 else -args[0]
            best = min(values) if isinstance(node, sp.Min) else max(values)
            winners = [a for a, v in zip(args, values) if v == best]
            if len(winners) != 1:
                raise interval.Unsupported("a tie at t = 0")
            return winners[0]
        return node.func(*args)
    return rec(expression)


def derivative_taylor(expression, symbol):
    """A Taylor model of g' for |t| <= TAYLOR_RADIUS (``interval.TaylorModel``), or None.
    The model of g itself is built first: it fails unless every clamp keeps one branch on
    that whole ball, which makes g' the derivative of that branch there."""
    try:
        interval.TaylorModel(expression, symbol)
        return interval.TaylorModel(sp.diff(_branch_at_zero(expression, symbol), symbol), symbol)
    except (interval.Unsupported, ImportError, ValueError, TypeError, ZeroDivisionError, AssertionError,
            AttributeError):  # a constant derivative (k1's): its series is a number, and no model is needed
        return None
