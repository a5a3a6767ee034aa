"""One method per claim of the claims reference: each returns a Verdict or raises
``Undecided``."""
from __future__ import annotations

import math

import mpmath
import sympy as sp
from mpmath import mpf

from verify.layers.symbolic.certified import (
    Point, Uncertain, constant_enclosure, enclose, interior_point, point_enclosure, sign_at, to_rational,
)
from verify.core.claims import PROVED, REFUTED, Verdict
from verify.core.expression import RATIO
from verify.layers.symbolic.bounds import bounded_growth_power, certified_sign_cover, leading_term
from verify.layers.symbolic.domain import Analysis
from verify.layers.symbolic.pieces import cell_at, cell_sample, critical_points, decompose
from verify.layers.symbolic.search import _chord_near, _counter_r, find_below, find_concavity
from verify.layers.symbolic.values import (
    INF, MAX_GROWTH_POWER, ONE, SAMPLE_RATIOS, ZERO, Undecided, _checked_limit, _fmt, _identically_zero, _limit,
    sign_of, value_at,
)
from verify.core.timelimit import Failed, TimedOut, run_all

CERTIFIED_COVER = ("certified interval cover (mpmath.iv): subdivision in log r, Taylor bound at exact zeros, "
                   "tails in log r")

# ------------------------------------------------------------------------ the claims


def _need_cells(analysis: Analysis):
    if not analysis.domain_known:
        raise Undecided(analysis.cells_error or "could not establish where f is defined")
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
    a sign is unknown.  Pieces where the function is constant come first: they give the
    plainest witness."""
    constant_first = sorted(range(len(cells)), key=lambda i: not _identically_zero(sp.diff(transform(cells[i].expr), RATIO)))
    for position in constant_first:
        cell = cells[position]
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

    def __init__(self, analysis: Analysis, sympy_seconds=None):
        self.analysis = analysis
        self.f = analysis.expr
        self.sympy_seconds = sympy_seconds  # CPU seconds for sympy's part of an argument

    def _sympy_part(self, function, *args):
        """function(*args) in a child under ``sympy_seconds`` of CPU time, so that a
        certified argument still has time when sympy hangs; Undecided when it runs out."""
        if self.sympy_seconds is None:
            return function(*args)
        result = run_all([(function, args)], self.sympy_seconds)[0]
        if isinstance(result, TimedOut):
            raise Undecided(f"sympy's argument took more than {self.sympy_seconds:g} s of CPU time")
        if isinstance(result, Failed):
            raise Undecided(result.error.removeprefix("Undecided: "))
        return result

    def _certified_cover(self, cells, transform, strict):
        """True when transform(piece) >= 0 on every piece (> 0 except at r = 1 when
        strict), by the certified interval cover of bounds.py."""
        for cell in cells:
            h = transform(cell.expr)
            if not certified_sign_cover(h, cell.a, cell.b, strict, {sp.S.One} if strict else None):
                return False
        return True

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
                        "value_there": _fmt(sp.N(sub_expression.xreplace({RATIO: point}), 20))})

    def zero_at_one(self):
        for condition, sub_expression in self.analysis.domain:  # f(1) as written
            sign = sign_of(sub_expression.xreplace({RATIO: sp.S.One}))
            if sign is None:
                raise Undecided(f"cannot tell whether {sub_expression} is {condition} at r = 1")
            if {"positive": sign <= 0, "nonnegative": sign < 0, "nonzero": sign == 0}[condition]:
                return Verdict(REFUTED, "domain analysis", f"f(1) is undefined as written: {sub_expression} "
                               f"must be {condition}", {"r": 1.0, "exact_r": "1", "reason": "undefined as written",
                                                        "subexpression": str(sub_expression), "must_be": condition})
        value = self.f.xreplace({RATIO: sp.S.One})
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
        f_one = self.f.xreplace({RATIO: sp.S.One})
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
        transform = (lambda e: e - f_one) if strict else (lambda e: e)
        try:
            ok, point = self._sympy_part(_infimum_argument, cells, transform, strict,
                                         "f - f(1)" if strict else "f", self.f, True)
        except Undecided:
            if self._certified_cover(cells, transform, strict):
                return Verdict(PROVED, CERTIFIED_COVER,
                               "f - f(1) > 0 for r != 1" if strict else "f >= 0 on every smooth piece")
            raise
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
            if strict and sign is None and _identically_zero(h.xreplace({RATIO: to_rational(x)})):
                return Verdict(REFUTED, "exact evaluation", f"{what}: f(r) = f(1) exactly",
                               _counter_r(x, f=self.f.xreplace({RATIO: to_rational(x)})))
        if not point.is_zero_end and not point.is_infinite_end:
            # the double nearest the point may miss a narrow dip: try 45 digits
            digits = mpmath.nstr(point.approx, 45)
            if sign_at(h, digits) == -1:
                lo, hi = point_enclosure(self.f, digits)
                return Verdict(REFUTED, "monotonicity analysis, certified interval evaluation",
                               f"{what} (r given to 45 digits)", {"r": digits, "f": _fmt((lo + hi) / 2)})
        if strict and point.exact is not None and point.exact != 1 and _identically_zero(h.xreplace({RATIO: point.exact})):
            return Verdict(REFUTED, "exact evaluation", f"f({point.exact}) = f(1) at r = {point.exact} != 1",
                           {"r": float(sp.N(point.exact, 17)), "exact_r": str(point.exact)})
        raise Undecided(f"a candidate value at r = {point} looks negative but no counterexample was certified")

    def convex(self):
        found = find_concavity(self.f)
        if found is not None:
            return self._chord_verdict(found)
        cells = _need_cells(self.analysis)
        second = lambda e: sp.diff(e, RATIO, 2)  # noqa: E731
        method = "f'' >= 0 on each smooth piece (monotonicity argument), slopes increase at breakpoints"
        try:
            ok, point = self._sympy_part(_infimum_argument, cells, second, False, "f''")
        except Undecided:
            if not self._certified_cover(cells, second, False):
                raise
            ok, point = True, None
            method = f"f'' >= 0 on each smooth piece ({CERTIFIED_COVER}), slopes increase at breakpoints"
        if not ok:
            found = _chord_near(self.f, point)
            if found is None:
                raise Undecided(f"f'' looks negative near r = {point} but no chord counterexample was certified")
            return self._chord_verdict(found)
        for left, right in zip(cells, cells[1:]):
            jump = sp.diff(right.expr, RATIO) - sp.diff(left.expr, RATIO)
            sign = sign_of(value_at(jump, left.b, "+"))
            if sign is None:
                raise Undecided(f"cannot tell the slope jump at r = {left.b}")
            if sign < 0:
                found = _chord_near(self.f, left.b)
                if found is None:
                    raise Undecided(f"concave kink at r = {left.b} but no chord counterexample was certified")
                return self._chord_verdict(found)
        return Verdict(PROVED, method, f"{len(cells)} smooth piece(s)")

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
        leading = [leading_term(expr, -1 if point.is_zero_end else 1) for expr, point, _ in ends]
        if None not in leading:
            return self._growth_from_leading_terms(max_power, claim, ends, leading)
        bounded = [lead if lead is not None
                   else bounded_growth_power(expr, -1 if point.is_zero_end else 1, min(max_power, MAX_GROWTH_POWER))
                   for (expr, point, _), lead in zip(ends, leading)]
        bounded = [_power_of_leading_term(b, -1 if end[1].is_zero_end else 1) if isinstance(b, tuple) else b
                   for b, end in zip(bounded, ends)]
        if None not in bounded and "every" not in bounded and max(bounded) <= max_power:
            return Verdict(PROVED, "leading term in log r, or a k-th derivative in log r bounded on the whole tail "
                           "(interval enclosure); f continuous on (0, oo)",
                           f"f / |log r|^{max(bounded)} stays bounded at both ends")
        powers = []
        for (expr, point, direction), lead in zip(ends, leading):
            if lead is not None:
                powers.append(_power_of_leading_term(lead, -1 if point.is_zero_end else 1))
                continue
            for k in range(0, MAX_GROWTH_POWER + 1):
                value = _limit(expr / sp.log(RATIO) ** k if k else expr, point, direction)
                if value.is_finite:
                    powers.append(k)
                    break
            else:
                # beyond |log r|^8: if log|f| / log|log r| -> L < oo, then |f| <= |log r|^(L+1)
                # near that end
                ratio = _limit(sp.log(sp.Abs(expr)) / sp.log(sp.Abs(sp.log(RATIO))), point, direction)
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
                power = _limit(sp.log(sp.Abs(expr)) / sp.Abs(sp.log(RATIO)), point, direction)
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

    def _growth_from_leading_terms(self, max_power, claim, ends, leading):
        """Growth from the dominant term of f(e^u) = sum of c u^k e^(a u) at each end."""
        powers = [_power_of_leading_term(lead, -1 if point.is_zero_end else 1)
                  for lead, (_, point, _) in zip(leading, ends)]
        method = "leading term in log r at r -> 0+ and r -> oo (exact); f continuous on (0, oo)"
        if "every" not in powers and max(powers) <= max_power:
            return Verdict(PROVED, method, f"f / |log r|^{max(powers)} stays bounded at both ends")
        for (expr, point, _), power, (a, k, _) in zip(ends, powers, leading):
            if power != "every" and power <= max_power:
                continue
            if power == "every":
                detail = (f"f ~ c r^({a})" + (f" |log r|^{k}" if k else "")
                          + f" as r -> {point}: grows like a power of r")
            else:
                detail = f"f ~ c |log r|^{k} as r -> {point}: f / |log r|^{max_power} is unbounded"
            return Verdict(REFUTED, method, detail,
                           _growth_witness(expr, point, 1 if claim == "linear_growth_in_log_ratio" else 8))
        raise Undecided("growth not settled")  # unreachable: some end exceeds max_power

    # -- identities
    def _constant_pieces(self, transform, cells, what):
        """Decide whether transform(piece) is one and the same constant on every piece.
        Returns (True, constant) / (False, (x1, v1, x2, v2)); raises Undecided."""
        samples = []
        points = [mpf(x.p) / x.q for x in SAMPLE_RATIOS]
        points += [x for x in (cell_sample(cell) for cell in cells) if x is not None and x not in points]
        for x in points:
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
            if not _identically_zero(sp.diff(h, RATIO)):
                raise Undecided(f"{what} is not provably constant on ({cell.a}, {cell.b}) and no sample differs")
            constants.append(sp.simplify(h))
        for cell, c in zip(cells[1:], constants[1:]):
            if not _identically_zero(c - constants[0]):
                sign = sign_of(c - constants[0])  # exact constants: a certified sign settles it
                if sign:
                    x1, x2 = cell_sample(cells[0]), cell_sample(cell)
                    if x1 is not None and x2 is not None:
                        return False, (x1, constant_enclosure(constants[0]), x2, constant_enclosure(c))
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
        return self._gradient(lambda e: RATIO * sp.diff(e, RATIO), "r f'(r)")

    def loss_grad_kl_qp(self):
        return self._gradient(lambda e: RATIO * sp.diff(e, RATIO) - sp.log(RATIO), "r f'(r) - log r")

    def loss_grad_kl_pq(self):
        return self._gradient(lambda e: RATIO * sp.diff(e, RATIO) - RATIO, "r f'(r) - r")

    def reward_grad_kl_qp(self):
        return self._gradient(lambda e: e + sp.log(RATIO), "f(r) + log r")

    def unbiased_kl_qp(self):
        return self._unbiased(sp.log(RATIO), "KL(q||p)", "f(r) + log r")

    def unbiased_kl_pq(self):
        return self._unbiased(-RATIO * sp.log(RATIO), "KL(p||q)", "f(r) - r log r")

    def _unbiased(self, shift, kl_name, what):
        f_one = self.f.xreplace({RATIO: sp.S.One})
        if not f_one.is_zero:
            sign = sign_of(f_one) if f_one.is_finite else None
            if sign:
                example = _two_point_pair(self.f, sp.S.One, sp.S.One)
                return Verdict(REFUTED, "exact evaluation", f"f(1) = {f_one} != 0: biased when p = q", example)
            if not _identically_zero(f_one):
                raise Undecided(f"cannot tell whether f(1) = {f_one} is 0")
        cells = self._cells_split_at_one()
        slope = lambda e: (e + shift) / (RATIO - 1)  # noqa: E731 - constant c iff unbiased
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
        f_one = self.f.xreplace({RATIO: sp.S.One})
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
                derivative = sp.diff(cell.expr, RATIO, order)
                try:
                    values[(side, order)] = value_at(derivative, ONE, direction)
                except Undecided:
                    if order == 1 and _checked_limit(derivative ** 2, ONE, direction) is sp.oo:
                        return Verdict(REFUTED, "sympy limit checked against certified values",
                                       f"f' is unbounded as r -> 1{direction}: f is not differentiable at r = 1, "
                                       "so E_q[f] / KL does not tend to 1 as p -> q",
                                       {"r": 1.0, "unbounded_slope": side})
                    raise
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


def _power_of_leading_term(lead, side):
    """The power k of |log r| that bounds f at an end with leading term (a, k, sign), or
    "every" when f grows like a power of r there."""
    a, k, _ = lead
    if a is None or side * a < 0:
        return 0  # identically 0, or decays like a power of r
    if side * a > 0:
        return "every"
    return max(k, 0)


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
    # the very points that were certified: an mpf is a dyadic rational, taken exactly
    # (nsimplify would round 2**-300 to 0)
    r1, r2 = (r if isinstance(r, sp.Rational) else to_rational(mpf(r) if not isinstance(r, sp.Basic) else mpf(sp.N(r, 60)))
              for r in (r1, r2))
    if r1 == r2:
        q = [sp.Rational(1, 2), sp.Rational(1, 2)]
        ratios = [sp.S.One, sp.S.One]
    else:
        q = [(r2 - 1) / (r2 - r1), (1 - r1) / (r2 - r1)]
        ratios = [r1, r2]
    p = [qi * ri for qi, ri in zip(q, ratios)]
    mean = sum(qi * f.xreplace({RATIO: ri}) for qi, ri in zip(q, ratios))
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


