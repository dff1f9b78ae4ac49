"""The run folder's promises: nothing lost, one writer, true statuses, results keyed by what was measured."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from classwise.cli import main
from classwise.config import load_config
from classwise.errors import ClasswiseError
from classwise.pipeline import evaluate_run, train_run
from classwise.runs import MARKER, Run

from cli_args import sets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_overrides) -> Path:
    """A trained, evaluated tiny run (copy it before changing it)."""
    run = tmp_path_factory.mktemp("runs") / "base"
    train_run(load_config("demo", tiny_overrides), run, progress=False)
    evaluate_run(run, progress=False)
    return run


def copy_of(run: Path, tmp_path: Path, name: str = "run") -> Path:
    shutil.copytree(run, tmp_path / name, ignore=shutil.ignore_patterns(".classwise.lock"))
    return tmp_path / name


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("error: ")]) == 1 and "Traceback" not in err, err
    return next(line for line in lines if line.startswith("error: "))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file (taking the lock writes the holder's name into it)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".classwise.lock"}


# --- never delete what classwise did not write ---------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys, tiny_overrides):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("config.yaml", "status.json", "thesis.tex"):  # look-alike names are no marker
        (mine / name).write_text("precious\n")
    before = snapshot(mine)
    assert main(["train", "--out", str(mine), "--overwrite", "-q", *sets(tiny_overrides)]) == 2
    assert "not a classwise run folder" in one_error(capsys)
    assert snapshot(mine) == before


def test_overwrite_refuses_a_run_holding_files_classwise_did_not_write(trained, tmp_path, capsys, tiny_overrides):
    run = copy_of(trained, tmp_path)
    (run / "notes.txt").write_text("my notes\n")
    (run / "figures" / "my_plot.pdf").write_bytes(b"%PDF")
    before = snapshot(run)
    assert main(["train", "--out", str(run), "--overwrite", "-q", *sets(tiny_overrides)]) == 2
    line = one_error(capsys)
    assert "figures/my_plot.pdf" in line and "notes.txt" in line
    assert snapshot(run) == before


def test_overwrite_never_follows_a_symlinked_out(trained, tmp_path, capsys, tiny_overrides):
    run = copy_of(trained, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(run, target_is_directory=True)
    before = snapshot(run)
    assert main(["train", "--out", str(link), "--overwrite", "-q", *sets(tiny_overrides)]) == 2
    assert "symbolic link" in one_error(capsys)
    assert snapshot(run) == before and link.is_symlink()


def test_overwrite_empties_a_run_holding_only_its_own_files(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    Run.create(run, load_config("demo"), overwrite=True)
    assert sorted(p.name for p in run.iterdir() if p.name != ".classwise.lock") == [
        ".classwise-files", "checkpoints", MARKER, "config.yaml", "status.json", "version.json"]
    assert sorted((run / ".classwise-files").read_text().split()) == [MARKER, "config.yaml", "status.json", "version.json"]
    assert Run(run).state == "created" and not Run(run).trained


# --- one writer per run folder -------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from classwise.runs import Run
with Run(Path(sys.argv[1])).lock():
    Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_killed_writer_frees_the_folder(trained, tmp_path, capsys):
    run, ready = copy_of(trained, tmp_path), tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(ready)])
    try:
        for _ in range(300):
            if ready.exists():
                break
            time.sleep(0.05)
        before = snapshot(run)
        for command in (["evaluate", str(run), "-q"], ["report", str(run)], ["homing", str(run), "-q"]):
            assert main(command) == 2
            assert f"process {holder.pid}" in one_error(capsys)
        assert snapshot(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with Run(run).lock():  # the OS released the killed writer's lock at once
        pass


# --- true statuses -------------------------------------------------------------------------------------


def test_evaluate_refuses_an_unfinished_run_unless_allowed(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    Run(run).set_status("training", trained=False)
    assert main(["evaluate", str(run), "-q"]) == 2
    assert "--allow-partial" in one_error(capsys)
    assert main(["evaluate", str(run), "-q", "--allow-partial"]) == 0
    summary = Run(run).summary()
    assert next(iter(summary)) == "partial" and summary["partial"].startswith("PARTIAL")
    first_lines = (run / "report.md").read_text().splitlines()[:6]
    assert any("PARTIAL" in line for line in first_lines), first_lines


def test_a_failure_after_the_folder_exists_is_recorded_and_does_not_block_a_rerun(trained, tmp_path, monkeypatch):
    from classwise.jobs import attacking

    run = copy_of(trained, tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(attacking, "_attack_all", boom)
    with pytest.raises(RuntimeError):
        evaluate_run(run, progress=False)
    status = Run(run).status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: disk on fire" and status["trained"]
    monkeypatch.undo()
    evaluate_run(run, progress=False)
    assert Run(run).state == "complete"


def test_resume_refuses_a_folder_without_a_checkpoint(tmp_path, capsys, tiny_overrides):
    run = tmp_path / "new"
    Run.create(run, load_config("demo", tiny_overrides))
    assert main(["train", "--out", str(run), "--resume", "-q"]) == 2
    assert "nothing to resume" in one_error(capsys)


def test_resume_refuses_changes_to_the_run_and_records_the_allowed_ones(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    assert main(["train", "--out", str(run), "--resume", "-q", "--set", "train.lr=0.5"]) == 2
    assert "train.lr" in one_error(capsys) and snapshot(run) == before
    assert main(["train", "--out", str(run), "--resume", "-q"]) == 0  # nothing to do: the run stays complete
    assert Run(run).state == "complete" and snapshot(run)["metrics.jsonl"] == before["metrics.jsonl"]
    with pytest.warns(UserWarning, match=r"training further \(epoch 2 to 3\).*moved to .*superseded"):
        assert main(["train", "--out", str(run), "--resume", "-q", "--set", "train.epochs=3"]) == 0
    assert [r["epoch"] for r in Run(run).metrics()] == [1, 2, 3] and Run(run).state == "trained"
    assert any("train.epochs=3 (was 2)" in note for note in Run(run).config.notes)
    # the epoch-2 model's results are set aside, never shown as the epoch-3 model's
    aside = next((run / "superseded").iterdir())
    assert before["results.npz"] == (aside / "results.npz").read_bytes() and not (run / "results.npz").exists()
    assert "trained further" in json.loads((aside / "superseded.json").read_text())["why"]
    assert main(["report", str(run)]) == 2 and "no per-sample results" in one_error(capsys)


def test_ctrl_c_says_interrupted_exits_130_and_leaves_a_resumable_run(tmp_path, tiny_overrides):
    run = tmp_path / "run"
    overrides = [*tiny_overrides, "train.epochs=50", "train.checkpoint_every=1"]
    env = {**os.environ, "CLASSWISE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    # a shell without job control starts children with SIGINT ignored: give this one the default, as a terminal does
    proc = subprocess.Popen([sys.executable, "-m", "classwise", "train", "--out", str(run), "-q", *sets(overrides)],
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):
        if (run / "metrics.jsonl").is_file():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert Run(run).state == "interrupted" and not Run(run).trained


# --- results keyed by what was measured ----------------------------------------------------------------


@pytest.mark.slow  # ~14 s: five evaluations of one run
def test_another_eps_or_sample_adds_results_and_an_identical_rerun_replaces(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    old = Run(run).results()
    assert main(["evaluate", str(run), "-q", "--attacks", "fgsm,pgd5@step=0.05", "--eps", "0.1"]) == 0
    with pytest.warns(UserWarning, match=r"replaced the earlier results of pgd5@eps=0.1@step=0.05 \(same attack"):
        assert main(["evaluate", str(run), "-q", "--attacks", "pgd5@step=0.05", "--eps", "0.1"]) == 0
    assert main(["evaluate", str(run), "-q", "--attacks", "pgd5@step=0.1", "--examples", "50"]) == 0
    res, summary = Run(run).results(), Run(run).summary()
    assert list(res.adv_pred) == ["fgsm", "pgd5", "fgsm@eps=0.1", "pgd5@eps=0.1@step=0.05", "pgd5@n=50",
                                  "worst@eps=0.3", "worst@eps=0.1"]
    # the earlier 100-example results are all still there, unchanged
    index = res.extras["index"]
    at = np.searchsorted(index, old.extras["index"])
    for key in ("fgsm", "pgd5"):
        np.testing.assert_array_equal(res.adv_pred[key][at], old.adv_pred[key])
    assert summary["attacks"]["pgd5"]["examples"] == 100 and summary["attacks"]["pgd5@n=50"]["examples"] == 50
    assert {summary["attacks"][k]["eps"] for k in ("fgsm@eps=0.1", "worst@eps=0.1")} == {0.1}
    # the worst case of a threat model covers all its attacks, on the examples every one of them saw
    assert res.facts["worst@eps=0.3"]["over"] == ["fgsm", "pgd5", "pgd5@n=50"]
    assert summary["attacks"]["worst@eps=0.3"]["examples"] == 50
    assert res.facts["worst@eps=0.1"]["over"] == ["fgsm@eps=0.1", "pgd5@eps=0.1@step=0.05"]
    # a result key is a spec: fed back to --attacks it names the same attack, which replaces its results
    with pytest.warns(UserWarning, match=r"replaced the earlier results of pgd5@eps=0.1@step=0.05 \(same attack"):
        assert main(["evaluate", str(run), "-q", "--attacks", "pgd5@eps=0.1@step=0.05"]) == 0
    assert list(Run(run).results().adv_pred) == list(res.adv_pred)


def test_cascade_refuses_two_threat_models(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    assert main(["evaluate", str(run), "-q", "--cascade", "--attacks", "fgsm@eps=0.1,pgd5"]) == 2
    assert "one eps" in one_error(capsys)


def test_an_he_run_serves_as_transfer_surrogate(trained, tmp_path, method_overrides):
    from classwise.attacks import create_attack

    he = train_run(load_config("demo", method_overrides("he")), tmp_path / "he", progress=False)
    target = Run(trained).model()
    attack = create_attack(f"transfer:{he}", target, 0.3)
    assert type(attack.surrogate.head).__name__ == "HEHead"
    x = Run(trained).data().test_x[:8].float() / 255
    import torch

    x_adv = attack(x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and not torch.equal(x_adv, x)


def test_a_checkpoint_with_non_finite_weights_is_refused(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    run = copy_of(trained, tmp_path)
    path = Run(run).checkpoint_path()
    meta = json.loads(json.dumps(__import__("safetensors").safe_open(path, "pt").metadata()))
    tensors = load_file(path)
    tensors["head.weight"][0, 0] = float("nan")
    save_file(tensors, path, meta)
    with pytest.raises(ClasswiseError, match="non-finite"):
        Run(run).model()


def _results(index, preds: dict[str, list[int]], facts: dict[str, dict]):
    from classwise.results import EvalResults

    n = len(index)
    return EvalResults(labels=np.zeros(n, dtype=np.int64), clean_pred=np.zeros(n, dtype=np.int64),
                       adv_pred={k: np.array(v, dtype=np.int64) for k, v in preds.items()}, class_names=["a", "b"],
                       extras={"index": np.array(index)}, facts=facts)


def _pgd(eps: float, name: str = "pgd5") -> dict:
    return {"family": "pgd", "eps": eps, "norm": "linf", "steps": 5, "config": {"name": name, "restarts": 1}}


def test_merge_refuses_another_checkpoint_and_replaces_a_retrained_one():
    from classwise.identity import merge_results

    old = _results([0, 1], {"pgd5": [0, 1]}, {"pgd5": _pgd(0.3)})
    new = _results([0, 1], {"pgd5@eps=0.3": [1, 1]}, {"pgd5@eps=0.3": _pgd(0.3)})
    meta = {"checkpoint": "last", "sha256": "aaa"}
    with pytest.raises(ClasswiseError, match="two models never share"):
        merge_results(old, meta, new, {"checkpoint": "epoch75", "sha256": "aaa"})
    merged, messages = merge_results(old, meta, new, {"checkpoint": "last", "sha256": "bbb"})
    assert "changed since the last evaluation" in messages[0] and merged.adv_pred["pgd5"].tolist() == [1, 1]
    merged, messages = merge_results(old, meta, new, {"checkpoint": "last", "sha256": "aaa"})
    assert messages == ["replaced the earlier results of pgd5 (same attack, same examples)"]


def test_a_record_from_before_an_attack_had_restarts_is_the_same_attack_run_once():
    """strong's facts gained ``restarts``: an older record without it is replaced by a one-restart rerun,
    not kept beside it under a second name; two restarts are another attack."""
    from classwise.identity import merge_results

    old_facts = {"family": "strong", "eps": 0.3, "norm": "linf", "steps": 100, "targets": 2, "target_steps": 50}
    old = _results([0, 1], {"strong": [0, 1]}, {"strong": old_facts})
    meta = {"checkpoint": "last", "sha256": "aaa"}
    once = _results([0, 1], {"strong": [1, 1]}, {"strong": old_facts | {"restarts": 1}})
    merged, messages = merge_results(old, meta, once, meta)
    assert list(merged.adv_pred) == ["strong"] and merged.adv_pred["strong"].tolist() == [1, 1]
    assert messages == ["replaced the earlier results of strong (same attack, same examples)"]
    twice = _results([0, 1], {"strong@restarts=2": [1, 0]}, {"strong@restarts=2": old_facts | {"restarts": 2}})
    merged, messages = merge_results(old, meta, twice, meta)
    assert sorted(merged.adv_pred) == ["strong", "strong@restarts=2"] and not messages


def test_merge_aligns_other_examples_on_the_test_set_index():
    from classwise.identity import merge_results
    from classwise.results import NOT_ATTACKED

    old = _results([0, 2], {"pgd5": [1, 0]}, {"pgd5": _pgd(0.3)})
    new = _results([1, 2], {"pgd5@eps=0.3": [0, 0]}, {"pgd5@eps=0.3": _pgd(0.3)})
    merged, messages = merge_results(old, {}, new, {"checkpoint": "last", "sha256": "x"})
    assert merged.extras["index"].tolist() == [0, 1, 2] and not messages
    assert merged.adv_pred["pgd5"].tolist() == [1, NOT_ATTACKED, 0]
    assert merged.adv_pred["pgd5@n=2"].tolist() == [NOT_ATTACKED, 0, 0]


def test_worst_case_is_taken_per_threat_model_only():
    from classwise.identity import with_worst_cases

    res = _results([0, 1, 2], {"a": [0, 1, 0], "b": [0, 0, 1], "c": [1, 1, 1]},
                   {"a": _pgd(0.3, "a"), "b": _pgd(0.3, "b"), "c": _pgd(0.1, "c")})
    res.labels[:] = [0, 1, 1]
    res.clean_pred[:] = [0, 1, 1]
    out = with_worst_cases(res)
    assert list(out.adv_pred) == ["a", "b", "c", "worst"]  # eps 0.1 has a single attack: no worst case for it
    assert out.facts["worst"]["over"] == ["a", "b"] and out.facts["worst"]["eps"] == 0.3
    assert out.correct("worst").tolist() == [True, False, False]


def test_a_surrogate_trained_on_another_dataset_is_refused(trained, tmp_path, capsys):
    """Same image shape and class count, another dataset: told apart by the surrogate's recorded dataset."""
    import yaml

    run, other = copy_of(trained, tmp_path), copy_of(trained, tmp_path, "other")
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["name"] = "mnist"  # as if trained on real MNIST (same 28 x 28 x 1 images, 10 classes)
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    before = snapshot(run)
    assert main(["evaluate", str(run), "-q", "--attacks", f"transfer:{other}"]) == 2
    assert "trained on mnist" in one_error(capsys) and snapshot(run) == before
    assert main(["evaluate", str(run), "-q", "--attacks", f"transfer:{trained}"]) == 0  # the same dataset: fine
    assert Run(run).results().facts[f"transfer:{trained}"]["trained_on"] == "mnist5k"
