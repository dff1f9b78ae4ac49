"""Report sections for the diagnoses of sections 3.1 and 4 and appendix A of the paper.

Misclassified and homing confusion matrices (figure 3), number of classes per
robustness interval (figure 6) and the class-wise variance of the predicted
probabilities (figure 5a). Each builder returns the sections to show, with
their CSV files and figures as values (:mod:`classwise.report.section`); it
writes nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..analysis import (
    INTERVAL_LABELS,
    classwise_probability_variance,
    misclassified_confusion,
    robustness_intervals,
)
from ..analysis.schema import AccuracyBlock
from ..results import EvalResults
from . import figures, tables
from .section import Figure, File, Section, sampled_note, shown_classes, slug

MISSING_CLASS_NOTE = (
    "Each retrained model keeps all K outputs and the same label numbering; class j simply has no "
    "training examples, so training only ever pushes its logit down and the model (almost) never "
    "predicts j. It is attacked on the same test images with the same attack and seed.")


def misclassified_section(results: EvalResults, head: str, names: list[str]) -> list[Section]:
    """Figure 3a: counts of test examples flipped from class i (row) to j (column); diagonal hidden."""
    counts = misclassified_confusion(results.labels, results.adv_pred[head], len(names))
    csv = File("misclassified_csv", tables.path_of(f"misclassified_{slug(head)}.csv"),
               tables.matrix_csv(counts, names, names, digits=0))
    fig = Figure("fig_misclassified", figures.path_of("misclassified.png"), figures.plot_homing, (counts, None, names),
                 {"title": f"{head}: number of examples"})
    return [Section(f"Misclassified confusion matrix under {head} (figure 3a)",
                    "Row i, column j: how many test images of class i the attack flips to class j (counts, "
                    "diagonal hidden); large cells name the confound classes of each class.",
                    figure=fig, files=(csv,))]


def homing_lines(homing: dict[str, Any]) -> list[str]:
    """The summary line of a homing experiment (homing.json of :mod:`classwise.homing`)."""
    share = homing.get("share")
    share_text = "n/a" if share is None else f"{100 * share:.1f}%"
    return [f"homing ({homing['attack']}): {share_text} of the {homing['flipped']} test examples flipped into "
            f"the {len(homing['removed'])} removed classes are robust after retraining without that class "
            f"({homing['homed']} examples)"] + _missing_line(homing.get("missing") or [])


def _missing_line(missing: list[int]) -> list[str]:
    """Removed classes requested but not yet retrained (``classwise homing --collect`` of a partial run)."""
    if not missing:
        return []
    return [f"homing is partial: the retrains without class {', '.join(map(str, missing))} are not complete "
            "(their columns are empty); finish them with `classwise homing RUN --classes ... --no-collect`, "
            "then `--collect` again"]


def _homing_rows(homing: dict[str, Any], names: list[str]) -> list[list[str]]:
    rows = []
    for j, item in zip(homing["removed"], homing["per_removed"]):
        share = "n/a" if item["flipped"] == 0 else f"{100 * item['homed'] / item['flipped']:.1f}%"
        rows.append([names[j], str(item["flipped"]), str(item["homed"]), share])
    return rows


def homing_section(homing: dict[str, Any], names: list[str]) -> list[Section]:
    """Figure 3a/b side by side, with the share that homes per removed class (section 3.1)."""
    counts = np.array(homing["misclassified"], dtype=np.float64)
    matrix = np.array([[math.nan if v is None else v for v in row] for row in homing["homing"]], dtype=np.float64)
    csv = File("homing_csv", tables.path_of("homing.csv"), tables.matrix_csv(matrix, names, names, digits=0))
    fig = Figure("fig_homing", figures.path_of("homing.png"), figures.plot_homing, (counts, matrix, names),
                 {"title": f"{homing['attack']}: misclassified and homing examples"})
    header = ["removed class j", "flipped into j", "home without j", "share"]
    rows = _homing_rows(homing, names)
    return [
        Section("Homing: retraining without the confound class (figure 3)",
                f"Left: test images of class i (row) flipped to class j (column) under {homing['attack']}. "
                "Right: how many of them the model retrained without the training images of class j "
                f"classifies correctly under the same attack (the homing property). {MISSING_CLASS_NOTE}",
                items=tuple(homing_lines(homing)), figure=fig, files=(csv,)),
        Section("Homing per removed class", "Per removed class j: the test images the original model flipped "
                "into j and how many of them home when j is removed.",
                table_md=tables.simple_markdown(header, rows), table_html=tables.simple_html(header, rows)),
    ]


def per_class_array(block: AccuracyBlock) -> np.ndarray:
    """(K,) float64 per-class percentages of a block, NaN for a class without examples."""
    return np.array([np.nan if v is None else v for v in block.per_class], dtype=np.float64)


def intervals_section(block: AccuracyBlock, head: str) -> list[Section]:
    """Figure 6: number of classes per 10% robustness interval under ``head`` (its ``block``)."""
    counts = robustness_intervals(per_class_array(block))
    csv = File("intervals_csv", tables.path_of("robustness_intervals.csv"),
               tables.rows_csv({head: counts}, list(INTERVAL_LABELS), "attack"))
    fig = Figure("fig_intervals", figures.path_of("robustness_intervals.png"), figures.plot_robustness_intervals,
                 (counts, list(INTERVAL_LABELS)), {"title": f"{head}"})
    return [Section(f"Number of classes per robustness interval under {head} (figure 6)",
                    "How many classes have a robustness in [0,10]%, (10,20]%, ..., (90,100]%: a wide "
                    "spread means very unequal classes.", figure=fig, files=(csv,))]


def variance_section(results: EvalResults, head: str | None, names: list[str]) -> list[Section]:
    """Figure 5a: per class, mean variance of the predicted probability vector (clean and under attack)."""
    probs = {"clean": results.clean_probs} if results.clean_probs is not None else {}
    probs |= {f"under {head}": results.adv_probs[head]} if head in results.adv_probs else {}
    if not probs:
        return []
    k = len(names)
    per_class = {name: classwise_probability_variance(results.labels, p, k) for name, p in probs.items()}
    csv = File("variance_csv", tables.path_of("probability_variance.csv"), tables.rows_csv(per_class, names, "input"))
    idx = shown_classes(k)
    fig = Figure("fig_variance", figures.path_of("probability_variance.png"), figures.plot_probability_variance,
                 ({n: v[idx] for n, v in per_class.items()}, [names[i] for i in idx]))
    return [Section("Class-wise variance of the predicted probabilities (figure 5a)",
                    "Per class, the mean over its test images of the variance of the predicted probability "
                    "vector: a low value is a smooth, uncertain output, where vanilla PGD finds weak "
                    "gradients (section 4)." + sampled_note(k), figure=fig, files=(csv,))]
