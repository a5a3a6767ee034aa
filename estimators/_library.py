"""Elementwise arithmetic as PyTorch does it on CPU, in NumPy (a private module: the
registry does not scan it).  The catalog's implementations are written with these, in
the order and in the dtype each library computes, so that ``verify all`` needs no torch.

- float64, float32: NumPy's own operations.  +, -, * and clamps are correctly rounded,
  as in torch; exp and log come from a different libm than torch's (they differ by up to
  2 ulps in float32 and 1 in float64), so values with exp or log in these dtypes agree
  with torch within those ulps, not bit for bit.
- float16, bfloat16: torch computes each operation in float32 and rounds the result to
  the 16-bit dtype; so does NumPy (ml_dtypes for bfloat16) for +, -, *.  exp and log are
  taken in float64 and rounded to float32, then to the 16-bit dtype: over every finite
  16-bit input with |x| <= 120 this equals torch 2.13's result (NumPy's float16 exp
  differs at 4 of them).
"""
import numpy as np

from estimators._numerics import input_dtype


def _sixteen_bit(dtype) -> bool:
    """float16 or bfloat16, by name: importing ml_dtypes here would cost every CLI call
    (a bfloat16 array implies ml_dtypes is loaded already)."""
    return dtype == np.float16 or dtype.name == "bfloat16"


def as_dtype(logp, logq, dtype=None):
    """Both inputs as arrays of ``dtype`` (default: their common dtype), like ``.to(dtype)``."""
    dtype = np.dtype(dtype) if dtype is not None else input_dtype(logp, logq)
    return np.asarray(logp).astype(dtype), np.asarray(logq).astype(dtype)


def constant(x, value):
    """A Python number as a scalar of x's dtype (torch keeps the tensor's dtype)."""
    return np.asarray(x).dtype.type(value)


def clamp(x, low, high):
    """torch.clamp: NaN stays NaN."""
    return np.minimum(np.maximum(x, constant(x, low)), constant(x, high))


def _transcendental(function, x):
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        if _sixteen_bit(x.dtype):
            return function(x.astype(np.float64)).astype(np.float32).astype(x.dtype)
        return function(x)


def exp(x):
    """torch.exp in x's dtype (see the module docstring for 16-bit dtypes)."""
    return _transcendental(np.exp, x)


def sub(a, b):
    with np.errstate(all="ignore"):
        return np.subtract(a, b)


def add(a, b):
    with np.errstate(all="ignore"):
        return np.add(a, b)


def mul(a, b):
    with np.errstate(all="ignore"):
        return np.multiply(a, b)


def div(a, b):
    with np.errstate(all="ignore"):
        return np.divide(a, b)
