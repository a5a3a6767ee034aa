"""Formatting shared by the Markdown pages: numbers and their error bounds, verdicts, the
order of the floating-point claims, the link to the claims reference."""
from __future__ import annotations

import math

from verify.core.claims import DTYPES, FLOATING

CLAIMS_DOC = "../docs/claims.md"  # the claims reference, relative to the report folder


def reference_line() -> str:
    """The line every page opens with: where the claims, verdicts and modes are defined."""
    return (f"What each claim, verdict and gradient mode means: [the claims reference]({CLAIMS_DOC}) "
            "(`kl-verify claims NAME`).")


def format_number(value, digits=4):
    """A results.json number for a table: None, "inf" and "-inf" (JSON has no infinity) spelled out."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return "∞" if value == "inf" else ("-∞" if value == "-inf" else value)
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def verdict_markdown(verdict: str, declared: bool) -> str:
    """A refuted claim is an alarm (bold) only when the estimator declares it; otherwise it
    is a property the estimator does not have, shown plainly."""
    return "**refuted**" if verdict == "refuted" and declared else verdict


def is_declared(record, claim) -> bool:
    """Whether the estimator declares the claim, or its base for every dtype (`fp_finite` for `fp_finite@float32`)."""
    return claim in record["declared"] or claim.split("@")[0] in record["declared"]


def fp_claims_in_order(claims):
    """The floating-point claims among ``claims``, by claim then dtype, as the claims reference orders them."""
    return [f"{base}@{dtype}" for base in FLOATING for dtype in DTYPES if f"{base}@{dtype}" in claims]


def value_with_bound(value, bound, digits=2) -> str:
    """A value for a table: ∞, "0 (± b)" when it is smaller than its bound, else the value."""
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if not isinstance(value, float) or math.isnan(value):
        return "n/a"
    if isinstance(bound, float) and math.isfinite(bound) and abs(value) <= bound:
        return f"0 (± {bound_text(bound)})"
    return format_number(value, digits)


def bound_text(bound: float) -> str:
    """An error bound to one significant digit, rounded up (a printed bound must hold)."""
    if bound <= 0:
        return "0"
    exponent = math.floor(math.log10(bound))
    digit = math.ceil(bound / 10.0 ** exponent * (1 + 1e-12))
    if digit >= 10:
        digit, exponent = 1, exponent + 1
    return f"{digit}e{exponent:+03d}" if not -3 <= exponent <= 3 else f"{digit * 10.0 ** exponent:g}"


def tied_order(rows) -> str:
    """rows (name, value, bound) -> "a = b < c": sorted, ties when within both bounds.
    A name joins the previous group when its interval meets the group's first interval."""
    def key(row):
        return (math.inf if math.isnan(row[1]) else row[1], row[0])

    rows = sorted(rows, key=key)
    groups: list[list] = []
    for row in rows:
        if groups:
            head = groups[-1][0]
            if (math.isinf(head[1]) and math.isinf(row[1])) or (
                    math.isfinite(head[1]) and math.isfinite(row[1]) and row[1] - row[2] <= head[1] + head[2]):
                groups[-1].append(row)
                continue
        groups.append([row])
    # within a tie, by name: the order of values inside their bounds is noise
    return " < ".join(" = ".join(f"{n} ({value_with_bound(v, b, 3)})" for n, v, b in sorted(group)) for group in groups)
