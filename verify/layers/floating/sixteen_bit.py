"""float16 and bfloat16: every pair of the domain, through the exhaustive sweep
(``exhaustive.py``), with the worst errors it picked recomputed exactly."""
from __future__ import annotations

import os
import sys

import numpy as np

from verify.layers.floating import interval
from verify.layers.floating.dtype_run import DtypeRun
from verify.layers.floating.exhaustive import enumerate_pairs
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
