"""choosing.md: which estimator to use, by use (value, reward, loss), the KL meant, the
batch size and the regime, read off the exact rankings in results.json."""
from __future__ import annotations

from verify.report.figures import comparison_files
from verify.report.moments import as_float
from verify.report.text import CLAIMS_DOC, format_number, reference_line, value_with_bound

_TARGET_LABEL = {"kl_qp": "KL(q‖p)", "kl_pq": "KL(p‖q)"}
_REGIME_LABEL = {"near": "near", "mid": "about 0.5", "far": "far"}
_GRADIENT_CLASSES = ("`gradient_of` is the KL whose gradient it equals within the computed error bounds "
                     "(`multiple_of_…`: the right direction, another step size; `biased`: neither; `zero`: "
                     "trains nothing); cos is the cosine with the wanted gradient and ×… the norm ratio "
                     "|E g| / |∇KL| (shown when it is not the wanted gradient). Ranked for the KL you mean: an "
                     "exact match first, then a multiple, then biased ones by cosine with the wanted gradient, "
                     "then zero; equal ranks are ties.")


def choosing_page(results) -> str:
    """The Markdown of choosing.md."""
    choosing = results.get("choosing") or {}
    lines = ["# Which estimator should I use?", "",
             "Rankings from exact computations (no sampling), for the three ways a KL term is used: its value "
             "logged, its value as a penalty in the reward, and the term as a loss. "
             f"Conventions: {results['conventions']}. {reference_line()}", "",
             "Pick the section for your use, the KL you mean (both are shown: the two differ, and the "
             "literature mixes them up), your family of distributions and how far the policies are apart. "
             "A good value estimate is not a good reward: a reward acts through its gradient.", "",
             "- [Value use: logging the KL](#value-use-logging-the-kl)",
             "- [Reward use: a KL penalty in the reward (REINFORCE)](#reward-use-a-kl-penalty-in-the-reward-reinforce)",
             "- [Loss use: the KL term as a loss](#loss-use-the-kl-term-as-a-loss)",
             "- [Every estimator on one plot, per family](#comparison-figures)",
             "- [Sequences: which gradient a per-token loss gives, Rao-Blackwellisation, the best control variate](sequences.md)", ""]
    lines += _in_short_section(choosing)
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
                head = (f"{_REGIME_LABEL.get(regime, regime)}: KL(q‖p) = {format_number(cell['kl_qp'], 3)}, "
                        f"KL(p‖q) = {format_number(cell['kl_pq'], 3)}", f"`{cell['p']}`; `{cell['q']}`") if index == 0 \
                    else ("", "")
                lines.append(f"| {head[0]} | {head[1]} | {n} | "
                             f"{_ranked_list(cell['rankings']['kl_qp'][n], _mse_text)} | "
                             f"{_ranked_list(cell['rankings']['kl_pq'][n], _mse_text)} |")
        lines += [""] + [f"![every estimator on {family}](figures/{path})" for path in comparison_files(results, family)]
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
    lines += [f"- {family}: " + ", ".join(f"[{path}](figures/{path})" for path in comparison_files(results, family))
              for family in value]
    lines.append("")
    return "\n".join(lines)


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


def _in_short_section(choosing) -> list[str]:
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
    return value_with_bound(as_float(entry["mse"]), as_float(entry["abs_error"]), 3)


def _ranked_list(entries, text) -> str:
    """"1. k3 (…) · 1. k1 (…) · 3. k2 (…)": equal numbers are ties."""
    return " · ".join(f"{e['rank']}. {e['estimator']} ({text(e)})" for e in entries)


def _mse_table(cells) -> list[str]:
    """A softmax gradient-MSE ranking, one row per regime and batch size (numeric order)."""
    lines = ["| regime | n | MSE against ∇KL(q‖p) | MSE against ∇KL(p‖q) |", "|---|---|---|---|"]
    for regime, cell in cells.items():
        for index, n in enumerate(_batch_sizes(cell["rankings"]["kl_qp"])):
            head = f"{regime}: KL(q‖p) = {format_number(cell['kl_qp'], 3)}" if index == 0 else ""
            lines.append(f"| {head} | {n} | {_ranked_list(cell['rankings']['kl_qp'][n], _mse_text)} | "
                         f"{_ranked_list(cell['rankings']['kl_pq'][n], _mse_text)} |")
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
            cells = [_ranked_list(cell["rankings"][target], lambda e, t=target: _gradient_text(e, t))
                     for target in ("kl_qp", "kl_pq")]
            lines.append(f"| {regime} | {format_number(cell['kl_qp'], 3)} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return lines


def _gradient_mse_section(table, gradient, estimate) -> list[str]:
    """The exact MSE of a batch-mean gradient on the softmax pairs (reward or loss use)."""
    if not table:
        return []
    return [f"### softmax policy: exact MSE of the batch-mean {gradient}", "",
            f"The mean over n sampled tokens of {estimate} estimates the gradient of the KL you mean with "
            "MSE_n = ‖E g − ∇KL‖² + tr Cov(g)/n: exact sums over the softmax pairs above (mpmath at 30 and "
            "50 digits, their difference is the bound). Ranks and ties as for value use.", ""] + _mse_table(table)


def _gradient_text(entry, target) -> str:
    """What the expected gradient is, and (when it is not the wanted one) its cosine with it
    and its norm relative to it."""
    kind = entry["gradient_of"]
    if kind not in (target, "zero") and isinstance(entry.get("cosine"), float):
        ratio = entry.get("norm_ratio")
        return f"{kind}, cos {entry['cosine']:.4f}" + (f", ×{ratio:.3g}" if isinstance(ratio, float) else "")
    return kind
