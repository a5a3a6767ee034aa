"""Bad input: one line on stderr, exit code 2, nothing executed; and the check gate."""
import json
import subprocess
import sys

import pytest

from verify.errors import UsageError
from verify.cli import main
from verify.core.expression import parse_expression

HOSTILE = [
    '__import__("os").system("touch /tmp/kl_verify_pwned")',
    "r.__class__.__mro__",
    "exec('1')",
    "eval('r')",
    "lambda: 1",
    "[r for r in ()]",
    "r if r else 1",
    "x + 1",
    "log(r",
    "r +* 2",
    "log(r, 2)",
    "log(r=2)",
    "9**9**9**9",
    "(10**300)**(10**300)",
    "exp(exp(exp(1000)))",
    "1/0",
    "log(0)",
    "1j*r",
    "True + r",
    "'r'",
    "r; import os",
    "r\nimport os",
    "r" + "+r" * 60000,
    "(" * 500 + "r" + ")" * 500,
    "",
]


@pytest.mark.parametrize("text", HOSTILE, ids=[repr(t[:30]) for t in HOSTILE])
def test_hostile_expression_is_rejected(text):
    with pytest.raises(UsageError):
        parse_expression(text)


@pytest.mark.parametrize("args", [
    ["check", HOSTILE[0]],
    ["check", "k3", "--claims", "not_a_claim"],
    ["check", "k3", "--claims", "fp_finite@float8"],
    ["check", "no_such_estimator"],
    ["check", "missing_file.py:NAME"],
    ["check", "k3", "--timeout", "0"],
    ["check", "r" + "+r" * 60000],
    ["nonsense"],
    [],
    ["moments", "k3", "--p", "norm(0, 1", "--q", "norm(0, 1)"],
    ["moments", "k3", "--p", "__import__('os')", "--q", "norm(0, 1)"],
    ["moments", "k3", "--p", "cauchy(0, 1)", "--q", "norm(0, 1)"],
    ["moments", "k3", "--p", "norm(0, -1)", "--q", "norm(0, 1)"],
    ["moments", "k3", "--p", "norm(0, 1)", "--q", "poisson(3)"],
    ["moments", "k3", "--p", "categorical(logits=@/no/such.npy)", "--q", "categorical(logits=[0, 1])"],
    ["fuzz", "k3", "--dtypes", "float8"],
    ["fuzz", "k3", "--profile", "forever"],
    ["fuzz", "log(r)"],
    ["gradients", "k3", "--mode", "sideways"],
    ["all", "--jobs", "0"],
    ["all", "--layers", "astrology"],
], ids=["code", "unknown-claim", "unknown-dtype", "unknown-estimator", "missing-file", "bad-timeout",
        "100kB", "unknown-command", "no-command", "spec-syntax", "spec-code", "unknown-family",
        "negative-scale", "mixed-support", "missing-npy", "fuzz-dtype", "fuzz-profile", "fuzz-no-numeric",
        "gradient-mode", "all-jobs", "all-layers"])
def test_cli_bad_input_is_one_line_and_exit_2(args, capsys, tmp_path):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kl-verify: error:"), captured.err


def test_cli_runs_nothing_from_the_expression(tmp_path):
    marker = tmp_path / "pwned"
    code = f'__import__("os").system("touch {marker}")'
    result = subprocess.run([sys.executable, "-m", "verify", "check", code], capture_output=True, text=True)
    assert result.returncode == 2 and not marker.exists()
    assert "Traceback" not in result.stderr


def test_check_gates_on_declared_claims(capsys):
    assert main(["check", "k3", "--claims", "nonnegative,unbiased_kl_qp"]) == 0
    assert main(["check", "k3", "--claims", "unbiased_kl_pq"]) == 1
    capsys.readouterr()


def test_check_json_has_the_documented_shape(capsys):
    assert main(["check", "log((r-1)**2 + 1)", "--claims", "nonnegative,unbiased_kl_qp", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"schema_version", "kind", "estimator", "expression", "gated", "claims"}
    assert out["kind"] == "check" and out["gated"] == ["nonnegative", "unbiased_kl_qp"]
    assert out["expression"] == "log((r - 1)**2 + 1)"
    assert out["claims"]["nonnegative"]["verdict"] == "proved"
    refuted = out["claims"]["unbiased_kl_qp"]
    assert refuted["verdict"] == "refuted" and refuted["counterexample"]["q"]
    assert set(refuted) == {"verdict", "method", "detail", "counterexample"}


def test_check_loads_an_estimator_from_a_file(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text("from estimators import Estimator\n"
                    "mine = Estimator(name='mine', expr='(r - 1)**2 / 2', claims=('nonnegative', 'linear_growth_in_log_ratio'))\n")
    assert main(["check", f"{path}:mine"]) == 1  # (r-1)^2/2 grows like r^2
    out = capsys.readouterr().out
    assert "linear_growth_in_log_ratio" in out and "refuted" in out
    assert main(["check", f"{path}:nothing"]) == 2


def test_gradients_mode_names_agree():
    """`verify gradients --mode` is checked without importing the layer: its list must match."""
    import verify.cli.gradients as command
    from verify.core import claims
    from verify.layers import gradients

    assert command.MODE_NAMES is claims.MODE_NAMES
    assert tuple(mode.name for mode in gradients.MODES) == claims.MODE_NAMES
    assert set(claims.LIBRARY_MODE_NAMES) <= set(claims.MODE_NAMES)


def test_the_gradient_gate(capsys):
    """`verify gradients --expect` exits 1 naming each row that does not give the expected
    gradient (k3 as a loss follows grad KL(p||q): Schulman's k3, not the reverse KL)."""
    assert main(["gradients", "k1", "--mode", "reward", "--expect", "kl_qp"]) == 0
    capsys.readouterr()
    assert main(["gradients", "k3", "--mode", "loss", "--expect", "kl_qp"]) == 1
    err = capsys.readouterr().err
    assert "k3: --expect kl_qp: loss softmax near gives kl_pq, not kl_qp" in err
    assert main(["gradients", "k3", "--expect", "forward"]) == 2
    assert "--expect" in capsys.readouterr().err
