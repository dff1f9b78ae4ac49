"""The full report: every section present, and (with Chromium) every figure renders in a browser.

The browser check loads a copy of report.html with a small script appended that,
after the load event, writes into document.title how many <img> decoded
(naturalWidth > 0) and the text of every <h2>; ``chromium --headless
--dump-dom`` prints the DOM and the test reads the title back. Install the
browser with ``make browser-deps``; without /usr/bin/chromium the test skips.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import pytest

from classwise.report import ReportContext, write_report
from classwise.results import EvalResults

from browser import CHROMIUM, NO_CHROMIUM, USE, browser_probe, screenshot
from gallery_cases import gallery_case

NAMES = ["plane", "car", "bird", "cat"]
SECTIONS = [
    "At a glance", "Class by class", "Statistical statements", "Notes", "Warnings",
    "Class-wise accuracy and robustness (table 2)", "Class-wise bars",
    "Difference against pgd20 (tables 3, 4 and 6)",
    "Class-wise robustness during training (figure 1)", "Robustness confusion matrix under pgd20 (figure 2)",
    "Superclass confusion under pgd20", "Misclassified confusion matrix under pgd20 (figure 3a)",
    "Homing: retraining without the confound class (figure 3)", "Homing per removed class",
    "Number of classes per robustness interval under pgd20 (figure 6)",
    "Class-wise variance of the predicted probabilities (figure 5a)",
    "Classifier weight norm and robustness (figure 4): Spearman rho = 1.00",
]
SANITY = ["attack sanity: example flag",
          {"check": "zero-gradient", "scope": "cat", "detail": "5.0% of examples have a zero gradient",
           "suggests": "suggests gradient masking"}]


def _results() -> EvalResults:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    clean = np.where(rng.random(100) < 0.9, labels, (labels + 1) % 4)
    adv = np.where(rng.random(100) < np.array([0.3, 0.8, 0.5, 0.6])[labels], clean, (labels + 2) % 4)
    probs = rng.dirichlet(np.ones(4), size=100).astype(np.float32)
    return EvalResults(labels, clean, {"fgsm": clean.copy(), "pgd20": adv}, list(NAMES),
                       clean_probs=probs, adv_probs={"pgd20": probs[::-1].copy()})


def _homing(res: EvalResults) -> dict:
    from classwise.analysis import homing_counts, misclassified_confusion

    m = misclassified_confusion(res.labels, res.adv_pred["pgd20"], 4)
    h = homing_counts(res.labels, res.adv_pred["pgd20"], {2: res.labels % 2 == 0, 3: np.ones(100, bool)}, 4)
    per = [{"class": j, "flipped": int(m[:, j].sum()), "homed": int(np.nansum(h[:, j]))} for j in (2, 3)]
    homed, flipped = sum(p["homed"] for p in per), sum(p["flipped"] for p in per)
    return {"attack": "pgd20", "removed": [2, 3], "misclassified": m.tolist(),
            "homing": [[None if np.isnan(v) else int(v) for v in row] for row in h], "per_removed": per,
            "flipped": flipped, "homed": homed, "share": homed / flipped}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> dict[str, Path]:
    res = _results()
    metrics = [{"epoch": e, "robust": {"overall": 30.0 + e, "per_class": [20.0 + e, 60.0, 40.0, 30.0]}}
               for e in (1, 2)]
    # robustness under pgd20 is ordered car > cat > bird > plane here; norms follow it (rho = 1)
    robust = [float(np.mean(res.adv_pred["pgd20"][res.labels == k] == k)) for k in range(4)]
    weight = np.diag(1.0 + np.argsort(np.argsort(robust)))
    return write_report(tmp_path_factory.mktemp("full"), ReportContext.build(
        res, metrics=metrics, head_weight=weight, superclasses={"transport": [0, 1], "animals": [2, 3]},
        meta={"dataset": "toy4", "model": "smallcnn", "eps": 0.031}, notes=["a note"], homing=_homing(res),
        sanity=SANITY))


def test_report_contains_every_section_with_a_sentence(full_report):
    md, page = full_report["report_md"].read_text(), full_report["report_html"].read_text()
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == SECTIONS
    assert re.findall(r"<h2>(.*?)</h2>", page) == [html.escape(s) for s in SECTIONS]
    for title in SECTIONS[5:]:  # every table and figure says what it shows
        after = page.split(f"<h2>{html.escape(title)}</h2>", 1)[1].lstrip()
        assert after.startswith("<p>") and len(after[3:after.index("</p>")].split()) >= 8, title
    for line in ("most robust class:", "least robust class:", "largest class gap:", "Spearman rho of classifier",
                 "homing (pgd20):", "sanity flags: 2 (see Warnings)", "attack sanity: example flag",
                 "zero-gradient [cat]: 5.0% of examples have a zero gradient; suggests gradient masking"):
        assert line in md, line


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=NO_CHROMIUM)
def test_every_figure_renders_in_chromium(full_report, tmp_path):
    seen = browser_probe(full_report["report_html"], tmp_path)
    figures = sum(1 for k in full_report if k.startswith("fig_"))
    assert seen["images"] == figures == 9
    assert seen["rendered"] == seen["images"], seen
    assert seen["headings"] == SECTIONS


def _artifacts() -> Path:
    """Where browser tests leave screenshots for a reviewer: $CLASSWISE_TEST_ARTIFACTS, else build/test-artifacts."""
    return Path(os.environ.get("CLASSWISE_TEST_ARTIFACTS", Path(__file__).parents[1] / "build" / "test-artifacts"))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=NO_CHROMIUM)
@pytest.mark.parametrize("k", [10, pytest.param(100, marks=pytest.mark.slow)])
def test_gallery_sorting_and_class_picker_in_chromium(k, tmp_path):
    res, data = gallery_case(k=k, per=6)
    paths = write_report(tmp_path / "run", ReportContext.build(res, gallery=data))
    seen = browser_probe(paths["report_html"], tmp_path, script=USE)
    assert seen["thumbs"] > 0 and seen["thumbs_rendered"] == seen["thumbs"], seen["thumbs"]
    assert seen["overflow"] == [] and not seen["page_wider"], seen["overflow"]
    names = sorted(res.class_names)  # a click on "class" sorts by name, a second one reverses
    assert seen["before"] != names and seen["sorted_up"] == names and seen["sorted_down"] == names[::-1]
    assert seen["robust_down"] == sorted(seen["robust_down"], reverse=True) != sorted(seen["robust_down"])
    picked = res.class_names[-1]
    assert seen["picked"] == seen["shown"] == seen["shown_row"] == picked
    assert seen["shown_strips"] and set(seen["shown_strips"]) == {picked} and seen["shown_images"] > 0
    shot = screenshot(paths["report_html"], _artifacts() / f"report_{k}_classes.png", tmp_path)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
