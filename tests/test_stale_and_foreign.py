"""Contract: nothing stale is shown as complete, and nothing classwise did not write is deleted or replaced.

Results carry the SHA-256 of the checkpoint and a fingerprint of the test examples they were measured
on; a changed checkpoint or test set is refused (report, compare, homing) or set aside in
``superseded/`` (evaluate; ``train --resume`` that trains further: tests/test_runs.py), never merged. A cascade's worst
case is kept and every worst case names its attacks. ``--overwrite`` deletes only what the run's
manifest records; ``compare --out`` writes a folder of its own. Cases copy the session's tiny evaluated run.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import classwise.runs
from classwise.analysis import suite_worst_case
from classwise.checkpoint import safe_load
from classwise.cli import main
from classwise.jobs.attacking import eval_indices, example_hashes
from classwise.fileio import MANIFEST, NAME_BYTES, safe_name, written
from classwise.report.section import slug
from classwise.results import EvalResults
from classwise.runfiles import RunFiles
from classwise.runs import Run

from cli_args import sets
from test_bad_inputs import assert_one_error, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def evaluated(tiny_demo_run) -> Path:
    """The session's tiny evaluated run (fgsm and pgd5 at eps 0.3, 100 test examples); never modified."""
    return tiny_demo_run


@pytest.fixture
def run(evaluated, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(evaluated, copy, ignore=shutil.ignore_patterns(".classwise.lock"))
    return copy


def run_warned(capsys, args: list) -> tuple[int, str]:
    """(exit status, stderr and every warning line) of ``classwise ARGS`` in this process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = run_cli(capsys, args)
    return code, err + "".join(f"warning: {w.message}\n" for w in caught)


def _replace_checkpoint(run: Path) -> None:
    """Another model in checkpoints/last (as if trained further, or swapped for another run's)."""
    path = run / "checkpoints" / "last.safetensors"
    tensors, metadata = safe_load(path)
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() > 1)
    tensors[name] = tensors[name] * 0.5
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata)


def _meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


# --- results of another checkpoint ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [["report"], ["compare"], ["homing", "--classes", "3"]])
def test_results_of_a_replaced_checkpoint_are_refused(capsys, run, command):
    _replace_checkpoint(run)
    before = snapshot(run)
    code, err = run_cli(capsys, [command[0], run, *command[1:]])
    line = assert_one_error(code, err, "checkpoint 'last'", "SHA-256", f"re-run `classwise evaluate {run}`")
    assert _meta(run)["sha256"][:12] in line
    unchanged = {".classwise.lock", *(("status.json",) if command == ["report"] else ())}
    assert {k: v for k, v in snapshot(run).items() if k not in unchanged} == {
        k: v for k, v in before.items() if k not in unchanged}
    status = Run(run).status()  # report (the writer) says the run is no longer complete; the readers write nothing
    assert (status["state"], "is now" in status.get("stale", "")) == (
        ("trained", True) if command == ["report"] else ("complete", False))


def test_results_of_the_current_checkpoint_are_not_stale(run):
    """The check compares digests: the unchanged model's results are fresh, a changed model's are not."""
    assert Run(run).stale_results() is None and Run(run).require_fresh_results().attacks[:2] == ["fgsm", "pgd5"]
    _replace_checkpoint(run)
    assert "is now" in Run(run).stale_results()


def test_evaluate_sets_results_of_a_replaced_checkpoint_aside(capsys, run):
    old = EvalResults.load(run / "results.npz")
    _replace_checkpoint(run)
    code, err = run_warned(capsys, ["evaluate", run, "--attacks", "fgsm", "-q"])
    assert code == 0 and "changed since the last evaluation" in err and "superseded" in err
    aside = next((run / "superseded").iterdir())
    moved = EvalResults.load(aside / "results.npz")
    assert moved.attacks == old.attacks and np.array_equal(moved.adv_pred["pgd5"], old.adv_pred["pgd5"])
    record = json.loads((aside / "superseded.json").read_text())
    assert record["sha256"] != _meta(run)["sha256"] and "results.npz" in record["moved"]
    new = EvalResults.load(run / "results.npz")
    assert new.attacks == ["fgsm"]  # the earlier pgd5 of the other model is not merged in
    assert _meta(run)["sha256"] == Run(run).model_digest()["sha256"] and Run(run).state == "complete"
    assert Run(run).stale_results() is None


# --- results of another test set -----------------------------------------------------------------------

def _changed_test_set(monkeypatch, index: np.ndarray) -> None:
    """The run's data as read from now on: the test images at ``index`` inverted."""
    real = classwise.runs.load_run_data

    def load(config):
        data = real(config)
        data.test_x = data.test_x.clone()
        data.test_x[index] = 255 - data.test_x[index]
        return data

    monkeypatch.setattr(classwise.runs, "load_run_data", load)


def test_results_of_another_test_set_are_never_merged(capsys, run, monkeypatch):
    old = EvalResults.load(run / "results.npz")
    index, data = old.extras["index"], Run(run).data()
    assert np.array_equal(example_hashes(data.test_images(index), data.test_y[index]), old.extras["example_hash"])
    _changed_test_set(monkeypatch, index[[3, 50]])  # two of the evaluated examples
    code, err = run_warned(capsys, ["evaluate", run, "--attacks", "pgd2@step=0.1", "-q"])
    assert code == 0 and "the test set changed" in err and "(2 of the evaluated examples" in err
    new = EvalResults.load(run / "results.npz")
    assert new.attacks == ["pgd2"] and (run / "superseded").is_dir()  # fgsm and pgd5 of the old images: set aside
    changed = np.isin(index, index[[3, 50]])
    assert np.array_equal(new.extras["example_hash"] != old.extras["example_hash"], changed)


def test_a_changed_image_the_new_evaluation_does_not_see_is_still_caught(capsys, run, monkeypatch):
    old = EvalResults.load(run / "results.npz")
    data = Run(run).data()
    sample = eval_indices(data.test_y, 20, Run(run).config.seed)  # what `--examples 20` attacks
    unseen = np.setdiff1d(old.extras["index"], sample)[:1]  # measured before, not attacked by this evaluation
    _changed_test_set(monkeypatch, unseen)
    code, err = run_warned(capsys, ["evaluate", run, "--attacks", "fgsm", "--examples", "20", "-q"])
    assert code == 0 and "(1 of the evaluated examples" in err  # re-hashed from the data, never merged
    assert EvalResults.load(run / "results.npz").attacks == ["fgsm"] and (run / "superseded").is_dir()


# --- the cascade and the worst cases -------------------------------------------------------------------

def test_a_cascade_is_kept_and_every_worst_case_names_its_attacks(capsys, run):
    code = main(["evaluate", str(run), "--cascade", "--attacks", "fgsm,pgd10@step=0.05", "-q"])
    out = capsys.readouterr().out
    assert code == 0
    res, facts = EvalResults.load(run / "results.npz"), _meta(run)["attacks"]
    assert res.attacks == ["fgsm", "pgd5", "worst", "worst@cascade=1"]
    assert facts["worst"]["over"] == ["fgsm", "pgd5"] and not facts["worst"]["cascade"]
    np.testing.assert_array_equal(res.adv_pred["worst"], suite_worst_case(res, ["fgsm", "pgd5"]))
    cascade = facts["worst@cascade=1"]
    assert cascade["cascade"] and cascade["over"] == ["fgsm@eps=0.3", "pgd10@eps=0.3@step=0.05"]
    assert "worst: per-example worst case over fgsm, pgd5" in out
    assert "worst@cascade=1: cascade (each attack on the examples still robust) of fgsm@eps=0.3, pgd10@eps=0.3@step=0.05" in out
    assert res.correct("worst@cascade=1").mean() <= res.correct("fgsm").mean()  # its first attack runs on all


# --- compare: runs that are not complete, its own output folder ----------------------------------------

def test_compare_marks_a_run_that_is_not_complete(capsys, run, tmp_path):
    Run(run).set_status("failed", error="RuntimeError: out of memory")
    code, err = run_warned(capsys, ["compare", run, "--out", tmp_path / "cmp"])
    assert code == 0 and "is not complete (status 'failed': RuntimeError: out of memory)" in err
    assert "run [not complete: failed] (fgsm)" in (tmp_path / "cmp" / "compare.md").read_text()


def test_compare_writes_a_marked_folder_and_refuses_a_foreign_one(capsys, run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "compare.md").write_text("my own table\n")
    code, err = run_cli(capsys, ["compare", run, "--out", mine])
    assert_one_error(code, err, "refusing to write into", "files classwise did not write")
    assert sorted(p.name for p in mine.iterdir()) == ["compare.md"]
    out = tmp_path / "cmp"
    for _ in range(2):  # its own folder: written, then replaced
        code, err = run_cli(capsys, ["compare", run, "--out", out])
        assert code == 0, err
    assert {"compare.md", "compare.csv", "compare.png"} <= written(out)


# --- --overwrite and writes: only what classwise recorded ----------------------------------------------

USER_FILES = ["tables/thesis_notes.md", "figures/mine.png", "checkpoints/finetuned_by_me.safetensors",
              "compare/compare.md", "tensorboard/events.out.tfevents.1.host", "adv/pgd7.safetensors",
              "homing/homing.json"]


@pytest.mark.parametrize("name", USER_FILES)
def test_overwrite_refuses_a_user_file_whatever_its_name(capsys, run, tiny_overrides, name):
    (run / name).parent.mkdir(exist_ok=True)
    (run / name).write_bytes(b"the user's own\n")
    before = snapshot(run)
    code, err = run_cli(capsys, ["train", "--out", run, "--overwrite", "-q", *sets(tiny_overrides)])
    assert_one_error(code, err, "refusing to overwrite", "classwise did not write", name)
    assert snapshot(run) == before  # refused before anything is locked or written


def test_a_file_classwise_did_not_write_is_never_replaced(capsys, run):
    """A user's file at a name an evaluation would write (adv/pgd2.safetensors) is refused, not replaced."""
    adv = RunFiles(run).adv_file("pgd2")
    adv.parent.mkdir(exist_ok=True)  # the run's own evaluation keeps images for the report there
    adv.write_bytes(b"the user's own\n")
    code, err = run_cli(capsys, ["evaluate", run, "--attacks", "pgd2", "--save-adv", "-q"])
    assert_one_error(code, err, "refusing to replace", "classwise did not write it")
    assert adv.read_bytes() == b"the user's own\n"


def test_the_manifest_records_every_file_of_the_run(evaluated):
    files = {p.relative_to(evaluated).as_posix() for p in evaluated.rglob("*") if p.is_file()}
    assert files - {MANIFEST, ".classwise.lock"} == written(evaluated)


# --- file names made from user input ---------------------------------------------------------------------

def test_file_names_from_user_input_are_bounded_sanitised_and_distinct():
    surrogate = "transfer@surrogate=/" + "/".join(["cluster", "scratch", "x" * 120, "y" * 120]) + "/model.safetensors"
    other = surrogate.replace("model.safetensors", "model2.safetensors")
    names = [RunFiles(Path("run")).adv_file(s).name for s in (surrogate, other)]
    assert names[0] != names[1] and all(len(n.encode()) <= NAME_BYTES for n in names)
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert len(f"confusion_{slug(surrogate)}.csv".encode()) <= NAME_BYTES and slug(surrogate) != slug(other)
    assert safe_name("../../etc/passwd") == "etc_passwd" and safe_name("pgd5@eps=0.3") == "pgd5@eps=0.3"
    assert slug("pgd5@eps=0.3") == "pgd5_eps_0.3" and slug("@@") == "attack"
    long = safe_name("é" + "a" * 300, ".png")  # non-ASCII replaced (never cut mid-character), then cut with a hash
    assert len(long.encode()) == NAME_BYTES and long.startswith("aaa") and long.endswith(".png")

