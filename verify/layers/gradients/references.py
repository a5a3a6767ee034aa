"""The references: KL(q_theta||p), KL(p||q_theta) and their gradients at theta (closed forms
or exact sums), with error bounds."""
from __future__ import annotations

import math

import mpmath
import numpy as np

from verify.layers.gradients.bounds import CLOSED_FORM_REL, DPS_HIGH, ROUNDING_REL
from verify.layers.gradients.pairs import Pair
from verify.layers.gradients.softmax import softmax_log


def _kl(first, second, family) -> float:
    """KL(a||b) for a = first, b = second: softmax logits (exact sum at DPS_HIGH) or
    normal (loc, log scale) parameters (closed form)."""
    if family == "softmax":
        with mpmath.workdps(DPS_HIGH):
            log_a = softmax_log([mpmath.mpf(v) for v in first])
            log_b = softmax_log([mpmath.mpf(v) for v in second])
            return float(mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(log_a, log_b)))
    (loc_a, log_scale_a), (loc_b, log_scale_b) = first, second
    return (log_scale_b - log_scale_a
            + (math.exp(2 * log_scale_a) + (loc_a - loc_b) ** 2) / (2 * math.exp(2 * log_scale_b)) - 0.5)


def kl_qp_value(pair: Pair) -> float:
    """KL(q_theta||p) of a pair (closed form or exact sum)."""
    return _kl(pair.theta, pair.p, pair.family)


def kl_pq_value(pair: Pair) -> float:
    """KL(p||q_theta) of a pair."""
    return _kl(pair.p, pair.theta, pair.family)


def reference_gradients(pair: Pair):
    """(grad KL(q_theta||p), grad KL(p||q_theta), error bound of each) at theta."""
    if pair.family == "softmax":
        with mpmath.workdps(DPS_HIGH):
            logq = softmax_log([mpmath.mpf(v) for v in pair.theta])
            logp = softmax_log([mpmath.mpf(v) for v in pair.p])
            q = [mpmath.exp(v) for v in logq]
            p = [mpmath.exp(v) for v in logp]
            kl = mpmath.fsum(qi * (a - b) for qi, a, b in zip(q, logq, logp))
            grad_qp = np.array([float(qi * (a - b - kl)) for qi, a, b in zip(q, logq, logp)])
            grad_pq = np.array([float(qi - pi) for qi, pi in zip(q, p)])
        return grad_qp, grad_pq, ROUNDING_REL * np.linalg.norm(grad_qp), ROUNDING_REL * np.linalg.norm(grad_pq)
    (m, s), (mp_, sp_) = pair.theta, pair.p
    sigma2, sigma_p2, shift = math.exp(2 * s), math.exp(2 * sp_), m - mp_
    grad_qp = np.array([shift / sigma_p2, sigma2 / sigma_p2 - 1.0])
    grad_pq = np.array([shift / sigma2, 1.0 - (sigma_p2 + shift ** 2) / sigma2])
    scale_qp = abs(shift) / sigma_p2 + sigma2 / sigma_p2 + 1.0
    scale_pq = abs(shift) / sigma2 + (sigma_p2 + shift ** 2) / sigma2 + 1.0
    return grad_qp, grad_pq, CLOSED_FORM_REL * scale_qp, CLOSED_FORM_REL * scale_pq
