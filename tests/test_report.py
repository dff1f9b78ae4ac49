"""Contracts of the report: files, self-contained HTML, table 2 marks, summary numbers."""

import csv
import re

import numpy as np
import pytest

from classwise.report import ReportContext, build, write_report
from classwise.analysis.stats import wilson_interval
from classwise.report.tables import classwise_markdown
from classwise.results import EvalResults

NAMES = ["cat", "car", "ship"]


def _pred(labels: np.ndarray, robust_per_class: list[int]) -> np.ndarray:
    """First r examples of each class (10 per class) keep their label; the rest go to class+1."""
    pred = (labels + 1) % 3
    for k, r in enumerate(robust_per_class):
        pred[np.flatnonzero(labels == k)[:r]] = k
    return pred


def _results() -> EvalResults:
    labels = np.repeat(np.arange(3), 10)
    return EvalResults(
        labels=labels, clean_pred=_pred(labels, [9, 10, 9]),
        adv_pred={"fgsm": _pred(labels, [6, 9, 8]), "pgd20": _pred(labels, [3, 8, 5])},
        class_names=list(NAMES),
    )


METRICS = [{"epoch": e, "clean": {"overall": 50.0 + e, "per_class": [50.0, 60.0, 40.0]},
            "robust": {"overall": 20.0 + e, "per_class": [10.0 + e, 30.0 + e, None]}} for e in (1, 2, 3)]
WEIGHT = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])  # norms 1, 3, 2: same order as pgd20 robustness
GROUPS = {"animals": [0], "transport": [1, 2]}
FIGURES = ["fig_classwise_bars", "fig_epochs", "fig_confusion", "fig_superclass_confusion", "fig_misclassified",
           "fig_intervals", "fig_weight_norms"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    paths = write_report(run_dir, ReportContext.build(
        _results(), metrics=METRICS, head_weight=WEIGHT, superclasses=GROUPS,
        meta={"dataset": "toy3", "model": "smallcnn", "eps": 0.3}, notes=["demo recipe: 2 epochs instead of 100"]))
    return run_dir, paths


def test_all_files_exist(report):
    run_dir, paths = report
    for key in ["report_md", "report_html", "table_csv", "table_md", "superclass_csv",
                "confusion_csv:fgsm", "confusion_csv:pgd20", *FIGURES]:
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert paths["fig_epochs"].parent == run_dir / "figures"
    assert (run_dir / "tables/classwise.md").is_file() and (run_dir / "tables/confusion_pgd20.csv").is_file()
    assert not list(run_dir.rglob("*.tmp"))
    assert paths["fig_confusion"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_self_contained(report):
    _, paths = report
    text = paths["report_html"].read_text()
    assert text.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(https?:|//)""", text)
    assert "<script src" not in text and "<link" not in text and "@import" not in text  # inline script only
    assert "<style>" in text and text.rstrip().endswith("</html>")


def test_markdown_table_marks_best_and_worst(report):
    _, paths = report
    md = paths["table_md"].read_text()
    # pgd20: cat 3/10 (worst, bold), car 8/10 (best, underlined), ship 5/10; total 16/30
    # each cell: the value and its 95% Wilson interval of k of n (asymmetric, so never "±")
    def cell(k, n):
        lo, hi = wilson_interval(k, n)
        return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"

    assert f"| pgd20 | {cell(16, 30)} | **{cell(3, 10)}** | <u>{cell(8, 10)}</u> | {cell(5, 10)} |" in md
    assert f"| fgsm | {cell(23, 30)} | **{cell(6, 10)}** | <u>{cell(9, 10)}</u> | {cell(8, 10)} |" in md
    assert f"| clean | {cell(28, 30)} | **{cell(9, 10)}** | <u>{cell(10, 10)}</u> | {cell(9, 10)} |" in md  # tie: first
    assert "| pgd20 | 53.3 [36.1, 69.8] | **30.0 [10.8, 60.3]** |" in md and "±" not in md  # by hand
    assert "Underlined" in md and "bold" in md and "Wilson" in md


def test_eps_line_shows_fractions_grouped_by_value_never_a_dict():
    from classwise.report.build import eps_text

    assert eps_text(8 / 255) == "8/255" and eps_text(0.3) == "0.3"
    per_attack = {"fgsm": 8 / 255, "pgd20": 8 / 255, "pgd20@norm=l2": 0.5, "worst": 8 / 255}
    assert eps_text(per_attack) == "8/255 (fgsm, pgd20, worst); 0.5 (pgd20@norm=l2)"


def test_markdown_marks_nan_and_single_class():
    summary = {"class_names": ["a|b", "c"], "clean": {"overall": 50.0, "per_class": [None, 50.0],
                                                       "best_class": 1, "worst_class": 1, "gap": 0.0},
               "attacks": {}}
    assert "| clean | 50.0 |  | **<u>50.0</u>** |" in classwise_markdown(summary)
    assert "a\\|b" in classwise_markdown(summary)


def test_csv_numbers(report):
    _, paths = report
    rows = list(csv.reader(paths["table_csv"].read_text().splitlines()))
    assert rows[0] == ["attack", "total", *NAMES]
    assert rows[2] == ["fgsm", "76.67", "60.00", "90.00", "80.00"]
    conf = list(csv.reader(paths["confusion_csv:pgd20"].read_text().splitlines()))
    assert conf[1][1:] == ["30.00", "70.00", "0.00"]  # cat: 3 robust, 7 flipped to car
    sup = list(csv.reader(paths["superclass_csv"].read_text().splitlines()))
    assert sup[1] == ["animals", "30.00", "70.00"] and sup[2] == ["transport", "25.00", "75.00"]


def test_summary_numbers_in_report(report):
    _, paths = report
    md = paths["report_md"].read_text()
    for line in ["dataset: toy3", "model: smallcnn", "eps: 0.3", "clean accuracy: 93.3% [78.7, 98.2]",
                 "robust accuracy under pgd20: 53.3% [36.1, 69.8]",
                 "most robust class: car (80.0% [49.0, 94.3]); tied with ship, cat (95% intervals overlap)",
                 "least robust class: cat (30.0% [10.8, 60.3]); tied with ship, car",
                 "largest class gap: 50.0 percentage points",
                 "weak class cat: 30.0% [10.8, 60.3] robust under pgd20, clean 90.0% (gap 60.0 points); "
                 "flipped to car 100%", "fgsm vs pgd20: 0 of 3 classes differ significantly",
                 "demo recipe: 2 epochs instead of 100", "Spearman rho = 1.00",
                 "(p: Spearman's test over the 3 classes, whose accuracies it takes as exact; 95% interval: the "
                 "test examples of each class resampled, the weight norms fixed"]:
        assert line in md, line
    order = ["## At a glance", "## Class by class", "## Statistical statements", "## Notes"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert md.index("## Notes") < md.index("## Class-wise accuracy")
    assert "](figures/weight_norms.png)" in md
    html_text = paths["report_html"].read_text()
    assert "most robust class: car (80.0%" in html_text and "<u>80.0 [49.0, 94.3]</u>" in html_text


def test_optional_sections_skipped_and_text_escaped(tmp_path):
    res = _results()
    res.class_names = ["<b>cat&", "car", "ship"]
    paths = write_report(tmp_path, ReportContext.build(res, headline="fgsm"))
    assert not any(k in paths for k in ["fig_epochs", "fig_weight_norms", "fig_superclass_confusion"])
    text = paths["report_html"].read_text()
    assert text.count("data:image/png;base64,") == 4 and "robust accuracy under fgsm" in text  # bars, 2, 3a, 6
    assert "&lt;b&gt;cat&amp;" in text and "<b>cat&" not in text


def test_crash_leaves_no_report(tmp_path, monkeypatch):
    write_report(tmp_path, ReportContext.build(_results()))
    assert (tmp_path / "report.html").is_file()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build.figures, "plot_confusion", boom)
    with pytest.raises(RuntimeError):
        write_report(tmp_path, ReportContext.build(_results()))
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report.md").exists()


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="head_weight"):
        ReportContext.build(_results(), head_weight=WEIGHT.T)
    with pytest.raises(ValueError, match="headline"):
        ReportContext.build(_results(), headline="cw")
