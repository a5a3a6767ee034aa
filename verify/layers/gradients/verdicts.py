"""What an expected gradient is a gradient of (``gradient_of``, claimed only within the error
bounds), and one row of the sweep with its bounds (:class:`GradientResult`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verify.layers.gradients.references import kl_qp_value, reference_gradients

GRADIENT_OF = ("kl_qp", "kl_pq", "zero", "multiple_of_kl_qp", "multiple_of_kl_pq", "biased")
ROW_KEYS = ("mode", "family", "regime", "kl_qp", "gradient_of", "cosine_kl_qp", "cosine_kl_pq",
            "norm_ratio_kl_qp", "norm_ratio_kl_pq")


@dataclass(frozen=True)
class GradientResult:
    """One row with its error bounds (``as_row`` gives the JSON row)."""

    mode: str
    family: str
    regime: str
    kl_qp: float
    gradient_of: str
    gradient: tuple
    error: float
    grad_kl_qp: tuple
    grad_kl_pq: tuple
    cosine_kl_qp: float | None
    cosine_kl_pq: float | None
    norm_ratio_kl_qp: float
    norm_ratio_kl_pq: float
    multiple_kl_qp: float
    multiple_kl_pq: float

    as_used: str | None = None  # a library mode: how the trainer uses the term
    generic: bool = True  # False: the library mode differs from the generic mode of that name

    def as_row(self) -> dict:
        row = {key: getattr(self, key) for key in ROW_KEYS}
        if self.as_used is not None:
            row["as_used"], row["generic"] = self.as_used, self.generic
        return row


def round_significant(value, digits=10):
    """``value`` to ``digits`` significant digits (None stays None): the figures of the rows."""
    if value is None:
        return None
    return float(f"{value:.{digits}g}")


def classify_gradient(gradient, error, grad_qp, grad_pq, error_qp, error_pq):
    """The verdict, claiming an equality only within the error bounds (public:
    verify.layers.gradients.autograd classifies the gradients of users' own torch terms the same way)."""
    if np.linalg.norm(gradient) <= error:
        return "zero"
    matches = []
    for name, reference, reference_error in (("kl_qp", grad_qp, error_qp), ("kl_pq", grad_pq, error_pq)):
        if np.linalg.norm(gradient - reference) <= error + reference_error:
            matches.append(name)
    if matches:
        return matches[0]
    for name, reference, reference_error in (("kl_qp", grad_qp, error_qp), ("kl_pq", grad_pq, error_pq)):
        factor = float(gradient @ reference / (reference @ reference))
        residual = np.linalg.norm(gradient - factor * reference)
        if residual <= error + abs(factor) * reference_error:
            return f"multiple_of_{name}"
    return "biased"


def gradient_result(mode, pair, gradient, error, as_used=None, generic=True):
    """The row of one mode on one pair: the verdict and the figures against both KL gradients."""
    grad_qp, grad_pq, error_qp, error_pq = reference_gradients(pair)
    verdict = classify_gradient(gradient, error, grad_qp, grad_pq, error_qp, error_pq)
    norm = float(np.linalg.norm(gradient))
    nonzero = verdict != "zero"

    def cosine(reference):
        if not nonzero:
            return None
        return round_significant(float(gradient @ reference) / (norm * float(np.linalg.norm(reference))))

    return GradientResult(
        mode=mode.name, family=pair.family, regime=pair.regime, kl_qp=round_significant(kl_qp_value(pair)),
        gradient_of=verdict, gradient=tuple(float(v) for v in gradient), error=float(error),
        grad_kl_qp=tuple(float(v) for v in grad_qp), grad_kl_pq=tuple(float(v) for v in grad_pq),
        cosine_kl_qp=cosine(grad_qp), cosine_kl_pq=cosine(grad_pq),
        norm_ratio_kl_qp=round_significant(norm / float(np.linalg.norm(grad_qp))),
        norm_ratio_kl_pq=round_significant(norm / float(np.linalg.norm(grad_pq))),
        multiple_kl_qp=round_significant(float(gradient @ grad_qp / (grad_qp @ grad_qp))),
        multiple_kl_pq=round_significant(float(gradient @ grad_pq / (grad_pq @ grad_pq))),
        as_used=as_used, generic=generic,
    )
