"""The command line: ``python -m verify`` and ``kl-verify`` both call ``main()``.

Each subcommand lives in ``verify.cli.<name>`` with ``add_parser(subparsers)``
(which sets ``run``) and returns an exit code (docs/claims.md).  Bad input is one line
on stderr and exit code 2.  Only the chosen command's module is imported, and heavy
libraries load inside the work itself, so ``--help`` and bad input answer at once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from verify.errors import UsageError
from verify.core.version import __version__
from verify.core.claims import EXIT_UNDECIDED, EXIT_USAGE
from verify.api.isolation import UserCodeFailed
from verify.core.memory import keep_freed_memory
from verify.core.reproducible import pin_numpy_dispatch

# name -> one-line help (shown by `kl-verify --help` without importing the command)
COMMANDS = {
    "check": "decide claims for one estimator (a CI gate)",
    "moments": "exact moments of an estimator for one pair (p, q), x ~ q",
    "fuzz": "check the floating-point claims of numeric implementations",
    "gradients": "exact expected gradients as a loss or a reward, per mode",
    "sequences": "exact sequence-level KL, estimator moments and gradients of an autoregressive pair",
    "all": "run every layer over the registry, write reports, gate",
    "claims": "what a claim, verdict, gradient mode or exit code means",
}

# Commands that can take more than 2 s and report no steps of their own.
_ELAPSED_ONLY = ("fuzz", "gradients", "moments", "sequences")

EPILOG = ("Claims, verdicts, modes and exit codes are defined in docs/claims.md "
          "(`kl-verify claims [NAME]` prints them).")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _chosen_command(argv) -> str | None:
    """The first argument that names a command (options of the top parser take no value)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its full sub-parser (all of
    them when ``argv`` names none and is not given, e.g. for documentation tools)."""
    parser = _Parser(prog="kl-verify", description="Settle claims about KL-divergence estimators.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"kl-verify {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_command(argv) if argv is not None else None
    for name, help_text in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"verify.cli.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


_OPTION = re.compile(r"^--?[A-Za-z][A-Za-z0-9_-]*(=.*)?$")


def _protect_expressions(argv):
    """An expression such as "-log(r)" is not an option: a leading space keeps argparse
    from reading it as one (the expression parser strips it)."""
    return [f" {a}" if a.startswith("-") and len(a) > 1 and not _OPTION.match(a) else a for a in argv]


def _check_early(args) -> None:
    """Options a command validates only after importing its layer, checked here first with
    the same messages (verify.api), so that bad input is refused at once."""
    if args.command == "fuzz":
        from verify.api import check_profile, parse_dtypes

        if isinstance(getattr(args, "dtypes", None), str):
            parse_dtypes(args.dtypes)
        if isinstance(getattr(args, "profile", None), str):
            check_profile(args.profile)


def main(argv=None) -> int:
    pin_numpy_dispatch()  # this process and its workers: the same numbers on every machine
    keep_freed_memory()  # the exhaustive sweeps' allocations (verify/core/memory.py)
    args = None
    try:
        arguments = _protect_expressions(sys.argv[1:] if argv is None else list(argv))
        parser = build_parser(arguments)
        args = parser.parse_args(arguments)
        if args.command is None:
            raise UsageError(f"missing command; one of: {', '.join(COMMANDS)} (see --help)")
        _check_early(args)
        if args.command in _ELAPSED_ONLY:  # commands without their own progress: the elapsed time
            from verify.cli.progress import Progress

            with Progress(f"kl-verify {args.command}"):
                return int(args.run(args))
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
    except UserCodeFailed as error:  # the user's code ended its worker before anything was decided
        message = " ".join(str(error).split())
        print(f"kl-verify: {message}", file=sys.stderr)
        if getattr(args, "json", False):  # --json output stays one JSON document
            import json

            from verify.api import json_document

            print(json.dumps(json_document("failure", {"failure": message}), indent=2))
        return EXIT_UNDECIDED
