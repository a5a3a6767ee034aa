"""The compiled kernel of the 16-bit sweep (numba).

Without a compiler, every pair costs ~45 NumPy passes of the harness (the enclosure,
then what the claims need of it), as much CPU as a careful implementation's own
evaluation; a chunk's temporaries do not fit a core's cache either.  ``classify_rows``
does in one pass per pair, in registers, the very float64 operations of
``vectorised._enclose`` (``IntervalFunction.tape``: the same widenings in the same
order; the Taylor model's Horner steps) and of ``vectorised.pair_columns`` up to the
quick test, and marks the pairs that test does not pass.  Those (a few per cent, or
none) get the NumPy columns and ``vectorised.settle`` as before.  Its libm is the C
library's (as NumPy's float64 exp and log are without AVX-512): the enclosures it passes
pairs with are valid on the same assumption (interval.LIBM_ULPS), and where NumPy's
libm is the same, its decisions and the worst errors it picks are those of the
vectorised sweep bit for bit (tests/test_floating_exhaustive.py compares them).  numba
compiles it (cached on disk); without numba the vectorised sweep runs.  This module
interprets any tape; ``kernel_source.py`` specialises it to one expression.
"""
from __future__ import annotations

import math

import numpy as np

from verify.core.dtypes import EPS
from verify.layers.floating.interval import LIBM_ULPS, ROUNDED_OP_ULPS, TINY

_NUMBA = None  # numba once the kernel's helpers are wrapped, False without it (the vectorised sweep)
_KERNEL = None  # the compiled interpreting classify_rows, False when there is none


def load_numba():
    """numba, with the helpers every kernel inlines wrapped for it, or None (once)."""
    global _NUMBA, _nan_min, _nan_max, _widen_down, _widen_up, _enclose_tape, _taylor_tightened
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
        _taylor_tightened = jit(_taylor_tightened)
        _NUMBA = numba
    return _NUMBA or None


def warm_up(kernel, codes, constants):
    """Compile ``kernel`` (here, once, not in every forked worker; numba caches it on disk)."""
    kernel(np.zeros(1), np.zeros(1), 0, 1, False, codes, constants, *taylor_arguments(None), 4.0, 1.0, 1.0, 1.0,
           *kernel_buffers(1), 4.0, 0.0, 32.0, 1.0, True, np.zeros(1, dtype=np.int8), True, False, 0.0)


def interpreting_kernel():
    """The kernel that interprets any tape (for a tape ``specialised_kernel`` cannot inline), or None."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = False
        numba = load_numba()
        if numba is None:
            return None
        try:
            kernel = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False)(classify_rows)
            warm_up(kernel, np.zeros((1, 3), dtype=np.int64), np.zeros((1, 2)))
        except Exception:  # noqa: BLE001 - numba that cannot compile here: the NumPy sweep
            return None
        _KERNEL = kernel
    return _KERNEL or None


def kernel_buffers(size):
    """The kernel's outputs per pair: its kind (0 passed, 1 hard, 2 fails fp_accurate only)
    and that failure's severity."""
    return np.zeros(size, dtype=np.int8), np.zeros(size)


def taylor_arguments(taylor):
    """The Taylor model (or its absence) as the kernel's scalar arguments."""
    if taylor is None:
        return (False, 0.0, np.zeros(2), 0, 0, 0.0, 0.0, 0.0)
    return (True, taylor.radius * (1 - 2 ** -30), np.array(taylor.centers, dtype=np.float64), taylor.leading,
            taylor.slope_power, float(taylor.bound), float(taylor.slope_scale), float(taylor.absolute))


ROUNDED_WIDENING, LIBM_WIDENING = float(ROUNDED_OP_ULPS), float(LIBM_ULPS)  # interval's widenings, in ulps


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
    return x - (abs(x) * (ulps * EPS) + ulps * TINY)


def _widen_up(x, ulps):  # interval._up
    return x + (abs(x) * (ulps * EPS) + ulps * TINY)


def _taylor_tightened(t, low, high, inexact, centers, leading, slope_power, bound, slope_scale, absolute):
    """[low, high] intersected with the Taylor model at t (|t| within its radius), where the
    tape's enclosure is loose (or NaN): ``vectorised._enclose``'s Horner steps and bound,
    np.fmax / np.fmin of the ends (the tighter, NaN skipped).  One copy for the value and
    the backward kernels (both inline it)."""
    if high - low <= abs(low + high) * 2.0 ** -44:
        return low, high
    order = centers.shape[0]
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
    spread = bound * power * (1 + 2.0 ** -40) + slope_scale * slope * error * (1 + 2.0 ** -40) + absolute
    taylor_low, taylor_high = horner - spread, horner + spread
    if low != low or taylor_low > low:
        low = taylor_low
    if high != high or taylor_high < high:
        high = taylor_high
    return low, high


def _enclose_tape(t_lo, t_hi, codes, constants, lo, hi):
    """interval.IntervalFunction at one interval, instruction by instruction (OPCODES);
    returns f's (lo, hi).  Each branch is the module's function with its float64 steps."""
    rounded, libm = ROUNDED_WIDENING, LIBM_WIDENING
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


def classify_rows(value, values, start, stop, inexact, codes, constants, has_taylor, taylor_limit, centers, leading,
                  slope_power, bound, slope_scale, absolute, easy_ulps, max_finite, smallest_normal,
                  ulp_scale, hard, severity, accurate_ulps, atol, match_ulps, match_unit, accurate_claimed,
                  negative, nonnegative_claimed, examples_full, last_severity):
    """Rows start..stop (log q = values[row], log p = every value): ``hard[k]`` = 1 for pair k
    when the quick test of ``vectorised.pair_columns`` does not pass it (else 0, or 2 below); returns (number of hard pairs,
    the largest judged distance and its pair, the largest error in ulps and its pair),
    the first maximum in row order as ``np.argmax`` gives it.

    A hard pair whose value is finite and f in range (so fp_finite passes) goes through
    ``vectorised._decide``'s tests for the claimed fp_accurate (``accurate_claimed``) and
    fp_matches_expression (``match_ulps`` < 0 when not claimed; its tolerance without f'
    only): passed by every one, it is passed (kind 0); failing fp_accurate and passing the
    other, it is kind 2, counted in the returned ``inaccurate_count`` with ``severity[k]``
    = distance / ulp as in ``vectorised.settle``.  Neither case leaves anything to mpmath."""
    n = values.shape[0]
    lo = np.empty(codes.shape[0])
    hi = np.empty(codes.shape[0])
    grow, margin = 1 + 2.0 ** -48, 2.0 ** -1000
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
                low, high = _taylor_tightened(t, low, high, inexact, centers, leading, slope_power, bound,
                                              slope_scale, absolute)
            v = value[k]
            if nonnegative_claimed:
                # keep_examples's fp_nonnegative test: a failure unless v >= 0 (NaN fails);
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
                # passes there and nothing is counted (``settle`` and ``_decide`` agree)
                is_hard = False
                kind = 0
            if is_hard and good:
                # _decide's tests on settle's columns, the same float64 steps: a pair every
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
