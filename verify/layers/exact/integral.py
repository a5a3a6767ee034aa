"""The result of an expectation (a value with its error bound, or a log10 beyond float64),
the error raised when no honest number can be given, and the truncation rule that the
quadrature and the exact sums share."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ExactError", "Integral", "TAIL_DROP", "TAIL_SAFETY"]

# The integral is truncated where the log-integrand is this many nats below its
# peak: exp(-80) ~ 2e-35, far below the 1e-16 relative resolution of a float64.
TAIL_DROP = 80.0
# Safety factor on the tail bound exp(h) / |slope| (the slope is estimated from chords).
TAIL_SAFETY = 4.0


class ExactError(Exception):
    """The exact layer could not give an honest number (not converged or undecidable)."""


@dataclass(frozen=True)
class Integral:
    value: float  # may be +-inf (divergent) or nan (divergent both ways)
    error: float  # absolute error bound (0 for an infinite value)
    # beyond float64: value is +-inf, the true value is sign * 10**log10 within a factor
    # (1 +- rel_error); log10 is None for an ordinary float value
    log10: float | None = None
    rel_error: float = 0.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) or self.log10 is not None

    @property
    def beyond_float(self) -> bool:
        return self.log10 is not None
