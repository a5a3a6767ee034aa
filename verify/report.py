"""Render results.json into Markdown reports and plots, in memory.

Everything here is a pure function of the results record, so the reports can always be
regenerated and compared byte for byte (``verify all --check``).
"""
from __future__ import annotations

import io
import json
import math

from verify.claims import DTYPES, FLOATING, GRADIENT, SYMBOLIC
from verify.report_truncation import truncation_section

RANKING_KL = 0.5  # families are ranked at the sweep pair whose KL(q||p) is nearest this
CLAIMS_DOC = "../docs/claims.md"  # the claims reference, relative to the report folder
DPI = 100
MAX_LINES = 8  # lines per axes: more are not legible
EPS = 2.0 ** -52


def _mark(verdict: str, declared: bool) -> str:
    """A refuted claim is an alarm (bold) only when the estimator declares it; otherwise it
    is a property the estimator does not have, shown plainly."""
    return "**refuted**" if verdict == "refuted" and declared else verdict


def _declares(record, claim) -> bool:
    return claim in record["declared"] or claim.split("@")[0] in record["declared"]


def _reference_line() -> str:
    return (f"What each claim, verdict and gradient mode means: [the claims reference]({CLAIMS_DOC}) "
            "(`kl-verify claims NAME`).")


def _number(value, digits=4):
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return "∞" if value == "inf" else ("-∞" if value == "-inf" else value)
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def _fp_claim_order(claims):
    return [f"{base}@{dtype}" for base in FLOATING for dtype in DTYPES if f"{base}@{dtype}" in claims]


def _canonical(results) -> dict:
    """results as results.json holds them (keys sorted), with each estimator's claims in the
    claims reference's order: the reports are a function of results.json alone, whatever
    order the layers finished in."""
    from verify.claims import expand_claims

    results = json.loads(json.dumps(results, sort_keys=True))
    order = {claim: i for i, claim in enumerate(list(SYMBOLIC) + expand_claims(FLOATING))}
    for record in results.get("estimators", {}).values():
        claims = record.get("claims", {})
        record["claims"] = {c: claims[c] for c in sorted(claims, key=lambda c: (order.get(c, len(order)), c))}
    return results


def render(results, memo=None, only=None) -> dict[str, bytes]:
    """Every report file (path relative to the report folder -> bytes).  ``memo``: a
    ``verify.cache.Cache`` that keeps the figures (their plotting is most of the time a
    run takes when no cell changed), keyed by the data each figure shows and the
    plotting code; the bytes are the same either way.  ``only``: estimator names whose
    own pages and figures are all that is made (``verify all --only``)."""
    results = _canonical(results)
    shown = _shown(results)
    sharing: dict = {}  # catalog entries share value functions: one set of figures per expression
    for name, record in results["estimators"].items():
        sharing.setdefault(record["expression"] or name, []).append(name)

    def estimator_files(name):
        return _estimator_files(name, results["estimators"][name], shown["estimators"][name], sharing, memo)

    if only is not None:
        return {path: content for name in only for path, content in estimator_files(name).items()}
    files = {"results.json": (json.dumps(results, indent=1, sort_keys=True) + "\n").encode()}
    files["README.md"] = _index(results).encode()
    files["choosing.md"] = _choosing(results).encode()
    files.update(_memoized(memo, "comparison", shown["estimators"], lambda: _comparison_figures(results)))
    files["reproductions.md"] = _reproductions(results.get("reproductions")).encode()
    for name in results["estimators"]:
        files.update(estimator_files(name))
    if results.get("libraries"):  # issue 14: the catalog of RL libraries' KL terms
        from verify.report_libraries import FIGURE, libraries_figure, render_libraries

        files["libraries.md"] = render_libraries(results).encode()
        files.update(_memoized(memo, "libraries", shown, lambda: {FIGURE: libraries_figure(results)}))
    return files


def _estimator_files(name, record, shown, sharing, memo) -> dict[str, bytes]:
    """One estimator's page, and its figures when it is the first of the entries that
    share its expression (``sharing``: expression -> the entries with it)."""
    names = sharing[record["expression"] or name]
    files = {f"{name}.md": _estimator_page(name, record, figures=names[0], shared=names).encode()}
    if names[0] == name:
        files.update(_memoized(memo, "estimator", [name, shown, names], lambda: _figures(name, record, shared=names)))
    return files


def _shown(results) -> dict:
    """The results without the cells' fingerprints (no figure shows them)."""
    return {**results, "estimators": {name: {k: v for k, v in record.items() if k != "fingerprints"}
                                      for name, record in results["estimators"].items()}}


def _memoized(memo, kind, shown, make) -> dict[str, bytes]:
    """``make()`` (figure files), or its earlier result for the same data and code."""
    if memo is None:
        return make()
    from importlib import metadata

    from verify import cache

    key = cache.fingerprint({"figures": kind, "data": shown, "matplotlib": metadata.version("matplotlib"),
                             "code": cache.source_closure(["verify.report", "verify.report_libraries"]),
                             "scheme": cache.SCHEME})
    hit, files = memo.get(key)
    if hit and isinstance(files, dict) and all(isinstance(v, bytes) for v in files.values()):
        return files
    files = make()
    memo.put(key, files)
    return files


# ---------------------------------------------------------------------------- index


def _index(results) -> str:
    names = list(results["estimators"])
    lines = ["# KL estimator verification report", "",
             "**[Which estimator should I use? →](choosing.md)** (by use, batch size and KL regime)", "",
             "Generated by `python -m verify all` from `results.json` "
             f"(schema {results['schema_version']}, floating-point profile `{results['profile']}`).", "",
             f"Conventions: {results['conventions']}.", "", _reference_line(), "",
             "Verdicts: proved (symbolic proof or exhaustive enumeration), tested (searched, no "
             "counterexample), refuted (certified counterexample, see the estimator's page), "
             "undecided. A `*` marks a claim the estimator declares; only a declared claim that is refuted "
             "is an alarm (**refuted**\\*): an undeclared refuted claim is a property the estimator does not "
             "claim to have.", ""]
    if results.get("libraries"):
        lines += ["For a library entry the claims are about its f(r): the gradient claims (`loss_grad_*`, "
                  "`reward_grad_kl_qp`) are those of the bare f in the generic modes. How each library's use of "
                  "the term trains (weights, detaches, straight-through) is in [libraries.md](libraries.md).", ""]
    if results["disagreements"]:
        lines += ["## Layer disagreements (harness bugs: the run failed)", ""]
        lines += [f"- {d}" for d in results["disagreements"]] + [""]
    lines += ["## Symbolic claims", ""]
    lines += _matrix(results, list(SYMBOLIC))
    fp = []
    for record in results["estimators"].values():
        fp += [c for c in _fp_claim_order(record["claims"]) if c not in fp]
    if fp:
        lines += ["", "## Floating-point claims", ""]
        lines += _matrix(results, fp)
    lines += ["", "## Ranking at KL(q||p) ≈ 0.5", "",
              "By |relative bias against KL(q||p)| and by std/KL(q||p) at the sweep pair of each family whose "
              "KL(q||p) is nearest 0.5 (exact moments; ∞ = infinite variance). Values within their error bounds "
              "of each other are ties (`=`); a value below its bound prints as 0 (± bound).", ""]
    lines += _ranking(results)
    lines += [""] + truncation_section()
    lines += ["## Pages", ""]
    lines += ["- [Which estimator to use](choosing.md)"]
    if results.get("libraries"):
        lines += ["- [RL libraries' KL terms as they ship: value, gradient, floating point](libraries.md)"]
    lines += [f"- [{name}]({name}.md): `{results['estimators'][name]['expression'] or 'not a function of r'}`" for name in names]
    lines += ["- [Reproductions of the published tables](reproductions.md)", ""]
    return "\n".join(lines)


MATRIX_COLUMNS = 8  # estimators per verdict table: more are not legible


def _matrix_groups(results) -> list[tuple[str, list[str]]]:
    """(caption, names) per verdict table: the built-in estimators, then the catalog entries
    in groups of at most MATRIX_COLUMNS."""
    names = list(results["estimators"])
    catalog = [n for n in names if n in (results.get("libraries") or {})]
    builtin = [n for n in names if n not in catalog]
    groups = [(f"Estimators {', '.join(chunk)}", chunk) for chunk in
              (builtin[i:i + MATRIX_COLUMNS] for i in range(0, len(builtin), MATRIX_COLUMNS))]
    groups += [(f"Library entries {chunk[0]} to {chunk[-1]}", chunk) for chunk in
               (catalog[i:i + MATRIX_COLUMNS] for i in range(0, len(catalog), MATRIX_COLUMNS))]
    return groups


def _matrix(results, claims):
    groups = _matrix_groups(results)
    lines = []
    for caption, names in groups:
        if len(groups) > 1:
            lines += [f"{caption}:", ""]
        lines += _matrix_table(results, claims, names) + [""]
    return lines[:-1]


def _matrix_table(results, claims, names):
    lines = ["| claim | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for claim in claims:
        row = [f"`{claim}`"]
        for name in names:
            record = results["estimators"][name]
            verdict = record["claims"].get(claim)
            if verdict is None:
                row.append("")
                continue
            declared = _declares(record, claim)
            row.append(_mark(verdict["verdict"], declared) + ("\\*" if declared else ""))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _ranking_pair(sweep):
    finite = [m for m in sweep if isinstance(m["kl_qp"], float) and m["kl_qp"] > 0]
    return min(finite, key=lambda m: abs(math.log(m["kl_qp"] / RANKING_KL))) if finite else None


def _float(value):
    if isinstance(value, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(value, math.nan)
    return math.nan if value is None else float(value)


def _std_over_kl(m):
    if m["variance"] == "inf":
        return math.inf
    if not isinstance(m["variance"], float) or not isinstance(m["kl_qp"], float) or m["kl_qp"] == 0:
        return math.nan
    return math.sqrt(max(m["variance"], 0.0)) / m["kl_qp"]


def _relative_bias_bound(m, direction="qp"):
    """Absolute error bound of the relative bias against KL(q||p) or KL(p||q): the bounds of
    the mean and the KL over the KL, plus the rounding of the stored 10 digits."""
    kl = _float(m[f"kl_{direction}"])
    error = _float(m.get("mean_abs_error", 0.0)) + _float(m.get(f"kl_{direction}_abs_error", 0.0))
    bias = _float(m[f"relative_bias_{direction}"])
    if not (math.isfinite(kl) and kl > 0 and math.isfinite(error)):
        return math.nan
    return error / kl * (1 + error / kl) + 1e-9 * abs(bias)


def _std_bound(m):
    """Absolute error bound of std/KL(q||p) from the variance's bound."""
    variance, error, kl = _float(m["variance"]), _float(m.get("variance_abs_error", 0.0)), _float(m["kl_qp"])
    if not (math.isfinite(variance) and math.isfinite(error) and math.isfinite(kl) and kl > 0):
        return 0.0 if math.isinf(variance) else math.nan
    std = math.sqrt(max(variance, 0.0))
    return max(math.sqrt(variance + error) - std, std - math.sqrt(max(variance - error, 0.0))) / kl + 1e-9 * std / kl


def _with_bound(value, bound, digits=2) -> str:
    """A value for a table: ∞, "0 (± b)" when it is smaller than its bound, else the value."""
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if not isinstance(value, float) or math.isnan(value):
        return "n/a"
    if isinstance(bound, float) and math.isfinite(bound) and abs(value) <= bound:
        return f"0 (± {_bound_text(bound)})"
    return _number(value, digits)


def _bound_text(bound: float) -> str:
    """An error bound to one significant digit, rounded up (a printed bound must hold)."""
    if bound <= 0:
        return "0"
    exponent = math.floor(math.log10(bound))
    digit = math.ceil(bound / 10.0 ** exponent * (1 + 1e-12))
    if digit >= 10:
        digit, exponent = 1, exponent + 1
    return f"{digit}e{exponent:+03d}" if not -3 <= exponent <= 3 else f"{digit * 10.0 ** exponent:g}"


def _tied_order(rows) -> str:
    """rows (name, value, bound) -> "a = b < c": sorted, ties when within both bounds.
    A name joins the previous group when its interval meets the group's first interval."""
    def key(row):
        return (math.inf if math.isnan(row[1]) else row[1], row[0])

    rows = sorted(rows, key=key)
    groups: list[list] = []
    for row in rows:
        if groups:
            head = groups[-1][0]
            if (math.isinf(head[1]) and math.isinf(row[1])) or (
                    math.isfinite(head[1]) and math.isfinite(row[1]) and row[1] - row[2] <= head[1] + head[2]):
                groups[-1].append(row)
                continue
        groups.append([row])
    # within a tie, by name: the order of values inside their bounds is noise
    return " < ".join(" = ".join(f"{n} ({_with_bound(v, b, 3)})" for n, v, b in sorted(group)) for group in groups)


def _ranking(results):
    families = []
    for record in results["estimators"].values():
        families += [f for f in record.get("moments", {}) if f not in families]
    if not families:
        return ["(no exact moments)"]
    lines = ["| family | pair (p; q) | by \\|bias\\| | by std/KL |", "|---|---|---|---|"]
    for family in families:
        rows = []
        pair = None
        for name, record in results["estimators"].items():
            sweep = record.get("moments", {}).get(family)
            chosen = _ranking_pair(sweep) if sweep else None
            if chosen is None:
                continue
            pair = pair or chosen
            bias = _float(chosen["relative_bias_qp"])
            rows.append((name, abs(bias) if not math.isnan(bias) else math.inf, _relative_bias_bound(chosen),
                         _std_over_kl(chosen), _std_bound(chosen)))
        if not rows:
            continue
        by_bias = _tied_order([(n, b, e) for n, b, e, _, _ in rows])
        by_std = _tied_order([(n, s, e) for n, _, _, s, e in rows])
        lines.append(f"| {family} | `{pair['p']}`; `{pair['q']}` | {by_bias} | {by_std} |")
    return lines


# -------------------------------------------------------------------- estimator page


def _estimator_page(name, record, figures=None, shared=()) -> str:
    """``figures``: the entry whose figure files show this value function; ``shared``:
    every entry with the same f(r) (the figures are titled by f, not by one of them)."""
    figures = figures or name
    lines = [f"# `{name}`", "", (f"f(r) = `{record['expression']}`" if record["expression"] is not None
                                  else "Not a function of r at one sample (see [the libraries report](libraries.md))."), "",
             _reference_line(), ""]
    if record["source"]:
        lines += [f"Source: {record['source']}", ""]
    if record["description"]:
        lines += [record["description"], ""]
    if record["errors"]:
        lines += ["**Layer errors:**", ""] + [f"- {e}" for e in record["errors"]] + [""]
    if record.get("curve"):
        lines += ["![f against log r](figures/" + figures + "_f.png)", ""]
        if len(shared) > 1:
            lines += [f"The figures of this page are those of f(r), shared by every entry with this f: "
                      f"{', '.join(f'`{n}`' for n in shared)}.", ""]
    lines += ["## Property sheet", "",
              "| claim | declared | verdict | method | detail |", "|---|---|---|---|---|"]
    for claim in list(SYMBOLIC) + _fp_claim_order(record["claims"]):
        verdict = record["claims"].get(claim)
        if verdict is None:
            continue
        declared = _declares(record, claim)
        detail = verdict["detail"].replace("|", "\\|")
        lines.append(f"| `{claim}` | {'yes' if declared else ''} | {_mark(verdict['verdict'], declared)} | "
                     f"{verdict['method']} | {detail} |")
    if any(row.get("as_used") for row in record.get("gradients") or []) and any(c in record["claims"] for c in GRADIENT):
        lines += ["", "The gradient claims (" + ", ".join(f"`{c}`" for c in GRADIENT) + ") are about the bare f(r) "
                  "in the generic modes, not about this library's use of it: that is in "
                  "[Gradients, as the library uses the term](#gradients-as-the-library-uses-the-term)."]
    examples = [(c, v["counterexample"]) for c, v in record["claims"].items() if v.get("counterexample") is not None]
    if examples:
        lines += ["", "### Counterexamples (each re-checks when evaluated)", ""]
        lines += [f"- `{claim}`: `{json.dumps(example, sort_keys=True)}`" for claim, example in examples]
    lines += _worst_errors(record)
    if record.get("moments"):
        lines += ["", "## Exact moments (x ~ q, no sampling)", "",
                  "Relative bias against **both** directions: `bias_qp` = (E_q[f] - KL(q||p)) / KL(q||p), "
                  "`bias_pq` = (E_q[f] - KL(p||q)) / KL(p||q). std = sqrt(Var_q[f]); ∞ = infinite variance.", "",
                  "Figures: a point whose bias is within its error bound is not drawn (it is zero to the "
                  "precision of the computation).", "",
                  f"![relative bias against KL](figures/{figures}_bias.png)",
                  f"![std/KL against KL](figures/{figures}_std.png)", ""]
        for family, sweep in record["moments"].items():
            lines += [f"### {family}", "", "| p | q | KL(q‖p) | KL(p‖q) | E_q[f] | rel. bias qp | rel. bias pq | std/KL(q‖p) |",
                      "|---|---|---|---|---|---|---|---|"]
            for m in sweep:
                lines.append(f"| `{m['p']}` | `{m['q']}` | {_number(m['kl_qp'])} | {_number(m['kl_pq'])} | "
                             f"{_number(m['mean'])} | {_number(m['relative_bias_qp'])} | "
                             f"{_number(m['relative_bias_pq'])} | {_number(_std_over_kl(m))} |")
            lines.append("")
    if record.get("gradients"):
        used = {row["mode"]: row["as_used"] for row in record["gradients"] if row.get("as_used")}
        if used:  # a catalog entry: the modes are its library's uses (libraries.md)
            lines += ["## Gradients, as the library uses the term", "",
                      f"What the expected gradient really is in each use the library makes of the term "
                      f"(`verify gradients {name}` prints these rows; exact sums and quadrature). These are not "
                      "the generic modes of the bare f(r): a weight, a detach or a straight-through trick "
                      "changes the gradient.", ""]
            lines += [f"- {mode}: {text}" for mode, text in used.items()] + [""]
        else:
            lines += ["## Gradients", "",
                      f"What the expected gradient really is, by generic mode (`verify gradients {name}` prints "
                      "these rows; exact sums and quadrature).", ""]
        lines += [
                  "| mode | family | regime | KL(q‖p) | gradient of | cos vs ∇KL(q‖p) | cos vs ∇KL(p‖q) | norm ratio qp | norm ratio pq |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in record["gradients"]:
            lines.append(f"| {row['mode']} | {row['family']} | {row['regime']} | {_number(row['kl_qp'])} | "
                         f"**{row['gradient_of']}** | {_number(row['cosine_kl_qp'])} | {_number(row['cosine_kl_pq'])} | "
                         f"{_number(row['norm_ratio_kl_qp'])} | {_number(row['norm_ratio_kl_pq'])} |")
    return "\n".join(lines) + "\n"


def _worst_errors(record):
    """The worst floating-point error found in each dtype.  One search per dtype backs every
    fp claim of that dtype, so their ``worst`` is one measurement: one row per dtype, with
    the claims it backs (a claim whose ``worst`` differs gets its own row)."""
    groups: list[tuple[dict, list[str]]] = []
    for claim in _fp_claim_order(record["claims"]):
        worst = record["claims"][claim].get("worst")
        if not isinstance(worst, dict) or "ulps" not in worst:
            continue
        dtype = claim.partition("@")[2]
        same = [g for g in groups if g[0] == worst and g[1][0].partition("@")[2] == dtype]
        if same:
            same[0][1].append(claim)
        else:
            groups.append((worst, [claim]))
    if not groups:
        return []
    rows = []
    for worst, claims in sorted(groups, key=lambda g: DTYPES.index(g[1][0].partition("@")[2])):
        at = [worst.get(key) or {} for key in ("ulps_at", "abs_at")]
        names = ", ".join(f"`{c.partition('@')[0]}`" for c in claims)
        rows.append(f"| {claims[0].partition('@')[2]} | {names} | {_number(worst['ulps'])} | "
                    f"`{at[0].get('logp')}`, `{at[0].get('logq')}` | {_number(worst['abs'])} | "
                    f"`{at[1].get('logp')}`, `{at[1].get('logq')}` |")
    return ["", "### Worst floating-point error per dtype", "",
            "Against the exact f at the exact inputs, over every input the dtype's search tried (one search "
            "per dtype decides all its claims); the input (logp, logq) where it occurs.", "",
            "| dtype | claims it backs | worst error (ulps) | at (logp, logq) | worst absolute error | at (logp, logq) |",
            "|---|---|---|---|---|---|"] + rows


# ---------------------------------------------------------------------- reproductions


_EXPLANATIONS = {
    "schulman_2020": "Schulman's tables use q = N(0, 1) and report bias and std relative to the true "
                     "KL(q||p). With equal scales KL(q||p) = KL(p||q), so here both directions agree.",
    "seed_000": "The seed draws x ~ q but divides by KL(p||q) (torch's `kl_divergence(p, q)`). Its "
                "numbers match our bias against **KL(p||q)**; against KL(q||p), the KL that k1 and k3 "
                "estimate without bias, K4's relative bias is large and negative. k1 and k3 show a "
                "relative bias near 1.89 in the seed only because they are compared with the other KL.",
}


def _reproductions(data) -> str:
    lines = ["# Published tables, reproduced", "", _reference_line(), ""]
    if not data:
        return "\n".join(lines + ["(not available)", ""])
    if "error" in data:
        return "\n".join(lines + [f"Error: {data['error']}", ""])
    lines += [f"Exact: quadrature (no sampling). Monte Carlo: the seeds' own method, {data['samples']:,} "
              f"samples from q, numpy seed {data['seed']}. Relative bias = (E_q[f] - KL) / KL, shown "
              "against both KL(q||p) and KL(p||q); std/KL against the KL the table was published against.", ""]
    for name, table in data["tables"].items():
        against = table["published_against"]
        lines += [f"## {table['source']}", "", _EXPLANATIONS.get(name, ""), "",
                  f"Published against `{against}`.", "",
                  "| p | q | estimator | KL(q‖p) | KL(p‖q) | published rel. bias | exact rel. bias vs KL(q‖p) | "
                  "exact rel. bias vs KL(p‖q) | MC rel. bias vs KL(q‖p) | MC rel. bias vs KL(p‖q) | "
                  "published std/KL | exact std/KL | MC std/KL |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in table["rows"]:
            exact, mc, published = row["exact"], row["monte_carlo"], row["published"]
            suffix = "qp" if against == "kl_qp" else "pq"
            lines.append(
                f"| `{row['p']}` | `{row['q']}` | {row['estimator']} | {_number(row['kl_qp'])} | {_number(row['kl_pq'])} | "
                f"{_number(published['relative_bias'])} | {_number(exact['relative_bias_qp'])} | "
                f"{_number(exact['relative_bias_pq'])} | {_number(mc['relative_bias_qp'])} | "
                f"{_number(mc['relative_bias_pq'])} | {_number(published['std_over_kl'])} | "
                f"{_number(exact['std_over_kl_' + suffix])} | {_number(mc['std_over_kl_' + suffix])} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ plots


def _layout(figure):
    """Tight margins, with no minor ticks on log axes: those ticks (dozens per axes, each
    laid out twice) were half of the time the report writer spent on figures."""
    from matplotlib.ticker import NullLocator

    for axes in figure.axes:
        for axis, scale in ((axes.xaxis, axes.get_xscale()), (axes.yaxis, axes.get_yscale())):
            if scale == "log":
                axis.set_minor_locator(NullLocator())
    figure.tight_layout()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_outside(axes, fontsize=8):
    """The legend to the right of the axes, so it never covers data."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _bias_points(sweep, key, x_key="kl_qp"):
    """(KL, |relative bias|) for the pairs whose bias is beyond its error bound (the others
    are zero to the precision of the computation and are not drawn)."""
    direction = key.rsplit("_", 1)[1]
    points = []
    for m in sweep:
        x, y = _float(m[x_key]), _float(m[key])
        bound = _relative_bias_bound(m, direction)
        if math.isfinite(x) and x > 0 and math.isfinite(y) and abs(y) > (bound if math.isfinite(bound) else 0.0):
            points.append((x, abs(y)))
    return points


def _std_points(sweep):
    points, omitted = [], False
    for m in sweep:
        x, y = _float(m["kl_qp"]), _std_over_kl(m)
        if math.isfinite(x) and x > 0 and math.isfinite(y) and y > 0:
            points.append((x, y))
        elif math.isinf(y):
            omitted = True
    return points, omitted


def _zero_note(axes, names, text=None):
    """Say under the panel's title which lines are absent because their bias is zero within
    its bound (outside the axes, so it covers no data)."""
    if names:
        axes.set_title(axes.get_title() + "\nnot drawn, unbiased within bounds: " + (text or ", ".join(names)),
                       fontsize=8)


def _figure_label(record, shared) -> str:
    """Who a figure is about: f(r) itself, and every entry that has this f (wrapped)."""
    import textwrap

    text = f"f(r) = {record['expression']}"
    if len(shared) > 1:
        text += f" (entries: {', '.join(shared)})"
    return "\n".join(textwrap.wrap(text, 90))


def _figures(name, record, shared=()) -> dict[str, bytes]:
    """The f, bias and std figures of one value function, titled by f(r) and the entries
    that share it (``shared``; default: ``name`` alone)."""
    about = _figure_label(record, list(shared) or [name])
    plt = _pyplot()
    files = {}
    if not record.get("curve"):
        return files
    figure, axes = plt.subplots(figsize=(6, 3.5))
    values = [v if isinstance(v, float) else math.nan for v in record["curve"]["f"]]
    axes.plot(record["curve"]["log_ratio"], values, color="C0")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlabel("log r = log p - log q")
    axes.set_ylabel("f(r)")
    axes.set_title(about, fontsize=8)
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        low, high = min(finite), min(max(finite), 20.0)
        axes.set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
    _layout(figure)
    files[f"figures/{name}_f.png"] = _png(figure)
    plt.close(figure)
    all_sweeps = sorted(record.get("moments", {}).items())
    chunks = [all_sweeps[i:i + MAX_LINES] for i in range(0, len(all_sweeps), MAX_LINES)] or [[]]
    # bias: one panel per direction, one line per family, one row per 8 families
    figure, grid = plt.subplots(len(chunks), 2, figsize=(10, 3.8 * len(chunks)), sharey=True, squeeze=False)
    for panels, sweeps in zip(grid, chunks):
        for axes, direction, label in zip(panels, ("qp", "pq"), ("KL(q||p)", "KL(p||q)")):
            zero = []
            for index, (family, sweep) in enumerate(sweeps):
                points = _bias_points(sweep, f"relative_bias_{direction}", f"kl_{direction}")
                if points:
                    axes.loglog(*zip(*points), "-", marker="o", markersize=3, color=f"C{index % 10}", label=family)
                else:
                    zero.append(family)
            axes.set_xlabel(f"true {label}")
            axes.set_title(f"|relative bias| against {label}", fontsize=9)
            _zero_note(axes, zero, "every family" if zero and len(zero) == len(sweeps) else None)
        panels[0].set_ylabel("|relative bias|")
        _legend_outside(panels[1])
    figure.suptitle(f"{about}\npoints within their error bound (zero bias) not drawn", fontsize=9)
    _layout(figure)
    files[f"figures/{name}_bias.png"] = _png(figure)
    plt.close(figure)
    figure, grid = plt.subplots(len(chunks), 1, figsize=(7, 3.8 * len(chunks)), squeeze=False)
    for (axes,), sweeps in zip(grid, chunks):
        omitted = False
        for index, (family, sweep) in enumerate(sweeps):
            points, missing = _std_points(sweep)
            omitted = omitted or missing
            if points:
                axes.loglog(*zip(*points), "-", marker="o", markersize=3, color=f"C{index % 10}", label=family)
        axes.set_xlabel("true KL(q||p)")
        axes.set_ylabel("std / KL(q||p)")
        axes.set_title("std / KL(q||p)" + ("; infinite variance not drawn" if omitted else ""), fontsize=9)
        figure.suptitle(about, fontsize=8)
        _legend_outside(axes)
    _layout(figure)
    files[f"figures/{name}_std.png"] = _png(figure)
    plt.close(figure)
    return files


def _comparison_groups(results) -> list[list[str]]:
    """Estimators with moments, in groups of at most 8 (one figure's lines per axes)."""
    names = [n for n, r in results["estimators"].items() if r.get("moments")]
    return [names[i:i + MAX_LINES] for i in range(0, len(names), MAX_LINES)]


def _comparison_files(results, family) -> list[str]:
    groups = _comparison_groups(results)
    return [f"compare_{family}{'' if len(groups) == 1 else f'_{i + 1}'}.png" for i in range(len(groups))]


def _comparison_figures(results) -> dict[str, bytes]:
    """One figure per family: every estimator on the same axes (at most 8 per axes):
    |relative bias| against KL(q||p), against KL(p||q), and std/KL(q||p)."""
    groups = _comparison_groups(results)
    families = []
    for group in groups:
        for name in group:
            families += [f for f in results["estimators"][name]["moments"] if f not in families]
    if not groups:
        return {}
    plt = _pyplot()
    files = {}
    for group_index, group in enumerate(groups):
        for family in families:
            figure, panels = plt.subplots(1, 3, figsize=(13, 3.8))
            omitted, zero = [], {"qp": [], "pq": []}
            for index, name in enumerate(group):
                sweep = results["estimators"][name]["moments"].get(family)
                if not sweep:
                    continue
                style = dict(marker="os^vD<>p"[index % 8], markersize=3, color=f"C{index % 10}", label=name)
                for axes, direction in zip(panels[:2], ("qp", "pq")):
                    points = _bias_points(sweep, f"relative_bias_{direction}", f"kl_{direction}")
                    if points:
                        axes.loglog(*zip(*points), "-", **style)
                    else:
                        zero[direction].append(name)
                points, missing = _std_points(sweep)
                if missing:
                    omitted.append(name)
                if points:
                    panels[2].loglog(*zip(*points), "-", **style)
            for axes, title, xlabel in zip(panels, ("|relative bias| vs KL(q||p)", "|relative bias| vs KL(p||q)",
                                                    "std / KL(q||p)"),
                                           ("true KL(q||p)", "true KL(p||q)", "true KL(q||p)")):
                axes.set_title(title, fontsize=9)
                axes.set_xlabel(xlabel)
            _zero_note(panels[0], zero["qp"])
            _zero_note(panels[1], zero["pq"])
            note = "; zero bias (within bound) not drawn"
            if omitted:
                note += f"; infinite variance (not drawn) at some pairs: {', '.join(omitted)}"
            figure.suptitle(f"{family}: every estimator{note}", fontsize=9)
            _legend_outside(panels[2])
            _layout(figure)
            files[f"figures/{_comparison_files(results, family)[group_index]}"] = _png(figure)
            plt.close(figure)
    return files


# ---------------------------------------------------------------------- choosing page


_TARGET_LABEL = {"kl_qp": "KL(q‖p)", "kl_pq": "KL(p‖q)"}
_REGIME_LABEL = {"near": "near", "mid": "about 0.5", "far": "far"}


def _first_places(cells) -> dict:
    """estimator -> how many of the ranked lists ``cells`` rank it first (ties included)."""
    counts: dict = {}
    for entries in cells:
        for entry in entries:
            if entry["rank"] == 1:
                counts[entry["estimator"]] = counts.get(entry["estimator"], 0) + 1
    return counts


def _batch_sizes(by_n) -> list[str]:
    """The batch sizes of a ranking in numeric order (results.json sorts keys as strings)."""
    return sorted(by_n, key=int)


def _summary(choosing) -> list[str]:
    """How often each estimator ranks first, per use, KL meant and batch size: the short
    answer, read off the tables below (ties count for every estimator in them)."""
    value = choosing.get("value") or {}
    value_cells = [c for regimes in value.values() for c in regimes.values()]
    columns = []
    for target in ("kl_qp", "kl_pq"):
        for n in ("1", "64", "4096"):
            cells = [c["rankings"][target][n] for c in value_cells if n in c["rankings"].get(target, {})]
            if cells:
                columns.append((f"value (logging), {_TARGET_LABEL[target]}, n = {n}", _first_places(cells), len(cells)))
    for use, key, mse_key in (("reward (REINFORCE)", "reward", "reward_mse"), ("loss", "gradient", "gradient_mse")):
        gradient_cells = [c for regimes in (choosing.get(key) or {}).values() for c in regimes.values()]
        for target in ("kl_qp", "kl_pq"):
            cells = [c["rankings"][target] for c in gradient_cells if target in c["rankings"]]
            if cells:
                columns.append((f"{use}: expected gradient, {_TARGET_LABEL[target]}", _first_places(cells),
                                len(cells)))
            for n in ("1", "64", "4096"):
                cells = [c["rankings"][target][n] for c in (choosing.get(mse_key) or {}).values()
                         if n in c["rankings"].get(target, {})]
                if cells:
                    columns.append((f"{use}: gradient MSE (softmax), {_TARGET_LABEL[target]}, n = {n}",
                                    _first_places(cells), len(cells)))
    if not columns:
        return []
    names = sorted({name for _, counts, _ in columns for name in counts} |
                   {e["estimator"] for c in value_cells for e in c["rankings"]["kl_qp"]["1"]})
    lines = ["## In short", "",
             "How many of the ranked lists below put each estimator first (ties count for every estimator "
             "in them), per use, the KL you mean and the batch size n. Then read the tables for your family "
             "and regime: the best choice changes with both.", "",
             "| use, KL meant, batch size | lists | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for title, counts, total in columns:
        lines.append(f"| {title} | {total} | " + " | ".join(str(counts.get(name, 0)) for name in names) + " |")
    return lines + [""]


def _mse_text(entry) -> str:
    return _with_bound(_float(entry["mse"]), _float(entry["abs_error"]), 3)


def _ranked(entries, text) -> str:
    """"1. k3 (…) · 1. k1 (…) · 3. k2 (…)": equal numbers are ties."""
    return " · ".join(f"{e['rank']}. {e['estimator']} ({text(e)})" for e in entries)


def _mse_table(cells) -> list[str]:
    """A softmax gradient-MSE ranking, one row per regime and batch size (numeric order)."""
    lines = ["| regime | n | MSE against ∇KL(q‖p) | MSE against ∇KL(p‖q) |", "|---|---|---|---|"]
    for regime, cell in cells.items():
        for index, n in enumerate(_batch_sizes(cell["rankings"]["kl_qp"])):
            head = f"{regime}: KL(q‖p) = {_number(cell['kl_qp'], 3)}" if index == 0 else ""
            lines.append(f"| {head} | {n} | {_ranked(cell['rankings']['kl_qp'][n], _mse_text)} | "
                         f"{_ranked(cell['rankings']['kl_pq'][n], _mse_text)} |")
    return lines + [""]


def _gradient_section(rankings, what) -> list[str]:
    """The expected-gradient rankings of one mode, per family and regime."""
    if not rankings:
        return ["(the gradient layer was not run)", ""]
    lines = []
    for family, regimes in rankings.items():
        lines += [f"### {family} policy, {what}", "",
                  "| regime | KL(q‖p) | you mean KL(q‖p) | you mean KL(p‖q) |", "|---|---|---|---|"]
        for regime, cell in regimes.items():
            cells = [_ranked(cell["rankings"][target], lambda e, t=target: _gradient_text(e, t))
                     for target in ("kl_qp", "kl_pq")]
            lines.append(f"| {regime} | {_number(cell['kl_qp'], 3)} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return lines


_GRADIENT_CLASSES = ("`gradient_of` is the KL whose gradient it equals within the computed error bounds "
                     "(`multiple_of_…`: the right direction, another step size; `biased`: neither; `zero`: "
                     "trains nothing); cos is the cosine with the wanted gradient and ×… the norm ratio "
                     "|E g| / |∇KL| (shown when it is not the wanted gradient). Ranked for the KL you mean: an "
                     "exact match first, then a multiple, then biased ones by cosine with the wanted gradient, "
                     "then zero; equal ranks are ties.")


def _gradient_mse_section(table, gradient, estimate) -> list[str]:
    """The exact MSE of a batch-mean gradient on the softmax pairs (reward or loss use)."""
    if not table:
        return []
    return [f"### softmax policy: exact MSE of the batch-mean {gradient}", "",
            f"The mean over n sampled tokens of {estimate} estimates the gradient of the KL you mean with "
            "MSE_n = ‖E g − ∇KL‖² + tr Cov(g)/n: exact sums over the softmax pairs above (mpmath at 30 and "
            "50 digits, their difference is the bound). Ranks and ties as for value use.", ""] + _mse_table(table)


def _choosing(results) -> str:
    choosing = results.get("choosing") or {}
    lines = ["# Which estimator should I use?", "",
             "Rankings from exact computations (no sampling), for the three ways a KL term is used: its value "
             "logged, its value as a penalty in the reward, and the term as a loss. "
             f"Conventions: {results['conventions']}. {_reference_line()}", "",
             "Pick the section for your use, the KL you mean (both are shown: the two differ, and the "
             "literature mixes them up), your family of distributions and how far the policies are apart. "
             "A good value estimate is not a good reward: a reward acts through its gradient.", "",
             "- [Value use: logging the KL](#value-use-logging-the-kl)",
             "- [Reward use: a KL penalty in the reward (REINFORCE)](#reward-use-a-kl-penalty-in-the-reward-reinforce)",
             "- [Loss use: the KL term as a loss](#loss-use-the-kl-term-as-a-loss)",
             "- [Every estimator on one plot, per family](#comparison-figures)", ""]
    lines += _summary(choosing)
    lines += ["## Value use: logging the KL", "",
             "The average of n per-token values estimates the KL with mean squared error "
             "MSE_n = bias² + Var/n, computed from the exact mean and variance of f(r) under q "
             "(reports/&lt;estimator&gt;.md list them). Each MSE has an error bound from the moments' bounds. "
             "**Ranks**: an estimator's rank is 1 + the number of estimators whose MSE is smaller beyond both "
             "error bounds, so equal ranks are ties; a value smaller than its bound prints as 0 (± bound); "
             "∞ = infinite variance (a single token can dominate any batch). This ranks the value only: "
             "for a KL penalty in the reward, see [reward use](#reward-use-a-kl-penalty-in-the-reward-reinforce).",
             ""]
    value = choosing.get("value") or {}
    if not value:
        lines += ["(the exact-moments layer was not run)", ""]
    for family, regimes in value.items():
        lines += [f"### {family}", "", "| regime | pair (p; q) | n | MSE against KL(q‖p) | MSE against KL(p‖q) |",
                  "|---|---|---|---|---|"]
        for regime, cell in regimes.items():
            for index, n in enumerate(_batch_sizes(cell["rankings"]["kl_qp"])):
                head = (f"{_REGIME_LABEL.get(regime, regime)}: KL(q‖p) = {_number(cell['kl_qp'], 3)}, "
                        f"KL(p‖q) = {_number(cell['kl_pq'], 3)}", f"`{cell['p']}`; `{cell['q']}`") if index == 0 \
                    else ("", "")
                lines.append(f"| {head[0]} | {head[1]} | {n} | "
                             f"{_ranked(cell['rankings']['kl_qp'][n], _mse_text)} | "
                             f"{_ranked(cell['rankings']['kl_pq'][n], _mse_text)} |")
        lines += [""] + [f"![every estimator on {family}](figures/{path})" for path in _comparison_files(results, family)]
        lines.append("")
    lines += ["## Reward use: a KL penalty in the reward (REINFORCE)", "",
              "The value f(r) of each sampled token, detached, is subtracted from the reward (mode `reward`, "
              "no baseline): the policy gradient it adds is E_q[f(r) ∇log q_θ], not the gradient of the KL "
              "the value estimates. Only an f with f(r) + log r constant gives ∇KL(q‖p) (claim "
              "`reward_grad_kl_qp`: k1 = −log r); an unbiased value estimate such as k3 follows another "
              "direction, and more weakly. **Ranked by the expected gradient**, the rows "
              "`verify gradients NAME --mode reward` prints (exact sums for a softmax, quadrature for a normal "
              "policy): " + _GRADIENT_CLASSES + " Then, for the softmax pairs, **the exact MSE of the "
              "batch-mean REINFORCE gradient** (bias² + variance/n), where the variance enters.", ""]
    lines += _gradient_section(choosing.get("reward") or {}, "expected REINFORCE gradient")
    lines += _gradient_mse_section(choosing.get("reward_mse"), "REINFORCE gradient", "f(r) ∇log q")
    lines += ["## Loss use: the KL term as a loss", "",
              "Used as a loss (mode `loss`: x ~ q_theta, autograd through log q_theta), what matters is which "
              "gradient the term follows in expectation: the rows `verify gradients NAME --mode loss` prints "
              "(exact sums for a softmax, quadrature for a normal policy). " + _GRADIENT_CLASSES +
              " Other modes (off-policy, importance-weighted, straight-through) are on each estimator's "
              "page; see the [gradient modes](" + CLAIMS_DOC + "#gradient-modes).", ""]
    lines += _gradient_section(choosing.get("gradient") or {}, "loss gradient")
    lines += _gradient_mse_section(choosing.get("gradient_mse"), "loss gradient",
                                   "the per-token loss gradient -r f'(r) ∇log q")
    lines += ["## Comparison figures", "",
              "Every estimator on the same axes, per family of the exact sweep: |relative bias| against "
              "KL(q‖p) and against KL(p‖q), and std/KL(q‖p), against the true KL. Points whose bias is within "
              "its error bound are zero and not drawn. Each family's figure follows its table above:", ""]
    lines += [f"- {family}: " + ", ".join(f"[{path}](figures/{path})" for path in _comparison_files(results, family))
              for family in value]
    lines.append("")
    return "\n".join(lines)


def _gradient_text(entry, target) -> str:
    """What the expected gradient is, and (when it is not the wanted one) its cosine with it
    and its norm relative to it."""
    kind = entry["gradient_of"]
    if kind not in (target, "zero") and isinstance(entry.get("cosine"), float):
        ratio = entry.get("norm_ratio")
        return f"{kind}, cos {entry['cosine']:.4f}" + (f", ×{ratio:.3g}" if isinstance(ratio, float) else "")
    return kind
