"""The pytest plugin, run as a user would: in a separate pytest session (pytester)."""
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import numpy as np
import pytest

def stable_k1(logp, logq):
    # a "library" implementation returning a list: any array-like is accepted
    return list(np.subtract(np.asarray(logq, np.float64), np.asarray(logp, np.float64)).astype(np.asarray(logp).dtype))

def naive_k3(logp, logq):
    t = logp - logq
    return np.exp(t) - 1 - t

def test_stable_holds(kl_fp_claims):
    verdicts = kl_fp_claims(stable_k1, "-log(r)", claims=["fp_finite", "fp_accurate"], dtypes=["float16"])
    assert set(verdicts) == {"fp_finite@float16", "fp_accurate@float16"}

def test_naive_fails(kl_fp_claims):
    with np.errstate(all="ignore"):
        kl_fp_claims(naive_k3, "(r - 1) - log(r)", claims=["fp_nonnegative"], dtypes=["bfloat16"])
'''


def test_plugin_passes_good_and_fails_naive_implementations(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    # with the package installed the pytest11 entry point loads the plugin; without, -p does
    installed = any(e.name == "kl_verify" for e in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "verify.pytest_plugin"]
    result = pytester.runpytest_subprocess(*load, "--kl-verify-profile", "dev", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*fp_nonnegative@bfloat16: refuted*", "*counterexample*"])


def test_assert_fp_claims_rejects_a_single_string():
    from verify.pytest_plugin import assert_fp_claims

    with pytest.raises(TypeError):
        assert_fp_claims(lambda p, q: p, "-log(r)", claims="fp_finite")
