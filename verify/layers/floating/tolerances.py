"""The domain and the tolerances of the floating-point claims, each with its reason."""
from __future__ import annotations

import math

import numpy as np

from verify.core.dtypes import LOG_PROB_DOMAIN
from verify.errors import UsageError

DOMAIN = LOG_PROB_DOMAIN
# The 16-bit sweeps' domain: DOMAIN in the harness.  (The test suite sweeps a part of it
# where a test does not need the whole: tests/conftest.py; the gate sweeps the whole.)
# Read when a sweep starts (checks.py), so that setting it here takes effect.
SWEEP_DOMAIN = DOMAIN
# A careful float64 evaluation of these estimators (a handful of correctly rounded
# operations on non-cancelling terms) stays within about 2 ulps; float32 and the 16-bit
# dtypes computed in float64 and rounded once are within 0.5 ulp.  4 leaves room for
# libm's exp/expm1/log1p (<= 1 ulp each) and nothing for cancellation.  An estimator
# may set its own ``fp_ulps``, and an absolute tolerance ``fp_atol`` (an RL penalty does
# not care about 1e7 ulps at a value of 4e-28).
ACCURATE_ULPS = 4.0
# fp_matches_expression tells a different formula from the right one evaluated naively
# (in the dtype, in any order, through p and q or through log r).  Accepted: within
# MATCH_ULPS ulps of f(t), plus MATCH_ULPS unit roundoffs u of
#   (|logp| + |logq|) (1 + |f'(t)|)   the rounding of inputs of that size, through f',
#                                     and a cancellation of terms as large as the inputs
#                                     (log(p^2 ...) - 2 log q)
#   + 1                               a cancellation of terms of size 1 (exp(t) - 1)
# or an error below the smallest normal number.  |f'(t)| is the upper end of its
# certified float64 enclosure (0 where that is not finite).  So K4 computed through p
# and q (-9.1e-17 at logp = logq, exact 0) matches its formula in float64, and k2
# implemented under k3's name does not (0.5 against 0.718 at log r = 1).
MATCH_ULPS = 32.0


def match_slack(logp, logq, derivative, unit, match_ulps):
    """The part of the fp_matches_expression tolerance beyond MATCH_ULPS ulps of f:
    MATCH_ULPS u ((|logp| + |logq|)(1 + |f'(t)|) + 1), with |f'(t)| bounded above by the
    derivative's enclosure (0 where that enclosure is not finite)."""
    logp, logq = np.asarray(logp, dtype=np.float64), np.asarray(logq, dtype=np.float64)
    with np.errstate(all="ignore"):
        t_hi = logp - logq
        virtual = t_hi - logp
        t_err = (logp - (t_hi - virtual)) + (-logq - virtual)  # TwoSum: t_hi + t_err = logp - logq
        t_lo_bound = np.where(t_err < 0, np.nextafter(t_hi, -np.inf), t_hi)
        t_hi_bound = np.where(t_err > 0, np.nextafter(t_hi, np.inf), t_hi)
        slope = np.zeros_like(t_hi)
        if derivative is not None:
            low, high = derivative(t_lo_bound, t_hi_bound)
            slope = np.maximum(np.abs(low), np.abs(high))
            slope = np.where(np.isfinite(slope), slope, 0.0)
        magnitude = np.abs(logp) + np.abs(logq)
        return match_ulps * unit * (magnitude * (1.0 + slope) + 1.0)


def estimator_tolerances(estimator):
    """(ulps, absolute) of the estimator's fp_accurate: its ``fp_ulps`` (else
    ACCURATE_ULPS) and ``fp_atol`` (else 0)."""
    accurate_ulps = float(estimator.fp_ulps) if estimator.fp_ulps is not None else ACCURATE_ULPS
    atol = getattr(estimator, "fp_atol", None)
    atol = float(atol) if atol is not None else 0.0
    if not (accurate_ulps >= 0 and math.isfinite(accurate_ulps)) or not (atol >= 0 and math.isfinite(atol)):
        raise UsageError(f"estimator {estimator.name!r}: fp_ulps and fp_atol must be finite and >= 0")
    return accurate_ulps, atol
