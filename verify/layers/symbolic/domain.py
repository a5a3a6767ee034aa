"""The domain of f as written (where it is undefined), and the analysis every claim
shares: f normalised and split into smooth pieces."""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp

from verify.layers.symbolic.certified import interior_point, sign_at, to_rational
from verify.core.expression import RATIO
from verify.layers.symbolic.pieces import decompose, roots
from verify.layers.symbolic.values import _DOMAIN_MODES, Undecided, _identically_zero, _precise

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
            if cell.a.exact is not None and _identically_zero(x.xreplace({RATIO: cell.a.exact})):
                return cell.a.exact
    return None


def undefined_point(expr):
    """An r > 0 where expr is undefined (0 to a negative power, log of a non-positive
    number, a fractional power of a negative number), or None if it is defined on all of
    (0, inf)."""
    for node in sp.postorder_traversal(expr):
        if not node.has(RATIO):
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
        if node.is_Pow and node.args[0].has(RATIO) and not node.args[1].is_integer and node.args[0] is not sp.E:
            factored = sp.factor(node.args[0])
            if factored != node.args[0]:
                replacements[node] = factored ** node.args[1]
    return expr.xreplace(replacements) if replacements else expr


def power_breakpoints(expr):
    """Zeros in (0, inf) of the bases of non-integer powers: f may have a cusp there that
    no Abs, Min or Max shows, so no smooth piece may contain one."""
    points = []
    for node in sp.preorder_traversal(expr):
        if node.is_Pow and node.args[0].has(RATIO) and not node.args[1].is_integer and node.args[0] is not sp.E:
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


