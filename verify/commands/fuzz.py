"""`verify fuzz [TARGET]`: every floating-point claim, in the chosen dtypes."""
from __future__ import annotations

import json

from verify import UsageError
from verify.claims import DTYPES, FLOATING, exit_code, expand_claims
from verify.targets import load_registry, resolve


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "fuzz", help="check the floating-point claims of numeric implementations",
        description="TARGET: a registered name, FILE.py:NAME or module:NAME (default: every "
                    "registered estimator with a numeric implementation).")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated (default: all four)")
    parser.add_argument("--profile", default="ci", help="search profile: dev, ci (default) or thorough")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def parse_dtypes(text: str) -> list[str]:
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise UsageError("--dtypes is empty")
    for name in names:
        if name not in DTYPES:
            raise UsageError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return [d for d in DTYPES if d in names]


def run(args) -> int:
    from verify import floating

    dtypes = parse_dtypes(args.dtypes)
    if args.profile not in floating.PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; known: {', '.join(floating.PROFILES)}")
    if args.target is None:
        estimators = [e for _, e in sorted(load_registry().items()) if e.numeric is not None]
    else:
        estimators = [resolve(args.target)]
        if estimators[0].numeric is None:
            raise UsageError(f"estimator {estimators[0].name!r} has no numeric implementation")
    claims = [f"{c}@{d}" for c in FLOATING for d in dtypes]
    results, gated_verdicts, lines = {}, [], []
    for estimator in estimators:
        verdicts = floating.check_claims(estimator, claims, profile=args.profile)
        declared = set(expand_claims([c for c in estimator.claims if c.split("@")[0] in FLOATING]))
        results[estimator.name] = {
            claim: dict(verdict.as_json(), declared=claim in declared) for claim, verdict in verdicts.items()}
        gated_verdicts += [verdicts[c].verdict for c in claims if c in declared]
        lines.append(f"{estimator.name}:")
        for claim, verdict in verdicts.items():
            mark = "*" if claim in declared else " "
            lines.append(f"{mark} {claim:<32}{verdict.verdict:<10} {verdict.method}")
            if verdict.counterexample is not None:
                lines.append(f"  {'':<32}counterexample: {json.dumps(verdict.counterexample, sort_keys=True)}")
        for dtype in dtypes:
            worst = verdicts[f"{FLOATING[0]}@{dtype}"].worst
            if worst:
                lines.append(f"  worst error in {dtype}: {worst['ulps']:.4g} ulps at (logp, logq) = "
                             f"({worst['ulps_at']['logp']}, {worst['ulps_at']['logq']}); {worst['abs']:.4g} absolute "
                             f"at ({worst['abs_at']['logp']}, {worst['abs_at']['logq']})"
                             if isinstance(worst["ulps"], float) and isinstance(worst["abs"], float) else
                             f"  worst error in {dtype}: {worst['ulps']} ulps at ({worst['ulps_at']['logp']}, "
                             f"{worst['ulps_at']['logq']})")
    if args.json:
        from verify.api import json_document  # schema_version (verify/schemas/fuzz.json)

        print(json.dumps(json_document("fuzz", {"profile": args.profile, "dtypes": dtypes, "estimators": results}),
                         indent=2, sort_keys=True))
    else:
        print("\n".join(lines + ["", "(* = declared claim; the exit code gates on these)"]))
    return exit_code(gated_verdicts)
