"""reproductions.md: the published tables of bias and std, recomputed exactly and by the
seeds' own Monte Carlo."""
from __future__ import annotations

from verify.report.text import format_number, reference_line

_EXPLANATIONS = {
    "schulman_2020": "Schulman's tables use q = N(0, 1) and report bias and std relative to the true "
                     "KL(q||p). With equal scales KL(q||p) = KL(p||q), so here both directions agree.",
    "seed_000": "The seed draws x ~ q but divides by KL(p||q) (torch's `kl_divergence(p, q)`). Its "
                "numbers match our bias against **KL(p||q)**; against KL(q||p), the KL that k1 and k3 "
                "estimate without bias, K4's relative bias is large and negative. k1 and k3 show a "
                "relative bias near 1.89 in the seed only because they are compared with the other KL.",
}


def reproductions_page(data) -> str:
    """The Markdown of reproductions.md (``data``: results.json's "reproductions")."""
    lines = ["# Published tables, reproduced", "", reference_line(), ""]
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
                f"| `{row['p']}` | `{row['q']}` | {row['estimator']} | {format_number(row['kl_qp'])} | {format_number(row['kl_pq'])} | "
                f"{format_number(published['relative_bias'])} | {format_number(exact['relative_bias_qp'])} | "
                f"{format_number(exact['relative_bias_pq'])} | {format_number(mc['relative_bias_qp'])} | "
                f"{format_number(mc['relative_bias_pq'])} | {format_number(published['std_over_kl'])} | "
                f"{format_number(exact['std_over_kl_' + suffix])} | {format_number(mc['std_over_kl_' + suffix])} |")
        lines.append("")
    return "\n".join(lines)
