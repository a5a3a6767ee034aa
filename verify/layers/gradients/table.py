"""The sweep of the generic modes over the fixed pairs: one expected gradient, the results
with their bounds, and the rows of the JSON table."""
from __future__ import annotations

import numpy as np
import sympy as sp

from verify.core.expression import as_expression
from verify.errors import UsageError
from verify.layers.gradients.compiled import compile_expression
from verify.layers.gradients.modes import Mode, parse_modes
from verify.layers.gradients.normal import normal_rows
from verify.layers.gradients.pairs import PAIRS, Pair, pair_named
from verify.layers.gradients.softmax import softmax_gradient
from verify.layers.gradients.usage import library_details
from verify.layers.gradients.verdicts import GradientResult, gradient_result


def _expression_of(estimator_or_expr) -> sp.Expr:
    expr = getattr(estimator_or_expr, "expr", estimator_or_expr)
    return as_expression(expr)


def expected_gradient(estimator_or_expr, mode: str | Mode, family: str, regime: str):
    """(expected gradient, error bound on its 2-norm) for one mode on one fixed pair."""
    compiled = compile_expression(_expression_of(estimator_or_expr))
    mode = mode if isinstance(mode, Mode) else parse_modes([mode])[0]
    pair = pair_named(family, regime)
    if family == "softmax":
        return softmax_gradient(compiled, mode, pair)
    return normal_rows(compiled, [(mode, pair)])[0]


def gradient_details(estimator_or_expr, modes=None, *, as_used=None, pairs=PAIRS) -> list[GradientResult]:
    """Every (mode, family, regime) of the sweep with gradients and error bounds.

    An estimator with a ``usage`` (a catalog entry) is reported as its library uses it
    (:func:`library_modes`; ``modes`` are then names among ``loss``, ``loss_offpolicy``,
    ``reward``), unless ``as_used=False`` or ``modes`` are :class:`Mode` objects.
    ``pairs``: the fixed pairs, or given softmax pairs (:func:`given_pairs`).
    """
    usage = getattr(estimator_or_expr, "usage", None)
    if as_used is None:
        as_used = usage is not None and not (modes and isinstance(modes[0], Mode))
    if as_used:
        return library_details(estimator_or_expr, modes, pairs)
    if getattr(estimator_or_expr, "expr", "") is None:
        raise UsageError(f"{estimator_or_expr.name} is not a function of r: only its library modes exist")
    compiled = compile_expression(_expression_of(estimator_or_expr))
    modes = parse_modes(modes) if not (modes and isinstance(modes[0], Mode)) else tuple(modes)
    normal_jobs = [(m, p) for m in modes for p in pairs if p.family == "normal"]
    normal = dict(zip(((m.name, p.regime) for m, p in normal_jobs), normal_rows(compiled, normal_jobs))) \
        if normal_jobs else {}
    results = []
    for mode in modes:
        for pair in pairs:
            if pair.family == "softmax":
                gradient, error = softmax_gradient(compiled, mode, pair)
            else:
                gradient, error = normal[(mode.name, pair.regime)]
            results.append(gradient_result(mode, pair, gradient, error))
    return results


def gradient_table(estimator_or_expr, modes=None, *, as_used=None) -> list[dict]:
    """Rows with exactly the keys of the issue's JSON, in a fixed order (mode, family, regime);
    library rows add ``as_used`` (how the trainer uses the term) and ``generic``."""
    return [result.as_row() for result in gradient_details(estimator_or_expr, modes, as_used=as_used)]


# Given logits are summed exactly in mpmath at two precisions, token by token: this many
# tokens over all positions take about a minute.
MAX_GIVEN_TOKENS = 20_000


def given_pairs(policy, reference, old=None) -> tuple[Pair, ...]:
    """Softmax pairs from given logits (shape (V,) or (T, V), float64): regime ``given``
    (``given[t]`` per position for T > 1); without ``old`` the old policy is the policy
    itself (the caller drops the off-policy modes, which would say nothing)."""
    rows = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (policy, reference)]
    old_rows = rows[0] if old is None else np.atleast_2d(np.asarray(old, dtype=np.float64))
    if rows[0].size > MAX_GIVEN_TOKENS:
        raise UsageError(f"given logits: {rows[0].size} tokens; the exact sums take at most {MAX_GIVEN_TOKENS} "
                         "(the torch path, --framework torch, takes large vocabularies)")
    positions = rows[0].shape[0]
    pairs = []
    for t in range(positions):
        theta, p = rows[0][t], rows[1][t]
        if np.array_equal(theta - theta.max(), p - p.max()):
            raise UsageError(f"given logits: the policy and the reference are the same at position {t}: both KL "
                             "gradients are 0 there")
        pairs.append(Pair("softmax", "given" if positions == 1 else f"given[{t}]", tuple(theta.tolist()),
                          tuple(p.tolist()), tuple(old_rows[t].tolist()), f"given logits, V = {len(theta)}"))
    return tuple(pairs)
