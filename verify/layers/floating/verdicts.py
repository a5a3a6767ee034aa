"""Verdicts from the evidence of a run: a counterexample only where the implementation
fails again when called on it alone, and the worst error found for every verdict."""
from __future__ import annotations

import math

import mpmath
import numpy as np

from verify.core.claims import PROVED, REFUTED, TESTED, UNDECIDED, Verdict
from verify.layers.floating.dtype_run import DtypeRun, ReturnedDtype
from verify.layers.floating.tally import MAX_UNKNOWN


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _exact_json(exact):
    """A float when float64 holds it without underflow or overflow, else 17 digits."""
    as_float = float(exact) if mpmath.isfinite(exact) else math.inf
    if math.isfinite(as_float) and (as_float != 0 or exact == 0) and abs(as_float) >= 2.2250738585072014e-308 or exact == 0:
        return as_float
    return mpmath.nstr(exact, 17)


def _recheck(run: DtypeRun, claim: str, logp: float, logq: float):
    """(value, exact) of the implementation called on the one input, if the claim still fails."""
    value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
    outcome = run.judge(logp, logq, value)
    if claim not in outcome or outcome[claim][0]:
        return None
    return value, outcome.get("_exact")


def _counterexample(run, claim, candidates):
    """The first candidate (severity, logp, logq, ...) that fails again when called alone."""
    for candidate in candidates:
        logp, logq = candidate[1], candidate[2]
        rechecked = _recheck(run, claim, logp, logq)
        if rechecked is None:
            continue
        value, exact = rechecked
        if exact is None and claim != "fp_nonnegative":
            continue
        if exact is None:
            exact = run.reference.at(logp, logq)
        return {"logp": _json_float(logp), "logq": _json_float(logq), "dtype": run.info.name,
                "value": _json_float(value),
                "exact": _exact_json(exact) if exact is not None else None}
    return None


def worst_error(run: DtypeRun):
    """The worst error of the run, for every verdict of its dtype (None before any input).
    Inputs, value and exact f are exact decimal strings (results.json rounds floats)."""
    if run.worst_input is None:
        return None

    def where(pair):
        logp, logq = pair
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        exact = run.reference.at(logp, logq)
        return {"logp": repr(logp), "logq": repr(logq), "value": repr(value),
                "exact": mpmath.nstr(exact, 17) if exact is not None else None}

    return {"ulps": _json_float(run.worst_ulps), "ulps_at": where(run.worst_input),
            "abs": _json_float(run.worst_abs), "abs_at": where(run.worst_abs_input)}


def _dtype_contract_verdict(run: DtypeRun) -> Verdict:
    """Every claim of a dtype whose implementation broke the dtype contract: refuted at a
    pair where it does so when called alone (else undecided)."""
    problem = run.dtype_problem
    try:
        run.evaluate(np.array([problem.logp]), np.array([problem.logq]))
    except ReturnedDtype as again:
        example = {"logp": again.logp, "logq": again.logq, "dtype": run.info.name, "returned": again.returned}
        return Verdict(REFUTED, "dtype contract (fp_returns_input_dtype)", str(again), example)
    except Exception as error:  # noqa: BLE001
        return Verdict(UNDECIDED, "implementation failed", f"{type(error).__name__}: {error}"[:300])
    return Verdict(UNDECIDED, "dtype contract broken in batches only",
                   f"{problem}; but not when called alone at ({problem.logp}, {problem.logq})")


def _masked_text(run: DtypeRun) -> str:
    """What a domain reaching -inf added (empty otherwise)."""
    parts = []
    if run.masked:
        parts.append(f"{run.masked:,} pair(s) with logp = -inf (r = 0: against f(0), the limit)")
    if run.never_sampled:
        parts.append(f"{run.never_sampled:,} pair(s) with logq = -inf skipped (never sampled)")
    return "; " + "; ".join(parts) if parts else ""


def verdict_in_dtype(run: DtypeRun, claim: str, profile: str, values_per_dtype: int | None) -> Verdict:
    """The verdict of one claim (a base name) in the run's dtype."""
    tally = run.tallies[claim]
    name = run.info.name
    if run.dtype_problem is not None:
        return _dtype_contract_verdict(run)
    if run.error is not None:
        return Verdict(UNDECIDED, "implementation failed", run.error)
    worst = worst_error(run)
    domain = f"[{run.domain[0]:g}, {run.domain[1]:g}]"
    masked = _masked_text(run)
    if claim in run.exhaustive_claims:
        found = run.exhaustive
        swept = run.sweep_domain
        where = (f"all {found.pairs:,} (logp, logq) pairs of {name} in [{swept[0]:g}, {swept[1]:g}] "
                 f"({values_per_dtype:,} values each{', -0.0 included' if swept[1] >= 0 else ''}); "
                 f"{found.settled_by_mpmath} pair(s) settled by mpmath where the float64 "
                 "enclosure straddled a tolerance")
        if found.undefined:
            where += f"; f undefined at {found.undefined} pair(s), skipped"
        where += masked
        failing = found.failures.get(claim, 0)
        if failing:
            example = _counterexample(run, claim, found.examples.get(claim, []))
            if example is None:
                return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                               f"{failing:,} failing pair(s) in chunks; none fails when called alone; {where}",
                               worst=worst)
            unsettled = found.unsettled.get(claim, 0)
            count = (f"{failing:,} of {found.pairs:,} pairs fail" if not unsettled else
                     f"at least {failing:,} of {found.pairs:,} pairs fail ({unsettled:,} not settled)")
            return Verdict(REFUTED, "exhaustive enumeration", f"{count}; {where}", example, worst=worst)
        if found.unsettled.get(claim):
            return Verdict(UNDECIDED, "exhaustive enumeration, not settled",
                           f"{found.unsettled[claim]:,} pair(s) neither the float64 enclosure nor mpmath (at most "
                           f"{MAX_UNKNOWN:,} pairs) settled; no failure among the others; {where}", worst=worst)
        return Verdict(PROVED, "exhaustive enumeration", f"no failure: {where}", worst=worst)
    if tally.failures:
        on_grid = run.grid_failures.get(claim, 0)
        # the grid's worst failures first (deterministic), then hypothesis's
        ordered = (sorted(tally.failures[:on_grid], key=lambda f: (-f[0], f[1], f[2]))[:20]
                   + sorted(tally.failures[on_grid:], key=lambda f: (-f[0], f[1], f[2]))[:20])
        found = (f"{on_grid} of {run.sources['grid']} grid inputs fail" if on_grid
                 else f"hypothesis (profile {profile}) found failing inputs; the grid of {run.sources['grid']} did not")
        example = _counterexample(run, claim, ordered)
        if example is None:
            return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                           f"{len(tally.failures)} failing input(s) in batches; none fails when called alone",
                           worst=worst)
        note = next(f[5] for f in ordered if (f[1], f[2]) == (example["logp"], example["logq"]))
        return Verdict(REFUTED, f"counterexample ({note})", found, example, worst=worst)
    sources = run.sources
    undefined = (f"; no reference at {run.grid_undefined} grid input(s) (f undefined there, or mpmath did not "
                 "converge), skipped" if run.grid_undefined else "")
    if tally.checked == 0:
        return Verdict(UNDECIDED, "no input could be checked", f"f undefined at every input tried{undefined}",
                       worst=worst)
    parts = ", ".join(f"{family.replace('_', ' ')} {count}" for family, count in run.grid_parts.items())
    return Verdict(TESTED, "dense grid + hypothesis",
                   f"{tally.checked:,} inputs in {domain}: a grid of {sources['grid']:,} pairs ({parts}) and "
                   f"{sources['hypothesis']:,} hypothesis examples (profile {profile}, targeting "
                   f"the worst error); no failure{undefined}{masked}", worst=worst)
