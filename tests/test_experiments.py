"""The reproduction record: reproduce.py's --quick path, and the generator that turns saved records into docs/reproduction.md."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from classwise.errors import ClasswiseError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
record_gen = importlib.import_module("reproduction_record")


def test_committed_record_is_what_the_saved_summaries_give(capsys):
    """docs/reproduction.md equals the generator's output on the committed docs/reproduction/ records."""
    assert record_gen.main(["--check"]) == 0, capsys.readouterr().out


@pytest.fixture(scope="module")
def quick_record(tmp_path_factory) -> Path:
    """reproduce.py --quick on mnist5k (a 1-epoch robust and standard SmallCNN, every table-2 attack on a few images)."""
    reproduce = importlib.import_module("reproduce")
    tmp = tmp_path_factory.mktemp("repro")
    # --quick needs no --preset (mnist-fast: SmallCNN on mnist5k)
    reproduce.main(["--quick", "--runs", str(tmp / "runs"), "--record", str(tmp / "records" / "mnist-fast")])
    return tmp / "records"


def test_quick_reproduction_records_every_table(quick_record: Path):
    folder = quick_record / "mnist-fast"
    for f in ("record.json", "robust/summary.json", "robust/metrics.jsonl", "robust/meta.json", "standard/summary.json"):
        assert (folder / f).is_file(), f
    rec = json.loads((folder / "record.json").read_text())
    assert set(rec["attacks"]) == {"FGSM", "PGD", "CW-inf", "N-Attack", "Transfer", "Temperature-PGD"}
    k = len(rec["confusion"]["counts"])
    assert k == 10 and all(len(row) == k for row in rec["confusion"]["counts"])
    # the confusion counts cover exactly the protocol attack's examples
    summary = json.loads((folder / "robust/summary.json").read_text())
    assert sum(map(sum, rec["confusion"]["counts"])) == summary["attacks"][summary["protocol"]]["examples"]
    # every evaluation of the robust run is timed, wall and CPU
    evals = json.loads((folder / "robust/meta.json").read_text())["evaluations"]
    assert evals and all(e["seconds"] > 0 and e["cpu_seconds"] > 0 for e in evals)


def test_reproduce_writes_the_record_only_where_told(tmp_path: Path):
    """The record goes to --record, else under --runs; only --doc names the source tree's docs/ (never with --quick)."""
    import argparse

    reproduce = importlib.import_module("reproduce")
    args = lambda **kw: argparse.Namespace(**{"preset": "mnist-fast", "quick": False, "doc": False,  # noqa: E731
                                              "record": None, "runs": tmp_path / "runs"} | kw)
    assert reproduce.record_dir(args()) == tmp_path / "runs" / "records" / "mnist-fast"
    assert reproduce.record_dir(args(quick=True)) == tmp_path / "runs" / "records" / "mnist-fast-quick"
    assert reproduce.record_dir(args(record=tmp_path / "r")) == tmp_path / "r"
    assert reproduce.record_dir(args(doc=True)) == ROOT / "docs" / "reproduction" / "mnist-fast"
    with pytest.raises(ClasswiseError, match="excludes --quick"):
        reproduce.record_dir(args(doc=True, quick=True))
    with pytest.raises(ClasswiseError, match="excludes --record"):
        reproduce.record_dir(args(doc=True, record=tmp_path / "r"))


@pytest.mark.parametrize("argv, message", [
    (["--doc", "--quick"], "error: --doc writes the committed record"),
    ([], "error: --preset must be one of mnist-fast, cifar10-cpu, got None (only --quick has a default"),
    (["--preset", "mnist"], "error: --preset must be one of mnist-fast, cifar10-cpu, got 'mnist'"),
])
def test_reproduce_bad_arguments_are_one_error_line(argv, message, tmp_path, capsys):
    """Refused before anything is trained or written: one ``error:`` line, exit 2, no traceback."""
    reproduce, common = importlib.import_module("reproduce"), importlib.import_module("_common")
    with pytest.raises(SystemExit) as exit_:
        common.run_script(lambda: reproduce.main([*argv, "--runs", str(tmp_path / "runs")]))
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "runs").exists()


# Scripts without --quick: they compute from saved records in seconds, or (null_simulations) print only.
NO_QUICK = {"fairness_table", "reproduction_record", "null_simulations"}
NO_OUT = {"null_simulations"}  # writes nothing


def test_every_experiment_script_documents_quick_and_out(monkeypatch, capsys):
    """``SCRIPT --help`` exits 0 and names ``--quick`` and ``--out`` (apart from the documented exceptions)."""
    scripts = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if not p.stem.startswith("_"))
    assert len(scripts) >= 18 and NO_QUICK | NO_OUT <= set(scripts)
    for name in scripts:
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
        with pytest.raises(SystemExit) as exit_:
            module.main()  # argparse reads sys.argv
        text = capsys.readouterr().out
        assert exit_.value.code == 0 and text.startswith("usage:"), name
        assert ("--quick" in text) == (name not in NO_QUICK), name
        assert ("--out" in text) == (name not in NO_OUT), name


def test_table2_reads_the_results_of_its_own_attack_config():
    """A preset's PGD-20 (step 0.007) keeps "pgd20"; table 2's (step 0.003) is found under its own key, or is missing."""
    from dataclasses import asdict

    from classwise.config import AttackConfig

    table2 = importlib.import_module("table2")
    preset, ours = AttackConfig("pgd20", 0.031, 0.007), AttackConfig("pgd20", 0.031, 0.003)
    facts = {"pgd20": {"config": asdict(preset)}, "worst": {"over": ["pgd20"]}}
    assert table2.stored_key(facts, preset) == "pgd20" and table2.stored_key(facts, ours) is None
    facts["pgd20@step=0.003"] = {"config": asdict(ours)}
    assert table2.stored_key(facts, ours) == "pgd20@step=0.003"
    assert table2.stored_key(facts, AttackConfig("fgsm-rs", 0.031, 0.031)) is None


def test_rerun_reuses_unchanged_attack_blocks(quick_record: Path, tmp_path: Path, capsys):
    """A second reproduce.py reuses the record's attack blocks made on the same weights with the same configs."""
    reproduce = importlib.import_module("reproduce")
    runs, record = quick_record.parent / "runs", tmp_path / "mnist-fast"
    shutil.copytree(quick_record / "mnist-fast", record)
    before = json.loads((record / "record.json").read_text())["attacks"]
    capsys.readouterr()
    reproduce.main(["--preset", "mnist-fast", "--quick", "--runs", str(runs), "--record", str(record)])
    printed = capsys.readouterr().out
    assert printed.count("reused from the record") == len(before) == 6
    assert json.loads((record / "record.json").read_text())["attacks"] == before
    # a changed attack config is recomputed, the rest reused
    rec = json.loads((record / "record.json").read_text())
    rec["attacks"]["PGD"]["key"]["config"]["step_size"] = 0.5
    (record / "record.json").write_text(json.dumps(rec))
    reproduce.main(["--preset", "mnist-fast", "--quick", "--runs", str(runs), "--record", str(record)])
    printed = capsys.readouterr().out
    # PGD and Temperature-PGD are computed together (their paired counts), the rest reused
    assert printed.count("reused from the record") == 4 and "PGD (pgd5, " in printed
    assert "Temperature-PGD (tpgd:2, " in printed


def test_generator_renders_the_records_numbers(quick_record: Path, tmp_path: Path):
    text = record_gen.render(quick_record)
    rec = json.loads((quick_record / "mnist-fast" / "record.json").read_text())
    for label, block in rec["attacks"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} ("))
        assert record_gen.with_ci(block) in row  # the total with its interval, as recorded
        assert f"| {block['examples']} |" in row
    claims = [line for line in text.splitlines() if line.startswith("| Figure ") or line.startswith("| Table ")]
    verdicts = ("reproduced", "partly", "not", "tied", "inconclusive")
    assert len(claims) >= 6 and all(any(f"**{v}**" in c for v in verdicts) for c in claims)
    # the record keeps table 3's paired counts, and its row uses them (not the bound for unknown pairings)
    paired = rec["attacks"]["Temperature-PGD"]["paired"]
    assert paired["against"] == "PGD" and len(paired["only_reference"]) == len(paired["only_attack"]) == 10
    table3 = next(line for line in claims if line.startswith("| Table 3"))
    assert "exact McNemar (" in table3 and "pairing unknown" not in table3
    assert "cifar10-cpu`\n\n**not yet run.**" in text  # no record there: said, with its command
    assert text.count("not yet run") >= 3  # and the two paper-scale GPU rows
    out = tmp_path / "reproduction.md"
    assert record_gen.main(["--records", str(quick_record), "--out", str(out)]) == 0
    assert record_gen.main(["--records", str(quick_record), "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("reproduced", "REPRODUCED", 1))
    assert record_gen.main(["--records", str(quick_record), "--out", str(out), "--check"]) == 1


def test_generator_writes_only_where_told(tmp_path: Path, capsys):
    """Without --doc or --out the document is printed and nothing is written; --doc and --out exclude each other."""
    records = tmp_path / "records"
    records.mkdir()
    assert record_gen.main(["--records", str(records)]) == 0
    assert capsys.readouterr().out == record_gen.render(records) and list(tmp_path.iterdir()) == [records]
    assert "**not yet run.**" in record_gen.render(records)
    assert record_gen.main(["--records", str(records), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text() == record_gen.render(records)
    with pytest.raises(ClasswiseError, match="excludes --out"):
        record_gen.main(["--records", str(records), "--doc", "--out", str(tmp_path / "r.md")])


def test_failed_attempts_are_kept_in_the_record(quick_record: Path, tmp_path: Path):
    records = tmp_path / "records"
    shutil.copytree(quick_record, records)
    attempt = records / "mnist-fast" / "attempts" / "first-try"
    attempt.mkdir(parents=True)
    shutil.copyfile(quick_record / "mnist-fast" / "robust" / "metrics.jsonl", attempt / "metrics.jsonl")
    text = record_gen.render(records)
    assert "Attempt `first-try`" in text and "docs/reproduction/mnist-fast/attempts/first-try" in text


def test_superclass_share():
    rec = record_gen.Record({"superclasses": {"a": [0, 1], "b": [2]}, "class_names": ["x", "y", "z"]}, {}, [], {}, {},
                            2)
    share = record_gen.inside_share(record_gen.superclass_of(rec, 3))
    assert share(np.array([[0, 8, 2], [4, 0, 0], [1, 1, 0]])) == pytest.approx(12 / 16)  # 0->1, 1->0 stay in {0, 1}


def test_budget_is_stated_where_it_differs_from_the_papers():
    cw = {"facts": {"binary_search_steps": 2, "max_iterations": 100}, "n": [20] * 10, "examples": 200}
    assert record_gen.budget("CW-inf", cw, 10000, True) == "2 x 100 iterations (paper: 5 x 1000); 20 per class (paper: 200)"
    assert record_gen.budget("CW-inf", cw, 10000, False) == "2 x 100 iterations; 20 per class"
    same = {"facts": {"binary_search_steps": 5, "max_iterations": 1000}, "n": [200] * 10, "examples": 2000}
    assert record_gen.budget("CW-inf", same, 10000, True) == ""
    whole = {"facts": {}, "n": [1000] * 10, "examples": 10000}
    assert record_gen.budget("PGD", whole, 10000, True) == ""
    assert record_gen.budget("PGD", {**whole, "n": [100] * 10, "examples": 1000}, 10000, True) == (
        "100 per class (paper: the whole test set)")


def _calls(*calls):
    return [{"class": c, "significant": s, "tied_with": list(t)} for c, s, t in calls]


def test_table2_ends_are_tie_aware():
    """A class is the most robust only when every attack calls it significantly; ties say "tied"."""
    assert record_gen.end_status(_calls((1, True, ()), (1, True, ())), 1) == "reproduced"
    assert record_gen.end_status(_calls((1, True, ()), (0, False, (1, 8))), 1) == "tied"  # 1 tied with the leader
    assert record_gen.end_status(_calls((1, True, ()), (0, True, ())), 1) == "not"  # a significant other class
    assert record_gen.end_status(_calls((0, False, (8,)), (0, False, (8,))), 1) == "not"  # 1 not even tied
    assert record_gen.end_status(_calls((4, True, ()), (4, False, (2,))), None) == "tied"  # the same class, MNIST
    assert record_gen.end_status(_calls((4, True, ()), (2, True, ())), None) == "not"
    assert record_gen.combine("reproduced", "tied") == "partly" and record_gen.combine("tied", "tied") == "tied"
    assert record_gen.combine("not", "tied") == "not" and record_gen.combine("reproduced", "not") == "partly"


def test_gap_verdict_needs_disjoint_intervals():
    block = {"best_class": 0, "worst_class": 1, "ci95": [[60.0, 80.0], [50.0, 70.0]]}
    assert not record_gen.separated(block)
    block["ci95"][1] = [20.0, 40.0]
    assert record_gen.separated(block)


def _target_record(count: int, n: int, *, total: int = 1000, seconds: float = 600.0, device: str | None = None):
    """A record whose honest worst case keeps ``count`` of ``n`` attacked images (of ``total``), PGD 95%;
    made on ``device`` (an accelerator's name) or, by default, on a CPU."""
    head = {"overall": 100 * count / n, "overall_ci95": [0.0, 100.0], "count": [count], "n": [n], "examples": n}
    pgd = {"overall": 95.0, "overall_ci95": [93.0, 96.0], "count": [950], "n": [total], "examples": total}
    robust = {"headline": "worst", "protocol": "pgd40", "num_examples": total, "attacks": {"worst": head, "pgd40": pgd}}
    return record_gen.Record(robust=robust, standard={}, epochs=[], meta={"evaluations": []},
                             extra={"train_seconds": {"robust": seconds},
                                    "machine": {"cpu": "x86_64", "torch": "2", **({"device": device} if device else {})}},
                             standard_epochs=1)


def test_target_is_judged_by_the_honest_worst_case_never_by_the_protocol():
    """Met only on the whole test set; a sample shows a target missed (exact one-sided binomial) or undecided."""
    verdict = lambda rec: record_gen.target_row((88.0, 45.0), rec)[1].split("**")[1]  # noqa: E731
    assert verdict(_target_record(900, 1000)) == "met"
    assert verdict(_target_record(870, 1000)) == "missed"  # PGD's 95% does not rescue it
    assert verdict(_target_record(900, 1000, seconds=46 * 60)) == "missed"  # over the time budget
    assert verdict(_target_record(78, 100)) == "missed"  # p 0.003: significantly below on a sample
    assert verdict(_target_record(85, 100)) == "undecided"  # below the aim, not significantly
    assert verdict(_target_record(100, 100)) == "undecided"  # a sample never shows a target met
    row = record_gen.target_row((88.0, 45.0), _target_record(78, 100))[1]
    assert "a sample of 100 of 1,000 test images" in row and "pgd40 gives 95.0%" in row and "p 0.0034" in row
    # made on an accelerator: the CPU time budget is not judged, whatever the wall time; robustness still is
    assert verdict(_target_record(900, 1000, seconds=46 * 60, device="GPU X")) == "met in robustness (time not judged)"
    assert verdict(_target_record(870, 1000, device="GPU X")) == "missed"
    assert "on GPU X, so the CPU time budget is not judged" in record_gen.target_row(
        (88.0, 45.0), _target_record(870, 1000, device="GPU X"))[1]


def test_a_standard_model_still_learning_leaves_the_verdicts_of_figures_4_and_7():
    """Converged: the last epoch moved neither accuracy by 1 point; otherwise figure 7 is inconclusive."""
    def rec(*rows):
        curve = tuple({"epoch": i + 1, "clean": {"overall": c}, "train_acc": t} for i, (c, t) in enumerate(rows))
        return record_gen.Record({}, {}, [], {}, {}, len(rows), curve)

    assert record_gen.standard_convergence(rec((90.0, 88.0), (90.5, 88.9)))[0]
    still, why = record_gen.standard_convergence(rec((54.6, 47.0), (75.6, 66.7)))
    assert not still and "+21.0" in why and "not trained to convergence" in why
    assert not record_gen.standard_convergence(rec((90.0, 88.0), (90.5, 92.0)))[0]  # training accuracy still rising
    assert not record_gen.standard_convergence(rec((99.0, 99.0)))[0]  # one epoch: not shown
    robust = _claims_robust(pgd=[90, 50, 10], worst=[80, 40, 5])
    paper = {"fig7": "gaps larger in robust models"}
    for curve, verdict in (((90.0, 88.0), (90.5, 88.9)), "reproduced"), (((54.6, 47.0), (75.6, 66.7)), "inconclusive"):
        r = record_gen.Record(robust, {"clean": _count_block([95, 93, 94])}, [], {}, {}, 2,
                              tuple({"clean": {"overall": c}, "train_acc": t} for c, t in curve))
        claim = record_gen.fig7_claim(r, paper)
        assert claim.verdict == verdict and "robust (worst) gap 75.0" in claim.ours and "protocol (pgd) gap 80.0" in claim.ours


def _count_block(counts: list[int], n: int = 100) -> dict:
    """An accuracy block of robust ``counts`` out of ``n`` per class, with Wilson intervals."""
    from classwise.analysis.stats import wilson_interval

    ci = [[100 * v for v in wilson_interval(c, n)] for c in counts]
    return {"count": counts, "n": [n] * len(counts), "gap": float(max(counts) - min(counts)) * 100 / n,
            "best_class": int(np.argmax(counts)), "worst_class": int(np.argmin(counts)),
            "per_class": [100 * c / n for c in counts], "overall": 100 * sum(counts) / (n * len(counts)),
            "ci95": ci, "examples": n * len(counts)}


def _claims_robust(pgd: list[int], worst: list[int]) -> dict:
    """A robust summary whose protocol attack (pgd) and honest worst case (worst) keep these counts of 100 per class."""
    return {"class_names": [str(i) for i in range(len(pgd))], "protocol": "pgd", "headline": "worst",
            "attacks": {"pgd": _count_block(pgd), "worst": _count_block(worst)}}


def test_claims_are_judged_by_the_honest_worst_case_with_the_protocol_beside_it():
    """Figure 1 on classes the protocol attack separates but the worst case does not: the verdict follows the worst
    case, and the row shows both attacks' numbers and tests."""
    paper = {"fig1": "class gaps", "fig1_gap": (40, 50)}
    split = record_gen.fig1_claim(record_gen.Record(_claims_robust([90, 50, 45], [30, 30, 30]), {}, [], {}, {}, 1),
                                  paper)
    assert split.verdict == "not" and "worst: 30.0% overall" in split.ours and "protocol pgd: 61.7%" in split.ours
    assert split.test.count("chi-square") == 2
    kept = record_gen.fig1_claim(record_gen.Record(_claims_robust([90, 50, 45], [80, 40, 35]), {}, [], {}, {}, 1),
                                 paper)
    assert kept.verdict == "reproduced"  # gap 45 points, intervals disjoint


def _summary_run(folder: Path, robust_counts: list[int], n: int = 100) -> Path:
    """A run folder holding only a summary: 3 classes of ``n`` test images, 90% clean each, and the
    worst case's robust counts; built by ``summarize`` from per-sample predictions, as a real run's is."""
    from summary_cases import results_from_accuracies

    from classwise.analysis.summary import summarize
    from classwise.config import load_config
    from classwise.runs import Run

    Run.create(folder, load_config("demo"))
    results = results_from_accuracies([90.0] * 3, {"worst": [100 * c / n for c in robust_counts]}, n)
    (folder / "summary.json").write_text(json.dumps(summarize(results)))
    Run(folder).set_status("complete")
    return folder


def test_fairness_table_generator_writes_the_section_and_calls_significance(tmp_path, capsys):
    """One run per recipe: a worst class 20 points higher with disjoint intervals is significant,
    an average 1.3 points higher with overlapping intervals is not; --check sees a stale document."""
    gen = importlib.import_module("fairness_table")
    base = _summary_run(tmp_path / "trades", [10, 60, 50])
    fair = _summary_run(tmp_path / "dafa", [40, 45, 39])
    doc = tmp_path / "fairness.md"
    doc.write_text("intro\n<!-- fairness-table:tiny:start -->\nold\n<!-- fairness-table:tiny:end -->\nafter\n")
    plain = ["--section", "tiny", "--caption", "Tiny saved summaries.", "--group", f"trades={base}",
             "--group", f"dafa={fair}"]
    before = doc.read_text()
    capsys.readouterr()
    assert gen.main(plain) == 0 and doc.read_text() == before  # without --doc: printed, nothing written
    printed = capsys.readouterr().out
    assert gen.main([*plain, "--out", str(tmp_path / "table.md")]) == 0 and doc.read_text() == before
    assert (tmp_path / "table.md").read_text() == printed and printed.startswith("Tiny saved summaries.\n")
    args = ["--doc", str(doc), *plain]
    assert gen.main(args) == 0
    text = doc.read_text()
    assert printed in text
    assert text.startswith("intro\n<!-- fairness-table:tiny:start -->\nTiny saved summaries.\n") and "old" not in text
    assert "| trades | worst | 300 | 90.0 | 40.0 [" in text and "| dafa | worst | 300 | 90.0 | 41.3 [" in text
    assert ("- dafa against trades: average robust +1.3 points, not significant at this scale (intervals overlap); "
            "worst-class robust +29.0 points, significant (intervals disjoint).") in text
    assert text.endswith("<!-- fairness-table:tiny:end -->\nafter\n")
    assert gen.main([*args, "--check"]) == 0
    doc.write_text(text.replace("41.3", "41.0"))
    assert gen.main([*args, "--check"]) == 1
    capsys.readouterr()


def test_paper_temperature_axis_of_he_models():
    """The paper attacks cos theta / T; classwise attacks s cos theta / T'. At 1/T' = (1/T) / s both are one attack."""
    import torch
    from torch import nn

    from classwise.attacks import PGD, TemperaturePGD, make_threat
    from classwise.models.he import HEHead

    common = importlib.import_module("_common")

    class Tiny(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh())
            self.head = HEHead(8, 3, scale=scale, margin=0.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    torch.manual_seed(0)
    he = Tiny(scale=16.0)
    cos_only = Tiny(scale=1.0)
    cos_only.load_state_dict({k: v for k, v in he.state_dict().items() if k != "head.scale"}, strict=False)
    assert common.head_scale(he) == 16.0 and common.head_scale(cos_only) == 1.0
    assert common.head_scale(nn.Sequential(nn.Linear(2, 2))) == 1.0  # no HE head: the axes agree
    x, y = torch.rand(64, 1, 2, 6), torch.randint(0, 3, (64,))
    threat = make_threat("linf", 0.1, 0.02)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    paper = TemperaturePGD(cos_only, threat, 5.0, 10)(x, y, gen())  # the paper's 1/T = 5 on cos theta
    ours = TemperaturePGD(he, threat, 5.0 / 16.0, 10)(x, y, gen())  # classwise at 1/T' = 5 / s
    plain = PGD(he, threat, 10)(x, y, gen())  # 1/T' = 1: what an unconverted axis attacks
    assert (paper - ours).abs().max() < 1e-4
    assert (paper - plain).abs().max() > 1e-3


def _record(robust: dict | None = None, attacks: dict | None = None) -> "record_gen.Record":
    return record_gen.Record(robust or {}, {}, [], {}, {"attacks": attacks or {}}, 2)


def _block(count: list[int], n: int) -> dict:
    return {"count": count, "n": [n] * len(count), "overall": 100 * sum(count) / (n * len(count)),
            "examples": n * len(count)}


def test_table3_verdict_from_paired_counts():
    pgd = _block([600] * 10, 1000)
    same = _block([601] * 10, 1000) | {"paired": {"against": "PGD", "only_reference": [2] * 10, "only_attack": [3] * 10}}
    claim = record_gen.table3_claim(_record(attacks={"PGD": pgd, "Temperature-PGD": same}), {})
    assert claim.verdict == "reproduced" and "exact McNemar (20 vs 30 discordant)" in claim.test
    worse = _block([560] * 10, 1000) | {"paired": {"against": "PGD", "only_reference": [45] * 10,
                                                   "only_attack": [5] * 10}}
    assert record_gen.table3_claim(_record(attacks={"PGD": pgd, "Temperature-PGD": worse}), {}).verdict == "not"
    unpaired = {k: v for k, v in same.items() if k != "paired"}  # an older record: the bound decides
    claim = record_gen.table3_claim(_record(attacks={"PGD": pgd, "Temperature-PGD": unpaired}), {})
    assert claim.verdict == "inconclusive" and "pairing unknown" in claim.test


def test_weak_hurt_verdict_is_not_fooled_by_a_ceiling():
    """Every class has one logistic margin, shifted (pure ceiling): the absolute drop calls it, the verdict must not."""
    from scipy.special import expit
    from scipy.stats import spearmanr

    from classwise.analysis.verdicts import shifted_margin_null

    levels = np.linspace(0.7, 0.995, 10)
    n = np.full(10, 1000)
    sim = shifted_margin_null(levels, 0.6, n, family="logistic", reps=20, seed=0)
    robust = {"claims": {"weak_hurt_more": [{"weaker": "fgsm", "stronger": "pgd"}]}}
    verdicts, absolute = [], []
    for weak, strong in zip(sim["weak"], sim["strong"]):
        robust["attacks"] = {"fgsm": _block(weak.tolist(), 1000), "pgd": _block(strong.tolist(), 1000)}
        claim = record_gen.weak_hurt_claim(_record(robust))
        verdicts.append(claim.verdict)
        absolute.append(spearmanr(weak, weak - strong).statistic)
    assert np.mean(absolute) < -0.7  # the absolute drop "finds" the claim in floor and ceiling effects alone
    assert verdicts.count("reproduced") <= 3  # the verdict's rule: at most 5% of such nulls (1 expected of 20)
    mu = np.log(levels / (1 - levels))
    steeper = np.round(1000 * expit(mu - (2.5 - 0.5 * mu))).astype(int).tolist()  # weaker classes lose more
    robust["attacks"] = {"fgsm": _block(np.round(1000 * levels).astype(int).tolist(), 1000),
                         "pgd": _block(steeper, 1000)}
    assert record_gen.weak_hurt_claim(_record(robust)).verdict == "reproduced"


def test_stronger_attacks_claim_is_judged_from_fgsm_to_the_honest_worst_case():
    """Section 3.3 on FGSM -> the worst case (the strongest evaluation), FGSM -> the protocol attack beside it: a
    protocol attack that takes the same 1% everywhere shows nothing; a worst case that takes most of the weak
    classes' robust examples shows the claim on both scales."""
    w = np.linspace(950, 500, 10).astype(int)
    attacks = {"fgsm": {"count": w.tolist(), "n": [1000] * 10},
               "pgd": {"count": (w - 10).tolist(), "n": [1000] * 10},
               "worst": {"count": (w - 0.8 * (1000 - w)).astype(int).tolist(), "n": [1000] * 10}}
    robust = {"class_names": [str(i) for i in range(10)], "protocol": "pgd", "headline": "worst", "attacks": attacks,
              "claims": {"weak_hurt_more": [{"weaker": "fgsm", "stronger": "pgd"}]}}
    claim = record_gen.weak_hurt_claim(record_gen.Record(robust, {}, [], {}, {}, 1))
    assert claim is not None and claim.verdict == "reproduced"
    assert "fgsm -> worst on 10,000" in claim.ours and "fgsm -> pgd on 10,000" in claim.ours
    assert claim.test.count("worst: Spearman") == 2 and claim.test.count("pgd: Spearman") == 2
    robust["headline"] = "pgd"  # judged by the protocol alone: the same 1% everywhere is no effect
    assert record_gen.weak_hurt_claim(record_gen.Record(robust, {}, [], {}, {}, 1)).verdict == "not"
