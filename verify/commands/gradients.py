"""`verify gradients`: not built yet (placeholder so the CLI lists the command)."""
from verify import UsageError


def add_parser(subparsers):
    parser = subparsers.add_parser("gradients", help="(not built yet)")
    parser.set_defaults(run=run)


def run(args):
    raise UsageError("'gradients' is not built yet")
