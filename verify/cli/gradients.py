"""`verify gradients [TARGET]`: which gradient each estimator really gives, per mode.

Without TARGET every registered estimator is run.  ``--json`` prints one object
``{"estimator": ..., "results": [...]}`` for a TARGET, and a JSON list of such objects
(in registry name order) without one.

``verify gradients FILE.py:FUNC --framework torch [--option NAME=VALUE ...] [--bind
PARAM=ROLE ...] [--usage loss|reward] [--p SPEC --q SPEC [--old SPEC] | --logits FILE.npz]
[--json]``: the user's (or a library's) own per-token torch function, its parameters bound
by name (``verify.layers.gradients.binding``), differentiated through its own autograd
(``verify.layers.gradients.autograd``).  ``--json`` prints ``{"function", "framework", "usage", "results",
"notes"}``.

``--expect kl_qp|kl_pq|zero`` is the gradient gate: every row must give that gradient.

Exit codes: 0; 1 if the exact gradients disagree with the symbolic gradient verdicts
(a harness bug), or a row is not what ``--expect`` asks (named on stderr); 2 bad input;
3 if an expected gradient could not be computed to a trustworthy error bound (the
message is on stderr and the estimator is left out).
"""
from __future__ import annotations

import json
import sys

from verify.core.claims import EXIT_UNDECIDED, EXPECTED_GRADIENTS, MODE_NAMES
from verify.errors import UsageError

DEFAULT_TIMEOUT = 5.0


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "gradients", help="exact expected gradients as a loss or a reward, per mode",
        description="TARGET: a registered name, an expression in r, FILE.py:NAME or module:NAME "
                    "(default: every registered estimator).  --json prints one object for a TARGET "
                    "and a list of objects without one.")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--mode", action="append", metavar="MODE",
                        help=f"mode(s), repeatable or comma-separated: {', '.join(MODE_NAMES)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-cross-check", action="store_true",
                        help="do not compare with the symbolic gradient verdicts")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"time limit, seconds: CPU per symbolic claim of the cross-check (default "
                             f"{DEFAULT_TIMEOUT:g}), and wall clock for the user's own code in all (its import, "
                             "its torch term; default 600)")
    parser.add_argument("--expect", choices=EXPECTED_GRADIENTS, default=None,
                        help="the gradient gate: exit 1, naming the row, unless every row's gradient_of is this")
    parser.add_argument("--framework", default="numpy", choices=("numpy", "torch"),
                        help="torch: TARGET is FILE.py:FUNC, a per-token term FUNC(logp, ref_logp, old_logp) "
                             "differentiated through its own autograd")
    parser.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="torch: a keyword argument of FUNC (a Python literal, else text), repeatable: "
                             "--option kl_penalty=low_var_kl")
    parser.add_argument("--bind", action="append", metavar="PARAM=ROLE",
                        help="torch: the role of FUNC's parameter PARAM (logp, ref_logp, old_logp, mask), where "
                             "its name does not say it; repeatable")
    parser.add_argument("--kind", choices=("token", "full"), default=None,
                        help="torch: token (default): FUNC gives one value per token of (batch, sequence) "
                             "log-probs; full: FUNC gets (batch, sequence, vocabulary) log-probs and gives one "
                             "value per position (a full-vocabulary KL)")
    parser.add_argument("--usage", choices=("loss", "reward"), default=None,
                        help="torch: the term as a loss (modes loss, loss_offpolicy; default) or a reward")
    parser.add_argument("--p", metavar="SPEC", help="reference policy, categorical(logits=...)")
    parser.add_argument("--q", metavar="SPEC", help="policy pi_theta, categorical(logits=...)")
    parser.add_argument("--old", metavar="SPEC", help="old policy for the off-policy modes, categorical(logits=...)")
    parser.add_argument("--logits", metavar="FILE.npz",
                        help="arrays policy, reference (optional old) of shape (V,) or (T, V), instead of the "
                             "fixed pairs")
    parser.set_defaults(run=run)


def run(args) -> int:
    from verify.api import parse_modes

    if args.framework == "torch":
        return run_torch(args)
    for option in ("usage", "kind", "option", "bind"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option} needs --framework torch (a term FUNC(logp, ref_logp, old_logp))")
    # catalog entries: their library's modes (loss, loss_offpolicy, reward)
    modes = parse_modes(args.mode, empty="--mode is empty")
    from verify.api.expected_gradients import gradient_tables
    from verify.api.inputs import term_inputs

    given = term_inputs(logits=args.logits, p=args.p, q=args.q, old=args.old)
    if given and args.target is None:
        raise UsageError("given logits (--p/--q, --logits) need a TARGET")
    tables = gradient_tables(args.target, modes, cross_check=not args.no_cross_check, timeout=args.timeout,
                             cross_check_timeout=args.timeout or DEFAULT_TIMEOUT, expect=args.expect, **given)
    shown = {result.estimator: result for result in tables.results}
    texts = []
    for name in tables.order:
        if name in tables.undecided:
            print(f"kl-verify: {name}: undecided: {tables.undecided[name]}", file=sys.stderr)
            continue
        result = shown[name]
        for problem in result.disagreements:
            print(f"kl-verify: {name}: layers disagree: {problem}", file=sys.stderr)
        for mismatch in result.mismatches:
            print(f"kl-verify: {name}: --expect {args.expect}: {mismatch}", file=sys.stderr)
        texts.append(table_text(name, result.expression or "not a function of r", result.rows)
                     + "".join(f"\nnote: {note}" for note in result.notes))
    if args.json:
        document = tables.to_json()
        if document is not None:
            print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n\n".join(texts))
    return tables.exit_code


def _reading(result) -> str:
    """What the gradient is closest to, for a reader: the better-aligned reference."""
    if result.gradient_of == "zero":
        return "0"
    candidates = [(result.cosine_kl_qp, result.multiple_kl_qp, "grad KL(q||p)"),
                  (result.cosine_kl_pq, result.multiple_kl_pq, "grad KL(p||q)")]
    cosine, multiple, name = max(candidates, key=lambda c: c[0])
    return f"{multiple:.4g} x {name} (cos {cosine:.6f})"


def table_text(name, expression, results) -> str:
    header = ("mode", "family", "regime", "KL(q||p)", "gradient_of", "cos_qp", "cos_pq",
              "|G|/|qp|", "|G|/|pq|", "reading")
    rows = [header]
    for r in results:
        rows.append((r.mode, r.family, r.regime, f"{r.kl_qp:.3g}", r.gradient_of,
                     "-" if r.cosine_kl_qp is None else f"{r.cosine_kl_qp:.6f}",
                     "-" if r.cosine_kl_pq is None else f"{r.cosine_kl_pq:.6f}",
                     f"{r.norm_ratio_kl_qp:.4g}", f"{r.norm_ratio_kl_pq:.4g}", _reading(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    as_used = {r.mode: r.as_used for r in results if r.as_used is not None}
    lines = [f"{name}: f(r) = {expression}"] + [f"  {mode}: {text}" for mode, text in as_used.items()] + [
             "expected gradient G vs grad KL(q_theta||p) (qp) and grad KL(p||q_theta) (pq) at theta; "
             "gradient_of is decided within the computed error bounds", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------ --framework torch

def run_torch(args) -> int:
    from verify.api import GradientUndecided, term_gradients
    from verify.api.inputs import parse_assignments, term_inputs
    from verify.core.frameworks import require_torch

    require_torch()
    if args.target is None:
        raise UsageError("--framework torch needs a TARGET FILE.py:FUNC")
    if args.mode is not None:
        raise UsageError("--mode is for estimators; with --framework torch use --usage loss|reward")
    given = term_inputs(logits=args.logits, p=args.p, q=args.q, old=args.old)
    options = parse_assignments(args.option, "--option", literal=True)
    binds = parse_assignments(args.bind, "--bind", literal=False)
    name = args.target.rpartition(":")[2]
    try:
        result = term_gradients(args.target, usage=args.usage or "loss", timeout=args.timeout, expect=args.expect,
                                options=options, binds=binds, kind=args.kind or "token", **given)
    except GradientUndecided as error:
        print(f"kl-verify: {name}: undecided: {error}", file=sys.stderr)
        return EXIT_UNDECIDED
    from verify.cli.text import output_note

    note = output_note(result.output)
    if note:
        print(note, file=sys.stderr)
    for mismatch in result.mismatches:
        print(f"kl-verify: {name}: --expect {args.expect}: {mismatch}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        print(term_table_text(result.report))
    return result.exit_code


def _cell(value, spec) -> str:
    return "-" if value is None else format(value, spec)


def term_table_text(report) -> str:
    header = ("mode", "regime", "position", "KL(q||p)", "gradient_of", "cos_qp", "cos_pq",
              "|G|/|qp|", "|G|/|pq|", "reading")
    rows = [header]
    for r in report.results:
        if r.identically_zero:
            reading = "identically 0 (no autograd path to logp)"
        elif r.cosine_kl_qp is None or r.cosine_kl_pq is None:
            reading = "0" if r.gradient_of == "zero" else "-"
        else:
            reading = _reading(r)
        rows.append((r.mode, r.regime, "-" if r.position is None else str(r.position), f"{r.kl_qp:.3g}",
                     r.gradient_of, _cell(r.cosine_kl_qp, ".6f"), _cell(r.cosine_kl_pq, ".6f"),
                     _cell(r.norm_ratio_kl_qp, ".4g"), _cell(r.norm_ratio_kl_pq, ".4g"), reading))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    what = "per-token term" if report.kind == "token" else "full-vocabulary term"
    lines = [f"{report.function}: {what} as a {report.usage}, gradients through its own torch autograd "
             "(softmax policy, float64)",
             "expected gradient G vs grad KL(q_theta||p) (qp) and grad KL(p||q_theta) (pq); gradient_of is "
             "decided within the computed error bounds", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    notes = list(report.notes) + sorted({r.note for r in report.results if r.note})
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
