"""Every (logp, logq) pair of a 16-bit dtype in the domain, all four claims at once.

The implementation is called on chunks of whole rows (one log q, every log p).  The
reference is an enclosure [lo, hi] of f at the exact log ratio (``interval.py``:
float64 interval evaluation, and a Taylor model near t = 0); each claim is decided
from the enclosure where it settles it (for almost every pair), and the few pairs whose
enclosure straddles a tolerance go to ``judge`` (mpmath at the exact inputs, the same
code that checks the grid and hypothesis inputs and re-checks counterexamples).

Nothing here prints; the caller turns the counts into verdicts.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from estimators._numerics import spacing_at
from verify.floating.interval import _down, _up

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
    if not len(index):
        return
    severity = np.asarray(severity[index] if full else severity(index), dtype=np.float64)
    severity = np.where(np.isnan(severity), np.inf, severity)
    at_p, at_q = logp[index], logq[index]
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

    def blocks(self):
        bounds = np.linspace(0, self.n, min(BLOCKS, self.n) + 1).round().astype(int).tolist()
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


_ACTIVE: _Sweep | None = None  # the sweep forked workers inherit


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
    n, claims, info = sweep.n, sweep.claims, sweep.info
    max_finite = info.max_finite
    grow, margin = 1 + 2.0 ** -48, 2.0 ** -1000
    for start in range(first_row, end_row, sweep.rows):
        stop = min(end_row, start + sweep.rows)
        size = (stop - start) * n
        logp64, logp = sweep.tiled64[:size], sweep.tiled[:size]
        logq64 = np.repeat(sweep.values[start:stop], n)
        logq = np.repeat(sweep.values_dtype[start:stop], n)
        with np.errstate(all="ignore"):
            clock = time.process_time()
            value = sweep.implementation(logp, logq)
            part.implementation_cpu += time.process_time() - clock
        part.pairs += size
        if "fp_nonnegative" in claims and not value.min() >= 0:  # the minimum is NaN if any value is
            _keep_examples(part, "fp_nonnegative", ~(value >= 0), -value, logp64, logq64)
        with np.errstate(all="ignore"):
            low, high = _enclose(logp64 - logq64, sweep.inexact, sweep.enclosure, sweep.taylor)
            middle = 0.5 * low + 0.5 * high
            radius = (high - middle) * grow + margin  # NaN where the enclosure failed
            magnitude = np.abs(middle)
            magnitude_low = np.maximum(magnitude - radius, 0.0)
            in_range = magnitude + radius <= max_finite  # False where the enclosure is NaN
            finite_value = np.isfinite(value)
            distance = np.abs(value - middle)
            error_high = distance * grow + radius
            ulp_low = _ulp(magnitude_low, info)
            good = in_range & finite_value
            # most pairs are within the tighter tolerance's ulps part: they pass both
            # accuracy claims and fp_finite, and only count for the worst error
            hard = ~(good & (error_high <= sweep.easy_ulps * ulp_low))
        any_hard = hard.any()
        if any_hard:
            index = np.flatnonzero(hard)
            columns = {"logp": logp64[index], "logq": logq64[index], "value": value[index],
                       "middle": middle[index], "radius": radius[index], "magnitude": magnitude[index],
                       "magnitude_low": magnitude_low[index], "in_range": in_range[index],
                       "finite": finite_value[index], "distance": distance[index],
                       "error_high": error_high[index], "ulp_low": ulp_low[index], "good": good[index]}
            _settle(part, sweep, columns)
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
            nonfinite = in_range & ~finite_value
            if nonfinite.any():
                first = int(np.flatnonzero(nonfinite)[0])
                part.worst_ulps = (math.inf, float(logp64[first]), float(logq64[first]))
                part.worst_abs = (math.inf, float(logp64[first]), float(logq64[first]))
    return part


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
