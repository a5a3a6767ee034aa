"""``sequences``: exact sequence-level KLs, estimator moments (Monte Carlo and
Rao-Blackwellised), the control variate and the sequence gradients of per-token losses,
for a tabular autoregressive pair given as two logits tables (issue 22).

The tables: one row of V logits per prefix, the empty prefix first, then the prefixes of
length 1, ..., T-1, each length in lexicographic order (row of (y_1..y_k) = (V^k - 1)/(V - 1)
+ the base-V number y_1..y_k); -inf is an impossible token.  The engine is
``verify.layers.gradients.sequence_models``; this module reads and checks the input once
and turns each registry estimator into the engine's ``TokenFunction`` (the exact layer's
error-bounded evaluator of f(exp(t)), and sympy's limit of f at r -> 0+).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from verify.api.documents import json_document
from verify.errors import UsageError

__all__ = ["SequencesResult", "sequences", "load_table", "DEFAULT_ESTIMATORS", "LOGIT_LIMIT", "BUILT_IN_TERMS"]

DEFAULT_ESTIMATORS = ("k1", "k2", "k3")
# Finite logits beyond this magnitude are refused: within it, log r and its square stay
# far inside float64 (an -inf logit is the way to say "impossible").
LOGIT_LIMIT = 1e100
# the built-in gradient terms of the engine, in words
BUILT_IN_TERMS = {"k1_loss": "sum_t k1_t as a loss", "k2_loss": "sum_t k2_t as a loss",
                  "k3_loss": "sum_t k3_t as a loss", "k1_reward": "sum_t k1_t as a REINFORCE reward"}
_MOMENT_KEYS = ("mc_mean", "mc_variance", "rb_mean", "rb_variance")
_CONTROL_KEYS = ("optimal_lambda", "variance_at_optimal", "variance_k1", "variance_k3")
_GRADIENT_KEYS = ("cosine_to_grad_kl_qp", "relative_error")


def _number(value):
    if value is None:
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _flat(record: dict, keys) -> dict:
    """``key`` and ``key_abs_error`` for each (value, abs_error) record of the engine."""
    out = {}
    for key in keys:
        bounded = record[key]
        out[key] = bounded.value
        out[key + "_abs_error"] = None if bounded.value is None else bounded.abs_error
    return out


@dataclass(frozen=True)
class SequencesResult:
    """Every value with its absolute error bound (``NAME_abs_error``).  Values are floats,
    ``math.inf`` where exactly infinite, None where undefined (the reason in ``notes``) or
    undecided (the block and reason in ``undecided``)."""

    vocabulary: int
    length: int
    sequences: int
    kl_qp: float | None
    kl_qp_abs_error: float | None
    kl_pq: float | None
    kl_pq_abs_error: float | None
    estimators: dict            # name -> {mc_mean, mc_mean_abs_error, ..., rb_variance_abs_error}
    control_variate: dict       # optimal_lambda, variance_at_optimal, variance_k1, variance_k3 (+ _abs_error)
    gradients: dict             # term -> {cosine_to_grad_kl_qp, relative_error (+ _abs_error)}
    expressions: dict = field(default_factory=dict)   # estimator name -> f(r) as text
    undecided: dict = field(default_factory=dict)
    notes: tuple = ()
    descriptions: dict = field(default_factory=dict)  # gradient term -> how it enters training
    output: str = field(default="", repr=False, compare=False)  # what a torch term printed (kept off the JSON)

    @property
    def exit_code(self) -> int:
        from verify.core.claims import EXIT_OK, EXIT_UNDECIDED

        return EXIT_UNDECIDED if self.undecided else EXIT_OK

    def as_json(self) -> dict:
        def numbers(record):
            return {key: _number(value) for key, value in record.items()}

        out = {"vocabulary": self.vocabulary, "length": self.length, "sequences": self.sequences,
               "kl_qp": _number(self.kl_qp), "kl_qp_abs_error": _number(self.kl_qp_abs_error),
               "kl_pq": _number(self.kl_pq), "kl_pq_abs_error": _number(self.kl_pq_abs_error),
               "estimators": {name: {"expression": self.expressions.get(name), **numbers(record)}
                              for name, record in self.estimators.items()},
               "control_variate": numbers(self.control_variate),
               "gradients": {name: {"description": self.descriptions.get(name, ""), **numbers(record)}
                             for name, record in self.gradients.items()},
               "undecided": dict(self.undecided), "notes": list(self.notes)}
        return out

    def to_json(self) -> dict:
        return json_document("sequences", self.as_json())


def load_table(table, label: str):
    """A logits table from an array or an .npy path (no pickles): 2-D, real, no NaN or +inf,
    finite entries within +-LOGIT_LIMIT, each row with a finite entry; UsageError otherwise."""
    import numpy as np

    if isinstance(table, (str, Path)):
        path = Path(table)
        if not path.is_file():
            raise UsageError(f"{label}: no such file: {table}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - a corrupt or pickled file is bad input
            raise UsageError(f"{label}: cannot read {table} as .npy without pickles: {type(error).__name__}: "
                             f"{error}") from None
        if not isinstance(loaded, np.ndarray):
            loaded.close()
            raise UsageError(f"{label}: {table} is an .npz archive; give one .npy array (np.save)")
        table = loaded
    try:
        array = np.asarray(table)
    except Exception as error:  # noqa: BLE001 - ragged lists and the like
        raise UsageError(f"{label}: not an array of logits ({type(error).__name__})") from None
    if array.dtype.kind not in "fiu":
        raise UsageError(f"{label}: logits must be real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise UsageError(f"{label}: a table of logits has 2 dimensions (prefixes x vocabulary), got shape "
                         f"{array.shape}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise UsageError(f"{label}: NaN at row {int(np.argwhere(np.isnan(array))[0][0])}")
    if (array == np.inf).any():
        raise UsageError(f"{label}: +inf at row {int(np.argwhere(array == np.inf)[0][0])} (only -inf, an "
                         "impossible token, is allowed)")
    finite = np.isfinite(array)
    if (np.abs(array[finite]) > LOGIT_LIMIT).any():
        raise UsageError(f"{label}: a finite logit beyond +-{LOGIT_LIMIT:g} (use -inf for an impossible token)")
    empty = ~finite.any(axis=1)
    if empty.any():
        raise UsageError(f"{label}: row {int(np.argmax(empty))} has no finite logit (no token is possible)")
    return array


def _token_function(estimator):
    """The engine's TokenFunction for a registry estimator (a function of r): f(exp(t)) in
    ball arithmetic (``ball_expression``: bounds that hold) where its nodes allow and its
    value stays in float64; elsewhere (a node it lacks, an intermediate beyond float64 with
    a finite result, as log of a huge r) the exact layer's range-extended evaluator, whose
    first-order running bound is doubled (plus TINY) to cover the terms it leaves out."""
    import numpy as np
    import sympy as sp

    from verify.core.expression import RATIO, as_expression
    from verify.layers.exact.evaluate import compile_estimator, evaluate
    from verify.layers.gradients.ball_expression import Unsupported, compile_ball, evaluate_ball
    from verify.layers.gradients.balls import TINY, Ball
    from verify.layers.gradients.compiled import in_log_ratio
    from verify.layers.gradients.sequence_models import TokenFunction

    expr = as_expression(estimator.expr)
    node = compile_estimator(expr)
    try:
        in_balls = compile_ball(in_log_ratio(expr))
    except Unsupported:
        in_balls = None

    def values(t, t_rad):
        mid, rad = np.full(np.shape(t), np.nan), np.full(np.shape(t), np.inf)
        if in_balls is not None:
            ball = evaluate_ball(in_balls, Ball(np.asarray(t, dtype=np.float64), np.asarray(t_rad, dtype=np.float64)))
            mid, rad = ball.mid, ball.rad
        rest = ~(np.isfinite(mid) & np.isfinite(rad))
        if np.any(rest):
            mantissa, scale, error = evaluate(node, t[rest], t_rad[rest])
            with np.errstate(all="ignore"):
                mid[rest], rad[rest] = np.where(scale == 0, mantissa, np.inf), 2 * error + TINY
        return mid, rad

    def at_zero():
        try:
            limit = sp.limit(expr, RATIO, 0, "+")
        except Exception:  # noqa: BLE001 - sympy could not decide: no number
            return math.nan
        if limit == sp.oo:
            return math.inf
        if limit == -sp.oo:
            return -math.inf
        if limit.is_real and limit.is_finite:
            return float(limit)
        return math.nan

    return TokenFunction(estimator.name, values, at_zero), str(expr)


def _estimators(estimators):
    from verify.api.inputs import function_of_r, load_estimator
    from verify.api.moments_of_pair import split_targets

    if estimators is None:
        names = list(DEFAULT_ESTIMATORS)
    elif isinstance(estimators, str):
        names = split_targets(estimators)
    else:
        names = list(estimators)
    if not names or any(isinstance(n, str) and not n.strip() for n in names):
        raise UsageError(f"empty estimator in {estimators!r}")
    chosen, seen = [], set()
    for name in names:
        estimator = function_of_r(load_estimator(name))
        if estimator.name in seen:
            raise UsageError(f"estimator {estimator.name} given twice")
        seen.add(estimator.name)
        chosen.append(estimator)
    return chosen


def _catalog_terms(gradients, length):
    """(terms, descriptions) of the catalog entries named in ``gradients`` (a list, a
    comma-separated string, or "all": every entry with a library usage)."""
    from estimators import registry

    from verify.api.moments_of_pair import split_targets
    from verify.layers.gradients.sequence_usage import usage_terms

    entries = registry()
    if isinstance(gradients, str):
        names = split_targets(gradients)
        if names == ["all"]:
            names = [name for name, entry in entries.items() if entry.usage is not None]
    else:
        names = list(gradients)
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise UsageError(f"empty catalog entry in {gradients!r}")
    terms, descriptions = [], {}
    for name in dict.fromkeys(names):
        if name not in entries:
            known = ", ".join(n for n, entry in entries.items() if entry.usage is not None)
            raise UsageError(f"unknown catalog entry {name!r}; entries with a library usage: {known}")
        for term, text in usage_terms(entries[name], length):
            terms.append(term)
            descriptions[term.name] = text
    return terms, descriptions


def _term_in_worker(target, p_table, q_table, usage, options, binds):
    from verify.api.targets import resolve_term
    from verify.layers.gradients.binding import bind_term
    from verify.layers.gradients.sequence_term import sampled_coefficients

    func = bind_term(resolve_term(target), options, binds)
    return sampled_coefficients(func, p_table, q_table, usage, target.rpartition(":")[2])


def _torch_term(target, p_table, q_table, usage, options, binds, timeout):
    """(SampledCoefficients, notes, what the term printed) of the user's torch term, run isolated."""
    from verify.api.inputs import check_term_arguments, check_timeout
    from verify.api.isolation import DEFAULT_SECONDS, UserCodeFailed, run_isolated
    from verify.core.frameworks import require_torch

    require_torch()
    check_timeout(timeout)
    if not isinstance(target, str) or ":" not in target:
        raise UsageError(f"a torch term is FILE.py:FUNC, got {target!r}")
    check_term_arguments(usage, options, binds)
    outcome = run_isolated(_term_in_worker, (target, p_table, q_table, usage, options or {}, binds or {}),
                           seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        raise UserCodeFailed(f"{target}: {outcome.failure}")
    coefficients, notes, _ = outcome.value
    return coefficients, notes, outcome.output


def sequences(estimators=None, p_logits=None, q_logits=None, *, gradients=None, term=None, usage="loss",
              options=None, binds=None, timeout=None) -> SequencesResult:
    """Exact sequence-level values of the pair (p, q) given as logits tables (arrays or .npy
    paths; see the module), for ``estimators`` (registry names, expressions in r, a
    comma-separated string or a list; None: k1, k2, k3).  Gradient rows beside the built-in
    ones: ``gradients``, catalog entries (names, or "all") in their library's on-policy modes
    (``ENTRY:loss``, ``ENTRY:reward``); ``term``, a user's torch term ``FILE.py:FUNC`` used
    as ``usage`` ("loss" or "reward"), its parameters bound as in ``term_gradients``
    (``options``, ``binds``), run isolated under ``timeout`` seconds (row ``FUNC:USAGE``).
    Bad input raises UsageError."""
    if p_logits is None or q_logits is None:
        raise UsageError("sequences needs both p_logits and q_logits")
    p_table, q_table = load_table(p_logits, "p_logits"), load_table(q_logits, "q_logits")
    if p_table.shape != q_table.shape:
        raise UsageError(f"p_logits has shape {p_table.shape} and q_logits {q_table.shape}: one shape for both")
    from verify.layers.gradients.sequence_models import MAX_SEQUENCES
    from verify.layers.gradients.sequence_tree import tree_length

    rows, vocabulary = q_table.shape
    length = tree_length(rows, vocabulary)
    if vocabulary ** length > MAX_SEQUENCES:
        raise UsageError(f"{vocabulary}^{length} = {vocabulary ** length} sequences: more than the limit of "
                         f"{MAX_SEQUENCES} of this exact enumeration")
    chosen = _estimators(estimators)
    functions, expressions = [], {}
    for estimator in chosen:
        function, expressions[estimator.name] = _token_function(estimator)
        functions.append(function)
    terms, descriptions = _catalog_terms(gradients, length) if gradients is not None else ([], {})
    term_notes, output = (), ""
    if term is not None:
        coefficients, term_notes, output = _torch_term(term, p_table, q_table, usage, options, binds, timeout)
        terms.append(coefficients)
        descriptions[coefficients.name] = (f"the torch term {term} as a "
                                           + ("loss, autograd through logp" if usage == "loss"
                                              else "REINFORCE reward (its values summed over the sequence)"))
    from verify.layers.gradients.sequence_models import sequence_model

    result = sequence_model(p_table, q_table, functions, terms)

    return SequencesResult(
        vocabulary=result.vocabulary, length=result.length, sequences=result.sequences,
        **_flat({"kl_qp": result.kl_qp, "kl_pq": result.kl_pq}, ("kl_qp", "kl_pq")),
        estimators={name: _flat(record, _MOMENT_KEYS) for name, record in result.estimators.items()},
        control_variate=_flat(result.control_variate, _CONTROL_KEYS),
        gradients={name: _flat(record, _GRADIENT_KEYS) for name, record in result.gradients.items()},
        expressions=expressions, undecided=dict(result.undecided), notes=tuple(result.notes) + tuple(term_notes),
        descriptions={**BUILT_IN_TERMS, **descriptions}, output=output)
