"""`verify moments ESTIMATOR[,ESTIMATOR...] --p SPEC --q SPEC`: exact mean, variance, both
KLs and biases for one pair, every value with its error bound."""
from __future__ import annotations

import json
import math
import sys

from verify import UsageError
from verify.claims import EXIT_OK, EXIT_UNDECIDED

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
    parser.set_defaults(run=run)


def _split_targets(text):
    """Split at commas outside brackets (an expression like Min(r, 2) keeps its comma)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _estimators(args):
    from verify import UsageError
    from verify.targets import load_registry

    if args.all:
        if args.estimator:
            raise UsageError("give estimators or --all, not both")
        return [e for e in load_registry().values() if e.expr is not None]  # functions of r
    if not args.estimator:
        raise UsageError("moments needs an ESTIMATOR (or several separated by commas, or --all)")
    from verify.api import function_of_r, load_estimator as resolve  # a user's file: imported in a worker

    try:
        return [function_of_r(resolve(args.estimator))]
    except UsageError:
        parts = _split_targets(args.estimator)
        if len(parts) == 1:
            raise
    if any(not part for part in parts):
        raise UsageError(f"empty estimator in {args.estimator!r}")
    return [function_of_r(resolve(part)) for part in parts]


def _number(data, key):
    value = data[key]
    if value is None:
        return "undefined"
    if isinstance(value, str):
        return value
    return f"{value:.15g}"


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
    from verify.targets import spec_syntax

    spec_syntax(args.p), spec_syntax(args.q)  # text that is no spec fails before the exact layer's imports
    estimators = _estimators(args)  # so does a bad name (the imports take about 1 s)
    from verify.exact import ExactError, moments, parse_family
    from verify.expression import as_expression

    p, q = parse_family(args.p), parse_family(args.q)
    results, failures = [], []
    for estimator in estimators:
        expr = as_expression(estimator.expr)
        try:
            results.append((estimator, expr, moments(expr, p, q).as_json(estimator.name)))
        except ExactError as error:
            failures.append((estimator, str(error)))
    for estimator, message in failures:
        print(f"kl-verify: moments of {estimator.name} undecided: {message}", file=sys.stderr)
    if args.json:
        objects = [data for _, _, data in results]
        if objects:
            from verify.api import json_document  # schema_version (verify/schemas/moments.json)

            payload = objects[0] if len(estimators) == 1 else objects
            print(json.dumps(json_document("moments", payload), sort_keys=False))
        return EXIT_UNDECIDED if failures else EXIT_OK
    if results:
        first = results[0][2]
        lines = [f"p = {first['p']}", f"q = {first['q']}   (x ~ q, r = p/q)",
                 f"KL(q||p)    = {_with_bound(first, 'kl_qp')}",
                 f"KL(p||q)    = {_with_bound(first, 'kl_pq')}"]
        if first["p_mass_outside_q"]:
            lines.append(f"p's mass outside supp q = {_with_bound(first, 'p_mass_outside_q')}"
                         "   (never sampled: KL(p||q) = inf; E_q[k3] = KL(q||p) minus this mass)")
        if first["q_mass_outside_p"]:
            lines.append(f"q's mass outside supp p = {_with_bound(first, 'q_mass_outside_p')}"
                         "   (r = 0 there: KL(q||p) = inf)")
        for estimator, expr, data in results:
            lines += ["", f"{estimator.name}: f(r) = {expr}"]
            lines += [f"  {label:<17} = {_with_bound(data, key)}" for label, key in _ROWS]
        print("\n".join(lines))
    return EXIT_UNDECIDED if failures else EXIT_OK
