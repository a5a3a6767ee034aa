"""``moments``: exact moments of an estimator under one pair of distributions."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from verify.api.documents import json_document
from verify.api.inputs import distribution_spec, function_of_r, load_estimator
from verify.errors import UsageError


@dataclass(frozen=True)
class MomentsResult:
    """Exact moments of f(r) under q with absolute error bounds, and bias against both KLs.
    ``raw`` is the exact layer's record (it may carry more fields than these)."""

    estimator: str
    expression: str
    p: str
    q: str
    mean: float
    mean_abs_error: float
    variance: float
    variance_abs_error: float
    kl_qp: float
    kl_pq: float
    bias_qp: float
    bias_pq: float
    relative_bias_qp: float
    relative_bias_pq: float
    raw: Any = field(repr=False, compare=False, default=None)

    def as_json(self) -> dict:
        return self.raw.as_json(self.estimator)

    def to_json(self) -> dict:
        return json_document("moments", self.as_json())


@dataclass(frozen=True)
class MomentsTable:
    """``moments`` of several estimators under one pair, in order; ``undecided`` holds
    (estimator, reason) where a value could not be computed to a trustworthy bound.
    ``single``: one estimator was asked for (its JSON is one object)."""

    results: tuple[MomentsResult, ...]
    undecided: tuple[tuple[str, str], ...]
    single: bool
    control_variate: Any = None  # verify.api.control_variate.ControlVariate, when asked for

    @property
    def exit_code(self) -> int:
        from verify.core.claims import EXIT_OK, EXIT_UNDECIDED

        return EXIT_UNDECIDED if self.undecided else EXIT_OK

    def to_json(self) -> dict | None:
        """The document ``--json`` prints (None when nothing was computed: nothing)."""
        if not self.results:
            return None
        payload = self.results[0].as_json() if self.single else [result.as_json() for result in self.results]
        document = json_document("moments", payload)
        if self.control_variate is not None:  # -log r + lambda (r - 1) under the pair
            document["control_variate"] = self.control_variate.as_json()
        return document


def split_targets(text: str) -> list[str]:
    """Split at commas outside brackets (an expression like Min(r, 2) keeps its comma)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _functions_of_r(targets: str | None):
    """The estimators ``targets`` names: None for every registered function of r, else one
    target, or several separated by commas (a user's file is imported in a worker)."""
    from verify.api.targets import load_registry

    if targets is None:
        return [e for e in load_registry().values() if e.expr is not None]
    try:
        return [function_of_r(load_estimator(targets))]
    except UsageError:
        parts = split_targets(targets)
        if len(parts) == 1:
            raise
    if any(not part for part in parts):
        raise UsageError(f"empty estimator in {targets!r}")
    return [function_of_r(load_estimator(part)) for part in parts]


def moments_table(targets: str | None, p, q, control_variate: bool = False) -> MomentsTable:
    """``moments`` of the estimators ``targets`` names (None: every registered function of
    r; a comma-separated list) under one pair; text that is no spec, and a bad name, fail
    before the exact layer loads (about 1 s of imports).  ``control_variate``: add the
    variance-optimal -log r + lambda (r - 1) (verify.api.control_variate)."""
    from verify.api.targets import spec_syntax

    p_spec, q_spec = distribution_spec(p), distribution_spec(q)
    spec_syntax(p_spec), spec_syntax(q_spec)
    estimators = _functions_of_r(targets)
    from verify.core.expression import as_expression
    from verify.layers.exact import ExactError, moments as exact_moments, parse_family

    p_family, q_family = parse_family(p_spec), parse_family(q_spec)
    results, undecided = [], []
    for estimator in estimators:
        expr = as_expression(estimator.expr)
        try:
            results.append(_result(estimator, expr, exact_moments(expr, p_family, q_family)))
        except ExactError as error:
            undecided.append((estimator.name, str(error)))
    block = None
    if control_variate:
        from verify.api.control_variate import pair_control_variate

        block = pair_control_variate(p_family, q_family)
    return MomentsTable(tuple(results), tuple(undecided), single=len(estimators) == 1, control_variate=block)


def _result(estimator, expr, result) -> MomentsResult:
    """The exact layer's record as the API's result: its fields copied, the record kept."""
    copied = [f.name for f in fields(MomentsResult) if f.name not in ("estimator", "expression", "raw")]
    return MomentsResult(estimator.name, str(expr), **{n: getattr(result, n) for n in copied}, raw=result)


def moments(estimator, p, q) -> MomentsResult:
    """Exact E_q[f], Var_q[f], KL(q||p), KL(p||q) and the biases for x ~ q.  ``p`` and ``q``
    are spec strings (``"norm(0, 1)"``) or frozen ``scipy.stats`` distributions.  Raises
    ``verify.layers.exact.ExactError`` when a value cannot be computed to a trustworthy bound."""
    from verify.layers.exact import moments as exact_moments, parse_family
    from verify.core.expression import as_expression

    p_spec, q_spec = distribution_spec(p), distribution_spec(q)
    chosen = load_estimator(estimator)
    expr = as_expression(chosen.expr)
    return _result(chosen, expr, exact_moments(expr, parse_family(p_spec), parse_family(q_spec)))
