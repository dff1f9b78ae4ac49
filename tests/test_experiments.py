"""The reproduction record: reproduce.py's --quick path, and the generator that turns saved records into docs/reproduction.md."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

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
    reproduce.main(["--preset", "mnist-fast", "--quick", "--runs", str(tmp / "runs"),
                    "--record", str(tmp / "records" / "mnist-fast")])
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
    assert printed.count("reused from the record") == 5 and "PGD (pgd5, " in printed


def test_generator_renders_the_records_numbers(quick_record: Path, tmp_path: Path):
    text = record_gen.render(quick_record)
    rec = json.loads((quick_record / "mnist-fast" / "record.json").read_text())
    for label, block in rec["attacks"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} ("))
        assert record_gen.with_ci(block) in row  # the total with its interval, as recorded
        assert f"| {block['examples']} |" in row
    claims = [line for line in text.splitlines() if line.startswith("| Figure ") or line.startswith("| Table ")]
    assert len(claims) >= 6 and all(any(f"**{v}**" in c for v in ("reproduced", "partly", "not")) for c in claims)
    assert "cifar10-cpu`\n\n**not yet run.**" in text  # no record there: said, with its command
    assert text.count("not yet run") >= 3  # and the two paper-scale GPU rows
    out = tmp_path / "reproduction.md"
    assert record_gen.main(["--records", str(quick_record), "--out", str(out)]) == 0
    assert record_gen.main(["--records", str(quick_record), "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("reproduced", "REPRODUCED", 1))
    assert record_gen.main(["--records", str(quick_record), "--out", str(out), "--check"]) == 1


def test_failed_attempts_are_kept_in_the_record(quick_record: Path, tmp_path: Path):
    records = tmp_path / "records"
    shutil.copytree(quick_record, records)
    attempt = records / "mnist-fast" / "attempts" / "first-try"
    attempt.mkdir(parents=True)
    shutil.copyfile(quick_record / "mnist-fast" / "robust" / "metrics.jsonl", attempt / "metrics.jsonl")
    text = record_gen.render(records)
    assert "Attempt `first-try`" in text and "docs/reproduction/mnist-fast/attempts/first-try" in text


def test_symmetry_and_superclass_share():
    sym = [[0, 5, 1], [5, 0, 2], [1, 2, 0]]
    assert record_gen.symmetry(sym) == pytest.approx(1.0)
    one_way = [[0, 9, 0], [0, 0, 9], [9, 0, 0]]
    assert record_gen.symmetry(one_way) < 0
    rec = record_gen.Record({"superclasses": {"a": [0, 1], "b": [2]}, "class_names": ["x", "y", "z"]}, {}, [], {}, {})
    inside, chance = record_gen.within_superclass(rec, [[0, 8, 2], [4, 0, 0], [1, 1, 0]])
    assert inside == pytest.approx(12 / 16)  # 0->1 and 1->0 stay inside {0, 1}
    assert chance == pytest.approx((10 * 0.5 + 4 * 0.5 + 2 * 0.0) / 16)  # one of two other classes shares it


def test_gap_verdict_needs_disjoint_intervals():
    block = {"best_class": 0, "worst_class": 1, "ci95": [[60.0, 80.0], [50.0, 70.0]]}
    assert not record_gen.separated(block)
    block["ci95"][1] = [20.0, 40.0]
    assert record_gen.separated(block)


def _summary_run(folder: Path, robust_counts: list[int], n: int = 100) -> Path:
    """A run folder holding only a summary: 3 classes of ``n`` test images, the headline attack's robust counts."""
    from classwise.analysis.fairness import clopper_pearson
    from classwise.config import load_config
    from classwise.runs import Run

    Run.create(folder, load_config("demo"))
    total = sum(robust_counts)
    lo, hi = clopper_pearson(total, 3 * n)
    block = {"overall": 100 * total / (3 * n), "overall_ci95": [100 * float(lo), 100 * float(hi)],
             "per_class": [100 * c / n for c in robust_counts], "count": robust_counts, "n": [n] * 3}
    clean = {"overall": 90.0, "per_class": [90.0] * 3, "count": [90] * 3, "n": [n] * 3}
    (folder / "summary.json").write_text(json.dumps({"class_names": ["a", "b", "c"], "clean": clean,
                                                     "attacks": {"worst": block}}))
    return folder


def test_fairness_table_generator_writes_the_section_and_calls_significance(tmp_path, capsys):
    """One run per recipe: a worst class 20 points higher with disjoint intervals is significant,
    an average 1.3 points higher with overlapping intervals is not; --check sees a stale document."""
    gen = importlib.import_module("fairness_table")
    base = _summary_run(tmp_path / "trades", [10, 60, 50])
    fair = _summary_run(tmp_path / "dafa", [40, 45, 39])
    doc = tmp_path / "fairness.md"
    doc.write_text("intro\n<!-- fairness-table:tiny:start -->\nold\n<!-- fairness-table:tiny:end -->\nafter\n")
    args = ["--doc", str(doc), "--section", "tiny", "--caption", "Tiny saved summaries.",
            "--group", f"trades={base}", "--group", f"dafa={fair}"]
    assert gen.main(args) == 0
    text = doc.read_text()
    assert text.startswith("intro\n<!-- fairness-table:tiny:start -->\nTiny saved summaries.\n") and "old" not in text
    assert "| trades | worst | 90.0 | 40.0 [" in text and "| dafa | worst | 90.0 | 41.3 [" in text
    assert ("- dafa against trades: average robust +1.3 points, not significant at this scale (intervals overlap); "
            "worst-class robust +29.0 points, significant (intervals disjoint).") in text
    assert text.endswith("<!-- fairness-table:tiny:end -->\nafter\n")
    assert gen.main([*args, "--check"]) == 0
    doc.write_text(text.replace("41.3", "41.0"))
    assert gen.main([*args, "--check"]) == 1
    capsys.readouterr()
