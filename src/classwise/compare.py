"""Comparing evaluated runs: one class-wise table of any number of runs, and figure 7.

:func:`compare_table` (``classwise compare RUN1 RUN2 ...``) writes the paper's
table 2 layout over runs: one row per run and attack, the most robust class of
each row underlined and the most vulnerable in bold, into ``out``::

    compare.md     the table (Markdown, marks as in table 2)
    compare.csv    the same numbers, with the most robust and most vulnerable class of each row
    compare.png    grouped bars: per class, one bar per row

:func:`compare_runs` (``classwise compare STANDARD ROBUST --figure7``) is figure 7.

Paper, appendix C: the class-wise gap of a robust model (robustness under
attack) is much larger than that of a standard model (clean accuracy), while
the order of the classes is nearly the same. Reads both runs' summary.json
(no attacking) and writes into ``out``::

    gap_comparison.json   per-class values ("standard_per_class", "robust_per_class"), and per
                          model ("standard", "robust") the best/worst class and the gap; their ratio
    gap_comparison.csv    one row per model: overall, then each class (percent)
    gap_comparison.png    figure 7
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import gap_comparison, headline_attack
from .report.tables import blocks_markdown, text_csv
from .errors import ClasswiseError
from .fileio import atomic_write, own_folder, write_json
from .report import figures, tables
from .runs import Run


def _summary(run: Path) -> dict[str, Any]:
    """The run's summary.json; one error when its results are not of the run's current checkpoint, a warning
    when the run is not complete (its rows are then marked, :func:`_mark`)."""
    opened = Run.open(run)
    stale = opened.stale_results()
    if stale:
        raise ClasswiseError(f"{stale}; re-run `classwise evaluate {run}` before comparing it")
    summary = opened.summary()
    if opened.state != "complete":
        error = opened.status().get("error")
        warnings.warn(f"{run} is not complete (status '{opened.state}'{': ' + str(error) if error else ''}): "
                      "its numbers are those of its last report, marked so", stacklevel=3)
    return summary


def _mark(run: Path) -> str:
    """"" for a complete run; else " [not complete: <status>]", shown beside its rows."""
    state = Run.open(run).state
    return "" if state == "complete" else f" [not complete: {state}]"


def _values(block: dict[str, Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in block["per_class"]], dtype=np.float64)


def compare_runs(standard_run: str | Path, robust_run: str | Path, out: str | Path,
                 attack: str | None = None) -> dict[str, Any]:
    """Write figure 7 for a standard run (clean accuracy) and a robust run (robustness under ``attack``).

    attack: one of the robust run's attacks (default: its headline attack).
    Returns the record written to ``out/gap_comparison.json``.
    """
    std, rob = _summary(Path(standard_run)), _summary(Path(robust_run))
    if std["class_names"] != rob["class_names"]:
        raise ClasswiseError("the two runs have different classes; compare runs on the same dataset")
    attack = attack or headline_attack(list(rob["attacks"]))
    if attack not in rob["attacks"]:
        raise ClasswiseError(f"attack {attack!r} was not run on {robust_run} (run: {', '.join(rob['attacks'])})")
    standard, robust = _values(std["clean"]), _values(rob["attacks"][attack])
    record = {"standard_run": str(standard_run), "robust_run": str(robust_run), "attack": attack,
              "class_names": std["class_names"], "standard_per_class": standard.tolist(),
              "robust_per_class": robust.tolist(),
              "overall": [std["clean"]["overall"], rob["attacks"][attack]["overall"]],
              **gap_comparison(standard, robust)}
    _write(own_folder(Path(out)), record)
    return record


def _write(out: Path, record: dict[str, Any]) -> None:
    names = record["class_names"]
    std, rob = np.array(record["standard_per_class"]), np.array(record["robust_per_class"])
    std_overall, rob_overall = (np.nan if v is None else v for v in record["overall"])
    overall: tuple[float, float] = (std_overall, rob_overall)
    rows = {"standard (clean)": np.r_[overall[0], std], f"robust ({record['attack']})": np.r_[overall[1], rob]}
    atomic_write(out / "gap_comparison.csv", tables.rows_csv(rows, ["overall", *names], "model"))
    figures.plot_gap_comparison(std, rob, names, record, out / "gap_comparison.png", overall=overall)
    write_json(out / "gap_comparison.json", _jsonable(record))


def _fix(v: Any) -> Any:
    return None if isinstance(v, float) and np.isnan(v) else v


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """NaN to None in the per-class lists and the ratio (strict JSON)."""
    return {k: [_fix(x) for x in v] if isinstance(v, list) else _fix(v) for k, v in record.items()}


def compare_table(runs: list[str | Path], out: str | Path, attack: str | None = None) -> dict[str, Any]:
    """Write compare.{md,csv,png} for evaluated ``runs`` (rows run x attack; clean rows without ``attack``).

    attack: only this attack's row of every run (each run must have it).
    Returns {"rows": [(label, block)], "class_names", "files"}.
    """
    if not runs:
        raise ClasswiseError("compare needs at least one evaluated run")
    summaries = [(_label(Path(r), runs) + _mark(Path(r)), _summary(Path(r))) for r in runs]
    names = summaries[0][1]["class_names"]
    for label, s in summaries:
        if s["class_names"] != names:
            raise ClasswiseError(f"{label} has other classes than {summaries[0][0]}; compare runs on one dataset")
    rows = [(f"{label} ({name})", _marked_block(block)) for label, s in summaries for name, block in _rows(label, s, attack)]
    out = own_folder(Path(out))
    typed: list[tuple[str, tables.Block]] = list(rows)  # blocks_markdown takes typed blocks or their JSON form
    files = {"md": atomic_write(out / "compare.md", blocks_markdown(typed, names, corner="Run (attack)")),
             "csv": atomic_write(out / "compare.csv", _csv(rows, names))}
    bars = {label: np.array([np.nan if v is None else v for v in b["per_class"]], dtype=np.float64) for label, b in rows}
    files["png"] = figures.plot_classwise_bars(bars, names, out / "compare.png", title="class-wise comparison")
    return {"rows": rows, "class_names": names, "files": files}


def _label(run: Path, runs: list[str | Path]) -> str:
    """The run's folder name, or its path when two runs share a name."""
    same = sum(Path(r).name == run.name for r in runs)
    return run.name if same == 1 else str(run)


def _rows(label: str, summary: dict[str, Any], attack: str | None) -> list[tuple[str, dict[str, Any]]]:
    if attack is None:
        return [("clean", summary["clean"]), *summary["attacks"].items()]
    if attack not in summary["attacks"]:
        raise ClasswiseError(f"attack {attack!r} was not run on {label} (run: {', '.join(summary['attacks'])})")
    return [(attack, summary["attacks"][attack])]


def _marked_block(block: dict[str, Any]) -> dict[str, Any]:
    """The block with its best and worst class (recomputed when absent; None when no class has a value)."""
    values = _values(block)
    if "best_class" in block and "worst_class" in block:
        return block
    ok = np.isfinite(values)
    best = int(np.nanargmax(values)) if ok.any() else None
    worst = int(np.nanargmin(values)) if ok.any() else None
    return block | {"best_class": best, "worst_class": worst}


def _csv(rows: list[tuple[str, dict[str, Any]]], names: list[str]) -> str:
    header = ["run (attack)", "total", *names, "most_robust", "most_vulnerable"]
    cell = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    pick = lambda i: "" if i is None else names[i]  # noqa: E731
    return text_csv(header, [[label, cell(b["overall"]), *map(cell, b["per_class"]), pick(b["best_class"]),
                              pick(b["worst_class"])] for label, b in rows])
