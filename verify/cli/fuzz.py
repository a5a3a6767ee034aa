"""`verify fuzz [TARGET]`: every floating-point claim, in the chosen dtypes."""
from __future__ import annotations

import json

from verify.core.claims import DTYPES, FLOATING


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "fuzz", help="check the floating-point claims of numeric implementations",
        description="TARGET: a registered name, FILE.py:NAME or module:NAME (default: every "
                    "registered estimator with a numeric implementation).")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated (default: all four)")
    parser.add_argument("--profile", default="ci", help="search profile: dev, ci (default) or thorough")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema: verify/schemas/fuzz.json)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock limit on the user's own code (its import and implementation), seconds "
                             "(default 600)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys

    from verify.api import fuzz
    from verify.cli.text import output_note, verdict_lines

    result = fuzz(args.target, args.dtypes, profile=args.profile, timeout=args.timeout)
    note = output_note(result.output)
    if note:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return result.exit_code
    lines, shown = [], set()
    for name, verdicts in result.verdicts.items():
        lines.append(f"{name}:")
        if name in result.failures:
            lines.append(f"  the user's code ended abnormally: {result.failures[name]}")
        for claim, verdict in verdicts.items():
            lines += verdict_lines(claim, verdict, "*" if claim in result.declared[name] else " ", 32, shown)
        for dtype in result.dtypes:
            worst = verdicts[f"{FLOATING[0]}@{dtype}"].worst
            if worst:
                lines.append(f"  worst error in {dtype}: {worst['ulps']:.4g} ulps at (logp, logq) = "
                             f"({worst['ulps_at']['logp']}, {worst['ulps_at']['logq']}); {worst['abs']:.4g} absolute "
                             f"at ({worst['abs_at']['logp']}, {worst['abs_at']['logq']})"
                             if isinstance(worst["ulps"], float) and isinstance(worst["abs"], float) else
                             f"  worst error in {dtype}: {worst['ulps']} ulps at ({worst['ulps_at']['logp']}, "
                             f"{worst['ulps_at']['logq']})")
    print("\n".join(lines + ["", "(* = declared claim; the exit code gates on these)"]))
    return result.exit_code
