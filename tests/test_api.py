"""The public API at the package top, the claims reference, targets and progress."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats as st

import verify
from verify.errors import UsageError
from verify.api import distribution_spec, validate
from verify.core.claims import ENTRIES, FLOATING, SYMBOLIC, VERDICTS, lookup, reference_markdown
from verify.cli import main

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("sympy", "scipy", "matplotlib", "hypothesis", "mpmath")


def test_import_verify_is_cheap():
    code = f"import sys, verify, verify.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_check_from_python():
    result = verify.check("r - 1 - log(r)", ["nonnegative", "unbiased_kl_pq"])
    assert isinstance(result, verify.CheckResult)
    assert result.verdicts["nonnegative"].verdict == "proved"
    assert result.verdicts["unbiased_kl_pq"].verdict == "refuted" and result.exit_code == 1
    document = result.to_json()
    validate(document)
    assert document["claims"]["nonnegative"]["verdict"] == "proved"


def test_check_reports_progress_for_every_claim():
    seen = []
    verify.check("k1", ["zero_at_one", "convex"], progress=lambda claim, verdict: seen.append((claim, verdict.verdict)))
    assert sorted(seen) == [("convex", "proved"), ("zero_at_one", "proved")]


@pytest.mark.parametrize("call, argv", [
    (lambda: verify.check("k3", ["no_such_claim"]), ["check", "k3", "--claims", "no_such_claim"]),
    (lambda: verify.check("log(r", None), ["check", "log(r"]),
    (lambda: verify.check("k3", ["nonnegative"], timeout=0), ["check", "k3", "--claims", "nonnegative", "--timeout", "0"]),
    (lambda: verify.check("/etc/passwd:x"), ["check", "/etc/passwd:x"]),
    (lambda: verify.moments("k3", "cauchy(0, 1)", "norm(0, 1)"), ["moments", "k3", "--p", "cauchy(0, 1)", "--q", "norm(0, 1)"]),
], ids=["claim", "expression", "timeout", "not-python", "family"])
def test_api_raises_the_message_the_cli_prints(call, argv, capsys):
    with pytest.raises(UsageError) as error:
        call()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"kl-verify: error: {' '.join(str(error.value).split())}"


@pytest.mark.parametrize("frozen, spec", [
    (st.norm(0.5, 1.2), "norm(0.5, 1.2)"),
    (st.norm(loc=-1, scale=2), "norm(-1.0, 2.0)"),
    (st.laplace(0, 1), "laplace(0.0, 1.0)"),
    (st.t(3), "t(3.0, 0.0, 1.0)"),
    (st.t(df=5, loc=1, scale=0.5), "t(5.0, 1.0, 0.5)"),
    (st.gamma(2, scale=3), "gamma(2.0, 0.0, 3.0)"),
    (st.beta(2, 3), "beta(2.0, 3.0)"),
    (st.poisson(4), "poisson(4.0)"),
])
def test_frozen_scipy_distributions_become_specs(frozen, spec):
    assert distribution_spec(frozen) == spec
    from verify.layers.exact import parse_family

    parse_family(spec)  # the grammar accepts it


@pytest.mark.parametrize("frozen", [st.cauchy(0, 1), st.beta(2, 3, loc=1), st.poisson(4, loc=2), 3.0])
def test_unsupported_distributions_are_usage_errors(frozen):
    with pytest.raises(UsageError):
        distribution_spec(frozen)


def test_moments_with_scipy_distributions_equal_the_spec_strings():
    from_scipy = verify.moments("k3", st.norm(0.1, 1), st.norm(0, 1))
    from_text = verify.moments("k3", "norm(0.1, 1)", "norm(0, 1)")
    assert (from_scipy.mean, from_scipy.variance, from_scipy.kl_qp) == (from_text.mean, from_text.variance, from_text.kl_qp)
    assert verify.moments("k3", st.t(3), st.norm()).variance == float("inf")
    validate(from_scipy.to_json())


def test_gradients_from_python():
    """``verify.gradients`` is the API function (the layer is ``verify.layers.gradients``)."""
    from verify import api

    assert verify.gradients is api.gradients
    result = verify.gradients("k2", ["loss"])
    assert {row.gradient_of for row in result.rows} == {"kl_qp"}
    validate(result.to_json())
    assert [r.gradient_of for r in verify.gradients("k1", "loss").rows] == ["zero"] * len(result.rows)


def test_the_gradient_gate_from_python():
    """``expect``: every row must give that gradient; the rows that do not are named."""
    assert verify.gradients("k2", ["loss"], expect="kl_qp").exit_code == 0
    result = verify.gradients("k2", ["reward"], expect="kl_qp")  # k2's value as a reward: not grad KL
    assert result.exit_code == 1
    assert len(result.mismatches) == len(result.rows)
    assert all(m.startswith("reward ") and m.endswith(", not kl_qp") for m in result.mismatches)
    assert verify.gradients("k2", ["reward"]).exit_code == 0  # no gate asked
    with pytest.raises(UsageError, match="--expect"):
        verify.gradients("k2", ["loss"], expect="forward_kl")


def test_fuzz_from_python():
    result = verify.fuzz("examples/naive.py:k3_exp", ["bfloat16"], profile="dev")
    assert result.verdicts["k3_exp"]["fp_nonnegative@bfloat16"].verdict == "refuted"
    validate(result.to_json())


def test_version_everywhere(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"kl-verify {verify.__version__}"
    assert (REPO / "verify" / "py.typed").is_file()


# ------------------------------------------------------------------ claims reference


def test_committed_claims_reference_is_generated():
    assert (REPO / "docs" / "claims.md").read_text() == reference_markdown(), \
        "regenerate with: python -m verify claims > docs/claims.md"


def test_reference_covers_every_name():
    from verify.core.claims import MODE_NAMES
    from verify.layers import gradients

    for name in SYMBOLIC + FLOATING + VERDICTS + MODE_NAMES + gradients.GRADIENT_OF:
        assert lookup(name).meaning, name
        assert f"`{name}`" in reference_markdown(), name
    assert lookup("fp_accurate@bfloat16").name == "fp_accurate"
    assert "fp_atol" in lookup("fp_accurate").meaning and "ACCURATE_ULPS" in lookup("fp_accurate").meaning
    for code in range(4):
        assert str(code) in ENTRIES


def test_claims_command(capsys):
    assert main(["claims", "subexponential_growth"]) == 0
    assert "log r" in capsys.readouterr().out
    assert main(["claims"]) == 0
    assert capsys.readouterr().out == reference_markdown()
    assert main(["claims", "sideways"]) == 2


def test_readme_and_reports_point_to_the_reference():
    readme = (REPO / "README.md").read_text()
    assert "docs/claims.md" in readme and "shared/CLAIMS.md" not in readme
    from verify.report import CLAIMS_DOC

    assert (REPO / "reports" / CLAIMS_DOC).resolve() == (REPO / "docs" / "claims.md").resolve()


# --------------------------------------------------------------------------- targets


def test_target_that_prints_does_not_reach_json(tmp_path, capsys):
    path = tmp_path / "noisy.py"
    path.write_text("print('hello from an import')\nfrom estimators import Estimator\n"
                    "noisy = Estimator(name='noisy', expr='(r - 1) - log(r)')\n")
    assert main(["check", f"{path}:noisy", "--claims", "zero_at_one", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["estimator"] == "noisy"
    assert "hello from an import" in captured.err


@pytest.mark.parametrize("target", ["/etc/passwd:x", "this:s", "README.md:x", "nowhere.py:x", "os.path:1x"])
def test_bad_file_or_module_targets_are_one_line(target, capsys):
    assert main(["check", target, "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()  # what an import prints comes first (this:s prints a poem)
    assert captured.out == "" and lines[-1].startswith("kl-verify: error:") and "Traceback" not in captured.err
    assert [line for line in lines if line.startswith("kl-verify:")] == lines[-1:]


def test_domain_counterexample_is_printed_once(capsys):
    main(["check", "log(r - 2)"])
    out = capsys.readouterr().out
    assert out.count("counterexample") == 1 and out.count("refuted") == 13
    assert out.count('"subexpression": "r - 2"') == 1
    assert "refutes the 13 claims" in out


# -------------------------------------------------------------------------- progress


def test_progress_is_quiet_when_piped(capsys):
    assert main(["check", "k1", "--claims", "zero_at_one"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_shows_on_a_terminal(monkeypatch):
    from verify.cli import progress as module

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(module, "SHOW_AFTER", 0.0)
    monkeypatch.delenv("CI", raising=False)
    stream = Terminal()
    with module.Progress("check k3", total=2, stream=stream) as progress:
        progress.step("nonnegative proved")
    text = stream.getvalue()
    assert "check k3: 1/2 done" in text and "nonnegative proved" in text and text.endswith("\r\033[K")


QUICK_CASES = ["__import__('os').system('x')", "exec('1')", "r.__class__", "lambda: 1", "[r for r in ()]",
               "r if r else 1", "x + 1", "r + x", "log(r", "r +* 2", "log(r, 2)", "log(r=2)", "True + r", "'r'",
               "r/(r - r) + x", "exp(r) + y", "Min(r, r - r, z)", "Min(r, q)", "foo(r)", "r.real", "-x", "r ** y",
               "log(r) + 1", "(r - 1) - log(r)", "E + x", "9**9**9**9", "r" + "+r" * 500, "(" * 60 + "r" + ")" * 60]


QUICK_MUST_REFUSE = {"__import__('os').system('x')", "exec('1')", "r.__class__", "lambda: 1", "x + 1", "r + x",
                     "log(r", "log(r, 2)", "log(r=2)", "foo(r)", "-x"}


@pytest.mark.parametrize("text", QUICK_CASES, ids=[repr(t[:20]) for t in QUICK_CASES])
def test_quick_expression_check_words_errors_as_the_parser(text):
    """Where the sympy-free check refuses, the parser refuses with the same message; where
    the parser accepts, the check does too."""
    from verify.core.expression import parse_expression
    from verify.api.targets import quick_expression_check

    try:
        parse_expression(text)
        expected = None
    except UsageError as error:
        expected = str(error)
    try:
        quick_expression_check(text)
    except UsageError as error:
        assert str(error) == expected
    else:  # unsure or valid: the parser decides; but plainly hostile input is refused here
        assert text not in QUICK_MUST_REFUSE


def test_quick_expression_check_knows_the_parsers_whitelist():
    from verify.core import expression
    from verify.api import targets

    assert {name: (low, high) for name, (_, low, high) in expression._FUNCTIONS.items()} == \
        targets._EXPRESSION_FUNCTIONS
    assert set(expression._NAMES) == set(targets._EXPRESSION_NAMES)
    assert expression._ALLOWED == targets._EXPRESSION_ALLOWED
    assert set(expression._BINARY) == set(targets._EXPRESSION_BINARY)
    assert (expression.MAX_LENGTH, expression.MAX_NODES, expression.MAX_DEPTH) == targets._EXPRESSION_LIMITS


def test_hostile_expression_is_refused_without_sympy():
    code = ("import sys\nfrom verify.cli import main\n"
            "assert main(['check', \"__import__('os').system('x')\"]) == 2\n"
            "print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_check_implementation_for_the_plugin():
    import numpy as np

    def naive_k3(logp, logq):
        t = np.subtract(logp, logq)
        return np.exp(t) - 1 - t

    verdicts = verify.api.check_implementation(naive_k3, "r - 1 - log(r)", ["fp_nonnegative"], ["bfloat16"],
                                               profile="dev")
    assert verdicts["fp_nonnegative@bfloat16"].verdict == "refuted"
    with pytest.raises(UsageError):
        verify.api.check_implementation(naive_k3, "r - 1 - log(r)", dtypes=["float8"])


def test_progress_line_is_cleared_before_results_are_printed(monkeypatch, capsys):
    import time

    from verify.cli import progress as module

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(module, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(module, "REFRESH", 0.01)
    monkeypatch.delenv("CI", raising=False)
    stream = Terminal()
    with module.Progress("kl-verify fuzz", stream=stream):
        time.sleep(0.1)
        assert "kl-verify fuzz: running" in stream.getvalue()
        print("result")
        shown = stream.getvalue()
        time.sleep(0.05)
        assert stream.getvalue() == shown  # no drawing once output has started
    assert shown.endswith("\r\033[K") and capsys.readouterr().out == "result\n"
