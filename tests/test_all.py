"""`verify all` as a CI gate: one-file estimators are picked up; a false declared claim
fails with its counterexample; reports are deterministic and committed ones are fresh."""
import json
import sys
from pathlib import Path

import pytest

import estimators
from verify.api import SCHEMA_VERSION
from verify.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def extra_estimator(tmp_path, monkeypatch):
    """Put a one-file estimator module beside the built-ins (no other edit)."""
    def add(source):
        folder = tmp_path / "extra"
        folder.mkdir(exist_ok=True)
        (folder / "mine.py").write_text(source)
        monkeypatch.setattr(estimators, "__path__", list(estimators.__path__) + [str(folder)])
        monkeypatch.delitem(sys.modules, "estimators.mine", raising=False)  # no stale module
    return add


def _only_mine(monkeypatch):
    import verify.commands.all as command
    full = estimators.registry
    monkeypatch.setattr(command, "load_registry", lambda: {"mine": full()["mine"]})


def test_one_file_estimator_is_registered(extra_estimator):
    extra_estimator("from estimators import Estimator\nmine = Estimator(name='mine', expr='(r-1)**2/2')\n")
    assert "mine" in estimators.registry()


def test_false_declared_claim_fails_the_gate_with_counterexample(extra_estimator, monkeypatch, tmp_path, capsys):
    extra_estimator("from estimators import Estimator\n"
                    "mine = Estimator(name='mine', expr='log((r - 1)**2 + 1)', claims=('nonnegative', 'unbiased_kl_qp'))\n")
    _only_mine(monkeypatch)
    code = main(["all", "--out", str(tmp_path / "reports"), "--layers", "symbolic", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(l for l in out.splitlines() if "REFUTED" in l)
    assert "unbiased_kl_qp" in line and "counterexample" in line and '"q"' in line


def test_true_declared_claims_pass_the_gate(extra_estimator, monkeypatch, tmp_path, capsys):
    extra_estimator("from estimators import Estimator\n"
                    "mine = Estimator(name='mine', expr='-log(r) + (r - 1)/2', claims=('unbiased_kl_qp', 'convex'))\n")
    _only_mine(monkeypatch)
    assert main(["all", "--out", str(tmp_path / "reports"), "--layers", "symbolic"]) == 0
    capsys.readouterr()


def test_reports_are_deterministic(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["all", "--out", str(out), "--layers", "symbolic,gradients", "--jobs", "2"]) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    results = json.loads((first / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION and set(results["estimators"]) == set(estimators.registry())
    assert main(["all", "--out", str(first), "--layers", "symbolic,gradients", "--check"]) == 0
    (first / "k3.md").write_text("stale")
    assert main(["all", "--out", str(first), "--layers", "symbolic,gradients", "--check"]) == 1
    capsys.readouterr()


def test_committed_reports_are_fresh(capsys):
    """The reports in reports/ are what `verify all` writes now (CI gate of issue 6)."""
    code = main(["all", "--out", str(REPO / "reports"), "--check"])
    out = capsys.readouterr().out
    assert "are up to date" in out, out[-3000:]
    assert code == 0, out[-3000:]


def test_entry_point_estimators_are_registered(tmp_path, monkeypatch):
    """Another package registers estimators through the group kl_verify.estimators."""
    from importlib.metadata import EntryPoint

    (tmp_path / "other_package_kl.py").write_text(
        "from estimators import Estimator\n"
        "theirs = Estimator(name='theirs', expr='Abs(r - 1)', claims=('nonnegative',))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = EntryPoint(name="theirs", value="other_package_kl:theirs", group=estimators.ENTRY_POINT_GROUP)
    monkeypatch.setattr(estimators, "entry_points",
                        lambda group: [entry] if group == estimators.ENTRY_POINT_GROUP else [])
    found = estimators.registry()
    assert found["theirs"].expr == "Abs(r - 1)" and "k3" in found


def test_counterexamples_in_reports_keep_every_digit(tmp_path, capsys):
    """Floats are rounded in results.json, but a counterexample must re-check from it."""
    from recheck import recheck
    from verify.expression import as_expression

    assert main(["all", "--out", str(tmp_path), "--layers", "symbolic"]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "results.json").read_text())
    registry = estimators.registry()
    checked = 0
    for name, record in results["estimators"].items():
        for claim, verdict in record["claims"].items():
            if verdict["verdict"] == "refuted":
                assert recheck(as_expression(registry[name].expr), claim, verdict["counterexample"]), (name, claim)
                checked += 1
    assert checked > 40


def test_layer_names_agree():
    """`verify all --layers` is parsed without importing the layers: its list must match."""
    import verify.commands.all as command
    from verify.collect import LAYERS

    assert command.LAYERS == LAYERS
