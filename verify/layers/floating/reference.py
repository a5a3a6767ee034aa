"""The exact value of f the float32/float64 checks compare with: mpmath at the exact
log ratio, with the working precision doubled until two evaluations agree."""
from __future__ import annotations

import mpmath
import sympy as sp

from verify.core.expression import RATIO, as_expression

# The reference is accepted when two mpmath evaluations, the second at twice the
# precision, agree to this relative error (or both are below REFERENCE_TINY in size).
REFERENCE_AGREEMENT = mpmath.mpf(2) ** -80
REFERENCE_TINY = mpmath.mpf(2) ** -1200
REFERENCE_START_BITS = 128
REFERENCE_MAX_BITS = 8192
# A zero at low precision is re-evaluated at 4096 and 8192 bits: float64 inputs have a
# log ratio of at least 2**-1074 in size, so terms like t**2 need about 2150 bits.
REFERENCE_ZERO_BITS = 8192


class Reference:
    """f at an exact log ratio, by mpmath; ``None`` where f is undefined there (or no
    two evaluations agree up to REFERENCE_MAX_BITS: reported, never silently passed)."""

    def __init__(self, expr):
        log_ratio = sp.Symbol("t", real=True)
        self.log_ratio = log_ratio
        self.expression = as_expression(expr).subs(RATIO, sp.exp(log_ratio))
        self._function = sp.lambdify(log_ratio, self.expression, modules="mpmath")
        self._cache = {}

    def _at(self, log_ratio, bits):
        with mpmath.workprec(bits):
            return mpmath.mpf(self._function(+log_ratio))

    def at_log_ratio(self, log_ratio):
        key = log_ratio
        if key in self._cache:
            return self._cache[key]
        value = None
        try:
            bits = REFERENCE_START_BITS
            previous = self._at(log_ratio, bits)
            while bits < REFERENCE_MAX_BITS:
                bits *= 2
                current = self._at(log_ratio, bits)
                if not (mpmath.isfinite(current) and mpmath.isfinite(previous)):
                    break
                if current == 0 and previous == 0 and log_ratio != 0 and bits < REFERENCE_ZERO_BITS:
                    # an exact zero may be every digit cancelling: look again where
                    # no cancellation of float inputs can reach
                    bits = REFERENCE_ZERO_BITS // 2
                    previous = self._at(log_ratio, bits)  # compared with twice this next
                    continue
                if (abs(current - previous) <= REFERENCE_AGREEMENT * abs(current)
                        or max(abs(current), abs(previous)) <= REFERENCE_TINY):
                    value = current
                    break
                previous = current
        except (ZeroDivisionError, ValueError, TypeError, OverflowError):
            value = None
        self._cache[key] = value
        return value

    def at(self, logp: float, logq: float):
        """f at t = logp - logq, formed exactly."""
        return self.at_log_ratio(mpmath.fsub(logp, logq, exact=True))
