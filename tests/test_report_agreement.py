"""Every gradient statement of the reports says what the CLI says for the same question.

The reports are rendered from a results record; the CLI (`verify gradients NAME --mode
MODE --json`) computes afresh.  Each row of libraries.md's gradient table, of the entry
pages' gradient tables and of choosing.md's reward and loss rankings is parsed back from
the Markdown and compared with the CLI's row for the same (estimator, mode, family,
regime): no row may disagree, and no row may be missing or extra.

Two records are walked: one built here by verify.run.collect for the entries of the issue's
contradictions (and k1, k3 for choosing.md), and the committed reports/results.json for
every entry (test_all.py keeps reports/ equal to what `verify all` writes).
"""
import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest

import estimators
from verify.report import canonical_results
from verify.report.choosing import choosing_page
from verify.report.estimator_page import estimator_page
from verify.cli import main
from verify.report.libraries import render_libraries

REPO = Path(__file__).resolve().parent.parent
# the contradictions: straight-through or importance-weighted terms whose library
# gradient differs from the bare expression's generic loss gradient
CONTRADICTIONS = ("verl_low_var_kl_plus", "trl_grpo_k3_is", "slime_k3_is", "nemo_rl_k3")
CELL = re.compile(r"^\*\*(?P<kind>[a-z_]+)\*\*(?: \(cos (?P<cos>-?[0-9.]+)\))?$")
RANKED = re.compile(r"(?P<rank>\d+)\. (?P<name>\S+) \((?P<text>[^)]*)\)")
REGIMES = (("softmax", "near"), ("softmax", "far"), ("normal", "near"), ("normal", "far"))

_cli_cache: dict = {}


def cli_rows(name, mode=None) -> dict:
    """(mode, family, regime) -> the row `verify gradients NAME [--mode MODE] --json` prints."""
    key = (name, mode)
    if key not in _cli_cache:
        argv = ["gradients", name, "--json", "--no-cross-check"] + (["--mode", mode] if mode else [])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(argv) == 0, argv
        rows = json.loads(out.getvalue())["results"]
        _cli_cache[key] = {(r["mode"], r["family"], r["regime"]): r for r in rows}
    return _cli_cache[key]


def _table(text, heading):
    """The rows (lists of cells) of the first table after the line ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif seen or line.startswith("#"):
            break
    return rows[1:]  # without the header


def _close(text, value, digits):
    """A number as the report printed it agrees with the CLI's value to ``digits`` digits."""
    if value is None:
        return text in ("n/a", "-")
    return math.isclose(float(text), value, rel_tol=10.0 ** (1 - digits), abs_tol=10.0 ** -digits)


# ---------------------------------------------------------------------------- walkers


def check_libraries_page(results, names):
    """libraries.md, "Which gradient it follows": every (entry, use) row is the CLI's."""
    text = render_libraries(results)
    rows = _table(text, "## Which gradient it follows")
    shown = {}
    for cells in rows:
        name, mode = cells[0].strip("`"), cells[1].replace("\\*", "")
        if name in names:
            shown[(name, mode)] = cells
    for name in names:
        expected = cli_rows(name)
        modes = {mode for mode, _, _ in expected}
        assert {m for n, m in shown if n == name} == modes, (name, "uses shown differ from the CLI's")
        for mode in modes:
            cells = shown[(name, mode)]
            assert cells[1].endswith("\\*") == (not expected[(mode, "softmax", "near")]["generic"]), (name, mode)
            for (family, regime), cell in zip(REGIMES, cells[2:]):
                row = expected[(mode, family, regime)]
                match = CELL.match(cell)
                assert match, (name, mode, cell)
                assert match["kind"] == row["gradient_of"], (name, mode, family, regime, cell, row["gradient_of"])
                if match["cos"] is not None:
                    assert match["cos"] == f"{row['cosine_kl_qp']:.4f}", (name, mode, family, regime, cell)


def check_entry_page(results, name):
    """An entry page's gradient table: every row is the CLI's, none missing."""
    record = results["estimators"][name]
    text = estimator_page(name, record)
    heading = next(line for line in text.splitlines() if line.startswith("## Gradients"))
    expected = cli_rows(name)
    shown = {}
    for cells in _table(text, heading):
        mode, family, regime = cells[0], cells[1], cells[2]
        shown[(mode, family, regime)] = cells
    assert set(shown) == set(expected), (name, sorted(set(shown) ^ set(expected)))
    catalog = name in (results.get("libraries") or {})
    assert heading == ("## Gradients, as the library uses the term" if catalog else "## Gradients"), name
    for key, cells in shown.items():
        row = expected[key]
        assert cells[4] == f"**{row['gradient_of']}**", (name, key, cells[4], row["gradient_of"])
        for cell, field in zip(cells[5:9], ("cosine_kl_qp", "cosine_kl_pq", "norm_ratio_kl_qp", "norm_ratio_kl_pq")):
            assert _close(cell, row[field], 4), (name, key, field, cell, row[field])


def check_choosing_page(results):
    """choosing.md: the reward and loss rankings state the CLI's gradient for each estimator
    (`verify gradients NAME --mode reward|loss`), rank an exact match first, and list the
    batch sizes in numeric order."""
    text = choosing_page(results)
    checked = 0
    for mode, what in (("reward", "expected REINFORCE gradient"), ("loss", "loss gradient")):
        headings = [line for line in text.splitlines() if line.startswith("### ") and line.endswith(f", {what}")]
        assert headings, what
        for heading in headings:
            family = heading[4:].split(" policy,")[0]
            for cells in _table(text, heading):
                regime = cells[0]
                for target, cell in zip(("kl_qp", "kl_pq"), cells[2:4]):
                    entries = RANKED.findall(cell)
                    assert entries, cell
                    for rank, name, shown in entries:
                        row = cli_rows(name, mode)[(mode, family, regime)]
                        parts = [p.strip() for p in shown.split(",")]
                        assert parts[0] == row["gradient_of"], (mode, family, regime, name, shown, row["gradient_of"])
                        for part in parts[1:]:
                            if part.startswith("cos "):
                                assert part[4:] == f"{row[f'cosine_{target}']:.4f}", (mode, name, part)
                            else:
                                assert _close(part.lstrip("×"), row[f"norm_ratio_{target}"], 3), (mode, name, part)
                        checked += 1
                    exact = {int(r) for r, n, _ in entries if cli_rows(n, mode)[(mode, family, regime)]["gradient_of"]
                             == target}
                    others = {int(r) for r, n, _ in entries if cli_rows(n, mode)[(mode, family, regime)]["gradient_of"]
                              != target}
                    if exact:  # the estimators whose expected gradient is the wanted one come first
                        assert exact == {1} and all(r > 1 for r in others), (mode, family, regime, target, cell)
    # batch sizes in numeric order within each regime of every MSE table (value, reward, loss)
    tables = 0
    for block in re.findall(r"(?:^\|.*\n?)+", text, flags=re.M):
        lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()]
        if "n" not in lines[0]:
            continue
        tables += 1
        column, sizes = lines[0].index("n"), []
        for cells in lines[2:]:
            if cells[0]:  # a new regime
                assert sizes == sorted(sizes), (lines[0], sizes)
                sizes = []
            sizes.append(int(cells[column]))
        assert sizes == sorted(sizes), (lines[0], sizes)
    assert tables > 0
    return checked


# ------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def small_record():
    """A record from verify.run.collect (the gradient layer only) for the contradictions, k1 and k3."""
    from verify.run.collect import collect

    full = estimators.registry()
    names = CONTRADICTIONS + ("k1", "k3")
    return canonical_results(collect({n: full[n] for n in names}, layers=("gradients",), jobs=2))


def test_library_rows_are_what_the_cli_prints(small_record):
    """The issue's four contradictions: the report's loss row is the library's use of the
    term, as `verify gradients NAME --mode loss` prints it."""
    check_libraries_page(small_record, CONTRADICTIONS)
    for name in CONTRADICTIONS:
        check_entry_page(small_record, name)
        loss = cli_rows(name, "loss")
        shown = [row for row in small_record["estimators"][name]["gradients"] if row["mode"] == "loss"]
        assert [(r["family"], r["regime"], r["gradient_of"]) for r in shown] == \
            [(f, g, loss[("loss", f, g)]["gradient_of"]) for _, f, g in loss], name


def test_choosing_reward_answer_is_the_cli_reward_gradient(small_record):
    """The reward question is ranked by the REINFORCE gradient `verify gradients NAME --mode
    reward` prints (k1 follows grad KL(q||p), k3 does not), not by the value's MSE."""
    text = choosing_page(small_record)
    assert "## Reward use: a KL penalty in the reward (REINFORCE)" in text
    assert check_choosing_page(small_record) > 0
    for name in ("k1", "k3"):
        check_entry_page(small_record, name)
    # the ranking's first place for KL(q||p) is whichever estimator the CLI says follows it
    for family, regimes in small_record["choosing"]["reward"].items():
        for regime, cell in regimes.items():
            followers = {n for n in ("k1", "k3")
                         if cli_rows(n, "reward")[("reward", family, regime)]["gradient_of"] == "kl_qp"}
            first = {e["estimator"] for e in cell["rankings"]["kl_qp"] if e["rank"] == 1}
            assert followers and first == followers, (family, regime, first, followers)


def test_committed_reports_agree_with_the_cli():
    """Every gradient row of the committed record's libraries.md, entry pages and
    choosing.md against a fresh CLI run."""
    results = canonical_results(json.loads((REPO / "reports" / "results.json").read_text()))
    catalog = sorted(results.get("libraries") or {})
    check_libraries_page(results, catalog)
    for name in results["estimators"]:
        if results["estimators"][name].get("gradients"):
            check_entry_page(results, name)
    assert check_choosing_page(results) > 0


@pytest.mark.parametrize("name", CONTRADICTIONS)
def test_api_agrees_with_the_cli(name):
    import verify

    rows = {(r.mode, r.family, r.regime): r.gradient_of for r in verify.gradients(name, ["loss"]).rows}
    assert rows == {key: row["gradient_of"] for key, row in cli_rows(name, "loss").items()}
