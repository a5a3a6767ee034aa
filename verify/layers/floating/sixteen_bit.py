"""float16 and bfloat16: every pair of the domain, through the exhaustive sweep
(``exhaustive.py``), with the worst errors it picked recomputed exactly."""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from verify.layers.floating import interval
from verify.layers.floating.dtype_run import DtypeRun
from verify.layers.floating.exhaustive import all_values, enumerate_pairs
from verify.layers.floating.tally import keep_examples
from verify.layers.floating.tolerances import MATCH_ULPS
from verify.strategies import numpy_dtype


def sweep_processes(workers: int | None = None) -> int:
    """How many processes share one sweep: ``workers`` (None: every core) where forking
    is safe, else 1.  Safe: a platform with fork, and no torch loaded (a child forked
    after torch started its thread pools can deadlock in them)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods() or "torch" in sys.modules:
        return 1
    return max(1, int(workers)) if workers is not None else (os.cpu_count() or 1)


def sweep_sixteen_bit(run: DtypeRun, claims, domain, workers: int | None = None, progress=None):
    """All four claims over every pair of ``domain`` in the run's 16-bit dtype
    (``exhaustive.py``), swept by ``sweep_processes(workers)`` processes; returns the
    number of values per dtype."""
    enclosures = run.enclosures()
    if enclosures.function is None:
        raise interval.Unsupported(f"no float64 enclosure of f ({enclosures.problem})")

    def implementation(logp, logq):
        return run.evaluate_exact(logp, logq)

    tally = enumerate_pairs(run.info, numpy_dtype(run.info.name), domain, implementation, claims,
                            enclosure=enclosures.function, taylor=enclosures.taylor,
                            derivative=enclosures.derivative, accurate_ulps=run.accurate_ulps, atol=run.atol,
                            match_ulps=MATCH_ULPS, judge=run.judge, progress=progress,
                            workers=sweep_processes(workers))
    if domain[0] == -math.inf:
        masked_value_row(run, claims, tally, domain)
    run.exhaustive = tally
    run.exhaustive_claims = tuple(claims)
    run.sweep_domain = tuple(domain)
    run.sources["exhaustive"] = tally.pairs
    run.undefined += tally.undefined
    # the worst errors, recomputed exactly at the pairs the float64 sweep picked
    for kind, (_, logp, logq) in (("ulps", tally.worst_ulps), ("abs", tally.worst_abs)):
        if logp is None:
            continue
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        outcome = run.judge(logp, logq, value)
        if "_error" not in outcome:
            continue
        in_ulps, absolute = outcome["_error"]
        if kind == "ulps" and (run.worst_input is None or in_ulps >= run.worst_ulps):
            run.worst_ulps, run.worst_input = in_ulps, (logp, logq)
        if kind == "abs" and (run.worst_abs_input is None or absolute >= run.worst_abs):
            run.worst_abs, run.worst_abs_input = absolute, (logp, logq)
    return tally.values_per_dtype


def masked_value_row(run: DtypeRun, claims, tally, domain):
    """The pairs (-inf, logq) for every logq of the domain (r = 0: a masked token), judged
    against f(0), the limit (each distinct value once: the exact value is the same for
    every pair); the pairs with logq = -inf are never sampled and skipped."""
    values = all_values(numpy_dtype(run.info.name), domain)
    n = len(values)
    value = run.evaluate(np.full(n, -np.inf), values) if n else np.empty(0)
    tally.pairs += n
    run.masked += n
    run.never_sampled += n + 1
    distinct = np.unique(value).tolist() + ([math.nan] if np.isnan(value).any() else [])
    for v in distinct:
        where = np.isnan(value) if math.isnan(v) else value == v
        outcome = run.judge(-math.inf, float(values[0]), v)
        if outcome.get("_undefined"):
            if "fp_nonnegative" in claims and not outcome["fp_nonnegative"][0]:
                keep_examples(tally, "fp_nonnegative", where, np.full(n, outcome["fp_nonnegative"][1]),
                              np.full(n, -np.inf), values)
            tally.undefined += int(np.count_nonzero(where))
            continue
        for claim in claims:
            ok, severity = outcome[claim]
            if not ok:
                keep_examples(tally, claim, where, np.full(n, severity), np.full(n, -np.inf), values)
