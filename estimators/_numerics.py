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
    with np.errstate(over="ignore"):
        return values.astype(dtype)
