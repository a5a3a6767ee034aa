"""One estimator in one dtype: calling its implementation (and enforcing the dtype
contract), judging one input exactly against the reference, and the evidence gathered."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np

from verify.core.claims import FLOATING
from verify.layers.floating.dtype_info import DtypeInfo, ulp
from verify.layers.floating.enclosures import Enclosures
from verify.layers.floating.exact_gradient import limit_at_minus_infinity
from verify.layers.floating.reference import Reference
from verify.layers.floating.tolerances import DOMAIN, MATCH_ULPS, match_slack
from verify.strategies import numpy_dtype


class ReturnedDtype(Exception):
    """The implementation returned another dtype (or a list) than it was given."""

    def __init__(self, logp, logq, expected, returned):
        super().__init__(logp, logq, expected, returned)
        self.logp, self.logq, self.expected, self.returned = logp, logq, expected, returned

    def __str__(self):
        return (f"returned {self.returned} for {self.expected} inputs: an implementation returns the dtype it is "
                "given (docs/claims.md, fp_returns_input_dtype); an upcast hides that dtype's own rounding")


@dataclass
class ClaimTally:
    checked: int = 0
    failures: list = field(default_factory=list)  # (severity, logp, logq, value, exact, note)


def numpy_implementation(estimator):
    """The NumPy-level callable of an estimator's implementation: arrays of one dtype in,
    an array out.  Every call of an implementation in this layer (grid, hypothesis,
    exhaustive enumeration, re-checks, the pytest plugin) goes through here."""
    from verify.core.frameworks import as_numpy_callable

    # a torch implementation gets exact tensors of the dtype (verify.core.frameworks)
    return as_numpy_callable(estimator.numeric, getattr(estimator, "framework", "numpy"))


@dataclass
class DtypeRun:
    """The evidence gathered for one estimator in one dtype."""

    info: DtypeInfo
    numeric: object  # the NumPy-level callable (``numpy_implementation``)
    reference: Reference
    accurate_ulps: float
    atol: float = 0.0
    tallies: dict = field(default_factory=lambda: {c: ClaimTally() for c in FLOATING})
    sources: dict = field(default_factory=lambda: {"grid": 0, "hypothesis": 0, "exhaustive": 0})
    undefined: int = 0
    worst_ulps: float = 0.0
    worst_input: tuple | None = None
    worst_abs: float = 0.0
    worst_abs_input: tuple | None = None
    error: str | None = None
    exhaustive: object = None  # an ExhaustiveTally for 16-bit dtypes
    exhaustive_claims: tuple = ()
    sweep_domain: tuple | None = None  # the domain that sweep enumerated
    # what the deterministic grid alone found: reports quote these, so that they do not
    # change with the hypothesis version (its derandomized examples do)
    grid_failures: dict = field(default_factory=dict)
    grid_undefined: int = 0
    grid_parts: dict = field(default_factory=dict)
    returns: object = None  # the dtype the implementation returns, when not its input's (a library's float32)
    dtype_problem: object = None  # a ReturnedDtype: the dtype contract broken
    domain: tuple = DOMAIN  # the domain of the float32/float64 search (the sweep's is sweep_domain)
    masked: int = 0  # pairs with logp = -inf judged (a domain reaching -inf)
    never_sampled: int = 0  # pairs with logq = -inf: no claim there

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
        masked = logp == -math.inf  # r = 0 (a masked token): f(0), the limit (docs/claims.md)
        exact = limit_at_minus_infinity(self.reference.expression, self.reference.log_ratio) if masked else \
            self.reference.at(logp, logq)
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
        slack = 0.0 if masked else float(match_slack(np.array([logp]), np.array([logq]), self.enclosures().derivative,
                                                     float(info.unit_roundoff), MATCH_ULPS)[0])
        outcome["fp_matches_expression"] = (bool(error <= MATCH_ULPS * spacing + mpmath.mpf(slack) or tiny), in_ulps)
        outcome["_error"] = (in_ulps, float(error))
        return outcome

    def enclosures(self) -> Enclosures:
        return Enclosures.of(self.reference)

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
        self.masked += int(np.count_nonzero(np.isneginf(logp)))
        values = self.evaluate(logp, logq)
        for p, q, v in zip(logp.tolist(), logq.tolist(), values.tolist()):
            self.check_point(p, q, v)
        self.sources[source] += len(values)
