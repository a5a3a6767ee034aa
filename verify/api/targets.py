"""Resolve a command-line TARGET to an Estimator: a registered name, an expression in
r, ``path/to/file.py:NAME`` or ``package.module:NAME``."""
from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from estimators import Estimator, registry
from verify.core.specs import MAX_SPEC_LENGTH, spec_syntax  # noqa: F401 - re-exported
from verify.errors import UsageError

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@contextlib.contextmanager
def _quiet_stdout():
    """User code runs here: whatever it prints goes to stderr, never into our output
    (``--json`` stays one JSON document)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def load_registry() -> dict[str, Estimator]:
    try:
        with _quiet_stdout():
            return registry()
    except Exception as error:  # noqa: BLE001 - a broken estimator file is bad input
        raise UsageError(f"cannot load the estimator registry: {type(error).__name__}: {error}") from None


def _from_module_file(path_text: str, name: str) -> Estimator:
    path = Path(path_text)
    if path.suffix != ".py":
        raise UsageError(f"{path_text} is not a Python file (expected FILE.py:NAME or module:NAME)")
    if not path.is_file():
        raise UsageError(f"no such file: {path_text}")
    spec = importlib.util.spec_from_file_location(f"_kl_verify_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path_text} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        with _quiet_stdout():
            spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"cannot import {path_text}: {type(error).__name__}: {error}") from None
    except SystemExit:
        raise UsageError(f"cannot import {path_text}: it called exit()") from None
    return _attribute(module, name, path_text)


def _from_module(module_name: str, name: str) -> Estimator:
    try:
        with _quiet_stdout():
            module = importlib.import_module(module_name)
    except SystemExit:
        raise UsageError(f"cannot import {module_name}: it called exit()") from None
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"cannot import {module_name}: {type(error).__name__}: {error}") from None
    return _attribute(module, name, module_name)


def _attribute(module, name, where) -> Estimator:
    value = getattr(module, name, None)
    if not isinstance(value, Estimator):
        if callable(value):  # a library's own function or class: the torch path takes it
            raise UsageError(f"{where}:{name} is a {'class' if isinstance(value, type) else 'function'}, not an "
                             "Estimator: to check a library's own torch code, add --framework torch")
        raise UsageError(f"{where} has no Estimator named {name!r}")
    return value


# The whitelist of verify.core.expression, restated without sympy so that hostile input is
# refused before sympy loads (a test keeps these equal to the parser's own).
_EXPRESSION_FUNCTIONS = {"log": (1, 1), "exp": (1, 1), "sqrt": (1, 1), "Abs": (1, 1), "abs": (1, 1),
                         "Min": (2, 8), "min": (2, 8), "Max": (2, 8), "max": (2, 8)}
_EXPRESSION_NAMES = ("r", "E", "pi")
_EXPRESSION_ALLOWED = "numbers, r, + - * / **, log, exp, sqrt, Abs, Min, Max"
_EXPRESSION_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_EXPRESSION_LIMITS = (2000, 400, 40)  # MAX_LENGTH, MAX_NODES, MAX_DEPTH


class _Unsure(Exception):
    """The quick check cannot tell: the full parser decides (and words the error)."""


def quick_expression_check(text: str) -> None:
    """Raise the parser's own UsageError for input it certainly refuses first for a
    structural reason (syntax, an unknown name or function, a forbidden construct),
    without importing sympy; return quietly when unsure.  It walks the tree in the
    parser's order and stops being sure at anything the parser evaluates (constants, E,
    pi, any finished compound sub-expression), since those can fail first."""
    def fail(message):
        raise UsageError(f"bad expression: {message}")

    max_length, max_nodes, max_depth = _EXPRESSION_LIMITS
    if not isinstance(text, str) or len(text) > max_length or not text.strip() or any(
            ch in text for ch in "\x00\n\r;"):
        return  # the parser's first checks: let it word them
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        fail(f"syntax error at column {error.offset}: {error.msg}")
    except (ValueError, RecursionError, MemoryError):
        return
    count = 0

    def walk(node, depth):
        nonlocal count
        count += 1
        if count > max_nodes or depth > max_depth:
            raise _Unsure
        if isinstance(node, ast.Name):
            if node.id == "r":
                return True  # a bare r: nothing of it is evaluated
            if node.id in _EXPRESSION_NAMES:
                raise _Unsure
            fail(f"unknown name {node.id!r} (allowed: {_EXPRESSION_ALLOWED})")
        if isinstance(node, ast.Constant):
            raise _Unsure
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            walk(node.operand, depth + 1)
            return False
        if isinstance(node, ast.BinOp) and isinstance(node.op, _EXPRESSION_BINARY):
            if not walk(node.left, depth + 1):
                raise _Unsure  # a finished compound sub-expression may fail its own checks first
            walk(node.right, depth + 1)
            return False
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _EXPRESSION_FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:40]
                fail(f"unknown function {name!r} (allowed: {_EXPRESSION_ALLOWED})")
            if node.keywords:
                fail(f"{node.func.id}() takes no keyword arguments")
            low, high = _EXPRESSION_FUNCTIONS[node.func.id]
            if not low <= len(node.args) <= high:
                fail(f"{node.func.id}() takes {low}{'' if low == high else f' to {high}'} argument(s)")
            for index, argument in enumerate(node.args):
                if not walk(argument, depth + 1) and index < len(node.args) - 1:
                    raise _Unsure
            return False
        fail(f"{type(node).__name__} is not allowed (allowed: {_EXPRESSION_ALLOWED})")

    try:
        walk(tree.body, 0)
    except (_Unsure, RecursionError):
        return


def _looks_like_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _check_name(target, name):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"bad target {target!r}: NAME after ':' must be a Python identifier")


def _from_file_target(target: str) -> Estimator:
    where, _, name = target.rpartition(":")
    _check_name(target, name)
    return _from_module_file(where, name)


def names_user_code(target: str) -> bool:
    """Whether TARGET names a file or module to import (``FILE.py:NAME``,
    ``module:NAME``): the user's code, which runs in an isolated worker.  Registered
    names and expressions contain no ':'."""
    return isinstance(target, str) and ":" in target


def resolve(target: str) -> Estimator:
    """The Estimator a TARGET names; UsageError (exit 2) if it names none."""
    if not isinstance(target, str) or not target.strip():
        raise UsageError("empty target")
    target = target.strip()
    if ":" in target and _looks_like_file(target.rpartition(":")[0]):
        return _from_file_target(target)
    known = load_registry()
    if target in known:
        return known[target]
    if ":" in target:
        where, _, name = target.rpartition(":")
        _check_name(target, name)
        if _MODULE.match(where):
            if "" not in sys.path:
                sys.path.insert(0, "")
            return _from_module(where, name)
        raise UsageError(f"bad target {target!r}: expected NAME, an expression, FILE.py:NAME or module:NAME")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target) and target not in ("r",):
        raise UsageError(f"unknown estimator {target!r}; registered: {', '.join(sorted(known))}")
    quick_expression_check(target)  # hostile input refused before sympy loads
    from verify.core.expression import parse_expression

    parse_expression(target)  # bad input fails here, with its one-line reason
    return Estimator(name=target, expr=target)


_TARGET = re.compile(r"^(?P<where>.+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def resolve_term(target: str):
    """The callable FILE.py:FUNC or module:FUNC names (a torch Estimator is adapted):
    the user's torch term, for ``verify.api.term_gradients`` (call it in an isolated
    worker: it imports the user's code)."""
    from estimators import Estimator
    from verify.layers.gradients.autograd import term_from_estimator

    value = term_attribute(target)
    return term_from_estimator(value) if isinstance(value, Estimator) else value


def term_attribute(target: str):
    """What FILE.py:FUNC or module:FUNC names, as it is (an Estimator, a function, a
    class); a UsageError when it names nothing callable.  Imports the user's code."""
    from estimators import Estimator

    match = _TARGET.match(target.strip()) if isinstance(target, str) else None
    if match is None:
        raise UsageError(f"bad target {target!r}: with --framework torch, expected FILE.py:FUNC or module:FUNC")
    where, name = match.group("where"), match.group("name")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_file():
                raise UsageError(f"no such file: {where}")
            spec = importlib.util.spec_from_file_location(f"_kl_verify_term_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        elif _MODULE.match(where):
            if "" not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(where)
        else:
            raise UsageError(f"bad target {target!r}: expected FILE.py:FUNC or module:FUNC")
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - a broken user file is bad input
        raise UsageError(f"cannot import {where}: {type(error).__name__}: {error}") from None
    value = getattr(module, name, None)
    if not isinstance(value, Estimator) and not callable(value):
        raise UsageError(f"{where} has no function named {name!r}")
    return value
