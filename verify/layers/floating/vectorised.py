"""The 16-bit sweep's decisions in NumPy, column by column: the enclosure of f at each
pair, the quick test that passes almost every pair, and ``settle`` for the rest (count
failures, keep examples, queue what the enclosure leaves open for the exact judge).
Without numba this is the whole sweep; with it, the pairs the compiled kernel leaves."""
from __future__ import annotations

import math

import numpy as np

from estimators._numerics import spacing_at
from verify.layers.floating.interval import _down, _up
from verify.layers.floating.tally import MAX_UNKNOWN, keep_examples
from verify.layers.floating.tolerances import match_slack


def _ulp(magnitude, info):
    """Spacing of the dtype's numbers at |E| = magnitude (a float64 array >= 0)."""
    return spacing_at(magnitude, float(info.smallest_normal), info.precision)


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


_COLUMNS = ("logp", "logq", "value", "middle", "radius", "magnitude", "magnitude_low", "in_range", "finite",
            "distance", "error_high", "ulp_low", "good")


def column_subset(columns, index):
    return {name: columns[name][index] for name in _COLUMNS}


def pair_columns(sweep, logp64, logq64, value):
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


def sweep_chunk(part, sweep, logp64, logq64, value):
    """One chunk, vectorised in NumPy (without the compiled kernel)."""
    if "fp_nonnegative" in sweep.claims and not value.min() >= 0:  # the minimum is NaN if any value is
        keep_examples(part, "fp_nonnegative", ~(value >= 0), -value, logp64, logq64)
    columns = pair_columns(sweep, logp64, logq64, value)
    hard, good, distance, ulp_low = columns["hard"], columns["good"], columns["distance"], columns["ulp_low"]
    any_hard = hard.any()
    if any_hard:
        settle(part, sweep, column_subset(columns, np.flatnonzero(hard)))
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


def settle(part, sweep, columns):
    """fp_finite, fp_accurate and fp_matches_expression on the pairs the quick test did
    not pass (``columns``, in row order): count failures, keep examples, and queue what
    the enclosure leaves open for the exact judge."""
    claims, info = sweep.claims, sweep.info
    max_finite = info.max_finite
    shrink = 1 - 2.0 ** -48
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
            keep_examples(part, "fp_finite", bad, lambda i: np.ones(len(i)), logp64, logq64)
    for claim, ulps, absolute in (("fp_accurate", sweep.accurate_ulps, sweep.atol),
                                  ("fp_matches_expression", sweep.match_ulps, 0.0)):
        if claim not in claims:
            continue
        passes, fails = _decide(columns, ulps, absolute, claim == "fp_matches_expression", sweep.derivative,
                                info, float(info.unit_roundoff), sweep.match_ulps)
        undecided[claim] = ~(passes | fails)
        if fails.any():
            distance, ulp_middle = columns["distance"], columns["ulp_low"]
            keep_examples(part, claim, fails, lambda i: np.where(finite_value[i], distance[i] / ulp_middle[i], np.inf),
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
