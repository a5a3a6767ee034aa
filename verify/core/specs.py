"""The syntax of a distribution spec, read without numpy, scipy or sympy: text that is no
spec at all is refused at once, before any layer's imports (the exact layer's
``parse_family`` and the CLI both read specs through here)."""
from __future__ import annotations

import ast
import re

from verify.errors import UsageError

__all__ = ["MAX_SPEC_LENGTH", "spec_syntax"]

MAX_SPEC_LENGTH = 200_000
_SPEC_FILE_TOKEN = re.compile(r"@([^\s,()\[\]'\"]+)")


def spec_syntax(spec: str):
    """(syntax tree, {token: file}) of a distribution spec, or the one-line UsageError of
    ``verify.layers.exact.parse_family`` for text that is no spec at all; here, without numpy,
    scipy or sympy, so that a bad spec is refused at once (parse_family calls this)."""
    def fail(message):
        raise UsageError(f"bad distribution spec: {message}")

    if not isinstance(spec, str) or not spec.strip():
        fail("empty")
    if len(spec) > MAX_SPEC_LENGTH:
        fail(f"longer than {MAX_SPEC_LENGTH} characters")
    if any(ch in spec for ch in "\x00\n\r;'\""):
        fail("only one line, without quotes or semicolons, is allowed")
    files = {}

    def token(match):
        key = f"__file_{len(files)}__"
        files[key] = match.group(1)
        return repr(key)

    text = _SPEC_FILE_TOKEN.sub(token, spec.strip())
    try:
        return ast.parse(text, mode="eval"), files
    except SyntaxError as error:
        fail(f"syntax error at column {error.offset}: {error.msg}")
    except (ValueError, RecursionError, MemoryError):
        fail("cannot be parsed")
