"""`verify all`: every layer over the whole registry; writes the reports; a CI gate."""
from __future__ import annotations

import os
from pathlib import Path

from verify.core.claims import EXIT_REFUTED, LAYERS, PROFILES, SYMBOLIC, expand_claims
from verify.errors import UsageError



def add_parser(subparsers):
    parser = subparsers.add_parser("all", help="run every layer over the registry, write reports, gate")
    parser.add_argument("--out", default="reports", help="report folder (default: reports/)")
    parser.add_argument("--profile", default="ci", choices=PROFILES, help="floating-point search profile")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cells run at once (default: all cores)")
    parser.add_argument("--timeout", type=float, default=10.0, help="hard time limit per symbolic claim, seconds")
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory; exit 1 if the reports in --out are stale")
    parser.add_argument("--layers", default=",".join(LAYERS),
                        help=f"comma-separated subset of {','.join(LAYERS)} (default: all)")
    parser.add_argument("--strict", action="store_true", help="also fail (exit 3) on any undecided claim")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help="only these estimators (registered names, or FILE.py:NAME / module:NAME of your own): "
                             "every layer, their verdicts, the gate, and their own pages (the aggregate pages and "
                             "results.json are left alone)")
    parser.add_argument("--fresh", action="store_true", help="ignore the cache: compute every cell")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="cache of cell results (default: .kl_verify_cache/ in the current folder)")
    parser.set_defaults(run=run)


def load_registry():
    """The estimator registry (a seam the tests replace)."""
    from verify.api.targets import load_registry as load

    return load()


def _user_estimator(target, registry):
    """An estimator of the user's file (FILE.py:NAME, module:NAME) for --only: its import
    is tried in an isolated worker first (an exit there cannot end this process); its
    implementation then runs isolated in the floating-point cells (verify.api.check)."""
    from verify.api import load_estimator
    from verify.api.targets import names_user_code, resolve

    if not names_user_code(target):
        raise UsageError(f"--only: unknown estimator {target!r}; registered: {', '.join(sorted(registry))} "
                         "(or FILE.py:NAME)")
    load_estimator(target)
    return resolve(target)


def _matrix(results) -> str:
    names = list(results["estimators"])
    short = {"proved": "P", "tested": "T", "refuted": "X", "undecided": "?"}
    claims = list(SYMBOLIC)
    for record in results["estimators"].values():
        claims += [c for c in record["claims"] if c not in claims]
    width = max(len(c) for c in claims) + 2
    lines = [" " * width + " ".join(f"{n[:10]:>10}" for n in names)]
    for claim in claims:
        cells = []
        for name in names:
            record = results["estimators"][name]
            verdict = record["claims"].get(claim)
            mark = short[verdict["verdict"]] if verdict else "-"
            star = "*" if claim in expand_claims(record["declared"]) else " "
            cells.append(f"{mark + star:>10}")
        lines.append(f"{claim:<{width}}" + " ".join(cells))
    lines.append("P proved, T tested, X refuted, ? undecided, - not applicable; * declared")
    return "\n".join(lines)


def run(args) -> int:
    from verify.api import check_timeout
    from verify.run.gate import gate, parse_layers

    layers = parse_layers(args.layers)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    check_timeout(args.timeout)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out} is not a folder")
    from verify.run.collect import collect
    from verify.cli.progress import Progress
    from verify.report import render

    from verify.run.cache import DEFAULT_DIRECTORY, Cache

    registry = load_registry()
    only = None
    if args.only is not None:
        chosen = {}
        for target in (name.strip() for name in args.only.split(",") if name.strip()):
            estimator = registry.get(target) or _user_estimator(target, registry)
            chosen[estimator.name] = estimator
        if not chosen:
            raise UsageError("--only: no estimator given")
        registry, only = chosen, list(chosen)
    cache = Cache(args.cache or DEFAULT_DIRECTORY, read=not args.fresh)  # --fresh: computed anew, then stored
    stats: dict = {}
    with Progress("all") as progress:
        def step(task, total):
            progress.total = total
            progress.step(" ".join(part for part in task if part))

        results = collect(registry, profile=args.profile, timeout=args.timeout, jobs=args.jobs,
                          progress=step, layers=layers, cache=cache, stats=stats, reproductions=only is None)
    files = render(results, memo=cache, only=only)  # with --only: the named estimators' own pages and figures
    code, lines = gate(results, args.strict)
    print(_matrix(results))
    for line in lines:
        print(line)
    print(f"cells: {stats.get('computed', 0)} computed, {stats.get('reused', 0)} reused from the cache"
          + (" (--fresh)" if args.fresh else ""))
    if args.check:
        stale = sorted(path for path, content in files.items()
                       if not (out / path).is_file() or (out / path).read_bytes() != content)
        extra = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                       and str(p.relative_to(out)) not in files) if out.is_dir() and only is None else []
        if stale or extra:
            print(f"reports in {out}/ are stale: {', '.join(stale + extra)[:2000]}")
            print("regenerate them with: python -m verify all")
            return EXIT_REFUTED
        print(f"reports in {out}/ are up to date")
        return code
    for path, content in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != content:
            target.write_bytes(content)
    print(f"wrote {len(files)} files to {out}/")
    return code
