"""The pytest plugin, run as a user would: in a separate pytest session (pytester)."""
from importlib.metadata import entry_points
from pathlib import Path

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

def verl_low_var_kl(logp, logq):
    # verl's clamps, in the input dtype (bfloat16 stays bfloat16)
    limit, bound = np.asarray(20, logp.dtype), np.asarray(10, logp.dtype)
    t = np.minimum(np.maximum(logp - logq, -limit), limit)
    return np.minimum(np.maximum(np.exp(t) - t - 1, -bound), bound)

def test_stable_holds(kl_fp_claims):
    verdicts = kl_fp_claims(stable_k1, "-log(r)", claims=["fp_finite", "fp_accurate"], dtypes=["float32"])
    assert set(verdicts) == {"fp_finite@float32", "fp_accurate@float32"}

def test_naive_fails(kl_fp_claims):
    with np.errstate(all="ignore"):
        kl_fp_claims(naive_k3, "(r - 1) - log(r)", claims=["fp_nonnegative"], dtypes=["float32"])

def test_verl_style_fails_in_bfloat16(kl_fp_claims):
    # every bfloat16 pair is enumerated: found whatever the profile
    kl_fp_claims(verl_low_var_kl, "Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)",
                 claims=["fp_nonnegative"], dtypes=["bfloat16"])
'''


def test_plugin_passes_good_and_fails_naive_implementations(pytester, monkeypatch):
    # the user's session imports this checkout's verify (not another installed copy)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    pytester.makepyfile(test_user=USER_TESTS)
    # with the package installed the pytest11 entry point loads the plugin; without, -p does
    installed = any(e.name == "kl_verify" for e in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "verify.pytest_plugin"]
    result = pytester.runpytest_subprocess(*load, "--kl-verify-profile", "dev", "-q")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*fp_nonnegative@float32: refuted*", "*counterexample*"])
    result.stdout.fnmatch_lines(["*fp_nonnegative@bfloat16: refuted (exhaustive enumeration) 2,982,391 of 289,340,100*",
                                 "*counterexample*", "*worst error*"])


def test_assert_fp_claims_rejects_a_single_string():
    from verify.pytest_plugin import assert_fp_claims

    with pytest.raises(TypeError):
        assert_fp_claims(lambda p, q: p, "-log(r)", claims="fp_finite")
