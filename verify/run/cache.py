"""The cells of ``verify all``: fingerprints, and a local cache of their results.

A cell is one independent computation (a layer for one expression, a floating-point
dtype for one implementation, the gradient table of one library use).  Its fingerprint
is a hash of everything its result depends on:

- the declaration it reads (the expression, the tolerances, the library usage);
- the source of the harness code the layer runs: the layer's package and every module
  of this repository it imports, lazily or not, found by reading the import statements
  (the glue that only dispatches, ``verify.api`` and ``verify.run.collect``, is hashed but
  not followed, so that one layer's edit does not touch another's cells);
- for a cell that calls an implementation: the source of the file defining it and of
  the repository modules that file imports;
- the options (profile, time limit).

``reports/results.json`` records this fingerprint per cell.  The cache key adds the
versions of Python and of the libraries that compute (numpy, scipy, sympy, mpmath,
python-flint, hypothesis, ml_dtypes, torch): a new numpy recomputes everything here,
but does not by itself make the committed reports stale.

Entries are JSON files written atomically (a temporary file, then ``os.replace``), so
concurrent runs never see half an entry; an entry that does not parse, or whose
recorded key is not the one asked for, is recomputed, never trusted.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import fields
from functools import lru_cache
from importlib import metadata
from pathlib import Path

SCHEME = 1  # bump when the encoding of cell results changes
ROOT = Path(__file__).resolve().parents[2]  # the checkout: verify/ and estimators/ live here
PACKAGES = ("verify", "estimators")
DEFAULT_DIRECTORY = ".kl_verify_cache"
# hashed, not followed: they dispatch to every layer
GLUE = ("verify", "verify.api", "verify.run.collect", "estimators")
GLUE_PACKAGES = ("verify.api",)  # glue that is a package of several modules: each is hashed
LAYER_CODE = {
    "symbolic": ("verify.layers.symbolic",),
    "floating": ("verify.layers.floating",),
    "moments": ("verify.layers.exact",),
    "reproductions": ("verify.layers.exact",),
    "gradients": ("verify.layers.gradients",),
    # reports/sequences.md: the sequence models, and the one-pair control variate's moments
    "sequences": ("verify.layers.gradients", "verify.layers.exact"),
}
VERSIONED = ("numpy", "scipy", "sympy", "mpmath", "python-flint", "hypothesis", "ml_dtypes", "torch", "numba")


# ------------------------------------------------------------------------ sources


def _module_file(name: str, near: Path | None = None) -> Path | None:
    """The source file of a module of this repository (or beside ``near``), without
    importing anything."""
    parts = name.split(".")
    bases = [ROOT] if parts[0] in PACKAGES else []
    if near is not None:
        bases.append(near)
    for base in bases:
        path = base.joinpath(*parts)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _imports(path: Path, package: str) -> set[str]:
    """Every module name an import statement of the file names (lazy ones included);
    ``from a import b`` gives both ``a`` and ``a.b`` (b may be a module)."""
    stat = path.stat()
    return _imports_cached(str(path), package, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)  # one entry per file version read
def _imports_cached(path_text: str, package: str, mtime_ns: int, size: int) -> frozenset:
    path = Path(path_text)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, level - 1 packages up
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(name for name in names if name)


def _package_of(path: Path, name: str) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def source_closure(modules, near: Path | None = None, stop=GLUE) -> dict[str, str]:
    """{path relative to the checkout (or absolute): sha256} of the modules and of every
    repository module they import, transitively; modules in ``stop`` are hashed, not
    followed.  A package named here brings all of its modules."""
    found: dict[str, Path] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = _module_file(name, near)
        if path is None:
            continue
        found[name] = path
        if name in stop:
            if name in GLUE_PACKAGES:  # the API: every module of it, hashed
                found.update((f"{name}.{p.stem}", p) for p in sorted(path.parent.glob("*.py")) if p.name != "__init__.py")
            continue
        if path.name == "__init__.py" and name in modules:
            pending += [f"{name}.{p.stem}" for p in sorted(path.parent.glob("*.py")) if p.name != "__init__.py"]
            pending += [f"{name}.{p.name}" for p in sorted(path.parent.iterdir()) if (p / "__init__.py").is_file()]
        for imported in _imports(path, _package_of(path, name)):
            top = imported.split(".")[0]
            if top in PACKAGES or (near is not None and _module_file(imported, near) is not None):
                pending.append(imported)
    return {_shown(path): _file_hash(path) for path in found.values()}


def _shown(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


@lru_cache(maxsize=4096)  # one entry per file version read
def _file_hash_cached(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_hash(path: Path) -> str:
    stat = path.stat()
    return _file_hash_cached(str(path), stat.st_mtime_ns, stat.st_size)


def implementation_sources(function) -> dict[str, str]:
    """The source closure of the module that defines ``function`` (an implementation)."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if path is None:
        return {"<unknown implementation>": repr(getattr(function, "__qualname__", function))}
    path = Path(path).resolve()
    if module.__name__.split(".")[0] in PACKAGES:
        return source_closure([module.__name__])
    sources = source_closure([path.stem], near=path.parent)
    sources.setdefault(_shown(path), _file_hash(path))
    return sources


def layer_sources(layer: str) -> dict[str, str]:
    return source_closure(list(LAYER_CODE[layer]) + list(GLUE))


# ------------------------------------------------------------------- fingerprints


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def fingerprint(data) -> str:
    """sha256 of a JSON-able description (keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()


def cache_key(cell_fingerprint: str, dependency_versions: dict) -> str:
    return fingerprint({"scheme": SCHEME, "cell": cell_fingerprint, "versions": dependency_versions})


# ----------------------------------------------------------------------- encoding


def encode(value):
    """Cell results as JSON that decodes to an equal value (tuples, non-string keys,
    non-finite floats and the layers' records of ``verify.api.cells.cached_types`` kept); TypeError for anything else."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, bytes):
        return {"~bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"~float": repr(value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"~tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("~") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"~dict": [[encode(k), encode(v)] for k, v in value.items()]}
    from verify.api.cells import cached_types

    for tag, kind in cached_types().items():
        if type(value) is kind:
            return {f"~{tag}": {f.name: encode(getattr(value, f.name)) for f in fields(kind)}}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "~float" in value:
        return float(value["~float"])
    if "~bytes" in value:
        return base64.b64decode(value["~bytes"])
    if "~tuple" in value:
        return tuple(decode(v) for v in value["~tuple"])
    if "~dict" in value:
        return {decode(k): decode(v) for k, v in value["~dict"]}
    tagged = [key for key in value if key.startswith("~")]
    if len(value) == 1 and tagged:
        from verify.api.cells import cached_types

        kind = cached_types().get(tagged[0][1:])
        if kind is not None:  # an unknown tag is left as data (and fails the caller's use: recomputed)
            return kind(**{k: decode(v) for k, v in value[tagged[0]].items()})
    return {k: decode(v) for k, v in value.items()}


# -------------------------------------------------------------------------- store


class Cache:
    """Cell results on disk under ``directory``, one JSON file per cache key
    (``read=False``: entries are written, never read: ``verify all --fresh``)."""

    def __init__(self, directory, read: bool = True):
        self.directory = Path(directory)
        self.read = read

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str):
        """(True, result) for a sound entry of this key, else (False, None)."""
        if not self.read:
            return False, None
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("kl_verify_cell") != SCHEME or entry.get("key") != key:
                return False, None
            return True, decode(entry["result"])
        except Exception:  # noqa: BLE001 - missing, truncated, corrupt or foreign: recompute
            return False, None

    def put(self, key: str, result) -> bool:
        """Store ``result`` atomically; False when it cannot be encoded or written."""
        try:
            text = json.dumps({"kl_verify_cell": SCHEME, "key": key, "result": encode(result)}, sort_keys=True)
        except (TypeError, ValueError):
            return False
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
            return True
        except OSError:
            return False
