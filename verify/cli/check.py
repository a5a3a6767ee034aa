"""`verify check TARGET`: decide claims for one estimator and gate on them."""
from __future__ import annotations

import dataclasses
import json

from verify.api import parse_claims  # noqa: F401 - kept importable from here
from verify.api.inputs import parse_domain
from verify.core.claims import PROFILES, SYMBOLIC



def decide(estimator, claims, timeout, profile="ci", parsed=None) -> dict:
    """Verdicts for ``claims`` (expanded names): kept for callers of the old command module;
    new code calls ``verify.check``.  ``parsed`` is ignored (the API parses once)."""
    from verify.api import check

    return dict(check(estimator, claims, timeout=timeout, profile=profile).verdicts)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "check", help="decide claims for one estimator (a CI gate)",
        description="TARGET: a registered name, an expression in r, FILE.py:NAME or module:NAME. "
                    "Without --claims every claim is decided and the estimator's declared claims are gated "
                    "(--all-claims: every claim). A user's file runs in an isolated worker. "
                    "Claim names and verdicts: docs/claims.md (`kl-verify claims NAME`).")
    parser.add_argument("target")
    parser.add_argument("--claims", help="comma-separated claims to decide and gate on (default: every claim, "
                        "gating on the estimator's declared ones)")
    parser.add_argument("--all-claims", action="store_true", help="gate on every claim decided, not only the "
                        "declared ones")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema: verify/schemas/check.json)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="time limit, seconds: CPU per symbolic claim (default: the layer's own, see "
                             "verify.layers.symbolic.decide), and wall clock for the user's own code in all (its import "
                             "and implementation; default 600)")
    parser.add_argument("--profile", default="ci", choices=PROFILES, help="floating-point search profile")
    parser.add_argument("--domain", metavar="LO,HI", default=None,
                        help="the floating-point claims' domain of log-probs, LO < HI <= 0, LO may be -inf "
                             "(masked tokens); write --domain=LO,HI (default -60,0; docs/claims.md)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys

    from verify.api import check
    from verify.cli.progress import Progress
    from verify.cli.text import output_note

    if args.all_claims and args.claims is not None:
        from verify.errors import UsageError

        raise UsageError("give --claims or --all-claims, not both")
    claims = parse_claims(args.claims) if args.claims is not None else None  # bad claims: fail fast
    parse_domain(args.domain)  # a bad domain: fail fast too
    with Progress(f"check {args.target[:40]}", total=len(claims) if claims else None) as progress:
        result = check(args.target, claims, timeout=args.timeout, profile=args.profile, domain=args.domain,
                       progress=lambda claim, verdict: progress.step(f"{claim} {verdict.verdict}"))
    if args.all_claims:
        result = result.gating_every_claim()
    note = output_note(result.output)
    if note:
        print(note, file=sys.stderr)
    if result.failure is not None:
        print(f"kl-verify: {result.estimator}: the user's code ended abnormally: {result.failure}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(property_sheet(result.estimator, result.expression, result.verdicts, result.gated))
    return result.exit_code


def _shared_counterexamples(verdicts) -> dict:
    """Claims refuted by one and the same counterexample (a point where f is undefined
    refutes nearly every claim): key -> claims, for keys shared by more than one claim."""
    groups: dict[tuple, list[str]] = {}
    for claim, verdict in verdicts.items():
        if verdict.verdict == "refuted" and verdict.counterexample is not None and claim in SYMBOLIC:
            example = verdict.counterexample
            if isinstance(example, dict) and "subexpression" in example:  # a domain counterexample
                key = (verdict.method, example.get("r"), example.get("subexpression"), example.get("must_be"))
                groups.setdefault(key, []).append(claim)
    return {key: claims for key, claims in groups.items() if len(claims) > 1}


def property_sheet(name, expression, verdicts, gated) -> str:
    from verify.cli.text import verdict_lines

    shown_expression = expression or "(unknown: the user's code ended before it was read)"
    lines = [f"{name}: f(r) = {shown_expression}",
             "(* = declared or gated claim; meanings: kl-verify claims NAME)", ""]
    width = max((len(c) for c in verdicts), default=0) + 2
    shared = _shared_counterexamples(verdicts)
    shown = {claim: key for key, claims in shared.items() for claim in claims}
    reasons: set = set()
    for claim, verdict in verdicts.items():
        mark = "*" if claim in gated else " "
        if claim in shown:
            verdict = dataclasses.replace(verdict, counterexample=None)  # shown once, below
        lines += verdict_lines(claim, verdict, mark, width, reasons)
    for key, claims in shared.items():
        example = verdicts[claims[0]].counterexample
        lines += ["", f"f is not defined as written at r = {example.get('r')!r}: {example.get('subexpression')} "
                      f"must be {example.get('must_be')}. This refutes the {len(claims)} claims marked "
                      f"'{key[0]}' above; counterexample:",
                  f"  {json.dumps(example, default=str)}"]
    return "\n".join(lines)
