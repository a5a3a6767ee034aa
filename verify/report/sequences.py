"""sequences.md: the sequence-level answers of issue 22 (per-token loss gradients, the
Rao-Blackwellised estimator, the variance-optimal control variate) on the documented
models, from results.json's "sequence_models" (the cell ``verify.api.cells.sequences_cell``)."""
from __future__ import annotations

import math

from verify.report.figures import lay_out, png_bytes, pyplot
from verify.report.text import format_number, reference_line

__all__ = ["sequences_page", "sequences_figures", "VARIANCE_FIGURE", "GRADIENT_FIGURE"]

VARIANCE_FIGURE = "figures/sequences_variance.png"
GRADIENT_FIGURE = "figures/sequences_gradients.png"
_TERMS = (("k1_loss", "Σ_t k1_t as a loss"), ("k2_loss", "Σ_t k2_t as a loss"), ("k3_loss", "Σ_t k3_t as a loss"),
          ("k1_reward", "Σ_t k1_t as a REINFORCE reward"))
# (label, estimator, key) of the variance figure's lines
_VARIANCES = (("MC k1 (sum of k1)", "k1", "mc_variance"), ("MC k3", "k3", "mc_variance"),
              ("Rao-Blackwellised k1", "k1", "rb_variance"), ("Rao-Blackwellised k3", "k3", "rb_variance"))


def _number(value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return math.inf if value == "inf" else (-math.inf if value == "-inf" else float(value))
    return float(value)


def _bounded(record, key, digits=4) -> str:
    """value ± bound, or ∞ / n/a."""
    value, bound = record.get(key), record.get(key + "_abs_error")
    if value is None or isinstance(value, str):
        return format_number(value, digits)
    if isinstance(bound, (int, float)) and bound > 0 and abs(value) <= bound:
        return f"0 (± {bound:.0e})"
    return format_number(value, digits)


def _sweeps(data):
    return [sweep for sweep in data.get("sweeps", []) if sweep.get("models")]


def sequences_page(results) -> str:
    """The Markdown of sequences.md."""
    data = results.get("sequence_models") or {}
    lines = ["# Beyond one token: exact sequence-level KL, estimators and gradients", "",
             "In LLM training the KL that matters is between sequence distributions, estimated from one sampled "
             "sequence by summing per-token terms. This page answers three questions exactly, on small "
             "tabular autoregressive models where every one of the V^T sequences is summed (no sampling): "
             "`kl-verify sequences [ESTIMATOR,...] --p-logits P.npy --q-logits Q.npy` computes the same for your "
             f"own tables. Conventions: y ~ q (the policy), r_t = p(y_t | y_<t) / q(y_t | y_<t). {reference_line()}",
             ""]
    if "error" in data:
        return "\n".join(lines + [f"The sequence models were not computed: {data['error']}", ""])
    sweeps = _sweeps(data)
    if not sweeps:
        return "\n".join(lines + ["(the gradient layer was not run)", ""])
    lines += ["Every number comes with an error bound that holds (midpoint-radius arithmetic over the prefix-tree "
              "recursions, `verify/layers/gradients/sequence_models.py`); the tables show values, and a value "
              "smaller than its bound prints as 0 (± bound). An independent mpmath enumeration checks them in "
              "`tests/test_sequence_models.py`.", "", "## The models", "",
              "Each sweep fixes q and moves p away from it along one random direction: q's logits are standard "
              "normals (numpy PCG64, the seed below), p's are q's plus *spread* times another standard normal "
              "table (`verify/layers/gradients/sequence_examples.py`).", "",
              "| sweep | model | sequences | seed | spreads |", "|---|---|---|---|---|"]
    for sweep in sweeps:
        lines.append(f"| {sweep['name']} | {sweep['description']} | {sweep['sequences']:,} | {sweep['seed']} | "
                     f"{', '.join(format_number(s, 3) for s in sweep['spreads'])} |")
    lines += [""] + _gradient_section(sweeps) + _library_section(sweeps) + _variance_section(sweeps)
    lines += _control_section(sweeps, data)
    lines += _truncation_section(sweeps)
    return "\n".join(lines)


def _gradient_section(sweeps):
    lines = ["## 1. Which gradient does a per-token KL loss give?", "",
             "The gradient of the sequence KL(q‖p) with respect to q's logits is "
             "E[Σ_t (Σ_{s≥t} k1_s) ∇log q(y_t | y_<t)] (the reward to go; Tang & Munos 2025, arXiv 2506.09477). "
             "A per-token loss Σ_t f(r_t), differentiated through log q with the sample fixed, weights each score "
             "by its own token only. Below: the cosine of each expected gradient with ∇KL(q‖p) of the sequence "
             "and the relative error |E g − ∇KL| / |∇KL|.", "",
             "- **k1 as a per-token loss trains nothing**: its expected gradient is exactly the zero vector "
             "(the score has mean 0).",
             "- **k2 and k3 as per-token losses are not the sequence gradient**: they miss the future terms; "
             "the cosine stays high between near models, but the relative error grows with the distance.",
             "- **The summed k1 as a REINFORCE reward is exact** (relative error 0 within its bound): the past "
             "terms have mean 0.", "", f"![gradient cosines]({GRADIENT_FIGURE})", ""]
    for sweep in sweeps:
        lines += [f"### {sweep['name']}: {sweep['description']}", "",
                  "| spread | KL(q‖p) | " + " | ".join(f"{label}: cos / rel. error" for _, label in _TERMS) + " |",
                  "|---|---|" + "---|" * len(_TERMS)]
        for model in sweep["models"]:
            cells = []
            for term, _ in _TERMS:
                record = model["gradients"][term]
                cosine = "zero vector" if term == "k1_loss" else _bounded(record, "cosine_to_grad_kl_qp")
                cells.append(f"{cosine} / {_bounded(record, 'relative_error')}")
            lines.append(f"| {format_number(model['spread'], 3)} | {_bounded(model, 'kl_qp')} | {' | '.join(cells)} |")
        lines.append("")
    return lines


def _library_section(sweeps):
    """Every catalog entry's on-policy modes at sequence level; entries whose cells all
    agree share a row."""
    columns = [(sweep, model) for sweep in sweeps for model in sweep["models"]
               if any(":" in name for name in model["gradients"])]
    if not columns:
        return []
    rows = {}
    for name in columns[0][1]["gradients"]:
        if ":" not in name:
            continue
        cells = []
        for _, model in columns:
            record = model["gradients"].get(name)
            if record is None:
                cells.append("n/a")
                continue
            cosine = _bounded(record, "cosine_to_grad_kl_qp", 3)
            cells.append(f"{'zero vector' if cosine == 'n/a' else cosine} / {_bounded(record, 'relative_error', 3)}")
        rows.setdefault(tuple(cells), []).append(name)
    description = {name: record.get("description", "") for name, record in columns[0][1]["gradients"].items()}
    lines = ["## 1b. The library options at sequence level", "",
             "Each catalog entry in its library's on-policy modes (`kl-verify sequences --gradients ENTRY,...`; "
             "`--term FILE.py:FUNC` does the same for your own torch code): as a **loss**, the per-token term "
             "differentiated through log q with the sample fixed (clamps, weights and straight-through tricks as "
             "the library writes them); as a **reward**, its value detached in REINFORCE with the reward to go; "
             "TRL's sequence-level weight exp(mean_t log(q_θ/q_old)) puts (1/T) Σ_t k3_t on every position's "
             "score. Terms are summed over positions (a library that averages over tokens divides the gradient "
             "by T: the cosine is the same, the relative error is not). Cells: cosine with ∇KL(q‖p) of the "
             "sequence / relative error; options that agree in every cell share a row.", "",
             "| entry:mode | how it enters | " + " | ".join(
                 f"{sweep['name']} spread {format_number(model['spread'], 3)}" for sweep, model in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for cells, names in rows.items():
        texts = {description.get(name, "") for name in names}
        how = texts.pop().replace("|", "\\|") if len(texts) == 1 else "different code, the same gradient"
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {how} | {' | '.join(cells)} |")
    exact = [names for cells, names in rows.items()
             if all(cell.split(" / ")[1].startswith("0 (") for cell in cells)]
    if exact:
        lines += ["", "Exact in every model (relative error 0 within its bound): "
                  + ", ".join(f"`{n}`" for names in exact for n in names) + "."]
    return lines + [""]


def _ratio(numerator, denominator):
    a, b = _number(numerator), _number(denominator)
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return "n/a"
    return f"{a / b:.3g}"


def _variance_section(sweeps):
    lines = ["## 2. How much variance does the Rao-Blackwellised estimator remove?", "",
             "Summing, at each position of the sampled sequence, the exact next-token value E_{y'~q(·|y_<t)} f "
             "instead of f at the sampled token keeps the mean and can only lower the variance (Amini et al. "
             "2025, arXiv 2504.10637; ROLL ships it as \"full\"). Exact variances of one sequence's estimate "
             "(k1 and k3 summed over positions; the figure adds the optimal control variate of section 3):", "",
             f"![variances]({VARIANCE_FIGURE})", ""]
    for sweep in sweeps:
        lines += [f"### {sweep['name']}", "",
                  "| spread | KL(q‖p) | Var MC k1 | Var MC k3 | Var RB k1 | Var RB k3 | Var MC k3 / Var RB k3 |",
                  "|---|---|---|---|---|---|---|"]
        for model in sweep["models"]:
            k1, k3 = model["estimators"]["k1"], model["estimators"]["k3"]
            lines.append(f"| {format_number(model['spread'], 3)} | {_bounded(model, 'kl_qp')} | "
                         f"{_bounded(k1, 'mc_variance')} | {_bounded(k3, 'mc_variance')} | "
                         f"{_bounded(k1, 'rb_variance')} | {_bounded(k3, 'rb_variance')} | "
                         f"{_ratio(k3['mc_variance'], k3['rb_variance'])} |")
        lines.append("")
    lines += ["Where q samples every token p allows, the Rao-Blackwellised k1 and k3 are the same random variable "
              "(E_q[k3 | y_<t] = E_q[k1 | y_<t] = the next-token KL), so their variances agree. Summing k2 "
              "estimates neither KL (its mean is in the JSON of `kl-verify sequences`).", ""]
    return lines


def _control_section(sweeps, data):
    lines = ["## 3. What is the best control variate?", "",
             "k3 is k1 plus the control variate r − 1 (mean 0 under q): −log r + λ (r − 1) at λ = 1. The variance "
             "is a quadratic in λ, smallest at λ* = −Cov(Σ_t k1_t, Σ_t (r_t − 1)) / Var(Σ_t (r_t − 1)). "
             "Per sequence (sums over the positions):", "",
             "| sweep | spread | λ* | Var at λ* | Var at λ = 0 (k1) | Var at λ = 1 (k3) | Var RB k1 |",
             "|---|---|---|---|---|---|---|"]
    for sweep in sweeps:
        for model in sweep["models"]:
            control = model["control_variate"]
            lines.append(f"| {sweep['name']} | {format_number(model['spread'], 3)} | "
                         f"{_bounded(control, 'optimal_lambda')} | {_bounded(control, 'variance_at_optimal')} | "
                         f"{_bounded(control, 'variance_k1')} | {_bounded(control, 'variance_k3')} | "
                         f"{_bounded(model['estimators']['k1'], 'rb_variance')} |")
    lines += [""] + _control_summary(sweeps)
    pairs = data.get("pairs") or []
    if pairs:
        lines += ["For one pair of distributions (`kl-verify moments ... --control-variate`, x ~ q, exact layer): "
                  "λ* = Cov(log r, r) / Var(r), which is (KL(p‖q) + KL(q‖p)) / (E_q[r²] − 1) when p has no mass outside "
                  "q's support; where E_q[r²] is infinite every λ ≠ 0 has infinite variance.", "",
                  "| p | q | λ* | Var at λ* | Var k1 | Var k3 | note |", "|---|---|---|---|---|---|---|"]
        for pair in pairs:
            lines.append(f"| `{pair['p']}` | `{pair['q']}` | {_bounded(pair, 'optimal_lambda')} | "
                         f"{_bounded(pair, 'variance_at_optimal')} | {_bounded(pair, 'variance_k1')} | "
                         f"{_bounded(pair, 'variance_k3')} | {pair.get('note') or ''} |")
        lines.append("")
    return lines


def _control_summary(sweeps):
    """Sentences read off the table: the range of lambda*, what it saves over k3, and RB."""
    lines = []
    for sweep in sweeps:
        rows = [(model["spread"], _number(model["control_variate"]["optimal_lambda"]),
                 _number(model["control_variate"]["variance_at_optimal"]),
                 _number(model["control_variate"]["variance_k3"]),
                 _number(model["estimators"]["k1"]["rb_variance"])) for model in sweep["models"]]
        rows = [row for row in rows if all(math.isfinite(x) for x in row[1:])]
        if not rows:
            continue
        low, high = min(rows, key=lambda row: row[1]), max(rows, key=lambda row: row[1])
        saving = max(1 - row[2] / row[3] for row in rows if row[3] > 0)
        text = (f"- {sweep['name']}: λ* from {low[1]:.3g} (spread {format_number(low[0], 3)}) to {high[1]:.3g} "
                f"(spread {format_number(high[0], 3)}); at λ* the variance is at most {saving:.0%} below k3's")
        if sweep.get("top_k"):
            text += (". But under a top-k q, r − 1 has mean −(p's mass outside the top k) at each position, so "
                     "−log r + λ (r − 1) is biased for every λ ≠ 0: its low variance buys a biased estimate")
        else:
            ratios = [row[2] / row[4] for row in rows if row[4] > 0]
            if ratios:
                text += (f", while the Rao-Blackwellised k1 (unbiased) has {min(ratios):.3g} to {max(ratios):.3g} "
                         "times less variance than the optimal control variate")
        lines.append(text + ".")
    return lines + [""]


def _truncation_section(sweeps):
    truncated = [sweep for sweep in sweeps if sweep.get("top_k")]
    if not truncated:
        return []
    lines = ["## A top-k truncated q", "",
             "Top-k sampling gives q = 0 where p > 0: KL(p‖q) is infinite, E_q[r] < 1 at each position, and "
             "the sum of k3 no longer estimates KL(q‖p) (its mean is KL(q‖p) minus p's mass outside q's top k, "
             "summed over the positions):", "", "| spread | KL(q‖p) | KL(p‖q) | mean of Σ k1 | mean of Σ k3 |",
             "|---|---|---|---|---|"]
    for sweep in truncated:
        for model in sweep["models"]:
            k1, k3 = model["estimators"]["k1"], model["estimators"]["k3"]
            lines.append(f"| {format_number(model['spread'], 3)} | {_bounded(model, 'kl_qp')} | "
                         f"{_bounded(model, 'kl_pq')} | {_bounded(k1, 'mc_mean')} | {_bounded(k3, 'mc_mean')} |")
    lines.append("")
    cosines = [_number(model["gradients"][term]["cosine_to_grad_kl_qp"]) for sweep in truncated
               for model in sweep["models"] for term in ("k2_loss", "k3_loss")]
    lowest = min((c for c in cosines if math.isfinite(c)), default=math.nan)
    if lowest < 0:
        lines += [f"The per-token losses' expected gradients can even point away from ∇KL(q‖p) here (cosines down "
                  f"to {lowest:.2f} in section 1), while the summed k1 as a reward stays exact.", ""]
    return lines


def _spreads(sweep):
    """The x axis: the spread of p around q (KL(q||p) is not monotone in it under a top-k q)."""
    return [_number(model["spread"]) for model in sweep["models"]]


def _title(sweep):
    return f"{sweep['name']} (V = {sweep['vocabulary']}, T = {sweep['length']})"


def sequences_figures(results) -> dict[str, bytes]:
    """The variance and gradient figures of sequences.md ({} without data)."""
    data = results.get("sequence_models") or {}
    sweeps = _sweeps(data) if "error" not in data else []
    if not sweeps:
        return {}
    plt = pyplot()
    files = {}
    figure, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.6), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        xs = _spreads(sweep)
        for style, (label, estimator, key) in enumerate(_VARIANCES):
            ys = [_number(model["estimators"][estimator][key]) for model in sweep["models"]]
            ax.loglog(xs, ys, marker="o", markersize=3, linewidth=1, color=f"C{style}",
                      linestyle=("-", "--", "-", ":")[style], label=label)
        ys = [_number(model["control_variate"]["variance_at_optimal"]) for model in sweep["models"]]
        ax.loglog(xs, ys, marker="s", markersize=3, linewidth=1, color="C4", linestyle="-.", label="optimal λ")
        ax.set_title(_title(sweep), fontsize=8)
        ax.set_xlabel("spread of p around q", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("variance of one sequence's estimate", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    lay_out(figure)
    files[VARIANCE_FIGURE] = png_bytes(figure)
    plt.close(figure)
    figure, axes = plt.subplots(2, len(sweeps), figsize=(4.2 * len(sweeps), 6.4), squeeze=False)
    for column, sweep in enumerate(sweeps):
        xs = _spreads(sweep)
        for style, (term, label) in enumerate(_TERMS[1:]):
            cosines = [_number(model["gradients"][term]["cosine_to_grad_kl_qp"]) for model in sweep["models"]]
            errors = [_number(model["gradients"][term]["relative_error"]) for model in sweep["models"]]
            axes[0][column].semilogx(xs, cosines, marker="o", markersize=3, linewidth=1, color=f"C{style}",
                                     label=label)
            axes[1][column].semilogx(xs, errors, marker="o", markersize=3, linewidth=1, color=f"C{style}",
                                     label=label)
        axes[0][column].set_ylim(-1.05, 1.05)   # a cosine: the whole range
        axes[0][column].axhline(0.0, color="grey", linewidth=0.5, linestyle=":")
        axes[0][column].set_title(_title(sweep), fontsize=8)
        axes[1][column].set_xlabel("spread of p around q", fontsize=8)
        for row in (0, 1):
            axes[row][column].tick_params(labelsize=7)
    axes[0][0].set_ylabel("cos(E[grad], grad KL(q||p))", fontsize=8)
    axes[1][0].set_ylabel("|E[grad] - grad KL| / |grad KL|", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                       title="k1 as a loss: exactly 0", title_fontsize=7)
    lay_out(figure)
    files[GRADIENT_FIGURE] = png_bytes(figure)
    plt.close(figure)
    return files
