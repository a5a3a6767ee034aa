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

float32 and float64: a deterministic grid by families (``grid.py``) and hypothesis
(``verify.strategies.log_prob_pairs``) with ``hypothesis.target`` on the worst error;
the reference is mpmath at the exact log ratio, with the working precision doubled until
two evaluations agree to 2**-80.  Verdicts: ``tested`` (with the number of inputs) or
``refuted``.  Every verdict carries the worst error found (ulps and absolute, with
inputs).

The modules, in the order a check runs: ``checks`` (the entry points), ``dtype_info``
and ``tolerances`` (what the claims mean per dtype), ``reference`` and ``enclosures``
(the exact f), ``dtype_run`` (calling the implementation, judging one input),
``grid`` and ``search`` (float32/float64), ``sixteen_bit`` and ``exhaustive`` (the
16-bit sweep, with ``tally``, ``vectorised``, ``kernel`` and ``kernel_source``),
the backward-pass claims ``fp_grad_finite`` and ``fp_grad_accurate`` (``backward``, with
``exact_gradient``: the exact gradient -g'(t) with respect to logq, ``backward_sweep`` and
``backward_kernel``: every 16-bit pair, the gradient by the implementation's autograd),
``verdicts``.  ``bare_function`` decides the claims of a torch function with no formula
(``fp_agrees_float64``: against the function itself evaluated in float64).  This file
only re-exports.
"""
from __future__ import annotations

from verify.core.claims import PROFILES
from verify.layers.floating.checks import check_callable, check_claims, fp_results_for_report
from verify.layers.floating.bare_function import BARE_CLAIMS, FunctionVerdicts, sweep_function
from verify.layers.floating.dtype_info import DTYPE_INFO, SIXTEEN_BIT, DtypeInfo, ulp
from verify.layers.floating.reference import Reference
from verify.layers.floating.tolerances import ACCURATE_ULPS, DOMAIN, MATCH_ULPS

__all__ = [
    "ACCURATE_ULPS", "MATCH_ULPS", "DOMAIN", "PROFILES", "SIXTEEN_BIT", "check_claims",
    "check_callable", "fp_results_for_report", "Reference", "DtypeInfo", "DTYPE_INFO", "ulp",
    "BARE_CLAIMS", "FunctionVerdicts", "sweep_function",
]
