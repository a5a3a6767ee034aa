"""The exact layer against 40-digit mpmath references (tests/data/exact_references.json,
made by scripts/make_exact_references.py), closed forms against quadrature, the spec
parser, the CLI, sweeps, reproductions and the cross-check."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from estimators import registry
from verify.errors import UsageError
from verify.cli import main
from verify.run.crosscheck import unbiasedness_disagreements
from verify.layers.exact import (SWEEP_FAMILIES, closed_form_kl, kl_divergences, moments, parse_family,
                          sweep, sweep_moments)
from verify.layers.exact.moments import JSON_KEYS, VALUE_KEYS
from verify.core.expression import as_expression

REFERENCES = json.loads((Path(__file__).parent / "data" / "exact_references.json").read_text())
# The targets: means and KLs to 1e-8 relative, variances to 1e-6 relative.
MEAN_RTOL = 1e-8
KL_RTOL = 1e-8
VARIANCE_RTOL = 1e-6
# Closed form and quadrature must agree to this relative precision (both are far better).
CLOSED_VS_QUADRATURE_RTOL = 1e-10

ESTIMATORS = registry()


def _expr(name):
    return as_expression(ESTIMATORS[name].expr)


def _cases():
    for case in REFERENCES["cases"]:
        yield pytest.param(case, id=f"{case['p'][:40]}|{case['q'][:40]}")


def _check(value, error, literal, rtol, what):
    reference = float(literal["value"])
    assert literal["digits"] >= 20, f"{what}: reference has only {literal['digits']} digits"
    deviation = abs(value - reference)
    assert deviation <= rtol * abs(reference), (
        f"{what}: got {value!r}, reference {reference!r} ({literal['method']}), relative error "
        f"{deviation / abs(reference):.3g} > {rtol}")
    # honest error estimate: the true error never exceeds the reported bound
    # (the reference itself is good to `digits`, far below the bound)
    assert deviation <= error + abs(reference) * 10.0 ** (-literal["digits"] + 1), (
        f"{what}: true error {deviation:.3g} exceeds the reported bound {error:.3g}")


@pytest.mark.parametrize("case", list(_cases()))
def test_moments_match_references(case):
    p, q = parse_family(case["p"]), parse_family(case["q"])
    for name, entry in case["estimators"].items():
        result = moments(_expr(name), p, q)
        _check(result.mean, result.mean_abs_error, entry["mean"], MEAN_RTOL, f"{name} mean")
        if entry["variance"]["value"] == "inf":
            assert result.variance == math.inf, f"{name}: variance should be infinite, got {result.variance!r}"
        else:
            _check(result.variance, result.variance_abs_error, entry["variance"], VARIANCE_RTOL, f"{name} variance")
    _check(result.kl_qp, result.kl_qp_abs_error, case["kl_qp"], KL_RTOL, "KL(q||p)")
    _check(result.kl_pq, result.kl_pq_abs_error, case["kl_pq"], KL_RTOL, "KL(p||q)")


CLOSED_FORM_PAIRS = [
    ("norm(0.02, 1.01)", "norm(0, 1)"), ("norm(-1, 0.4)", "norm(2, 1.7)"),
    ("laplace(0.3, 0.7)", "laplace(-0.2, 1.6)"), ("laplace(0.001, 1)", "laplace(0, 1)"),
    ("poisson(2.5)", "poisson(6)"), ("poisson(40)", "poisson(41)"),
    ("gamma(1.7, scale=0.8)", "gamma(2.4, scale=1.3)"), ("gamma(0.6, 2, 1)", "gamma(0.5, 2, 1.1)"),
    ("beta(0.7, 2.5)", "beta(1.3, 1.1)"), ("beta(4, 4)", "beta(4.1, 3.9)"),
]


@pytest.mark.parametrize("p_spec,q_spec", CLOSED_FORM_PAIRS)
def test_closed_form_kl_agrees_with_quadrature(p_spec, q_spec):
    p, q = parse_family(p_spec), parse_family(q_spec)
    closed = closed_form_kl(p, q)
    assert closed is not None
    quadrature = kl_divergences(p, q, method="quadrature")
    for c, n, label in zip(closed, quadrature, ("KL(q||p)", "KL(p||q)")):
        assert abs(c.value - n.value) <= c.error + n.error, f"{label}: {c} vs {n}"
        assert abs(c.value - n.value) <= CLOSED_VS_QUADRATURE_RTOL * c.value, f"{label}: {c} vs {n}"


def test_categorical_kl_is_the_exact_sum():
    logits_p = np.array([0.3, -1.0, 2.0, 0.0])
    logits_q = np.array([0.0, -0.5, 1.5, 0.2])
    lp = logits_p - np.log(np.sum(np.exp(logits_p)))
    lq = logits_q - np.log(np.sum(np.exp(logits_q)))
    p = parse_family("categorical(logits=[0.3, -1.0, 2.0, 0.0])")
    q = parse_family("categorical(logits=[0.0, -0.5, 1.5, 0.2])")
    kl_qp, kl_pq = kl_divergences(p, q)
    assert kl_qp.value == pytest.approx(float(np.sum(np.exp(lq) * (lq - lp))), rel=1e-13)
    assert kl_pq.value == pytest.approx(float(np.sum(np.exp(lp) * (lp - lq))), rel=1e-13)


def test_logits_from_npy_file(tmp_path):
    path = tmp_path / "logits.npy"
    np.save(path, np.array([0.5, 1.0, -2.0]))
    from_file = parse_family(f"categorical(logits=@{path})")
    inline = parse_family("categorical(logits=[0.5, 1.0, -2.0])")
    other = parse_family("categorical(logits=[0.0, 1.0, -1.0])")
    assert moments(_expr("k3"), from_file, other).mean == moments(_expr("k3"), inline, other).mean


@pytest.mark.parametrize("spec", [
    "", "norm(0, 0)", "norm(0, -1)", "norm(0, 1, 2)", "norm(scale=1, scale=2)", "foo(1)",
    "__import__('os')", "norm(0, 1); x", "norm(loc=nan)", "norm(0, 1e400)", "t(0, 0, 1)",
    "beta(1)", "poisson(mu=-3)", "categorical(logits=[])", "categorical(logits=@/nonexistent.npy)",
    "mixture(weights=[0.5], components=[norm(0,1), norm(1,1)])",
    "mixture(weights=[0.5, 0.5], components=[norm(0,1), poisson(1)])",
    "mixture(weights=[0.5, 0.5], components=[norm(0,1), gamma(2)])",
    "mixture(weights=[0.2, 0.2], components=[norm(0,1), norm(1,1)])",
    "norm(0, 1)(2)", "norm(0, x)", "[norm(0, 1)]", "norm(0, True)",
])
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(UsageError) as info:
        parse_family(spec)
    assert "\n" not in str(info.value)


def test_spec_syntax_refuses_bad_text_without_numpy():
    """verify.core.specs reads a spec before any heavy import (the CLI calls it first);
    verify.api.targets keeps the name."""
    import subprocess
    import sys

    code = ("import sys\nfrom verify.core.specs import spec_syntax\nfrom verify.errors import UsageError\n"
            "try:\n    spec_syntax('norm(0, 1')\nexcept UsageError as error:\n    print(error)\n"
            "print([m for m in ('numpy', 'scipy', 'sympy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["bad distribution spec: syntax error at column 5: '(' was never closed", "[]"]
    from verify.api.targets import spec_syntax
    from verify.core.specs import spec_syntax as in_core

    assert spec_syntax is in_core


def test_different_supports_are_accepted_and_unsupported_overlaps_are_usage_errors():
    # q on the real line, p on a half-line: q has mass 1/2 where r = 0
    result = moments(_expr("k1"), parse_family("gamma(2)"), parse_family("norm(0, 1)"))
    assert result.mean == math.inf and result.kl_qp == math.inf and math.isfinite(result.kl_pq)
    assert result.q_mass_outside_p == pytest.approx(0.5, rel=1e-14)
    with pytest.raises(UsageError, match="overlap"):
        moments(_expr("k1"), parse_family("beta(2, 2)"), parse_family("gamma(2, loc=0.5)"))
    with pytest.raises(UsageError):
        moments(_expr("k1"), parse_family("poisson(2)"), parse_family("norm(0, 1)"))


def test_infinite_variance_detected_by_tail_not_size():
    # E_q[r^2] = int p^2 / q: N(0, s^2) against N(0, 1) diverges iff s^2 >= 2.
    # Just below the threshold the variance is large but finite; just above, infinite.
    q = parse_family("norm(0, 1)")
    finite = moments(_expr("k3"), parse_family("norm(0, 1.4)"), q)
    infinite = moments(_expr("k3"), parse_family("norm(0, 1.42)"), q)
    assert math.isfinite(finite.variance) and finite.variance > 1
    assert infinite.variance == math.inf
    # k4 grows like 2 |log r|: finite variance in the same place
    assert math.isfinite(moments(_expr("k4"), parse_family("norm(0, 1.42)"), q).variance)
    # heavy-tailed p against light-tailed q: Var[k3] infinite, Var[k1] finite
    laplace_q = parse_family("laplace(0, 1)")
    assert moments(_expr("k3"), parse_family("t(3, 0, 1)"), laplace_q).variance == math.inf
    assert math.isfinite(moments(_expr("k1"), parse_family("norm(0, 1)"), laplace_q).variance)


def test_cli_json_keys_and_values(capsys):
    assert main(["moments", "k3", "--p", "norm(0, 2)", "--q", "norm(0, 1)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out)[:2] == ("schema_version", "kind")
    assert set(JSON_KEYS) <= set(out)
    for key in VALUE_KEYS:
        assert key in out and key + "_abs_error" in out, key
    assert out["variance"] == "inf" and "variance" in out["infinite"]
    assert out["estimator"] == "k3"
    assert out["kl_qp"] == pytest.approx(0.5 * (0.25 - 1 - math.log(0.25)), rel=1e-14)
    assert out["kl_pq"] == pytest.approx(0.5 * (4 - 1 - math.log(4)), rel=1e-14)


def test_cli_several_estimators_text_with_bounds(capsys):
    assert main(["moments", "k1,k3,k4", "--p", "t(2, 0, 1)", "--q", "norm(0, 1)"]) == 0
    text = capsys.readouterr().out
    for name in ("k1:", "k3:", "k4:"):
        assert name in text
    assert "KL(p||q)    = inf" in text  # infinite is an answer: exit 0
    assert text.count("±") >= 3 * 6
    assert main(["moments", "--all", "--p", "norm(0.1, 1)", "--q", "norm(0, 1)", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "moments" and "schema_version" in document
    functions_of_r = {name for name, e in ESTIMATORS.items() if e.expr is not None}  # not roll_full
    assert {o["estimator"] for o in document["items"]} == functions_of_r
    # an expression whose commas are inside brackets stays one estimator
    assert main(["moments", "Min(r, 2),k1", "--p", "norm(0.1, 1)", "--q", "norm(0, 1)", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 2


def test_cli_bad_input_exit_2(capsys):
    assert main(["moments", "k3", "--p", "norm(0, -2)", "--q", "norm(0, 1)"]) == 2
    assert main(["moments", "k3", "--p", "norm(0, 2)", "--q", "poisson(1)"]) == 2
    assert main(["moments", "nope", "--p", "norm(0, 2)", "--q", "norm(0, 1)"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err


@pytest.mark.parametrize("family", SWEEP_FAMILIES)
def test_sweeps_are_deterministic_and_span_the_kl_range(family):
    pairs = sweep(family)
    assert pairs == sweep(family)
    results = sweep_moments(_expr("k1"), family)
    kls = [m.kl_qp for m in results]
    assert kls == sorted(kls), "the path moves p away from q"
    assert 1e-5 <= kls[0] <= 1e-3 and 2 <= kls[-1] <= 30


def test_crosscheck_agrees_and_disagrees():
    k1 = sweep_moments(_expr("k1"), "norm") + sweep_moments(_expr("k1"), "poisson")
    k2 = sweep_moments(_expr("k2"), "norm") + sweep_moments(_expr("k2"), "poisson")
    assert unbiasedness_disagreements({"unbiased_kl_qp": "proved", "unbiased_kl_pq": "refuted"}, k1) == []
    wrong = unbiasedness_disagreements({"unbiased_kl_qp": "proved"}, k2)
    assert wrong and all("p = " in message for message in wrong)
    assert unbiasedness_disagreements({"unbiased_kl_pq": "refuted"}, k1) == []
    # equal-scale normals have KL(q||p) = KL(p||q): k1 shows no bias against KL(p||q) on
    # a pure location path, so a refutation must be reported as a disagreement there
    location_only = [moments(_expr("k1"), parse_family(f"norm({d}, 1.0)"), parse_family("norm(0.0, 1.0)"))
                     for d in (0.1, 1.0, 2.0)]
    assert len(unbiasedness_disagreements({"unbiased_kl_pq": "refuted"}, location_only)) == 1
    assert unbiasedness_disagreements({"unbiased_kl_qp": "undecided"}, k2) == []


def test_seed_table_is_bias_against_forward_kl():
    from verify.layers.exact import reproductions

    data = reproductions(samples=20_000)
    rows = {r["estimator"]: r for r in data["tables"]["seed_000"]["rows"]}
    for name, row in rows.items():
        published = row["published"]["relative_bias"]
        # the seed's figures match bias against KL(p||q) (to its Monte Carlo noise) ...
        assert abs(row["exact"]["relative_bias_pq"] - published) < 0.02 * max(1, abs(published))
        # ... and not against KL(q||p), which its samples x ~ q estimate
        assert abs(row["exact"]["relative_bias_qp"] - published) > 0.5
    assert rows["k1"]["exact"]["relative_bias_qp"] == pytest.approx(0, abs=1e-12)


# ---------------------------------------------------------------------------------
# the hard cells: every case against tests/data/hard_cell_references.json
# (made by scripts/make_hard_cell_references.py, mpmath, digits stated per literal)

HARD_CELLS = json.loads((Path(__file__).parent / "data" / "hard_cell_references.json").read_text())
# The targets of the hard cells: values to 1e-9 relative, variances to 1e-5 relative.
HARD_CELL_RTOL = 1e-9
HARD_CELL_VARIANCE_RTOL = 1e-5


def _hard_cell_spec(spec, tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_hard_cell_references.py"
    module_spec = importlib.util.spec_from_file_location("_hard_cell_refs", script)
    module = importlib.util.module_from_spec(module_spec)
    import sys
    sys.path.insert(0, str(script.parent))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(script.parent))
    arrays = {"VOCABULARY_P": lambda: module.vocabulary_pair()[0], "VOCABULARY_Q": lambda: module.vocabulary_pair()[1],
              "BIG_P": lambda: module.big_vocabulary_pair()[0], "BIG_Q": lambda: module.big_vocabulary_pair()[1]}
    if spec not in arrays:
        return spec
    path = tmp_path / f"{spec}.npy"
    np.save(path, arrays[spec]())
    return f"categorical(logits=@{path})"


def _check_value(value, error, literal, rtol, what):
    if literal["value"] == "inf":
        assert value == math.inf, f"{what}: should be infinite ({literal['method']}), got {value!r}"
        return
    reference = float(literal["value"])
    assert math.isfinite(value), f"{what}: got {value!r}, reference {reference!r}"
    deviation = abs(value - reference)
    assert deviation <= rtol * abs(reference), (
        f"{what}: got {value!r}, reference {reference!r}, relative error {deviation / abs(reference):.3g} > {rtol}")
    assert deviation <= error + abs(reference) * 10.0 ** (-literal["digits"] + 1), (
        f"{what}: true error {deviation:.3g} exceeds the reported bound {error:.3g}")


@pytest.mark.parametrize("cell", HARD_CELLS["cells"], ids=lambda c: f"item{c['item']}:{c['p'][:30]}|{c['q'][:30]}")
def test_hard_cells(cell, tmp_path):
    p = parse_family(_hard_cell_spec(cell["p"], tmp_path))
    q = parse_family(_hard_cell_spec(cell["q"], tmp_path))
    names = set(cell.get("mean", {})) | set(cell.get("variance", {})) | set(cell.get("log10_variance", {})) or {"k1"}
    for name in sorted(names):
        result = moments(_expr(name), p, q)
        if name in cell.get("mean", {}):
            _check_value(result.mean, result.mean_abs_error, cell["mean"][name], HARD_CELL_RTOL, f"{name} mean")
        if name in cell.get("variance", {}):
            _check_value(result.variance, result.variance_abs_error, cell["variance"][name],
                         HARD_CELL_VARIANCE_RTOL, f"{name} variance")
        if name in cell.get("log10_variance", {}):
            big = result.big("variance")
            assert big is not None, f"{name}: the variance should be beyond float64, got {result.variance!r}"
            log10, rel, _ = big
            reference = float(cell["log10_variance"][name]["value"])
            # 1e-5 relative on the variance is 4.3e-6 on its log10
            assert abs(log10 - reference) <= math.log10(1 + HARD_CELL_VARIANCE_RTOL)
            assert abs(log10 - reference) <= math.log10(1 + rel) + 1e-9, "bound exceeded"
            text = result.as_json(name)
            assert isinstance(text["variance"], str) and "e+" in text["variance"]
            assert "variance" not in text["infinite"]
    for key in ("kl_qp", "kl_pq", "p_mass_outside_q"):
        if key in cell:
            _check_value(getattr(result, key), getattr(result, key + "_abs_error"), cell[key], HARD_CELL_RTOL, key)


def test_hard_cell_cli_answers_partially(capsys):
    # KL(p||q) diverges logarithmically; the mean and KL(q||p) are still answers, exit 0
    assert main(["moments", "k3", "--p", "t(2, 0, 1)", "--q", "norm(0, 1)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kl_pq"] == "inf" and "kl_pq" in out["infinite"]
    assert isinstance(out["mean"], float) and isinstance(out["kl_qp"], float)
    assert main(["moments", "k3", "--p", "gamma(0.3, scale=2)", "--q", "gamma(0.5)"]) == 0
    assert "infinite" in capsys.readouterr().out


def test_growth_of_the_builtins():
    from verify.layers.exact.evaluate import compile_estimator
    from verify.layers.exact.tails import growth

    def lead(name, direction):
        series = growth(compile_estimator(_expr(name)), direction)
        coef, key = series.terms[0]
        return float(coef), tuple(float(x) for x in key)

    assert lead("k3", 1) == (1.0, (1.0, 0.0, 0.0))      # e^t
    assert lead("k3", -1) == (1.0, (0.0, 1.0, 0.0))     # |t|
    assert lead("k4", 1) == (2.0, (0.0, 1.0, 0.0))      # 2 t
    assert lead("k4", -1) == (pytest.approx(math.log(2)), (0.0, 0.0, 0.0))
    assert lead("k2", 1) == (0.5, (0.0, 2.0, 0.0))
    assert lead("kl_pq", 1) == (1.0, (1.0, 1.0, 0.0))   # t e^t
    assert lead("verl_low_var_kl", 1) == (10.0, (0.0, 0.0, 0.0))  # k3 clamped to [-10, 10]


@pytest.mark.parametrize("p_spec,q_spec,estimator,finite", [
    # E_q[r^2] for t(1.5) against t(2.9995): q r^2 ~ |x|^-1.0005, finite (decided by exponents)
    ("t(1.5, 0, 1)", "t(2.9995, 0, 1)", "k3", True),
    ("t(1.5, 0, 1)", "t(3.0005, 0, 1)", "k3", False),
    ("norm(0, 1.4142)", "norm(0, 1)", "k3", True),
    ("norm(0, 1.4143)", "norm(0, 1)", "k3", False),
    ("gamma(0.3, scale=2)", "gamma(0.5)", "k3", False),
    ("gamma(0.3, scale=1.9)", "gamma(0.5)", "k3", True),
    ("beta(0.5, 1)", "beta(0.8, 1)", "k3", True),    # near 0: q r^2 ~ x^(2 (-0.5) + 0.2) = x^-0.8
    ("beta(0.3, 1)", "beta(0.8, 1)", "k3", False),   # x^(2 (-0.7) + 0.2) = x^-1.2
])
def test_variance_finite_exactly_at_the_threshold(p_spec, q_spec, estimator, finite):
    result = moments(_expr(estimator), parse_family(p_spec), parse_family(q_spec))
    assert math.isfinite(result.mean)
    assert math.isfinite(result.variance) is finite, result.variance
