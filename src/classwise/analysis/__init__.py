"""Class-wise analyses: pure functions over per-sample results (paper section 3)."""

from .classwise import (
    WORST,
    worst_case,
    best_worst,
    classwise_accuracy,
    confusion_counts,
    fold_superclasses,
    largest_gap,
    minmax,
    norm_robustness_correlation,
    overall_accuracy,
    relative_robustness,
    robustness_confusion,
    row_percent,
    weight_norms,
)
from .distribution import INTERVAL_LABELS, gap_comparison, robustness_intervals, sample_classes
from .embedding import tsne_2d
from .homing import confound_classes, flipped_to, homing_counts, homing_share, misclassified_confusion
from .sanity import SanityFlag, SanityReport, headline_overstated, sanity_report
from .probability import classwise_probability_variance, probability_variance
from .schema import Summary, load_summary
from .summary import (
    accuracy_block, build_summary, class_names_of, headline_attack, headline_basis, protocol_attack, sanity_warnings,
    suite_worst_case,
    summarize,
)

__all__ = [
    "WORST",
    "SanityFlag",
    "SanityReport",
    "headline_overstated",
    "sanity_report",
    "worst_case",
    "INTERVAL_LABELS",
    "classwise_probability_variance",
    "confound_classes",
    "flipped_to",
    "gap_comparison",
    "homing_counts",
    "homing_share",
    "misclassified_confusion",
    "probability_variance",
    "robustness_intervals",
    "sample_classes",
    "tsne_2d",
    "Summary",
    "accuracy_block",
    "build_summary",
    "load_summary",
    "best_worst",
    "class_names_of",
    "classwise_accuracy",
    "confusion_counts",
    "fold_superclasses",
    "headline_attack",
    "headline_basis",
    "protocol_attack",
    "suite_worst_case",
    "largest_gap",
    "minmax",
    "norm_robustness_correlation",
    "overall_accuracy",
    "relative_robustness",
    "robustness_confusion",
    "row_percent",
    "sanity_warnings",
    "summarize",
    "weight_norms",
]
