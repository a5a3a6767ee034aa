"""`verify moments ESTIMATOR[,ESTIMATOR...] --p SPEC --q SPEC`: exact mean, variance, both
KLs and biases for one pair, every value with its error bound."""
from __future__ import annotations

import json
import sys

from verify.errors import UsageError

# (label, key) of the values printed per estimator, in order
_ROWS = (("E_q[f]", "mean"), ("Var_q[f]", "variance"), ("std", "std"),
         ("bias vs KL(q||p)", "bias_qp"), ("relative", "relative_bias_qp"),
         ("bias vs KL(p||q)", "bias_pq"), ("relative", "relative_bias_pq"),
         ("std / KL(q||p)", "std_over_kl_qp"), ("std / KL(p||q)", "std_over_kl_pq"))


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "moments", help="exact moments of estimators for one pair (p, q), x ~ q",
        description="ESTIMATOR as in `check`, or several separated by commas (k1,k3,k4), or --all. "
                    "SPEC: norm(loc, scale), laplace(loc, scale), t(df, loc, scale), gamma(a, loc, scale), "
                    "beta(a, b), poisson(mu), categorical(logits=[...] or @file.npy; -inf for an impossible "
                    "token), mixture(weights=[...], components=[...]). p and q may have different supports.")
    parser.add_argument("estimator", nargs="?", help="a target, or several separated by commas")
    parser.add_argument("--all", action="store_true", help="every registered estimator")
    parser.add_argument("--p", required=True, help="the target distribution p")
    parser.add_argument("--q", required=True, help="the sampling distribution q (x ~ q)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object, or a list for several)")
    parser.add_argument("--control-variate", action="store_true",
                        help="add the variance-optimal -log r + lambda (r - 1) (k1 at 0, k3 at 1) for the pair")
    parser.set_defaults(run=run)


def _number(data, key):
    from verify.cli.text import value_text

    return value_text(data[key], ".15g")


def _with_bound(data, key):
    value = data[key]
    text = _number(data, key)
    if value is None or value in ("inf", "-inf"):
        return text + ("   (infinite)" if value in ("inf", "-inf") else "")
    bound = data[key + "_abs_error"]
    bound_text = bound if isinstance(bound, str) else ("inf" if bound == "inf" else f"{bound:.2g}")
    line = f"{text} ± {bound_text}"
    if "log10_" + key in data:
        line += f"   (beyond float64: log10 = {data['log10_' + key]!r})"
    return line


def run(args) -> int:
    from verify.api.moments_of_pair import moments_table

    if args.all and args.estimator:
        raise UsageError("give estimators or --all, not both")
    if not args.all and not args.estimator:
        raise UsageError("moments needs an ESTIMATOR (or several separated by commas, or --all)")
    table = moments_table(None if args.all else args.estimator, args.p, args.q,
                          control_variate=args.control_variate)
    for name, message in table.undecided:
        print(f"kl-verify: moments of {name} undecided: {message}", file=sys.stderr)
    if args.json:
        document = table.to_json()
        if document is not None:
            print(json.dumps(document, sort_keys=False))
        return table.exit_code
    if table.results:
        first = table.results[0].as_json()
        lines = [f"p = {first['p']}", f"q = {first['q']}   (x ~ q, r = p/q)",
                 f"KL(q||p)    = {_with_bound(first, 'kl_qp')}",
                 f"KL(p||q)    = {_with_bound(first, 'kl_pq')}"]
        if first["p_mass_outside_q"]:
            lines.append(f"p's mass outside supp q = {_with_bound(first, 'p_mass_outside_q')}"
                         "   (never sampled: KL(p||q) = inf; E_q[k3] = KL(q||p) minus this mass)")
        if first["q_mass_outside_p"]:
            lines.append(f"q's mass outside supp p = {_with_bound(first, 'q_mass_outside_p')}"
                         "   (r = 0 there: KL(q||p) = inf)")
        for result in table.results:
            data = result.as_json()
            lines += ["", f"{result.estimator}: f(r) = {result.expression}"]
            lines += [f"  {label:<17} = {_with_bound(data, key)}" for label, key in _ROWS]
        if table.control_variate is not None:
            block = table.control_variate.as_json()
            lines += ["", "control variate -log r + lambda (r - 1)   (k1: lambda = 0, k3: lambda = 1)"]
            lines += [f"  {key:<19} = {_with_bound(block, key)}" for key in
                      ("optimal_lambda", "variance_at_optimal", "variance_k1", "variance_k3")]
            if block["note"]:
                lines.append(f"  ({block['note']})")
        print("\n".join(lines))
    return table.exit_code
