"""Floating-point claims of a numeric implementation, per dtype (shared/CLAIMS.md).

For an estimator f(r) with ``numeric(logp, logq)``, and inputs logp, logq exactly
representable in the dtype and inside ``DOMAIN``:

- ``fp_nonnegative``: the value is >= 0 (NaN counts as a failure; -0.0 does not);
- ``fp_finite``: the value is finite whenever |f| at the exact inputs is at most the
  dtype's largest finite number;
- ``fp_accurate``: within ``ACCURATE_ULPS`` ulps (or ``estimator.fp_ulps``) of f at the
  exact inputs, or off by less than the dtype's smallest normal number; where |f| is
  beyond the finite range the value must be +-inf or +-max with the sign of f;
- ``fp_matches_expression``: the looser agreement of ``MATCH_ULPS`` (see there).

The reference is the symbolic expression f(exp(t)) evaluated by mpmath at the exact
log ratio t = logp - logq, with the working precision doubled until two evaluations
agree to 2**-80.  It never comes from the implementation under test.

The search: a deterministic dense grid weighted to the hard regions, then hypothesis
(``verify.strategies.log_prob_pairs``) with ``hypothesis.target`` on the worst error.
``fp_nonnegative`` needs no reference, so for float16 and bfloat16 the ``thorough``
profile enumerates every pair of the domain (``proved`` or ``refuted``); the other
claims would need the reference at ~10^8 distinct exact log ratios, so they end
``tested`` (or ``refuted``) with the number of inputs said.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from hypothesis import HealthCheck, given, settings, target

from verify import UsageError
from verify.claims import DTYPES, FLOATING, PROVED, REFUTED, TESTED, UNDECIDED, Verdict, split_claim
from verify.expression import R, as_expression
from verify.frameworks import as_numpy_callable, check_framework
from verify.strategies import LOG_PROB_DOMAIN, log_prob_pairs, numpy_dtype, round_to_dtype

__all__ = [
    "ACCURATE_ULPS", "MATCH_ULPS", "DOMAIN", "PROFILES", "check_claims", "check_callable",
    "fp_results_for_report", "Reference",
]

DOMAIN = LOG_PROB_DOMAIN
# A careful float64 evaluation of these estimators (a handful of correctly rounded
# operations on non-cancelling terms) stays within about 2 ulps; float32 and the 16-bit
# dtypes computed in float64 and rounded once are within 0.5 ulp.  4 leaves room for
# libm's exp/expm1/log1p (<= 1 ulp each) and nothing for cancellation.
ACCURATE_ULPS = 4.0
# fp_matches_expression: the value must be within MATCH_ULPS ulps of f(t') for some t'
# within MATCH_ULPS units of roundoff of t (checked at t' = t(1 -+ delta) and t).  That
# admits an evaluation of the right formula in the dtype itself (a dozen roundings, and
# the rounding of logp - logq amplified by the condition number), and rejects another
# formula or a cancellation that loses every digit.
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

PROFILES = ("dev", "ci", "thorough")
# max_examples: hypothesis examples per estimator and dtype; grid: anchors and deltas of
# the dense grid; exhaustive: enumerate all 16-bit pairs for fp_nonnegative.
_PROFILE_SIZES = {
    "dev": {"max_examples": 60, "anchors": 12, "deltas": 16, "exhaustive": False},
    "ci": {"max_examples": 250, "anchors": 24, "deltas": 40, "exhaustive": False},
    "thorough": {"max_examples": 3000, "anchors": 60, "deltas": 120, "exhaustive": True},
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


@dataclass
class _ClaimTally:
    checked: int = 0
    failures: list = field(default_factory=list)  # (severity, logp, logq, value, exact, note)


@dataclass
class _DtypeRun:
    """The evidence gathered for one estimator in one dtype."""

    info: DtypeInfo
    numeric: object
    reference: Reference
    accurate_ulps: float
    tallies: dict = field(default_factory=lambda: {c: _ClaimTally() for c in FLOATING})
    sources: dict = field(default_factory=lambda: {"grid": 0, "hypothesis": 0, "exhaustive": 0})
    undefined: int = 0
    worst_ulps: float = 0.0
    worst_input: tuple | None = None
    error: str | None = None
    exhaustive_claims: tuple = ()
    # what the deterministic grid alone found: reports quote these, so that they do not
    # change with the hypothesis version (its derandomized examples do)
    grid_failures: dict = field(default_factory=dict)
    grid_undefined: int = 0

    def evaluate(self, logp, logq) -> np.ndarray:
        np_dtype = numpy_dtype(self.info.name)
        logp = np.asarray(logp, dtype=np.float64).astype(np_dtype)
        logq = np.asarray(logq, dtype=np.float64).astype(np_dtype)
        with np.errstate(all="ignore"):
            out = np.asarray(self.numeric(logp, logq))
        if out.shape != logp.shape:
            raise ValueError(f"returned shape {out.shape} for inputs of shape {logp.shape}")
        return out.astype(np.float64)

    def _within(self, value, exact, ulps):
        """(accepted, error in ulps) of ``value`` against the exact f."""
        info = self.info
        if abs(exact) > info.max_finite:
            ok = value in (math.copysign(math.inf, exact), math.copysign(info.max_finite, exact))
            return ok, (0.0 if ok else math.inf)
        if not math.isfinite(value):
            return False, math.inf
        error = abs(mpmath.mpf(value) - exact)
        in_ulps = float(error / ulp(exact, info))
        return (in_ulps <= ulps or error < info.smallest_normal), in_ulps

    def _matches(self, value, exact, log_ratio):
        ok, _ = self._within(value, exact, MATCH_ULPS)
        if ok or not math.isfinite(value) or abs(exact) > self.info.max_finite:
            return ok
        delta = MATCH_ULPS * self.info.unit_roundoff
        values = [exact]
        for factor in (1 - delta, 1 + delta):
            nearby = self.reference.at_log_ratio(log_ratio * factor)
            if nearby is not None:
                values.append(nearby)
        low, high = min(values), max(values)
        low -= MATCH_ULPS * ulp(low, self.info)
        high += MATCH_ULPS * ulp(high, self.info)
        return bool(low <= value <= high)

    def check_point(self, logp: float, logq: float, value: float) -> float:
        """Record the four claims at one input; returns the error in ulps (for target)."""
        tallies = self.tallies
        tallies["fp_nonnegative"].checked += 1
        if not value >= 0:
            severity = math.inf if math.isnan(value) else -value
            tallies["fp_nonnegative"].failures.append((severity, logp, logq, value, None, "negative or NaN"))
        log_ratio = mpmath.fsub(logp, logq, exact=True)
        exact = self.reference.at_log_ratio(log_ratio)
        if exact is None:
            self.undefined += 1
            return 0.0
        in_range = abs(exact) <= self.info.max_finite
        tallies["fp_finite"].checked += 1
        if in_range and not math.isfinite(value):
            tallies["fp_finite"].failures.append((1.0, logp, logq, value, exact, "not finite"))
        ok, in_ulps = self._within(value, exact, self.accurate_ulps)
        tallies["fp_accurate"].checked += 1
        if not ok:
            tallies["fp_accurate"].failures.append((in_ulps, logp, logq, value, exact, f"{in_ulps:.4g} ulps"))
        tallies["fp_matches_expression"].checked += 1
        if not ok and not self._matches(value, exact, log_ratio):
            tallies["fp_matches_expression"].failures.append(
                (in_ulps, logp, logq, value, exact, f"{in_ulps:.4g} ulps"))
        if self.worst_input is None or in_ulps > self.worst_ulps:
            self.worst_ulps, self.worst_input = in_ulps, (logp, logq)
        return in_ulps

    def check_batch(self, logp, logq, source):
        values = self.evaluate(logp, logq)
        for p, q, v in zip(logp.tolist(), logq.tolist(), values.tolist()):
            self.check_point(p, q, v)
        self.sources[source] += len(values)


def _grid(info: DtypeInfo, anchors: int, deltas: int):
    """Deterministic (logp, logq) pairs over DOMAIN, dense in the hard regions."""
    low, high = DOMAIN
    tiny = float(np.nextafter(numpy_dtype(info.name).type(0), numpy_dtype(info.name).type(1)).astype(np.float64))
    magnitudes = np.concatenate([
        np.geomspace(1e-30, -low, anchors), [tiny, 2 * tiny, 3 * tiny, float(info.smallest_normal), 1.0, -low],
        np.linspace(0, -low, anchors)])
    anchor_values = np.unique(np.clip(round_to_dtype(-magnitudes, info.name).astype(np.float64), low, high))
    steps = np.geomspace(1e-300, -low, deltas)
    steps = np.concatenate([-steps, steps, [0.0]])
    logq = np.repeat(anchor_values, len(steps))
    logp = np.clip(round_to_dtype(logq + np.tile(steps, len(anchor_values)), info.name).astype(np.float64), low, high)
    grid_p = np.repeat(anchor_values, len(anchor_values))
    grid_q = np.tile(anchor_values, len(anchor_values))
    pairs = np.unique(np.stack([np.concatenate([logp, grid_p, logq]), np.concatenate([logq, grid_q, logp])], 1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


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

    search()


def _finite_score(score: float) -> float:
    return 1e300 if math.isnan(score) else max(min(score, 1e300), -1e300)


def _all_values(info: DtypeInfo) -> np.ndarray:
    """Every value of a 16-bit dtype in DOMAIN, -0.0 included, as float64."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(numpy_dtype(info.name)).astype(np.float64)
    keep = np.isfinite(values) & (values >= DOMAIN[0]) & (values <= DOMAIN[1])
    return values[keep]  # 0.0 and -0.0 are distinct bit patterns and both kept


def _exhaustive_nonnegative(run: _DtypeRun):
    """fp_nonnegative over every pair of the 16-bit domain (no reference needed)."""
    values = _all_values(run.info)
    tally = run.tallies["fp_nonnegative"]
    chunk = max(1, 4_000_000 // len(values))
    for start in range(0, len(values), chunk):
        logq = np.repeat(values[start:start + chunk], len(values))
        logp = np.tile(values, min(chunk, len(values) - start))
        out = run.evaluate(logp, logq)
        bad = ~(out >= 0)
        tally.checked += len(out)
        run.sources["exhaustive"] += len(out)
        if bad.any():
            index = np.flatnonzero(bad)
            worst = index[np.argmax(np.where(np.isnan(out[index]), np.inf, -out[index]))]
            value = float(out[worst])
            severity = math.inf if math.isnan(value) else -value
            tally.failures.append((severity, float(logp[worst]), float(logq[worst]), value, None,
                                   f"{len(index)} negative or NaN in this chunk"))
    run.exhaustive_claims = ("fp_nonnegative",)
    return len(values)


def _recheck(run: _DtypeRun, claim: str, logp: float, logq: float):
    """The value of the implementation called on the one input, if the claim still fails."""
    value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
    probe = _DtypeRun(run.info, run.numeric, run.reference, run.accurate_ulps)
    probe.check_point(logp, logq, value)
    failed = probe.tallies[claim].failures
    return (value, failed[0][4]) if failed else None


def _verdict(run: _DtypeRun, claim: str, profile: str, values_per_dtype: int | None) -> Verdict:
    tally = run.tallies[claim]
    name = run.info.name
    if run.error is not None:
        return Verdict(UNDECIDED, "implementation failed", run.error)
    if tally.failures:
        on_grid = run.grid_failures.get(claim, 0)
        # the grid's worst failures first (deterministic), then hypothesis's
        ordered = (sorted(tally.failures[:on_grid], key=lambda f: (-f[0], f[1], f[2]))[:20]
                   + sorted(tally.failures[on_grid:], key=lambda f: (-f[0], f[1], f[2]))[:20])
        found = (f"{on_grid} of {run.sources['grid']} grid inputs fail" if on_grid
                 else f"hypothesis (profile {profile}) found failing inputs; the grid of {run.sources['grid']} did not")
        for severity, logp, logq, _, _, note in ordered:
            rechecked = _recheck(run, claim, logp, logq)
            if rechecked is None:
                continue
            value, exact = rechecked
            if exact is None:
                exact = run.reference.at(logp, logq)
            counterexample = {"logp": logp, "logq": logq, "dtype": name, "value": _json_float(value),
                              "exact": _exact_json(exact) if exact is not None else None}
            return Verdict(REFUTED, f"counterexample ({note})", found, counterexample)
        return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                       f"{len(tally.failures)} failing input(s) in batches; none fails when called alone")
    sources = run.sources
    undefined = (f"; no reference at {run.grid_undefined} grid input(s) (f undefined there, or mpmath did not "
                 "converge), skipped" if run.grid_undefined else "")
    if claim in run.exhaustive_claims:
        return Verdict(PROVED, "exhaustive enumeration",
                       f"all {sources['exhaustive']} (logp, logq) pairs of {name} in [{DOMAIN[0]:g}, {DOMAIN[1]:g}] "
                       f"({values_per_dtype} values each, -0.0 included)")
    if tally.checked == 0:
        return Verdict(UNDECIDED, "no input could be checked", f"f undefined at every input tried{undefined}")
    return Verdict(TESTED, "dense grid + hypothesis",
                   f"inputs in [{DOMAIN[0]:g}, {DOMAIN[1]:g}]: a grid of {sources['grid']} pairs "
                   f"(log-spaced anchors x log-spaced log-ratio steps from 1e-300 to 60, both signs) and "
                   f"{_PROFILE_SIZES[profile]['max_examples']} hypothesis examples (profile {profile}, targeting "
                   f"the worst error); no failure{undefined}")


def _run_dtype(numeric, reference, accurate_ulps, name, profile, claims) -> tuple[_DtypeRun, int | None]:
    info = DTYPE_INFO[name]
    sizes = _PROFILE_SIZES[profile]
    run = _DtypeRun(info, numeric, reference, accurate_ulps)
    values_per_dtype = None
    try:
        logp, logq = _grid(info, sizes["anchors"], sizes["deltas"])
        run.check_batch(logp, logq, "grid")
        run.grid_failures = {claim: len(tally.failures) for claim, tally in run.tallies.items()}
        run.grid_undefined = run.undefined
        _hypothesis_search(run, profile)
        if sizes["exhaustive"] and name in ("float16", "bfloat16") and "fp_nonnegative" in claims:
            values_per_dtype = _exhaustive_nonnegative(run)
    except Exception as error:  # noqa: BLE001 - a broken implementation is a finding, reported as data
        run.error = f"{type(error).__name__}: {error}"[:300]
    return run, values_per_dtype


def _check_profile(profile):
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


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
    accurate_ulps = float(estimator.fp_ulps) if estimator.fp_ulps is not None else ACCURATE_ULPS
    # every call of the implementation goes through NumPy arrays of the dtype; a torch
    # implementation gets exact tensors of that dtype (verify.frameworks)
    numeric = as_numpy_callable(estimator.numeric, getattr(estimator, "framework", "numpy"))
    runs = {}
    for name in DTYPES:
        if name in by_dtype:
            runs[name] = _run_dtype(numeric, reference, accurate_ulps, name, profile, by_dtype[name])
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
        verdicts[claim] = parts[0] if len(parts) == 1 else _combine(parts)
    return verdicts


def _combine(parts: list[Verdict]) -> Verdict:
    for wanted in (REFUTED, UNDECIDED, TESTED, PROVED):
        for part in parts:
            if part.verdict == wanted:
                return Verdict(wanted, part.method, "; ".join(p.detail for p in parts), part.counterexample)
    raise AssertionError("no verdict")


def fp_results_for_report(estimator, profile: str = "ci", dtypes=DTYPES) -> dict:
    """Plain data for reports: verdicts per claim and dtype, input counts, worst errors."""
    claims = [f"{c}@{d}" for d in dtypes for c in FLOATING]
    runs = _runs(estimator, claims, profile)
    result = {"estimator": estimator.name, "profile": profile, "domain": list(DOMAIN),
              "accurate_ulps": float(estimator.fp_ulps) if estimator.fp_ulps is not None else ACCURATE_ULPS,
              "match_ulps": MATCH_ULPS, "dtypes": {}}
    for name, (run, values_per_dtype) in runs.items():
        result["dtypes"][name] = {
            "claims": {c: _verdict(run, c, profile, values_per_dtype).as_json() for c in FLOATING},
            "inputs": dict(run.sources),
            "undefined": run.undefined,
            "worst_error_ulps": run.worst_ulps if math.isfinite(run.worst_ulps) else repr(run.worst_ulps),
            "worst_input": list(run.worst_input) if run.worst_input else None,
        }
    return result


def check_callable(fn, expr, *, claims=FLOATING, dtypes=DTYPES, profile: str = "ci",
                   fp_ulps: float | None = None, framework: str = "numpy") -> dict[str, Verdict]:
    """``check_claims`` for any callable ``fn(logp, logq)`` taking and returning array-likes
    (NumPy arrays of the dtype are passed; the result goes through ``np.asarray``), or,
    with ``framework="torch"``, torch tensors of the exact dtype."""
    from estimators import Estimator

    if not callable(fn):
        raise UsageError(f"expected a callable implementation, got {type(fn).__name__}")
    check_framework(framework)
    as_expression(expr)
    estimator = Estimator(name=getattr(fn, "__name__", "implementation"), expr=expr,
                          numeric=fn, fp_ulps=fp_ulps, framework=framework)
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
