"""verify.layers.gradients.sequences: exact enumeration of a small autoregressive model (V = 4, T = 3).

The references are finite differences, in mpmath, of objectives written out here: the
exact sequence KL (a sum over the 64 sequences), and TRL's per-token k3 loss with the
sequence-level importance weight exp(mean_t log(q_theta/q_old)), not detached.
"""
from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest

from verify.layers.gradients import sequences

SHIFT = 0.8
FD_DPS, FD_STEP, FD_ATOL = 40, mpmath.mpf("1e-15"), 1e-20
# a spread of parameters: contexts of every depth, every token
PARAMETERS = (0, 3, 5, 10, 22, 41, 47, 60, 71, 83)


def _model(theta, shift):
    q_logits, p_logits = sequences._logits(shift)
    size = sequences.VOCABULARY
    log_q = [sequences._log_softmax(theta[i * size:(i + 1) * size]) for i in range(len(sequences.CONTEXTS))]
    log_p = [sequences._log_softmax([mpmath.mpf(v) for v in row]) for row in p_logits]
    return log_q, log_p


def _theta0(shift):
    q_logits, _ = sequences._logits(shift)
    return [mpmath.mpf(v) for row in q_logits for v in row]


def _sequence_kl(theta, shift):
    log_q, log_p = _model(theta, shift)
    total = []
    for sequence in itertools.product(range(sequences.VOCABULARY), repeat=sequences.LENGTH):
        rows = [sequences._ROW[sequence[:t]] for t in range(sequences.LENGTH)]
        log_q_seq = mpmath.fsum(log_q[row][y] for row, y in zip(rows, sequence))
        log_p_seq = mpmath.fsum(log_p[row][y] for row, y in zip(rows, sequence))
        total.append(mpmath.exp(log_q_seq) * (log_q_seq - log_p_seq))
    return mpmath.fsum(total)


def _trl_sequence_loss(theta, shift, theta0):
    """sum over sequences of q_theta0(y) * sum_t w(theta) k3_t(theta): the samples are fixed
    (drawn from q_theta0 = q_old), the weight is exp(mean_t log q_theta(y_t) - log q_old(y_t))."""
    log_q, log_p = _model(theta, shift)
    log_old, _ = _model(theta0, shift)
    total = []
    for sequence in itertools.product(range(sequences.VOCABULARY), repeat=sequences.LENGTH):
        rows = [sequences._ROW[sequence[:t]] for t in range(sequences.LENGTH)]
        probability = mpmath.exp(mpmath.fsum(log_old[row][y] for row, y in zip(rows, sequence)))
        log_weight = mpmath.fsum(log_q[row][y] - log_old[row][y] for row, y in zip(rows, sequence))
        weight = mpmath.exp(log_weight / sequences.LENGTH)
        k3 = []
        for row, y in zip(rows, sequence):
            log_ratio = log_p[row][y] - log_q[row][y]
            k3.append(mpmath.expm1(log_ratio) - log_ratio)
        total.append(probability * weight * mpmath.fsum(k3))
    return mpmath.fsum(total)


def _fd(objective, theta0, index):
    up, down = list(theta0), list(theta0)
    up[index] += FD_STEP
    down[index] -= FD_STEP
    return float((objective(up) - objective(down)) / (2 * FD_STEP))


@pytest.fixture(scope="module")
def vectors():
    return sequences.sequence_gradients(SHIFT)


def test_correct_gradient_is_the_gradient_of_the_sequence_kl(vectors):
    (correct, error), kl = vectors[0]["correct"], vectors[1]
    with mpmath.workdps(FD_DPS):
        theta0 = _theta0(SHIFT)
        assert float(_sequence_kl(theta0, SHIFT)) == pytest.approx(kl, rel=1e-14)
        for index in PARAMETERS:
            reference = _fd(lambda theta: _sequence_kl(theta, SHIFT), theta0, index)
            assert abs(correct[index] - reference) <= error + FD_ATOL, (index, correct[index], reference)


def test_sequence_weight_gradient_matches_its_loss_and_carries_the_spurious_term(vectors):
    gradients = vectors[0]
    sequence, error = gradients["k3_is_sequence"]
    with mpmath.workdps(FD_DPS):
        theta0 = _theta0(SHIFT)
        for index in PARAMETERS:
            reference = _fd(lambda theta: _trl_sequence_loss(theta, SHIFT, theta0), theta0, index)
            assert abs(sequence[index] - reference) <= error + FD_ATOL, (index, sequence[index], reference)
    # sequence weight = pathwise part (the unweighted k3 loss) + the spurious term
    pathwise, pathwise_error = gradients["k3_loss"]
    spurious, spurious_error = gradients["spurious"]
    assert np.linalg.norm(sequence - pathwise - spurious) <= error + pathwise_error + spurious_error
    assert np.linalg.norm(spurious) > 1e6 * spurious_error


def test_which_per_token_loss_gives_the_sequence_gradient(vectors):
    gradients = vectors[0]
    correct, correct_error = gradients["correct"]
    # the sequence's k1 sum as a REINFORCE reward is the sequence KL's gradient
    k1, k1_error = gradients["k1_reward"]
    assert np.linalg.norm(k1 - correct) <= k1_error + correct_error
    # per-token losses give only part of it (the future terms are missing)
    for name in ("k3_loss", "k3_is_token", "k3_is_sequence"):
        gradient, error = gradients[name]
        assert np.linalg.norm(gradient - correct) > 1e3 * (error + correct_error), name


def test_report_is_plain_deterministic_data():
    first, second = sequences.sequence_report(), sequences.sequence_report()
    assert first == second
    assert first["sequences"] == 64 and first["parameters"] == 84
    for case in first["cases"]:
        assert case["losses"]["k1_reward"]["equals_correct"] is True
        assert case["losses"]["k3_is_sequence"]["equals_correct"] is False
