"""``gradients``: exact expected gradients of an estimator per mode, and of a user's own
torch term through its autograd (``term_gradients``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from verify.api.documents import json_document
from verify.api.inputs import check_expect, check_term_arguments, check_timeout, load_estimator, parse_modes
from verify.api.verdicts import decide_symbolic
from verify.errors import UsageError


@dataclass(frozen=True)
class GradientsResult:
    """Exact expected gradients per (mode, family, regime); ``rows`` are the gradient
    layer's results (``as_row()`` gives the JSON row).  ``disagreements`` lists where they
    contradict the symbolic gradient verdicts (a harness bug; empty when not checked)."""

    estimator: str
    expression: str
    rows: tuple
    disagreements: tuple[str, ...] = ()
    expect: str | None = None  # the gradient every row must give (``--expect``), or None
    notes: tuple[str, ...] = ()  # what was not computed, and why (given logits without an old policy)

    @property
    def mismatches(self) -> tuple[str, ...]:
        """The rows whose gradient is not ``expect`` (the gradient gate), each named."""
        return _mismatches(self.expect, ((f"{row.mode} {row.family} {row.regime}", row.gradient_of)
                                         for row in self.rows))

    @property
    def exit_code(self) -> int:
        """1 when the layers disagree or a row is not what ``expect`` asks, else 0."""
        from verify.core.claims import EXIT_OK, EXIT_REFUTED

        return EXIT_REFUTED if self.disagreements or self.mismatches else EXIT_OK

    def as_json(self) -> dict:
        document = {"estimator": self.estimator, "results": [row.as_row() for row in self.rows]}
        if self.notes:
            document["notes"] = list(self.notes)
        return document

    def to_json(self) -> dict:
        return json_document("gradients", self.as_json())


@dataclass(frozen=True)
class GradientTables:
    """``gradients`` over several estimators (``verify gradients`` without a TARGET: the
    registry), in order; ``undecided`` maps an estimator whose bound was not reached to
    the reason.  ``single``: one TARGET was asked for (its JSON is one object)."""

    results: tuple[GradientsResult, ...]
    undecided: Mapping[str, str]
    single: bool = False
    order: tuple[str, ...] = ()  # every estimator shown or undecided, in the order computed

    @property
    def exit_code(self) -> int:
        from verify.core.claims import EXIT_OK, EXIT_REFUTED, EXIT_UNDECIDED

        if any(result.exit_code == EXIT_REFUTED for result in self.results):
            return EXIT_REFUTED
        return EXIT_UNDECIDED if self.undecided else EXIT_OK

    def to_json(self) -> dict | None:
        """The document ``--json`` prints (None for one TARGET left undecided: nothing)."""
        if self.single:
            return self.results[0].to_json() if self.results else None
        return json_document("gradients", [result.as_json() for result in self.results])


def _mismatches(expect, rows) -> tuple[str, ...]:
    """``"ROW gives X, not EXPECT"`` for every (row name, gradient_of) that is not ``expect``."""
    if expect is None:
        return ()
    return tuple(f"{name} gives {found}, not {expect}" for name, found in rows if found != expect)


def gradients(target, modes: Sequence[str] | None = None, *, cross_check: bool = False,
              timeout: float | None = None, expect: str | None = None, policy=None, reference=None,
              old=None) -> GradientsResult:
    """The expected gradient of an estimator in each mode (``loss``, ``reward``,
    ``loss_offpolicy``, ``loss_is_weighted``, ``straight_through``; None: all), classified as
    ``gradient_of``.  A catalog entry is shown as its library uses it (its usage's modes
    among those asked; ``as_used`` on each row), exactly as ``verify gradients NAME``
    prints it.  ``cross_check``: compare with the symbolic gradient verdicts (``timeout``:
    CPU seconds per claim there, and the wall-clock limit on importing a user's file).
    ``expect`` (``kl_qp``, ``kl_pq`` or ``zero``): the gradient gate, every row must give
    it (``mismatches``, ``exit_code``).  ``policy``, ``reference`` (and ``old``): logits
    of shape (V,) or (T, V) to use instead of the fixed pairs (softmax, exact sums; the
    off-policy modes need ``old``).
    Raises ``verify.layers.gradients.GradientUndecided`` when no trustworthy bound is reached."""
    from verify.layers import gradients as layer
    from verify.core.claims import GRADIENT
    from verify.core.expression import as_expression_with_domain

    check_timeout(timeout)
    check_expect(expect)
    names = parse_modes(modes)  # unknown or empty modes: a UsageError before any work
    estimator = load_estimator(target, timeout)
    pairs, notes = layer.PAIRS, ()
    if policy is not None or reference is not None or old is not None:
        pairs, names, notes = _given(layer, estimator, names, policy, reference, old)
    # names: a catalog entry as its library uses it
    rows = tuple(layer.gradient_details(estimator, names, pairs=pairs))
    if estimator.expr is None:  # the full-vocabulary KL: not a function of r, no symbolic claims
        return GradientsResult(estimator.name, "", rows, (), expect, notes)
    expr, domain = as_expression_with_domain(estimator.expr)
    problems: list[str] = []
    if cross_check:
        verdicts, _ = decide_symbolic(expr, list(GRADIENT), timeout, domain, None)
        problems = layer.symbolic_disagreements({c: v.verdict for c, v in verdicts.items()}, rows,
                                                fixed_pairs=pairs is layer.PAIRS)
    return GradientsResult(estimator.name, str(expr), rows, tuple(problems), expect, notes)


def _given(layer, estimator, names, policy, reference, old):
    """(pairs, mode names, notes) for given logits: checked like the torch path's, and
    without ``old`` the off-policy modes left out (with a note)."""
    from verify.layers.gradients.autograd import check_given_logits

    policy, reference, old = check_given_logits(policy, reference, old)
    pairs = layer.given_pairs(policy, reference, old)
    if old is not None:
        return pairs, names, ()
    available = ([m.name for m in layer.library_modes(estimator)] if estimator.usage is not None
                 else list(layer.MODE_NAMES))
    asked = list(names) if names is not None else available
    kept = [name for name in asked if name not in OFF_POLICY]
    if not kept:
        raise UsageError("the off-policy modes need the old policy's logits (--old, or 'old' in --logits)")
    dropped = [name for name in asked if name in OFF_POLICY]
    return pairs, kept, ((f"no old policy given: {', '.join(dropped)} not computed",) if dropped else ())


# the modes that sample from the old policy: they need its logits
OFF_POLICY = ("loss_offpolicy", "loss_is_weighted")


def gradient_tables(target=None, modes: Sequence[str] | None = None, *, cross_check: bool = False,
                    timeout: float | None = None, cross_check_timeout: float | None = None,
                    expect: str | None = None, policy=None, reference=None, old=None) -> GradientTables:
    """``gradients`` of one target, or of every registered estimator (``target=None``);
    over the registry with ``modes``, a catalog entry shows the asked modes its library
    uses and is left out if it uses none.  An estimator whose bound is not reached is
    listed in ``undecided`` instead of raising.  ``timeout``: the wall-clock limit on
    importing a user's file; ``cross_check_timeout`` (None: ``timeout``): CPU seconds per
    symbolic claim of the cross-check.  ``policy``, ``reference``, ``old``: given logits
    (one target only), as in ``gradients``."""
    from verify.api.targets import load_registry

    check_timeout(timeout)
    check_timeout(cross_check_timeout)
    check_expect(expect)
    symbolic_timeout = timeout if cross_check_timeout is None else cross_check_timeout
    names = parse_modes(modes)
    # bad input fails before the layer's imports; a user's file is imported in an isolated worker
    estimators = ([estimator for _, estimator in sorted(load_registry().items())] if target is None
                  else [load_estimator(target, timeout)])
    from verify.layers import gradients as layer

    results, undecided, order = [], {}, []
    for estimator in estimators:
        wanted = names
        if target is None and names is not None and estimator.usage is not None:
            own = {mode.name for mode in layer.library_modes(estimator)}
            wanted = [name for name in names if name in own]
            if not wanted:
                continue
        order.append(estimator.name)
        try:
            results.append(gradients(estimator, wanted, cross_check=cross_check, timeout=symbolic_timeout,
                                     expect=expect, policy=policy, reference=reference, old=old))
        except layer.GradientUndecided as error:
            undecided[estimator.name] = str(error)
    return GradientTables(tuple(results), undecided, single=target is not None, order=tuple(order))


@dataclass(frozen=True)
class TermGradientsResult:
    """The expected gradients of a user's torch term (``report``: the gradient layer's
    ``TermGradientReport``, with ``function``, ``usage``, ``results``, ``notes``);
    ``output``: what the term printed (kept out of the JSON)."""

    report: object
    output: str = field(default="", repr=False, compare=False)
    expect: str | None = None  # the gradient every row must give (``--expect``), or None

    @property
    def mismatches(self) -> tuple[str, ...]:
        """The rows whose gradient is not ``expect`` (the gradient gate), each named."""
        return _mismatches(self.expect, (
            (f"{row.mode} {row.regime}" + ("" if row.position is None else f" position {row.position}"),
             row.gradient_of) for row in self.report.results))

    @property
    def exit_code(self) -> int:
        """1 when a row is not what ``expect`` asks, else 0."""
        from verify.core.claims import EXIT_OK, EXIT_REFUTED

        return EXIT_REFUTED if self.mismatches else EXIT_OK

    def to_json(self) -> dict:
        return json_document("term_gradients", self.report.as_json())


def _term_in_worker(target, usage, given, options, binds, kind):
    from verify.api.targets import resolve_term
    from verify.layers.gradients import autograd
    from verify.layers.gradients.binding import bind_term

    term = bind_term(resolve_term(target), options, binds, kind=kind)
    return autograd.gradient_of_term(term, usage=usage, name=target.rpartition(":")[2], kind=kind, **given)


def term_gradients(target: str, *, usage: str = "loss", policy=None, reference=None, old=None,
                   timeout: float | None = None, expect: str | None = None, options: dict | None = None,
                   binds: dict | None = None, kind: str = "token"):
    """The expected gradient of the user's own per-token torch term ``FILE.py:FUNC``
    (``FUNC(logp, ref_logp, old_logp)``) through its own autograd
    (``verify.layers.gradients.autograd.gradient_of_term``), loaded and run in an isolated worker under a
    wall-clock limit of ``timeout`` seconds.  Raises ``UserCodeFailed`` with the one-line
    reason if the term ends its worker, ``GradientUndecided`` if no bound is reached.
    ``expect``: the gradient gate, as in ``gradients``.  The function's parameters are
    bound by name (``logprob``, ``log_probs_base``, ``old_log_probs``, ``loss_mask``, ...;
    ``verify.layers.gradients.binding``); ``options`` sets others (parameter -> value) and
    ``binds`` names a role outright (parameter -> ``logp``, ``ref_logp``, ``old_logp`` or
    ``mask``: a mask is all ones).  The term gets (batch, sequence) tensors, the
    vocabulary enumerated on the batch axis; ``kind="full"``: a full-vocabulary term
    (ROLL's "full") gets (batch, sequence, vocabulary) log-probs and returns one value
    per position."""
    from verify.core.frameworks import require_torch
    from verify.api.isolation import DEFAULT_SECONDS, UserCodeFailed, run_isolated

    require_torch()
    check_timeout(timeout)
    check_expect(expect)
    check_term_arguments(usage, options, binds)
    if kind not in ("token", "full"):
        raise UsageError(f"unknown kind {kind!r}; known: token, full")
    if kind == "full" and usage != "loss":
        raise UsageError("--kind full: a full-vocabulary term is a loss (it samples nothing to reward)")
    given = {key: value for key, value in (("policy", policy), ("reference", reference), ("old", old))
             if value is not None}
    outcome = run_isolated(_term_in_worker, (target, usage, given, options or {}, binds or {}, kind),
                           seconds=timeout if timeout is not None else DEFAULT_SECONDS)
    if outcome.failure is not None:
        if outcome.failure.startswith("the user's code raised GradientUndecided: "):
            from verify.layers.gradients import GradientUndecided

            raise GradientUndecided(outcome.failure.partition("GradientUndecided: ")[2])
        raise UserCodeFailed(f"{target}: {outcome.failure}")
    return TermGradientsResult(outcome.value, outcome.output, expect)
