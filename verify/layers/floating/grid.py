"""The deterministic grid of the float32/float64 search: (logp, logq) pairs by family,
where estimators are known to go wrong (cancellation, overflow, rounded differences)."""
from __future__ import annotations

import math

import numpy as np

from verify.layers.floating.dtype_info import DtypeInfo
from verify.errors import UsageError
from verify.layers.floating.tolerances import DOMAIN
from verify.strategies import numpy_dtype, round_to_dtype


def _representable(values, info: DtypeInfo) -> np.ndarray:
    return round_to_dtype(np.asarray(values, dtype=np.float64), info.name).astype(np.float64)


def finite_bounds(info: DtypeInfo, domain) -> tuple[float, float]:
    """The smallest and largest finite values of the dtype in ``domain`` (LO = -inf: the
    dtype's most negative number); UsageError when the domain holds none."""
    np_dtype = numpy_dtype(info.name)
    low, high = float(domain[0]), float(domain[1])
    if low == -math.inf:
        low_value = -info.max_finite
    else:
        low_value = float(_representable([low], info)[0])
        if low_value < low:
            low_value = float(np.nextafter(np_dtype.type(low_value), np_dtype.type(0)).astype(np.float64))
    high_value = float(_representable([high], info)[0])
    if high_value > high:
        high_value = float(np.nextafter(np_dtype.type(high_value), np_dtype.type(-np.inf)).astype(np.float64))
    if not low_value <= high_value:
        raise UsageError(f"the domain [{low:g}, {high:g}] holds no {info.name} value")
    return low_value + 0.0, high_value + 0.0


def grid_pairs(info: DtypeInfo, sizes: dict, domain=DOMAIN):
    """Deterministic (logp, logq) pairs over ``domain`` for float32 and float64, by family
    (returns {family: (logp, logq)}):

    - ``log_ratio_binades``: |log r| at 1, 1.5 and 2 - 2^-k times every power of two from
      the dtype's smallest subnormal to 60, both signs, against two log q each;
    - ``log_q_binades``: log q at 1.5 times every power of two, against log p = log q,
      its neighbours, 0 and -60;
    - ``cancellation``: |log r| log-spaced over [1e-8, 0.3] (``band`` values), both signs;
    - ``thresholds``: log p, log q and log r at +-log(largest finite), log(smallest
      normal), log(smallest subnormal), divided by 1..4 (where exp, squares and cubes
      overflow or underflow), and their neighbours;
    - ``rounded_differences``: log p and log q with odd last significand bits in
      different binades, so that log p - log q rounds in the dtype;
    - ``anchors``: the previous grid (log-spaced anchors x log-spaced steps);
    - ``masked`` (only when the domain reaches -inf): log p = -inf (r = 0) against the
      values of the other families; log q = -inf is never sampled and not tried.

    Bounds that are not values of the dtype are replaced by the nearest ones inside."""
    low, high = finite_bounds(info, domain)
    np_dtype = numpy_dtype(info.name)
    tiny = float(np.nextafter(np_dtype.type(0), np_dtype.type(1)).astype(np.float64))
    smallest_exponent = math.frexp(tiny)[1] - 1
    families = {}

    def add(name, logp, logq):
        logp = np.clip(_representable(logp, info), low, high)
        logq = np.clip(_representable(logq, info), low, high)
        old_p, old_q = families.get(name, (np.empty(0), np.empty(0)))
        families[name] = (np.concatenate([old_p, logp]), np.concatenate([old_q, logq]))

    exponents = np.unique(np.concatenate([np.arange(5, smallest_exponent - 1, -sizes["binade_step"]),
                                          [smallest_exponent, -1, 0]]))
    magnitudes = np.concatenate([np.ldexp(1.0, exponents), np.ldexp(1.5, exponents)])
    if sizes["binade_points"] > 2:
        magnitudes = np.concatenate([magnitudes, np.ldexp(2.0 - 2.0 ** -(info.precision - 1), exponents)])
    magnitudes = magnitudes[magnitudes <= -low]
    for offset in (0.0, 1.0):
        add("log_ratio_binades", -offset - 0.0 * magnitudes, -offset - magnitudes)      # log r = +m
        add("log_ratio_binades", -magnitudes - offset * 0.5, np.full_like(magnitudes, -offset * 0.5))  # log r = -m
    log_q = -np.ldexp(1.5, exponents)
    log_q = log_q[log_q >= low]
    up = np.nextafter(log_q.astype(np_dtype), np_dtype.type(0)).astype(np.float64)
    down = np.nextafter(log_q.astype(np_dtype), np_dtype.type(-np.inf)).astype(np.float64)
    for logp in (log_q, up, down, np.zeros_like(log_q), np.full_like(log_q, low)):
        add("log_q_binades", logp, log_q)
    band = np.geomspace(1e-8, 0.3, sizes["band"])
    for anchor in (-1.0, -20.0, -0.25):
        add("cancellation", anchor + band, np.full_like(band, anchor))
        add("cancellation", anchor - band, np.full_like(band, anchor))
    limits = [math.log(info.max_finite), math.log(float(info.smallest_normal)), math.log(tiny)]
    thresholds = np.array([abs(v) / k for v in limits for k in (1, 2, 3, 4)])
    thresholds = thresholds[thresholds <= -low]
    points = np.unique(np.concatenate([
        -_representable(thresholds, info),
        np.nextafter(-_representable(thresholds, info).astype(np_dtype), np_dtype.type(0)).astype(np.float64),
        np.nextafter(-_representable(thresholds, info).astype(np_dtype), np_dtype.type(-np.inf)).astype(np.float64),
        [0.0, low, -1.0]]))
    add("thresholds", np.repeat(points, len(points)), np.tile(points, len(points)))
    add("thresholds", np.zeros_like(points), points)  # log r = +threshold
    odd = []
    for e in (-30, -20, -12, -6, -3, -1, 0, 1, 3, 5):
        for k in (1, 3):
            odd.append(-math.ldexp(1.0 + k * 2.0 ** -(info.precision - 1), e))
    odd = np.array([v for v in odd if v >= low])
    add("rounded_differences", np.repeat(odd, len(odd)), np.tile(odd, len(odd)))
    anchors, deltas = sizes["anchors"], sizes["deltas"]
    anchor_magnitudes = np.concatenate([np.geomspace(1e-30, -low, anchors), [tiny, 2 * tiny, float(info.smallest_normal),
                                                                            1.0, -low], np.linspace(0, -low, anchors)])
    anchor_values = np.unique(np.clip(_representable(-anchor_magnitudes, info), low, high))
    steps = np.geomspace(1e-300, -low, deltas)
    steps = np.concatenate([-steps, steps, [0.0]])
    add("anchors", np.repeat(anchor_values, len(steps)) + np.tile(steps, len(anchor_values)),
        np.repeat(anchor_values, len(steps)))
    add("anchors", np.repeat(anchor_values, len(anchor_values)), np.tile(anchor_values, len(anchor_values)))
    seen = set()
    unique = {}
    for name, (logp, logq) in families.items():
        keep = []
        for i, pair in enumerate(zip(logp.tolist(), logq.tolist())):
            key = (pair[0] + 0.0, pair[1] + 0.0, math.copysign(1, pair[0]), math.copysign(1, pair[1]))
            if key not in seen:
                seen.add(key)
                keep.append(i)
        unique[name] = (logp[keep].copy(), logq[keep].copy())
    if domain[0] == -math.inf:
        every = np.unique(np.concatenate([np.concatenate(pair) for pair in unique.values()]))
        unique["masked"] = (np.full(len(every), -np.inf), every)
    return unique
