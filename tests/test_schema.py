"""Every --json output and results.json carries schema_version and follows its JSON Schema
(verify/schemas/, package data); the schemas reject what they should."""
import json

import jsonschema
import pytest

import estimators
from verify.api import SCHEMA_VERSION, schema, validate
from verify.cli import main


def _json_of(argv, capsys, codes=(0, 1)):
    code = main(argv)
    out = capsys.readouterr().out
    assert code in codes, out
    document = json.loads(out)
    assert document["schema_version"] == SCHEMA_VERSION
    return document


def test_check_output_follows_its_schema(capsys):
    document = _json_of(["check", "log((r-1)**2 + 1)", "--claims", "nonnegative,unbiased_kl_qp,convex", "--json"],
                        capsys)
    validate(document)
    assert document["kind"] == "check"


def test_check_output_with_floating_claims_follows_its_schema(capsys):
    document = _json_of(["check", "k3", "--claims", "zero_at_one,fp_nonnegative@float32", "--profile", "dev",
                         "--json"], capsys)  # a 16-bit verdict has the same shape: tests/test_floating*.py
    validate(document, "check")


def test_fuzz_output_follows_its_schema(capsys):
    document = _json_of(["fuzz", "examples/naive.py:k3_exp", "--dtypes", "float32", "--profile", "dev", "--json"],
                        capsys)
    validate(document, "fuzz")
    assert document["estimators"]["k3_exp"]["fp_nonnegative@float32"]["verdict"] == "refuted"


def test_moments_output_follows_its_schema(capsys):
    document = _json_of(["moments", "k3", "--p", "t(3, 0, 1)", "--q", "norm(0, 1)", "--json"], capsys, (0,))
    validate(document, "moments")
    assert document["variance"] == "inf"


@pytest.mark.parametrize("argv", [["gradients", "k2", "--mode", "loss", "--json", "--no-cross-check"],
                                  ["gradients", "--mode", "reward", "--json", "--no-cross-check"]],
                         ids=["one-target", "registry"])
def test_gradients_output_follows_its_schema(argv, capsys):
    document = _json_of(argv, capsys, (0,))
    validate(document, "gradients")
    if "items" in document:
        registry = estimators.registry()
        shown = {item["estimator"] for item in document["items"]}
        # every built-in estimator; catalog entries only where their library uses the mode
        assert {name for name, e in registry.items() if e.usage is None} <= shown <= set(registry)
        assert all("reward" in registry[name].usage.kinds for name in shown if registry[name].usage is not None)


def test_results_json_follows_its_schema(tmp_path, monkeypatch, capsys):
    import verify.cli.all as command

    full = estimators.registry()
    monkeypatch.setattr(command, "load_registry", lambda: {"k1": full["k1"], "k3": full["k3"]})
    assert main(["all", "--out", str(tmp_path), "--layers", "symbolic,moments,gradients", "--jobs", "2"]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION
    validate(results, "results")
    assert set(results["choosing"]["value"]) and set(results["choosing"]["gradient"]) == {"softmax", "normal"}


@pytest.mark.parametrize("broken", [
    lambda d: d.pop("schema_version"),
    lambda d: d.update(schema_version=SCHEMA_VERSION + 1),
    lambda d: d["claims"]["nonnegative"].update(verdict="maybe"),
    lambda d: d["claims"]["unbiased_kl_qp"].update(counterexample=None),
    lambda d: d["claims"].update({"not a claim!": d["claims"]["nonnegative"]}),
], ids=["no-version", "other-version", "unknown-verdict", "refuted-without-counterexample", "bad-claim-name"])
def test_schema_rejects_broken_documents(broken):
    verdict = {"verdict": "proved", "method": "m", "detail": "", "counterexample": None}
    document = {"schema_version": SCHEMA_VERSION, "kind": "check", "estimator": "e", "expression": "r - 1",
                "gated": [], "claims": {"nonnegative": dict(verdict),
                                        "unbiased_kl_qp": dict(verdict, verdict="refuted", counterexample={"r": 2.0})}}
    validate(document)
    broken(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


NAIVE = "examples/naive.py:k3_exp"
TERM = "tests/data/hostile.py:term_prints"
EVERY_COMMAND = [  # every command's --json, for each kind of target it takes
    ["check", "k3", "--claims", "zero_at_one"],
    ["check", "r - 1 - log(r)", "--claims", "nonnegative"],
    ["check", NAIVE, "--claims", "zero_at_one,fp_nonnegative@float32", "--profile", "dev"],
    ["check", "examples.naive:k3_exp", "--claims", "fp_finite@float32", "--profile", "dev"],
    ["fuzz", "k1", "--dtypes", "float32", "--profile", "dev"],
    ["fuzz", NAIVE, "--dtypes", "float32", "--profile", "dev"],
    ["moments", "k3", "--p", "norm(0.1, 1)", "--q", "norm(0, 1)"],
    ["moments", "r - 1 - log(r)", "--p", "norm(0.1, 1)", "--q", "norm(0, 1)"],
    ["moments", NAIVE, "--p", "norm(0.1, 1)", "--q", "norm(0, 1)"],
    ["gradients", "k2", "--mode", "loss", "--no-cross-check"],
    ["gradients", "r - 1 - log(r)", "--mode", "reward"],
    ["gradients", NAIVE, "--mode", "loss"],
    ["gradients", TERM, "--framework", "torch"],
    ["gradients", TERM, "--framework", "torch", "--usage", "reward"],
]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=lambda argv: " ".join(argv[:2]) + " " + argv[2][:12])
def test_every_commands_json_validates(argv, capsys):
    document = _json_of(argv + ["--json"], capsys)
    validate(document)
    assert document["kind"] == ("term_gradients" if "torch" in argv else argv[0])


def test_term_gradients_to_json_from_python_validates():
    from verify.api import term_gradients

    report = term_gradients(TERM, usage="loss")
    validate(report.to_json())


@pytest.mark.parametrize("kind", ["check", "fuzz", "moments", "gradients", "term_gradients", "failure", "results",
                                  "sequences"])
def test_schemas_are_valid_and_versioned(kind):
    document = schema(kind)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_the_committed_results_json_follows_its_schema():
    """Every entry of the registry, roll_full (not a function of r) included."""
    from pathlib import Path

    validate(json.loads((Path(__file__).resolve().parent.parent / "reports" / "results.json").read_text()), "results")
