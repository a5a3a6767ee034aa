"""Sequence-level KL gradients, by exact enumeration of every sequence of a small
autoregressive model (V = 4 tokens, length T = 3: 64 sequences), in mpmath.

The policy q_theta and the reference p are tabular: one row of logits per prefix
(1 + 4 + 16 = 21 contexts), theta = q's logits (84 parameters).  The sequence KL is
KL(q||p) = E_q[sum_t d_t], d_t = log q(y_t | y_<t) - log p(y_t | y_<t) = -log r_t, and
its gradient is E_q[sum_t (sum_{s >= t} d_s) grad log q(y_t | y_<t)] (future terms only:
the score of y_t has mean 0 given the past).  The per-token losses of the libraries
give other vectors:

- ``k3_loss``: sum_t k3_t, autograd through log q (no weight): E[sum_t -(r_t - 1) score_t];
- ``k3_is_token``: sum_t w_t k3_t, w_t = q_theta/q_old of the token (1 in value, on-policy);
- ``k3_is_sequence`` (TRL's importance_sampling_level="sequence"): sum_t w k3_t with
  w = exp(mean_t log(q_theta/q_old)) broadcast onto every token.  Its gradient is the
  pathwise part sum_t grad k3_t plus the spurious term (sum_t k3_t) grad(mean_t log q_t);
- ``k1_reward``: REINFORCE with the sequence's sum of k1 as the reward.

Everything is an exact sum over the 64 sequences at DPS digits; the error bound of each
vector is the difference from the same sum at DPS_LOW digits, a floor, and the rounding
of the result to float64.
"""
from __future__ import annotations

import functools
import itertools
import math

import mpmath
import numpy as np

__all__ = ["VOCABULARY", "LENGTH", "sequence_gradients", "sequence_report"]

VOCABULARY, LENGTH = 4, 3
DPS, DPS_LOW = 40, 25
ERROR_FLOOR = 1e-30  # relative to the sum of |terms|: far below every difference shown
ROUNDING_REL = 2.0 ** -52  # float64 rounding of each component (half an ulp, doubled)
CONTEXTS = [prefix for n in range(LENGTH) for prefix in itertools.product(range(VOCABULARY), repeat=n)]
_ROW = {prefix: i for i, prefix in enumerate(CONTEXTS)}


def _logits(shift):
    """Deterministic logits per context: q's, and p's = q's + shift * a fixed pattern."""
    q = [[0.6 * math.sin(1.0 + 1.3 * i + 0.7 * v) for v in range(VOCABULARY)] for i in range(len(CONTEXTS))]
    p = [[a + shift * math.cos(0.4 + 0.9 * i - 1.1 * v) for v, a in enumerate(row)] for i, row in enumerate(q)]
    return q, p


def _log_softmax(row):
    top = max(row)
    total = mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in row)) + top
    return [v - total for v in row]


def _vectors(shift, dps):
    """{name: gradient (list over the 84 parameters)} and the sequence KL, at ``dps`` digits."""
    q_logits, p_logits = _logits(shift)
    with mpmath.workdps(dps):
        log_q = [_log_softmax([mpmath.mpf(v) for v in row]) for row in q_logits]
        log_p = [_log_softmax([mpmath.mpf(v) for v in row]) for row in p_logits]
        size = len(CONTEXTS) * VOCABULARY
        names = ("correct", "k3_loss", "k3_is_token", "k3_is_sequence", "spurious", "k1_reward")
        sums = {name: [[] for _ in range(size)] for name in names}
        kl_terms = []
        for sequence in itertools.product(range(VOCABULARY), repeat=LENGTH):
            rows = [_ROW[sequence[:t]] for t in range(LENGTH)]
            log_q_tokens = [log_q[row][y] for row, y in zip(rows, sequence)]
            probability = mpmath.exp(mpmath.fsum(log_q_tokens))
            d = [log_q[row][y] - log_p[row][y] for row, y in zip(rows, sequence)]
            ratio = [mpmath.exp(-v) for v in d]
            k3 = [r - 1 + v for r, v in zip(ratio, d)]
            future = [mpmath.fsum(d[t:]) for t in range(LENGTH)]
            kl_terms.append(probability * mpmath.fsum(d))
            # per-token coefficient of score_t, per vector
            coefficient = {
                "correct": future,
                "k3_loss": [-(r - 1) for r in ratio],
                "k3_is_token": [k - (r - 1) for k, r in zip(k3, ratio)],
                "k3_is_sequence": [mpmath.fsum(k3) / LENGTH - (r - 1) for r in ratio],
                "spurious": [mpmath.fsum(k3) / LENGTH] * LENGTH,
                "k1_reward": [mpmath.fsum(d)] * LENGTH,
            }
            for t, (row, y) in enumerate(zip(rows, sequence)):
                for v in range(VOCABULARY):
                    score = (1 if v == y else 0) - mpmath.exp(log_q[row][v])
                    for name in names:
                        sums[name][row * VOCABULARY + v].append(probability * coefficient[name][t] * score)
        vectors = {name: [mpmath.fsum(terms) for terms in sums[name]] for name in names}
        scales = {name: float(max(mpmath.fsum(abs(x) for x in terms) for terms in sums[name])) for name in names}
        return vectors, mpmath.fsum(kl_terms), scales


@functools.lru_cache(maxsize=8)
def sequence_gradients(shift: float = 0.8):
    """({name: (gradient as a float64 array, error bound of its 2-norm)}, KL(q||p) of the
    sequence model) for p's logits = q's + ``shift`` * pattern."""
    high, kl, scales = _vectors(shift, DPS)
    low, _, _ = _vectors(shift, DPS_LOW)
    out = {}
    for name in high:
        gradient = np.array([float(v) for v in high[name]])
        difference = math.sqrt(sum(float(a - b) ** 2 for a, b in zip(high[name], low[name])))
        rounding = ROUNDING_REL * float(np.linalg.norm(gradient))  # the conversion to float64
        out[name] = (gradient, difference + ERROR_FLOOR * scales[name] * len(gradient) + rounding)
    return out, float(kl)


def sequence_report(shifts=(0.1, 0.8)) -> dict:
    """Plain data for the libraries report: for each per-token loss, its cosine and norm
    ratio with the correct sequence gradient, and whether it equals it within the bounds."""
    report = {"vocabulary": VOCABULARY, "length": LENGTH, "sequences": VOCABULARY ** LENGTH,
              "parameters": len(CONTEXTS) * VOCABULARY, "cases": []}
    for shift in shifts:
        vectors, kl = sequence_gradients(shift)
        correct, correct_error = vectors["correct"]
        case = {"shift": shift, "kl_qp": kl, "losses": {}}
        for name, (gradient, error) in vectors.items():
            if name == "correct":
                continue
            norm = float(np.linalg.norm(gradient))
            case["losses"][name] = {
                "cosine_correct": float(gradient @ correct) / (norm * float(np.linalg.norm(correct))) if norm else None,
                "norm_ratio": norm / float(np.linalg.norm(correct)),
                "equals_correct": bool(np.linalg.norm(gradient - correct) <= error + correct_error),
            }
        report["cases"].append(case)
    return report
