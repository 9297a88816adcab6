"""Calibration of ``Answer.confidence``: the reliability diagram's bins and the expected calibration error (ECE).

``confidence`` estimates P(answer right); a question is right as rag.evaluation.metrics.is_right says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.evaluation.metrics import QuestionResult

CALIBRATION_BINS = 10


def reliability(
    pairs: Sequence[tuple[float, bool]], *, bins: int = CALIBRATION_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """(expected calibration error, the reliability bins) of (confidence, right) pairs.

    Equal-width bins over [0, 1] (1.0 falls in the last); ECE = sum over bins of (n_bin / n) * |mean confidence -
    accuracy|. Each bin: lo, hi, n, its mean confidence and accuracy (None when empty).
    """
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, right in pairs:
        members[min(max(int(confidence * bins), 0), bins - 1)].append((confidence, right))
    total = len(pairs)
    ece = 0.0
    table: list[dict[str, Any]] = []
    for i, inside in enumerate(members):
        mean_conf = sum(c for c, _ in inside) / len(inside) if inside else None
        accuracy = sum(1 for _, r in inside if r) / len(inside) if inside else None
        if mean_conf is not None and accuracy is not None:
            ece += len(inside) / total * abs(mean_conf - accuracy)
        table.append(
            {
                "lo": round(i / bins, 4),
                "hi": round((i + 1) / bins, 4),
                "n": len(inside),
                "confidence": None if mean_conf is None else round(mean_conf, 4),
                "accuracy": None if accuracy is None else round(accuracy, 4),
            }
        )
    return ece, table


def calibration(results: Sequence[QuestionResult], *, bins: int = CALIBRATION_BINS) -> dict[str, Any] | None:
    """Reliability of ``confidence`` as P(answer right) over the questions that carry one; None when none does.

    ``ece`` and ``bins`` use every such question, refused ones included (a refusal of an answerable question is
    not right: the withheld candidate cannot be scored); ``ece_answered`` and ``bins_answered`` only the answered
    ones, whose right-or-wrong is that of the very answer the confidence was given to.
    """
    scored = [r for r in results if r.confidence is not None and r.right is not None]
    if not scored:
        return None
    pairs = [(float(r.confidence or 0.0), bool(r.right)) for r in scored]
    answered = [(float(r.confidence or 0.0), bool(r.right)) for r in scored if not r.no_answer]
    ece, table = reliability(pairs, bins=bins)
    ece_answered, table_answered = reliability(answered, bins=bins) if answered else (None, [])
    return {
        "questions": len(pairs),
        "answered": len(answered),
        "ece": round(ece, 4),
        "ece_answered": None if ece_answered is None else round(ece_answered, 4),
        "mean_confidence": round(sum(c for c, _ in pairs) / len(pairs), 4),
        "accuracy": round(sum(1 for _, r in pairs if r) / len(pairs), 4),
        "bins": table,
        "bins_answered": table_answered,
    }
