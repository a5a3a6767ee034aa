"""Rankings never order noise, refuted claims alarm only when declared, figures are legible,
and the choosing page is there and linked first."""
import json
import math
import struct

import pytest

import estimators
from verify import report
from verify.report.estimator_page import estimator_page, worst_errors_table
from verify.report.figures import comparison_figures, comparison_files, comparison_groups, estimator_figures, figure_label
from verify.report.index import VERDICT_TABLE_COLUMNS, verdict_tables
from verify.report.text import bound_text, tied_order, value_with_bound, verdict_markdown
from verify.run.choosing import mse, rank
from verify.cli import main


def test_values_within_their_bounds_tie():
    # the case: k3 at 1.2e-16 and k1 at 2.3e-16 with bounds of 1e-15 are rounding noise
    entries = rank([{"estimator": "k3", "mse": 1.2e-16, "abs_error": 1e-15},
                    {"estimator": "k1", "mse": 2.3e-16, "abs_error": 1e-15},
                    {"estimator": "k2", "mse": 0.5, "abs_error": 1e-15},
                    {"estimator": "k9", "mse": math.inf, "abs_error": 0.0}])
    assert [(e["estimator"], e["rank"]) for e in entries] == [("k1", 1), ("k3", 1), ("k2", 3), ("k9", 4)]
    assert tied_order([("k3", 1.2e-16, 1e-15), ("k1", 2.3e-16, 1e-15), ("k2", 0.5, 1e-15)]) == \
        "k1 (0 (± 2e-15)) = k3 (0 (± 2e-15)) < k2 (0.5)"
    # printed bounds are rounded up, never down
    assert bound_text(1.4e-15) == "2e-15" and bound_text(9.5e-13) == "1e-12"
    assert bound_text(0.031) == "0.04" and bound_text(3e-7) in ("3e-07", "4e-07")
    assert value_with_bound(3e-3, 1e-15) == "0.003"
    assert value_with_bound(math.inf, 0.0) == "∞"


def test_mse_is_bias_squared_plus_variance_over_n():
    moments = {"mean": 1.5, "mean_abs_error": 1e-12, "variance": 4.0, "variance_abs_error": 1e-12,
               "kl_qp": 1.0, "kl_qp_abs_error": 1e-12, "kl_pq": 2.0}
    value, error = mse(moments, "kl_qp", 64)
    assert value == pytest.approx(0.25 + 4.0 / 64, rel=1e-15) and 0 < error < 1e-11
    assert mse(dict(moments, variance="inf"), "kl_qp", 64) == (math.inf, 0.0)
    assert mse(moments, "kl_pq", 1)[0] == pytest.approx(0.25 + 4.0, rel=1e-15)


def test_refuted_is_an_alarm_only_when_declared():
    assert verdict_markdown("refuted", declared=False) == "refuted"
    assert verdict_markdown("refuted", declared=True) == "**refuted**"
    assert verdict_markdown("proved", declared=True) == "proved"


def test_comparison_figures_hold_at_most_8_estimators_per_axes():
    results = {"estimators": {f"e{i}": {"moments": {"norm": []}} for i in range(11)}}
    groups = comparison_groups(results)
    assert [len(g) for g in groups] == [8, 3]
    assert comparison_files(results, "norm") == ["compare_norm_1.png", "compare_norm_2.png"]


def _png_dpi(data: bytes) -> float:
    at = data.index(b"pHYs")
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert unit == 1
    return per_metre * 0.0254


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def small_reports(tmp_path_factory):
    import verify.cli.all as command

    out = tmp_path_factory.mktemp("reports")
    full = estimators.registry()
    original = command.load_registry
    command.load_registry = lambda: {"k1": full["k1"], "k3": full["k3"], "k2": full["k2"]}
    try:
        assert main(["all", "--out", str(out), "--layers", "moments,gradients", "--jobs", "2"]) == 0
    finally:
        command.load_registry = original
    return out


def test_choosing_page_is_linked_first_and_answers_the_question(small_reports, capsys):
    capsys.readouterr()
    readme = (small_reports / "README.md").read_text()
    links = [line for line in readme.splitlines() if "](" in line]
    assert "(choosing.md)" in links[0]
    page = (small_reports / "choosing.md").read_text()
    assert "## Value use" in page and "## Reward use" in page and "## Loss use" in page
    assert "MSE against KL(q‖p)" in page and "MSE against KL(p‖q)" in page
    for regime in ("near", "about 0.5", "far"):
        assert regime in page
    assert "| 4096 |" in page and "| 64 |" in page and "| 1 |" in page
    results = json.loads((small_reports / "results.json").read_text())
    cell = results["choosing"]["value"]["norm"]["near"]["rankings"]["kl_qp"]["64"]
    assert {e["estimator"] for e in cell} == {"k1", "k2", "k3"}
    # k2's loss follows grad KL(q||p): first for a user who means KL(q||p)
    assert results["choosing"]["gradient"]["softmax"]["near"]["rankings"]["kl_qp"][0]["estimator"] == "k2"
    assert results["choosing"]["gradient"]["softmax"]["near"]["rankings"]["kl_pq"][0]["estimator"] == "k3"
    # with many tokens the unbiased gradient wins: k2 for KL(q||p), k3 for KL(p||q) (far pair)
    far = results["choosing"]["gradient_mse"]["far"]["rankings"]
    assert far["kl_qp"]["4096"][0]["estimator"] == "k2" and far["kl_pq"]["4096"][0]["estimator"] == "k3"
    assert "exact MSE of the batch-mean loss gradient" in page
    # the short answer counts first places: at n = 4096 against KL(q||p) the unbiased k1, k3 lead
    summary = next(line for line in page.splitlines() if line.startswith("| value (logging), KL(q‖p), n = 4096 |"))
    cells = [c.strip() for c in summary.strip("|").split("|")]
    header = next(line for line in page.splitlines() if line.startswith("| use, KL meant"))
    names = [c.strip() for c in header.strip("|").split("|")][2:]
    firsts = dict(zip(names, map(int, cells[2:])))
    assert firsts["k2"] < firsts["k3"] and sum(firsts.values()) >= int(cells[1])


def test_figures_are_legible(small_reports):
    figures = sorted((small_reports / "figures").glob("*.png"))
    assert any(p.name.startswith("compare_") for p in figures)
    for path in figures:
        data = path.read_bytes()
        assert _png_dpi(data) >= 99.9, path.name
        width, height = _png_size(data)
        assert width >= 600 and height >= 350, path.name


def test_every_page_links_the_claims_reference(small_reports):
    for path in small_reports.glob("*.md"):
        assert report.CLAIMS_DOC in path.read_text(), path.name


def test_softmax_gradient_mse_agrees_with_a_plain_enumeration():
    """Two computations: verify.run.choosing (mpmath sums of the closed forms) and a direct
    float64 enumeration of E|g - grad KL|^2 and of the per-outcome gradients."""
    import numpy as np

    from verify.layers.gradients import softmax_gradient_mse
    from verify.core.expression import as_expression
    from verify.layers.gradients import PAIRS, expected_gradient

    for text, slope in [("r - 1 - log(r)", lambda r: r - 1), ("log(r)**2/2", np.log)]:
        for pair in (p for p in PAIRS if p.family == "softmax"):
            q = np.exp(pair.theta) / np.exp(pair.theta).sum()
            p = np.exp(pair.p) / np.exp(pair.p).sum()
            r = p / q
            per_sample = [-slope(r[x]) * (np.eye(len(q))[x] - q) for x in range(len(q))]  # -r f'(r) grad log q
            mean = sum(q[x] * per_sample[x] for x in range(len(q)))
            reference, _ = expected_gradient(text, "loss", "softmax", pair.regime)
            assert np.allclose(mean, reference, rtol=1e-12, atol=1e-15)
            grad_qp = sum(q[x] * -np.log(r[x]) * (np.eye(len(q))[x] - q) for x in range(len(q)))
            grad_pq = q - p
            exact = softmax_gradient_mse(as_expression(text), pair.theta, pair.p)
            for target, grad in (("kl_qp", grad_qp), ("kl_pq", grad_pq)):
                brute = sum(q[x] * np.sum((per_sample[x] - grad) ** 2) for x in range(len(q)))  # n = 1
                value, bound = exact[target][1]
                assert value == pytest.approx(brute, rel=1e-10) and bound < 1e-12 * max(value, 1e-300) + 1e-30
                n_mean = np.sum((mean - grad) ** 2) + (brute - np.sum((mean - grad) ** 2)) / 64
                assert exact[target][64][0] == pytest.approx(n_mean, rel=1e-9, abs=1e-18)


def test_every_axes_has_at_most_8_lines(monkeypatch):
    """Count the lines matplotlib draws on each axes, for an estimator with 11 families and
    a registry of 11 estimators."""
    import matplotlib.pyplot as plt

    sweep = [{"kl_qp": k, "kl_pq": k, "relative_bias_qp": 0.1 * k, "relative_bias_pq": 0.2 * k, "mean_abs_error": 0.0,
              "variance": 1.0, "variance_abs_error": 0.0} for k in (0.01, 0.1, 1.0)]
    record = {"expression": "r", "curve": {"log_ratio": [0.0, 1.0], "f": [0.0, 1.0]},
              "moments": {f"family{i}": sweep for i in range(11)}}
    counts = []
    original = plt.close

    def count_then_close(figure):
        counts.extend(len(axes.get_lines()) for axes in figure.axes)
        original(figure)

    monkeypatch.setattr(plt, "close", count_then_close)
    estimator_figures("e", record)
    one_family = dict(record, moments={"family0": sweep})
    comparison_figures({"estimators": {f"e{i}": one_family for i in range(11)}})
    assert counts and max(counts) <= 8 and max(counts) == 8


def test_libraries_cosine_figure_shows_the_whole_cosine_range(monkeypatch):
    """No curve leaves its panel: every axes spans [-1, 1], the range of a cosine, and every
    point drawn is inside its limits (a sweep down to cosine -0.99 here)."""
    import matplotlib.pyplot as plt

    from verify.report.libraries import libraries_figure

    sweep = [{"mode": "loss", "kl_qp": k, "cosine_kl_qp": c} for k, c in ((1e-3, -0.99), (0.1, 0.2), (1.0, 1.0))]
    entry = {"library": "lib", "default_for": ["loss"], "kinds": ["loss"], "sweep": sweep}
    seen = []
    original = plt.close

    def inspect_then_close(figure):
        for axes in figure.axes:
            if axes.get_lines():
                low, high = axes.get_ylim()
                seen.append((low, high))
                for line in axes.get_lines():
                    assert all(low <= y <= high for y in line.get_ydata() if y == y)
        original(figure)

    monkeypatch.setattr(plt, "close", inspect_then_close)
    libraries_figure({"libraries": {"a": entry, "b": dict(entry, library="other")}})
    assert seen and all(low <= -1.0 and high >= 1.0 for low, high in seen)


def test_worst_errors_are_one_row_per_dtype():
    """One search per dtype decides its four fp claims, so its worst error is one number:
    shown once, with the claims it backs (not repeated under four claims)."""
    worst = {"ulps": 0.5, "abs": 16.0, "ulps_at": {"logp": "-1", "logq": "0"}, "abs_at": {"logp": "-2", "logq": "0"}}
    other = dict(worst, ulps=3.0)
    claims = {f"{c}@{d}": {"verdict": "proved", "worst": worst if d == "float16" else other}
              for c in ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")
              for d in ("float16", "float32")}
    lines = worst_errors_table({"claims": claims})
    rows = [line for line in lines if line.startswith("| float")]
    assert [row.split("|")[1].strip() for row in rows] == ["float32", "float16"]
    assert all(row.count("`fp_") == 4 for row in rows)


def test_verdict_tables_are_legible():
    """reports/README.md: at most 8 estimators per verdict table, built-ins apart from the
    library entries, every estimator in exactly one table."""
    names = ["a_lib", "k1", "k3"] + [f"lib{i:02d}" for i in range(17)]
    record = {"declared": [], "claims": {"nonnegative": {"verdict": "proved"}}}
    results = {"estimators": {n: record for n in names},
               "libraries": {n: {} for n in names if n not in ("k1", "k3")}}
    lines = verdict_tables(results, ["nonnegative"])
    headers = [line for line in lines if line.startswith("| claim |")]
    columns = [h.strip("|").split("|")[1:] for h in headers]
    assert all(len(c) <= VERDICT_TABLE_COLUMNS for c in columns)
    assert [c.strip() for c in columns[0]] == ["k1", "k3"]
    assert sorted(n.strip() for c in columns for n in c) == sorted(names)


def test_shared_figures_are_titled_by_f_and_every_entry_sharing_it():
    """A page whose figures are drawn once for every entry with the same f names f and all
    of them (not the one entry that owns the files)."""
    record = {"expression": "r - log(r) - 1"}
    label = figure_label(record, ["k3", "slime_k3", "trl_grpo_k3"])
    assert "r - log(r) - 1" in label and all(n in label.replace("\n", " ") for n in ("k3", "slime_k3", "trl_grpo_k3"))
    page = estimator_page("trl_grpo_k3", {"expression": "r - log(r) - 1", "source": "", "description": "",
                                                  "errors": [], "claims": {}, "curve": {"f": [0.0]}},
                                  figures="k3", shared=["k3", "slime_k3", "trl_grpo_k3"])
    assert "figures/k3_f.png" in page and "`slime_k3`, `trl_grpo_k3`" in page
