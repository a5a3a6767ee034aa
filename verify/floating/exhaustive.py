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
from dataclasses import dataclass, field

import numpy as np

from verify.floating.interval import _down, _up

__all__ = ["ExhaustiveTally", "all_values", "enumerate_pairs", "MAX_UNKNOWN", "CHUNK_PAIRS"]

CHUNK_PAIRS = 1 << 17  # about 1 MB per float64 array: stays in cache
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


def all_values(np_dtype, domain) -> np.ndarray:
    """Every value of a 16-bit dtype in ``domain``, -0.0 included, as float64 (sorted by bits)."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(np_dtype).astype(np.float64)
    keep = np.isfinite(values) & (values >= domain[0]) & (values <= domain[1])
    return values[keep]


_EXPONENT_BITS = np.int64(0x7FF0000000000000)


def _ulp(magnitude, info):
    """Spacing of the dtype's numbers at |E| = magnitude (a float64 array >= 0): the
    power of two of max(|E|, smallest normal), by its exponent bits, times 2^(1 - p)."""
    clipped = np.maximum(magnitude, float(info.smallest_normal))
    power = (clipped.view(np.int64) & _EXPONENT_BITS).view(np.float64)
    return power * 2.0 ** (1 - info.precision)


def _keep_examples(tally, claim, bad, severity, logp, logq):
    count = int(np.count_nonzero(bad))
    if not count:
        return
    tally.failures[claim] = tally.failures.get(claim, 0) + count
    index = np.flatnonzero(bad)
    sev = np.where(np.isnan(severity[index]), np.inf, severity[index])
    kept = tally.examples.setdefault(claim, [])
    if len(kept) >= EXAMPLES_KEPT and sev.max() <= kept[-1][0]:  # ties keep the earlier pairs
        return
    if len(index) > EXAMPLES_KEPT:
        index = index[np.argpartition(-sev, EXAMPLES_KEPT)[:EXAMPLES_KEPT]]
    take = index
    kept += [(float(severity[i]), float(logp[i]), float(logq[i])) for i in take]
    kept.sort(key=lambda e: (-e[0] if not math.isnan(e[0]) else -math.inf, e[1], e[2]))
    del kept[EXAMPLES_KEPT:]


def _enclose(t_hi, inexact, enclosure, taylor):
    """[low, high] around f at every t within one float64 ulp of ``t_hi`` (when
    ``inexact``: log p - log q did not fit a double) or at ``t_hi`` itself."""
    size = len(t_hi)
    if inexact:
        t_low, t_high = _down(t_hi, 1), _up(t_hi, 1)
    else:
        t_low = t_high = t_hi
    low, high = np.empty(size), np.empty(size)
    small = np.abs(t_hi) <= taylor.radius * (1 - 2 ** -30) if taylor is not None else np.zeros(size, dtype=bool)
    count = int(np.count_nonzero(small))
    if count == size:
        large_index = None
    elif count:
        large_index = np.flatnonzero(~small)
    if count < size:
        if count == 0:
            low[:], high[:] = enclosure(t_low, t_high)
        else:
            low[large_index], high[large_index] = enclosure(t_low[large_index], t_high[large_index])
    if count:
        index = np.flatnonzero(small)
        centre = t_hi[index]
        error = np.abs(centre) * 2.0 ** -52 + 2.0 ** -1000 if inexact else np.zeros(count)
        taylor_low, taylor_high = taylor(centre, error)
        # the float64 enclosure is valid too: keep the tighter of the two (fmax/fmin skip NaN)
        direct_low, direct_high = enclosure(t_low[index], t_high[index]) if count < 4096 else (taylor_low, taylor_high)
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
                    accurate_ulps, atol, match_ulps, judge, progress=None) -> ExhaustiveTally:
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
    ``judge`` otherwise."""
    values = all_values(np_dtype, domain)
    n = len(values)
    values_dtype = values.astype(np_dtype)
    rows = max(1, CHUNK_PAIRS // n)
    tiled64 = np.tile(values, rows)
    tiled = np.tile(values_dtype, rows)
    tally = ExhaustiveTally(values_per_dtype=n)
    inexact = info.name != "float16"  # every difference of two float16 numbers in [-60, 0] is a double
    unknown = []
    unit = float(info.unit_roundoff)
    smallest_normal = float(info.smallest_normal)
    max_finite = info.max_finite
    reference_claims = [c for c in ("fp_finite", "fp_accurate", "fp_matches_expression") if c in claims]
    grow, shrink, margin = 1 + 2.0 ** -48, 1 - 2.0 ** -48, 2.0 ** -1000
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        size = (stop - start) * n
        logp64, logp = tiled64[:size], tiled[:size]
        logq64 = np.repeat(values[start:stop], n)
        logq = np.repeat(values_dtype[start:stop], n)
        with np.errstate(all="ignore"):
            value = implementation(logp, logq)
        tally.pairs += size
        if "fp_nonnegative" in claims:
            bad = ~(value >= 0)
            if bad.any():
                _keep_examples(tally, "fp_nonnegative", bad, np.where(np.isnan(value), np.inf, -value), logp64, logq64)
        with np.errstate(all="ignore"):
            low, high = _enclose(logp64 - logq64, inexact, enclosure, taylor)
            middle = 0.5 * low + 0.5 * high
            radius = (high - middle) * grow + margin  # NaN where the enclosure failed
            magnitude = np.abs(middle)
            magnitude_low = np.maximum(magnitude - radius, 0.0)
            magnitude_high = magnitude + radius
            in_range = magnitude_high <= max_finite  # False where the enclosure is NaN
            finite_value = np.isfinite(value)
            distance = np.abs(value - middle)
            error_high = distance * grow + radius
            error_low = distance * shrink - radius
            ulp_low, ulp_high = _ulp(magnitude_low, info), _ulp(magnitude_high, info)
            ulp_middle = ulp_low  # for ranking failures and finding the worst pair (recomputed exactly)
            good = in_range & finite_value
        undecided = {}
        if "fp_finite" in claims:
            out_of_range = magnitude_low > max_finite
            undecided["fp_finite"] = ~finite_value & ~in_range & ~out_of_range
            bad = ~finite_value & in_range
            if bad.any():
                _keep_examples(tally, "fp_finite", bad, np.ones(size), logp64, logq64)
        columns = {"error_high": error_high, "error_low": error_low, "ulp_low": ulp_low, "ulp_high": ulp_high,
                   "good": good, "in_range": in_range, "finite": finite_value, "magnitude_low": magnitude_low,
                   "value": value, "middle": middle, "logp": logp64, "logq": logq64}
        passes_accurate = None
        for claim, ulps, absolute in (("fp_accurate", accurate_ulps, atol), ("fp_matches_expression", match_ulps, 0.0)):
            if claim not in claims:
                continue
            subset = None
            if claim == "fp_matches_expression" and passes_accurate is not None and accurate_ulps <= match_ulps:
                # a pair within the accurate tolerance (ulps part) is within this one too
                subset = np.flatnonzero(~passes_accurate)
                if len(subset) > size // 2:  # gathering most columns costs more than it saves
                    subset = None
            part = columns if subset is None else {k: v[subset] for k, v in columns.items()}
            passes, fails = _decide(part, ulps, absolute, claim == "fp_matches_expression", derivative,
                                    info, unit, match_ulps)
            if claim == "fp_accurate":
                passes_accurate = part["good"] & ((part["error_high"] <= accurate_ulps * part["ulp_low"])
                                                  | (part["error_high"] < smallest_normal))
            if subset is not None:
                full_passes, full_fails = passes_accurate.copy(), np.zeros(size, dtype=bool)
                full_passes[subset], full_fails[subset] = passes, fails
                passes, fails = full_passes, full_fails
            undecided[claim] = ~(passes | fails)
            if fails.any():
                _keep_examples(tally, claim, fails, np.where(finite_value, distance / ulp_middle, np.inf), logp64, logq64)
        with np.errstate(all="ignore"):
            judged_distance = np.where(good, distance, -1.0)
            worst = int(np.argmax(judged_distance))
            if judged_distance[worst] > tally.worst_abs[0]:
                tally.worst_abs = (float(judged_distance[worst]), float(logp64[worst]), float(logq64[worst]))
            in_ulps = judged_distance / ulp_middle
            worst = int(np.argmax(in_ulps))
            if in_ulps[worst] > tally.worst_ulps[0]:
                tally.worst_ulps = (float(in_ulps[worst]), float(logp64[worst]), float(logq64[worst]))
        nonfinite = in_range & ~finite_value
        if nonfinite.any() and not math.isinf(tally.worst_ulps[0]):
            first = int(np.flatnonzero(nonfinite)[0])
            tally.worst_ulps = (math.inf, float(logp64[first]), float(logq64[first]))
            tally.worst_abs = (math.inf, float(logp64[first]), float(logq64[first]))
        any_undecided = np.zeros(size, dtype=bool)
        for mask in undecided.values():
            any_undecided |= mask
        if any_undecided.any():
            index = np.flatnonzero(any_undecided)
            if len(unknown) + len(index) <= MAX_UNKNOWN:
                for i in index.tolist():
                    which = tuple(c for c, mask in undecided.items() if mask[i])
                    unknown.append((float(logp64[i]), float(logq64[i]), float(value[i]), which))
            else:
                for claim, mask in undecided.items():
                    tally.unsettled[claim] = tally.unsettled.get(claim, 0) + int(np.count_nonzero(mask))
        if progress:
            progress(tally.pairs)
    for logp_value, logq_value, value, which in unknown:
        outcome = judge(logp_value, logq_value, value)
        tally.settled_by_mpmath += 1
        if outcome.get("_undefined"):
            tally.undefined += 1
            continue
        for claim in which:
            ok, severity = outcome[claim]
            if not ok:
                _keep_examples(tally, claim, np.array([True]), np.array([severity]),
                               np.array([logp_value]), np.array([logq_value]))
        ulps, absolute = outcome.get("_error", (0.0, 0.0))
        if ulps > tally.worst_ulps[0]:
            tally.worst_ulps = (ulps, logp_value, logq_value)
        if absolute > tally.worst_abs[0]:
            tally.worst_abs = (absolute, logp_value, logq_value)
    return tally


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
