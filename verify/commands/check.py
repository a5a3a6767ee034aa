"""`verify check TARGET`: decide claims for one estimator and gate on them."""
from __future__ import annotations

import json

from verify import UsageError
from verify.claims import FLOATING, SYMBOLIC, exit_code, expand_claims, split_claim
from verify.expression import as_expression_with_domain
from verify.targets import resolve

DEFAULT_TIMEOUT = 5.0


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "check", help="decide claims for one estimator (a CI gate)",
        description="TARGET: a registered name, an expression in r, FILE.py:NAME or module:NAME.")
    parser.add_argument("target")
    parser.add_argument("--claims", help="comma-separated claims to gate on (default: every claim, "
                        "gating on the estimator's declared ones)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"hard time limit per symbolic claim, seconds (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--profile", default="ci", help="floating-point search profile (dev, ci, thorough)")
    parser.set_defaults(run=run)


def parse_claims(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UsageError("--claims is empty")
    for name in names:
        split_claim(name)
    return expand_claims(names)


def decide(estimator, claims, timeout, profile="ci", parsed=None) -> dict:
    """Verdicts for ``claims`` (expanded names), symbolic then floating point.
    ``parsed``: the (expression, domain) of ``estimator.expr`` if already parsed."""
    from verify import symbolic

    expr, domain = parsed or as_expression_with_domain(estimator.expr)
    symbolic_claims = [c for c in claims if c in SYMBOLIC]
    floating_claims = [c for c in claims if split_claim(c)[0] in FLOATING]
    verdicts = {}
    if symbolic_claims:
        verdicts.update(symbolic.decide(expr, symbolic_claims, timeout=timeout, domain=domain))
    if floating_claims:
        if estimator.numeric is None:
            raise UsageError(f"estimator {estimator.name!r} has no numeric implementation for {floating_claims[0]}")
        from verify import floating

        verdicts.update(floating.check_claims(estimator, floating_claims, profile=profile))
    return {claim: verdicts[claim] for claim in claims}


def run(args) -> int:
    if args.timeout <= 0 or args.timeout > 3600:
        raise UsageError("--timeout must be in (0, 3600] seconds")
    estimator = resolve(args.target)
    if estimator.expr is None:  # a catalog entry that is not a function of r (roll_full)
        raise UsageError(f"{estimator.name} is not a function of r; see: verify gradients {estimator.name}")
    parsed = as_expression_with_domain(estimator.expr)
    expr = parsed[0]
    if args.claims is not None:
        claims = gated = parse_claims(args.claims)
    else:
        gated = expand_claims(estimator.claims)
        claims = list(SYMBOLIC)
        if estimator.numeric is not None:
            claims += expand_claims(FLOATING)
        claims += [c for c in gated if c not in claims]
    verdicts = decide(estimator, claims, args.timeout, args.profile, parsed)
    if args.json:
        print(json.dumps({
            "estimator": estimator.name,
            "expression": str(expr),
            "claims": {claim: verdict.as_json() for claim, verdict in verdicts.items()},
        }, indent=2, default=str))
    else:
        print(property_sheet(estimator.name, str(expr), verdicts, gated))
    return exit_code(verdicts[c].verdict for c in gated)


def property_sheet(name, expression, verdicts, gated) -> str:
    lines = [f"{name}: f(r) = {expression}", "(* = declared or gated claim)", ""]
    width = max(len(c) for c in verdicts) + 2
    for claim, verdict in verdicts.items():
        mark = "*" if claim in gated else " "
        lines.append(f"{mark} {claim:<{width}}{verdict.verdict:<10} {verdict.method}")
        if verdict.counterexample is not None:
            lines.append(f"  {'':<{width}}counterexample: {json.dumps(verdict.counterexample, default=str)}")
    return "\n".join(lines)
