"""The report writes only where the run folder's layout puts its files: under ``RunFiles.figures`` and
``RunFiles.tables`` (and report.md / report.html), each matching a pattern of ``OWN_FILES`` so that
``--overwrite`` may delete it; the report never spells those folders itself (``figures.path_of`` and
``tables.path_of`` take them from :class:`~classwise.runfiles.RunFiles`)."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import numpy as np
import pytest
from summary_cases import rich_kwargs, rich_results

from classwise.report import ReportContext, build, figures, write_report
from classwise.report.build import build_sections
from classwise.results import EvalResults
from classwise.runfiles import OWN_FILES, RunFiles

pytestmark = pytest.mark.usefixtures("one_thread")

REPORT = Path(build.__file__).parent


def _homing(k: int) -> dict:
    """A homing record (homing.json) removing class 1 of ``k``: 3 examples flipped into it, 2 home."""
    mis, hom = np.zeros((k, k), int), np.full((k, k), None, dtype=object)
    mis[0, 1], hom[:, 1] = 3, 0
    hom[0, 1] = 2
    return {"attack": "pgd20", "removed": [1], "misclassified": mis.tolist(), "homing": hom.tolist(),
            "per_removed": [{"class": 1, "flipped": 3, "homed": 2}], "flipped": 3, "homed": 2, "share": 2 / 3}


def _rich() -> ReportContext:
    """5 classes: every section, the threat-model ones (curves, targeted, norms) and homing included."""
    kw = rich_kwargs()
    metrics = [{"epoch": 1, "robust": {"overall": 30.0, "per_class": [20.0, 60.0, 40.0, 30.0, 10.0]}}]
    return ReportContext.build(rich_results(), head_weight=kw["head_weight"], superclasses=kw["superclasses"],
                               metrics=metrics, homing=_homing(5), sanity=kw["sanity"]["flags"])


def _many() -> ReportContext:
    """30 classes with superclasses: the superclass view and the extremes tables."""
    rng, k = np.random.default_rng(0), 30
    labels = np.repeat(np.arange(k), 4)
    res = EvalResults(labels, np.where(rng.random(labels.size) < 0.8, labels, (labels + 1) % k),
                      {"fgsm": np.where(rng.random(labels.size) < 0.5, labels, (labels + 2) % k),
                       "pgd20": np.where(rng.random(labels.size) < 0.4, labels, (labels + 3) % k)},
                      [f"c{i}" for i in range(k)])
    return ReportContext.build(res, superclasses={"a": list(range(15)), "b": list(range(15, k))})


def _in_layout(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in OWN_FILES)


@pytest.mark.parametrize("make", [_rich, _many])
def test_every_section_file_lies_in_a_runfiles_folder_overwrite_may_delete(make):
    root = Path("run")
    layout = RunFiles(root)
    keys, rels = set(), []
    for s in build_sections(make()):
        for f in s.files:
            assert (root / f.path).parent == layout.tables, f.path
            keys.add(f.key)
            rels.append(f.path)
        if s.figure:
            png = root / s.figure.path
            assert png.parent == layout.figures and png.suffix == ".png", s.figure.path
            keys.add(s.figure.key)
            rels += [s.figure.path, Path(s.figure.path).with_suffix(".svg").as_posix()]
    assert rels and not [r for r in rels if not _in_layout(r)]
    if make is _rich:
        assert {"homing_csv", "fig_homing", "norms_csv", "fig_epochs"} <= keys
    else:
        assert "superclass_robustness_csv" in keys


def _placeholder(fig, path):
    """figures._save without drawing: an empty PNG and SVG where the real one would go."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_suffix(".svg")):
        p.write_bytes(b"")
    return path


def test_write_report_writes_only_the_run_layouts_files(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "_save", _placeholder)
    layout = RunFiles(tmp_path)
    paths = write_report(tmp_path, _rich())
    assert paths["report_md"] == layout.report_md and paths["report_html"] == layout.report_html
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert not [r for r in written if not _in_layout(r)]
    assert {p.parent for p in paths.values()} == {layout.root, layout.figures, layout.tables}


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (f-string parts included) but its docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_report_never_spells_the_layouts_folders():
    spelled = [f"{p.name}:{line}: {text!r}" for p in sorted(REPORT.glob("*.py")) for line, text in _strings(p)
               if "figures/" in text or "tables/" in text]
    assert not spelled, "take the path from figures.path_of / tables.path_of (RunFiles), not a literal"
