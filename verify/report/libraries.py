"""reports/libraries.md and its figure: every RL library's KL term as it ships, rendered
from the results record (pure functions of it, so the report regenerates byte for byte)."""
from __future__ import annotations

import math

from verify.core.claims import BACKWARD, DTYPES, FLOATING
from verify.report.figures import lay_out, png_bytes, pyplot
from verify.report.text import format_number

__all__ = ["render_libraries", "libraries_figure", "FIGURE"]

FIGURE = "figures/libraries_cosine.png"
_VERDICT_LETTER = {"proved": "P", "tested": "T", "refuted": "**X**", "undecided": "?"}
_FP_CLAIM_WORD = {"fp_nonnegative": "nonneg", "fp_finite": "finite", "fp_accurate": "accurate",
                  "fp_matches_expression": "formula", "fp_grad_finite": "grad finite",
                  "fp_grad_accurate": "grad accurate"}
# the value columns: the categorical family (next-token distributions), nearest and
# farthest pairs of its sweep
VALUE_FAMILY = "categorical"
REGIMES = (("softmax", "near"), ("softmax", "far"), ("normal", "near"), ("normal", "far"))


def _number(value, digits=3):
    """A results.json number at 3 significant digits (these tables are wide)."""
    return format_number(value, digits)


def _percent(value, signed=True):
    if not isinstance(value, float):
        return _number(value)
    return f"{100 * value:+.3g}%" if signed else f"{100 * value:.3g}%"


def _main_mode(entry):
    """The use the figure shows: the library's default use of the option, else its first."""
    return (entry["default_for"] or entry["kinds"])[0]


def _catalog_entries(results):
    """The catalog entries (name, entry), by library then name: the order of every table here."""
    libraries = results.get("libraries", {})
    return sorted(libraries.items(), key=lambda item: (item[1]["library"], item[0]))


def _options_table(results):
    lines = ["| library | option | entry | default | used as | weight on the term | arithmetic in | coefficient |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in _catalog_entries(results):
        default = ", ".join(f"**default** ({kind})" for kind in entry["default_for"]) or ""
        used = " / ".join(entry["kinds"])
        if entry["straight_through"]:
            used += " (straight-through: gradient of k2)"
        if entry["full_vocabulary"]:
            used += " (exact sum over the vocabulary)"
        if entry["sequence_level"]:
            used += " (sequence-level weight)"
        weight = entry["weight"].replace("|", "\\|")
        lines.append(f"| {entry['library']} | `{entry['option']}` | [`{name}`]({name}.md) | {default} | {used} | "
                     f"{weight} | {entry['computes_in']} | {entry['coefficient'] or '-'} |")
    return lines


def _value_table(results):
    lines = ["Exact moments (no sampling) on the sweep of the `categorical` family (8 outcomes): relative bias "
             "(E_q[f] - KL) / KL against **both** directions, at the nearest and the farthest pair; the last "
             "column is the largest |relative bias against KL(q||p)| over every family's sweep.", "",
             "| entry | f(r) | KL(q‖p) near / far | bias vs KL(q‖p) near / far | bias vs KL(p‖q) near / far | "
             "worst \\|bias vs KL(q‖p)\\| |", "|---|---|---|---|---|---|"]
    for name, entry in _catalog_entries(results):
        record = results["estimators"].get(name, {})
        expression = record.get("expression")
        if expression is None:
            lines.append(f"| `{name}` | not a function of r | - | 0 (exact KL) | - | 0 |")
            continue
        sweep = [m for m in record.get("moments", {}).get(VALUE_FAMILY, []) if isinstance(m["kl_qp"], float)]
        if not sweep:
            lines.append(f"| `{name}` | `{expression}` | n/a | n/a | n/a | n/a |")
            continue
        near, far = min(sweep, key=lambda m: m["kl_qp"]), max(sweep, key=lambda m: m["kl_qp"])
        worst = max((abs(m["relative_bias_qp"]) for sweep_ in record["moments"].values() for m in sweep_
                     if isinstance(m["relative_bias_qp"], float)), default=None)
        lines.append(f"| `{name}` | `{expression}` | {_number(near['kl_qp'])} / {_number(far['kl_qp'])} | "
                     f"{_percent(near['relative_bias_qp'])} / {_percent(far['relative_bias_qp'])} | "
                     f"{_percent(near['relative_bias_pq'])} / {_percent(far['relative_bias_pq'])} | "
                     f"{_percent(worst, signed=False)} |")
    return lines


def _gradient_cell(row):
    if row is None:
        return "-"
    if row["gradient_of"] == "zero":
        return "**zero**"
    cosine = row["cosine_kl_qp"]
    return f"**{row['gradient_of']}** (cos {cosine:.4f})" if isinstance(cosine, float) else f"**{row['gradient_of']}**"


def _gradient_table(results):
    """One row per entry and use the library makes of it: the rows ``verify gradients NAME``
    prints (results.json keeps exactly those for a catalog entry; rows without ``as_used``,
    generic modes of the bare f(r), are not this table's subject and are left out)."""
    lines = ["Expected gradient of the term **as the library uses it** (its uses: loss, off-policy loss, reward; "
             "with the library's weights, detaches and straight-through tricks), the rows "
             "`verify gradients NAME` prints: exact sums for a V = 6 softmax, quadrature for a normal, "
             "classified within computed error bounds as grad KL(q‖p) (`kl_qp`), grad KL(p‖q) (`kl_pq`), "
             "`zero`, a multiple, or `biased`; cos = cosine with grad KL(q‖p). `loss_offpolicy`: samples from "
             "the old policy q_old (KL(q_old‖q) ≈ 5e-3), as over several epochs. A `*` marks a use whose "
             "gradient differs from the generic mode of that name for the bare f(r) (the generic modes are on "
             "the built-in estimators' pages, e.g. [k3](k3.md)).", "",
             "| entry | library's use | softmax near | softmax far | normal near | normal far |",
             "|---|---|---|---|---|---|"]
    for name, entry in _catalog_entries(results):
        rows = [row for row in results["estimators"].get(name, {}).get("gradients") or [] if row.get("as_used")]
        modes = []
        for row in rows:
            if row["mode"] not in modes:
                modes.append(row["mode"])
        if not modes:
            lines.append(f"| `{name}` | n/a | - | - | - | - |")
        for mode in modes:
            cells = []
            for family, regime in REGIMES:
                match = [r for r in rows if (r["mode"], r["family"], r["regime"]) == (mode, family, regime)]
                cells.append(_gradient_cell(match[0] if match else None))
            generic = all(r.get("generic", True) for r in rows if r["mode"] == mode)
            mark = "" if generic else "\\*"
            lines.append(f"| `{name}` | {mode}{mark} | " + " | ".join(cells) + " |")
    return lines


def _fp_table(results):
    lines = ["Floating-point claims of the implementation as the library computes it (inputs log p, log q in "
             f"[-60, 0] of the dtype; profile `{results.get('profile')}`: grid and hypothesis search, P proved, "
             "T tested, X refuted with a counterexample on the entry's page). `formula` is "
             "`fp_matches_expression`; `grad finite` and `grad accurate` are the backward-pass claims `fp_grad_finite` and "
             "`fp_grad_accurate` (the gradient with respect to log q the library's torch code computes, every 16-bit "
             "pair). A library that casts to float32 is judged at its input dtype's ulps.", "",
             "| entry | arithmetic in | " + " | ".join(DTYPES) + " |", "|---|---|" + "---|" * len(DTYPES)]
    for name, entry in _catalog_entries(results):
        claims = results["estimators"].get(name, {}).get("claims", {})
        cells = []
        for dtype in DTYPES:
            parts = [f"{_FP_CLAIM_WORD[c]} {_VERDICT_LETTER[claims[f'{c}@{dtype}']['verdict']]}"
                     for c in FLOATING + BACKWARD if f"{c}@{dtype}" in claims]
            cells.append(", ".join(parts) or "-")
        exhaustive = entry.get("nonnegative_16bit") or {}
        for dtype in ("float16", "bfloat16"):
            record = exhaustive.get(dtype)
            if record is not None:
                mark = _VERDICT_LETTER[record["verdict"]]
                cells[DTYPES.index(dtype)] += f"; nonneg, all pairs: {mark}" + (
                    f" ({record['failures']} of {record['inputs']} log ratios)" if record["failures"] else "")
        lines.append(f"| `{name}` | {entry['computes_in']} | " + " | ".join(cells) + " |")
    lines += ["", "`nonneg, all pairs`: every input pair of the 16-bit dtype in [-60, 0], enumerated through the "
              "log ratio the library forms first (libraries computing in the input dtype)."]
    return lines


def _sequence_section(results):
    data = results.get("sequences")
    if not data:
        return []
    names = {"k3_loss": "per-token k3 loss, no weight (verl, TRL GRPO)",
             "k3_is_token": "k3 × token weight q_θ/q_old (TRL `use_bias_correction_kl`, slime)",
             "k3_is_sequence": "k3 × sequence weight exp(mean_t log q_θ/q_old) (TRL, sequence level)",
             "spurious": "the spurious term (Σ_t k3_t) ∇ mean_t log q_t alone",
             "k1_reward": "Σ_t k1_t as the sequence's reward (REINFORCE)"}
    lines = ["## Sequence level: TRL's sequence weight", "",
             f"Exact enumeration of all {data['sequences']} sequences of a tabular autoregressive model "
             f"(V = {data['vocabulary']}, T = {data['length']}, {data['parameters']} logits; `verify/layers/gradients/sequences.py`, "
             "mpmath at 40 digits). The gradient of the sequence KL(q‖p) is "
             "E_q[Σ_t (Σ_{s≥t} log q(y_s)/p(y_s)) ∇ log q(y_t)]; per-token losses give only part of it, and the "
             "sequence-level weight adds (Σ_t k3_t) ∇(mean_t log q_t). On-policy (the weights are 1 in value); "
             "losses summed over tokens.", ""]
    header = "| per-token loss | " + " | ".join(f"KL(q‖p) = {_number(c['kl_qp'])}: cos / norm ratio / equal"
                                                for c in data["cases"]) + " |"
    lines += [header, "|---|" + "---|" * len(data["cases"])]
    for key, label in names.items():
        cells = []
        for case in data["cases"]:
            loss = case["losses"][key]
            cells.append(f"{_number(loss['cosine_correct'], 6)} / {_number(loss['norm_ratio'], 4)} / "
                         f"{'yes' if loss['equals_correct'] else 'no'}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_libraries(results) -> str:
    """The Markdown of reports/libraries.md."""
    lines = ["# RL libraries' KL terms, as they ship", "",
             "One entry per library option (`estimators/<library>.py`), written from the libraries' documented "
             "behaviour: formula, clamps and their order, dtype casts, detaches, importance weights, loss or "
             "reward. Conventions: x ~ q (the policy being trained), r = p/q with p the reference; "
             "KL(q‖p) = E_q[-log r] is what the KL penalty means; KL(p‖q) is the forward KL.", "",
             "## Options", ""]
    lines += _options_table(results)
    lines += ["", "## What each option estimates", ""] + _value_table(results)
    lines += ["", "## Which gradient it follows", ""] + _gradient_table(results)
    lines += ["", f"![cosine with grad KL(q||p) from near to far]({FIGURE})", "",
              "The figure: for each option, the cosine of its expected on-policy gradient (in the use the library "
              "makes of it by default, else its first use: the legend says which) with grad KL(q‖p), on softmax "
              "pairs from near (p's logits = θ + 0.02 (far − θ)) to far (1.5 ×); a missing point is a zero "
              "gradient.", ""]
    lines += ["## Floating point, in the dtypes it runs in", ""] + _fp_table(results)
    lines += [""] + _sequence_section(results)
    lines += ["## What a user of each option should know", ""]
    for name, entry in _catalog_entries(results):
        lines.append(f"- `{name}` ({entry['library']} `{entry['option']}`): {entry['advice']} "
                     f"Source: {entry['source']}.")
    return "\n".join(lines) + "\n"


def libraries_figure(results) -> bytes:
    """Cosine with grad KL(q||p) against KL(q||p), one panel per library."""
    plt = pyplot()
    entries = _catalog_entries(results)
    libraries = sorted({entry["library"] for _, entry in entries})
    columns = 5
    rows = math.ceil(len(libraries) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), sharey=True, squeeze=False)
    for index, library in enumerate(libraries):
        ax = axes[index // columns][index % columns]
        style = 0
        for name, entry in entries:
            if entry["library"] != library or not entry.get("sweep"):
                continue
            mode = _main_mode(entry)
            points = [(row["kl_qp"], row["cosine_kl_qp"]) for row in entry["sweep"] if row["mode"] == mode]
            xs = [x for x, _ in points]
            ys = [y if isinstance(y, float) else math.nan for _, y in points]
            ax.semilogx(xs, ys, marker="o", markersize=2.5, linewidth=1, linestyle=("-", "--", ":", "-.")[style % 4],
                        color=f"C{style % 10}", label=f"{name} ({mode})")
            style += 1
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.axhline(0.0, color="grey", linewidth=0.5, linestyle=":")
        ax.set_ylim(-1.05, 1.05)  # a cosine: the whole range, so no curve leaves the plot
        ax.set_title(library, fontsize=9)
        ax.set_xlabel("KL(q||p)", fontsize=7)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:  # below the axes: it covers no curve
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0.0, -0.22), frameon=False)
    for index in range(len(libraries), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].set_ylabel("cos(E[grad], grad KL(q||p))", fontsize=7)
    lay_out(figure)
    data = png_bytes(figure)
    plt.close(figure)
    return data
