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


def neg(x):
    return np.negative(x)


# --- backward rules, as torch's autograd computes them on CPU (torch 2.13, checked
# against torch in tests/test_catalog_torch.py).  Each gradient is an array of the dtype
# the op ran in, every op rounded once to it (16-bit ones through float32, as above), so
# the catalog's backward passes are written with these in the order autograd runs them:
# mul and exp backward multiply the upstream gradient (0 x inf = NaN where it is 0 and
# the factor overflowed); clamp and torch.where backward SELECT (a NaN or inf upstream
# gradient becomes an exact +0 where the clamp bites, or in the branch not taken).

def ones(x):
    """The upstream gradient of ``out.backward(torch.ones_like(out))``."""
    return np.ones_like(np.asarray(x))


def zero(x):
    return constant(x, 0)


def clamp_backward(grad, x, low, high):
    """grad where low <= x <= high (both ends included), else +0; NaN x gives +0."""
    with np.errstate(invalid="ignore"):
        inside = (x >= constant(x, low)) & (x <= constant(x, high))
    return np.where(inside, grad, zero(grad))


def where_backward(condition, grad):
    """torch.where(condition, a, b): (the gradient of a, that of b); the other gets +0."""
    return np.where(condition, grad, zero(grad)), np.where(condition, zero(grad), grad)


def sgn(x):
    """torch.sgn of a real tensor: (0 < x) - (x < 0): +0 at +-0 and at NaN."""
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        return ((x > 0).astype(np.int8) - (x < 0).astype(np.int8)).astype(x.dtype)


def abs_backward(grad, x):
    """grad * x.sgn(): 0 (not a subgradient of 1) where x is 0."""
    return mul(grad, sgn(x))


def square_backward(grad, x):
    """pow(x, 2) backward (torch.square and x**2): grad * (2.0 * x.pow(1))."""
    return mul(grad, mul(constant(x, 2), x))


def cast_backward(grad, dtype):
    """``.float()`` / ``.to(dtype)`` backward: the gradient cast back to the input dtype,
    rounded once (float32 -> 16-bit by NumPy or ml_dtypes is correctly rounded)."""
    with np.errstate(over="ignore"):
        return np.asarray(grad).astype(dtype)
