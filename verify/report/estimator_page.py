"""One estimator's page (<name>.md): its property sheet, counterexamples, worst
floating-point errors, exact moments and gradients."""
from __future__ import annotations

import json

from verify.core.claims import BACKWARD, DTYPES, GRADIENT, SYMBOLIC
from verify.report.moments import std_over_kl
from verify.report.text import format_number, fp_claims_in_order, is_declared, reference_line, verdict_markdown


def estimator_page(name, record, figures=None, shared=()) -> str:
    """``figures``: the entry whose figure files show this value function; ``shared``:
    every entry with the same f(r) (the figures are titled by f, not by one of them)."""
    figures = figures or name
    lines = [f"# `{name}`", "", (f"f(r) = `{record['expression']}`" if record["expression"] is not None
                                  else "Not a function of r at one sample (see [the libraries report](libraries.md))."), "",
             reference_line(), ""]
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
    for claim in list(SYMBOLIC) + fp_claims_in_order(record["claims"]) + backward_claims_in_order(record["claims"]):
        verdict = record["claims"].get(claim)
        if verdict is None:
            continue
        declared = is_declared(record, claim)
        detail = verdict["detail"].replace("|", "\\|")
        lines.append(f"| `{claim}` | {'yes' if declared else ''} | {verdict_markdown(verdict['verdict'], declared)} | "
                     f"{verdict['method']} | {detail} |")
    lines += _torch_arithmetic_note(name, record)
    if any(row.get("as_used") for row in record.get("gradients") or []) and any(c in record["claims"] for c in GRADIENT):
        lines += ["", "The gradient claims (" + ", ".join(f"`{c}`" for c in GRADIENT) + ") are about the bare f(r) "
                  "in the generic modes, not about this library's use of it: that is in "
                  "[Gradients, as the library uses the term](#gradients-as-the-library-uses-the-term)."]
    examples = [(c, v["counterexample"]) for c, v in record["claims"].items() if v.get("counterexample") is not None]
    if examples:
        lines += ["", "### Counterexamples (each re-checks when evaluated)", ""]
        lines += [f"- `{claim}`: `{json.dumps(example, sort_keys=True)}`" for claim, example in examples]
    lines += worst_errors_table(record)
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
                lines.append(f"| `{m['p']}` | `{m['q']}` | {format_number(m['kl_qp'])} | {format_number(m['kl_pq'])} | "
                             f"{format_number(m['mean'])} | {format_number(m['relative_bias_qp'])} | "
                             f"{format_number(m['relative_bias_pq'])} | {format_number(std_over_kl(m))} |")
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
            lines.append(f"| {row['mode']} | {row['family']} | {row['regime']} | {format_number(row['kl_qp'])} | "
                         f"**{row['gradient_of']}** | {format_number(row['cosine_kl_qp'])} | {format_number(row['cosine_kl_pq'])} | "
                         f"{format_number(row['norm_ratio_kl_qp'])} | {format_number(row['norm_ratio_kl_pq'])} |")
    return "\n".join(lines) + "\n"


def backward_claims_in_order(claims):
    """The backward-pass claims among ``claims`` (``fp_grad_finite@float16``, ...), shown
    after the value claims, by claim then dtype."""
    return [f"{base}@{dtype}" for base in BACKWARD for dtype in DTYPES if f"{base}@{dtype}" in claims]


def worst_errors_table(record):
    """The worst floating-point error found in each dtype.  One search per dtype backs every
    fp claim of that dtype, so their ``worst`` is one measurement: one row per dtype, with
    the claims it backs (a claim whose ``worst`` differs gets its own row)."""
    groups: list[tuple[dict, list[str]]] = []
    for claim in fp_claims_in_order(record["claims"]):
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
        rows.append(f"| {claims[0].partition('@')[2]} | {names} | {format_number(worst['ulps'])} | "
                    f"`{at[0].get('logp')}`, `{at[0].get('logq')}` | {format_number(worst['abs'])} | "
                    f"`{at[1].get('logp')}`, `{at[1].get('logq')}` |")
    return ["", "### Worst floating-point error per dtype", "",
            "Against the exact f at the exact inputs, over every input the dtype's search tried (one search "
            "per dtype decides all its claims); the input (logp, logq) where it occurs.", "",
            "| dtype | claims it backs | worst error (ulps) | at (logp, logq) | worst absolute error | at (logp, logq) |",
            "|---|---|---|---|---|---|"] + rows


def _torch_arithmetic_note(name, record) -> list[str]:
    """For a library that computes in float32: its fp_nonnegative counts with torch's own
    arithmetic (``torch_counts.json``, made by scripts/make_torch_counts.py) beside the
    NumPy ones above, each labelled."""
    import json
    from importlib.resources import files

    measured = json.loads(files("verify.report").joinpath("torch_counts.json").read_text(encoding="utf-8"))
    counts = measured["counts"].get(name)
    if not counts:
        return []
    cells, differ = [], False
    for dtype, count in counts.items():
        verdict = record["claims"].get(f"{measured['claim']}@{dtype}")
        ours = int(verdict["detail"].split(" of ")[0].replace(",", "")) if verdict and verdict["verdict"] == "refuted" \
            else 0
        differ = differ or ours != count
        cells.append(f"{dtype}: {count:,} pairs (NumPy: {ours:,})")
    why = ("NumPy's float32 exp and torch's differ by up to 2 ulps, which flips the sign of the value near "
           "r = 1" if differ else "here both give the same counts")
    return ["", f"**Counted with NumPy's arithmetic.** This library computes in float32, and the counts above "
            f"come from the catalog's NumPy twin of its code (so that `verify all` needs no torch); {why}. The "
            f"library's own function (our re-implementation, `tests/data/library_functions.py`) run with torch "
            f"{measured['torch']}'s CPU arithmetic (`verify fuzz FILE.py:FUNC --framework torch`) fails "
            f"`{measured['claim']}` on {'; '.join(cells)} ({measured['made_by']})."]
