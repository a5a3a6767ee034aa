"""The public Python API: what the CLI, the runner, the reports, the pytest plugin and
your own code call (the one seam between them and the layers).

    import verify
    result = verify.check("k3", ["nonnegative", "unbiased_kl_qp"])
    result.verdicts["nonnegative"].verdict        # 'proved'
    verify.moments("k3", scipy.stats.t(3), scipy.stats.norm()).variance   # inf

Every result is a frozen dataclass with ``to_json()`` (the document ``--json`` prints,
with ``schema_version`` and ``kind``; schemas in ``verify/schemas/``).  Bad input raises
:class:`verify.UsageError` with the one-line message the CLI prints.  Heavy libraries
(sympy, scipy, mpmath, hypothesis, matplotlib) are imported inside the functions that
need them, so ``import verify`` stays cheap.

The modules: ``documents`` (JSON and schemas), ``inputs`` (targets, claims, options:
checked once), ``verdicts`` (check), ``moments_of_pair`` (moments), ``sequences`` and
``control_variate`` (sequence models; the control variate of one pair),
``expected_gradients`` (gradients, term_gradients), ``implementations`` (fuzz,
check_implementation), ``functions`` (fuzz_function: a library's own torch function),
``cells`` (the cells of ``verify all``), ``targets`` (the one loader of user files),
``isolation`` (where user code runs).
"""
from __future__ import annotations

from verify.api.documents import SCHEMA_KINDS, SCHEMA_VERSION, json_document, schema, validate
from verify.api.expected_gradients import GradientsResult, gradients, term_gradients
from verify.api.functions import FunctionFuzzResult, fuzz_function
from verify.api.implementations import FuzzResult, check_implementation, fuzz
from verify.api.inputs import (check_expect, check_profile, check_timeout, distribution_spec, function_of_r,
                               load_estimator, parse_claims, parse_dtypes, parse_modes, resolve_estimator)
from verify.api.moments_of_pair import MomentsResult, moments
from verify.api.sequences import SequencesResult, sequences
from verify.api.verdicts import CheckResult, check
from verify.core.claims import PROFILES


def __getattr__(name):
    """``GradientUndecided`` (raised by ``gradients`` and ``term_gradients``), loaded with
    the gradient layer on first use."""
    if name == "GradientUndecided":
        from verify.layers.gradients import GradientUndecided

        return GradientUndecided
    raise AttributeError(f"module 'verify.api' has no attribute {name!r}")


__all__ = ["SCHEMA_VERSION", "SCHEMA_KINDS", "json_document", "schema", "validate", "CheckResult", "MomentsResult",
           "GradientsResult", "FuzzResult", "FunctionFuzzResult", "check", "moments", "gradients", "fuzz",
           "fuzz_function", "check_implementation",
           "term_gradients", "load_estimator", "resolve_estimator", "function_of_r", "parse_claims", "parse_dtypes",
           "parse_modes", "check_expect", "check_profile", "check_timeout", "distribution_spec", "PROFILES",
           "sequences", "SequencesResult"]
