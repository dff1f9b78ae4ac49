"""The run folder owns its layout: every file a run's whole life writes is one ``RunFiles`` names and
``OWN_FILES`` lists, so ``--overwrite`` (which deletes only such files) keeps working as files are added."""

from __future__ import annotations

import fnmatch
import importlib.util
import inspect
import os
from pathlib import Path

import pytest

from classwise.cli import main
from classwise.runfiles import OWN_FILES, RunFiles
from classwise.errors import ClasswiseError
from classwise.runs import SUB_RUNS, OurCheckpoints, OutsideWeights, Run, _foreign_files

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPORARIES = (".*.tmp", "checkpoints/.*.tmp", "*/.*.tmp", "figures/*/.*.tmp")  # atomic writes in flight, not layout entries
SAMPLE_ARGS = {"checkpoint": ("epoch1",), "adv_file": ("pgd5@eps=0.3",), "homing_retrain": (0,)}


def accessor_paths() -> dict[str, str]:
    """Every accessor of :class:`RunFiles` -> the path it gives, relative to the run folder."""
    files, out = RunFiles(Path("run")), {}
    for name, member in inspect.getmembers(RunFiles):
        if name.startswith("_") or name == "root":
            continue
        path = getattr(files, name) if isinstance(member, property) else getattr(files, name)(*SAMPLE_ARGS[name])
        out[name] = path.relative_to(files.root).as_posix()
    return out


def _owned(rel: str) -> bool:
    """A file of the layout, a folder holding files of the layout, or a nested run's folder."""
    return (any(fnmatch.fnmatchcase(rel, p) for p in OWN_FILES) or any(p.startswith(rel + "/") for p in OWN_FILES)
            or (rel.count("/") == 1 and rel.split("/")[0] in SUB_RUNS))


def test_every_accessor_is_a_file_or_folder_that_overwrite_may_delete():
    paths = accessor_paths()
    assert {"metrics", "train_log", "report_md", "report_html", "tables", "figures", "adv", "homing",
            "tensorboard", "compare", "model_json", "train_state"} <= set(paths)
    unknown = {name: rel for name, rel in paths.items() if not _owned(rel)}
    assert not unknown, f"add these to runfiles.OWN_FILES: {unknown}"


def test_every_own_files_pattern_belongs_to_an_accessor():
    """No stale pattern: each names an accessor's file, or files inside an accessor's folder."""
    paths = set(accessor_paths().values())
    stale = [p for p in OWN_FILES if p not in TEMPORARIES
             and not any(fnmatch.fnmatchcase(rel, p) or p.rpartition("/")[0] == rel for rel in paths)]
    assert not stale, f"patterns no RunFiles accessor writes: {stale}"


def test_a_file_the_manifest_does_not_record_blocks_overwrite_whatever_its_name(tmp_path):
    """Names that match the layout's patterns are no licence: only files the manifest records are classwise's."""
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    RunFiles(run).marker.write_text("{}")
    RunFiles(run).manifest.write_text("classwise-run.json\nfigures/ours.png\n")
    for name in ("ours.png", "mine.png", "notes.txt", f".ours.png.{os.getpid()}.0123abcd.tmp"):
        (run / "figures" / name).write_bytes(b"x")
    assert _foreign_files(run) == ["figures/mine.png", "figures/notes.txt"]


@pytest.mark.parametrize("origin, source", [(None, OurCheckpoints), ("train", OurCheckpoints),
                                            ("outside", OutsideWeights)])
def test_the_marker_origin_picks_the_model_source(tmp_path, origin, source):
    RunFiles(tmp_path).marker.write_text("{}" if origin is None else f'{{"origin": "{origin}"}}')
    assert type(Run.open(tmp_path).source) is source and Run(tmp_path).origin == source.origin


def test_an_unknown_origin_is_one_error(tmp_path):
    RunFiles(tmp_path).marker.write_text('{"origin": "elsewhere"}')
    with pytest.raises(ClasswiseError, match="unknown origin 'elsewhere'"):
        Run.open(tmp_path).model()


def test_a_whole_life_writes_only_files_the_run_knows(tmp_path, tiny_overrides, capsys):
    """train (TensorBoard on, an epoch checkpoint), evaluate --save-adv, homing, compare, figure 7, report."""
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    sets = [x for o in tiny_overrides for x in ("--set", o)] + ["--set", "train.save_epochs=[1]"]
    sets += ["--set", "train.tensorboard=true"] if tensorboard else []
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "-q", *sets]) == 0
    assert main(["evaluate", str(run), "-q", "--save-adv"]) == 0
    assert main(["homing", str(run), "--classes", "0", "-q"]) == 0
    assert main(["compare", str(run)]) == 0
    assert main(["compare", str(run), str(run), "--figure7"]) == 0
    assert main(["report", str(run)]) == 0
    capsys.readouterr()

    files = Run.open(run).files
    written = [files.metrics, files.train_log, files.checkpoint("epoch1"), files.train_state, files.results,
               files.meta, files.summary, files.report_md, files.report_html, files.adv_file("pgd5"),
               files.homing_json, files.homing_csv, files.homing_misclassified_csv, files.homing_figure,
               files.compare / "compare.md", files.compare / "gap_comparison.json",
               RunFiles(files.homing_retrain(0)).metrics]
    assert [p for p in written if not p.is_file()] == []
    assert any(files.tables.glob("*.csv")) and any(files.figures.glob("*.png"))
    assert any(files.tensorboard.iterdir()) == tensorboard
    assert _foreign_files(run) == []
    assert Run(run).state == "complete" and isinstance(Run(run).source, OurCheckpoints)

    assert main(["train", "--out", str(run), "-q", "--overwrite", *sets]) == 0  # replaced, not refused
    assert not files.results.is_file() and not files.homing.exists() and Run(run).state == "trained"
