"""`verify claims [NAME]`: the claims reference (docs/claims.md), or one entry of it."""
from __future__ import annotations


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "claims", help="what a claim, verdict, gradient mode or exit code means",
        description="Without NAME: the whole reference (the Markdown of docs/claims.md). NAME: a claim "
                    "(nonnegative, fp_accurate@bfloat16, ...), a verdict (proved, ...), a gradient mode "
                    "(loss, straight_through, ...), a gradient_of value (multiple_of_kl_qp, ...) or an exit code.")
    parser.add_argument("name", nargs="*", help="e.g. nonnegative, proved, loss, biased, 3 (or: exit 3)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from verify.core.claims import lookup, reference_markdown

    if not args.name:
        print(reference_markdown(), end="")
    else:
        print(lookup(" ".join(args.name)).text())
    return 0
