"""The certified float64 enclosures of an expression (``interval.py``), built once per
expression: the 16-bit sweeps enclose f with them, and every exact judgement of
fp_matches_expression bounds f' with them."""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from verify.layers.floating import interval

# Expressions whose enclosures are kept: building them (a Taylor model by arb power
# series) costs more than a float32 search; a process checks a few expressions at a time
# (one per dtype group of ``check_claims``), a test session a few dozen.
ENCLOSURES_KEPT = 64


class Enclosures:
    """The certified float64 enclosures of f, of f' and the Taylor model at t = 0, for
    one expression (``interval.py``); any of them None where the expression is not
    supported (the exhaustive checks then fall back to mpmath, pair by pair)."""

    def __init__(self, expression, log_ratio):
        self.function = self.derivative = self.taylor = None
        self.problem = None
        try:
            self.function = interval.IntervalFunction(expression, log_ratio)
        except interval.Unsupported as error:
            self.problem = str(error)
            return
        try:
            self.derivative = interval.IntervalFunction(sp.diff(expression, log_ratio), log_ratio)
        except (interval.Unsupported, ValueError, TypeError):
            self.derivative = None
        try:
            self.taylor = interval.TaylorModel(expression, log_ratio)
        except (interval.Unsupported, ImportError, ValueError, TypeError, ZeroDivisionError, AssertionError):
            self.taylor = None

    @classmethod
    def of(cls, reference):
        """The enclosures of a ``Reference``'s expression (shared by equal expressions)."""
        return _enclosures_of(sp.srepr(reference.expression), reference.expression, reference.log_ratio)


@lru_cache(maxsize=ENCLOSURES_KEPT)
def _enclosures_of(srepr: str, expression, log_ratio) -> Enclosures:
    """Keyed by the expression's srepr: equal expressions share one Enclosures (the
    expression and its symbol ride along, equal whenever the srepr is)."""
    return Enclosures(expression, log_ratio)
