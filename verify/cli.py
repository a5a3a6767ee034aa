"""The command line: ``python -m verify`` and ``kl-verify`` both call ``main()``.

Each subcommand lives in ``verify.commands.<name>`` with ``add_parser(subparsers)``
(which sets ``run``) and returns an exit code of shared/CLAIMS.md.  Bad input is one
line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from verify import UsageError
from verify.claims import EXIT_USAGE

COMMANDS = ("check", "moments", "fuzz", "gradients", "all")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kl-verify", description="Settle claims about KL-divergence estimators.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"verify.commands.{name}").add_parser(subparsers)
    return parser


_OPTION = re.compile(r"^--?[A-Za-z][A-Za-z0-9_-]*(=.*)?$")


def _protect_expressions(argv):
    """An expression such as "-log(r)" is not an option: a leading space keeps argparse
    from reading it as one (the expression parser strips it)."""
    return [f" {a}" if a.startswith("-") and len(a) > 1 and not _OPTION.match(a) else a for a in argv]


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(_protect_expressions(sys.argv[1:] if argv is None else list(argv)))
        if args.command is None:
            raise UsageError(f"missing command; one of: {', '.join(COMMANDS)} (see --help)")
        return int(args.run(args))
    except UsageError as error:
        message = " ".join(str(error).split())
        print(f"kl-verify: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kl-verify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
