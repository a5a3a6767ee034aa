"""The torch adapter (verify.core.frameworks): torch implementations through every
floating-point path (check, fuzz, exhaustive 16-bit checks, the pytest plugin), with
bit-exact conversions.

torch is an optional extra.  Outside CI these tests are skipped when torch is missing;
with ``CI`` set a missing torch is an error, so CI always runs them for real.
"""
from __future__ import annotations

import json
import os
import sys
from importlib.metadata import entry_points

import ml_dtypes
import numpy as np
import pytest

from estimators import Estimator
from verify.errors import UsageError
from verify.cli import main
from conftest import PART_OF_THE_DOMAIN  # the suite's part of the 16-bit domain


def _torch():
    if os.environ.get("CI"):
        import torch  # noqa: PLC0415 - in CI a missing torch must fail, never skip

        return torch
    return pytest.importorskip("torch")


torch = _torch()

from verify.core import frameworks  # noqa: E402
from verify.layers.floating import check_callable  # noqa: E402

pytest_plugins = ["pytester"]

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
NUMPY_DTYPES = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32),
                "float16": np.dtype(np.float16), "bfloat16": BFLOAT16}
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32,
                "float16": torch.float16, "bfloat16": torch.bfloat16}
UNSIGNED = {8: np.uint64, 4: np.uint32, 2: np.uint16}


def k3_in_input_dtype(logp, logq):
    """k3 as libraries write it, in the dtype of the log-probs (bf16 exp of the log ratio)."""
    log_ratio = logp - logq
    return torch.exp(log_ratio) - 1 - log_ratio


def k1_upcast(logp, logq):
    """-log r formed in float64 and rounded once to the input dtype: correct to 0.5 ulp."""
    return (logq.double() - logp.double()).to(logp.dtype)


def k2_in_input_dtype(logp, logq):
    log_ratio = logp - logq
    return log_ratio * log_ratio / 2


# ------------------------------------------------------------- exact conversions

def test_every_bfloat16_bit_pattern_survives_the_round_trip():
    bits = np.arange(2 ** 16, dtype=np.uint16)
    array = bits.view(BFLOAT16)
    tensor = frameworks.to_torch(array)
    assert tensor.dtype == torch.bfloat16
    assert np.array_equal(frameworks.to_numpy(tensor).view(np.uint16), bits)
    # the values are the same numbers, not just the same bits: compare in float64
    with np.errstate(invalid="ignore"):
        as_float64 = array.astype(np.float64)
    finite = np.isfinite(as_float64)
    assert np.array_equal(tensor.double().numpy()[finite], as_float64[finite])


@pytest.mark.parametrize("name", list(NUMPY_DTYPES))
def test_dtype_and_bits_are_kept(name):
    dtype = NUMPY_DTYPES[name]
    values = np.array([-60.0, -1e-30, -0.0, -1 / 3, -2.5e-8, -7.0], dtype=np.float64).astype(dtype)
    tensor = frameworks.to_torch(values)
    assert tensor.dtype == TORCH_DTYPES[name]
    back = frameworks.to_numpy(tensor)
    assert back.dtype == dtype
    unsigned = UNSIGNED[dtype.itemsize]
    assert np.array_equal(back.view(unsigned), values.view(unsigned))


def test_inputs_are_copies():
    values = np.array([-1.0, -2.0])

    def in_place(logp, logq):
        logp.zero_()
        return logp

    frameworks.as_numpy_callable(in_place, "torch")(values, values)
    assert values.tolist() == [-1.0, -2.0]


def test_torch_results_are_read_back_in_their_own_dtype():
    call = frameworks.as_numpy_callable(k3_in_input_dtype, "torch")
    logp = np.array([-0.5, -3.0], dtype=BFLOAT16)
    logq = np.array([-0.25, -1.0], dtype=BFLOAT16)
    out = call(logp, logq)
    assert out.dtype == BFLOAT16
    expected = k3_in_input_dtype(frameworks.to_torch(logp), frameworks.to_torch(logq))
    assert np.array_equal(out.view(np.uint16), expected.view(torch.int16).numpy().view(np.uint16))


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'kl-verify\[torch\]'"):
        frameworks.as_numpy_callable(k1_upcast, "torch")
    with pytest.raises(UsageError, match=r"kl-verify\[torch\]"):
        check_callable(k1_upcast, "-log(r)", "float16", claims=["fp_finite"], profile="dev", framework="torch")


def test_unknown_framework_is_rejected():
    with pytest.raises(ValueError, match="framework"):
        Estimator(name="x", expr="-log(r)", numeric=k1_upcast, framework="jax")
    with pytest.raises(UsageError, match="framework"):
        check_callable(k1_upcast, "-log(r)", "float32", framework="jax")


# ------------------------------------------------------- floating-point claims

def test_bfloat16_k3_in_the_input_dtype_is_refuted_and_the_counterexample_rechecks_in_torch():
    verdicts = check_callable(k3_in_input_dtype, "(r - 1) - log(r)", "bfloat16", claims=["fp_nonnegative"],
                              profile="dev", framework="torch")
    verdict = verdicts["fp_nonnegative"]
    assert verdict.verdict == "refuted"
    example = verdict.counterexample
    assert example["dtype"] == "bfloat16"
    # re-check in torch, from the printed numbers alone
    logp = torch.tensor([example["logp"]], dtype=torch.float64).to(torch.bfloat16)
    logq = torch.tensor([example["logq"]], dtype=torch.float64).to(torch.bfloat16)
    assert logp.double().item() == example["logp"] and logq.double().item() == example["logq"]
    value = k3_in_input_dtype(logp, logq)
    assert value.dtype == torch.bfloat16
    assert value.double().item() < 0
    assert value.double().item() == example["value"]
    assert example["exact"] > 0


def test_a_careful_torch_implementation_passes():
    claims = ["fp_finite", "fp_accurate", "fp_matches_expression"]
    verdicts = {f"{claim}@{dtype}": verdict for dtype in ("float32", "bfloat16")
                for claim, verdict in check_callable(k1_upcast, "-log(r)", dtype, claims=claims, profile="dev",
                                                     framework="torch").items()}
    # float32 is searched (tested); bfloat16 is enumerated pair by pair (proved)
    assert {c: v.verdict for c, v in verdicts.items()} == {
        f"{claim}@{dtype}": ("tested" if dtype == "float32" else "proved")
        for claim in ("fp_finite", "fp_accurate", "fp_matches_expression") for dtype in ("float32", "bfloat16")}, verdicts


def test_exhaustive_bfloat16_check_runs_through_torch():
    verdicts = check_callable(k2_in_input_dtype, "log(r)**2 / 2", "bfloat16", claims=["fp_nonnegative"],
                              profile="thorough", framework="torch")
    verdict = verdicts["fp_nonnegative"]
    assert verdict.verdict == "proved" and verdict.method == "exhaustive enumeration"


ESTIMATOR_FILE = '''
import torch
from estimators import Estimator

def k3_torch(logp, logq):
    log_ratio = logp - logq
    return torch.exp(log_ratio) - 1 - log_ratio

k3_bf16 = Estimator(name="k3_bf16", expr="(r - 1) - log(r)", numeric=k3_torch, framework="torch",
                    claims=("fp_nonnegative@bfloat16",))
'''


@pytest.mark.parametrize("command", [
    ["check", "{file}:k3_bf16", "--claims", "fp_nonnegative@bfloat16", "--json", "--profile", "dev"],
    ["fuzz", "{file}:k3_bf16", "--dtypes", "bfloat16", "--json", "--profile", "dev"],
], ids=["check", "fuzz"])
def test_cli_refutes_a_torch_estimator(tmp_path, capsys, command):
    path = tmp_path / "my_kl.py"
    path.write_text(ESTIMATOR_FILE)
    code = main([part.format(file=path) for part in command])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    claims = out["claims"] if "claims" in out else out["estimators"]["k3_bf16"]
    assert claims["fp_nonnegative@bfloat16"]["verdict"] == "refuted"


PLUGIN_TESTS = '''
import torch

def k3_torch(logp, logq):
    log_ratio = logp - logq
    return torch.exp(log_ratio) - 1 - log_ratio

def k1_torch(logp, logq):
    assert isinstance(logp, torch.Tensor) and logp.dtype == torch.bfloat16
    return (logq.double() - logp.double()).to(logp.dtype)

def test_good(kl_fp_claims):
    kl_fp_claims(k1_torch, "-log(r)", claims=["fp_finite", "fp_accurate"], dtypes=["bfloat16"],
                 framework="torch")

def test_naive(kl_fp_claims):
    kl_fp_claims(k3_torch, "(r - 1) - log(r)", claims=["fp_nonnegative"], dtypes=["bfloat16"],
                 framework="torch")
'''


# a session in a subprocess sweeps the suite's part of the domain too (the same code runs)
SWEEP_PART = f"import verify.layers.floating.tolerances\nverify.layers.floating.tolerances.SWEEP_DOMAIN = {PART_OF_THE_DOMAIN!r}\n"


def test_pytest_plugin_with_torch(pytester, monkeypatch):
    # the subprocess imports this checkout's verify (not another installed copy)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    pytester.makeconftest(SWEEP_PART)
    installed = any(e.name == "kl_verify" for e in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "verify.pytest_plugin"]
    result = pytester.runpytest_subprocess(*load, "--kl-verify-profile", "dev", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*fp_nonnegative@bfloat16: refuted*", "*counterexample*"])
    result.stdout.no_fnmatch_line("*implementation failed*")


NO_TORCH_SCRIPT = '''
import sys
from estimators import registry
from verify import cli, report
from verify.run import collect
from verify.layers import floating, gradients
from verify.cli import all as all_command

cli.build_parser()
estimator = registry()["k3"]
floating.fp_results_for_report(estimator, profile="dev", dtypes=("bfloat16",))
floating.check_claims(estimator, ["fp_nonnegative"], "float16", profile="dev")
gradients.gradient_table(estimator, ["loss"])
print("torch imported" if "torch" in sys.modules else "torch not imported")
'''


def test_the_numpy_path_never_imports_torch(tmp_path):
    """`verify all` runs these modules and calls; torch is an optional extra."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", SWEEP_PART + NO_TORCH_SCRIPT], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "torch not imported"
