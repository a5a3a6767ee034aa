"""pytest plugin (entry point ``pytest11: kl_verify``): assert floating-point claims of
your own KL implementation in your own tests.

    def test_my_k3(kl_fp_claims):
        kl_fp_claims(my_k3, expr="(r - 1) - log(r)",
                     claims=["fp_nonnegative", "fp_accurate"], dtypes=["float32", "bfloat16"])

or, without the fixture, ``from verify.pytest_plugin import assert_fp_claims``.  The
implementation is any callable ``fn(logp, logq)`` that takes NumPy arrays of one dtype
(bfloat16 through ml_dtypes) and returns an array-like (``np.asarray`` is applied); with
``framework="torch"`` it takes and returns torch tensors of the exact dtype, and the
backward-pass claims (``fp_grad_finite``, ``fp_grad_accurate``: the gradient its autograd
gives with respect to logq) are asserted too unless ``claims`` says otherwise; a NumPy
``fn`` can bring its gradient as ``numeric_grad``.  ``domain=(LO, HI)`` widens the
domain (LO may be -inf).  ``--kl-verify-profile`` (dev, ci, thorough; default ci) sets
the search effort.

pytest loads this module in every run, so it imports nothing heavy until it is used.
"""
from __future__ import annotations

import pytest

from verify.core.claims import PROFILES

_PASSING = ("proved", "tested")


def pytest_addoption(parser):
    group = parser.getgroup("kl_verify", "kl-verify floating-point claims")
    group.addoption("--kl-verify-profile", default="ci", choices=PROFILES,
                    help="search profile for kl_fp_claims / assert_fp_claims (default: ci)")


def assert_fp_claims(fn, expr, claims=None, dtypes=("float64", "float32", "float16", "bfloat16"), *, profile="ci",
                     fp_ulps=None, fp_atol=None, framework="numpy", numeric_grad=None, domain=None):
    """Fail (AssertionError) unless every claim is proved or tested for ``fn`` against the
    estimator ``expr`` (a string in r); returns the verdicts by expanded claim name.
    ``claims=None``: the four value claims, and the two backward-pass claims for a torch
    ``fn`` (or with ``numeric_grad``).  float16 and bfloat16 are enumerated exhaustively
    (every input pair in [-60, 0]: about a minute per dtype and claim group for a NumPy
    implementation); ``fp_ulps``/``fp_atol`` widen fp_accurate and fp_grad_accurate.
    ``framework="torch"``: ``fn`` takes and returns torch tensors of the exact dtype.  A
    backward claim of an implementation with no autograd is undecided (not applicable):
    asking for it fails."""
    from verify.api import check_implementation

    if isinstance(claims, str) or isinstance(dtypes, str):
        raise TypeError("claims and dtypes are lists of names, not one string")
    options = {"fp_ulps": fp_ulps, "fp_atol": fp_atol, "framework": framework}
    if numeric_grad is not None:
        options["numeric_grad"] = numeric_grad
    if domain is not None:
        options["domain"] = domain
    # through the API: fn runs in an isolated worker (a hang, exit() or print cannot pass the test)
    verdicts = check_implementation(fn, expr, claims=list(claims) if claims is not None else None,
                                    dtypes=list(dtypes), profile=profile, **options)
    failed = {claim: v for claim, v in verdicts.items() if v.verdict not in _PASSING}
    if failed:
        lines = [f"{len(failed)} floating-point claim(s) of {getattr(fn, '__name__', fn)!s} "
                 f"for f(r) = {expr} do not hold:"]
        for claim, verdict in failed.items():
            lines.append(f"  {claim}: {verdict.verdict} ({verdict.method}) {verdict.detail}")
            if verdict.counterexample is not None:
                lines.append(f"    counterexample: {verdict.counterexample}")
            if verdict.worst is not None and "ulps_at" in verdict.worst:
                at = verdict.worst["ulps_at"]
                lines.append(f"    worst error: {verdict.worst['ulps']} ulps at logp={at['logp']}, logq={at['logq']}")
        raise AssertionError("\n".join(lines))
    return verdicts


@pytest.fixture
def kl_fp_claims(request):
    """``assert_fp_claims`` with the profile of ``--kl-verify-profile``."""
    profile = request.config.getoption("kl_verify_profile", default="ci")

    def check(fn, expr, claims=None, dtypes=("float64", "float32", "float16", "bfloat16"), *, fp_ulps=None,
              fp_atol=None, framework="numpy", numeric_grad=None, domain=None):
        return assert_fp_claims(fn, expr, claims, dtypes, profile=profile, fp_ulps=fp_ulps, fp_atol=fp_atol,
                                framework=framework, numeric_grad=numeric_grad, domain=domain)

    return check
