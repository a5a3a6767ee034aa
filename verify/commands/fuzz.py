"""`verify fuzz`: not built yet (placeholder so the CLI lists the command)."""
from verify import UsageError


def add_parser(subparsers):
    parser = subparsers.add_parser("fuzz", help="(not built yet)")
    parser.set_defaults(run=run)


def run(args):
    raise UsageError("'fuzz' is not built yet")
