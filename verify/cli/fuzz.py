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
    parser.add_argument("--domain", metavar="LO,HI", default=None,
                        help="the floating-point claims' domain of log-probs, LO < HI <= 0, LO may be -inf "
                             "(masked tokens); write --domain=LO,HI (default -60,0; docs/claims.md)")
    parser.add_argument("--framework", default="numpy", choices=("numpy", "torch"),
                        help="torch: TARGET is a library's own torch function FILE.py:FUNC, called as written; "
                             "fp_nonnegative, fp_finite, fp_agrees_float64 with no formula (schema: "
                             "verify/schemas/fuzz_function.json)")
    parser.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="torch: a keyword argument of FUNC (a Python literal, else text), repeatable")
    parser.add_argument("--bind", action="append", metavar="PARAM=ROLE",
                        help="torch: the role of FUNC's parameter PARAM (logp, ref_logp, old_logp, mask), repeatable")
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys

    from verify.api import FunctionFuzzResult, fuzz
    from verify.api.inputs import parse_assignments
    from verify.cli.text import output_note, verdict_lines

    options = parse_assignments(args.option, "--option", literal=True)
    binds = parse_assignments(args.bind, "--bind", literal=False)
    result = fuzz(args.target, args.dtypes, profile=args.profile, timeout=args.timeout, framework=args.framework,
                  options=options, binds=binds, domain=args.domain)
    note = output_note(result.output)
    if note:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return result.exit_code
    if isinstance(result, FunctionFuzzResult):
        print(function_text(result))
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


def function_text(result) -> str:
    """The text of ``verify fuzz FILE.py:FUNC --framework torch``."""
    from verify.cli.text import verdict_lines

    options = ", ".join(f"{k}={v!r}" for k, v in result.options.items())
    lines, shown = [f"{result.function} (torch, called as written{'; ' + options if options else ''}):"], set()
    if result.failure:
        lines.append(f"  the user's code ended abnormally: {result.failure}")
    for claim, verdict in result.verdicts.items():
        claim_lines = verdict_lines(claim, verdict, "*", 32, shown)
        if verdict.verdict == "refuted" and verdict.method != "exhaustive enumeration":  # how many fail
            claim_lines.insert(1, f"  {'':<32}{verdict.detail.split(';')[0]}")
        lines += claim_lines
    for dtype, returned in result.returns.items():
        reference = result.float64_returns.get(dtype)
        lines.append(f"  {dtype}: the function returns {returned}" + (
            "" if reference == "float64" else f"; its float64 evaluation returns {reference} (the reference of "
                                              "fp_agrees_float64 is that arithmetic)"))
    for dtype, checked in result.shape_checked.items():
        if checked["differ"]:
            lines.append(f"output depends on the batch shape in {dtype}: {checked['differ']} of {checked['pairs']} "
                         "pairs re-evaluated alone differ from their batch (in the dtype or in float64), e.g.")
        for found in [f for f in result.shape_dependence if f["dtype"] == dtype][:3]:
            lines.append(f"  (logp, ref_logp) = ({found['logp']!r}, {found['ref_logp']!r}), evaluated in "
                         f"{found['evaluated_in']}: {found['in_batch']!r} in a {tuple(found['batch_shape'])} batch, "
                         f"{found['alone']!r} alone")
    return "\n".join(lines + ["", "(fp_agrees_float64: against the function itself evaluated in float64, not the "
                                  "exact f; every claim and a batch-shape dependence gate the exit code)"])
