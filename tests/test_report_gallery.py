"""The answer-first report and its galleries, without a browser: the headline card, the class table weakest
first, the collapsed statements, seeded gallery choices, thumbnails that decode, and the bounded keep of
adversarial images (the same examples whatever the batches)."""

from __future__ import annotations

import base64
import html
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from classwise.jobs.attacking import ROBUST_KEPT, AdvImages
from classwise.report import ReportContext, write_report
from classwise.report.gallery import FOOLED, ROBUST, amplified, class_strips, gallery_classes, top_pairs
from classwise.report.glance import cost_text, headline_card, weakest_first
from classwise.results import EvalResults

from gallery_cases import K, gallery_case

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    res, data = gallery_case()
    run = tmp_path_factory.mktemp("gallery")
    ctx = ReportContext.build(res, gallery=data)
    return run, ctx, write_report(run, ctx)


def test_report_opens_with_the_card_then_one_class_table_weakest_first(report):
    _, ctx, paths = report
    page = paths["report_html"].read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads[:3] == ["At a glance", "Class by class", "Statistical statements"]
    assert page.index('<section class="card"><h2>At a glance</h2>') < page.index("<h2>Class by class</h2>")
    table = page.split('<table class="classes">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-class="([^"]+)">', table)
    names = ctx.summary.class_names
    assert rows == [names[i] for i in weakest_first(ctx.summary)]
    robust = [ctx.summary.attacks["pgd20"].per_class[names.index(r)] for r in rows]
    assert robust == sorted(robust)  # weakest first, in fact
    assert table.count('class="ci"') == 2 * K  # an interval bar per class under clean and pgd20
    details = page.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "<h2>Statistical statements</h2>" in details and "least robust class:" in details


def test_card_names_weakest_class_suite_and_badges(report):
    _, ctx, _ = report
    card = headline_card(ctx.summary, [{"check": "zero-gradient", "scope": "c1", "detail": "", "suggests": ""}], 1)
    text = "\n".join(card.items)
    worst = ctx.summary.attacks["pgd20"].worst_call
    assert f"weakest class: {'' if worst.significant else 'tied: '}c{worst.index} " in text
    assert "attack suite: fgsm; pgd20" in text and card.badges == ("zero-gradient: c1",)
    assert headline_card(ctx.summary, [], 0).badges == ("no sanity flags",)


def test_attack_suite_shows_the_cost_when_the_summary_records_it():
    from classwise.analysis.schema import AttackCost

    block = SimpleNamespace(cost=AttackCost(forwards=300, backwards=214, examples=1, backwards_per_example=214.0))
    assert cost_text("strong", block) == "strong: 214 gradient passes per example"
    half = SimpleNamespace(cost=AttackCost(forwards=92, backwards=46, examples=100, backwards_per_example=0.46))
    assert cost_text("fgsm", half) == "fgsm: 0.46 gradient passes per example"
    assert cost_text("pgd20", SimpleNamespace()) == "pgd20"


def test_every_gallery_image_is_a_png_that_decodes_and_matches_its_file(report):
    run, ctx, paths = report
    page = paths["report_html"].read_text()
    gallery = page.split("<h2>Gallery under pgd20</h2>", 1)[1].split("<h2>", 1)[0]
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', gallery)
    shots = re.findall(r'<div class="shot">', gallery)
    assert len(uris) == 3 * len(shots) > 0  # clean, adversarial, perturbation per example
    for uri in uris:
        assert Image.open(io.BytesIO(base64.b64decode(uri))).size == (8, 8)
    md = paths["report_md"].read_text()
    linked = re.findall(r"\]\((figures/gallery/[^)]+\.png)\)", md)
    assert len(linked) == len(uris) and all((run / p).is_file() for p in linked)
    picker = re.findall(r'<option value="([^"]+)">', page)
    assert picker == list(ctx.summary.class_names)


def test_gallery_choice_is_seeded_and_truthful():
    res, data = gallery_case()
    from classwise.analysis import build_summary

    summary = build_summary(res)
    a, b = class_strips(data, res, summary), class_strips(data, res, summary)
    assert [s.label for s in a] == [s.label for s in b]
    assert [[sh.caption for sh in s.shots] for s in a] == [[sh.caption for sh in s.shots] for s in b]
    other = class_strips(data, res, summary, seed=1)
    assert [[sh.caption for sh in s.shots] for s in other] != [[sh.caption for sh in s.shots] for s in a]
    for strip in a:
        c = summary.class_names.index(strip.anchor)
        verdicts = [sh.caption.split(", ")[-2].split()[-1] for sh in strip.shots]
        assert verdicts.count("fooled") <= FOOLED and verdicts.count("robust") <= ROBUST
        for shot in strip.shots:
            t = int(shot.caption[1:].split()[0])
            assert res.labels[t] == c and t in data.index  # a saved example of this class
            assert ("fooled" in shot.caption) == (res.adv_pred["pgd20"][t] != c)


def test_perturbation_is_amplified_to_the_full_range():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 4, 4)).astype(np.float32)
    delta = rng.uniform(-0.01, 0.01, clean.shape).astype(np.float32)
    shown, gain = amplified(clean, clean + delta)
    assert np.abs(shown - 0.5).max() == pytest.approx(0.5, abs=1e-6)
    assert gain == pytest.approx(0.5 / np.abs(delta).max(), rel=1e-5)
    same, _ = amplified(clean, clean)
    assert np.all(same == 0.5)


def test_many_classes_show_the_weakest_and_strongest_ten():
    res, _ = gallery_case(k=30, per=4)
    from classwise.analysis import build_summary

    summary = build_summary(res)
    shown, order = gallery_classes(summary), weakest_first(summary)
    assert shown == order[:10] + order[-10:]
    pairs = top_pairs(res, "pgd20", 30)
    assert len(pairs) == 3 and all(i != j and n > 0 for i, j, n, _ in pairs)
    assert [n for *_, n, _ in pairs] == sorted([n for *_, n, _ in pairs], reverse=True)


class _Saved:
    """A stand-in run that records what AdvImages.save writes."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[np.ndarray, torch.Tensor]] = {}

    def save_adv(self, name, index, images, facts):
        self.files[name] = (index, images)


def _kept(keep: int, batches: list[np.ndarray], labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    adv, idx = AdvImages(keep, labels, seed=3), np.arange(len(labels))
    for batch in batches:
        sink = adv.sink(idx)
        sink("pgd20", batch, torch.as_tensor(batch, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2))
    run = _Saved()
    results = EvalResults(labels, labels.copy(), {"pgd20": pred}, [f"c{i}" for i in range(labels.max() + 1)],
                          extras={"index": idx})
    adv.save(run, {"pgd20": {}}, {"pgd20": {}}, results)
    return run.files["pgd20"]


def test_bounded_keep_is_the_same_whatever_the_batches_and_fooled_first():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    pred = np.where(rng.random(120) < np.array([0.1, 0.5, 0.9, 1.0])[labels], labels, (labels + 1) % 4)
    one = _kept(6, [np.arange(120)], labels, pred)
    split = _kept(6, [np.arange(120)[i::7] for i in range(7)], labels, pred)
    assert np.array_equal(one[0], split[0]) and torch.equal(one[1], split[1])
    assert torch.equal(one[1][:, 0, 0, 0], torch.as_tensor(one[0], dtype=torch.float32))  # images follow their index
    index, first = one[0], np.argsort(np.random.default_rng(3).permutation(120), kind="stable")
    for c in range(4):
        held = [t for t in first if labels[t] == c][:12]  # while attacking: 2 * keep per class, in the seeded order
        held_fooled = sum(pred[t] != c for t in held)
        mine = index[labels[index] == c]
        assert len(mine) == 6 and set(mine) <= set(held)
        assert (pred[mine] != c).sum() == min(held_fooled, 6 - min(ROBUST_KEPT, 12 - held_fooled))


def test_picker_and_sort_script_is_inline(report):
    page = report[2]["report_html"].read_text()
    assert '<select id="pick">' in page and "<script src" not in page and "addEventListener" in page
    assert html.escape("c0") in page


def test_homing_examples_split_flips_into_those_that_home_and_those_that_do_not():
    from classwise.analysis import build_summary
    from classwise.report.gallery import homing_section

    res, data = gallery_case()
    summary, j = build_summary(res), 2
    flipped = np.flatnonzero((res.adv_pred["pgd20"] == j) & (res.labels != j))
    homed = flipped[::2].tolist()  # a retrain that classifies every other flipped example correctly
    section = homing_section(data, res, summary, {"attack": "pgd20", "per_removed": [
        {"class": j, "flipped": len(flipped), "homed": len(homed), "homed_index": homed}]})
    home, stay = section.gallery.strips
    assert "and home (" in home.label and "do not home" in stay.label and home.shots and stay.shots
    for strip, expect in ((home, True), (stay, False)):
        for shot in strip.shots:
            t = int(shot.caption[1:].split()[0])
            assert res.adv_pred["pgd20"][t] == j != res.labels[t] and (t in homed) == expect
    assert homing_section(data, res, summary, {"attack": "fgsm", "per_removed": []}) is None
