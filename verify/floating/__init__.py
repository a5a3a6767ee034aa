"""Floating-point claims of a numeric implementation, per dtype (shared/CLAIMS.md).

For an estimator f(r) with ``numeric(logp, logq)``, and inputs logp, logq exactly
representable in the dtype and inside ``DOMAIN``, with t = logp - logq exact and
u the dtype's unit roundoff:

- ``fp_nonnegative``: the value is >= 0 (NaN counts as a failure; -0.0 does not);
- ``fp_finite``: the value is finite whenever |f| at the exact inputs is at most the
  dtype's largest finite number;
- ``fp_accurate``: within ``ACCURATE_ULPS`` ulps (or ``estimator.fp_ulps``) of f at the
  exact inputs, or off by less than the dtype's smallest normal number, or by at most
  ``estimator.fp_atol``; where |f| is beyond the finite range the value must be +-inf
  or +-max with the sign of f;
- ``fp_matches_expression``: the same, with MATCH_ULPS ulps plus the error any
  evaluation of the right formula from these inputs may make:
  MATCH_ULPS u ((|logp| + |logq|)(1 + |f'(t)|) + 1).  See ``MATCH_ULPS``.

float16 and bfloat16 are decided by exhaustive enumeration in every profile
(``exhaustive.py``): every pair of representable inputs in the domain, the
implementation called on chunks, the exact f enclosed by certified float64 interval
evaluation (``interval.py``), mpmath only where an enclosure straddles a tolerance and
to re-check counterexamples.  Verdicts: ``proved`` or ``refuted``, with the number of
pairs and of failing pairs.

float32 and float64: a deterministic grid by families (``_grid``) and hypothesis
(``verify.strategies.log_prob_pairs``) with ``hypothesis.target`` on the worst error;
the reference is mpmath at the exact log ratio, with the working precision doubled until
two evaluations agree to 2**-80.  Verdicts: ``tested`` (with the number of inputs) or
``refuted``.  Every verdict carries the worst error found (ulps and absolute, with
inputs).
"""
from __future__ import annotations

import math
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from hypothesis import HealthCheck, given, settings, target

from verify import UsageError
from verify.claims import DTYPES, FLOATING, PROVED, REFUTED, TESTED, UNDECIDED, Verdict, split_claim
from verify.expression import R, as_expression
from verify.floating import interval
from verify.floating.exhaustive import MAX_UNKNOWN, all_values, enumerate_pairs, match_slack
from verify.strategies import LOG_PROB_DOMAIN, log_prob_pairs, numpy_dtype, round_to_dtype

__all__ = [
    "ACCURATE_ULPS", "MATCH_ULPS", "DOMAIN", "PROFILES", "SIXTEEN_BIT", "check_claims", "check_callable",
    "fp_results_for_report", "Reference",
]

DOMAIN = LOG_PROB_DOMAIN
# The 16-bit sweeps' domain: DOMAIN in the harness.  (The test suite sweeps a part of it
# where a test does not need the whole: tests/conftest.py; the gate sweeps the whole.)
SWEEP_DOMAIN = DOMAIN
SIXTEEN_BIT = ("float16", "bfloat16")  # decided by exhaustive enumeration, in every profile
# A careful float64 evaluation of these estimators (a handful of correctly rounded
# operations on non-cancelling terms) stays within about 2 ulps; float32 and the 16-bit
# dtypes computed in float64 and rounded once are within 0.5 ulp.  4 leaves room for
# libm's exp/expm1/log1p (<= 1 ulp each) and nothing for cancellation.  An estimator
# may set its own ``fp_ulps``, and an absolute tolerance ``fp_atol`` (an RL penalty does
# not care about 1e7 ulps at a value of 4e-28).
ACCURATE_ULPS = 4.0
# fp_matches_expression tells a different formula from the right one evaluated naively
# (in the dtype, in any order, through p and q or through log r).  Accepted: within
# MATCH_ULPS ulps of f(t), plus MATCH_ULPS unit roundoffs u of
#   (|logp| + |logq|) (1 + |f'(t)|)   the rounding of inputs of that size, through f',
#                                     and a cancellation of terms as large as the inputs
#                                     (log(p^2 ...) - 2 log q)
#   + 1                               a cancellation of terms of size 1 (exp(t) - 1)
# or an error below the smallest normal number.  |f'(t)| is the upper end of its
# certified float64 enclosure (0 where that is not finite).  So K4 computed through p
# and q (-9.1e-17 at logp = logq, exact 0) matches its formula in float64, and k2
# implemented under k3's name does not (0.5 against 0.718 at log r = 1).
MATCH_ULPS = 32.0
# The reference is accepted when two mpmath evaluations, the second at twice the
# precision, agree to this relative error (or both are below REFERENCE_TINY in size).
REFERENCE_AGREEMENT = mpmath.mpf(2) ** -80
REFERENCE_TINY = mpmath.mpf(2) ** -1200
REFERENCE_START_BITS = 128
REFERENCE_MAX_BITS = 8192
# A zero at low precision is re-evaluated at 4096 and 8192 bits: float64 inputs have a
# log ratio of at least 2**-1074 in size, so terms like t**2 need about 2150 bits.
REFERENCE_ZERO_BITS = 8192

# Processes that share one exhaustive 16-bit sweep (``sweep_workers``): every core,
# unless the caller already runs several cells at once (``verify all``).
SWEEP_WORKERS = os.cpu_count() or 1

PROFILES = ("dev", "ci", "thorough")
# Sizes of the float32/float64 search (16-bit dtypes are always enumerated):
# max_examples: hypothesis examples per estimator and dtype; band: log-spaced |log r| in
# the cancellation band [1e-8, 0.3]; binade_points: values per binade of |log r|;
# binade_step: every binade (1) or every k-th (dev);
# anchors x deltas: the anchor grid.
_PROFILE_SIZES = {
    "dev": {"max_examples": 60, "band": 100, "binade_points": 2, "binade_step": 8, "anchors": 8, "deltas": 12},
    "ci": {"max_examples": 250, "band": 400, "binade_points": 2, "binade_step": 1, "anchors": 16, "deltas": 30},
    "thorough": {"max_examples": 3000, "band": 3000, "binade_points": 3, "binade_step": 1, "anchors": 60,
                 "deltas": 120},
}
_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("kl_verify_dev", max_examples=60, deadline=None, database=None,
                          suppress_health_check=_HEALTH)
settings.register_profile("kl_verify_ci", max_examples=250, deadline=None, database=None,
                          derandomize=True, suppress_health_check=_HEALTH, print_blob=False)
settings.register_profile("kl_verify_thorough", max_examples=3000, deadline=None, database=None,
                          suppress_health_check=_HEALTH)


@dataclass(frozen=True)
class DtypeInfo:
    name: str
    precision: int  # significand bits, the implicit one included
    min_exponent: int  # exponent of the smallest normal number
    max_finite: float

    @property
    def smallest_normal(self):
        return mpmath.ldexp(1, self.min_exponent)

    @property
    def unit_roundoff(self):
        return mpmath.ldexp(1, -self.precision)


DTYPE_INFO = {
    "float64": DtypeInfo("float64", 53, -1022, float(np.finfo(np.float64).max)),
    "float32": DtypeInfo("float32", 24, -126, float(np.finfo(np.float32).max)),
    "float16": DtypeInfo("float16", 11, -14, float(np.finfo(np.float16).max)),
    "bfloat16": DtypeInfo("bfloat16", 8, -126, float.fromhex("0x1.fep127")),
}


def ulp(x, info: DtypeInfo):
    """The spacing of ``info``'s numbers at the (exact, mpmath) value x."""
    if x == 0:
        exponent = info.min_exponent
    else:
        exponent = max(int(mpmath.frexp(x)[1]) - 1, info.min_exponent)
    return mpmath.ldexp(1, exponent - info.precision + 1)


class Reference:
    """f at an exact log ratio, by mpmath; ``None`` where f is undefined there (or no
    two evaluations agree up to REFERENCE_MAX_BITS: reported, never silently passed)."""

    def __init__(self, expr):
        log_ratio = sp.Symbol("t", real=True)
        self.log_ratio = log_ratio
        self.expression = as_expression(expr).subs(R, sp.exp(log_ratio))
        self._function = sp.lambdify(log_ratio, self.expression, modules="mpmath")
        self._cache = {}

    def _at(self, log_ratio, bits):
        with mpmath.workprec(bits):
            return mpmath.mpf(self._function(+log_ratio))

    def at_log_ratio(self, log_ratio):
        key = log_ratio
        if key in self._cache:
            return self._cache[key]
        value = None
        try:
            bits = REFERENCE_START_BITS
            previous = self._at(log_ratio, bits)
            while bits < REFERENCE_MAX_BITS:
                bits *= 2
                current = self._at(log_ratio, bits)
                if not (mpmath.isfinite(current) and mpmath.isfinite(previous)):
                    break
                if current == 0 and previous == 0 and log_ratio != 0 and bits < REFERENCE_ZERO_BITS:
                    # an exact zero may be every digit cancelling: look again where
                    # no cancellation of float inputs can reach
                    bits = REFERENCE_ZERO_BITS // 2
                    previous = self._at(log_ratio, bits)  # compared with twice this next
                    continue
                if (abs(current - previous) <= REFERENCE_AGREEMENT * abs(current)
                        or max(abs(current), abs(previous)) <= REFERENCE_TINY):
                    value = current
                    break
                previous = current
        except (ZeroDivisionError, ValueError, TypeError, OverflowError):
            value = None
        self._cache[key] = value
        return value

    def at(self, logp: float, logq: float):
        """f at t = logp - logq, formed exactly."""
        return self.at_log_ratio(mpmath.fsub(logp, logq, exact=True))


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _exact_json(exact):
    """A float when float64 holds it without underflow or overflow, else 17 digits."""
    as_float = float(exact) if mpmath.isfinite(exact) else math.inf
    if math.isfinite(as_float) and (as_float != 0 or exact == 0) and abs(as_float) >= 2.2250738585072014e-308 or exact == 0:
        return as_float
    return mpmath.nstr(exact, 17)


class ReturnedDtype(Exception):
    """The implementation returned another dtype (or a list) than it was given."""

    def __init__(self, logp, logq, expected, returned):
        super().__init__(logp, logq, expected, returned)
        self.logp, self.logq, self.expected, self.returned = logp, logq, expected, returned

    def __str__(self):
        return (f"returned {self.returned} for {self.expected} inputs: an implementation returns the dtype it is "
                "given (docs/claims.md, fp_returns_input_dtype); an upcast hides that dtype's own rounding")


@dataclass
class _ClaimTally:
    checked: int = 0
    failures: list = field(default_factory=list)  # (severity, logp, logq, value, exact, note)


def _implementation(estimator):
    """The NumPy-level callable of an estimator's implementation: arrays of one dtype in,
    an array out.  Every call of an implementation in this layer (grid, hypothesis,
    exhaustive enumeration, re-checks, the pytest plugin) goes through here."""
    from verify.frameworks import as_numpy_callable

    # a torch implementation gets exact tensors of the dtype (verify.frameworks)
    return as_numpy_callable(estimator.numeric, getattr(estimator, "framework", "numpy"))


class _Enclosures:
    """The certified float64 enclosures of f, of f' and the Taylor model at t = 0, for
    one expression (``interval.py``); any of them None where the expression is not
    supported (the exhaustive checks then fall back to mpmath, pair by pair)."""

    _cache: dict = {}

    def __init__(self, expression, log_ratio):
        self.function = self.derivative = self.taylor = None
        self.problem = None
        try:
            self.function = interval.IntervalFunction(expression, log_ratio)
        except interval.Unsupported as error:
            self.problem = str(error)
            return
        try:
            self.derivative = interval.IntervalFunction(sp.diff(expression, log_ratio), log_ratio)
        except (interval.Unsupported, ValueError, TypeError):
            self.derivative = None
        try:
            self.taylor = interval.TaylorModel(expression, log_ratio)
        except (interval.Unsupported, ImportError, ValueError, TypeError, ZeroDivisionError, AssertionError):
            self.taylor = None

    @classmethod
    def of(cls, reference):
        key = sp.srepr(reference.expression)
        if key not in cls._cache:
            cls._cache[key] = cls(reference.expression, reference.log_ratio)
        return cls._cache[key]


@dataclass
class _DtypeRun:
    """The evidence gathered for one estimator in one dtype."""

    info: DtypeInfo
    numeric: object  # the NumPy-level callable (``_implementation``)
    reference: Reference
    accurate_ulps: float
    atol: float = 0.0
    tallies: dict = field(default_factory=lambda: {c: _ClaimTally() for c in FLOATING})
    sources: dict = field(default_factory=lambda: {"grid": 0, "hypothesis": 0, "exhaustive": 0})
    undefined: int = 0
    worst_ulps: float = 0.0
    worst_input: tuple | None = None
    worst_abs: float = 0.0
    worst_abs_input: tuple | None = None
    error: str | None = None
    exhaustive: object = None  # an ExhaustiveTally for 16-bit dtypes
    exhaustive_claims: tuple = ()
    # what the deterministic grid alone found: reports quote these, so that they do not
    # change with the hypothesis version (its derandomized examples do)
    grid_failures: dict = field(default_factory=dict)
    grid_undefined: int = 0
    grid_parts: dict = field(default_factory=dict)
    returns: object = None  # the dtype the implementation returns, when not its input's (a library's float32)
    dtype_problem: object = None  # a ReturnedDtype: the dtype contract broken

    def evaluate(self, logp, logq) -> np.ndarray:
        np_dtype = numpy_dtype(self.info.name)
        logp = np.asarray(logp, dtype=np.float64).astype(np_dtype)
        logq = np.asarray(logq, dtype=np.float64).astype(np_dtype)
        return self.evaluate_exact(logp, logq)

    def evaluate_exact(self, logp, logq) -> np.ndarray:
        """The implementation at inputs already in the dtype, as float64.  It must return an
        array of its input dtype (or of the dtype its library computes in): an upcast
        would hide the very rounding the claims are about."""
        with np.errstate(all="ignore"):
            raw = self.numeric(logp, logq)
        expected = self.returns or logp.dtype
        if not isinstance(raw, np.ndarray) or raw.dtype != expected:
            returned = str(raw.dtype) if isinstance(raw, np.ndarray) else type(raw).__name__
            raise ReturnedDtype(float(logp.flat[0]), float(logq.flat[0]), str(np.dtype(expected)), returned)
        out = raw
        if out.shape != logp.shape:
            raise ValueError(f"returned shape {out.shape} for inputs of shape {logp.shape}")
        return out.astype(np.float64)

    def judge(self, logp: float, logq: float, value: float) -> dict:
        """Every claim at one input, exactly: {claim: (holds, severity)}, "_undefined"
        when f is undefined there, "_error": (ulps, absolute error), "_exact": f."""
        outcome = {"fp_nonnegative": (value >= 0, math.inf if math.isnan(value) else -value)}
        exact = self.reference.at(logp, logq)
        if exact is None:
            outcome["_undefined"] = True
            return outcome
        info = self.info
        in_range = abs(exact) <= info.max_finite
        finite = math.isfinite(value)
        outcome["fp_finite"] = (finite or not in_range, 1.0)
        outcome["_exact"] = exact
        if not in_range:
            limit_ok = value in (math.copysign(math.inf, exact), math.copysign(info.max_finite, exact))
            for claim in ("fp_accurate", "fp_matches_expression"):
                outcome[claim] = (limit_ok, 0.0 if limit_ok else math.inf)
            outcome["_error"] = (0.0, 0.0)
            return outcome
        if not finite:
            for claim in ("fp_accurate", "fp_matches_expression"):
                outcome[claim] = (False, math.inf)
            outcome["_error"] = (math.inf, math.inf)
            return outcome
        error = abs(mpmath.mpf(value) - exact)
        spacing = ulp(exact, info)
        in_ulps = float(error / spacing)
        tiny = error < info.smallest_normal
        outcome["fp_accurate"] = (bool(error <= self.accurate_ulps * spacing or tiny or error <= self.atol), in_ulps)
        slack = float(match_slack(np.array([logp]), np.array([logq]), self._enclosures().derivative,
                                  float(info.unit_roundoff), MATCH_ULPS)[0])
        outcome["fp_matches_expression"] = (bool(error <= MATCH_ULPS * spacing + mpmath.mpf(slack) or tiny), in_ulps)
        outcome["_error"] = (in_ulps, float(error))
        return outcome

    def _enclosures(self):
        return _Enclosures.of(self.reference)

    def check_point(self, logp: float, logq: float, value: float) -> float:
        """Record the four claims at one input; returns the error in ulps (for target)."""
        outcome = self.judge(logp, logq, value)
        tallies = self.tallies
        tallies["fp_nonnegative"].checked += 1
        if not outcome["fp_nonnegative"][0]:
            tallies["fp_nonnegative"].failures.append(
                (outcome["fp_nonnegative"][1], logp, logq, value, None, "negative or NaN"))
        if outcome.get("_undefined"):
            self.undefined += 1
            return 0.0
        exact = outcome["_exact"]
        for claim in ("fp_finite", "fp_accurate", "fp_matches_expression"):
            tallies[claim].checked += 1
            ok, severity = outcome[claim]
            if not ok:
                note = "not finite" if claim == "fp_finite" else f"{severity:.4g} ulps"
                tallies[claim].failures.append((severity, logp, logq, value, exact, note))
        in_ulps, absolute = outcome["_error"]
        if self.worst_input is None or in_ulps > self.worst_ulps:
            self.worst_ulps, self.worst_input = in_ulps, (logp, logq)
        if self.worst_abs_input is None or absolute > self.worst_abs:
            self.worst_abs, self.worst_abs_input = absolute, (logp, logq)
        return in_ulps

    def check_batch(self, logp, logq, source):
        values = self.evaluate(logp, logq)
        for p, q, v in zip(logp.tolist(), logq.tolist(), values.tolist()):
            self.check_point(p, q, v)
        self.sources[source] += len(values)


def _representable(values, info: DtypeInfo) -> np.ndarray:
    return round_to_dtype(np.asarray(values, dtype=np.float64), info.name).astype(np.float64)


def _grid(info: DtypeInfo, sizes: dict):
    """Deterministic (logp, logq) pairs over DOMAIN for float32 and float64, by family
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
    - ``anchors``: the previous grid (log-spaced anchors x log-spaced steps).
    """
    low, high = DOMAIN
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
    return unique


@contextmanager
def _without_local_constants():
    """Hypothesis (since 6.131) mixes into its draws numeric constants found in the
    source of every "local" module loaded at the time (sys.modules).  The examples of a
    derandomized search then depend on what else the process imported: under pytest,
    or after another layer ran in the same worker, ``verify all`` found a different
    worst error than alone, and the committed reports went stale.  Within our own
    searches the local pool is empty (hypothesis's global constants stay), so the
    examples depend only on the seed and the hypothesis version.  A hypothesis without
    the pool is left as it is."""
    try:
        from hypothesis.internal.conjecture import providers
        pool_of, empty = providers._get_local_constants, providers.Constants()
        forget_filtered_pools = providers.CONSTANTS_CACHE.cache.clear  # computed with the local constants
    except (ImportError, AttributeError):  # an older or newer hypothesis: nothing to neutralise
        yield
        return
    forget_filtered_pools()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = pool_of
        forget_filtered_pools()


def _hypothesis_search(run: _DtypeRun, profile: str):
    strategy = log_prob_pairs(dtype=run.info.name)

    @settings(settings.get_profile(f"kl_verify_{profile}"))
    @given(strategy)
    def search(pair):
        logp, logq = pair
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        run.sources["hypothesis"] += 1
        in_ulps = run.check_point(logp, logq, value)
        target(_finite_score(in_ulps), label="error in ulps")
        target(_finite_score(-value), label="negativity")

    with _without_local_constants():
        search()


def _finite_score(score: float) -> float:
    return 1e300 if math.isnan(score) else max(min(score, 1e300), -1e300)


def _all_values(info: DtypeInfo) -> np.ndarray:
    """Every value of a 16-bit dtype in SWEEP_DOMAIN, -0.0 included, as float64."""
    return all_values(numpy_dtype(info.name), SWEEP_DOMAIN)


@contextmanager
def sweep_workers(count: int):
    """Run the exhaustive sweeps inside the block with ``count`` processes."""
    global SWEEP_WORKERS
    previous, SWEEP_WORKERS = SWEEP_WORKERS, max(1, int(count))
    try:
        yield
    finally:
        SWEEP_WORKERS = previous


def _sweep_workers() -> int:
    """SWEEP_WORKERS where forking is safe: a platform with fork, and no torch loaded (a
    child forked after torch started its thread pools can deadlock in them)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods() or "torch" in sys.modules:
        return 1
    return SWEEP_WORKERS


def _exhaustive(run: _DtypeRun, claims, progress=None):
    """All four claims over every pair of the 16-bit domain (``exhaustive.py``)."""
    enclosures = run._enclosures()
    if enclosures.function is None:
        raise interval.Unsupported(f"no float64 enclosure of f ({enclosures.problem})")

    def implementation(logp, logq):
        return run.evaluate_exact(logp, logq)

    tally = enumerate_pairs(run.info, numpy_dtype(run.info.name), SWEEP_DOMAIN, implementation, claims,
                            enclosure=enclosures.function, taylor=enclosures.taylor,
                            derivative=enclosures.derivative, accurate_ulps=run.accurate_ulps, atol=run.atol,
                            match_ulps=MATCH_ULPS, judge=run.judge, progress=progress,
                            workers=_sweep_workers())
    run.exhaustive = tally
    run.exhaustive_claims = tuple(claims)
    run.sources["exhaustive"] = tally.pairs
    run.undefined += tally.undefined
    # the worst errors, recomputed exactly at the pairs the float64 sweep picked
    for kind, (_, logp, logq) in (("ulps", tally.worst_ulps), ("abs", tally.worst_abs)):
        if logp is None:
            continue
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        outcome = run.judge(logp, logq, value)
        if "_error" not in outcome:
            continue
        in_ulps, absolute = outcome["_error"]
        if kind == "ulps" and (run.worst_input is None or in_ulps >= run.worst_ulps):
            run.worst_ulps, run.worst_input = in_ulps, (logp, logq)
        if kind == "abs" and (run.worst_abs_input is None or absolute >= run.worst_abs):
            run.worst_abs, run.worst_abs_input = absolute, (logp, logq)
    return tally.values_per_dtype


def _recheck(run: _DtypeRun, claim: str, logp: float, logq: float):
    """(value, exact) of the implementation called on the one input, if the claim still fails."""
    value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
    outcome = run.judge(logp, logq, value)
    if claim not in outcome or outcome[claim][0]:
        return None
    return value, outcome.get("_exact")


def _counterexample(run, claim, candidates):
    """The first candidate (severity, logp, logq, ...) that fails again when called alone."""
    for candidate in candidates:
        logp, logq = candidate[1], candidate[2]
        rechecked = _recheck(run, claim, logp, logq)
        if rechecked is None:
            continue
        value, exact = rechecked
        if exact is None and claim != "fp_nonnegative":
            continue
        if exact is None:
            exact = run.reference.at(logp, logq)
        return {"logp": logp, "logq": logq, "dtype": run.info.name, "value": _json_float(value),
                "exact": _exact_json(exact) if exact is not None else None}
    return None


def _worst(run: _DtypeRun):
    """The worst error of the run, for every verdict of its dtype (None before any input).
    Inputs, value and exact f are exact decimal strings (results.json rounds floats)."""
    if run.worst_input is None:
        return None

    def where(pair):
        logp, logq = pair
        value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
        exact = run.reference.at(logp, logq)
        return {"logp": repr(logp), "logq": repr(logq), "value": repr(value),
                "exact": mpmath.nstr(exact, 17) if exact is not None else None}

    return {"ulps": _json_float(run.worst_ulps), "ulps_at": where(run.worst_input),
            "abs": _json_float(run.worst_abs), "abs_at": where(run.worst_abs_input)}


def _dtype_verdict(run: _DtypeRun) -> Verdict:
    """Every claim of a dtype whose implementation broke the dtype contract: refuted at a
    pair where it does so when called alone (else undecided)."""
    problem = run.dtype_problem
    try:
        run.evaluate(np.array([problem.logp]), np.array([problem.logq]))
    except ReturnedDtype as again:
        example = {"logp": again.logp, "logq": again.logq, "dtype": run.info.name, "returned": again.returned}
        return Verdict(REFUTED, "dtype contract (fp_returns_input_dtype)", str(again), example)
    except Exception as error:  # noqa: BLE001
        return Verdict(UNDECIDED, "implementation failed", f"{type(error).__name__}: {error}"[:300])
    return Verdict(UNDECIDED, "dtype contract broken in batches only",
                   f"{problem}; but not when called alone at ({problem.logp}, {problem.logq})")


def _verdict(run: _DtypeRun, claim: str, profile: str, values_per_dtype: int | None) -> Verdict:
    tally = run.tallies[claim]
    name = run.info.name
    if run.dtype_problem is not None:
        return _dtype_verdict(run)
    if run.error is not None:
        return Verdict(UNDECIDED, "implementation failed", run.error)
    worst = _worst(run)
    domain = f"[{DOMAIN[0]:g}, {DOMAIN[1]:g}]"
    if claim in run.exhaustive_claims:
        found = run.exhaustive
        where = (f"all {found.pairs:,} (logp, logq) pairs of {name} in [{SWEEP_DOMAIN[0]:g}, {SWEEP_DOMAIN[1]:g}] "
                 f"({values_per_dtype:,} values each, "
                 f"-0.0 included); {found.settled_by_mpmath} pair(s) settled by mpmath where the float64 "
                 "enclosure straddled a tolerance")
        if found.undefined:
            where += f"; f undefined at {found.undefined} pair(s), skipped"
        failing = found.failures.get(claim, 0)
        if failing:
            example = _counterexample(run, claim, found.examples.get(claim, []))
            if example is None:
                return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                               f"{failing:,} failing pair(s) in chunks; none fails when called alone; {where}",
                               worst=worst)
            unsettled = found.unsettled.get(claim, 0)
            count = (f"{failing:,} of {found.pairs:,} pairs fail" if not unsettled else
                     f"at least {failing:,} of {found.pairs:,} pairs fail ({unsettled:,} not settled)")
            return Verdict(REFUTED, "exhaustive enumeration", f"{count}; {where}", example, worst=worst)
        if found.unsettled.get(claim):
            return Verdict(UNDECIDED, "exhaustive enumeration, not settled",
                           f"{found.unsettled[claim]:,} pair(s) neither the float64 enclosure nor mpmath (at most "
                           f"{MAX_UNKNOWN:,} pairs) settled; no failure among the others; {where}", worst=worst)
        return Verdict(PROVED, "exhaustive enumeration", f"no failure: {where}", worst=worst)
    if tally.failures:
        on_grid = run.grid_failures.get(claim, 0)
        # the grid's worst failures first (deterministic), then hypothesis's
        ordered = (sorted(tally.failures[:on_grid], key=lambda f: (-f[0], f[1], f[2]))[:20]
                   + sorted(tally.failures[on_grid:], key=lambda f: (-f[0], f[1], f[2]))[:20])
        found = (f"{on_grid} of {run.sources['grid']} grid inputs fail" if on_grid
                 else f"hypothesis (profile {profile}) found failing inputs; the grid of {run.sources['grid']} did not")
        example = _counterexample(run, claim, ordered)
        if example is None:
            return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                           f"{len(tally.failures)} failing input(s) in batches; none fails when called alone",
                           worst=worst)
        note = next(f[5] for f in ordered if (f[1], f[2]) == (example["logp"], example["logq"]))
        return Verdict(REFUTED, f"counterexample ({note})", found, example, worst=worst)
    sources = run.sources
    undefined = (f"; no reference at {run.grid_undefined} grid input(s) (f undefined there, or mpmath did not "
                 "converge), skipped" if run.grid_undefined else "")
    if tally.checked == 0:
        return Verdict(UNDECIDED, "no input could be checked", f"f undefined at every input tried{undefined}",
                       worst=worst)
    parts = ", ".join(f"{family.replace('_', ' ')} {count}" for family, count in run.grid_parts.items())
    return Verdict(TESTED, "dense grid + hypothesis",
                   f"{tally.checked:,} inputs in {domain}: a grid of {sources['grid']:,} pairs ({parts}) and "
                   f"{sources['hypothesis']:,} hypothesis examples (profile {profile}, targeting "
                   f"the worst error); no failure{undefined}", worst=worst)


def _run_dtype(numeric, reference, accurate_ulps, atol, name, profile, claims,
               returns=None) -> tuple[_DtypeRun, int | None]:
    info = DTYPE_INFO[name]
    sizes = _PROFILE_SIZES[profile]
    run = _DtypeRun(info, numeric, reference, accurate_ulps, atol, returns=returns)
    values_per_dtype = None
    try:
        if name in SIXTEEN_BIT:
            values_per_dtype = _exhaustive(run, claims)
        else:
            families = _grid(info, sizes)
            for family, (logp, logq) in families.items():
                run.check_batch(logp, logq, "grid")
                run.grid_parts[family] = len(logp)
            run.grid_failures = {claim: len(tally.failures) for claim, tally in run.tallies.items()}
            run.grid_undefined = run.undefined
            _hypothesis_search(run, profile)
    except ReturnedDtype as error:
        run.dtype_problem = error
    except BrokenProcessPool:
        run.error = ("a sweep worker running the implementation ended abruptly (exit(), os._exit(), a signal "
                     "or out of memory)")
    except Exception as error:  # noqa: BLE001 - a broken implementation is a finding, reported as data
        run.error = f"{type(error).__name__}: {error}"[:300]
    return run, values_per_dtype


def _check_profile(profile):
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def _tolerances(estimator):
    accurate_ulps = float(estimator.fp_ulps) if estimator.fp_ulps is not None else ACCURATE_ULPS
    atol = getattr(estimator, "fp_atol", None)
    atol = float(atol) if atol is not None else 0.0
    if not (accurate_ulps >= 0 and math.isfinite(accurate_ulps)) or not (atol >= 0 and math.isfinite(atol)):
        raise UsageError(f"estimator {estimator.name!r}: fp_ulps and fp_atol must be finite and >= 0")
    return accurate_ulps, atol


def _runs(estimator, claims, profile):
    _check_profile(profile)
    if estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation")
    by_dtype: dict[str, list[str]] = {}
    for claim in claims:
        base, dtype = split_claim(claim)
        if base not in FLOATING:
            raise UsageError(f"{claim!r} is not a floating-point claim")
        for name in ([dtype] if dtype else DTYPES):
            by_dtype.setdefault(name, [])
            if base not in by_dtype[name]:
                by_dtype[name].append(base)
    reference = Reference(estimator.expr)
    accurate_ulps, atol = _tolerances(estimator)
    numeric = _implementation(estimator)
    usage = getattr(estimator, "usage", None)
    returns = numpy_dtype(usage.computes_in) if usage is not None and usage.computes_in in DTYPES else None
    runs = {}
    for name in DTYPES:
        if name in by_dtype:
            runs[name] = _run_dtype(numeric, reference, accurate_ulps, atol, name, profile, by_dtype[name], returns)
    return runs


def check_claims(estimator, claims: list[str], profile: str = "ci") -> dict[str, Verdict]:
    """Verdicts for floating-point claims (expanded names such as ``fp_accurate@float32``;
    a name without ``@dtype`` stands for all four dtypes)."""
    runs = _runs(estimator, claims, profile)
    verdicts = {}
    for claim in claims:
        base, dtype = split_claim(claim)
        names = [dtype] if dtype else list(DTYPES)
        parts = [_verdict(runs[n][0], base, profile, runs[n][1]) for n in names]
        verdicts[claim] = parts[0] if len(parts) == 1 else _combine(parts, names)
    return verdicts


def _combine(parts: list[Verdict], names) -> Verdict:
    worst = {name: part.worst for name, part in zip(names, parts)}
    for wanted in (REFUTED, UNDECIDED, TESTED, PROVED):
        for part in parts:
            if part.verdict == wanted:
                return Verdict(wanted, part.method, "; ".join(p.detail for p in parts), part.counterexample,
                               worst=worst)
    raise AssertionError("no verdict")


def fp_results_for_report(estimator, profile: str = "ci", dtypes=DTYPES) -> dict:
    """Plain data for reports: verdicts per claim and dtype, input counts, worst errors."""
    claims = [f"{c}@{d}" for d in dtypes for c in FLOATING]
    runs = _runs(estimator, claims, profile)
    accurate_ulps, atol = _tolerances(estimator)
    result = {"estimator": estimator.name, "profile": profile, "domain": list(DOMAIN),
              "accurate_ulps": accurate_ulps, "atol": atol, "match_ulps": MATCH_ULPS, "dtypes": {}}
    for name, (run, values_per_dtype) in runs.items():
        result["dtypes"][name] = {
            "claims": {c: _verdict(run, c, profile, values_per_dtype).as_json() for c in FLOATING},
            "inputs": dict(run.sources),
            "undefined": run.undefined,
            "worst_error_ulps": run.worst_ulps if math.isfinite(run.worst_ulps) else repr(run.worst_ulps),
            "worst_input": list(run.worst_input) if run.worst_input else None,
            "worst_error": _worst(run),
        }
    return result


def check_callable(fn, expr, *, claims=FLOATING, dtypes=DTYPES, profile: str = "ci",
                   fp_ulps: float | None = None, fp_atol: float | None = None,
                   framework: str = "numpy") -> dict[str, Verdict]:
    """``check_claims`` for any callable ``fn(logp, logq)`` taking and returning array-likes
    (NumPy arrays of the dtype are passed; the result goes through ``np.asarray``), or,
    with ``framework="torch"``, torch tensors of the exact dtype."""
    from estimators import Estimator
    from verify.frameworks import check_framework

    if not callable(fn):
        raise UsageError(f"expected a callable implementation, got {type(fn).__name__}")
    check_framework(framework)
    as_expression(expr)
    estimator = Estimator(name=getattr(fn, "__name__", "implementation"), expr=expr, numeric=fn, fp_ulps=fp_ulps,
                          fp_atol=fp_atol, framework=framework)
    names = []
    for claim in claims:
        base, dtype = split_claim(claim)
        if base not in FLOATING:
            raise UsageError(f"{claim!r} is not a floating-point claim")
        for name in ([dtype] if dtype else list(dtypes)):
            if name not in DTYPES:
                raise UsageError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
            if f"{base}@{name}" not in names:
                names.append(f"{base}@{name}")
    return check_claims(estimator, names, profile=profile)
