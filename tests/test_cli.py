"""End-to-end CLI contracts: a tiny demo run, the run folder, re-rendering, bad input."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classwise.cli import main
from classwise.report.gallery import positions
from classwise.results import EvalResults
from classwise.runs import Run

from cli_args import sets


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m classwise ARGS`` in a subprocess: (exit code, stdout, stderr)."""
    env = {"CLASSWISE_PROGRESS": "0", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    env |= {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}  # the source under test
    proc = subprocess.run([sys.executable, "-m", "classwise", *args], capture_output=True, text=True, env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_overrides) -> Path:
    run = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["demo", "--out", str(run), "-q", *sets(tiny_overrides)]) == 0
    return run


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Path:
    """A copy of the demo run for a test that changes it: the shared run stays as built, whatever the test order."""
    return Path(shutil.copytree(demo_run, tmp_path / "demo"))


def test_demo_run_folder_is_complete(demo_run):
    for name in ("classwise-run.json", "config.yaml", "version.json", "metrics.jsonl", "results.npz", "summary.json",
                 "meta.json", "report.md", "report.html", "checkpoints/last.safetensors", "tables/classwise.csv",
                 "tables/classwise.md", "figures/confusion.png", "figures/epochs.png", "figures/weight_norms.png"):
        assert (demo_run / name).is_file(), name
    run = Run.open(demo_run)
    assert run.state == "complete" and run.trained
    assert [r["epoch"] for r in run.metrics()] == [1, 2]  # one line per configured epoch
    results, summary, meta = run.results(), run.summary(), run.meta()
    # the results are those of the saved model: its clean predictions on the evaluated test images
    from classwise.evaluate import predict

    x = run.data().test_x[results.extras["index"]].float() / 255
    assert np.array_equal(predict(run.model("last"), x).argmax(1).numpy(), results.clean_pred)
    assert len(results.labels) == 100 and list(summary["attacks"]) == ["fgsm", "pgd5", "worst"]
    for name, block in summary["attacks"].items():  # every number present and finite, eps recorded
        assert block["eps"] == 0.3 and len(block["per_class"]) == 10
        assert all(v is not None and np.isfinite(v) for v in [block["overall"], *block["per_class"]]), name
    assert meta["attacks"]["pgd5"]["family"] == "pgd" and meta["attacks"]["pgd5"]["steps"] == 5
    assert meta["attacks"]["pgd5"]["step_size"] == 0.1 and results.facts == meta["attacks"]
    html = (demo_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "</html>" in html


def test_metrics_log_classwise_numbers_every_epoch(demo_run):
    lines = [json.loads(x) for x in (demo_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert len(r["clean"]["per_class"]) == 10 and len(r["robust"]["per_class"]) == 10
        assert r["robust"]["overall"] <= r["clean"]["overall"]


def test_summary_matches_per_sample_results(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    res = EvalResults.load(demo_run / "results.npz")
    assert list(summary["attacks"]) == ["fgsm", "pgd5", "worst"]  # worst case over both, last
    assert summary["clean"]["overall"] == pytest.approx(100 * res.correct().mean())
    pgd = summary["attacks"]["pgd5"]
    for k in range(10):
        mask = res.labels == k
        assert pgd["per_class"][k] == pytest.approx(100 * res.correct("pgd5")[mask].mean())
    assert pgd["overall"] <= summary["clean"]["overall"]
    assert summary["dataset"] == "mnist5k" and summary["eps"] == 0.3
    spent = {a: summary["attacks"][a]["cost"]["backwards"] for a in ("fgsm", "pgd5", "worst")}
    assert spent == {"fgsm": res.extras["backwards/fgsm"].sum(), "pgd5": res.extras["backwards/pgd5"].sum(),
                     "worst": spent["fgsm"] + spent["pgd5"]} and 0 < spent["fgsm"] <= len(res.labels)


def test_report_names_best_and_worst_class_and_notes(demo_run):
    md = (demo_run / "report.md").read_text()
    assert "most robust class" in md and "least robust class" in md and "largest class gap" in md
    assert "Demo recipe, not the paper's" in md
    cost = re.search(r"cost: fgsm \d+ gradient passes, ([\d.]+) per example; pgd5 [\d.]+ k? ?gradient passes", md)
    assert cost and 0 < float(cost.group(1)) <= 1  # one gradient pass per clean-correct example, 3 digits
    html = (demo_run / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 3 and "http://" not in html and "https://" not in html


def test_report_rerenders_without_attacking(demo_copy):
    before = (demo_copy / "results.npz").stat().st_mtime_ns
    (demo_copy / "report.html").unlink()
    assert main(["report", str(demo_copy)]) == 0
    assert (demo_copy / "report.html").is_file()
    assert (demo_copy / "results.npz").stat().st_mtime_ns == before


def test_evaluation_keeps_a_bounded_gallery_and_the_report_shows_it(demo_run):
    run = Run.open(demo_run)
    index, images = run.load_adv("pgd5")
    results = run.results()
    pos = positions(results, index)
    assert (pos >= 0).all() and np.bincount(results.labels[pos]).max() <= 8 and images.shape[1:] == (1, 28, 28)
    shown = sorted(run.files.gallery.glob("*.png"))
    assert shown and all(int(p.name.split("_")[1]) in set(index.tolist()) for p in shown)
    page = (demo_run / "report.html").read_text()
    assert "<h2>Gallery under pgd5</h2>" in page and "<h2>Most exchanged pairs under pgd5</h2>" in page


def test_gallery_of_a_worst_case_shows_the_strongest_attack_it_covers(demo_run):
    """The worst case has no images: the gallery takes those of its attack with the fewest robust examples."""
    from classwise.jobs.report import gallery_data

    run = Run.open(demo_run)
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["headline"] == "worst" and run.load_adv("fgsm") is not None
    for strongest, fgsm_overall in (("fgsm", 0.0), ("pgd5", 100.0)):
        summary["attacks"]["fgsm"]["overall"] = fgsm_overall
        assert gallery_data(run, run.results(), summary, "last").attack == strongest


def test_show_prints_one_class_and_its_gallery_files(demo_run, capsys):
    summary = json.loads((demo_run / "summary.json").read_text())
    name = summary["class_names"][summary["attacks"]["pgd5"]["worst_class"]]
    code = main(["show", str(demo_run), "--class", name])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith(f"class {name} (index ") and re.search(r"rank \d+ of 10 from the weakest", lines[0])
    assert f"  pgd5: {summary['attacks']['pgd5']['per_class'][summary['class_names'].index(name)]:.1f}% [" in out
    assert "confounds under pgd5" in out
    paths = [Path(line.strip()) for line in lines[lines.index("gallery images:") + 1:]]
    assert paths and all(p.is_file() and p.suffix == ".png" for p in paths)
    code = main(["show", str(demo_run), "--class", "no-such-class"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error: no class 'no-such-class'") and len(err.splitlines()) == 1


def test_report_without_the_dataset_says_why_it_has_no_gallery(demo_copy, monkeypatch):
    from classwise.errors import ClasswiseError

    def missing(self):
        raise ClasswiseError("dataset not found")

    monkeypatch.setattr(Run, "data", missing)
    assert main(["report", str(demo_copy)]) == 0
    md = (demo_copy / "report.md").read_text()
    assert "no gallery: the saved adversarial images could not be shown (dataset not found)" in md
    assert "## Gallery" not in md and not list(Run.open(demo_copy).files.gallery.glob("*.png"))
    assert Run.open(demo_copy).state == "complete"


def test_evaluate_adds_an_attack_to_the_run(demo_run, demo_copy):
    assert main(["evaluate", str(demo_copy), "--attacks", "pgd2", "-q"]) == 0
    summary = json.loads((demo_copy / "summary.json").read_text())
    assert list(summary["attacks"]) == ["fgsm", "pgd5", "pgd2", "worst"]
    assert list(json.loads((demo_run / "summary.json").read_text())["attacks"]) == ["fgsm", "pgd5", "worst"]


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--set", "train.attack.eps=-0.1"], "eps must be in [0, 1]"),
    (["train", "--set", "train.attack.eps=1.5"], "eps must be in [0, 1]"),
    (["train", "--set", "train.attack.name=pgd0"], "steps must be >= 1"),
    (["train", "--set", "train.attack.name=nope"], "unknown attack 'nope'"),
    (["train", "--set", "train.epochs=0"], "epochs must be >= 1"),
    (["train", "--set", "train.epoch=3"], "unknown config key 'train.epoch'"),
    (["train", "no-such-preset"], "neither a file nor a preset"),
    (["train", "--dataset", "cifar10", "--data-root", "{tmp}/empty", "--set", "data.download=false"],
     "CIFAR-10 not found"),
])
def test_bad_input_gives_one_error_line_and_no_run_folder(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[:2] == ["train", "--dataset"] and message.startswith("unknown"):  # the real console entry, once
        code, out, err = cli(*args, "--out", str(run))
    else:  # in-process: the same main(), without a new interpreter per case
        code = main([*args, "--out", str(run)])
        err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and message in err
    assert not run.exists()


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """``classwise ARGS`` through the same ``main()`` in this process: (exit code, stdout, stderr). The console
    entry itself is held by :func:`cli` (one bad-input case, ``list``, and the output without a terminal)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_bad_attack_and_missing_run(demo_run, tmp_path, capsys):
    code, _, err = in_process(capsys, "evaluate", str(demo_run), "--attacks", "pgd3", "--eps", "2")
    assert code == 2 and "eps must be in [0, 1]" in err and err.count("\n") == 1
    code, _, err = in_process(capsys, "evaluate", str(tmp_path / "missing"))
    assert code == 2 and "not a classwise run folder" in err and err.count("\n") == 1


def test_existing_run_folder_is_refused(demo_run, capsys):
    before = (demo_run / "summary.json").read_bytes()
    code, _, err = in_process(capsys, "train", "--out", str(demo_run))
    assert code == 2 and "already exists" in err and "--resume" in err and "--overwrite" in err
    assert (demo_run / "summary.json").read_bytes() == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    code, _, err = in_process(capsys, "train", "--out", str(folder), "--overwrite")
    assert code == 2 and "not a classwise run folder" in err
    assert (folder / "thesis.tex").is_file()


def test_truncated_checkpoint_is_one_error_and_run_not_complete(tmp_path, tiny_overrides, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "-q", *sets(tiny_overrides), "--set", "train.epochs=1"]) == 0
    ckpt = run / "checkpoints" / "last.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    code, _, err = in_process(capsys, "evaluate", str(run))
    assert code == 2 and err.startswith("error: checkpoint") and "corrupt or truncated" in err
    assert not (run / "summary.json").exists() and not (run / "report.html").exists()
    assert Run(run).state != "complete"


def test_list_names_every_registry():
    from classwise.attacks import attack_usage
    from classwise.config import preset_names
    from classwise.data import dataset_names
    from classwise.models import model_names, outside_kinds
    from classwise.train.objectives import OBJECTIVES

    code, out, _ = cli("list")
    assert code == 0
    lines = out.splitlines()
    rows = {line.split(":", 1)[0]: line.split(":", 1)[1].split(", ") for line in lines if not line.startswith(" ")}
    assert [n.strip() for n in rows["datasets"]] == dataset_names()
    assert [n.strip() for n in rows["models"]] == model_names() + outside_kinds()
    assert [n.strip() for n in rows["methods"]] == list(OBJECTIVES)
    assert [n.strip() for n in rows["presets"]] == preset_names()
    attack_lines = [line.strip() for line in lines if line.startswith("  ")]
    assert attack_lines == list(attack_usage().values())  # every attack, each on its own line


def test_resume_continues_to_the_same_weights(tmp_path, tiny_overrides):
    """Train 2 epochs straight, versus 1 epoch then --resume to 2: identical weights (CPU)."""
    from safetensors.torch import load_file

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--out", str(straight), "-q", *sets(tiny_overrides)]) == 0
    assert main(["train", "--out", str(resumed), "-q", *sets(tiny_overrides), "--set", "train.epochs=1"]) == 0
    cfg = resumed / "config.yaml"
    cfg.write_text(cfg.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["train", "--out", str(resumed), "--resume", "-q"]) == 0
    a = load_file(straight / "checkpoints" / "last.safetensors")
    b = load_file(resumed / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_without_terminal_prints_one_line_per_epoch(tmp_path, tiny_overrides):
    """Captured output (no terminal, as under slurm or nohup): one useful line per epoch, no blank lines."""
    import classwise

    run = tmp_path / "run"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(classwise.__file__).parents[1])}  # the source under test; progress not disabled
    proc = subprocess.run([sys.executable, "-m", "classwise", "train", "demo", "--out", str(run),
                           *sets(tiny_overrides)], capture_output=True, text=True, env=env)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    lines = out.splitlines()
    assert all(line.strip() for line in lines) and "\x1b" not in out + err and "\r" not in out + err
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and epochs[0].startswith("epoch 1/2 loss ") and epochs[1].startswith("epoch 2/2 loss ")
    for line in epochs:
        for part in ("clean ", "robust(pgd3) ", "worst class ", "img/s", "ETA "):
            assert part in line, (part, line)
    assert len(lines) == 3 and lines[-1].startswith("trained: ")
    assert (run / "train.log").read_text().splitlines() == epochs
    assert err.strip() == ""


def test_the_console_table_wraps_its_attack_columns_instead_of_truncating_them():
    """Eleven columns at 80 characters: every name whole (no "…"), split over tables that fit, order kept."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    from classwise.cli import column_groups

    names = ["clean", "fgsm", "pgd20", "pgd20@restarts=2", "pgd20@norm=l2", "pgd10", "pgd5", "cw-margin5", "fgsm-rs",
             "pgd3@restarts=3", "worst"]
    for width in (40, 80, 200):
        groups = column_groups(names, width, len("class"))
        assert [n for g in groups for n in g] == names and all(groups)
        console = Console(width=width, record=True, file=io.StringIO())
        for group in groups:
            table = Table(box=box.SIMPLE)
            table.add_column("class", overflow="fold")
            for name in group:
                table.add_column(name, justify="right", overflow="fold")
            table.add_row("total", *["100.0"] * len(group))
            console.print(table)
        text = console.export_text()
        assert "…" not in text and all(name in text for name in names)
        assert max(len(line) for line in text.splitlines()) <= width
    assert len(column_groups(names, 200, 5)) == 1
