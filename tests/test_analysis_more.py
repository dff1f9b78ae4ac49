"""Contracts of the diagnoses of figures 3, 5, 6, 7, 8 and the many-class view, on hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from classwise.analysis import (
    INTERVAL_LABELS,
    classwise_probability_variance,
    confound_classes,
    flipped_to,
    gap_comparison,
    homing_counts,
    homing_share,
    misclassified_confusion,
    probability_variance,
    robustness_intervals,
    sample_classes,
    tsne_2d,
)
from classwise.attacks import PGD, LinfThreat
from classwise.attacks.tpgd import TemperaturePGD
from classwise.compare import compare_runs
from classwise.models.base import Classifier, Normalize
from classwise.probes import adversarial_images, penultimate_features, probability_trajectory
from classwise.report import figures

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
ADV = np.array([0, 1, 2, 1, 0, 1, 1, 2])  # flips: 0->1, 0->2, 1->0, 2->1, 2->1


def test_misclassified_confusion_counts_with_zero_diagonal():
    m = misclassified_confusion(LABELS, ADV, 3)
    np.testing.assert_array_equal(m, [[0, 1, 1], [1, 0, 0], [0, 2, 0]])
    assert m.dtype.kind == "i"
    assert confound_classes(LABELS, ADV, 3) == [0, 1, 2]
    assert confound_classes(LABELS, np.where(ADV == 2, LABELS, ADV), 3) == [0, 1]


def test_flipped_to_excludes_the_class_itself():
    np.testing.assert_array_equal(flipped_to(LABELS, ADV, 1), [0, 1, 0, 0, 0, 1, 1, 0])


def test_homing_counts_and_share_hand_computed():
    # Retrained without class 1: of the three examples flipped into 1 (indices 1, 5, 6) two are robust;
    # index 3 (a robust example of class 1 itself) is ignored even if marked robust.
    robust_without_1 = np.array([0, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    h = homing_counts(LABELS, ADV, {1: robust_without_1}, 3)
    np.testing.assert_array_equal(h[:, 1], [1, 0, 1])  # class 0: 1 homes, class 2: 1 of 2 homes
    assert np.all(np.isnan(h[:, [0, 2]]))  # not retrained
    m = misclassified_confusion(LABELS, ADV, 3)
    assert homing_share(m, h) == pytest.approx(2 / 3)
    assert np.all(h[:, 1] <= m[:, 1])
    assert math.isnan(homing_share(m, np.full((3, 3), np.nan)))


def test_probability_variance_one_hot_and_uniform():
    probs = np.array([[1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(probability_variance(probs), [3 / 16, 0.0, 1 / 16])
    per_class = classwise_probability_variance(np.array([0, 0, 2]), probs, 3)
    np.testing.assert_allclose(per_class[[0, 2]], [3 / 32, 1 / 16])
    assert np.isnan(per_class[1])
    with pytest.raises(ValueError):
        classwise_probability_variance(np.array([0, 1]), probs, 3)


def test_robustness_intervals_follow_the_papers_closed_right_bins():
    counts = robustness_intervals(np.array([0.0, 10.0, 10.5, 55.0, 100.0, 90.0, np.nan]))
    np.testing.assert_array_equal(counts, [2, 1, 0, 0, 0, 1, 0, 0, 1, 1])
    assert len(INTERVAL_LABELS) == 10 and INTERVAL_LABELS[0] == "[0,10]" and INTERVAL_LABELS[-1] == "(90,100]"
    with pytest.raises(ValueError):
        robustness_intervals(np.array([101.0]))


def test_gap_comparison_hand_computed():
    out = gap_comparison(np.array([90.0, 95.0, 85.0]), np.array([40.0, 70.0, 20.0]))
    assert out["standard"] == {"best": 1, "worst": 2, "gap": 10.0}
    assert out["robust"] == {"best": 1, "worst": 2, "gap": 50.0}
    assert out["ratio"] == pytest.approx(5.0)
    with pytest.raises(ValueError):
        gap_comparison(np.zeros(3), np.zeros(4))


def test_sample_classes_seeded_sorted_and_all_when_few():
    a = sample_classes(100, 12, seed=0)
    assert len(a) == 12 and len(set(a.tolist())) == 12 and np.all(np.diff(a) > 0) and a.max() < 100
    np.testing.assert_array_equal(a, sample_classes(100, 12, seed=0))
    assert not np.array_equal(a, sample_classes(100, 12, seed=1))
    np.testing.assert_array_equal(sample_classes(10, 12), np.arange(10))


def test_tsne_separates_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    feats = rng.normal(size=(30, 8)) * 0.1 + labels[:, None] * 5.0
    emb = tsne_2d(feats, seed=0)
    assert emb.shape == (30, 2)
    np.testing.assert_allclose(emb, tsne_2d(feats, seed=0))
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1) + np.eye(30) * 1e9
    assert np.all(labels[d.argmin(1)] == labels)  # nearest neighbour in the same class
    with pytest.raises(ValueError):
        tsne_2d(np.zeros((3, 2)))


def _tiny_model(k: int = 3) -> Classifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU())
    return Classifier(Normalize(0.5, 0.25, 1), backbone, nn.Linear(6, k)).eval()


def test_probability_trajectory_replays_pgd_step_by_step():
    model = _tiny_model()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    attack = PGD(model, LinfThreat(0.3, 0.05), steps=4, keep_best=False)
    traj = probability_trajectory(model, x, y, attack, steps=(0, 1, 4), generator=torch.Generator().manual_seed(3))
    assert traj.shape == (3, 5, 3) and traj.dtype == np.float32
    np.testing.assert_allclose(traj.sum(-1), 1.0, rtol=1e-5)
    x_adv = attack(x, y, torch.Generator().manual_seed(3))  # same random start, last iterate
    with torch.no_grad():
        np.testing.assert_allclose(traj[2], model(x_adv).softmax(1).numpy(), rtol=1e-4, atol=1e-6)
    clean = PGD(model, LinfThreat(0.3, 0.05), steps=2, random_start=False)
    first = probability_trajectory(model, x, y, clean, steps=(0,))
    with torch.no_grad():
        np.testing.assert_allclose(first[0], model(x).softmax(1).numpy(), rtol=1e-5)
    assert model.training is False


def test_probability_trajectory_temperature_view():
    model = _tiny_model()
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    attack = TemperaturePGD(model, LinfThreat(0.3, 0.05), inv_temperature=10.0, steps=1, random_start=False)
    seen = probability_trajectory(model, x, y, attack, steps=(0,), attack_view=True)
    with torch.no_grad():
        np.testing.assert_allclose(seen[0], (model(x) * 10.0).softmax(1).numpy(), rtol=1e-4, atol=1e-6)


def test_features_and_adversarial_images():
    model = _tiny_model()
    x, y = (torch.rand(7, 1, 4, 4) * 255).to(torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    feats = penultimate_features(model, x, batch_size=3)
    assert feats.shape == (7, 6)
    with torch.no_grad():
        np.testing.assert_allclose(model.head(torch.from_numpy(feats)).numpy(), model(x.float() / 255).numpy(),
                                   rtol=1e-5, atol=1e-6)
    adv = adversarial_images(PGD(model, LinfThreat(0.1, 0.05), steps=2), x, y, batch_size=4)
    assert adv.shape == x.shape and adv.dtype == torch.float32
    assert float((adv - x.float() / 255).abs().max()) <= 0.1 + 1e-6


def test_new_figures_write_pngs(tmp_path):
    names = ["a", "b", "c"]
    m = misclassified_confusion(LABELS, ADV, 3)
    h = homing_counts(LABELS, ADV, {1: np.ones(8, bool)}, 3)
    paths = [
        figures.plot_homing(m, h, names, tmp_path / "homing.png"),
        figures.plot_homing(m, None, names, tmp_path / "mis.png"),
        figures.plot_probability_variance({"clean": np.array([0.1, 0.2, 0.05])}, names, tmp_path / "var.png"),
        figures.plot_probability_trajectory(np.full((3, 3), 1 / 3), [1, 10, 20], names, 0, tmp_path / "traj.png"),
        figures.plot_robustness_intervals(np.arange(10), list(INTERVAL_LABELS), tmp_path / "int.png"),
        figures.plot_gap_comparison(np.array([90.0, 95, 85]), np.array([40.0, 70, 20]), names,
                                    gap_comparison(np.array([90.0, 95, 85]), np.array([40.0, 70, 20])),
                                    tmp_path / "gap.png", overall=(90.0, 43.3)),
        figures.plot_tsne(np.random.default_rng(0).normal(size=(6, 2)), np.zeros((6, 2)), np.array([0, 1, 2] * 2),
                          names, tmp_path / "tsne.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p


def _fake_run(folder, clean, robust, n: int = 20):
    """A reported run of 3 classes of ``n`` test images each: clean and pgd20 accuracies in percent per class.

    The summary is built by ``summarize`` from per-sample predictions with those
    accuracies (each a multiple of 100 / n; robust <= clean), as a real run's is.
    """
    from summary_cases import results_from_accuracies

    from classwise.analysis.summary import summarize
    from classwise.config import load_config
    from classwise.runs import Run

    Run.create(folder, load_config("demo"))
    (folder / "summary.json").write_text(json.dumps(summarize(results_from_accuracies(clean, {"pgd20": robust}, n))))
    Run(folder).set_status("complete")  # a reported run (compare marks the rows of one that is not)
    return folder


def test_compare_runs_writes_figure_7(tmp_path):
    std = _fake_run(tmp_path / "std", [90.0, 95.0, 85.0], [0.0, 5.0, 0.0])
    rob = _fake_run(tmp_path / "rob", [80.0, 85.0, 70.0], [40.0, 70.0, 20.0])
    rec = compare_runs(std, rob, tmp_path / "out")
    assert rec["standard"]["gap"] == 10.0 and rec["robust"]["gap"] == 50.0 and rec["attack"] == "pgd20"
    for name in ("gap_comparison.json", "gap_comparison.csv", "gap_comparison.png"):
        assert (tmp_path / "out" / name).is_file()
    saved = json.loads((tmp_path / "out" / "gap_comparison.json").read_text())
    assert saved["robust_per_class"] == [40.0, 70.0, 20.0] and saved["ratio"] == pytest.approx(5.0)


def _spy_class_names(monkeypatch, module, name: str, store: dict) -> None:
    """Wrap ``module.name`` so that the class names it is called with land in ``store[name]``."""
    original = getattr(module, name)

    def spy(*args, **kwargs):
        store[name] = next(a for a in args if isinstance(a, list))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_report_with_many_classes_shows_12_sampled_classes(tmp_path, monkeypatch):
    from classwise.report import ReportContext, build, write_report
    from classwise.results import EvalResults

    k = 30
    labels = np.repeat(np.arange(k), 4)
    pred = np.where(np.arange(labels.size) % 2 == 0, labels, (labels + 1) % k)
    res = EvalResults(labels, labels.copy(), {"pgd20": pred}, [f"c{i}" for i in range(k)])
    metrics = [{"epoch": 1, "robust": {"overall": 50.0, "per_class": [50.0] * k}}]
    shown: dict[str, list[str]] = {}
    for name in ("plot_classwise_epochs", "plot_norm_vs_robustness"):
        _spy_class_names(monkeypatch, build.figures, name, shown)
    write_report(tmp_path, ReportContext.build(res, metrics=metrics, head_weight=np.eye(k)))
    expected = [f"c{i}" for i in sample_classes(k, 12, seed=0)]
    assert shown["plot_classwise_epochs"] == expected and shown["plot_norm_vs_robustness"] == expected
    md = (tmp_path / "report.md").read_text()
    assert md.count("seeded random sample of 12 classes") >= 2 and "over all 30 classes" in md


def test_compare_cli(tmp_path):
    from classwise.cli import main

    std = _fake_run(tmp_path / "std", [90.0, 95.0, 85.0], [0.0, 5.0, 0.0])
    rob = _fake_run(tmp_path / "rob", [80.0, 85.0, 70.0], [40.0, 70.0, 20.0])
    assert main(["compare", str(std), str(rob), "--figure7"]) == 0
    assert (rob / "compare" / "gap_comparison.png").is_file()
    assert main(["compare", str(std), str(rob), "--attack", "nope", "--figure7"]) == 2
    assert main(["compare", str(std), "--figure7"]) == 2  # figure 7 needs exactly two runs


def _with_wilson(k: int, n: int) -> str:
    """``k`` of ``n`` in percent with its Wilson 95% interval, as compare.md prints it (computed here by hand)."""
    z = 1.959963984540054
    centre, half = (k + z * z / 2) / (n + z * z), z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return f"{100 * k / n:.1f} [{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"


def test_compare_table_of_any_number_of_runs(tmp_path):
    from classwise.cli import main

    a = _fake_run(tmp_path / "a", [90.0, 95.0, 85.0], [10.0, 30.0, 20.0])
    b = _fake_run(tmp_path / "b", [80.0, 85.0, 70.0], [40.0, 70.0, 20.0])
    c = _fake_run(tmp_path / "c", [60.0, 80.0, 40.0], [40.0, 0.0, 20.0], n=5)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), str(c), "--attack", "pgd20", "--out", str(out)]) == 0
    rows = (out / "compare.csv").read_text().splitlines()
    assert rows[0] == "run (attack),total,a,b,c,most_robust,most_vulnerable"
    assert rows[1:] == ["a (pgd20; n=60),20.00,10.00,30.00,20.00,b,a", "b (pgd20; n=60),43.33,40.00,70.00,20.00,b,c",
                        "c (pgd20; n=15),20.00,40.00,0.00,20.00,a,b"]  # c: 5 test images a class
    md = (out / "compare.md").read_text()
    b_row = [_with_wilson(k, n) for k, n in ((26, 60), (8, 20), (14, 20), (4, 20))]  # b: 26 of 60 robust, ...
    assert f"| b (pgd20; n=60) | {b_row[0]} | {b_row[1]} | <u>{b_row[2]}</u> | **{b_row[3]}** |" in md
    assert (out / "compare.png").is_file()
    fair = (out / "fairness.md").read_text()
    assert "| Run | attack | n | clean |" in fair and "| c | pgd20 | 15 | 60.0 |" in fair
    assert not any((run / "compare").exists() for run in (a, b, c))  # --out, and nothing in the runs
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0  # no --attack: clean and every attack
    assert len((out / "compare.csv").read_text().splitlines()) == 1 + 4
    assert main(["compare", str(a), str(b), "--attack", "nope"]) == 2


def test_compare_groups_of_seeds_reports_mean_std_and_a_welch_test(tmp_path):
    """Two recipes, three seeds each: mean +- std (ddof 1) over seeds of clean, average and worst-class
    robust accuracy and NSD; Welch's t-test of the second against the first, recomputed here by hand."""
    from scipy.stats import t as student_t

    from classwise.cli import main

    robust = {"base": [[10.0, 30.0, 20.0], [15.0, 30.0, 25.0], [10.0, 35.0, 20.0]],
              "fair": [[25.0, 30.0, 25.0], [30.0, 25.0, 30.0], [25.0, 35.0, 30.0]]}
    groups = {name: [_fake_run(tmp_path / f"{name}-s{i}", [90.0, 95.0, 85.0], r) for i, r in enumerate(rows)]
              for name, rows in robust.items()}
    out = tmp_path / "cmp"
    args = [f"--group={name}=" + ",".join(map(str, runs)) for name, runs in groups.items()]
    assert main(["compare", *args, "--out", str(out)]) == 0
    rec = json.loads((out / "fairness.json").read_text())
    worst = {name: np.array([min(r) for r in rows]) for name, rows in robust.items()}
    for name, rows in robust.items():
        g = rec["groups"][name]
        means = np.array([np.mean(r) for r in rows])
        assert g["runs"] == 3 and g["robust"]["mean"] == pytest.approx(means.mean())
        assert g["robust"]["std"] == pytest.approx(means.std(ddof=1)) and g["worst"]["values"] == worst[name].tolist()
        nsd = [np.std(r) / np.mean(r) for r in rows]
        assert g["nsd"]["values"] == pytest.approx(nsd)
    a, b = worst["base"], worst["fair"]  # Welch: t = (mean_b - mean_a) / sqrt(va/na + vb/nb), Satterthwaite df
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t = (b.mean() - a.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert rec["groups"]["fair"]["vs"]["p_worst"] == pytest.approx(2 * student_t.sf(abs(t), df))
    assert "vs" not in rec["groups"]["base"]
    md = (out / "fairness.md").read_text()
    assert "| fair | 3 | 90.0 ± 0.0 |" in md and "Welch" in md and md.count("| base: base-s") == 3


def test_compare_shows_the_simultaneous_worst_class_interval_of_every_run(tmp_path):
    from scipy.stats import beta

    from classwise.cli import main

    a = _fake_run(tmp_path / "a", [90.0, 95.0, 85.0], [10.0, 30.0, 20.0])
    b = _fake_run(tmp_path / "b", [80.0, 85.0, 70.0], [40.0, 70.0, 20.0])
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    rows = {r["run"]: r for rs in json.loads((out / "fairness.json").read_text())["runs"].values() for r in rs}
    r = rows[str(a)]
    level = 1 - 0.05 / 3  # Bonferroni over 3 classes; worst class 'a': 2 of 20 robust
    assert r["worst"] == 10.0 and r["worst_classes"] == ["a"]
    assert r["worst_low"] == pytest.approx(100 * beta.ppf((1 - level) / 2, 2, 19))
    assert r["worst_high"] == pytest.approx(100 * beta.ppf(1 - (1 - level) / 2, 3, 18))
    assert r["nsd"] == pytest.approx(np.std([10, 30, 20]) / 20)
    assert "| a | pgd20 | 60 | 90.0 | 20.0 [" in (out / "fairness.md").read_text()


@pytest.mark.parametrize("args", [["--group", "nope"], ["--group", "a=x", "--group", "a=y"], ["--group", "=x"], []])
def test_compare_group_input_errors(tmp_path, args, capsys):
    from classwise.cli import main

    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_compare_of_a_summary_without_counts_is_one_error_naming_the_fix(tmp_path, capsys):
    """An older or hand-edited summary.json without per-class counts: refused (one line), nothing written."""
    from classwise.cli import main

    a = _fake_run(tmp_path / "a", [90.0, 95.0, 85.0], [10.0, 30.0, 20.0])
    summary = json.loads((a / "summary.json").read_text())
    del summary["attacks"]["pgd20"]["count"]
    (a / "summary.json").write_text(json.dumps(summary))
    for args in (["compare", str(a)], ["compare", "--group", f"a={a}"]):
        assert main([*args, "--out", str(tmp_path / "cmp")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "'attacks.pgd20.count': missing" in err[0] and "classwise report" in err[0]
    assert not (tmp_path / "cmp").exists()
