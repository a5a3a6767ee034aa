"""``check``: the verdicts of one estimator, symbolic ones in r and floating-point ones
on its numeric implementation (the user's code in an isolated worker)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from verify.api.documents import json_document
from verify.api.inputs import (abnormal, by_dtype, check_profile, check_timeout, function_of_r, has_autograd,
                               parse_claims, parse_domain, resolve_estimator, user_code, with_failure)
from verify.core.claims import BACKWARD, FLOATING, SYMBOLIC, Verdict, exit_code, expand_claims
from verify.errors import UsageError


@dataclass(frozen=True)
class CheckResult:
    """Verdicts of one estimator; ``gated`` are the claims its exit code depends on
    (the declared ones, or those asked for).  ``failure``: how the user's code ended its
    worker early (one line; claims it left open are undecided), else None.  ``output``:
    what the user's code printed (kept out of the JSON; the CLI shows it on stderr)."""

    estimator: str
    expression: str
    verdicts: Mapping[str, Verdict]
    gated: tuple[str, ...]
    failure: str | None = None
    output: str = field(default="", repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        return with_failure(exit_code(self.verdicts[c].verdict for c in self.gated), self.failure)

    def gating_every_claim(self) -> "CheckResult":
        """The same verdicts with the exit code gating on every claim (``--all-claims``)."""
        from dataclasses import replace

        return replace(self, gated=tuple(self.verdicts))

    def to_json(self) -> dict:
        payload = {"estimator": self.estimator, "expression": self.expression, "gated": list(self.gated),
                   "claims": {claim: verdict.as_json() for claim, verdict in self.verdicts.items()}}
        if self.failure is not None:
            payload["failure"] = self.failure
        return json_document("check", payload)


def decide_symbolic(expr, claims, timeout, domain, progress, jobs=None):
    """The symbolic layer's ``decide``, passing ``progress`` and ``domain`` where it takes them."""
    from verify.layers import symbolic

    parameters = inspect.signature(symbolic.decide).parameters
    options = {"domain": domain}
    if timeout is not None:
        options["timeout"] = timeout
    if jobs is not None:
        options["jobs"] = jobs
    if progress is not None and "progress" in parameters:
        options["progress"] = progress
    return symbolic.decide(expr, claims, **options), "progress" in parameters


def _plan(estimator, wanted):
    """(expression, domain, every claim to decide, gated claims) for ``check``."""
    from verify.core.expression import as_expression_with_domain  # sympy: only once the input is known good

    expr, domain = as_expression_with_domain(estimator.expr)
    if wanted is not None:
        names = gated = list(wanted)
    else:
        gated = expand_claims(estimator.claims)
        names = list(SYMBOLIC) + (expand_claims(FLOATING) if estimator.numeric is not None else [])
        names += expand_claims(BACKWARD) if has_autograd(estimator) else []  # (else: not applicable)
        names += [c for c in gated if c not in names]
    floating_claims = [c for c in names if c not in SYMBOLIC]
    if floating_claims and estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation for {floating_claims[0]}")
    return expr, domain, names, gated


def floating_verdicts(estimator, claims, profile, on_group, sweep_workers=None, domain=None):
    """The floating-point verdicts, one dtype at a time; ``on_group(verdicts)`` after each;
    ``sweep_workers``: processes per 16-bit sweep (None: every core); ``domain``: (LO, HI)
    from ``parse_domain`` (None: the default)."""
    from verify.layers import floating

    for dtype, group in by_dtype(claims).items():
        found = floating.check_claims(estimator, group, dtype, profile=profile, workers=sweep_workers, domain=domain)
        on_group({f"{claim}@{dtype}": verdict for claim, verdict in found.items()})


def _check_floating_in_worker(target, wanted, profile, sweep_workers=None, log_prob_domain=None):
    """In the isolated worker: resolve (import the user's code), send the plan, then the
    floating-point verdicts dtype by dtype (they survive a later crash)."""
    from verify.api.isolation import send

    estimator = function_of_r(resolve_estimator(target))
    expr, domain, names, gated = _plan(estimator, wanted)
    send(("plan", estimator.name, expr, domain, names, gated))
    floating_verdicts(estimator, [c for c in names if c not in SYMBOLIC], profile,
                      lambda verdicts: send(("verdicts", verdicts)), sweep_workers, log_prob_domain)


def check(target, claims: Sequence[str] | str | None = None, *, timeout: float | None = None,
          profile: str = "ci", progress: Callable[[str, Verdict], None] | None = None,
          jobs: int | None = None, sweep_workers: int | None = None, domain=None) -> CheckResult:
    """Decide claims for one estimator: symbolic ones in r, floating-point ones on its
    numeric implementation.  ``claims=None``: every symbolic claim, every floating-point
    claim if it has an implementation, gating on its declared claims.  ``timeout``: the
    symbolic layer's CPU seconds per claim (None: its default), and the wall-clock limit
    on the user's own code in all (None: ``verify.api.isolation.DEFAULT_SECONDS``).  The
    user's code (a file or module target, an Estimator not in the registry) is imported
    and run in an isolated worker (``verify.api.isolation``).  ``progress(claim, verdict)`` is
    called as each verdict arrives; ``jobs``: symbolic claims decided at once;
    ``sweep_workers``: processes per exhaustive 16-bit sweep (None: every core);
    ``domain``: (LO, HI) or "LO,HI" for the floating-point claims (None: [-60, 0];
    docs/claims.md)."""
    check_timeout(timeout)
    log_prob_domain = parse_domain(domain)  # (``domain`` below is the expression's own, in r)
    check_profile(profile)
    wanted = parse_claims(claims) if claims is not None else None

    def report(verdicts):
        if progress is not None:
            for claim, verdict in verdicts.items():
                progress(claim, verdict)

    verdicts: dict[str, Verdict] = {}
    failure, output = None, ""
    isolated = user_code(target)
    if isolated:
        from verify.api.isolation import DEFAULT_SECONDS, run_isolated

        plan: list = []

        def on_message(message):
            if message[0] == "plan":
                plan[:] = message[1:]
            else:
                verdicts.update(message[1])
                report(message[1])

        outcome = run_isolated(_check_floating_in_worker, (target, wanted, profile, sweep_workers, log_prob_domain),
                               on_message=on_message,
                               seconds=timeout if timeout is not None else DEFAULT_SECONDS)
        failure, output = outcome.failure, outcome.output
        if not plan:  # it ended before its estimator was known (at import)
            name = target if isinstance(target, str) else getattr(target, "name", "?")
            return CheckResult(name, "", {c: abnormal(failure) for c in wanted or ()}, tuple(wanted or ()),
                               failure, output)
        name, expr, domain, names, gated = plan
        for claim in names:
            if claim not in SYMBOLIC and claim not in verdicts:
                verdicts[claim] = abnormal(failure)
    else:
        estimator = function_of_r(resolve_estimator(target))
        expr, domain, names, gated = _plan(estimator, wanted)
        name = estimator.name
    symbolic_claims = [c for c in names if c in SYMBOLIC]
    if symbolic_claims:
        found, reported = decide_symbolic(expr, symbolic_claims, timeout, domain, progress, jobs)
        verdicts.update(found)
        if not reported:
            report({claim: found[claim] for claim in symbolic_claims})
    if not isolated:
        floating_claims = [c for c in names if c not in SYMBOLIC]

        def keep(found):
            verdicts.update(found)
            report(found)

        floating_verdicts(estimator, floating_claims, profile, keep, sweep_workers, log_prob_domain)
    return CheckResult(name, str(expr), {c: verdicts[c] for c in names}, tuple(gated), failure, output)
