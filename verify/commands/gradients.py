"""`verify gradients [TARGET]`: which gradient each estimator really gives, per mode.

Without TARGET every registered estimator is run.  ``--json`` prints one object
``{"estimator": ..., "results": [...]}`` for a TARGET, and a JSON list of such objects
(in registry name order) without one.

``verify gradients FILE.py:FUNC --framework torch [--usage loss|reward] [--p SPEC --q SPEC
[--old SPEC] | --logits FILE.npz] [--json]``: the user's own per-token torch term
``FUNC(logp, ref_logp, old_logp)``, differentiated through its own autograd
(``verify.autograd``).  ``--json`` prints ``{"function", "framework", "usage", "results",
"notes"}``.

Exit codes: 0; 1 if the exact gradients disagree with the symbolic gradient verdicts
(a harness bug); 2 bad input; 3 if an expected gradient could not be computed to a
trustworthy error bound (the message is on stderr and the estimator is left out).
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from verify import UsageError
from verify.claims import EXIT_OK, EXIT_REFUTED, EXIT_UNDECIDED
from verify.targets import load_registry

DEFAULT_TIMEOUT = 5.0
# verify.gradients.MODE_NAMES, spelled here (a test keeps them equal) so that --help and a
# bad --mode or target answer without importing the gradient layer (about 1.5 s)
MODE_NAMES = ("loss", "reward", "loss_offpolicy", "loss_is_weighted", "straight_through")


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
    parser.add_argument("--framework", default="numpy", choices=("numpy", "torch"),
                        help="torch: TARGET is FILE.py:FUNC, a per-token term FUNC(logp, ref_logp, old_logp) "
                             "differentiated through its own autograd")
    parser.add_argument("--usage", choices=("loss", "reward"), default=None,
                        help="torch: the term as a loss (modes loss, loss_offpolicy; default) or a reward")
    parser.add_argument("--p", metavar="SPEC", help="torch: reference policy, categorical(logits=...)")
    parser.add_argument("--q", metavar="SPEC", help="torch: policy pi_theta, categorical(logits=...)")
    parser.add_argument("--old", metavar="SPEC", help="torch: old policy for loss_offpolicy, categorical(logits=...)")
    parser.add_argument("--logits", metavar="FILE.npz",
                        help="torch: arrays policy, reference (optional old) of shape (V,) or (T, V)")
    parser.set_defaults(run=run)


def _mode_names(values):
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError("--mode is empty")
    return names


def run(args) -> int:
    if args.framework == "torch":
        return run_torch(args)
    for option in ("usage", "p", "q", "old", "logits"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option} needs --framework torch (a term FUNC(logp, ref_logp, old_logp))")
    if args.timeout is not None and not 0 < args.timeout <= 3600:
        raise UsageError("--timeout must be in (0, 3600] seconds")
    modes = _mode_names(args.mode)  # catalog entries: their library's modes (loss, loss_offpolicy, reward)
    for name in modes or ():
        if name not in MODE_NAMES:
            raise UsageError(f"unknown mode {name!r}; known: {', '.join(MODE_NAMES)}")
    from verify.api import gradients as api_gradients, load_estimator

    # bad input fails before the imports below; a user's file is imported in an isolated worker
    target = None if args.target is None else load_estimator(args.target, args.timeout)
    from verify import gradients
    from verify.expression import as_expression

    if args.target is None:
        estimators = [estimator for _, estimator in sorted(load_registry().items())]
    else:
        estimators = [target]
    code = EXIT_OK
    objects, texts = [], []
    for estimator in estimators:
        wanted = modes
        if args.target is None and modes is not None and estimator.usage is not None:
            # over the whole registry, a catalog entry shows the asked modes its library uses
            own = {mode.name for mode in gradients.library_modes(estimator)}
            wanted = [name for name in modes if name in own]
            if not wanted:
                continue
        try:
            result = api_gradients(estimator, wanted, cross_check=not args.no_cross_check,
                                   timeout=args.timeout or DEFAULT_TIMEOUT)
        except gradients.GradientUndecided as error:
            print(f"kl-verify: {estimator.name}: undecided: {error}", file=sys.stderr)
            if code == EXIT_OK:
                code = EXIT_UNDECIDED
            continue
        results = result.rows
        for problem in result.disagreements:
            print(f"kl-verify: {estimator.name}: layers disagree: {problem}", file=sys.stderr)
            code = EXIT_REFUTED
        objects.append({"estimator": estimator.name, "results": [r.as_row() for r in results]})
        expression = "not a function of r" if estimator.expr is None else str(as_expression(estimator.expr))
        texts.append(table_text(estimator.name, expression, results))
    if args.json:
        from verify.api import json_document  # schema_version (verify/schemas/gradients.json)

        payload = objects[0] if args.target is not None and objects else objects
        if args.target is None or objects:
            print(json.dumps(json_document("gradients", payload), indent=2, sort_keys=True))
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


# ------------------------------------------------------------ --framework torch

def _categorical_logits(spec, option):
    from verify.exact import parse_family

    family = parse_family(spec)
    if family.name != "categorical":
        raise UsageError(f"--{option}: the torch gradient check takes categorical(logits=...) specs, got {family.name}")
    return family.logits


def load_logits_file(path_text: str) -> dict:
    """policy, reference and optional old from an .npz (no pickles); UsageError otherwise."""
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path_text}")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path_text} is not an .npz archive (np.savez(path, policy=..., reference=...))")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise UsageError(f"{path_text} must be an .npz archive with arrays policy and reference")
            missing = [k for k in ("policy", "reference") if k not in data.files]
            if missing:
                raise UsageError(f"{path_text} has no array {missing[0]!r} (found: {', '.join(data.files) or 'none'})")
            unknown = [k for k in data.files if k not in ("policy", "reference", "old")]
            if unknown:
                raise UsageError(f"{path_text}: unexpected array {unknown[0]!r} (allowed: policy, reference, old)")
            return {k: np.array(data[k]) for k in data.files}
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt or pickled file is bad input
        raise UsageError(f"cannot read {path_text} as .npz without pickles: {type(error).__name__}: {error}") from None


def run_torch(args) -> int:
    from verify.api import term_gradients
    from verify.frameworks import require_torch
    from verify.gradients import GradientUndecided

    require_torch()
    if args.target is None:
        raise UsageError("--framework torch needs a TARGET FILE.py:FUNC")
    if args.mode is not None:
        raise UsageError("--mode is for estimators; with --framework torch use --usage loss|reward")
    given = {}
    if args.logits is not None:
        if args.p is not None or args.q is not None or args.old is not None:
            raise UsageError("give either --logits or --p/--q (and --old), not both")
        arrays = load_logits_file(args.logits)
        given = {"policy": arrays["policy"], "reference": arrays["reference"], "old": arrays.get("old")}
    elif args.p is not None or args.q is not None:
        if args.p is None or args.q is None:
            raise UsageError("give both --p and --q")
        given = {"policy": _categorical_logits(args.q, "q"), "reference": _categorical_logits(args.p, "p"),
                 "old": _categorical_logits(args.old, "old") if args.old is not None else None}
    elif args.old is not None:
        raise UsageError("--old needs --p and --q")
    name = args.target.rpartition(":")[2]
    try:
        report = term_gradients(args.target, usage=args.usage or "loss", timeout=args.timeout, **given)
    except GradientUndecided as error:
        print(f"kl-verify: {name}: undecided: {error}", file=sys.stderr)
        return EXIT_UNDECIDED
    from verify.commands.text import output_note

    note = output_note(report.output)
    if note:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(term_table_text(report))
    return EXIT_OK


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
    lines = [f"{report.function}: per-token term as a {report.usage}, gradients through its own torch autograd "
             "(softmax policy, float64)",
             "expected gradient G vs grad KL(q_theta||p) (qp) and grad KL(p||q_theta) (pq); gradient_of is "
             "decided within the computed error bounds", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    notes = list(report.notes) + sorted({r.note for r in report.results if r.note})
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
