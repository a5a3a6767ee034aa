"""A sympy expression in t = log r evaluated on :class:`~verify.layers.gradients.balls.Ball`
arrays: every value with a radius that holds (the library coefficients of the sequence
gradients: clamps make them Piecewise, which the exact layer's evaluator does not take).

Supported: t, numbers (exact where the float is the number, else within one rounding),
E and pi, +, *, integer powers (a negative one through a reciprocal bounded away from
0), exp, expm1, log, log1p, Abs, Min, Max and Piecewise.  A Piecewise's conditions are
decided per element from the balls of (lhs - rhs) in three-valued logic (And, Or, Not,
ITE): where the radius leaves a condition open, every branch that may be taken counts
and the result is their hull, so a point within rounding of a kink gets both sides.
Anything else is refused (:class:`Unsupported`): the caller leaves the term out, it is
never approximated.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from sympy.core.relational import Relational
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import And, BooleanFalse, BooleanTrue, ITE, Not, Or

from verify.core.dtypes import EPS
from verify.layers.gradients.balls import TINY, Ball, _up
from verify.layers.gradients.symbols import LOG_RATIO

__all__ = ["Unsupported", "compile_ball", "evaluate_ball"]


class Unsupported(ValueError):
    """The expression has a node this evaluator does not bound."""


def compile_ball(expr) -> sp.Expr:
    """``expr`` (in LOG_RATIO) checked for support, with exp(a) - 1 as expm1(a) and
    log(1 + a) as log1p(a) (their accuracy near 0); Unsupported otherwise."""
    from sympy.codegen.cfunctions import expm1, log1p
    from sympy.codegen.rewriting import expm1_opt, log1p_opt, optimize

    if not isinstance(expr, sp.Basic):   # never a string: nothing here parses text
        raise Unsupported(f"expected a sympy expression, got {type(expr).__name__}")
    expr = optimize(expr, [expm1_opt, log1p_opt])
    allowed = (sp.Add, sp.Mul, sp.Pow, sp.exp, sp.log, sp.Abs, sp.Min, sp.Max, sp.Piecewise, ExprCondPair,
               expm1, log1p, Relational, And, Or, Not, ITE, BooleanTrue, BooleanFalse)
    for node in sp.preorder_traversal(expr):
        if node == LOG_RATIO or node in (sp.E, sp.pi):
            continue
        if node.is_Number:
            if not (node.is_Rational or node.is_Float) or not math.isfinite(float(node)):
                raise Unsupported(f"constant {node}")
            continue
        if not isinstance(node, allowed):
            raise Unsupported(f"{type(node).__name__} {node}")
        if isinstance(node, sp.Pow) and not (node.exp.is_Integer or node.base == sp.E):
            raise Unsupported(f"power {node}")
        if isinstance(node, Relational) and node.rel_op not in (">=", ">", "<=", "<", "==", "!="):
            raise Unsupported(f"relation {node.rel_op}")
    return expr


def evaluate_ball(expr, t: Ball) -> Ball:
    """``expr`` (from :func:`compile_ball`) at the ball ``t``, elementwise."""
    return _Evaluation(t).value(expr)


def _constant(value, shape) -> Ball:
    number = float(value)
    exact = math.isfinite(number) and value.is_Rational and sp.Rational(number) == value
    radius = 0.0 if exact else EPS * abs(number) + TINY
    return Ball(np.full(shape, number), np.full(shape, radius))


def _reciprocal(x: Ball) -> Ball:
    """1/x; an infinite radius where the ball reaches 0 (|1/X - 1/x| <= r / (|x| (|x| - r)))."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = 1.0 / x.mid
        gap = (np.abs(x.mid) - x.rad) * (1 - 2 * EPS)
        # (r / |x|) / gap, not r / (|x| gap): that product overflows for |x| > 1e154 and
        # the radius would vanish
        spread = np.where(gap > 0, (x.rad / np.abs(x.mid)) * (1 + 2 * EPS) / gap, np.inf)
    return Ball(z, _up(spread + EPS * np.abs(z) + TINY))


def _hull(balls, possible, shape) -> Ball:
    """Per element, the one possible ball, or the hull of the possible ones (endpoints
    moved outwards one ulp); NaN with an infinite radius where none is possible."""
    count = np.sum(possible, axis=0)
    low, high = np.full(shape, np.inf), np.full(shape, -np.inf)
    mid, rad = np.full(shape, np.nan), np.full(shape, np.inf)
    with np.errstate(all="ignore"):
        for ball, mask in zip(balls, possible):
            if ball is None:
                continue
            one = mask & (count == 1)
            mid, rad = np.where(one, ball.mid, mid), np.where(one, ball.rad, rad)
            low = np.where(mask, np.minimum(low, np.nextafter(ball.mid - ball.rad, -np.inf)), low)
            high = np.where(mask, np.maximum(high, np.nextafter(ball.mid + ball.rad, np.inf)), high)
        several = count > 1
        centre = low / 2 + high / 2
        spread = _up(np.maximum(high - centre, centre - low) + EPS * np.abs(centre) + TINY)
    return Ball(np.where(several, centre, mid), np.where(several, spread, rad))


class _Evaluation:
    """One evaluation: equal sub-expressions computed once."""

    def __init__(self, t: Ball):
        self.t = t
        self.shape = np.shape(t.mid)
        self.memo = {}

    def value(self, expr) -> Ball:
        found = self.memo.get(expr)
        if found is None:
            with np.errstate(all="ignore"):
                found = self.memo[expr] = self._value(expr)
        return found

    def _value(self, expr) -> Ball:
        from sympy.codegen.cfunctions import expm1, log1p

        if expr == LOG_RATIO:
            return self.t
        if expr.is_Number or expr in (sp.E, sp.pi):
            return _constant(expr, self.shape)
        args = [self.value(a) for a in expr.args] if not isinstance(expr, sp.Piecewise) else None
        if isinstance(expr, sp.Add):
            total = args[0]
            for a in args[1:]:
                total = total + a
            return total
        if isinstance(expr, sp.Mul):
            product = args[0]
            for a in args[1:]:
                product = product * a
            return product
        if isinstance(expr, sp.Pow):
            if expr.base == sp.E:
                return self.value(sp.exp(expr.exp))
            return self._power(args[0], int(expr.exp))
        if isinstance(expr, sp.exp):
            return args[0].exp()
        if isinstance(expr, expm1):
            return args[0].expm1()
        if isinstance(expr, sp.log):
            return args[0].log()
        if isinstance(expr, log1p):
            return (args[0] + 1.0).log()
        if isinstance(expr, sp.Abs):
            return Ball(np.abs(args[0].mid), args[0].rad)
        if isinstance(expr, (sp.Min, sp.Max)):
            # min and max are 1-Lipschitz in the largest argument's distance
            pick = np.minimum if isinstance(expr, sp.Min) else np.maximum
            mid, rad = args[0].mid, args[0].rad
            for a in args[1:]:
                mid, rad = pick(mid, a.mid), np.maximum(rad, a.rad)
            return Ball(mid, rad)
        if isinstance(expr, sp.Piecewise):
            return self._piecewise(expr)
        raise Unsupported(f"cannot bound {type(expr).__name__}")

    def _power(self, base: Ball, n: int) -> Ball:
        if n == 0:
            return _constant(sp.Integer(1), self.shape)
        if n < 0:
            return _reciprocal(self._power(base, -n))
        result = None
        square = base
        while n:
            if n & 1:
                result = square if result is None else result * square
            n >>= 1
            if n:
                square = square.square()
        return result

    def _piecewise(self, expr) -> Ball:
        balls, possible = [], []
        open_ = np.ones(self.shape, dtype=bool)   # no earlier condition is surely true
        for branch, condition in expr.args:
            true, false = self.condition(condition)
            maybe = open_ & ~false
            balls.append(self.value(branch) if maybe.any() else None)
            possible.append(maybe)
            open_ = open_ & ~true
        return _hull(balls, np.array(possible), self.shape)

    def condition(self, cond):
        """(surely true, surely false) masks of a condition."""
        shape = self.shape
        if isinstance(cond, BooleanTrue) or cond is True:
            return np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool)
        if isinstance(cond, BooleanFalse) or cond is False:
            return np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)
        if isinstance(cond, Relational):
            d = self.value(cond.lhs - cond.rhs)
            low, high = d.mid - d.rad, d.mid + d.rad   # rounding moved outwards below
            low, high = np.nextafter(low, -np.inf), np.nextafter(high, np.inf)
            known = np.isfinite(d.rad) & np.isfinite(d.mid)
            op = cond.rel_op
            if op in (">=", ">"):
                true, false = (low >= 0, high < 0) if op == ">=" else (low > 0, high <= 0)
            elif op in ("<=", "<"):
                true, false = (high <= 0, low > 0) if op == "<=" else (high < 0, low >= 0)
            elif op == "==":
                true, false = (d.rad == 0) & (d.mid == 0), (low > 0) | (high < 0)
            elif op == "!=":
                false, true = (d.rad == 0) & (d.mid == 0), (low > 0) | (high < 0)
            else:
                raise Unsupported(f"relation {op}")
            return true & known, false & known
        if isinstance(cond, Not):
            true, false = self.condition(cond.args[0])
            return false, true
        if isinstance(cond, (And, Or)):
            parts = [self.condition(c) for c in cond.args]
            trues, falses = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
            if isinstance(cond, And):
                return trues.all(axis=0), falses.any(axis=0)
            return trues.any(axis=0), falses.all(axis=0)
        if isinstance(cond, ITE):
            (ct, cf), (at, af), (bt, bf) = (self.condition(c) for c in cond.args)
            return (ct & at) | (cf & bt) | (at & bt), (ct & af) | (cf & bf) | (af & bf)
        raise Unsupported(f"condition {type(cond).__name__}")
