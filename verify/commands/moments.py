"""`verify moments ESTIMATOR --p SPEC --q SPEC`: exact mean, variance and bias for one pair."""
from __future__ import annotations

import json
import math
import sys

from verify import UsageError
from verify.claims import EXIT_OK, EXIT_UNDECIDED
from verify.expression import as_expression
from verify.targets import resolve


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "moments", help="exact moments of an estimator for one pair (p, q), x ~ q",
        description="ESTIMATOR as in `check`. SPEC: norm(loc, scale), laplace(loc, scale), "
                    "t(df, loc, scale), gamma(a, loc, scale), beta(a, b), poisson(mu), "
                    "categorical(logits=[...] or @file.npy), mixture(weights=[...], components=[...]).")
    parser.add_argument("estimator")
    parser.add_argument("--p", required=True, help="the target distribution p")
    parser.add_argument("--q", required=True, help="the sampling distribution q (x ~ q)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def _text(value):
    if isinstance(value, float) and math.isnan(value):
        return "undefined"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.15g}"


def run(args) -> int:
    from verify.exact import ExactError, moments, parse_family

    estimator = resolve(args.estimator)
    if estimator.expr is None:  # a catalog entry that is not a function of r (roll_full)
        raise UsageError(f"{estimator.name} is not a function of r; see: verify gradients {estimator.name}")
    expr = as_expression(estimator.expr)
    p, q = parse_family(args.p), parse_family(args.q)
    try:
        result = moments(expr, p, q)
    except ExactError as error:
        print(f"kl-verify: moments undecided: {error}", file=sys.stderr)
        return EXIT_UNDECIDED
    if args.json:
        print(json.dumps(result.as_json(estimator.name), sort_keys=False))
        return EXIT_OK
    lines = [
        f"{estimator.name}: f(r) = {expr}",
        f"p = {result.p}",
        f"q = {result.q}   (x ~ q, r = p/q)",
        f"E_q[f]      = {_text(result.mean)}  (+- {result.mean_abs_error:.2g})",
        f"Var_q[f]    = {_text(result.variance)}  (+- {result.variance_abs_error:.2g})",
        f"KL(q||p)    = {_text(result.kl_qp)}   bias {_text(result.bias_qp)}   relative {_text(result.relative_bias_qp)}",
        f"KL(p||q)    = {_text(result.kl_pq)}   bias {_text(result.bias_pq)}   relative {_text(result.relative_bias_pq)}",
    ]
    print("\n".join(lines))
    return EXIT_OK
