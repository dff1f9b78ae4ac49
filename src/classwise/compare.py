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
from .analysis.fairness import class_spread, worst_class
from .analysis.schema import Summary
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
    summary = Summary.from_dict(opened.summary(), str(opened.files.summary)).to_dict()  # checked: types, sizes
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
    summaries = [(run_label(Path(r), runs) + _mark(Path(r)), _summary(Path(r))) for r in runs]
    names = summaries[0][1]["class_names"]
    for label, s in summaries:
        if s["class_names"] != names:
            raise ClasswiseError(f"{label} has other classes than {summaries[0][0]}; compare runs on one dataset")
    rows = [(f"{label} ({name}; n={examples_of(block)})", _marked_block(block))
            for label, s in summaries for name, block in _rows(label, s, attack)]
    out = own_folder(Path(out))
    typed: list[tuple[str, tables.Block]] = list(rows)  # blocks_markdown takes typed blocks or their JSON form
    files = {"md": atomic_write(out / "compare.md", blocks_markdown(typed, names, corner="Run (attack)",
                                                                footnote=tables.COMPARE_FOOTNOTE)),
             "csv": atomic_write(out / "compare.csv", _csv(rows, names))}
    bars = {label: np.array([np.nan if v is None else v for v in b["per_class"]], dtype=np.float64) for label, b in rows}
    files["png"] = figures.plot_classwise_bars(bars, names, out / "compare.png", title="class-wise comparison")
    return {"rows": rows, "class_names": names, "files": files}


def examples_of(block: dict[str, Any]) -> int | str:
    """The test examples behind an accuracy block: the sum of its per-class n ("?" in a summary without them).

    Runs evaluated on 20 and on 100 examples differ in their noise, so every
    comparison shows n beside each row.
    """
    if block.get("n"):
        return int(sum(block["n"]))
    return int(block["examples"]) if block.get("examples") is not None else "?"


def run_label(run: Path, runs: list[str | Path] | list[Path]) -> str:
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
    """The block with its best and worst class (recomputed when absent; None when no class has a value or all tie)."""
    values = _values(block)
    if "best_class" in block and "worst_class" in block:
        return block
    ok = np.isfinite(values)
    if not ok.any() or np.nanmax(values) == np.nanmin(values):  # no class, or all tied: none is best or worst
        return block | {"best_class": None, "worst_class": None}
    return block | {"best_class": int(np.nanargmax(values)), "worst_class": int(np.nanargmin(values))}


def _csv(rows: list[tuple[str, dict[str, Any]]], names: list[str]) -> str:
    header = ["run (attack)", "total", *names, "most_robust", "most_vulnerable"]
    cell = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    pick = lambda i: "" if i is None else names[i]  # noqa: E731
    return text_csv(header, [[label, cell(b["overall"]), *map(cell, b["per_class"]), pick(b["best_class"]),
                              pick(b["worst_class"])] for label, b in rows])


# ---- worst-class robustness of runs and of groups of runs (seeds) ------------------

FAIRNESS_HEADER = ("clean", "average robust", "worst-class robust", "NSD")


def fairness_row(summary: dict[str, Any], attack: str | None = None) -> dict[str, Any]:
    """One run's clean, average robust (95% CI), worst-class robust (simultaneous 95% interval) and NSD.

    attack: the robustness entry (default: the run's headline, its worst case when it has one).
    Worst class and NSD are recomputed from the block's per-class counts
    (:func:`classwise.analysis.fairness.worst_class`); ``summary`` is one checked by
    :class:`~classwise.analysis.schema.Summary` (every block has counts).
    """
    attack = attack or headline_attack(list(summary["attacks"]))
    if attack not in summary["attacks"]:
        raise ClasswiseError(f"attack {attack!r} was not run (run: {', '.join(summary['attacks'])})")
    block = summary["attacks"][attack]
    count, n = np.asarray(block["count"], dtype=np.int64), np.asarray(block["n"], dtype=np.int64)
    worst, spread = worst_class(count, n), class_spread(count, n)
    if worst is None or spread is None:
        raise ClasswiseError(f"attack {attack!r} saw no test examples")
    names = summary["class_names"]
    return {"attack": attack, "examples": int(n.sum()), "clean": summary["clean"]["overall"], "robust": block["overall"],
            "robust_ci95": block.get("overall_ci95"), "worst": worst.percent, "worst_low": worst.low,
            "worst_high": worst.high, "worst_classes": [names[c] for c in worst.classes],
            "worst_candidates": len(worst.candidates), "nsd": spread.nsd if np.isfinite(spread.nsd) else None}


def group_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (ddof 1; None for one run) over a group's runs (seeds) of each figure."""
    out: dict[str, Any] = {"runs": len(rows)}
    for key in ("clean", "robust", "worst", "nsd"):
        v = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)
        ok = bool(np.isfinite(v).all())  # an undefined NSD (mean 0) leaves the group's NSD undefined
        out[key] = {"mean": float(v.mean()) if ok else None, "std": float(v.std(ddof=1)) if ok and len(v) > 1 else None,
                    "values": [_fix(x) for x in v.tolist()]}
    return out


def seed_test(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of two groups' per-seed values; None with fewer than 2 seeds each.

    A test over seeds, not over test examples: the question is whether two training
    recipes differ, and training randomness (seed) is then the noise that matters;
    each seed's figure already carries its own test-set noise. A paired test over
    examples (McNemar) would ask whether two given models differ on this test set.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    import warnings

    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # identical values in a group: scipy warns, the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if np.isfinite(p) else None


def parse_groups(specs: list[str]) -> dict[str, list[Path]]:
    """``NAME=RUN,RUN,...`` options -> {name: runs}; one clear error for a malformed one."""
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, runs = spec.partition("=")
        paths = [Path(r.strip()) for r in runs.split(",") if r.strip()]
        if not sep or not name.strip() or not paths:
            raise ClasswiseError(f"--group takes NAME=RUN,RUN,... (runs of one recipe, one per seed), got {spec!r}")
        if name.strip() in groups:
            raise ClasswiseError(f"--group {name.strip()!r} is given twice")
        groups[name.strip()] = paths
    return groups


def fairness_record(groups: dict[str, list[Path]], attack: str | None = None) -> dict[str, Any]:
    """Per run and per group (mean +- std over seeds) figures of evaluated runs; groups after the first
    are tested against it over seeds (:func:`seed_test`). groups: name -> runs (one run: a run)."""
    summaries = {p: _summary(p) for paths in groups.values() for p in paths}
    if len({tuple(s["class_names"]) for s in summaries.values()}) > 1:
        raise ClasswiseError("the runs have different classes; compare runs on one dataset")
    runs = {name: [(p, fairness_row(summaries[p], attack)) for p in paths] for name, paths in groups.items()}
    stats = {name: group_stats([r for _, r in rows]) for name, rows in runs.items()}
    first = next(iter(stats))
    for name, s in stats.items():
        if name != first:
            s["vs"] = {"group": first, **{f"p_{key}": seed_test(stats[first][key]["values"], s[key]["values"])
                                          for key in ("robust", "worst")}}  # both are always finite
    return {"attack": attack, "groups": stats,
            "runs": {name: [{"run": str(p), **r} for p, r in rows] for name, rows in runs.items()}}


def compare_fairness(groups: dict[str, list[Path]], out: str | Path, attack: str | None = None) -> dict[str, Any]:
    """Write fairness.{md,csv,json} of :func:`fairness_record` into ``out``; returns the record."""
    record, out = fairness_record(groups, attack), own_folder(Path(out))
    write_json(out / "fairness.json", record)
    atomic_write(out / "fairness.md", fairness_markdown(record))
    atomic_write(out / "fairness.csv", _fairness_csv(record))
    return record


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.1f}"


def _mean_std(s: dict[str, Any], digits: int = 1) -> str:
    std = s["std"]
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def fairness_markdown(record: dict[str, Any]) -> str:
    """The runs' table (intervals per run) and, when a group has several runs, the groups' table."""
    lines = ["| Run | attack | n | clean | average robust (95% CI) | worst-class robust (simultaneous 95%) "
             "| worst class | NSD |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in record["runs"].items():
        for r in rows:
            ci = r["robust_ci95"]
            avg = _pct(r["robust"]) + ("" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]")
            worst = f"{_pct(r['worst'])} [{_pct(r['worst_low'])}, {_pct(r['worst_high'])}]"
            label = name if len(rows) == 1 else f"{name}: {Path(r['run']).name}"
            nsd = "n/a" if r["nsd"] is None or not np.isfinite(r["nsd"]) else f"{r['nsd']:.3f}"
            lines.append(f"| {label} | {r['attack']} | {r.get('examples', '?')} | {_pct(r['clean'])} | {avg} | {worst} "
                         f"| {', '.join(r['worst_classes'])} | {nsd} |")
    if any(s["runs"] > 1 for s in record["groups"].values()):
        lines += ["", "| Group | seeds | clean | average robust | worst-class robust | NSD "
                      "| p (average, vs first) | p (worst-class, vs first) |", "|---|---|---|---|---|---|---|---|"]
        for name, s in record["groups"].items():
            vs = s.get("vs", {})
            p = [_p_value(vs, key) for key in ("p_robust", "p_worst")]
            lines.append(f"| {name} | {s['runs']} | {_mean_std(s['clean'])} | {_mean_std(s['robust'])} "
                         f"| {_mean_std(s['worst'])} | {_mean_std(s['nsd'], 3)} | {p[0]} | {p[1]} |")
        lines += ["", "Mean ± standard deviation over seeds; p: Welch's t-test over seeds against the first group "
                      "(n/a with fewer than 2 seeds in a group)."]
    return "\n".join(lines) + "\n"


def _p_value(vs: dict[str, Any], key: str) -> str:
    return "" if not vs else ("n/a" if vs[key] is None else f"{vs[key]:.3f}")


def _fairness_csv(record: dict[str, Any]) -> str:
    header = ["group", "run", "attack", "examples", "clean", "robust", "robust_low", "robust_high", "worst", "worst_low",
              "worst_high", "worst_classes", "nsd"]
    cell = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    rows = []
    for name, runs in record["runs"].items():
        for r in runs:
            ci = r["robust_ci95"] or (None, None)
            rows.append([name, r["run"], r["attack"], str(r.get("examples", "")), cell(r["clean"]), cell(r["robust"]),
                         cell(ci[0]), cell(ci[1]),
                         cell(r["worst"]), cell(r["worst_low"]), cell(r["worst_high"]), " ".join(r["worst_classes"]),
                         cell(r["nsd"])])
    return text_csv(header, rows)
