"""The backward-pass claims of one implementation in one dtype: ``fp_grad_finite`` and
``fp_grad_accurate`` (docs/claims.md), on the gradient with respect to the policy
log-prob logq that the implementation's own autograd computes.

The gradient comes from torch autograd (``verify.core.frameworks.as_numpy_gradient``)
for a torch implementation, or from the estimator's ``numeric_grad`` (a NumPy
emulation of it); a NumPy implementation without one has none, and both claims are
``undecided`` with the method ``NOT_APPLICABLE``.  The exact gradient is -g'(t)
(``exact_gradient.py``).  float16 and bfloat16: every pair (``backward_sweep.py``);
float32 and float64: the value claims' grid (``grid.py``) and a hypothesis search
targeting the worst error.  Every counterexample is a pair where a fresh call of the
gradient on that pair alone fails again."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np

from verify.core.claims import BACKWARD, NOT_APPLICABLE, PROVED, REFUTED, TESTED, UNDECIDED, Verdict
from verify.layers.floating.backward_sweep import GRADIENT_UNKNOWN
from verify.layers.floating.dtype_info import DtypeInfo, ulp
from verify.layers.floating.dtype_run import ReturnedDtype
from verify.layers.floating.exact_gradient import ExactGradient
from verify.strategies import numpy_dtype

GRID_EXAMPLES_KEPT = 20  # failing grid (and hypothesis) inputs re-checked, worst first


def gradient_callable(estimator):
    """The NumPy-level gradient of an estimator's implementation with respect to logq:
    torch autograd for a torch implementation, else its ``numeric_grad``; None: none."""
    if getattr(estimator, "framework", "numpy") == "torch":
        from verify.core.frameworks import as_numpy_gradient

        return as_numpy_gradient(estimator.numeric, "torch")
    return getattr(estimator, "numeric_grad", None)


def not_applicable(claims) -> dict[str, Verdict]:
    """The verdicts of backward claims for an implementation with no autograd: never a pass."""
    return {claim: Verdict(UNDECIDED, NOT_APPLICABLE) for claim in claims}


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _exact_json(exact):
    as_float = float(exact)
    if math.isfinite(as_float) and (as_float != 0 or exact == 0) and (abs(as_float) >= 2.2250738585072014e-308
                                                                      or exact == 0):
        return as_float
    return repr(as_float) if math.isinf(as_float) else mpmath.nstr(exact, 17)


def _accepts(value: float, exact, info: DtypeInfo, ulps: float, atol: float):
    """(accepted, error in ulps) of a gradient value against one exact gradient."""
    if abs(exact) > info.max_finite:
        ok = value in (math.copysign(math.inf, exact), math.copysign(info.max_finite, exact))
        return ok, 0.0 if ok else math.inf
    if not math.isfinite(value):
        return False, math.inf
    error = abs(mpmath.mpf(value) - exact)
    spacing = ulp(exact, info)
    within = error <= ulps * spacing or error < info.smallest_normal or error <= atol
    return bool(within and not value * exact < 0), float(error / spacing)


def gradient_outcome(value: float, low, high, info: DtypeInfo, ulps: float, atol: float) -> dict:
    """Both claims at one pair: {claim: (holds, severity)} and "_ulps", the error in ulps.
    [low, high]: the exact gradient (low == high), or at a kink the two one-sided
    derivatives: a finite value is required when both fit the dtype, and the value is
    accurate when it lies between them or within the budget of one of them."""
    fits = max(abs(low), abs(high)) <= info.max_finite
    finite_ok = math.isfinite(value) or not fits
    candidates = [low] if low == high else [low, high]
    if math.isfinite(value) and low < value < high:
        candidates.append(mpmath.mpf(value))
    judged = [_accepts(value, exact, info, ulps, atol) for exact in candidates]
    accurate_ok = any(ok for ok, _ in judged)
    in_ulps = min(error for _, error in judged)
    return {"fp_grad_finite": (finite_ok, math.inf if math.isnan(value) else 1.0),
            "fp_grad_accurate": (accurate_ok, math.inf if math.isnan(value) else in_ulps), "_ulps": in_ulps}


@dataclass
class GradientRun:
    """The evidence for the backward claims of one implementation in one dtype."""

    info: DtypeInfo
    gradient: object  # NumPy (logp, logq) -> the gradient with respect to logq, logq's dtype
    exact: ExactGradient
    accurate_ulps: float
    atol: float
    domain: tuple
    failures: dict = field(default_factory=lambda: {c: [] for c in BACKWARD})  # (severity, logp, logq)
    checked: int = 0
    undefined: int = 0
    sources: dict = field(default_factory=lambda: {"grid": 0, "hypothesis": 0, "exhaustive": 0})
    grid_failures: dict = field(default_factory=dict)
    worst: tuple = (0.0, None, None)  # (error in ulps, logp, logq)
    sweep: object = None  # the ExhaustiveTally of a 16-bit enumeration
    masked: int = 0  # pairs with logp = -inf checked (the domain reaches -inf)
    never_sampled: int = 0  # pairs with logq = -inf: no claim there
    error: str | None = None
    dtype_problem: object = None

    def evaluate(self, logp, logq) -> np.ndarray:
        """The gradient at inputs rounded into the dtype, as float64."""
        np_dtype = numpy_dtype(self.info.name)
        return self.evaluate_exact(np.asarray(logp, dtype=np.float64).astype(np_dtype),
                                   np.asarray(logq, dtype=np.float64).astype(np_dtype))

    def evaluate_exact(self, logp, logq) -> np.ndarray:
        """The gradient at inputs already in the dtype: an array of logq's dtype (the
        dtype contract, as for values), returned as float64."""
        with np.errstate(all="ignore"):
            raw = self.gradient(logp, logq)
        if not isinstance(raw, np.ndarray) or raw.dtype != logq.dtype:
            returned = str(raw.dtype) if isinstance(raw, np.ndarray) else type(raw).__name__
            raise ReturnedDtype(float(logp.flat[0]), float(logq.flat[0]), str(logq.dtype), returned)
        if raw.shape != logq.shape:
            raise ValueError(f"the gradient has shape {raw.shape} for inputs of shape {logq.shape}")
        return raw.astype(np.float64)

    def judge(self, logp: float, logq: float, value: float) -> dict:
        """Both claims at one pair, exactly; "_undefined" where the exact gradient is."""
        found = self.exact.at(logp, logq)
        if found is None:
            return {"_undefined": True}
        outcome = gradient_outcome(value, found[0], found[1], self.info, self.accurate_ulps, self.atol)
        outcome["_exact"] = found
        return outcome

    def check_batch(self, logp, logq, source: str):
        """Judge a batch pair by pair (the float32/float64 search); logq = -inf is skipped."""
        keep = ~np.isneginf(np.asarray(logq, dtype=np.float64))
        self.never_sampled += int(np.count_nonzero(~keep))
        logp, logq = np.asarray(logp, dtype=np.float64)[keep], np.asarray(logq, dtype=np.float64)[keep]
        if not len(logp):
            return []
        values = self.evaluate(logp, logq)
        errors = [self.check_point(p, q, v) for p, q, v in zip(logp.tolist(), logq.tolist(), values.tolist())]
        self.sources[source] += len(values)
        return errors

    def check_point(self, logp: float, logq: float, value: float) -> float:
        outcome = self.judge(logp, logq, value)
        if outcome.get("_undefined"):
            self.undefined += 1
            return 0.0
        self.checked += 1
        if logp == -math.inf:
            self.masked += 1
        for claim in BACKWARD:
            ok, severity = outcome[claim]
            if not ok:
                self.failures[claim].append((severity, logp, logq))
        in_ulps = outcome["_ulps"]
        if self.worst[1] is None or in_ulps > self.worst[0]:
            self.worst = (in_ulps, logp, logq)
        return in_ulps


def gradient_search(run: GradientRun, profile: str, low: float, high: float):
    """hypothesis over (logp, logq) in [low, high] (finite, in the dtype), steered to the
    worst gradient error (as the value claims' search is to the worst value error)."""
    from hypothesis import given, settings, target

    from verify.layers.floating.local_constants import without_local_constants
    from verify.strategies import log_prob_pairs

    @settings(settings.get_profile(f"kl_verify_{profile}"))
    @given(log_prob_pairs(dtype=run.info.name, low=low, high=high))
    def search(pair):
        (in_ulps,) = run.check_batch(np.array([pair[0]]), np.array([pair[1]]), "hypothesis") or (0.0,)
        target(1e300 if math.isnan(in_ulps) else min(in_ulps, 1e300), label="gradient error in ulps")

    with without_local_constants():
        search()


# ------------------------------------------------------------------ verdicts


def _recheck(run: GradientRun, claim: str, logp: float, logq: float):
    """(value, exact) of the gradient called on the one pair, if the claim still fails."""
    value = float(run.evaluate(np.array([logp]), np.array([logq]))[0])
    outcome = run.judge(logp, logq, value)
    if claim not in outcome or outcome[claim][0]:
        return None
    return value, outcome["_exact"]


def counterexample(run: GradientRun, claim: str, candidates):
    """The first candidate (severity, logp, logq) that fails again when called alone."""
    for _, logp, logq in candidates:
        rechecked = _recheck(run, claim, logp, logq)
        if rechecked is None:
            continue
        value, (low, high) = rechecked
        exact = _exact_json(low) if low == high else [_exact_json(low), _exact_json(high)]
        return {"logp": _json_float(logp), "logq": _json_float(logq), "dtype": run.info.name,
                "gradient": _json_float(value), "exact_gradient": exact,
                **({"at_kink": True} if low != high else {})}
    return None


def _contract_verdict(run: GradientRun) -> Verdict:
    problem = run.dtype_problem
    try:
        run.evaluate(np.array([problem.logp]), np.array([problem.logq]))
    except ReturnedDtype as again:
        example = {"logp": again.logp, "logq": again.logq, "dtype": run.info.name, "returned": again.returned}
        return Verdict(REFUTED, "dtype contract (fp_returns_input_dtype)", f"the gradient {again}", example)
    except Exception as error:  # noqa: BLE001
        return Verdict(UNDECIDED, "implementation failed", f"{type(error).__name__}: {error}"[:300])
    return Verdict(UNDECIDED, "dtype contract broken in batches only", str(problem))


def _worst_text(run: GradientRun) -> str:
    ulps, logp, logq = run.worst
    if logp is None:
        return ""
    return f"; worst gradient error {ulps:.4g} ulps at (logp, logq) = ({logp!r}, {logq!r})"


def _domain_text(run: GradientRun) -> str:
    low, high = run.domain
    return f"[{low:g}, {high:g}]"


def _edges_text(run: GradientRun) -> str:
    parts = []
    if run.masked:
        parts.append(f"{run.masked:,} pair(s) with logp = -inf (r = 0: the limit)")
    if run.never_sampled:
        parts.append(f"{run.never_sampled:,} pair(s) with logq = -inf skipped (never sampled)")
    if run.undefined:
        parts.append(f"exact gradient undefined at {run.undefined:,} pair(s), skipped")
    return "; " + "; ".join(parts) if parts else ""


def gradient_verdict(run: GradientRun, claim: str, profile: str) -> Verdict:
    """The verdict of one backward claim (a base name) in the run's dtype."""
    if run.dtype_problem is not None:
        return _contract_verdict(run)
    if run.error is not None:
        return Verdict(UNDECIDED, "implementation failed", run.error)
    name = run.info.name
    if run.sweep is not None:
        found = run.sweep
        where = (f"all {found.pairs:,} (logp, logq) pairs of {name} in {_domain_text(run)} "
                 f"({found.values_per_dtype:,} values each{', -0.0 included' if run.domain[1] >= 0 else ''}), "
                 "the gradient by the implementation's "
                 f"autograd; {found.settled_by_mpmath:,} pair(s) settled by mpmath where the float64 enclosure of "
                 f"the exact gradient straddled a tolerance{_edges_text(run)}{_worst_text(run)}")
        failing = found.failures.get(claim, 0)
        unsettled = found.unsettled.get(claim, 0)
        if failing:
            example = counterexample(run, claim, found.examples.get(claim, []))
            if example is None:
                return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                               f"{failing:,} failing pair(s) in chunks; none fails when called alone; {where}")
            count = (f"{failing:,} of {found.pairs:,} pairs fail" if not unsettled else
                     f"at least {failing:,} of {found.pairs:,} pairs fail ({unsettled:,} not settled)")
            return Verdict(REFUTED, "exhaustive enumeration", f"{count}; {where}", example)
        if unsettled:
            return Verdict(UNDECIDED, "exhaustive enumeration, not settled",
                           f"{unsettled:,} pair(s) neither the float64 enclosure nor mpmath (at most "
                           f"{GRADIENT_UNKNOWN:,} pairs) settled; no failure among the others; {where}")
        return Verdict(PROVED, "exhaustive enumeration", f"no failure: {where}")
    failures = run.failures[claim]
    on_grid = run.grid_failures.get(claim, 0)
    if failures:
        ordered = (sorted(failures[:on_grid], key=lambda f: (-f[0], f[1], f[2]))[:GRID_EXAMPLES_KEPT]
                   + sorted(failures[on_grid:], key=lambda f: (-f[0], f[1], f[2]))[:GRID_EXAMPLES_KEPT])
        found = (f"{on_grid} of {run.sources['grid']} grid inputs fail" if on_grid
                 else f"hypothesis (profile {profile}) found failing inputs; the grid of {run.sources['grid']} did not")
        example = counterexample(run, claim, ordered)
        if example is None:
            return Verdict(UNDECIDED, "failures did not re-check on single inputs",
                           f"{len(failures)} failing input(s) in batches; none fails when called alone")
        return Verdict(REFUTED, "counterexample (gradient)", found + _worst_text(run), example)
    if run.checked == 0:
        return Verdict(UNDECIDED, "no input could be checked", f"the exact gradient is undefined at every input "
                       f"tried{_edges_text(run)}")
    return Verdict(TESTED, "dense grid + hypothesis",
                   f"{run.checked:,} inputs in {_domain_text(run)}: a grid of {run.sources['grid']:,} pairs and "
                   f"{run.sources['hypothesis']:,} hypothesis examples (profile {profile}, targeting the worst "
                   f"gradient error); no failure{_edges_text(run)}{_worst_text(run)}")
