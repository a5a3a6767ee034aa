"""Resolve a command-line TARGET to an Estimator: a registered name, an expression in
r, ``path/to/file.py:NAME`` or ``package.module:NAME``."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from estimators import Estimator, registry
from verify import UsageError

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
        raise UsageError(f"{where} has no Estimator named {name!r}")
    return value


def _looks_like_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _check_name(target, name):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"bad target {target!r}: NAME after ':' must be a Python identifier")


def _from_file_target(target: str) -> Estimator:
    where, _, name = target.rpartition(":")
    _check_name(target, name)
    return _from_module_file(where, name)


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
    from verify.expression import parse_expression

    parse_expression(target)  # bad input fails here, with its one-line reason
    return Estimator(name=target, expr=target)
