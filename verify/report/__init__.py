"""Render results.json into Markdown reports and plots, in memory.

Everything here is a pure function of the results record, so the reports can always be
regenerated and compared byte for byte (``verify all --check``).  The pages and figures
are made by this package's modules; this one assembles them.
"""
from __future__ import annotations

import json

from verify.core.claims import BACKWARD, FLOATING, SYMBOLIC, expand_claims
from verify.report.choosing import choosing_page
from verify.report.estimator_page import estimator_page
from verify.report.figures import comparison_figures, estimator_figures
from verify.report.index import index_page
from verify.report.libraries import FIGURE, libraries_figure, render_libraries
from verify.report.reproductions import reproductions_page
from verify.report.sequences import sequences_figures, sequences_page
from verify.report.text import CLAIMS_DOC

__all__ = ["render", "canonical_results", "CLAIMS_DOC"]


def render(results, memo=None, only=None) -> dict[str, bytes]:
    """Every report file (path relative to the report folder -> bytes).  ``memo``: a
    ``verify.run.cache.Cache`` that keeps the figures (their plotting is most of the time a
    run takes when no cell changed), keyed by the data each figure shows and the
    plotting code; the bytes are the same either way.  ``only``: estimator names whose
    own pages and figures are all that is made (``verify all --only``)."""
    results = canonical_results(results)
    shown = _without_fingerprints(results)
    sharing: dict = {}  # catalog entries share value functions: one set of figures per expression
    for name, record in results["estimators"].items():
        sharing.setdefault(record["expression"] or name, []).append(name)

    def estimator_files(name):
        return _estimator_page_and_figures(name, results["estimators"][name], shown["estimators"][name], sharing, memo)

    if only is not None:
        return {path: content for name in only for path, content in estimator_files(name).items()}
    files = {"results.json": (json.dumps(results, indent=1, sort_keys=True) + "\n").encode()}
    files["README.md"] = index_page(results).encode()
    files["choosing.md"] = choosing_page(results).encode()
    files.update(_memoized_figures(memo, "comparison", shown["estimators"], lambda: comparison_figures(results)))
    files["reproductions.md"] = reproductions_page(results.get("reproductions")).encode()
    for name in results["estimators"]:
        files.update(estimator_files(name))
    if results.get("libraries"):  # the catalog of RL libraries' KL terms
        files["libraries.md"] = render_libraries(results).encode()
        files.update(_memoized_figures(memo, "libraries", shown, lambda: {FIGURE: libraries_figure(results)}))
    if results.get("sequence_models"):  # the sequence models (a cell of the gradient layer)
        files["sequences.md"] = sequences_page(results).encode()
        files.update(_memoized_figures(memo, "sequences", results["sequence_models"],
                                       lambda: sequences_figures(results)))
    return files


def canonical_results(results) -> dict:
    """results as results.json holds them (keys sorted), with each estimator's claims in the
    claims reference's order: the reports are a function of results.json alone, whatever
    order the layers finished in."""
    results = json.loads(json.dumps(results, sort_keys=True))
    order = {claim: i for i, claim in enumerate(list(SYMBOLIC) + expand_claims(FLOATING + BACKWARD))}
    for record in results.get("estimators", {}).values():
        claims = record.get("claims", {})
        record["claims"] = {c: claims[c] for c in sorted(claims, key=lambda c: (order.get(c, len(order)), c))}
    return results


def _estimator_page_and_figures(name, record, shown, sharing, memo) -> dict[str, bytes]:
    """One estimator's page, and its figures when it is the first of the entries that
    share its expression (``sharing``: expression -> the entries with it)."""
    names = sharing[record["expression"] or name]
    files = {f"{name}.md": estimator_page(name, record, figures=names[0], shared=names).encode()}
    if names[0] == name:
        files.update(_memoized_figures(memo, "estimator", [name, shown, names],
                                       lambda: estimator_figures(name, record, shared=names)))
    return files


def _without_fingerprints(results) -> dict:
    """The results without the cells' fingerprints (no figure shows them)."""
    return {**results, "estimators": {name: {k: v for k, v in record.items() if k != "fingerprints"}
                                      for name, record in results["estimators"].items()}}


def _memoized_figures(memo, kind, shown, make) -> dict[str, bytes]:
    """``make()`` (figure files), or its earlier result for the same data and code."""
    if memo is None:
        return make()
    from importlib import metadata

    from verify.run import cache

    key = cache.fingerprint({"figures": kind, "data": shown, "matplotlib": metadata.version("matplotlib"),
                             # the package brings all its modules: editing any of them remakes the figures
                             "code": cache.source_closure(["verify.report"]),
                             "scheme": cache.SCHEME})
    hit, files = memo.get(key)
    if hit and isinstance(files, dict) and all(isinstance(v, bytes) for v in files.values()):
        return files
    files = make()
    memo.put(key, files)
    return files
