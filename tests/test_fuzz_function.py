"""`verify fuzz FILE.py:FUNC --framework torch`: a library's own KL function, called as
written (its own argument names and order, options by --option), judged with no formula:
fp_nonnegative, fp_finite and fp_agrees_float64 (against the function itself in float64).

The library functions below are our own re-implementations of the published behaviour
(verl's ``kl_penalty``, OpenRLHF's and SkyRL's ``compute_approx_kl``), written to files
as a user would point the tool at them.  16-bit sweeps run over the suite's part of the
domain (tests/conftest.py)."""
import json
import os
import textwrap

import numpy as np
import pytest

from conftest import PART_OF_THE_DOMAIN
from verify import api
from verify.cli import main


def _torch():
    if os.environ.get("CI"):
        import torch  # noqa: PLC0415 - in CI a missing torch must fail, never skip

        return torch
    return pytest.importorskip("torch")


torch = _torch()

from verify.layers.floating.bare_function import BARE_CLAIMS, _Judge, sweep_function  # noqa: E402

VERL = '''
import torch

def kl_penalty(logprob: torch.FloatTensor, ref_logprob: torch.FloatTensor, kl_penalty) -> torch.FloatTensor:
    if kl_penalty in ("kl", "k1"):
        return logprob - ref_logprob
    if kl_penalty == "abs":
        return (logprob - ref_logprob).abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * (logprob - ref_logprob).square()
    if kl_penalty in ("low_var_kl", "k3"):
        kl = ref_logprob - logprob
        kl = torch.clamp(kl, min=-20, max=20)
        ratio = torch.exp(kl)
        kld = (ratio - kl - 1).contiguous()
        return torch.clamp(kld, min=-10, max=10)
    raise NotImplementedError(kl_penalty)
'''
OPENRLHF = '''
import torch

def compute_approx_kl(log_probs, log_probs_base, kl_estimator="k1"):
    if kl_estimator == "k1":
        log_ratio = log_probs.float() - log_probs_base.float()
    if kl_estimator == "k2":
        log_ratio = log_probs.float() - log_probs_base.float()
        log_ratio = log_ratio ** 2 / 2.0
    if kl_estimator == "k3":
        log_ratio = log_probs.float() - log_probs_base.float()
        log_ratio = -log_ratio
        log_ratio = log_ratio.exp() - 1 - log_ratio
    log_ratio = log_ratio.clamp(min=-10, max=10)
    return log_ratio
'''
SKYRL = '''
import torch

def compute_approx_kl(log_probs, log_probs_base, loss_mask=None, kl_estimator_type="k3"):
    if kl_estimator_type == "k1":
        log_ratio = log_probs - log_probs_base
    elif kl_estimator_type == "k3":
        log_ratio = (log_probs_base - log_probs).clamp(min=-20, max=20)
        log_ratio = log_ratio.exp() - 1 - log_ratio
    else:
        raise ValueError(kl_estimator_type)
    if loss_mask is not None:
        log_ratio = log_ratio * loss_mask
    return log_ratio

def without_mask(log_probs, log_probs_base, kl_estimator_type="k3"):
    return compute_approx_kl(log_probs, log_probs_base, None, kl_estimator_type)
'''
# k3 in the input dtype, nothing bounded: in float16 exp(t) overflows for t > 11.09
PLAIN = '''
import torch

def k3(logprob, ref_logprob):
    kl = ref_logprob - logprob
    return kl.exp() - 1 - kl
'''
# output that depends on the batch shape, as compiled code's can: float32 arithmetic in
# large batches and the dtype's alone ("wider"), or the other way round ("narrower")
SHAPES = '''
import torch

def _k3(logprob, ref_logprob):
    kl = ref_logprob - logprob
    return kl.exp() - 1 - kl

def wider_in_batches(logprob, ref_logprob):
    if logprob.numel() > 1000:
        return _k3(logprob.float(), ref_logprob.float()).to(logprob.dtype)
    return _k3(logprob, ref_logprob)

def narrower_in_batches(logprob, ref_logprob):
    if logprob.numel() > 1000:
        return _k3(logprob, ref_logprob)
    return _k3(logprob.float(), ref_logprob.float()).to(logprob.dtype)
'''
HOSTILE = '''
import os, sys, time

def k1(logprob, ref_logprob):
    return logprob - ref_logprob

def prints(logprob, ref_logprob):
    print("debug: a batch of", tuple(logprob.shape))
    return logprob - ref_logprob

def exits(logprob, ref_logprob):
    sys.exit(0)

def hangs(logprob, ref_logprob):
    time.sleep(1000)

def in_place(logprob, ref_logprob):
    return logprob.sub_(ref_logprob)
'''


@pytest.fixture
def libs(tmp_path):
    for name, text in (("verl_kl", VERL), ("openrlhf_kl", OPENRLHF), ("skyrl_kl", SKYRL), ("plain_kl", PLAIN),
                       ("shapes_kl", SHAPES), ("hostile_kl", HOSTILE)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return tmp_path


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _json(argv, capsys):
    code, out, err = _cli(argv + ["--json"], capsys)
    document = json.loads(out)
    api.validate(document)
    return code, document, err


def _load(path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _alone(function, example, **options):
    """The function on the counterexample's pair alone, (1, 1) tensors of its dtype."""
    dtype = getattr(torch, example["dtype"])
    logp, logq = (torch.tensor([[example[k]]], dtype=torch.float64).to(dtype) for k in ("logp", "ref_logp"))
    assert float(logp) == example["logp"] and float(logq) == example["ref_logp"]  # the pair is representable
    return float(function(logp, logq, **options))


# ----------------------------------------------------------------- the library functions

def test_verl_k1_through_the_cli(libs, capsys):
    """k1 is one correctly rounded subtraction: it agrees with float64 and is finite, and is
    negative wherever logprob < ref_logprob (a counterexample that re-checks)."""
    code, document, _ = _json(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--option",
                               "kl_penalty=k1", "--dtypes", "bfloat16"], capsys)
    claims = document["claims"]
    assert code == 1 and document["kind"] == "fuzz_function" and document["options"] == {"kl_penalty": "k1"}
    assert claims["fp_agrees_float64@bfloat16"]["verdict"] == "proved"
    assert claims["fp_finite@bfloat16"]["verdict"] == "proved"
    refuted = claims["fp_nonnegative@bfloat16"]
    assert refuted["verdict"] == "refuted" and "pairs fail" in refuted["detail"]
    example = refuted["counterexample"]
    assert example["logp"] < example["ref_logp"] and example["value"] < 0 and example["alone"]["fails"]
    assert _alone(_load(libs / "verl_kl.py", "kl_penalty"), example, kl_penalty="k1") == example["value"]
    assert document["returns"] == {"bfloat16": "bfloat16"} and document["shape_dependence"] == []
    assert document["shape_checked"]["bfloat16"]["pairs"] > 8 and document["shape_checked"]["bfloat16"]["differ"] == 0
    # bfloat16 values in [-16, -2^-6]: 10 binades of 128 values, and -16 (1,281)
    lo, hi = PART_OF_THE_DOMAIN
    assert f"all {1280 ** 2 + 2 * 1280 + 1:,} (logp, ref_logp) pairs of bfloat16 in [{lo:g}, {hi:g}]" in refuted["detail"]


def test_the_option_reaches_the_function(libs, capsys):
    """verl's "k3" and "low_var_kl" are one branch: the same verdicts, word for word; "k1"'s differ."""
    found = {}
    for option in ("k3", "low_var_kl", "k1"):
        code, document, _ = _json(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--option",
                                   f"kl_penalty={option}", "--dtypes", "bfloat16"], capsys)
        found[option] = document["claims"]
    assert found["k3"] == found["low_var_kl"] != found["k1"]
    code, text, _ = _cli(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--option",
                          "kl_penalty=low_var_kl", "--dtypes", "bfloat16"], capsys)
    assert code == 1 and "kl_penalty='low_var_kl'" in text and "fp_agrees_float64@bfloat16" in text


def test_openrlhf_k3_agrees_with_its_own_float32_arithmetic(libs):
    """OpenRLHF casts to float32 inside: its float64 evaluation is float32 arithmetic too (named), so the
    value agrees with it exactly; the default k1 is negative below the reference."""
    target = f"{libs}/openrlhf_kl.py:compute_approx_kl"
    result = api.fuzz(target, "bfloat16", framework="torch", options={"kl_estimator": "k3"})
    assert isinstance(result, api.FunctionFuzzResult)
    assert result.returns == {"bfloat16": "float32"} and result.float64_returns == {"bfloat16": "float32"}
    verdict = result.verdicts["fp_agrees_float64@bfloat16"]
    assert verdict.verdict == "proved" and "float64 evaluation returned float32" in verdict.detail
    default = api.fuzz_function(target, "bfloat16")  # kl_estimator="k1", its own default
    assert default.verdicts["fp_nonnegative@bfloat16"].verdict == "refuted"
    api.validate(result.to_json())


def test_skyrl_loss_mask_is_a_mask_not_the_old_policy(libs, capsys):
    """loss_mask is bound to a mask of ones (never to the old log-probs by position): the verdicts are those
    of the same code without the mask."""
    argv = ["--framework", "torch", "--option", "kl_estimator_type=k3", "--dtypes", "bfloat16"]
    _, masked, _ = _json(["fuzz", f"{libs}/skyrl_kl.py:compute_approx_kl"] + argv, capsys)
    _, bare, _ = _json(["fuzz", f"{libs}/skyrl_kl.py:without_mask"] + argv, capsys)
    assert masked["claims"] == bare["claims"]
    assert masked["claims"]["fp_nonnegative@bfloat16"]["verdict"] == "refuted"  # k3's cancellation in bfloat16


# ------------------------------------------------------------ counts, exactly

def test_a_refuted_count_equals_an_independent_enumeration(libs):
    """fp_finite of k3 in float16 with nothing bounded: the value is inf where exp(t) rounds to inf
    (exp(t) >= 65520, halfway to 2^16: 65504 is odd, the tie goes up) while the float64 k3 still fits
    (<= 65504).  Counted here pair by pair from the bit patterns, with t rounded to float16 as the function
    rounds it; only logprob < -10 can give t > 10 (ref_logprob <= -2^-6), and exp(10) < 65520."""
    result = api.fuzz_function(f"{libs}/plain_kl.py:k3", "float16")
    verdict = result.verdicts["fp_finite@float16"]
    lo, hi = PART_OF_THE_DOMAIN
    with np.errstate(invalid="ignore"):
        values = np.arange(2 ** 16, dtype=np.uint16).view(np.float16).astype(np.float64)
    values = values[np.isfinite(values) & (values >= lo) & (values <= hi)]
    logq = values[:, None]  # ref_logprob
    logp = values[values < -10][None, :]
    t16 = (logq - logp).astype(np.float16).astype(np.float64)  # the exact difference fits in float32, rounded once
    with np.errstate(over="ignore"):
        overflows = np.exp(t16) >= 65520
        fits = np.exp(logq - logp) - 1 - (logq - logp) <= 65504
    expected = int(np.count_nonzero(overflows & fits))
    assert expected > 0
    assert verdict.verdict == "refuted"
    assert verdict.detail.startswith(f"{expected:,} of {len(values) ** 2:,} pairs fail")
    example = verdict.counterexample
    assert example["value"] == "inf" and example["float64"] <= 65504 and example["alone"]["fails"]


def test_the_judge_at_its_bounds():
    """The three claims' definitions at the edges, in float16 (ulp 2^-10 at 1, budget 4 ulps)."""
    judge = _Judge("float16", 4.0)
    cases = [  # (value, float64 value, fp_finite holds, fp_agrees_float64 holds)
        (1 + 2 ** -8, 1.0, True, True),  # exactly 4 ulps
        (1 + 2 ** -8 + 2 ** -23, 1.0, True, False),  # a float32 value just beyond
        (1 - 2 ** -9, 1.0, True, True),  # 4 ulps below 1 (half-size ulps there, the budget is at F)
        (2.0 ** -15, 0.0, True, True),  # off by less than the smallest normal 2^-14
        (2.0 ** -14, 0.0, True, False),
        (np.inf, 1e6, True, True), (65504.0, 1e6, True, True), (1e6, 1e6, True, True),  # beyond the range
        (-np.inf, 1e6, True, False), (5e5, 1e6, True, False),
        (np.inf, 65000.0, False, False), (np.inf, 65504.5, True, True),
        (np.nan, np.nan, True, True), (0.0, np.nan, True, False), (np.nan, 0.0, False, False),
    ]
    value, reference = np.array([c[0] for c in cases]), np.array([c[1] for c in cases])
    finite, agrees = judge.exactly(value, reference)
    assert finite.tolist() == [c[2] for c in cases] and agrees.tolist() == [c[3] for c in cases]
    failing = judge.failing(value, reference)  # the quick pass gives the same
    assert set(failing["fp_agrees_float64"].tolist()) == {i for i, c in enumerate(cases) if not c[3]}
    assert set(failing["fp_finite"].tolist()) == {i for i, c in enumerate(cases) if not c[2]}
    negative = judge.failing(np.array([-0.0, 0.0, -2.0 ** -24, np.nan]), np.zeros(4))["fp_nonnegative"]
    assert negative.tolist() == [2, 3]  # -0.0 passes, NaN fails


def test_float32_is_tested_reproducibly():
    def k1(logp, ref_logp):
        return logp - ref_logp

    first, again = (sweep_function(k1, "float32", profile="dev") for _ in range(2))
    assert first == again
    assert first.verdicts["fp_agrees_float64"].verdict == "tested"
    assert first.verdicts["fp_nonnegative"].verdict == "refuted"


# ------------------------------------------------------------------ batch shapes

def test_output_that_depends_on_the_batch_shape_is_a_finding(libs, capsys):
    code, document, _ = _json(["fuzz", f"{libs}/shapes_kl.py:wider_in_batches", "--framework", "torch",
                               "--dtypes", "bfloat16"], capsys)
    assert code == 1 and document["shape_dependence"] and document["shape_checked"]["bfloat16"]["differ"] > 0
    found = document["shape_dependence"][0]
    assert found["in_batch"] != found["alone"] and found["batch_shape"][0] * found["batch_shape"][1] > 1000
    function = _load(libs / "shapes_kl.py", "wider_in_batches")
    pair = {"logp": found["logp"], "ref_logp": found["ref_logp"], "dtype": "bfloat16"}
    assert _alone(function, pair) == found["alone"]  # the value alone re-checks
    code, text, _ = _cli(["fuzz", f"{libs}/shapes_kl.py:wider_in_batches", "--framework", "torch",
                          "--dtypes", "bfloat16"], capsys)
    assert code == 1 and "output depends on the batch shape" in text


def test_a_counterexample_that_fails_only_in_its_batch(libs):
    """The code fails in the batches a trainer gives it: refuted there, with the value alone beside it, and
    the difference reported as a finding of its own."""
    result = api.fuzz_function(f"{libs}/shapes_kl.py:narrower_in_batches", "bfloat16")
    verdict = result.verdicts["fp_nonnegative@bfloat16"]
    assert verdict.verdict == "refuted" and result.exit_code == 1
    example = verdict.counterexample
    assert example["value"] < 0 and example["alone"]["fails"] is False and example["alone"]["value"] >= 0
    assert any((f["logp"], f["ref_logp"]) == (example["logp"], example["ref_logp"]) for f in result.shape_dependence)


# --------------------------------------------------------- the user's code misbehaves

def test_prints_and_writes_into_the_inputs_do_not_change_the_verdicts(libs, capsys):
    argv = ["--framework", "torch", "--dtypes", "bfloat16"]
    code, quiet, _ = _json(["fuzz", f"{libs}/hostile_kl.py:k1"] + argv, capsys)
    loud_code, loud, err = _json(["fuzz", f"{libs}/hostile_kl.py:prints"] + argv, capsys)
    assert (loud_code, loud["claims"]) == (code, quiet["claims"])
    assert "printed" in err
    _, in_place, _ = _json(["fuzz", f"{libs}/hostile_kl.py:in_place"] + argv, capsys)
    assert in_place["claims"] == quiet["claims"]  # its float64 evaluation saw the inputs, not its own writes


@pytest.mark.parametrize("name, words", [("exits", "exit(0)"), ("hangs", "within 5 s")])
def test_an_exit_or_a_hang_never_passes(libs, capsys, name, words):
    code, document, _ = _json(["fuzz", f"{libs}/hostile_kl.py:{name}", "--framework", "torch", "--dtypes",
                               "bfloat16", "--timeout", "5"], capsys)
    assert code == 3 and words in document["failure"]
    assert {v["verdict"] for v in document["claims"].values()} == {"undecided"}


# ------------------------------------------------------------------- bad input

@pytest.mark.parametrize("extra, words", [
    (["--option", "kl_penalty"], "expected NAME=VALUE"),
    (["--option", "kl_penalty=k1", "--bind", "logprob=policy"], "unknown role"),
    (["--option", "kl_penalty=k1", "--option", "beta=0.1"], "no parameter 'beta'"),
    ([], "cannot bind parameter 'kl_penalty'"),
])
def test_bad_options_and_binds_are_one_line(libs, capsys, extra, words):
    code, out, err = _cli(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--dtypes", "bfloat16"]
                          + extra, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err


def test_the_domain_is_honoured(libs, capsys):
    code, document, _ = _json(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--option",
                               "kl_penalty=k1", "--dtypes", "bfloat16", "--domain=-2,-1"], capsys)
    detail = document["claims"]["fp_finite@bfloat16"]["detail"]
    assert f"all {129 ** 2:,} (logp, ref_logp) pairs of bfloat16 in [-2, -1] (129 values each" in detail
    code, _, err = _cli(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--framework", "torch", "--option",
                         "kl_penalty=k1", "--dtypes", "bfloat16", "--domain=-inf,0"], capsys)
    assert code == 2 and "finite domain" in err


def test_a_function_without_framework_torch_is_one_line(libs, capsys):
    code, _, err = _cli(["fuzz", f"{libs}/verl_kl.py:kl_penalty", "--dtypes", "bfloat16"], capsys)
    assert code == 2 and "--framework torch" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(["fuzz", "k3", "--option", "kl_penalty=k1", "--dtypes", "bfloat16"], capsys)
    assert code == 2 and "--framework torch" in err


def test_an_estimator_under_framework_torch_is_fuzzed_as_an_estimator(capsys):
    code, document, _ = _json(["fuzz", "examples/naive.py:k3_exp", "--framework", "torch", "--dtypes", "float32",
                               "--profile", "dev"], capsys)
    assert document["kind"] == "fuzz" and "fp_accurate@float32" in document["estimators"]["k3_exp"]
    code, _, err = _cli(["fuzz", "k3", "--framework", "torch", "--dtypes", "bfloat16"], capsys)
    assert code == 2 and "FILE.py:FUNC" in err


def test_the_claims_and_the_schema():
    from verify.api.functions import FUNCTION_CLAIMS
    from verify.core.claims import FUNCTION, lookup

    assert FUNCTION_CLAIMS == BARE_CLAIMS and set(FUNCTION) <= set(BARE_CLAIMS)
    assert "float64" in lookup("fp_agrees_float64@bfloat16").meaning
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(api.schema("fuzz_function"))
