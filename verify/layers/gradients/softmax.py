"""The softmax family: expected gradients as exact sums over the outcomes, in mpmath at two
precisions (their difference, plus a floor, is the error bound)."""
from __future__ import annotations

import math

import mpmath
import numpy as np

from verify.layers.gradients.bounds import DPS_HIGH, DPS_LOW, EXACT_SUM_FLOOR, ROUNDING_REL
from verify.layers.gradients.compiled import coefficient_mp


def softmax_log(logits):
    """log softmax of mpmath logits (at the caller's precision)."""
    top = max(logits)
    total = mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in logits)) + top
    return [v - total for v in logits]


def _softmax_gradient_at(compiled, mode, pair, dps):
    with mpmath.workdps(dps):
        logq = softmax_log([mpmath.mpf(v) for v in pair.theta])
        logp = softmax_log([mpmath.mpf(v) for v in pair.p])
        logs = logq if mode.samples_from == "q_theta" else softmax_log([mpmath.mpf(v) for v in pair.theta_old])
        q = [mpmath.exp(v) for v in logq]
        terms = []  # s(x) [w(x)] coefficient(x), per outcome x
        for a, b, c in zip(logq, logp, logs):
            log_weight = (a - c) if mode.importance_weight else mpmath.mpf(0)
            terms.append(mpmath.exp(c + log_weight) * coefficient_mp(compiled, mode, b - a))
        total = mpmath.fsum(terms)
        # grad_theta_i log q(x) = [x = i] - q_i
        gradient = [terms[i] - q[i] * total for i in range(len(q))]
        scale = mpmath.fsum(abs(v) for v in terms) * 2
        return gradient, scale


def softmax_gradient(compiled, mode, pair):
    """(expected gradient, error bound on its 2-norm) of one mode on one softmax pair."""
    high, scale = _softmax_gradient_at(compiled, mode, pair, DPS_HIGH)
    low, _ = _softmax_gradient_at(compiled, mode, pair, DPS_LOW)
    with mpmath.workdps(DPS_HIGH):
        difference = math.sqrt(float(mpmath.fsum((a - b) ** 2 for a, b in zip(high, low))))
        floor = float(scale) * EXACT_SUM_FLOOR
    gradient = np.array([float(v) for v in high])
    error = difference + floor + ROUNDING_REL * float(np.linalg.norm(gradient))
    return gradient, error
