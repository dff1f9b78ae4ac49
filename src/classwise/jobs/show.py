"""The show job: one class of an evaluated run in the terminal (numbers, intervals, confounds, gallery files)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..analysis.schema import Summary, load_summary
from ..errors import ClasswiseError
from ..report.gallery import positions
from ..report.glance import ci, confounds, weakest_first
from ..report.section import pct
from ..results import EvalResults
from ..runs import Run

_TILE = re.compile(r".*_(\d+)_(clean|adv|delta)\.png$")  # <attack>_<test index>_<kind>.png (report.gallery)


def class_index(summary: Summary, name: str) -> int:
    """The index of class ``name``; one error naming a few classes when the run has no such class."""
    names = summary.class_names
    if name in names:
        return names.index(name)
    shown = ", ".join(names[:10]) + (f" ... ({len(names)} classes)" if len(names) > 10 else "")
    raise ClasswiseError(f"no class {name!r} in this run; its classes: {shown}")


def show_class(run_dir: str | Path, name: str) -> list[str]:
    """Lines describing class ``name`` of an evaluated run: accuracy with 95% intervals under clean and
    every attack, its rank, its confound classes under the protocol attack and its gallery images.

    Reads summary.json, results.npz and the report's thumbnails (figures/gallery, figures/pairs); writes nothing.
    """
    run = Run.open(run_dir)
    run.summary()  # one error saying what to run first
    summary = load_summary(run.files.summary)
    c, results = class_index(summary, name), run.require_results()
    rank = weakest_first(summary).index(c) + 1
    lines = [f"class {name} (index {c}) of {run.path}: {summary.clean.n[c]} test examples, "
             f"rank {rank} of {summary.num_classes} from the weakest under {summary.headline or 'clean'}"]
    lines += [f"  {row}: {pct(b.per_class[c])}{ci(b.ci95[c])}" for row, b in summary.rows()]
    head = summary.protocol
    if head is not None and head in results.adv_pred:
        flips = confounds(results, head, summary.num_classes)[c] or "none"
        lines.append(f"confounds under {head} (share of the class predicted as each): {flips}")
    return lines + _gallery_lines(run, results, c)


def _gallery_lines(run: Run, results: EvalResults, c: int) -> list[str]:
    """The report's thumbnails of class ``c`` (true class of the example), or how to get them."""
    found: list[Path] = []
    for folder in (run.files.gallery, run.files.pairs):
        tiles = [(p, int(m.group(1))) for p in sorted(folder.glob("*.png")) if (m := _TILE.match(p.name))]
        paths = [p for p, _ in tiles]
        pos = positions(results, np.array([t for _, t in tiles], dtype=np.int64))
        found += [p for p, q in zip(paths, pos) if q >= 0 and results.labels[q] == c]
    if not found:
        return ["gallery images: none (the run keeps none: evaluate with eval.save_adv_per_class > 0 or --save-adv)"]
    return ["gallery images:", *(f"  {p}" for p in found)]
