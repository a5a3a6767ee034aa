"""Claim names and verdicts: the vocabulary of shared/CLAIMS.md."""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any

from verify import UsageError

POINTWISE = (
    "zero_at_one",
    "nonnegative",
    "unique_minimum_at_one",
    "convex",
    "subexponential_growth",
    "linear_growth_in_log_ratio",
)
EXPECTATION = ("unbiased_kl_qp", "unbiased_kl_pq", "locally_unbiased")
GRADIENT = ("loss_grad_zero", "loss_grad_kl_qp", "loss_grad_kl_pq", "reward_grad_kl_qp")
SYMBOLIC = POINTWISE + EXPECTATION + GRADIENT
FLOATING = ("fp_nonnegative", "fp_finite", "fp_accurate", "fp_matches_expression")
DTYPES = ("float64", "float32", "float16", "bfloat16")

PROVED, TESTED, REFUTED, UNDECIDED = "proved", "tested", "refuted", "undecided"
VERDICTS = (PROVED, TESTED, REFUTED, UNDECIDED)

EXIT_OK, EXIT_REFUTED, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict; ``method`` says how it was reached."""

    verdict: str
    method: str
    detail: str = ""
    counterexample: Any = None
    # floating-point claims: the worst error found, {"ulps", "ulps_at", "abs", "abs_at"}
    worst: Any = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def as_json(self) -> dict:
        data = asdict(self)
        if data["worst"] is None:  # only floating-point verdicts carry it
            del data["worst"]
        return data


def split_claim(claim: str) -> tuple[str, str | None]:
    """``fp_finite@float16`` -> (``fp_finite``, ``float16``); checks both names."""
    base, sep, dtype = claim.partition("@")
    if base in SYMBOLIC:
        if sep:
            raise UsageError(f"claim {base!r} takes no dtype (got {claim!r})")
        return base, None
    if base in FLOATING:
        if sep and dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r} in claim {claim!r}; known: {', '.join(DTYPES)}")
        return base, (dtype if sep else None)
    raise UsageError(f"unknown claim {claim!r}; known: {', '.join(SYMBOLIC + FLOATING)}")


def expand_claims(claims) -> list[str]:
    """Claim names with every floating-point claim split per dtype, in a stable order."""
    expanded: list[str] = []
    for claim in claims:
        base, dtype = split_claim(claim)
        if base in FLOATING and dtype is None:
            names = [f"{base}@{d}" for d in DTYPES]
        else:
            names = [claim]
        expanded += [n for n in names if n not in expanded]
    return expanded


def exit_code(verdicts) -> int:
    """The exit code of shared/CLAIMS.md for a collection of verdict strings."""
    verdicts = list(verdicts)
    if REFUTED in verdicts:
        return EXIT_REFUTED
    if UNDECIDED in verdicts:
        return EXIT_UNDECIDED
    return EXIT_OK
