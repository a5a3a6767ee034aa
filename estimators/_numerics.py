"""Numeric helpers shared by the built-in implementations (a private module: the
registry does not scan it).  The harness uses ``round_to`` too, to place its inputs."""
import sys

import numpy as np


def _bfloat16():
    """bfloat16's dtype if ml_dtypes is loaded (a bfloat16 array implies it is), else None.
    Not imported here: ml_dtypes takes longer to load than the whole registry."""
    module = sys.modules.get("ml_dtypes")
    return None if module is None else np.dtype(module.bfloat16)

def input_dtype(logp, logq) -> np.dtype:
    """The common float dtype of the inputs (bfloat16 included)."""
    logp, logq = np.asarray(logp), np.asarray(logq)
    if logp.dtype == logq.dtype:
        return logp.dtype
    return np.result_type(logp, logq)


def log_ratio_parts(logp, logq):
    """(hi, lo) in float64 with hi + lo == logp - logq exactly (TwoSum), and the dtype."""
    dtype = input_dtype(logp, logq)
    a = np.asarray(logp).astype(np.float64)
    b = -np.asarray(logq).astype(np.float64)
    hi = a + b
    b_virtual = hi - a
    a_virtual = hi - b_virtual
    lo = (a - a_virtual) + (b - b_virtual)
    return hi, lo, dtype


def round_to(values, dtype):
    """float64 values rounded once, to nearest even, to ``dtype``.

    NumPy rounds float64 to float32 and float16 correctly; ml_dtypes goes to bfloat16
    through float32, which rounds twice.  Rounding to odd into float32 first (24 bits,
    more than bfloat16's 8 + 2) makes the second rounding correct.
    """
    values = np.asarray(values, dtype=np.float64)
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return values
    if dtype == _bfloat16():
        with np.errstate(over="ignore"):
            narrow = values.astype(np.float32)
            wide = narrow.astype(np.float64)
        too_far = np.isfinite(values) & (np.abs(wide) > np.abs(values))
        narrow = np.where(too_far, np.nextafter(narrow, np.float32(0)), narrow)
        inexact = np.isfinite(values) & (narrow.astype(np.float64) != values)
        bits = narrow.view(np.uint32) | inexact.astype(np.uint32)
        return bits.view(np.float32).astype(dtype)
    if dtype == np.float16:
        return _round_to_float16(values)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


_FLOAT64_EXPONENT = np.int64(0x7FF0000000000000)


def spacing_at(magnitude, smallest_normal, precision):
    """The spacing of a binary format's numbers at ``magnitude`` (a float64 array >= 0):
    the power of two of max(magnitude, smallest_normal), read from its exponent bits,
    times 2^(1 - precision).  Exact, and free of floating-point flags."""
    clipped = np.maximum(magnitude, smallest_normal)
    power = (clipped.view(np.int64) & _FLOAT64_EXPONENT).view(np.float64)
    return power * 2.0 ** (1 - precision)


def _round_to_float16(values):
    """float64 -> float16, rounded to nearest even, by float64 arithmetic: the spacing
    of float16 numbers at |x| is q = 2^(e - 10) with 2^e = max(the power of two of |x|,
    the smallest normal 2^-14), and rint(|x| / q) q is exact.  NumPy's own cast gives the
    same bits but raises a floating-point flag per element that overflows or lands
    in the subnormal range, at ~60 ns each: most of a 16-bit sweep's time for k3."""
    magnitude = np.abs(values)
    with np.errstate(all="ignore"):
        spacing = spacing_at(magnitude, 2.0 ** -14, 11)
        rounded = np.rint(magnitude / spacing) * spacing
        rounded = np.where(magnitude >= 65520.0, np.inf, rounded)  # the tie above 65504, and beyond
        return np.asarray(np.copysign(rounded, values)).astype(np.float16)
