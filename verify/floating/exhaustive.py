"""Every (logp, logq) pair of a 16-bit dtype in the domain, all four claims at once.

The implementation is called on chunks of whole rows (one log q, every log p).  The
reference is an enclosure [lo, hi] of f at the exact log ratio (``interval.py``:
float64 interval evaluation, and a Taylor model near t = 0); each claim is decided
from the enclosure where it settles it (for almost every pair), and the few pairs whose
enclosure straddles a tolerance go to ``judge`` (mpmath at the exact inputs, the same
code that checks the grid and hypothesis inputs and re-checks counterexamples).

With numba (a dependency), one compiled pass per pair (``_classify``, below) computes
the same enclosure with the same float64 operations, passes what the quick test passes,
counts the fp_nonnegative failures and the pairs that only fail fp_accurate, and picks
the worst errors; only the
pairs it leaves (none for a careful implementation) take the NumPy path, which is the
whole sweep without numba.  Verdicts, counts, examples, worst errors and the pairs left
to mpmath are the same either way (tests/test_floating_exhaustive.py).

Nothing here prints; the caller turns the counts into verdicts.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from estimators._numerics import spacing_at
from verify.floating.interval import LIBM_ULPS, OPCODES, ROUNDED_OP_ULPS, Unsupported, _down, _up

__all__ = ["ExhaustiveTally", "all_values", "enumerate_pairs", "MAX_UNKNOWN", "CHUNK_PAIRS"]

# At most 256 KiB per float64 array: for a larger temporary NumPy checks whether it can
# reuse the memory ("temporary elision") by walking the C stack, which costs about 1 ms
# per operation here, more than the arithmetic on the whole chunk.
CHUNK_PAIRS = 1 << 15
MAX_UNKNOWN = 20_000  # pairs settled one by one in mpmath before a claim is left undecided
EXAMPLES_KEPT = 8  # failing pairs kept per claim (worst first), for counterexamples


@dataclass
class ExhaustiveTally:
    """What the enumeration found, per claim."""

    pairs: int = 0
    values_per_dtype: int = 0
    failures: dict = field(default_factory=dict)  # claim -> number of failing pairs
    examples: dict = field(default_factory=dict)  # claim -> [(severity, logp, logq)], worst first
    settled_by_mpmath: int = 0
    unsettled: dict = field(default_factory=dict)  # claim -> pairs neither the enclosure nor mpmath settled
    undefined: int = 0  # pairs where f is undefined at the exact inputs
    worst_ulps: tuple = (0.0, None, None)  # (error in ulps, logp, logq): approximate, refined by the caller
    worst_abs: tuple = (0.0, None, None)
    # the first MAX_UNKNOWN pairs (in row order) the enclosure did not settle, as
    # (logp, logq, value, claims), waiting for the exact judge (empty once judged)
    unknown: list = field(default_factory=list)
    implementation_cpu: float = 0.0  # CPU seconds inside the implementation (every worker's): for the benchmark


def all_values(np_dtype, domain) -> np.ndarray:
    """Every value of a 16-bit dtype in ``domain``, -0.0 included, as float64 (sorted by bits)."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(np_dtype).astype(np.float64)
    keep = np.isfinite(values) & (values >= domain[0]) & (values <= domain[1])
    return values[keep]


def _ulp(magnitude, info):
    """Spacing of the dtype's numbers at |E| = magnitude (a float64 array >= 0)."""
    return spacing_at(magnitude, float(info.smallest_normal), info.precision)


def _example_order(example):
    severity, logp, logq = example
    return -severity, -logq, -logp


def _keep_examples(tally, claim, bad, severity, logp, logq):
    """Count the failing pairs ``bad`` and keep the EXAMPLES_KEPT worst failures seen so
    far: largest severity first, then log q nearest 0, then log p nearest 0 (the sweep's
    row order in the domain [-60, 0]).  That order is total, so what is kept does not
    depend on how the pairs were split into chunks (or workers).  ``severity``: an array
    for every pair (NaN counts as +inf), or a function giving it at the failing ones."""
    kept = tally.examples.setdefault(claim, [])
    full = not callable(severity)
    if full and len(kept) >= EXAMPLES_KEPT:  # cheap: only what may beat the last one kept
        count = int(np.count_nonzero(bad))
        index = np.flatnonzero(bad & ~(severity < kept[-1][0]))
    else:
        index = np.flatnonzero(bad)
        count = len(index)
    if not count:
        return
    tally.failures[claim] = tally.failures.get(claim, 0) + count
    if len(index):
        _keep_worst(kept, severity[index] if full else severity(index), logp[index], logq[index])


def _keep_worst(kept, severity, at_p, at_q):
    """Merge failing pairs (their severities, NaN as +inf, and inputs) into ``kept``, the
    EXAMPLES_KEPT worst so far in ``_example_order``."""
    severity = np.asarray(severity, dtype=np.float64)
    severity = np.where(np.isnan(severity), np.inf, severity)
    if len(kept) >= EXAMPLES_KEPT:  # only what beats the last one kept
        last, last_p, last_q = kept[-1]
        better = (severity > last) | ((severity == last) & ((at_q > last_q) | ((at_q == last_q) & (at_p > last_p))))
        if not better.any():
            return
        severity, at_p, at_q = severity[better], at_p[better], at_q[better]
    if len(severity) > EXAMPLES_KEPT:
        best = np.lexsort((-at_p, -at_q, -severity))[:EXAMPLES_KEPT]
        severity, at_p, at_q = severity[best], at_p[best], at_q[best]
    kept += zip(severity.tolist(), at_p.tolist(), at_q.tolist())
    kept.sort(key=_example_order)
    del kept[EXAMPLES_KEPT:]


def _enclose(t_hi, inexact, enclosure, taylor):
    """[low, high] around f at every t within one float64 ulp of ``t_hi`` (when
    ``inexact``: log p - log q did not fit a double) or at ``t_hi`` itself: the float64
    interval enclosure, intersected with the Taylor model near t = 0 where the former
    is not tight (a cancelling formula such as exp(t) - 1 - t)."""
    if inexact:
        t_low, t_high = _down(t_hi, 1), _up(t_hi, 1)
    else:
        t_low = t_high = t_hi
    low, high = enclosure(t_low, t_high)
    if taylor is None:
        return low, high
    near = np.flatnonzero(np.abs(t_hi) <= taylor.radius * (1 - 2 ** -30))
    if not len(near):
        return low, high
    direct_low, direct_high = low[near], high[near]
    loose = ~(direct_high - direct_low <= np.abs(direct_low + direct_high) * 2.0 ** -44)  # NaN: loose
    if not loose.any():
        return low, high
    index, direct_low, direct_high = near[loose], direct_low[loose], direct_high[loose]
    centre = t_hi[index]
    error = np.abs(centre) * 2.0 ** -52 + 2.0 ** -1000 if inexact else np.zeros(len(index))
    taylor_low, taylor_high = taylor(centre, error)
    # both enclosures are valid: keep the tighter ends (fmax/fmin skip NaN)
    low, high = np.array(low, dtype=np.float64), np.array(high, dtype=np.float64)  # writable copies
    low[index] = np.fmax(taylor_low, direct_low)
    high[index] = np.fmin(taylor_high, direct_high)
    return low, high


def _decide(part, ulps, absolute, matches, derivative, info, unit, match_ulps):
    """(passes, fails) for fp_accurate (or fp_matches_expression) on the columns of
    some pairs; a pair in neither is undecided."""
    grow, shrink = 1 + 2.0 ** -48, 1 - 2.0 ** -48
    smallest_normal, max_finite = float(info.smallest_normal), info.max_finite
    good, error_high, error_low = part["good"], part["error_high"], part["error_low"]
    with np.errstate(all="ignore"):
        tolerance_low = np.maximum(ulps * part["ulp_low"], absolute)
        tolerance_high = np.maximum(ulps * part["ulp_high"], absolute)
        if matches:
            # plus MATCH_ULPS u ((|logp| + |logq|)(1 + |f'|) + 1): first with f' = 0 (a
            # lower bound), then with f' where that does not settle the pair
            cheap = match_ulps * unit * ((np.abs(part["logp"]) + np.abs(part["logq"])) + 1.0)
            tolerance_low = tolerance_low + cheap * shrink
            tolerance_high = tolerance_high + cheap * grow
            open_pairs = good & (error_high > tolerance_low) & (error_high >= smallest_normal)
            if open_pairs.any():
                index = np.flatnonzero(open_pairs)
                slack = match_slack(part["logp"][index], part["logq"][index], derivative, unit, match_ulps)
                tolerance_low[index] = ulps * part["ulp_low"][index] + slack * shrink
                tolerance_high[index] = ulps * part["ulp_high"][index] + slack * grow
        passes = good & ((error_high <= tolerance_low) | (error_high < smallest_normal))
        fails = good & (error_low > tolerance_high) & (error_low >= smallest_normal)
        fails |= part["in_range"] & ~part["finite"]
        # beyond the finite range: +-inf or +-max with the sign of f
        beyond = part["magnitude_low"] > max_finite
        if beyond.any():
            value, middle = part["value"], part["middle"]
            limit_ok = beyond & ((value == np.copysign(np.inf, middle)) | (value == np.copysign(max_finite, middle)))
            passes |= limit_ok
            fails |= beyond & ~limit_ok
    return passes, fails


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
    order (``_keep_examples``), and the parts are merged in row order."""
    _keep_freed_memory()
    sweep = _Sweep(info, np_dtype, domain, implementation, claims, enclosure, taylor, derivative,
                   accurate_ulps, atol, match_ulps)
    tally = ExhaustiveTally(values_per_dtype=sweep.n)
    for part in _sweep_blocks(sweep, workers):
        _merge(tally, part)
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
                _keep_examples(tally, claim, np.array([True]), lambda i: np.array([severity]),
                               np.array([logp_value]), np.array([logq_value]))
        ulps, absolute = outcome.get("_error", (0.0, 0.0))
        if ulps > tally.worst_ulps[0]:
            tally.worst_ulps = (ulps, logp_value, logq_value)
        if absolute > tally.worst_abs[0]:
            tally.worst_abs = (absolute, logp_value, logq_value)
    return tally


def _keep_freed_memory():
    """Ask glibc to keep freed memory instead of handing it back to the kernel at once.
    The sweep allocates and frees arrays of ~200 KB millions of times; by default glibc
    trims its heap (or unmaps them) after most frees, and the page faults of the next
    allocation cost more system time than the arithmetic (9 s of 52 s for k3 in
    float16).  No effect elsewhere (another libc, or no libc found)."""
    global _MEMORY_KEPT
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_trim_threshold, 512 << 20)
    mallopt(m_mmap_threshold, 32 << 20)


_MEMORY_KEPT = False
BLOCKS = 16  # row blocks handed to workers (and between progress reports)


class _Sweep:
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
        self.tape = self.taylor_parameters = None
        if _numba() is not None:
            try:
                self.tape = enclosure.tape()
            except (AttributeError, Unsupported):  # another enclosure: the vectorised sweep
                self.tape = None
        self.kernel = None
        if self.tape is not None:
            self.taylor_parameters = _taylor_parameters(taylor)
            self.hard, self.severity = _buffers(self.rows * self.n)
            self.negative = np.zeros(self.rows * self.n, dtype=np.int8)
            unit = float(info.unit_roundoff)
            self.inaccurate_parameters = (float(accurate_ulps), float(atol),
                                          float(match_ulps) if "fp_matches_expression" in self.claims else -1.0,
                                          unit, "fp_accurate" in self.claims)
            self.kernel = _specialised(self.tape) or _kernel()  # compiled here, before any fork

    def blocks(self):
        bounds = np.linspace(0, self.n, min(BLOCKS, self.n) + 1).round().astype(int).tolist()
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


_ACTIVE: _Sweep | None = None  # the sweep forked workers inherit


def _buffers(size):
    """The kernel's outputs per pair: its kind (0 passed, 1 hard, 2 fails fp_accurate only)
    and that failure's severity."""
    return np.zeros(size, dtype=np.int8), np.zeros(size)


def _taylor_parameters(taylor):
    """The Taylor model (or its absence) as the kernel's scalar arguments."""
    if taylor is None:
        return (False, 0.0, np.zeros(2), 0, 0, 0.0, 0.0, 0.0, 0.0)
    return (True, taylor.radius * (1 - 2 ** -30), np.array(taylor.centers, dtype=np.float64), taylor.leading,
            taylor.slope_power, float(taylor.bound), float(taylor.slope_scale), float(taylor.absolute), 0.0)


def _sweep_block(bounds):
    return _sweep_rows(_ACTIVE, *bounds)


def _sweep_blocks(sweep, workers):
    """The parts of every block, in row order, swept here or in forked workers."""
    global _ACTIVE
    blocks = sweep.blocks()
    if workers <= 1 or len(blocks) <= 1:
        for start, stop in blocks:
            yield _sweep_rows(sweep, start, stop)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _ACTIVE = sweep
    try:
        # an executor, not a Pool: a worker that dies (os._exit in the implementation) breaks
        # it with BrokenProcessPool, where a Pool would wait for the lost block forever
        with ProcessPoolExecutor(min(workers, len(blocks)), mp_context=multiprocessing.get_context("fork")) as pool:
            yield from pool.map(_sweep_block, blocks)
    finally:
        _ACTIVE = None


def _merge(tally, part):
    """Add one block's tally to the whole (blocks arrive in row order)."""
    tally.pairs += part.pairs
    for claim, count in part.failures.items():
        tally.failures[claim] = tally.failures.get(claim, 0) + count
    for claim, examples in part.examples.items():
        kept = tally.examples.setdefault(claim, [])
        kept += examples
        kept.sort(key=_example_order)
        del kept[EXAMPLES_KEPT:]
    if part.worst_ulps[0] > tally.worst_ulps[0]:
        tally.worst_ulps = part.worst_ulps
    if part.worst_abs[0] > tally.worst_abs[0]:
        tally.worst_abs = part.worst_abs
    for claim, count in part.unsettled.items():
        tally.unsettled[claim] = tally.unsettled.get(claim, 0) + count
    tally.implementation_cpu += part.implementation_cpu
    room = max(0, MAX_UNKNOWN - len(tally.unknown))
    tally.unknown += part.unknown[:room]
    for *_, which in part.unknown[room:]:
        for claim in which:
            tally.unsettled[claim] = tally.unsettled.get(claim, 0) + 1


def _sweep_rows(sweep, first_row, end_row) -> ExhaustiveTally:
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
            _sweep_chunk(part, sweep, logp64, logq64, value)
            continue
        kinds, severity, negative = sweep.hard[:size], sweep.severity[:size], sweep.negative[:size]
        kept = part.examples.get("fp_nonnegative", [])
        full = len(kept) >= EXAMPLES_KEPT
        count, best_abs, at_abs, best_ulps, at_ulps, inaccurate, negatives, candidates = kernel(
            value, sweep.values, start, stop, sweep.inexact, *sweep.tape, *sweep.taylor_parameters,
            sweep.easy_ulps, sweep.info.max_finite, float(sweep.info.smallest_normal),
            2.0 ** (1 - sweep.info.precision), kinds, severity, *sweep.inaccurate_parameters,
            negative, "fp_nonnegative" in claims, full, kept[-1][0] if full else 0.0)
        if negatives:  # the vectorised sweep's _keep_examples, from the kernel's count and candidates
            part.failures["fp_nonnegative"] = part.failures.get("fp_nonnegative", 0) + negatives
            if candidates:
                index = np.flatnonzero(negative)
                _keep_worst(part.examples.setdefault("fp_nonnegative", []), -value[index], logp64[index],
                            sweep.values[start + index // n])
        if inaccurate:  # failing fp_accurate alone: counted, and the worst kept, as _settle does
            index = np.flatnonzero(kinds == 2)
            _keep_examples(part, "fp_accurate", np.ones(len(index), dtype=bool), severity[index], logp64[index],
                           sweep.values[start + index // n])
        any_hard = count > 0
        if any_hard:
            # the pairs the kernel did not pass: the same columns as the vectorised sweep
            index = np.flatnonzero(kinds == 1)
            at_q = sweep.values[start + index // n]
            columns = _columns(sweep, logp64[index], at_q, value[index])
            if columns["hard"].any():
                _settle(part, sweep, _subset(columns, np.flatnonzero(columns["hard"])))
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


_COLUMNS = ("logp", "logq", "value", "middle", "radius", "magnitude", "magnitude_low", "in_range", "finite",
            "distance", "error_high", "ulp_low", "good")


def _subset(columns, index):
    return {name: columns[name][index] for name in _COLUMNS}


def _columns(sweep, logp64, logq64, value):
    """Per pair: the enclosure of f and what the claims need of it, and ``hard``: the pairs
    the quick test (within the tighter tolerance's ulps) does not pass."""
    info = sweep.info
    grow, margin = 1 + 2.0 ** -48, 2.0 ** -1000
    with np.errstate(all="ignore"):
        low, high = _enclose(logp64 - logq64, sweep.inexact, sweep.enclosure, sweep.taylor)
        middle = 0.5 * low + 0.5 * high
        radius = (high - middle) * grow + margin  # NaN where the enclosure failed
        magnitude = np.abs(middle)
        magnitude_low = np.maximum(magnitude - radius, 0.0)
        in_range = magnitude + radius <= info.max_finite  # False where the enclosure is NaN
        finite_value = np.isfinite(value)
        distance = np.abs(value - middle)
        error_high = distance * grow + radius
        ulp_low = _ulp(magnitude_low, info)
        good = in_range & finite_value
        # most pairs are within the tighter tolerance's ulps part: they pass both
        # accuracy claims and fp_finite, and only count for the worst error
        hard = ~(good & (error_high <= sweep.easy_ulps * ulp_low))
    return {"logp": logp64, "logq": logq64, "value": value, "middle": middle, "radius": radius,
            "magnitude": magnitude, "magnitude_low": magnitude_low, "in_range": in_range, "finite": finite_value,
            "distance": distance, "error_high": error_high, "ulp_low": ulp_low, "good": good, "hard": hard}


def _sweep_chunk(part, sweep, logp64, logq64, value):
    """One chunk, vectorised in NumPy (without the compiled kernel)."""
    if "fp_nonnegative" in sweep.claims and not value.min() >= 0:  # the minimum is NaN if any value is
        _keep_examples(part, "fp_nonnegative", ~(value >= 0), -value, logp64, logq64)
    columns = _columns(sweep, logp64, logq64, value)
    hard, good, distance, ulp_low = columns["hard"], columns["good"], columns["distance"], columns["ulp_low"]
    any_hard = hard.any()
    if any_hard:
        _settle(part, sweep, _subset(columns, np.flatnonzero(hard)))
    with np.errstate(all="ignore"):
        judged_distance = np.where(good, distance, -1.0)
        worst = int(np.argmax(judged_distance))
        if judged_distance[worst] > part.worst_abs[0]:
            part.worst_abs = (float(judged_distance[worst]), float(logp64[worst]), float(logq64[worst]))
        in_ulps = judged_distance / ulp_low  # ranks pairs; the caller recomputes the worst exactly
        worst = int(np.argmax(in_ulps))
        if in_ulps[worst] > part.worst_ulps[0]:
            part.worst_ulps = (float(in_ulps[worst]), float(logp64[worst]), float(logq64[worst]))
    if any_hard and not math.isinf(part.worst_ulps[0]):  # a non-finite value is a hard pair
        nonfinite = columns["in_range"] & ~columns["finite"]
        if nonfinite.any():
            first = int(np.flatnonzero(nonfinite)[0])
            part.worst_ulps = (math.inf, float(logp64[first]), float(logq64[first]))
            part.worst_abs = (math.inf, float(logp64[first]), float(logq64[first]))


def _settle(part, sweep, columns):
    """fp_finite, fp_accurate and fp_matches_expression on the pairs the quick test did
    not pass (``columns``, in row order): count failures, keep examples, and queue what
    the enclosure leaves open for the exact judge."""
    claims, info = sweep.claims, sweep.info
    max_finite, smallest_normal = info.max_finite, float(info.smallest_normal)
    grow, shrink = 1 + 2.0 ** -48, 1 - 2.0 ** -48
    logp64, logq64 = columns["logp"], columns["logq"]
    finite_value, in_range = columns["finite"], columns["in_range"]
    with np.errstate(all="ignore"):
        columns["error_low"] = columns["distance"] * shrink - columns["radius"]
        columns["ulp_high"] = _ulp(columns["magnitude"] + columns["radius"], info)
    undecided = {}
    if "fp_finite" in claims:
        out_of_range = columns["magnitude_low"] > max_finite
        undecided["fp_finite"] = ~finite_value & ~in_range & ~out_of_range
        bad = ~finite_value & in_range
        if bad.any():
            _keep_examples(part, "fp_finite", bad, lambda i: np.ones(len(i)), logp64, logq64)
    for claim, ulps, absolute in (("fp_accurate", sweep.accurate_ulps, sweep.atol),
                                  ("fp_matches_expression", sweep.match_ulps, 0.0)):
        if claim not in claims:
            continue
        passes, fails = _decide(columns, ulps, absolute, claim == "fp_matches_expression", sweep.derivative,
                                info, float(info.unit_roundoff), sweep.match_ulps)
        undecided[claim] = ~(passes | fails)
        if fails.any():
            distance, ulp_middle = columns["distance"], columns["ulp_low"]
            _keep_examples(part, claim, fails, lambda i: np.where(finite_value[i], distance[i] / ulp_middle[i], np.inf),
                           logp64, logq64)
    any_undecided = np.zeros(len(logp64), dtype=bool)
    for mask in undecided.values():
        any_undecided |= mask
    if any_undecided.any():
        index = np.flatnonzero(any_undecided)
        room = max(0, MAX_UNKNOWN - len(part.unknown))
        value = columns["value"]
        for i in index[:room].tolist():
            which = tuple(c for c, mask in undecided.items() if mask[i])
            part.unknown.append((float(logp64[i]), float(logq64[i]), float(value[i]), which))
        for claim, mask in undecided.items():
            beyond = int(np.count_nonzero(mask[index[room:]]))
            if beyond:
                part.unsettled[claim] = part.unsettled.get(claim, 0) + beyond


def match_slack(logp, logq, derivative, unit, match_ulps):
    """The part of the fp_matches_expression tolerance beyond MATCH_ULPS ulps of f:
    MATCH_ULPS u ((|logp| + |logq|)(1 + |f'(t)|) + 1), with |f'(t)| bounded above by the
    derivative's enclosure (0 where that enclosure is not finite)."""
    logp, logq = np.asarray(logp, dtype=np.float64), np.asarray(logq, dtype=np.float64)
    with np.errstate(all="ignore"):
        t_hi = logp - logq
        virtual = t_hi - logp
        t_err = (logp - (t_hi - virtual)) + (-logq - virtual)  # TwoSum: t_hi + t_err = logp - logq
        t_lo_bound = np.where(t_err < 0, np.nextafter(t_hi, -np.inf), t_hi)
        t_hi_bound = np.where(t_err > 0, np.nextafter(t_hi, np.inf), t_hi)
        slope = np.zeros_like(t_hi)
        if derivative is not None:
            low, high = derivative(t_lo_bound, t_hi_bound)
            slope = np.maximum(np.abs(low), np.abs(high))
            slope = np.where(np.isfinite(slope), slope, 0.0)
        magnitude = np.abs(logp) + np.abs(logq)
        return match_ulps * unit * (magnitude * (1.0 + slope) + 1.0)


# ------------------------------------------------------------------ the compiled kernel
#
# Without a compiler, every pair costs ~45 NumPy passes of the harness (the enclosure,
# then what the claims need of it), as much CPU as a careful implementation's own
# evaluation; a chunk's temporaries do not fit a core's cache either.  ``_classify``
# does in one pass per pair, in registers, the very float64 operations of ``_enclose``
# (``IntervalFunction.tape``: the same widenings in the same order; the Taylor model's
# Horner steps) and of ``_columns`` up to the quick test, and marks the pairs that test
# does not pass.  Those (a few per cent, or none) get the NumPy columns and ``_settle``
# as before.  Its libm is the C library's (as NumPy's float64 exp and log are without
# AVX-512): the enclosures it passes pairs with are valid on the same assumption
# (interval.LIBM_ULPS), and where NumPy's libm is the same, its decisions and the worst
# errors it picks are those of the vectorised sweep bit for bit
# (tests/test_floating_exhaustive.py compares them).  numba compiles it (cached on disk);
# without numba the vectorised sweep runs.

_NUMBA = None  # numba once the kernel's helpers are wrapped, False without it (the vectorised sweep)
_KERNEL = None  # the compiled interpreting _classify, False when there is none


def _numba():
    """numba, with the helpers every kernel inlines wrapped for it, or None."""
    global _NUMBA, _nan_min, _nan_max, _widen_down, _widen_up, _enclose_tape
    if _NUMBA is None:
        _NUMBA = False
        try:
            import numba
        except ImportError:
            return None
        jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, inline="always")
        _nan_min, _nan_max = jit(_nan_min), jit(_nan_max)
        _widen_down, _widen_up = jit(_widen_down), jit(_widen_up)
        _enclose_tape = jit(_enclose_tape)
        _NUMBA = numba
    return _NUMBA or None


def _warm(kernel, codes, constants):
    """Compile ``kernel`` (here, once, not in every forked worker; numba caches it on disk)."""
    kernel(np.zeros(1), np.zeros(1), 0, 1, False, codes, constants, *_taylor_parameters(None), 4.0, 1.0, 1.0, 1.0,
           *_buffers(1), 4.0, 0.0, 32.0, 1.0, True, np.zeros(1, dtype=np.int8), True, False, 0.0)


def _kernel():
    """The kernel that interprets any tape (for a tape ``_specialised`` cannot inline), or None."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = False
        numba = _numba()
        if numba is None:
            return None
        try:
            kernel = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False)(_classify)
            _warm(kernel, np.zeros((1, 3), dtype=np.int64), np.zeros((1, 2)))
        except Exception:  # noqa: BLE001 - numba that cannot compile here: the NumPy sweep
            return None
        _KERNEL = kernel
    return _KERNEL or None


_EPS, _TINY = 2.0 ** -52, 2.0 ** -1000  # interval._EPS, interval._TINY
_ROUNDED, _LIBM = float(ROUNDED_OP_ULPS), float(LIBM_ULPS)


def _nan_min(a, b):  # np.minimum: NaN if either is
    if a != a:
        return a
    if b != b:
        return b
    return a if a <= b else b


def _nan_max(a, b):  # np.maximum
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


def _widen_down(x, ulps):  # interval._down
    return x - (abs(x) * (ulps * _EPS) + ulps * _TINY)


def _widen_up(x, ulps):  # interval._up
    return x + (abs(x) * (ulps * _EPS) + ulps * _TINY)


def _enclose_tape(t_lo, t_hi, codes, constants, lo, hi):
    """interval.IntervalFunction at one interval, instruction by instruction (OPCODES);
    returns f's (lo, hi).  Each branch is the module's function with its float64 steps."""
    rounded, libm = _ROUNDED, _LIBM
    for i in range(codes.shape[0]):
        op, a, b = codes[i, 0], codes[i, 1], codes[i, 2]
        if op == 0:  # var
            lo[i], hi[i] = t_lo, t_hi
        elif op == 1:  # const
            lo[i], hi[i] = constants[i, 0], constants[i, 1]
        elif op == 2:  # add
            lo[i] = _widen_down(lo[a] + lo[b], rounded)
            hi[i] = _widen_up(hi[a] + hi[b], rounded)
        elif op == 3:  # neg
            lo[i], hi[i] = -hi[a], -lo[a]
        elif op == 4:  # mul
            p0, p1, p2, p3 = lo[a] * lo[b], lo[a] * hi[b], hi[a] * lo[b], hi[a] * hi[b]
            lo[i] = _widen_down(_nan_min(_nan_min(p0, p1), _nan_min(p2, p3)), rounded)
            hi[i] = _widen_up(_nan_max(_nan_max(p0, p1), _nan_max(p2, p3)), rounded)
        elif op == 5:  # square
            low_sq, high_sq = lo[a] * lo[a], hi[a] * hi[a]
            out_lo = 0.0 if (lo[a] < 0 and hi[a] > 0) else _nan_min(low_sq, high_sq)
            lo[i] = _nan_max(_widen_down(out_lo, rounded), 0.0)
            hi[i] = _widen_up(_nan_max(low_sq, high_sq), rounded)
        elif op == 6:  # reciprocal
            if lo[a] <= 0 and hi[a] >= 0:
                lo[i] = hi[i] = math.nan
            else:
                lo[i], hi[i] = _widen_down(1.0 / hi[a], rounded), _widen_up(1.0 / lo[a], rounded)
        elif op == 7:  # sqrt
            base = lo[a] if lo[a] >= 0 else math.nan
            lo[i] = _nan_max(_widen_down(math.sqrt(base) if base == base else math.nan, rounded), 0.0)
            hi[i] = _widen_up(math.sqrt(hi[a]) if hi[a] >= 0 else math.nan, rounded)
        elif op == 8:  # rational power, exponent in constants[i]
            power = constants[i, 0]
            base_lo = lo[a] if lo[a] >= 0 else math.nan
            base_hi = hi[a]
            if power > 0:
                lo[i] = _nan_max(_widen_down(base_lo ** power, libm), 0.0)
                hi[i] = _widen_up(base_hi ** power if base_hi >= 0 or base_hi != base_hi else math.nan, libm)
            else:
                lo[i] = _nan_max(_widen_down(base_hi ** power if base_hi >= 0 or base_hi != base_hi
                                             else math.nan, libm), 0.0)
                hi[i] = _widen_up(base_lo ** power, libm)
        elif op == 9:  # exp (one call at a point: a float16 sweep's exact t)
            low_exp = math.exp(lo[a])
            lo[i] = _nan_max(_widen_down(low_exp, libm), 0.0)
            hi[i] = _widen_up(low_exp if hi[a] == lo[a] else math.exp(hi[a]), libm)
        elif op == 10:  # log
            base = lo[a] if lo[a] > 0 else math.nan
            low_log = math.log(base) if base == base else math.nan
            lo[i] = _widen_down(low_log, libm)
            top = hi[a]
            hi[i] = _widen_up(low_log if top == base else (math.log(top) if top > 0 else
                                                           (-math.inf if top == 0 else math.nan)), libm)
        elif op == 11:  # abs
            x, y = lo[a], hi[a]
            lo[i] = x if x >= 0 else (-y if y <= 0 else 0.0)
            hi[i] = _nan_max(abs(x), abs(y))
        elif op == 12:  # min
            lo[i], hi[i] = _nan_min(lo[a], lo[b]), _nan_min(hi[a], hi[b])
        elif op == 13:  # max
            lo[i], hi[i] = _nan_max(lo[a], lo[b]), _nan_max(hi[a], hi[b])
        elif op == 14:  # sign
            x, y = lo[a], hi[a]
            lo[i] = 1.0 if x > 0 else (-1.0 if y < 0 else (0.0 if x == 0 else -1.0))
            hi[i] = -1.0 if y < 0 else (1.0 if x > 0 else (0.0 if y == 0 else 1.0))
        else:  # heaviside
            lo[i] = 1.0 if lo[a] > 0 else 0.0
            hi[i] = 0.0 if hi[a] < 0 else 1.0
    last = codes.shape[0] - 1
    return lo[last], hi[last]


def _classify(value, values, start, stop, inexact, codes, constants, has_taylor, taylor_limit, centers, leading,
              slope_power, bound, slope_scale, absolute, unused, easy_ulps, max_finite, smallest_normal,
              ulp_scale, hard, severity, accurate_ulps, atol, match_ulps, match_unit, accurate_claimed,
              negative, nonnegative_claimed, examples_full, last_severity):
    """Rows start..stop (log q = values[row], log p = every value): ``hard[k]`` = 1 for pair k
    when the quick test of ``_columns`` does not pass it (else 0, or 2 below); returns (number of hard pairs,
    the largest judged distance and its pair, the largest error in ulps and its pair),
    the first maximum in row order as ``np.argmax`` gives it.

    A hard pair whose value is finite and f in range (so fp_finite passes) goes through
    ``_decide``'s tests for the claimed fp_accurate (``accurate_claimed``) and
    fp_matches_expression (``match_ulps`` < 0 when not claimed; its tolerance without f'
    only): passed by every one, it is passed (kind 0); failing fp_accurate and passing the
    other, it is kind 2, counted in the returned ``inaccurate_count`` with ``severity[k]``
    = distance / ulp as in ``_settle``.  Neither case leaves anything to mpmath."""
    n = values.shape[0]
    lo = np.empty(codes.shape[0])
    hi = np.empty(codes.shape[0])
    grow, margin = 1 + 2.0 ** -48, 2.0 ** -1000
    order = centers.shape[0]
    count = inaccurate_count = negative_count = candidate_count = 0
    # spacing_at's power of two, read from the exponent bits through a one-element view
    scratch = np.empty(1)
    scratch_bits = scratch.view(np.int64)
    best_abs, at_abs, best_ulps, at_ulps = -math.inf, 0, -math.inf, 0
    abs_nan = ulps_nan = False
    k = 0
    for row in range(start, stop):
        logq = values[row]
        for j in range(n):
            t = values[j] - logq
            if inexact:
                t_low, t_high = _widen_down(t, 1.0), _widen_up(t, 1.0)
            else:
                t_low = t_high = t
            low, high = _enclose_tape(t_low, t_high, codes, constants, lo, hi)
            if has_taylor and abs(t) <= taylor_limit:
                if not (high - low <= abs(low + high) * 2.0 ** -44):  # loose (or NaN)
                    error = abs(t) * 2.0 ** -52 + 2.0 ** -1000 if inexact else 0.0
                    horner = centers[order - 1] * t + centers[order - 2]
                    for c in range(order - 3, -1, -1):
                        horner = horner * t + centers[c]
                    magnitude_t = abs(t)
                    reach = magnitude_t * (1 + 2.0 ** -50) + error
                    slope = 1.0
                    for _ in range(slope_power):
                        slope = slope * reach
                    power = 1.0
                    for _ in range(leading):
                        power = power * magnitude_t
                    spread = (bound * power * (1 + 2.0 ** -40) + slope_scale * slope * error * (1 + 2.0 ** -40)
                              + absolute)
                    # np.fmax / np.fmin: the tighter ends, NaN skipped
                    taylor_low, taylor_high = horner - spread, horner + spread
                    if low != low or taylor_low > low:
                        low = taylor_low
                    if high != high or taylor_high < high:
                        high = taylor_high
            v = value[k]
            if nonnegative_claimed:
                # _keep_examples's fp_nonnegative test: a failure unless v >= 0 (NaN fails);
                # a candidate for the examples unless they are full and it is less severe
                mark = 0
                if not v >= 0:
                    negative_count += 1
                    if not examples_full or not -v < last_severity:
                        mark = 1
                        candidate_count += 1
                negative[k] = mark
            middle = 0.5 * low + 0.5 * high
            radius = (high - middle) * grow + margin
            magnitude = abs(middle)
            magnitude_low = _nan_max(magnitude - radius, 0.0)
            in_range = magnitude + radius <= max_finite
            distance = abs(v - middle)
            error_high = distance * grow + radius
            scratch[0] = _nan_max(magnitude_low, smallest_normal)
            scratch_bits[0] = scratch_bits[0] & 0x7FF0000000000000
            ulp_low = scratch[0] * ulp_scale
            good = in_range and abs(v) < math.inf
            is_hard = not (good and error_high <= easy_ulps * ulp_low)
            kind = 1 if is_hard else 0
            if is_hard and magnitude_low > max_finite and (v == math.copysign(math.inf, middle)
                                                         or v == math.copysign(max_finite, middle)):
                # beyond the finite range, +-inf or +-max with the sign of f: every claim
                # passes there and nothing is counted (``_settle`` and ``_decide`` agree)
                is_hard = False
                kind = 0
            if is_hard and good:
                # _decide's tests on _settle's columns, the same float64 steps: a pair every
                # claimed accuracy test passes is passed (within fp_atol, or an error below
                # the smallest normal number); one that fails fp_accurate and passes
                # fp_matches_expression without f' is counted by the caller (kind 2)
                match_passes = True
                if match_ulps >= 0:
                    cheap = match_ulps * match_unit * ((abs(values[j]) + abs(logq)) + 1.0)
                    tolerance_low = _nan_max(match_ulps * ulp_low, 0.0) + cheap * (1 - 2.0 ** -48)
                    match_passes = error_high <= tolerance_low or error_high < smallest_normal
                if match_passes:
                    if not accurate_claimed or (error_high <= _nan_max(accurate_ulps * ulp_low, atol)
                                                or error_high < smallest_normal):
                        kind = 0
                    else:
                        error_low = distance * (1 - 2.0 ** -48) - radius
                        scratch[0] = _nan_max(magnitude + radius, smallest_normal)
                        scratch_bits[0] = scratch_bits[0] & 0x7FF0000000000000
                        ulp_high = scratch[0] * ulp_scale
                        if error_low > _nan_max(accurate_ulps * ulp_high, atol) and error_low >= smallest_normal:
                            kind = 2
                            inaccurate_count += 1
                            severity[k] = distance / ulp_low
            hard[k] = kind
            count += kind == 1
            judged = distance if good else -1.0
            in_ulps = judged / ulp_low
            if not abs_nan and (judged != judged or judged > best_abs or k == 0):
                best_abs, at_abs, abs_nan = judged, k, judged != judged
            if not ulps_nan and (in_ulps != in_ulps or in_ulps > best_ulps or k == 0):
                best_ulps, at_ulps, ulps_nan = in_ulps, k, in_ulps != in_ulps
            k += 1
    return count, best_abs, at_abs, best_ulps, at_ulps, inaccurate_count, negative_count, candidate_count


# f's instructions as straight-line code: ~1/3 less CPU per pair than interpreting the
# tape.  The generated module goes into a file (named by a hash of its text) so that
# numba caches its compilation on disk like the rest of the kernel.

_SPECIALISED: dict = {}  # tape bytes -> the compiled kernel, or None


def _statements(codes, constants):
    """The body of ``enclose(t_lo, t_hi)``: ``_enclose_tape``'s branches, unrolled."""
    def number(x):
        x = float(x)
        if math.isnan(x):
            return "math.nan"
        if math.isinf(x):
            return "math.inf" if x > 0 else "-math.inf"
        return repr(x)

    lines = []
    rounded, libm = repr(_ROUNDED), repr(_LIBM)
    for i, (op, a, b) in enumerate(codes.tolist()):
        lo, hi = f"l{i}", f"h{i}"
        la, ha, lb, hb = f"l{a}", f"h{a}", f"l{b}", f"h{b}"
        c_lo, c_hi = (number(x) for x in constants[i])
        if op == OPCODES["var"]:
            lines += [f"{lo}, {hi} = t_lo, t_hi"]
        elif op == OPCODES["const"]:
            lines += [f"{lo}, {hi} = {c_lo}, {c_hi}"]
        elif op == OPCODES["add"]:
            lines += [f"{lo} = _widen_down({la} + {lb}, {rounded})", f"{hi} = _widen_up({ha} + {hb}, {rounded})"]
        elif op == OPCODES["neg"]:
            lines += [f"{lo}, {hi} = -{ha}, -{la}"]
        elif op == OPCODES["mul"]:
            lines += [f"p0, p1, p2, p3 = {la} * {lb}, {la} * {hb}, {ha} * {lb}, {ha} * {hb}",
                      f"{lo} = _widen_down(_nan_min(_nan_min(p0, p1), _nan_min(p2, p3)), {rounded})",
                      f"{hi} = _widen_up(_nan_max(_nan_max(p0, p1), _nan_max(p2, p3)), {rounded})"]
        elif op == OPCODES["square"]:
            lines += [f"low_sq, high_sq = {la} * {la}, {ha} * {ha}",
                      f"out_lo = 0.0 if ({la} < 0 and {ha} > 0) else _nan_min(low_sq, high_sq)",
                      f"{lo} = _nan_max(_widen_down(out_lo, {rounded}), 0.0)",
                      f"{hi} = _widen_up(_nan_max(low_sq, high_sq), {rounded})"]
        elif op == OPCODES["exp"]:
            lines += [f"low_exp = math.exp({la})",  # one call at a point (a float16 sweep's exact t)
                      f"{lo} = _nan_max(_widen_down(low_exp, {libm}), 0.0)",
                      f"{hi} = _widen_up(low_exp if {ha} == {la} else math.exp({ha}), {libm})"]
        elif op == OPCODES["log"]:
            lines += [f"base = {la} if {la} > 0 else math.nan",
                      "low_log = math.log(base) if base == base else math.nan",
                      f"{lo} = _widen_down(low_log, {libm})",
                      f"{hi} = _widen_up(low_log if {ha} == base else (math.log({ha}) if {ha} > 0 else "
                      f"(-math.inf if {ha} == 0 else math.nan)), {libm})"]
        elif op == OPCODES["abs"]:
            lines += [f"{lo} = {la} if {la} >= 0 else (-{ha} if {ha} <= 0 else 0.0)",
                      f"{hi} = _nan_max(abs({la}), abs({ha}))"]
        elif op in (OPCODES["min"], OPCODES["max"]):
            pick = "_nan_min" if op == OPCODES["min"] else "_nan_max"
            lines += [f"{lo}, {hi} = {pick}({la}, {lb}), {pick}({ha}, {hb})"]
        else:  # the rarer instructions: the interpreting kernel
            return None
    lines.append(f"return l{len(codes) - 1}, h{len(codes) - 1}")
    return lines


def _specialised(tape):
    """The kernel for one tape with its instructions inlined, or None (then ``_kernel()``)."""
    codes, constants = tape
    key = codes.tobytes() + constants.tobytes()
    if key in _SPECIALISED:
        return _SPECIALISED[key]
    _SPECIALISED[key] = None
    body = _statements(codes, constants) if _numba() is not None else None
    if body is None:
        return None
    import hashlib
    import importlib.util
    import inspect
    import tempfile

    import numba

    classify = inspect.getsource(_classify).replace("def _classify(", "def classify(")
    call = "low, high = _enclose_tape(t_low, t_high, codes, constants, lo, hi)"
    if call not in classify:
        return None
    classify = classify.replace(call, "low, high = enclose(t_low, t_high)")
    source = ("# generated by verify/floating/exhaustive.py (_specialised); safe to delete\n"
              "import math\n\nimport numpy as np\n\n"
              "from verify.floating.exhaustive import _enclose_tape, _nan_max, _nan_min, _widen_down, _widen_up\n\n\n"
              "def enclose(t_lo, t_hi):\n" + "".join(f"    {line}\n" for line in body) + "\n\n" + classify)
    name = "kl_verify_kernel_" + hashlib.sha256(source.encode()).hexdigest()[:20]
    for directory in (os.path.join(os.path.dirname(__file__), "__pycache__", "kernels"),
                      os.path.join(tempfile.gettempdir(), f"kl-verify-kernels-{os.getuid()}")):
        path = os.path.join(directory, name + ".py")
        try:
            os.makedirs(directory, exist_ok=True)
            if not os.path.exists(path):
                temporary = f"{path}.{os.getpid()}.tmp"
                with open(temporary, "w") as handle:
                    handle.write(source)
                os.replace(temporary, path)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # numba's disk cache finds the module by its name
            spec.loader.exec_module(module)
            kernel, enclose = None, module.enclose
            for cache in (True, False):  # a disk cache that does not load: compiled afresh
                try:
                    jit = dict(cache=cache, nogil=True, error_model="numpy", fastmath=False)
                    module.enclose = numba.njit(inline="always", **jit)(enclose)
                    kernel = numba.njit(**jit)(module.classify)
                    _warm(kernel, codes, constants)
                    break
                except Exception:  # noqa: BLE001
                    kernel = None
            if kernel is None:
                continue
        except Exception:  # noqa: BLE001 - no writable place: the next one, else the interpreting kernel
            continue
        _SPECIALISED[key] = kernel
        return kernel
    return None
