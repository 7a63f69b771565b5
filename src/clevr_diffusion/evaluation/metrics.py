"""The i-CLEVR accuracy: the official label-level top-k metric, and image-level views of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AccuracyResult", "label_accuracy"]


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy of one batch of images against their label sets.

    Attributes:
        hits: Correct labels: for each image with k objects, how many of its k true labels
            are among the evaluator's k highest outputs, summed over the batch.
        total: Labels in the batch (the sum of k).
        per_image_hits: ``hits`` of each image.
        per_image_total: k of each image.
    """

    hits: int
    total: int
    per_image_hits: tuple[int, ...]
    per_image_total: tuple[int, ...]
    by_count: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def label_accuracy(self) -> float:
        """The official metric: ``hits / total`` over the batch, in [0, 1]."""
        return self.hits / self.total if self.total else 0.0

    @property
    def image_accuracy(self) -> float:
        """Share of images whose every object is found, in [0, 1]."""
        n = len(self.per_image_hits)
        return sum(h == k for h, k in zip(self.per_image_hits, self.per_image_total, strict=True)) / n if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "label_accuracy": self.label_accuracy,
            "image_accuracy": self.image_accuracy,
            "hits": self.hits,
            "total": self.total,
            "by_count": {
                str(k): {"hits": h, "labels": t, "accuracy": h / t if t else 0.0} for k, (h, t) in sorted(self.by_count.items())
            },
            "per_image_hits": list(self.per_image_hits),
        }

    def __str__(self) -> str:
        return f"{self.label_accuracy:.4f} ({self.hits}/{self.total} labels; {self.image_accuracy:.4f} of images fully right)"


def label_accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> AccuracyResult:
    """Score evaluator outputs against multi-hot labels, as the official evaluator does.

    For each image with k true labels, the k largest outputs are taken with ``torch.topk`` (as
    the official code does, so ties are broken the same way) and the true labels among them
    counted; the label-level accuracy is the total count over the total number of labels.

    Args:
        probabilities: (B, 24) evaluator outputs (any monotone score works).
        labels: (B, 24) multi-hot labels, 1 to 24 objects each.

    Returns:
        `AccuracyResult` with the label-level and image-level accuracy and a breakdown by
        object count.

    Raises:
        ValueError: On mismatched shapes or an image with no label.
    """
    if probabilities.shape != labels.shape or probabilities.dim() != 2:
        raise ValueError(f"need (B, C) outputs and labels of one shape, got {tuple(probabilities.shape)} and {tuple(labels.shape)}")
    outputs = probabilities.detach().float().cpu()
    truth = labels.detach().cpu() > 0.5
    hits, totals = [], []
    for out, true in zip(outputs, truth, strict=True):
        k = int(true.sum())
        if k == 0:
            raise ValueError("every image needs at least one label; an empty label set cannot be scored")
        picked = out.topk(k).indices
        hits.append(int(true[picked].sum()))
        totals.append(k)
    by_count: dict[int, tuple[int, int]] = {}
    for h, k in zip(hits, totals, strict=True):
        old = by_count.get(k, (0, 0))
        by_count[k] = (old[0] + h, old[1] + k)
    return AccuracyResult(sum(hits), sum(totals), tuple(hits), tuple(totals), by_count)
