"""Hypothesis strategies over (logp, logq) pairs, for this harness and for users' tests.

Every value drawn is a Python float exactly representable in the requested dtype and
inside the domain [low, high] (default ``LOG_PROB_DOMAIN`` = [-60, 0]).  Pairs are
weighted towards the regions where KL estimators lose accuracy: r = p/q near 1, large
|log r|, both log-probabilities very negative, and values near zero (subnormals of the
dtype included).

    from hypothesis import given
    from verify.strategies import log_prob_pairs

    @given(log_prob_pairs(dtype="bfloat16"))
    def test_my_kl_is_nonnegative(pair):
        logp, logq = pair
        ...

Bad arguments raise ``hypothesis.errors.InvalidArgument`` when the strategy is built.
"""
from __future__ import annotations

import math

import numpy as np

from estimators._numerics import round_to
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from verify.core.dtypes import DTYPES, LOG_PROB_DOMAIN, numpy_dtypes

__all__ = [
    "DTYPES",
    "LOG_PROB_DOMAIN",
    "numpy_dtype",
    "round_to_dtype",
    "log_probs",
    "log_prob_pairs",
]

_NUMPY = numpy_dtypes()
_UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16}


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype for one of ``DTYPES`` (a name or a dtype)."""
    for name, np_dtype in _NUMPY.items():
        if dtype == name or (not isinstance(dtype, str) and np.dtype(dtype) == np_dtype):
            return np_dtype
    raise InvalidArgument(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def _name(dtype) -> str:
    np_dtype = numpy_dtype(dtype)
    return next(name for name, d in _NUMPY.items() if d == np_dtype)


def round_to_dtype(values, dtype) -> np.ndarray:
    """float64 values rounded once, to nearest even, into ``dtype`` (an array of dtype);
    bfloat16 correctly too (see ``estimators._numerics.round_to``)."""
    rounded = round_to(values, numpy_dtype(dtype))
    return rounded.copy() if rounded.dtype == np.float64 else rounded


def _representable(value: float, dtype) -> float:
    return float(round_to_dtype(np.float64(value), dtype).astype(np.float64))


def _ordinal(value: float, dtype) -> int:
    """A monotone integer key of a representable value (its bit pattern, signed)."""
    np_dtype = numpy_dtype(dtype)
    bits = int(np.asarray(abs(value), dtype=np.float64).astype(np_dtype).reshape(1).view(_UINT[np_dtype.itemsize])[0])
    return -bits if value < 0 else bits


def _from_ordinal(ordinal: int, dtype) -> float:
    np_dtype = numpy_dtype(dtype)
    magnitude = np.array([abs(ordinal)], dtype=_UINT[np_dtype.itemsize]).view(np_dtype).astype(np.float64)[0]
    return float(-magnitude if ordinal < 0 else magnitude) + 0.0


def _check_domain(dtype, low, high):
    name = _name(dtype)
    for label, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise InvalidArgument(f"{label} must be a finite number; got {bound!r}")
    if not low < high:
        raise InvalidArgument(f"need low < high; got low={low!r}, high={high!r}")
    low_r, high_r = _representable(low, name), _representable(high, name)
    if low_r != low or high_r != high:
        raise InvalidArgument(f"low and high must be exactly representable in {name}; got {low!r}, {high!r}")
    return name


def _exact(dtype, low, high):
    """float64 -> the nearest value of dtype, clipped into [low, high]."""
    return lambda x: min(max(_representable(x, dtype), low), high)


def log_probs(*, dtype="float32", low=LOG_PROB_DOMAIN[0], high=LOG_PROB_DOMAIN[1]):
    """Values of ``dtype`` in [low, high]: uniform over bit patterns (so about half are
    tiny or subnormal), uniform over the real interval, and the end points."""
    name = _check_domain(dtype, low, high)
    exact = _exact(name, low, high)
    return st.one_of(
        st.integers(_ordinal(low, name), _ordinal(high, name)).map(lambda k: _from_ordinal(k, name)),
        st.floats(low, high, allow_nan=False).map(exact),
        st.sampled_from(sorted({low, high, exact(0.0), exact(low / 2)})),
    )


def log_prob_pairs(*, dtype="float32", low=LOG_PROB_DOMAIN[0], high=LOG_PROB_DOMAIN[1], hard_regions=True):
    """(logp, logq) tuples of Python floats exactly representable in ``dtype`` within
    [low, high].  With ``hard_regions`` (the default), most pairs come from the regions
    where estimators lose accuracy: r = p/q near 1 (logp - logq from 1e-300 to 0.1 in
    magnitude, half of those draws log-uniform in the band 7e-9 .. 0.25), large |log r| (one end of the domain against the other), both very
    negative (the lowest tenth of the domain), and values near zero."""
    name = _check_domain(dtype, low, high)
    if not isinstance(hard_regions, bool):
        raise InvalidArgument(f"hard_regions must be True or False; got {hard_regions!r}")
    exact = _exact(name, low, high)
    values = log_probs(dtype=name, low=low, high=high)
    independent = st.tuples(values, values)
    if not hard_regions:
        return independent
    width = high - low
    deltas = st.builds(
        lambda sign, exponent, mantissa: sign * mantissa * 2.0 ** exponent,
        st.sampled_from((-1.0, 1.0)), st.integers(-1000, -3), st.floats(1.0, 2.0),
    )
    # the cancellation band |log r| in [2^-27, 0.25] (7e-9 .. 0.25), where low-precision
    # k3 goes negative: log-uniform there, not one draw in a hundred as with ``deltas``
    band = st.builds(
        lambda sign, exponent, mantissa: sign * mantissa * 2.0 ** exponent,
        st.sampled_from((-1.0, 1.0)), st.integers(-28, -3), st.floats(1.0, 2.0),
    )
    near_one = st.builds(lambda q, d, swap: (exact(q + d), q) if not swap else (q, exact(q + d)),
                         values, st.one_of(deltas, band), st.booleans())
    ulp_steps = st.builds(lambda q, k: (_from_ordinal(max(min(_ordinal(q, name) + k, _ordinal(high, name)),
                                                          _ordinal(low, name)), name), q),
                          values, st.integers(-8, 8))
    top = st.floats(high - width / 10, high, allow_nan=False).map(exact)
    bottom = st.floats(low, low + width / 10, allow_nan=False).map(exact)
    far = st.one_of(st.tuples(top, bottom), st.tuples(bottom, top))
    both_low = st.tuples(bottom, bottom)
    tiny = st.integers(0, 64).map(lambda k: _from_ordinal(-k, name) if low < 0 else _from_ordinal(k, name)).map(exact)
    near_zero = st.one_of(st.tuples(tiny, tiny), st.tuples(tiny, values), st.tuples(values, tiny))
    return st.one_of(near_one, ulp_steps, far, both_low, near_zero, independent)
