"""`verify moments`: not built yet (placeholder so the CLI lists the command)."""
from verify import UsageError


def add_parser(subparsers):
    parser = subparsers.add_parser("moments", help="(not built yet)")
    parser.set_defaults(run=run)


def run(args):
    raise UsageError("'moments' is not built yet")
