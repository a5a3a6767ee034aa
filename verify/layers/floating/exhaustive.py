"""Every (logp, logq) pair of a 16-bit dtype in the domain, all four claims at once.

The implementation is called on chunks of whole rows (one log q, every log p).  The
reference is an enclosure [lo, hi] of f at the exact log ratio (``interval.py``:
float64 interval evaluation, and a Taylor model near t = 0); each claim is decided
from the enclosure where it settles it (for almost every pair), and the few pairs whose
enclosure straddles a tolerance go to ``judge`` (mpmath at the exact inputs, the same
code that checks the grid and hypothesis inputs and re-checks counterexamples).

With numba (a dependency), one compiled pass per pair (``kernel.classify_rows``) computes
the same enclosure with the same float64 operations, passes what the quick test passes,
counts the fp_nonnegative failures and the pairs that only fail fp_accurate, and picks
the worst errors (``kernel.py``, ``kernel_source.py``); only the pairs it leaves (none
for a careful implementation) take the NumPy path (``vectorised.py``), which is the
whole sweep without numba.  Verdicts, counts, examples, worst errors and the pairs left
to mpmath are the same either way (tests/test_floating_exhaustive.py).  The blocks of
rows may be swept by forked worker processes; the parts add up in ``tally.py``.

Nothing here prints; the caller turns the counts into verdicts.
"""
from __future__ import annotations

import math
import time

import numpy as np

from verify.layers.floating.interval import Unsupported
from verify.layers.floating.kernel import interpreting_kernel, kernel_buffers, load_numba, taylor_arguments
from verify.layers.floating.kernel_source import specialised_kernel
from verify.layers.floating.tally import (EXAMPLES_KEPT, MAX_UNKNOWN, ExhaustiveTally, keep_examples, keep_worst,
                                          merge_part)
from verify.layers.floating.vectorised import column_subset, pair_columns, settle, sweep_chunk

__all__ = ["ExhaustiveTally", "all_values", "enumerate_pairs", "MAX_UNKNOWN", "CHUNK_PAIRS"]

# At most 256 KiB per float64 array: for a larger temporary NumPy checks whether it can
# reuse the memory ("temporary elision") by walking the C stack, which costs about 1 ms
# per operation here, more than the arithmetic on the whole chunk.
CHUNK_PAIRS = 1 << 15
BLOCKS = 16  # row blocks handed to workers (and between progress reports)


def all_values(np_dtype, domain) -> np.ndarray:
    """Every value of a 16-bit dtype in ``domain``, -0.0 included, as float64 (sorted by bits)."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(np_dtype).astype(np.float64)
    keep = np.isfinite(values) & (values >= domain[0]) & (values <= domain[1])
    return values[keep]


def enumerate_pairs(info, np_dtype, domain, implementation, claims, *, enclosure, taylor, derivative,
                    accurate_ulps, atol, match_ulps, judge, progress=None, workers=1) -> ExhaustiveTally:
    """Decide ``claims`` (base names) over every pair of the dtype's values in ``domain``.

    ``implementation(logp, logq)`` takes arrays of ``np_dtype`` and returns a float64
    array; ``enclosure(t_lo, t_hi)``, ``taylor(t, t_error)`` (or None) and
    ``derivative(t_lo, t_hi)`` are the reference enclosures; ``judge(logp, logq, value)``
    decides one pair exactly: {claim: (ok, severity)}, "_undefined" when f is undefined
    there, "_error": (ulps, absolute error).

    Each pair is settled from the enclosure [low, high] of f when that is conclusive:
    with M = (low + high)/2, rho = high - M and d = |value - M|, the error |value - f|
    lies in [d - rho, d + rho] (rounded outwards) and the ulp of f between the ulps of
    |M| - rho and |M| + rho; a pair passes when the largest error is within the
    smallest tolerance, fails when the smallest error exceeds the largest, and goes to
    ``judge`` otherwise.

    ``workers`` > 1 sweeps blocks of rows in that many forked processes.  The tally does
    not depend on it: every part of it is a count, a "first in row order" or a total
    order (``tally.keep_examples``), and the parts are merged in row order."""
    sweep = SweepPlan(info, np_dtype, domain, implementation, claims, enclosure, taylor, derivative,
                      accurate_ulps, atol, match_ulps)
    tally = ExhaustiveTally(values_per_dtype=sweep.n)
    for part in sweep_blocks(sweep, workers):
        merge_part(tally, part)
        if progress:
            progress(tally.pairs)
    unknown, tally.unknown = tally.unknown, []
    for logp_value, logq_value, value, which in unknown:
        outcome = judge(logp_value, logq_value, value)
        tally.settled_by_mpmath += 1
        if outcome.get("_undefined"):
            tally.undefined += 1
            continue
        for claim in which:
            ok, severity = outcome[claim]
            if not ok:
                keep_examples(tally, claim, np.array([True]), lambda i: np.array([severity]),
                              np.array([logp_value]), np.array([logq_value]))
        ulps, absolute = outcome.get("_error", (0.0, 0.0))
        if ulps > tally.worst_ulps[0]:
            tally.worst_ulps = (ulps, logp_value, logq_value)
        if absolute > tally.worst_abs[0]:
            tally.worst_abs = (absolute, logp_value, logq_value)
    return tally


class SweepPlan:
    """What every block of rows needs: the values, the implementation, the enclosures
    and the tolerances."""

    def __init__(self, info, np_dtype, domain, implementation, claims, enclosure, taylor, derivative,
                 accurate_ulps, atol, match_ulps):
        self.values = all_values(np_dtype, domain)
        self.n = len(self.values)
        self.values_dtype = self.values.astype(np_dtype)
        self.rows = max(1, CHUNK_PAIRS // self.n)
        self.tiled64 = np.tile(self.values, self.rows)
        self.tiled = np.tile(self.values_dtype, self.rows)
        self.info, self.implementation, self.claims = info, implementation, tuple(claims)
        self.enclosure, self.taylor, self.derivative = enclosure, taylor, derivative
        self.accurate_ulps, self.atol, self.match_ulps = accurate_ulps, atol, match_ulps
        self.inexact = info.name != "float16"  # every difference of two float16 numbers in [-60, 0] is a double
        # a pair within this many ulps passes fp_accurate and fp_matches_expression
        ulps = [u for c, u in (("fp_accurate", accurate_ulps), ("fp_matches_expression", match_ulps)) if c in claims]
        self.easy_ulps = min(ulps) if ulps else math.inf
        # the compiled kernel's program: f's enclosure as instructions, and the Taylor model
        self.tape = self.taylor_arguments = None
        if load_numba() is not None:
            try:
                self.tape = enclosure.tape()
            except (AttributeError, Unsupported):  # another enclosure: the vectorised sweep
                self.tape = None
        self.kernel = None
        if self.tape is not None:
            self.taylor_arguments = taylor_arguments(taylor)
            self.hard, self.severity = kernel_buffers(self.rows * self.n)
            self.negative = np.zeros(self.rows * self.n, dtype=np.int8)
            unit = float(info.unit_roundoff)
            self.inaccurate_parameters = (float(accurate_ulps), float(atol),
                                          float(match_ulps) if "fp_matches_expression" in self.claims else -1.0,
                                          unit, "fp_accurate" in self.claims)
            self.kernel = specialised_kernel(self.tape) or interpreting_kernel()  # compiled here, before any fork

    def blocks(self):
        bounds = np.linspace(0, self.n, min(BLOCKS, self.n) + 1).round().astype(int).tolist()
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


# The plan of the sweep a worker process runs: set only in the worker processes a sweep
# forks (by ``_start_worker``, from the pool's initargs, inherited through the fork and
# never pickled: the plan holds the implementation, which need not pickle).
_PLAN_IN_WORKER = None  # (plan, its rows function), set in forked workers only (inherited, never pickled)


def _start_worker(plan, rows):
    global _PLAN_IN_WORKER
    _PLAN_IN_WORKER = (plan, rows)


def _sweep_block_in_worker(bounds):
    plan, rows = _PLAN_IN_WORKER
    return rows(plan, *bounds)


def sweep_blocks(sweep, workers, rows=None):
    """The parts of every block, in row order, swept here or in forked workers;
    ``rows(sweep, first, end)`` sweeps a block (default ``sweep_rows``: the value sweep;
    the backward sweep passes its own)."""
    rows = rows or sweep_rows
    blocks = sweep.blocks()
    if workers <= 1 or len(blocks) <= 1:
        for start, stop in blocks:
            yield rows(sweep, start, stop)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # an executor, not a Pool: a worker that dies (os._exit in the implementation) breaks
    # it with BrokenProcessPool, where a Pool would wait for the lost block forever
    with ProcessPoolExecutor(min(workers, len(blocks)), mp_context=multiprocessing.get_context("fork"),
                             initializer=_start_worker, initargs=(sweep, rows)) as pool:
        yield from pool.map(_sweep_block_in_worker, blocks)


def sweep_rows(sweep, first_row, end_row) -> ExhaustiveTally:
    """Every pair with log q = values[first_row:end_row], in chunks of whole rows."""
    part = ExhaustiveTally()
    n, claims = sweep.n, sweep.claims
    kernel = sweep.kernel
    for start in range(first_row, end_row, sweep.rows):
        stop = min(end_row, start + sweep.rows)
        size = (stop - start) * n
        logp64, logp = sweep.tiled64[:size], sweep.tiled[:size]
        logq = np.repeat(sweep.values_dtype[start:stop], n)
        with np.errstate(all="ignore"):
            clock = time.process_time()
            value = sweep.implementation(logp, logq)
            part.implementation_cpu += time.process_time() - clock
        part.pairs += size
        if kernel is None:
            logq64 = np.repeat(sweep.values[start:stop], n)
            sweep_chunk(part, sweep, logp64, logq64, value)
            continue
        kinds, severity, negative = sweep.hard[:size], sweep.severity[:size], sweep.negative[:size]
        kept = part.examples.get("fp_nonnegative", [])
        full = len(kept) >= EXAMPLES_KEPT
        count, best_abs, at_abs, best_ulps, at_ulps, inaccurate, negatives, candidates = kernel(
            value, sweep.values, start, stop, sweep.inexact, *sweep.tape, *sweep.taylor_arguments,
            sweep.easy_ulps, sweep.info.max_finite, float(sweep.info.smallest_normal),
            2.0 ** (1 - sweep.info.precision), kinds, severity, *sweep.inaccurate_parameters,
            negative, "fp_nonnegative" in claims, full, kept[-1][0] if full else 0.0)
        if negatives:  # the vectorised sweep's keep_examples, from the kernel's count and candidates
            part.failures["fp_nonnegative"] = part.failures.get("fp_nonnegative", 0) + negatives
            if candidates:
                index = np.flatnonzero(negative)
                keep_worst(part.examples.setdefault("fp_nonnegative", []), -value[index], logp64[index],
                           sweep.values[start + index // n])
        if inaccurate:  # failing fp_accurate alone: counted, and the worst kept, as settle does
            index = np.flatnonzero(kinds == 2)
            keep_examples(part, "fp_accurate", np.ones(len(index), dtype=bool), severity[index], logp64[index],
                          sweep.values[start + index // n])
        any_hard = count > 0
        if any_hard:
            # the pairs the kernel did not pass: the same columns as the vectorised sweep
            index = np.flatnonzero(kinds == 1)
            at_q = sweep.values[start + index // n]
            columns = pair_columns(sweep, logp64[index], at_q, value[index])
            if columns["hard"].any():
                settle(part, sweep, column_subset(columns, np.flatnonzero(columns["hard"])))
        # the worst errors exactly as the vectorised sweep picks them (first maximum in row order)
        if best_abs > part.worst_abs[0]:
            part.worst_abs = (float(best_abs), float(logp64[at_abs]), float(sweep.values[start + at_abs // n]))
        if best_ulps > part.worst_ulps[0]:
            part.worst_ulps = (float(best_ulps), float(logp64[at_ulps]), float(sweep.values[start + at_ulps // n]))
        if any_hard and not math.isinf(part.worst_ulps[0]):  # a non-finite value is a hard pair
            nonfinite = columns["in_range"] & ~columns["finite"]
            if nonfinite.any():
                first = int(np.flatnonzero(nonfinite)[0])
                at = (float(columns["logp"][first]), float(columns["logq"][first]))
                part.worst_ulps = (math.inf, *at)
                part.worst_abs = (math.inf, *at)
    return part
