"""`verify gradients [TARGET]`: which gradient each estimator really gives, per mode.

Without TARGET every registered estimator is run.  ``--json`` prints one object
``{"estimator": ..., "results": [...]}`` for a TARGET, and a JSON list of such objects
(in registry name order) without one.

Exit codes: 0; 1 if the exact gradients disagree with the symbolic gradient verdicts
(a harness bug); 2 bad input; 3 if an expected gradient could not be computed to a
trustworthy error bound (the message is on stderr and the estimator is left out).
"""
from __future__ import annotations

import importlib.util
import json
import sys

from verify import UsageError
from verify.claims import EXIT_OK, EXIT_REFUTED, EXIT_UNDECIDED, GRADIENT
from verify.expression import as_expression
from verify.targets import load_registry, resolve

DEFAULT_TIMEOUT = 5.0


def add_parser(subparsers):
    from verify.gradients import MODE_NAMES

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
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"time limit per symbolic claim of the cross-check, seconds (default {DEFAULT_TIMEOUT:g})")
    parser.set_defaults(run=run)


def _mode_names(values):
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError("--mode is empty")
    return names


def _symbolic_verdicts(estimator, timeout):
    """The symbolic layer's gradient verdicts as plain data, or None if it is not built."""
    if importlib.util.find_spec("verify.symbolic") is None:
        return None
    if estimator.expr is None:  # not a function of r: no symbolic claims
        return {}
    from verify import symbolic

    verdicts = symbolic.decide(as_expression(estimator.expr), list(GRADIENT), timeout=timeout)
    return {claim: verdict.verdict for claim, verdict in verdicts.items()}


def run(args) -> int:
    from verify import gradients

    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout must be in (0, 3600] seconds")
    modes = _mode_names(args.mode)  # catalog entries: their library's modes (loss, loss_offpolicy, reward)
    for name in modes or ():
        if name not in gradients.MODE_NAMES + gradients.LIBRARY_MODE_NAMES:
            gradients.parse_modes([name])  # the one-line UsageError
    if args.target is None:
        estimators = [estimator for _, estimator in sorted(load_registry().items())]
    else:
        estimators = [resolve(args.target)]
    code = EXIT_OK
    objects, texts = [], []
    for estimator in estimators:
        try:
            results = gradients.gradient_details(estimator, modes)
        except gradients.GradientUndecided as error:
            print(f"kl-verify: {estimator.name}: undecided: {error}", file=sys.stderr)
            if code == EXIT_OK:
                code = EXIT_UNDECIDED
            continue
        if not args.no_cross_check:
            symbolic = _symbolic_verdicts(estimator, args.timeout)
            if symbolic is None:
                print("kl-verify: note: verify.symbolic is not available; cross-check skipped", file=sys.stderr)
            else:
                for problem in gradients.symbolic_disagreements(symbolic, results):
                    print(f"kl-verify: {estimator.name}: layers disagree: {problem}", file=sys.stderr)
                    code = EXIT_REFUTED
        objects.append({"estimator": estimator.name, "results": [r.as_row() for r in results]})
        expression = "not a function of r" if estimator.expr is None else str(as_expression(estimator.expr))
        texts.append(table_text(estimator.name, expression, results))
    if args.json:
        payload = objects[0] if args.target is not None and objects else objects
        if args.target is None or objects:
            print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print("\n\n".join(texts))
    return code


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
