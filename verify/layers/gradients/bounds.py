"""Precisions and error-bound constants of the exact engine, and the finding that no
trustworthy bound was reached (:class:`GradientUndecided`)."""
from __future__ import annotations

import numpy as np

from verify.core.dtypes import EPS

# Exact sums: mpmath at two precisions; the difference estimates the error of the
# lower one (so over-estimates the error of the reported higher one).
DPS_LOW, DPS_HIGH = 30, 50
# Floor of the exact-sum error bound, relative to the sum of |terms|: far above the
# 50-digit rounding, far below any difference the verdicts must see.
EXACT_SUM_FLOOR = 1e-40
# Termination tolerances of tanh-sinh: the gradients are O(1e-2 .. 1); an absolute
# 1e-13 is 1e-11 relative at worst, far below the smallest bias the sweep must detect
# (about 1e-3 relative, near p = q).
QUAD_ATOL, QUAD_RTOL = 1e-15, 1e-14
QUAD_MAXLEVEL = 10
# scipy's tanh-sinh error estimate is heuristic (from successive levels): against
# 30-digit mpmath.quad it under-estimated by up to 20x on semi-infinite pieces, so it
# is multiplied by this factor (tests/test_gradients.py checks the bound against mpmath).
QUAD_SAFETY = 100.0
# The integrals of |integrand| only scale the evaluation-error bound: 1e-6 relative is plenty.
ABS_RTOL = 1e-6
# float64 rounding of the closed-form reference gradients (a few operations on O(1)
# numbers): a generous 64 ulps relative to the magnitude of the terms.
CLOSED_FORM_REL = 64 * EPS
# Rounding of the converted float64 results and of the summation of quadrature pieces.
ROUNDING_REL = 16 * EPS
# The evaluation error of g and g' is measured against mpmath on T_CHECK; the budget is
# this factor times the worst relative error seen (and at least EVAL_REL_FLOOR).
EVAL_SAFETY, EVAL_REL_FLOOR = 8.0, 4 * EPS
# Relative errors are measured against max(|exact|, EVAL_SCALE_FLOOR): below that the
# coefficient is negligible next to the O(1e-2) coefficients that make the gradient.
EVAL_SCALE_FLOOR = 1e-8
# Kinks of f (clamps, Abs) are searched in t = log r on this grid, then refined.
KINK_GRID = np.linspace(-60.0, 60.0, 24001)
# The integrand exp(log density + log|coefficient| + log|score|) is computed from logs
# whose float64 rounding is a few ulps of their magnitude; a coefficient growing like r^k
# turns an error in log r into k times that relative error.  64 ulps per unit of
# (1 + |log q| + |log p| + |log density|) covers k <= 4 with a wide margin (the
# mpmath.quad references of tests/test_gradients.py check the bound).
LOG_ROUNDING_ULPS = 64
# Growth probe: |f| or |r f'| above exp(GROWTH_LOG_LIMIT) at |log r| = GROWTH_PROBE_T means
# super-exponential growth in log r (r^k with k <= 1000 stays below): no Gaussian expectation
# can be bounded, and mpmath could exhaust memory in the tails, so the result is undecided.
GROWTH_PROBE_T, GROWTH_LOG_LIMIT = 50.0, 1e5


class GradientUndecided(RuntimeError):
    """An expected gradient could not be computed to a trustworthy error bound."""
