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
    import verify.cli.all as command
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


def test_only_gates_one_new_estimator_computing_its_cells_only(extra_estimator, tmp_path, capsys):
    """`verify all --only NAME`: a library's CI on its new estimator (the registry's other
    entries are not computed; only the named estimator's own pages are written)."""
    extra_estimator("from estimators import Estimator\n"
                    "mine = Estimator(name='mine', expr='log((r - 1)**2 + 1)', claims=('unbiased_kl_qp',))\n")
    out = tmp_path / "reports"
    code = main(["all", "--only", "mine", "--layers", "symbolic,moments", "--out", str(out), "--cache",
                 str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert code == 1 and "mine: declared claim unbiased_kl_qp is REFUTED" in printed
    assert "cells: 2 computed, 0 reused" in printed  # its symbolic and moments cells, nothing else
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["mine.md"] + sorted(
        p.name for p in (out / "figures").glob("mine_*.png"))
    assert main(["all", "--only", "nobody"]) == 2
    capsys.readouterr()


def test_true_declared_claims_pass_the_gate(extra_estimator, monkeypatch, tmp_path, capsys):
    extra_estimator("from estimators import Estimator\n"
                    "mine = Estimator(name='mine', expr='-log(r) + (r - 1)/2', claims=('unbiased_kl_qp', 'convex'))\n")
    _only_mine(monkeypatch)
    assert main(["all", "--out", str(tmp_path / "reports"), "--layers", "symbolic"]) == 0
    capsys.readouterr()


def test_reports_are_deterministic(tmp_path, monkeypatch, capsys):
    """Two fresh runs write the same bytes: every kind of page (index, choosing, libraries,
    an estimator's, a catalog entry's, figures), on a registry of two built-in estimators
    and two catalog entries.  (The committed reports, all of them, are checked against a
    recomputation in test_recomputed_cells_equal_the_committed_ones.)"""
    import verify.cli.all as command

    full = estimators.registry()
    chosen = {name: full[name] for name in ("k1", "k3", "nemo_rl_k3", "verl_low_var_kl")}
    monkeypatch.setattr(command, "load_registry", lambda: chosen)
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["all", "--out", str(out), "--layers", "symbolic,gradients", "--jobs", "2", "--fresh"]) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert {"README.md", "choosing.md", "libraries.md", "k3.md", "nemo_rl_k3.md"} <= {str(f) for f in files}
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    results = json.loads((first / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION and set(results["estimators"]) == set(chosen)
    assert main(["all", "--out", str(first), "--layers", "symbolic,gradients", "--check"]) == 0
    (first / "k3.md").write_text("stale")
    assert main(["all", "--out", str(first), "--layers", "symbolic,gradients", "--check"]) == 1
    capsys.readouterr()


def _committed():
    return json.loads((REPO / "reports" / "results.json").read_text())


def test_committed_fingerprints_match_the_code():
    """Each cell of the committed results.json was computed from the code as it is now: a
    cell whose declaration, layer code or implementation changed since names itself.
    (`python -m verify all` regenerates; `verify all --fresh --check` recomputes all.)"""
    from verify.run import cache
    from verify.run.collect import _cells, cell_description

    results, registry = _committed(), estimators.registry()
    assert set(results["estimators"]) == set(registry), "an estimator was added or removed: run verify all"
    stale = []
    for name, estimator in registry.items():
        recorded = results["estimators"][name].get("fingerprints", {})
        for cell in _cells(estimator, tuple(results["layers"])):
            now = cache.fingerprint(cell_description(cell, estimator, results["profile"], 10.0))
            if recorded.get(cell) != now:
                stale.append(f"{name} {cell}")
    for cell in ("reproductions", "sequences"):
        now = cache.fingerprint(cell_description(cell, None, results["profile"], 10.0))
        key = "sequence_models_fingerprint" if cell == "sequences" else "reproductions_fingerprint"
        if results.get(key) != now:
            stale.append(cell)
    assert not stale, "stale cells (run python -m verify all): " + ", ".join(stale)


def test_committed_reports_render_from_the_committed_results():
    """Every committed report file is what the report writer makes of results.json now."""
    from verify.report import render

    files = render(_committed())
    on_disk = {str(p.relative_to(REPO / "reports")) for p in (REPO / "reports").rglob("*") if p.is_file()}
    assert on_disk == set(files)
    stale = [path for path, content in files.items() if (REPO / "reports" / path).read_bytes() != content]
    assert not stale, stale


# two exhaustive sweeps recomputed in the suite (the gate, `verify all --fresh --check`, does all)
RECOMPUTED_SWEEPS = (("k1", "floating@float16"), ("k3", "floating@bfloat16"))


def test_recomputed_cells_equal_the_committed_ones():
    """Every symbolic, moments and gradients cell and the reproductions, recomputed now (no
    cache), give the committed results byte for byte, and so do the pages that aggregate them."""
    from verify.run.collect import collect

    committed, registry = _committed(), estimators.registry()
    fresh = collect(registry, profile=committed["profile"], layers=("symbolic", "moments", "gradients"), jobs=2)
    for name, record in fresh["estimators"].items():
        old = committed["estimators"][name]
        symbolic = {c: v for c, v in old["claims"].items() if "@" not in c}
        assert json.dumps(record["claims"], sort_keys=True) == json.dumps(symbolic, sort_keys=True), name
        for key in ("moments", "gradients", "curve", "expression"):
            assert json.dumps(record.get(key), sort_keys=True) == json.dumps(old.get(key), sort_keys=True), (name, key)
    for key in ("reproductions", "choosing", "libraries", "sequences", "sequence_models", "disagreements"):
        if key in committed:
            assert json.dumps(fresh.get(key), sort_keys=True) == json.dumps(committed[key], sort_keys=True), key


@pytest.mark.whole_domain
@pytest.mark.parametrize("name, cell", RECOMPUTED_SWEEPS)
def test_recomputed_sweeps_equal_the_committed_ones(name, cell):
    """Two exhaustive 16-bit sweeps over the whole domain, recomputed now, give the
    committed verdicts, counts, counterexamples and worst errors byte for byte."""
    from verify.run.collect import _layer_task, normalise

    committed = _committed()
    verdicts = normalise(_layer_task(cell, estimators.registry()[name], committed["profile"], 10.0))
    dtype = cell.partition("@")[2]
    old = {c: v for c, v in committed["estimators"][name]["claims"].items() if c.endswith("@" + dtype)}
    assert json.dumps(verdicts, sort_keys=True) == json.dumps(old, sort_keys=True), (name, cell)


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
    from verify.core.expression import as_expression

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
    import verify.cli.all as command
    from verify.run.collect import LAYERS

    assert command.LAYERS == LAYERS
