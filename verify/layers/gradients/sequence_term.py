"""A user's torch term on every sequence of a tabular pair (issue 22): its per-token
gradient coefficients c_t(y), for ``sequence_model`` (:class:`SampledCoefficients`).

The term gets (batch, sequence) tensors as in training: each row one sequence y (in
lexicographic order, a chunk of them per call), ``logp[y, t] = log q(y_t | y_<t)`` with
gradient, ``ref_logp`` = log p, ``old_logp`` = ``logp`` detached (on-policy).  So a term
that reduces over the sequence axis (a sequence-level weight) sees whole sequences.

- ``loss``: autograd through logp with the samples fixed: c_t(y) = d (sum of the term's
  values over the sequence) / d logp[y, t];
- ``reward``: the values detached, one REINFORCE reward per sequence: c_t(y) = sum_s value_s(y).

The bound of each c_t(y) follows the per-token torch path (``autograd``): TERM_ULPS eps
of its size (rounding in the term and in autograd) plus the float32/float64 difference
scaled by eps64/eps32 and PRECISION_SAFETY (cancellation), or FALLBACK_REL of the size
where float32 is not finite; a term computing in a narrower dtype than it returns
(``term_calls.detected_precision``) gets that dtype's eps and its rounding of the inputs.
A term that mixes batch rows (a batch normalisation) is refused: its value per sequence
would depend on which sequences share a call.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from verify.core.dtypes import EPS as EPS64
from verify.core.frameworks import require_torch
from verify.errors import UsageError
from verify.layers.gradients.autograd import EPS32, FALLBACK_REL, PRECISION_SAFETY, TERM_ULPS
from verify.layers.gradients.sequence_models import SampledCoefficients
from verify.layers.gradients.sequence_tree import tree_length
from verify.layers.gradients.term_calls import (EPS, call_value, detected_precision, input_rounding_bound,
                                               probe_term, returned_dtype)

__all__ = ["sampled_coefficients", "MAX_TOKENS", "CALL_SEQUENCES"]

# V^T x T coefficients (with their bounds and the float32 copy) are held at once: 2^24
# tokens is a few hundred MB.
MAX_TOKENS = 1 << 24
CALL_SEQUENCES = 1 << 15  # sequences per call of the term


def _log_probs(log_q_table, log_p_table, vocabulary, length, first, count):
    """(log q, log p) of the tokens of sequences [first, first + count), each (count, T),
    from the log-softmax of each table."""
    n = np.arange(first, first + count)
    log_q, log_p = np.empty((count, length)), np.empty((count, length))
    for t in range(length):
        row = (vocabulary ** t - 1) // (vocabulary - 1) + n // vocabulary ** (length - t)
        token = (n // vocabulary ** (length - t - 1)) % vocabulary
        log_q[:, t], log_p[:, t] = log_q_table[row, token], log_p_table[row, token]
    return log_q, log_p


def _call(torch, func, log_q, log_p, usage, dtype):
    """(c, values, returned dtype) of one call in ``dtype``: c as float64 (count, T)."""
    leaf = torch.tensor(log_q, dtype=dtype).requires_grad_(True)
    ref = torch.tensor(log_p, dtype=dtype)
    with torch.enable_grad():
        value = call_value(torch, func, leaf, ref, leaf.detach())
        returned = returned_dtype(torch, value, dtype)
        values = value.detach().to(torch.float64).numpy().copy()
        if usage == "reward":
            return np.repeat(values.sum(axis=1, keepdims=True), log_q.shape[1], axis=1), values, returned
        gradient = None
        if value.requires_grad:
            (gradient,) = torch.autograd.grad(value.to(torch.float64).sum(), leaf, allow_unused=True)
    if gradient is None:
        return np.zeros(log_q.shape), values, returned
    return gradient.detach().to(torch.float64).numpy().copy(), values, returned


def sampled_coefficients(func, p_logits, q_logits, usage: str = "loss", name: str = "term"):
    """(SampledCoefficients named ``NAME:USAGE``, notes, mixed axes) of the bound term
    ``func(logp, ref_logp, old_logp)`` on the tables (checked by the API)."""
    torch = require_torch()
    rows, vocabulary = q_logits.shape
    length = tree_length(rows, vocabulary)
    sequences = vocabulary ** length
    if sequences * length > MAX_TOKENS:
        raise UsageError(f"a torch term is called on every token of every sequence: {sequences} x {length} tokens "
                         f"is more than {MAX_TOKENS}")
    log_q_table, log_p_table = log_softmax(q_logits, axis=1), log_softmax(p_logits, axis=1)
    row_q, row_p = log_q_table[0], log_p_table[0]
    finite = np.isfinite(row_q) & np.isfinite(row_p)
    mixes, probed = probe_term(torch, func, row_q[finite] if finite.sum() >= 2 else np.log([0.5, 0.5]),
                               row_p[finite] if finite.sum() >= 2 else np.log([0.5, 0.5]))
    if "batch rows" in mixes:
        raise UsageError(f"{name} mixes batch rows (a batch normalisation): its value for one sequence depends on "
                         "the others in the call, so it has no per-sequence gradient here")
    mid, rad = np.empty((sequences, length)), np.empty((sequences, length))
    fallback, precisions = False, {probed}
    for first in range(0, sequences, CALL_SEQUENCES):
        count = min(CALL_SEQUENCES, sequences - first)
        log_q, log_p = _log_probs(log_q_table, log_p_table, vocabulary, length, first, count)
        with np.errstate(all="ignore"):
            c64, values, returned = _call(torch, func, log_q, log_p, usage, torch.float64)
            precision = max(detected_precision(values[np.isfinite(log_q).all(axis=1)], returned), probed,
                            key=EPS.__getitem__)
            precisions.add(precision)
            size = np.abs(values).sum(axis=1, keepdims=True) if usage == "reward" else np.abs(c64)
            bound = TERM_ULPS * EPS[precision] * size
            if precision != "float64":
                per_token = input_rounding_bound(1.0, log_q, log_p, None, values, np.abs(c64))
                per_token = per_token.sum(axis=1, keepdims=True) if usage == "reward" else per_token
                bound = bound + PRECISION_SAFETY * EPS[precision] * per_token
            c32, _, _ = _call(torch, func, log_q, log_p, usage, torch.float32)
            float32_finite = np.isfinite(c32)
            bound = bound + np.where(float32_finite, PRECISION_SAFETY * (EPS64 / EPS32) * np.abs(c64 - c32),
                                     FALLBACK_REL * size)
            sampled = np.isfinite(log_q).all(axis=1)[:, None]
            fallback |= bool(np.any(~float32_finite & np.isfinite(c64) & sampled))
        mid[first:first + count], rad[first:first + count] = c64, bound
    notes = []
    if "positions" in mixes:
        notes.append(f"{name} mixes positions (a sequence-level weight or mean): each coefficient comes from its "
                     "whole sequence")
    narrow = max(precisions, key=EPS.__getitem__)
    if narrow != "float64":
        notes.append(f"{name}: detected precision {narrow}: the bound of its coefficients is {narrow}'s")
    if fallback:
        notes.append(f"{name}: float32 evaluation not finite on some sequences: half of float64's digits assumed "
                     "lost there")
    return SampledCoefficients(f"{name}:{usage}", mid, rad), tuple(notes), mixes
