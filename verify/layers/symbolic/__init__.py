"""The symbolic layer: decide the pointwise, expectation and gradient claims of
shared/CLAIMS.md for an expression f(r), r > 0.

How a verdict is reached:
- ``proved`` only by exact reasoning: sympy's assumptions, exact identities, or a
  monotonicity argument: on each piece of (0, inf) where f is smooth (Abs, Min, Max are
  split at their switching points), the critical points come from an exact solveset (or
  are isolated by a certified sign change of a derivative whose own critical points are
  exact), so f is strictly monotone between them and its infimum is attained at those
  points or reached at the ends (sympy limits).  Every sign used is exact or certified by
  interval arithmetic.
- ``refuted`` only with a counterexample that interval arithmetic certifies: a value of
  r, two values of r, or an explicit pair of two-point distributions p, q.
- ``undecided`` otherwise, and whenever the time limit (CPU time of the worker, so the
  same on an idle and a busy machine) runs out.

Modules: ``values`` (exact values, checked limits, certified signs), ``pieces`` (roots,
critical points, the split into smooth pieces), ``domain`` (where f is defined; the
shared ``analyse``), ``bounds`` (certified interval covers and leading terms in log r),
``search`` (certified counterexamples), ``claims`` (one method per claim).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import sympy as sp

from verify.errors import UsageError
from verify.layers.symbolic.certified import Uncertain
from verify.core.claims import SYMBOLIC, UNDECIDED, Verdict
from verify.core.expression import as_expression, parse_with_domain
from verify.layers.symbolic.claims import _Claims
from verify.layers.symbolic.domain import Analysis, analyse
from verify.layers.symbolic.values import Undecided, _precise
from verify.core.timelimit import Failed, TimedOut, run_all

__all__ = ["decide", "decide_one", "analyse", "Analysis", "DEFAULT_TIMEOUT"]

# CPU seconds per claim (and for the shared analysis).  CPU time does not depend on the
# machine's load; every registered estimator's verdicts take at most a few percent of it
# (benchmarks/bench_margin.py prints the margin per claim).
DEFAULT_TIMEOUT = 20.0


# Share of a claim's CPU time that sympy's part of an argument may use before the
# certified argument (interval covers) takes over.
SYMPY_SHARE = 0.5


@_precise
def decide_one(analysis: Analysis, claim: str, sympy_seconds: float | None = None) -> Verdict:
    """One claim's verdict from an analysis (no time limit here: see ``decide``).
    ``sympy_seconds``: CPU seconds for sympy's part of a sign argument (run in a child),
    None for no limit."""
    claims = _Claims(analysis, sympy_seconds)
    if analysis.undefined_at is not None and claim != "zero_at_one":
        return claims._undefined()
    try:
        return getattr(claims, claim)()
    except Undecided as reason:
        return Verdict(UNDECIDED, "no proof or certified counterexample found", str(reason)[:300])
    except Uncertain as reason:
        return Verdict(UNDECIDED, "interval enclosure too wide", str(reason)[:300])


def _checked_input(expr, claims, domain):
    """(expression, domain, claim list) from what the caller gave; UsageError when bad."""
    if isinstance(expr, str):
        expr, parsed_domain = parse_with_domain(expr)
        domain = tuple(parsed_domain) + tuple(c for c in domain if c not in parsed_domain)
    elif isinstance(expr, sp.Basic):
        expr = as_expression(expr)
    else:
        raise UsageError(f"expected an expression in r (a string or a sympy expression), got {type(expr).__name__}")
    if claims is None:
        claims = list(SYMBOLIC)
    elif isinstance(claims, str):
        claims = [c.strip() for c in claims.split(",") if c.strip()]
    else:
        claims = list(claims)
    for claim in claims:
        if not isinstance(claim, str) or claim not in SYMBOLIC:
            raise UsageError(f"not a symbolic claim: {claim!r}; known: {', '.join(SYMBOLIC)}")
    if not claims:
        raise UsageError("no claims given")
    return expr, tuple(domain), list(dict.fromkeys(claims))


def decide(expr, claims: Iterable[str] | str | None = None, timeout: float = DEFAULT_TIMEOUT, jobs: int = 2,
           domain=(), progress: Callable[[str, Verdict], None] | None = None,
           cpu_times: dict | None = None) -> dict[str, Verdict]:
    """Verdicts for symbolic claims of f(r).

    ``expr``: a string in r (parsed by the whitelist parser, its domain as written
    recorded) or a sympy expression in r.  ``claims``: names (default: all 13).
    ``timeout``: CPU seconds for the shared analysis and for each claim (sympy's part of
    a sign argument runs in a child with ``SYMPY_SHARE`` of it, so a claim may use up to
    1.5 times ``timeout`` in all); a claim that runs out is ``undecided``.  CPU time, not wall time: the verdicts do not depend on
    the machine's load (a wall-clock backstop of ``timelimit.wall_backstop(timeout)``
    only stops a hang).  ``domain``: extra conditions recorded by the parser
    (``parse_with_domain``) for f to be defined as written.  ``progress(claim,
    verdict)`` is called in this process as each verdict arrives.  ``cpu_times``, a
    dict, receives the CPU seconds of "analysis" and of each claim.
    Raises ``verify.UsageError`` on bad input (unparsable expression, unknown claim)."""
    expr, domain, claims = _checked_input(expr, claims, domain)
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        raise UsageError("timeout must be in (0, 3600] CPU seconds")
    used = []
    analysis = run_all([(analyse, (expr, domain))], timeout, cpu_times=used)[0]
    if cpu_times is not None:
        cpu_times["analysis"] = used[0]
    if isinstance(analysis, (TimedOut, Failed)):
        reason = (f"splitting f into smooth pieces took more than {timeout:g} s of CPU time"
                  if isinstance(analysis, TimedOut) else f"analysis failed: {analysis.error}")
        analysis = Analysis(expr, None, False, None, reason)

    def as_verdict(result):
        if isinstance(result, TimedOut):
            return Verdict(UNDECIDED, "time limit", f"no verdict within {timeout:g} s of CPU time")
        if isinstance(result, Failed):
            return Verdict(UNDECIDED, "internal error", result.error)
        return result

    on_result = None
    if progress is not None:
        on_result = lambda index, result: progress(claims[index], as_verdict(result))  # noqa: E731
    results = run_all([(decide_one, (analysis, claim, SYMPY_SHARE * timeout)) for claim in claims], timeout, jobs=jobs,
                      cpu_times=used, on_result=on_result)
    if cpu_times is not None:
        cpu_times.update(zip(claims, used))
    return {claim: as_verdict(result) for claim, result in zip(claims, results)}
