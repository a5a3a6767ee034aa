"""The expected gradient of a user's own KL term, computed through the user's own autograd.

``func(logp, ref_logp, old_logp) -> Tensor`` is the per-token term a trainer adds to its
loss before the coefficient (torch code, as shipped: ``detach()``, clamps, importance
weights and straight-through tricks act as written):

- ``logp`` = log pi_theta(x), with gradient;
- ``ref_logp`` = log pi_ref(x);
- ``old_logp`` = log pi_old(x) of the policy that sampled x, detached (on-policy it has
  ``logp``'s value).

The policy is a softmax over logits theta, one row per position.  Instead of sampling,
the whole vocabulary is one batch: the term gets (batch, sequence) = (V, T) tensors,
token x at position t in element (x, t) (``term_calls``: a term that mixes positions or
batch rows is found and reported), and the expected gradient is exact up to rounding:

- ``loss`` (on-policy):        G = grad_theta sum_x pi_theta(x) func(x), weights detached;
- ``loss_offpolicy``:          the same with weights pi_old (pi_old != pi_theta, as after
  the first epoch of PPO/GRPO on a batch) and ``old_logp`` = log pi_old;
- ``reward`` (REINFORCE):      G = sum_x pi_theta(x) func(x).detach() grad log pi_theta(x).

autograd gives g = dL/d logp (per token); G = g - pi_theta * sum(g) is the softmax's
chain rule, applied here.  G is compared with grad KL(pi_theta||pi_ref) and
grad KL(pi_ref||pi_theta) (closed forms, :func:`reference_gradients`) and 0, within
error bounds, with the classification of :mod:`verify.layers.gradients` (``gradient_of``).

Error bound of G (2-norm, per position), two terms:

1. rounding of the per-token gradients and of the sums: ``TERM_ULPS`` float64 ulps of
   the sum of |terms| (|g_x| + pi_x sum |g|);
2. cancellation inside ``func`` that (1) does not see, measured by two evaluations: the
   same code run in float32 and in float64; their difference estimates float32's error,
   and float64's is that times eps64/eps32, times ``PRECISION_SAFETY``.

A term that computes in a narrower dtype than it returns (a cast to float32 inside, a
float64 weight outside) is found from its values (``term_calls.detected_precision``):
terms 1 and 2 then use that dtype's eps, plus a bound on its rounding of the inputs and
of every operation (``input_rounding_bound``), and the row's note names the precision.  Where the float32 evaluation is not finite, term 2 is replaced by
``FALLBACK_REL`` of the sum of |terms| (half of float64's digits) and the row says so.
A term whose value does not depend on ``logp`` in autograd at all (detached everywhere,
``@torch.no_grad``) has the gradient zero identically, and the row says so.

A full-vocabulary term (``kind="full"``, ROLL's "full") gets (1, T, V) log-probs and
returns one value per position; its gradient is that of its value (nothing is sampled).

Only the softmax family runs through this path (the built-in ``near``/``far`` pairs of
``verify.layers.gradients``, or given logits: regime ``given``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax

from verify.core.dtypes import EPS as EPS64
from verify.core.frameworks import require_torch
from verify.errors import UsageError
from verify.layers.gradients.bounds import GradientUndecided
from verify.layers.gradients.pairs import PAIRS
from verify.layers.gradients.term_calls import (EPS, as_batch_sequence, call_value, detected_precision,
                                               input_rounding_bound, mixing_note, probe_term, returned_dtype)
from verify.layers.gradients.verdicts import classify_gradient, round_significant

__all__ = [
    "USAGES", "TERM_MODES", "TermGradient", "TermGradientReport", "gradient_of_term",
    "reference_gradients", "term_from_estimator", "check_logits", "check_given_logits", "TERM_ULPS",
    "PRECISION_SAFETY", "FALLBACK_REL",
]

USAGES = ("loss", "reward")
KINDS = ("token", "full")  # a per-token term, or a full-vocabulary one (one value per position)
TERM_MODES = {"loss": ("loss", "loss_offpolicy"), "reward": ("reward",)}
EPS32 = float(np.finfo(np.float32).eps)
# Rounding of one per-token gradient (a handful of correctly rounded operations in the
# user's code and in autograd's backward) and of the pairwise sums over the vocabulary:
# 64 ulps of the sum of |terms| (pairwise summation of 2^k terms adds at most k ulps;
# k <= 24 for any vocabulary up to 16M tokens).
TERM_ULPS = 64
# Cancellation inside the user's code: float64's error estimated as the float32/float64
# difference times eps64/eps32, times this factor (float32's error is only measured at
# one input, and float64's rounding of the same steps may be less lucky).
PRECISION_SAFETY = 16.0
# Where the float32 evaluation overflows, half of float64's digits are assumed lost.
FALLBACK_REL = 2.0 ** -26
# Closed-form references: log_softmax has an absolute error of a few ulps of
# (|x| + |logsumexp| + 1); each term q (log q - log p - KL) then has a relative error of
# that times its size, and the sums add log2(V) ulps.  64 ulps plus log2(V) covers it.
REFERENCE_ULPS = 64
# Large inputs: 2^23 logits per array (a 152,064-token vocabulary for 55 positions); the
# check holds about 15 float64 arrays of that size at once.
MAX_LOGITS = 2 ** 23
ROW_KEYS = ("mode", "family", "regime", "position", "kl_qp", "gradient_of", "identically_zero",
            "cosine_kl_qp", "cosine_kl_pq", "norm_ratio_kl_qp", "norm_ratio_kl_pq",
            "multiple_kl_qp", "multiple_kl_pq", "gradient_norm", "error", "note")


@dataclass(frozen=True)
class TermGradient:
    """One row: the expected gradient of the term in one mode, on one pair (one position,
    or ``position = "mean"``: the mean over positions), against the two KL gradients."""

    mode: str
    family: str
    regime: str
    position: int | str | None
    kl_qp: float
    gradient_of: str
    identically_zero: bool
    cosine_kl_qp: float | None
    cosine_kl_pq: float | None
    norm_ratio_kl_qp: float | None  # None where the KL gradient is exactly 0 (pi_theta = pi_ref)
    norm_ratio_kl_pq: float | None
    multiple_kl_qp: float | None
    multiple_kl_pq: float | None
    gradient_norm: float
    error: float
    note: str = ""
    gradient: tuple = field(default=(), repr=False, compare=False)

    def as_json(self) -> dict:
        """The row as JSON-ready data (the gradient vector itself is left out)."""
        return {key: getattr(self, key) for key in ROW_KEYS}


@dataclass(frozen=True)
class TermGradientReport:
    function: str
    usage: str
    results: tuple
    notes: tuple = ()
    output: str = field(default="", repr=False, compare=False)  # what the term printed (kept off the JSON)
    kind: str = "token"
    mixes: tuple = ()  # the axes the term mixes ("positions", "batch rows"): not a per-token function

    def as_json(self) -> dict:
        """The payload of the document ``verify gradients FILE.py:FUNC --framework torch --json``
        prints (schema ``verify/schemas/term_gradients.json``); ``verify.api`` wraps it
        (``json_document("term_gradients", report.as_json())``)."""
        return {"function": self.function, "framework": "torch", "usage": self.usage, "term_kind": self.kind,
                "mixes": list(self.mixes), "results": [r.as_json() for r in self.results],
                "notes": list(self.notes)}


# ----------------------------------------------------------------------- inputs

def check_logits(array, what: str) -> np.ndarray:
    """Finite float logits of shape (V,) or (T, V), V >= 2, as float64 of shape (T, V)."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise UsageError(f"{what}: logits must be real numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise UsageError(f"{what}: logits must have shape (V,) or (T, V), got {array.shape}")
    if array.size > MAX_LOGITS:
        raise UsageError(f"{what}: more than {MAX_LOGITS} logits")
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.shape[1] < 2 or array.shape[0] < 1:
        raise UsageError(f"{what}: need at least 2 tokens and 1 position, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{what}: logits must be finite (drop impossible tokens instead of giving -inf)")
    if np.any(np.ptp(array, axis=1) > 700):
        raise UsageError(f"{what}: logits span more than 700 nats: probabilities below 1e-304 are not supported")
    return np.ascontiguousarray(array)


def check_given_logits(policy, reference, old=None):
    """(policy, reference, old) checked by :func:`check_logits`, of one shape (old may be
    None); a UsageError naming the first that is not."""
    if policy is None or reference is None:
        raise UsageError("give both policy and reference logits (or neither, for the built-in pairs)")
    policy, reference = check_logits(policy, "policy"), check_logits(reference, "reference")
    if policy.shape != reference.shape:
        raise UsageError(f"policy {policy.shape} and reference {reference.shape} logits differ in shape")
    if old is not None:
        old = check_logits(old, "old")
        if old.shape != policy.shape:
            raise UsageError(f"old {old.shape} and policy {policy.shape} logits differ in shape")
    return policy, reference, old


def term_from_estimator(estimator):
    """A torch Estimator's ``numeric(logp, logq)`` (f of r = p/q) as a per-token term:
    ``func(logp, ref_logp, old_logp) = numeric(ref_logp, logp)``."""
    if getattr(estimator, "framework", "numpy") != "torch" or estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no torch implementation (framework='torch')")
    numeric = estimator.numeric

    def term(logp, ref_logp, old_logp):
        return numeric(ref_logp, logp)

    term.__name__ = estimator.name
    return term


# ------------------------------------------------------------------- references

def reference_gradients(logits, ref_logits):
    """grad KL(q||p) and grad KL(p||q) w.r.t. the logits of q, KL(q||p), and an error
    bound of each gradient per row (float64 closed forms, rows = positions).

    grad_i KL(q||p) = q_i (log q_i - log p_i - KL(q||p));  grad_i KL(p||q) = q_i - p_i.
    """
    logq = log_softmax(logits, axis=1)
    logp = log_softmax(ref_logits, axis=1)
    q, p = np.exp(logq), np.exp(logp)
    log_ratio = logq - logp
    kl = np.sum(q * log_ratio, axis=1, keepdims=True)
    grad_qp = q * (log_ratio - kl)
    grad_pq = q - p
    size = logits.shape[1]
    ulps = (REFERENCE_ULPS + math.log2(size)) * EPS64
    scale_q = np.abs(logits).max(axis=1, keepdims=True) + np.abs(logq).max(axis=1, keepdims=True) + 1
    scale_p = np.abs(ref_logits).max(axis=1, keepdims=True) + np.abs(logp).max(axis=1, keepdims=True) + 1
    magnitude = q * (np.abs(logq) + np.abs(logp) + scale_q + scale_p + np.abs(kl))
    error_qp = ulps * (np.linalg.norm(magnitude, axis=1)
                       + np.linalg.norm(q, axis=1) * np.sum(magnitude, axis=1))
    error_pq = ulps * (np.linalg.norm(q * scale_q, axis=1) + np.linalg.norm(p * scale_p, axis=1))
    return grad_qp, grad_pq, error_qp, error_pq, kl[:, 0]


# --------------------------------------------------------------- the user's term

def _call_term(torch, func, logq, ref, old, mode, dtype):
    """(g = dL/dlogp per token as float64 (T, V), identically zero?, the value's dtype
    name, the values as float64 (T, V)) for one evaluation in ``dtype``.  The term sees
    (batch, sequence) = (V, T) tensors (``term_calls``)."""
    shape = logq.shape
    leaf = as_batch_sequence(torch, logq, dtype).requires_grad_(True)
    ref_t = as_batch_sequence(torch, ref, dtype)
    old_t = leaf.detach() if mode in ("loss", "reward") else as_batch_sequence(torch, old, dtype)
    weights = torch.from_numpy(np.ascontiguousarray(np.exp(logq if mode in ("loss", "reward") else old).T))
    with torch.enable_grad():
        value = call_value(torch, func, leaf, ref_t, old_t)
        returned = returned_dtype(torch, value, dtype)
        values = value.detach().to(torch.float64)
        _check_finite(values, weights, "value")
        values_np = values.numpy().T.reshape(shape).copy()
        if mode == "reward":
            return (weights * values).numpy().T.reshape(shape).copy(), False, returned, values_np
        if not value.requires_grad:
            return np.zeros(shape), True, returned, values_np
        objective = (weights * value.to(torch.float64)).sum()
        (gradient,) = torch.autograd.grad(objective, leaf, allow_unused=True)
    if gradient is None:
        return np.zeros(shape), True, returned, values_np
    gradient = gradient.detach().to(torch.float64)
    _check_finite(gradient, weights, "gradient")
    return gradient.numpy().T.reshape(shape).copy(), False, returned, values_np


def _check_finite(values, weights, what):
    bad = ~np.isfinite(values.numpy())
    if bad.any():
        batch, position = (int(i) for i in np.argwhere(bad)[0])
        raise GradientUndecided(f"the term's {what} is not finite at token {batch}, position {position} "
                                f"(pi = {float(weights[batch, position]):.3g}): the expected gradient cannot be "
                                "bounded")


def _project(g, q):
    """Softmax chain rule: grad_theta = g - q * sum(g), and the sum of |terms| per row."""
    total = g.sum(axis=1, keepdims=True)
    magnitude = np.abs(g) + q * np.abs(g).sum(axis=1, keepdims=True)
    return g - q * total, magnitude


def _projected_norm(per_token, q):
    """2-norm per row of a per-token bound carried through the softmax chain rule."""
    return np.linalg.norm(per_token, axis=1) + np.linalg.norm(q, axis=1) * per_token.sum(axis=1)


def _expected_gradients(torch, func, logits, ref_logits, old_logits, mode, probed="float64"):
    """(G per row, error bound per row, identically zero, note) for one mode; ``probed``:
    the precision the on-policy probe found (``term_calls.probe_term``)."""
    logq = log_softmax(logits, axis=1)
    ref = log_softmax(ref_logits, axis=1)
    old = log_softmax(old_logits, axis=1) if old_logits is not None else None
    q = np.exp(logq)
    pi = q if mode in ("loss", "reward") else np.exp(old)
    g64, zero, returned, values = _call_term(torch, func, logq, ref, old, mode, torch.float64)
    gradient, magnitude = _project(g64, q)
    precision = max(detected_precision(values, returned), probed, key=EPS.__getitem__)
    eps = EPS[precision]
    error = TERM_ULPS * eps * np.linalg.norm(magnitude, axis=1)
    notes = []
    if precision != "float64":
        # a narrower dtype inside: its rounding of the inputs and of every operation
        per_token = input_rounding_bound(pi, logq, ref, old, values, np.abs(g64))
        error = error + PRECISION_SAFETY * eps * _projected_norm(per_token, q)
        inside = "" if precision == returned else f" inside its {returned} output"
        notes.append(f"detected precision: {precision}{inside} (every value is a {precision} number): "
                     f"the error bound is {precision}'s")
    if zero:
        return gradient, error, True, "the term does not depend on logp in autograd: the gradient is identically zero"
    try:
        g32, _, _, _ = _call_term(torch, func, logq, ref, old, mode, torch.float32)
        gradient32, _ = _project(g32, q)
        error = error + PRECISION_SAFETY * (EPS64 / EPS32) * np.linalg.norm(gradient - gradient32, axis=1)
    except GradientUndecided:
        error = error + FALLBACK_REL * np.linalg.norm(magnitude, axis=1)
        notes.append("float32 evaluation not finite: cancellation bound assumed (half of float64's digits)")
    return gradient, error, False, "; ".join(notes)


def _round_up(value, digits=3):
    """``value`` rounded up to ``digits`` significant digits: an error bound stays a bound."""
    if not value > 0 or not math.isfinite(value):
        return float(value)
    exponent = math.floor(math.log10(value)) - digits + 1
    rounded = float(f"{math.ceil(value / 10.0 ** exponent)}e{exponent}")
    return rounded if rounded >= value else float(value)


def _ratio(numerator, denominator):
    return round_significant(numerator / denominator) if denominator != 0 else None


def _term_row(mode, regime, position, gradient, error, grad_qp, grad_pq, error_qp, error_pq, kl, zero, note):
    norm = float(np.linalg.norm(gradient))
    norm_qp, norm_pq = float(np.linalg.norm(grad_qp)), float(np.linalg.norm(grad_pq))
    if zero:
        verdict = "zero"
    elif norm_qp == 0 or norm_pq == 0:
        # pi_theta = pi_ref to the last bit: both KL gradients vanish
        verdict = "zero" if norm <= error + error_qp + error_pq else "biased"
    else:
        verdict = classify_gradient(gradient, error, grad_qp, grad_pq, error_qp, error_pq)

    def cosine(reference, reference_norm):
        if verdict == "zero" or reference_norm == 0:
            return None
        return round_significant(float(gradient @ reference) / (norm * reference_norm))

    return TermGradient(
        mode=mode, family="softmax", regime=regime, position=position, kl_qp=round_significant(kl),
        gradient_of=verdict, identically_zero=bool(zero),
        cosine_kl_qp=cosine(grad_qp, norm_qp), cosine_kl_pq=cosine(grad_pq, norm_pq),
        norm_ratio_kl_qp=_ratio(norm, norm_qp), norm_ratio_kl_pq=_ratio(norm, norm_pq),
        multiple_kl_qp=_ratio(float(gradient @ grad_qp), norm_qp ** 2),
        multiple_kl_pq=_ratio(float(gradient @ grad_pq), norm_pq ** 2),
        gradient_norm=round_significant(norm), error=_round_up(float(error)), note=note,
        gradient=tuple(gradient.tolist()) if gradient.size <= 4096 else (),
    )


def _position_rows(mode, regime, gradient, error, references, zero, note):
    """One row per position (position None for a single one) and, for several, their mean."""
    grad_qp, grad_pq, error_qp, error_pq, kl = references
    positions = gradient.shape[0]
    rows = [_term_row(mode, regime, None if positions == 1 else t, gradient[t], error[t], grad_qp[t], grad_pq[t],
                      error_qp[t], error_pq[t], kl[t], zero, note) for t in range(positions)]
    if positions > 1:
        # the mean over positions of the per-position terms: its gradient w.r.t. all
        # T x V logits is the concatenation / T, against grad of the mean KL
        rows.append(_term_row(mode, regime, "mean", gradient.ravel() / positions,
                              float(np.linalg.norm(error)) / positions,
                              grad_qp.ravel() / positions, grad_pq.ravel() / positions,
                              float(np.linalg.norm(error_qp)) / positions,
                              float(np.linalg.norm(error_pq)) / positions, float(np.mean(kl)), zero, note))
    return rows


def _rows_for(torch, func, modes, regime, logits, ref_logits, old_logits, kind, precision):
    references = reference_gradients(logits, ref_logits)
    rows = []
    for mode in modes:
        if kind == "full":
            gradient, error, zero, note = _full_vocabulary_gradient(torch, func, logits, ref_logits)
        else:
            gradient, error, zero, note = _expected_gradients(torch, func, logits, ref_logits, old_logits, mode,
                                                              precision)
        rows += _position_rows(mode, regime, gradient, error, references, zero, note)
    return rows


# ------------------------------------------------------ full-vocabulary terms

def _full_call(torch, func, logits, ref_logits, dtype):
    """(G = grad_theta of the sum over positions of the term, identically zero?, returned
    dtype, values): the term gets (1, T, V) log-probs and returns (1, T)."""
    theta = torch.tensor(logits, dtype=dtype).requires_grad_(True)
    ref = torch.log_softmax(torch.tensor(ref_logits, dtype=dtype), dim=-1)[None]
    with torch.enable_grad():
        logq = torch.log_softmax(theta, dim=-1)[None]
        value = call_value(torch, func, logq, ref, logq.detach(), kind="full")
        returned = returned_dtype(torch, value, dtype)
        values = value.detach().to(torch.float64).numpy()[0].copy()
        if not np.all(np.isfinite(values)):
            raise GradientUndecided("the term's value is not finite: the gradient cannot be bounded")
        if not value.requires_grad:
            return np.zeros(logits.shape), True, returned, values
        (gradient,) = torch.autograd.grad(value.to(torch.float64).sum(), theta, allow_unused=True)
    if gradient is None:
        return np.zeros(logits.shape), True, returned, values
    gradient = gradient.detach().to(torch.float64).numpy()
    if not np.all(np.isfinite(gradient)):
        raise GradientUndecided("the term's gradient is not finite: it cannot be bounded")
    return gradient, False, returned, values


def _full_vocabulary_gradient(torch, func, logits, ref_logits):
    """(G per position, error bound, identically zero, note) of a full-vocabulary term: no
    sampling, G is the gradient of its value.  Bound: TERM_ULPS eps of the size of every
    operand (q (1 + |log q| + |log p|) per token), plus the float32/float64 difference
    scaled as in ``_expected_gradients``."""
    gradient, zero, returned, values = _full_call(torch, func, logits, ref_logits, torch.float64)
    precision = detected_precision(values, returned)
    logq, logp = log_softmax(logits, axis=1), log_softmax(ref_logits, axis=1)
    q = np.exp(logq)
    size = q * (1.0 + np.abs(logq) + np.abs(logp)) + np.abs(gradient)
    error = (TERM_ULPS + (PRECISION_SAFETY if precision != "float64" else 0)) * EPS[precision] * \
        _projected_norm(size, q)
    note = "" if precision == "float64" else f"detected precision: {precision}: the error bound is {precision}'s"
    if zero:
        return gradient, error, True, "the term does not depend on the logits in autograd: the gradient is " \
                                      "identically zero"
    try:
        gradient32, _, _, _ = _full_call(torch, func, logits, ref_logits, torch.float32)
        error = error + PRECISION_SAFETY * (EPS64 / EPS32) * np.linalg.norm(gradient - gradient32, axis=1)
    except GradientUndecided:
        error = error + FALLBACK_REL * _projected_norm(size, q)
    return gradient, error, False, note


def gradient_of_term(func, *, usage: str = "loss", policy=None, reference=None, old=None,
                     name: str | None = None, kind: str = "token") -> TermGradientReport:
    """The expected gradient of ``func(logp, ref_logp, old_logp)`` per mode and pair.

    Without ``policy``/``reference``: the built-in softmax pairs of
    :data:`verify.layers.gradients.PAIRS` (regimes ``near``, ``far``).  With them: logits of
    shape (V,) or (T, V) (regime ``given``; ``old`` optional, needed for
    ``loss_offpolicy``), one row per position plus their ``mean``.  ``usage``: ``loss``
    (modes loss, loss_offpolicy) or ``reward``.  ``kind="token"``: a per-token term on
    (batch, sequence) tensors (``term_calls``); ``kind="full"``: a full-vocabulary term on
    (batch, sequence, vocabulary) log-probs returning one value per position (mode loss
    only: it samples nothing).
    """
    torch = require_torch()
    if usage not in USAGES:
        raise UsageError(f"unknown usage {usage!r}; known: {', '.join(USAGES)}")
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "full" and usage != "loss":
        raise UsageError("--kind full: a full-vocabulary term is a loss (it samples nothing to reward)")
    if not callable(func):
        raise UsageError(f"the term must be callable, got {type(func).__name__}")
    modes = TERM_MODES[usage] if kind == "token" else ("loss",)
    name = name or getattr(func, "__name__", "term")
    notes = []
    jobs = []  # (regime, logits, reference logits, old logits)
    if policy is None and reference is None:
        if old is not None:
            raise UsageError("old logits given without policy and reference logits")
        jobs = [(pair.regime, np.array([pair.theta]), np.array([pair.p]), np.array([pair.theta_old]))
                for pair in PAIRS if pair.family == "softmax"]
    else:
        policy, reference, old = check_given_logits(policy, reference, old)
        if old is None and "loss_offpolicy" in modes:
            modes = tuple(m for m in modes if m != "loss_offpolicy")
            notes.append("no old policy given: loss_offpolicy not computed")
        jobs = [("given", policy, reference, old)]
    mixed, precision = (), "float64"
    if kind == "token":
        _, logits, ref_logits, _ = jobs[0]
        mixed, precision = probe_term(torch, func, log_softmax(logits[0]), log_softmax(ref_logits[0]))
        if mixed:
            notes.append(mixing_note(mixed, jobs[0][1].shape[0]))
    rows = []
    for regime, logits, ref_logits, old_logits in jobs:
        rows += _rows_for(torch, func, modes, regime, logits, ref_logits, old_logits, kind, precision)
    order = {m: i for i, m in enumerate(TERM_MODES[usage])}
    rows.sort(key=lambda r: order[r.mode])  # stable: pairs and positions keep their order
    return TermGradientReport(function=name, usage=usage, results=tuple(rows), notes=tuple(notes), kind=kind,
                              mixes=mixed)
