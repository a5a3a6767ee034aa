"""Cells with fingerprints and the local cache of `verify all` (verify/run/cache.py): a run
with nothing changed computes nothing and writes the same bytes; each kind of edit
recomputes exactly the cells that depend on it; a bad cache entry is recomputed."""
import json
import shutil
from pathlib import Path

import pytest

import estimators
from verify.run import cache
from verify.run.cache import Cache
from verify.cli import main
from verify.run.collect import _cells, cell_description, collect

REPO = Path(__file__).resolve().parent.parent


def _prints(estimator, layers=("symbolic", "floating", "moments", "gradients"), profile="ci", timeout=10.0):
    return {cell: cache.fingerprint(cell_description(cell, estimator, profile, timeout))
            for cell in _cells(estimator, layers)}


def test_a_second_run_reuses_every_cell_and_writes_the_same_bytes(tmp_path, monkeypatch, capsys):
    import verify.cli.all as command

    full = estimators.registry()
    monkeypatch.setattr(command, "load_registry", lambda: {"k1": full["k1"], "k3": full["k3"]})
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        assert main(["all", "--out", str(out), "--layers", "symbolic,moments", "--cache", str(tmp_path / "c")]) == 0
        outputs.append(capsys.readouterr().out)
    assert "cells: 5 computed, 0 reused" in outputs[0] and "cells: 0 computed, 5 reused" in outputs[1]
    files = sorted(p.relative_to(tmp_path / "first") for p in (tmp_path / "first").rglob("*") if p.is_file())
    assert files and all((tmp_path / "first" / f).read_bytes() == (tmp_path / "second" / f).read_bytes()
                         for f in files)
    assert main(["all", "--out", str(tmp_path / "first"), "--layers", "symbolic,moments", "--fresh", "--check",
                 "--cache", str(tmp_path / "c")]) == 0
    assert "cells: 5 computed, 0 reused" in capsys.readouterr().out


def test_options_and_dependency_versions_invalidate_what_they_should(tmp_path, monkeypatch):
    k1 = estimators.registry()["k1"]
    store, stats = Cache(tmp_path), {}
    collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats, timeout=10.0)
    assert stats == {"computed": 1, "reused": 0}
    collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats, timeout=10.0)
    assert stats == {"computed": 0, "reused": 1}
    collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats, timeout=11.0)  # the layer's option
    assert stats == {"computed": 1, "reused": 0}
    versions = cache.versions()
    monkeypatch.setattr(cache, "versions", lambda: {**versions, "sympy": "0.0.1-faked"})
    collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats, timeout=10.0)
    assert stats == {"computed": 1, "reused": 0}
    # the profile is an option of the floating cells only
    assert _prints(k1, ("symbolic", "moments", "gradients"), profile="dev") == _prints(k1, ("symbolic", "moments",
                                                                                             "gradients"))
    dev, ci = _prints(k1, ("floating",), profile="dev"), _prints(k1, ("floating",))
    assert set(dev) == set(ci) and all(dev[c] != ci[c] for c in ci)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "other key"])
def test_a_bad_cache_entry_is_recomputed_never_trusted(tmp_path, damage):
    k1 = estimators.registry()["k1"]
    store, stats = Cache(tmp_path), {}
    first = collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats)
    (entry,) = [p for p in tmp_path.rglob("*.json")]
    text = entry.read_text()
    data = json.loads(text)
    entry.write_text({"garbage": "\x00not json{", "truncated": text[: len(text) // 2],
                      "foreign": json.dumps({"anything": 1}),
                      "other key": json.dumps({**data, "key": "0" * 64})}[damage])
    again = collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats)
    assert stats == {"computed": 1, "reused": 0} and again == first
    collect({"k1": k1}, layers=("symbolic",), cache=store, stats=stats)
    assert stats == {"computed": 0, "reused": 1}  # the recomputed entry was written back


def test_encoding_round_trips_what_cells_return():
    from verify.layers.exact.moments import Moments

    value = {"a": (1, 2.5, float("inf"), float("nan"), -0.0), 3: [None, True, b"\x89PNG"], "~x": "tilde key",
             "m": Moments("p", "q", *[0.1] * 10, beyond_float64=(("variance", 1e4, 1e-12, 1),))}
    back = cache.decode(json.loads(json.dumps(cache.encode(value))))
    assert repr(back) == repr(value)
    with pytest.raises(TypeError):
        cache.encode(object())


def _copy_of_the_code(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    for package in ("verify", "estimators"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "ROOT", root)
    return root


def test_editing_a_layer_recomputes_that_layers_cells_only(tmp_path, monkeypatch):
    registry = estimators.registry()
    root = _copy_of_the_code(tmp_path, monkeypatch)
    before = {name: _prints(registry[name]) for name in ("k1", "k3", "verl_k1")}
    with open(root / "verify" / "layers" / "symbolic" / "bounds.py", "a") as out:
        out.write("\n# an edit\n")
    after = {name: _prints(registry[name]) for name in before}
    for name in before:
        changed = {cell for cell in before[name] if before[name][cell] != after[name][cell]}
        assert changed == {"symbolic"}, (name, changed)


def test_editing_an_implementation_or_its_helper_recomputes_its_cells_only(tmp_path, monkeypatch):
    registry = estimators.registry()
    root = _copy_of_the_code(tmp_path, monkeypatch)
    names = ("k1", "k3", "verl_k1", "openrlhf_k3")
    before = {name: _prints(registry[name]) for name in names}
    with open(root / "estimators" / "verl.py", "a") as out:  # the estimator's own file
        out.write("\n# an edit\n")
    after = {name: _prints(registry[name]) for name in names}
    changed = {name: {c for c in before[name] if before[name][c] != after[name][c]} for name in names}
    assert changed["verl_k1"] == {f"floating@{d}" for d in ("float64", "float32", "float16", "bfloat16")} | {"gradients"}
    assert changed["k1"] == changed["k3"] == changed["openrlhf_k3"] == set()
    with open(root / "estimators" / "_library.py", "a") as out:  # a helper module the catalog files import
        out.write("\n# an edit\n")
    again = {name: _prints(registry[name]) for name in names}
    assert all(again["openrlhf_k3"][c] != after["openrlhf_k3"][c] for c in changed["verl_k1"])
    assert again["k1"] == after["k1"] and again["k3"] == after["k3"]


def test_a_one_file_estimator_outside_the_repository_follows_its_own_helpers(tmp_path):
    (tmp_path / "helper_kl.py").write_text("import numpy as np\n\ndef k3(t):\n    return np.expm1(t) - t\n")
    (tmp_path / "mine_kl.py").write_text("from helper_kl import k3\n\ndef numeric(logp, logq):\n"
                                         "    return k3(logp - logq)\n")
    import importlib.util
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        spec = importlib.util.spec_from_file_location("mine_kl", tmp_path / "mine_kl.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["mine_kl"] = module
        spec.loader.exec_module(module)
        first = cache.implementation_sources(module.numeric)
        assert {Path(p).name for p in first} >= {"mine_kl.py", "helper_kl.py"}
        (tmp_path / "helper_kl.py").write_text("import numpy as np\n\ndef k3(t):\n    return np.exp(t) - 1 - t\n")
        assert cache.implementation_sources(module.numeric) != first
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mine_kl", None)
        sys.modules.pop("helper_kl", None)
