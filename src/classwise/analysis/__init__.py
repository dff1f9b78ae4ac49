"""Class-wise analyses: pure functions over per-sample results (paper section 3)."""

from .classwise import (
    best_worst,
    classwise_accuracy,
    confusion_counts,
    fold_superclasses,
    largest_gap,
    minmax,
    norm_robustness_correlation,
    overall_accuracy,
    robustness_confusion,
    row_percent,
    weight_norms,
)
from .summary import accuracy_block, class_names_of, headline_attack, sanity_warnings, summarize

__all__ = [
    "accuracy_block",
    "best_worst",
    "class_names_of",
    "classwise_accuracy",
    "confusion_counts",
    "fold_superclasses",
    "headline_attack",
    "largest_gap",
    "minmax",
    "norm_robustness_correlation",
    "overall_accuracy",
    "robustness_confusion",
    "row_percent",
    "sanity_warnings",
    "summarize",
    "weight_norms",
]
