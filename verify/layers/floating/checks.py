"""The layer's entry points: the claims of an estimator (or of any callable) per dtype,
and the plain data the reports quote."""
from __future__ import annotations

import math
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from verify.core.claims import BACKWARD, DTYPES, FLOATING, Verdict, check_profile
from verify.core.expression import as_expression
from verify.errors import UsageError
from verify.layers.floating.dtype_info import DTYPE_INFO, SIXTEEN_BIT
from verify.layers.floating.dtype_run import DtypeRun, ReturnedDtype, numpy_implementation
from verify.layers.floating.backward import GradientRun, gradient_callable, gradient_search, gradient_verdict, \
    not_applicable
from verify.layers.floating.backward_sweep import sweep_gradient
from verify.layers.floating.exact_gradient import ExactGradient
from verify.layers.floating.grid import finite_bounds, grid_pairs
from verify.layers.floating.reference import Reference
from verify.layers.floating.search import PROFILE_SIZES, hypothesis_search
from verify.layers.floating.sixteen_bit import sweep_processes, sweep_sixteen_bit
from verify.layers.floating import tolerances
from verify.layers.floating.tolerances import DOMAIN, MATCH_ULPS, estimator_tolerances
from verify.layers.floating.verdicts import verdict_in_dtype, worst_error
from verify.strategies import numpy_dtype


def run_dtype(numeric, reference, accurate_ulps, atol, name, profile, claims,
              returns=None, workers: int | None = None, domain=None) -> tuple[DtypeRun, int | None]:
    """The evidence for ``claims`` (base names) in one dtype, and its number of values
    when it was enumerated (16-bit, swept by ``workers`` processes; None: every core).
    ``domain``: (LO, HI) as ``verify.api`` checked it (None: the default domain)."""
    info = DTYPE_INFO[name]
    sizes = PROFILE_SIZES[profile]
    run = DtypeRun(info, numeric, reference, accurate_ulps, atol, returns=returns,
                   domain=tuple(domain) if domain is not None else DOMAIN)
    values_per_dtype = None
    try:
        if name in SIXTEEN_BIT:
            # the default domain is read when the sweep starts (the test suite narrows it)
            values_per_dtype = sweep_sixteen_bit(run, claims, domain if domain is not None
                                                 else tolerances.SWEEP_DOMAIN, workers)
        else:
            families = grid_pairs(info, sizes, run.domain)
            for family, (logp, logq) in families.items():
                run.check_batch(logp, logq, "grid")
                run.grid_parts[family] = len(logp)
            run.grid_failures = {claim: len(tally.failures) for claim, tally in run.tallies.items()}
            run.grid_undefined = run.undefined
            hypothesis_search(run, profile, finite_bounds(info, domain) if domain is not None else None)
    except ReturnedDtype as error:
        run.dtype_problem = error
    except BrokenProcessPool:
        run.error = ("a sweep worker running the implementation ended abruptly (exit(), os._exit(), a signal "
                     "or out of memory)")
    except Exception as error:  # noqa: BLE001 - a broken implementation is a finding, reported as data
        run.error = f"{type(error).__name__}: {error}"[:300]
    return run, values_per_dtype


def runs_by_dtype(estimator, claims_by_dtype: dict, profile, workers: int | None = None, domain=None):
    """{dtype: (run, values per dtype)} for {dtype: floating-point claims (base names)}."""
    check_profile(profile)
    if estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation")
    for dtype, claims in claims_by_dtype.items():
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        for claim in claims:
            if claim not in FLOATING:
                raise UsageError(f"{claim!r} is not a floating-point value claim")
    if domain is not None:
        for name in claims_by_dtype:
            finite_bounds(DTYPE_INFO[name], domain)  # a domain holding no value of the dtype: UsageError
    reference = Reference(estimator.expr)
    accurate_ulps, atol = estimator_tolerances(estimator)
    numeric = numpy_implementation(estimator)
    usage = getattr(estimator, "usage", None)
    returns = numpy_dtype(usage.computes_in) if usage is not None and usage.computes_in in DTYPES else None
    runs = {}
    for name in DTYPES:
        if name in claims_by_dtype:
            claims = list(dict.fromkeys(claims_by_dtype[name]))
            runs[name] = run_dtype(numeric, reference, accurate_ulps, atol, name, profile, claims, returns, workers,
                                   domain)
    return runs


def check_claims(estimator, claims, dtype: str, profile: str = "ci", *, workers: int | None = None,
                 domain=None) -> dict[str, Verdict]:
    """{claim: verdict} for floating-point claims (``fp_accurate``, ...) and backward-pass
    claims (``fp_grad_finite``, ``fp_grad_accurate``) of the estimator's implementation
    in one dtype.  ``workers``: processes per 16-bit sweep (None: every core; 1 where
    forking is not safe).  ``domain``: (LO, HI), checked by ``verify.api`` (None: the
    default, [-60, 0])."""
    claims = list(claims)
    values = [c for c in claims if c not in BACKWARD]
    backward = [c for c in claims if c in BACKWARD]
    verdicts = {}
    if values or not backward:
        run, values_per_dtype = runs_by_dtype(estimator, {dtype: values}, profile, workers, domain)[dtype]
        verdicts.update({claim: verdict_in_dtype(run, claim, profile, values_per_dtype) for claim in values})
    if backward:
        verdicts.update(backward_verdicts(estimator, backward, dtype, profile, workers, domain))
    return {claim: verdicts[claim] for claim in claims}


def backward_verdicts(estimator, claims, dtype: str, profile: str, workers: int | None = None, domain=None
                      ) -> dict[str, Verdict]:
    """The backward-pass claims (base names) in one dtype (``backward.py``): ``undecided``,
    not applicable, for an implementation with no autograd."""
    check_profile(profile)
    if estimator.numeric is None:
        raise UsageError(f"estimator {estimator.name!r} has no numeric implementation")
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    gradient = gradient_callable(estimator)
    if gradient is None:
        return not_applicable(claims)
    info = DTYPE_INFO[dtype]
    reference = Reference(estimator.expr)
    accurate_ulps, atol = estimator_tolerances(estimator)
    sixteen_bit = dtype in SIXTEEN_BIT
    chosen = tuple(domain) if domain is not None else (tolerances.SWEEP_DOMAIN if sixteen_bit else DOMAIN)
    finite_bounds(info, chosen)  # a domain holding no value of the dtype: UsageError
    # the exact gradient: of expr, or of the expression whose derivative is the library's
    # whole on-policy term (a weight that is 1 in value, a straight-through trick)
    backward = getattr(estimator, "backward_expr", None)
    exact = ExactGradient(reference if backward is None else Reference(backward))
    run = GradientRun(info, gradient, exact, accurate_ulps, atol, chosen)
    try:
        if sixteen_bit:
            run.sweep = sweep_gradient(run, chosen, sweep_processes(workers))
            run.undefined += run.sweep.undefined  # the verdict's text says how many were skipped
            run.sources["exhaustive"] = run.sweep.pairs
            _, logp, logq = run.sweep.worst_ulps
            if logp is not None:  # the worst error the enclosures ranked, recomputed exactly
                outcome = run.judge(logp, logq, float(run.evaluate(np.array([logp]), np.array([logq]))[0]))
                run.worst = (outcome.get("_ulps", 0.0), logp, logq)
        else:
            for logp, logq in grid_pairs(info, PROFILE_SIZES[profile], chosen).values():
                run.check_batch(logp, logq, "grid")
            run.grid_failures = {claim: len(found) for claim, found in run.failures.items()}
            gradient_search(run, profile, *finite_bounds(info, chosen))
    except ReturnedDtype as error:
        run.dtype_problem = error
    except BrokenProcessPool:
        run.error = ("a sweep worker running the gradient ended abruptly (exit(), os._exit(), a signal "
                     "or out of memory)")
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - a broken implementation is a finding, reported as data
        run.error = f"{type(error).__name__}: {error}"[:300]
    return {claim: gradient_verdict(run, claim, profile) for claim in claims}


def fp_results_for_report(estimator, profile: str = "ci", dtypes=DTYPES, *, workers: int | None = None) -> dict:
    """Plain data for reports: verdicts per claim and dtype, input counts, worst errors."""
    runs = runs_by_dtype(estimator, {d: list(FLOATING) for d in dtypes}, profile, workers)
    accurate_ulps, atol = estimator_tolerances(estimator)
    result = {"estimator": estimator.name, "profile": profile, "domain": list(DOMAIN),
              "accurate_ulps": accurate_ulps, "atol": atol, "match_ulps": MATCH_ULPS, "dtypes": {}}
    for name, (run, values_per_dtype) in runs.items():
        result["dtypes"][name] = {
            "claims": {c: verdict_in_dtype(run, c, profile, values_per_dtype).as_json() for c in FLOATING},
            "inputs": dict(run.sources),
            "undefined": run.undefined,
            "worst_error_ulps": run.worst_ulps if math.isfinite(run.worst_ulps) else repr(run.worst_ulps),
            "worst_input": list(run.worst_input) if run.worst_input else None,
            "worst_error": worst_error(run),
        }
    return result


def check_callable(fn, expr, dtype: str, *, claims=FLOATING, profile: str = "ci",
                   fp_ulps: float | None = None, fp_atol: float | None = None,
                   framework: str = "numpy", workers: int | None = None, domain=None,
                   numeric_grad=None) -> dict[str, Verdict]:
    """``check_claims`` in one dtype for any callable ``fn(logp, logq)`` taking and
    returning array-likes (NumPy arrays of the dtype are passed; the result goes through
    ``np.asarray``), or, with ``framework="torch"``, torch tensors of the exact dtype
    (whose autograd the backward claims check; ``numeric_grad``: a NumPy gradient)."""
    from estimators import Estimator
    from verify.core.frameworks import check_framework

    if not callable(fn):
        raise UsageError(f"expected a callable implementation, got {type(fn).__name__}")
    check_framework(framework)
    as_expression(expr)
    estimator = Estimator(name=getattr(fn, "__name__", "implementation"), expr=expr, numeric=fn, fp_ulps=fp_ulps,
                          fp_atol=fp_atol, framework=framework)
    if numeric_grad is not None:
        estimator = _with_gradient(estimator, numeric_grad)
    return check_claims(estimator, claims, dtype, profile=profile, workers=workers, domain=domain)


def _with_gradient(estimator, numeric_grad):
    """The estimator with a NumPy gradient, whether or not ``Estimator`` has the field yet."""
    from dataclasses import fields, replace

    if not callable(numeric_grad):
        raise UsageError(f"numeric_grad must be callable, got {type(numeric_grad).__name__}")
    if "numeric_grad" in {f.name for f in fields(estimator)}:
        return replace(estimator, numeric_grad=numeric_grad)
    object.__setattr__(estimator, "numeric_grad", numeric_grad)
    return estimator
