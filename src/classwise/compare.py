"""Figure 7 from two run folders: standard model's accuracy beside robust model's robustness.

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

from pathlib import Path
from typing import Any

import numpy as np

from .analysis import gap_comparison, headline_attack
from .errors import ClasswiseError
from .fileio import atomic_write, write_json
from .report import figures, tables
from .runs import Run


def _summary(run: Path) -> dict[str, Any]:
    return Run.open(run).summary()


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
    _write(Path(out), record)
    return record


def _write(out: Path, record: dict[str, Any]) -> None:
    names = record["class_names"]
    std, rob = np.array(record["standard_per_class"]), np.array(record["robust_per_class"])
    overall = tuple(np.nan if v is None else v for v in record["overall"])
    rows = {"standard (clean)": np.r_[overall[0], std], f"robust ({record['attack']})": np.r_[overall[1], rob]}
    atomic_write(out / "gap_comparison.csv", tables.rows_csv(rows, ["overall", *names], "model"))
    figures.plot_gap_comparison(std, rob, names, record, out / "gap_comparison.png", overall=overall)
    write_json(out / "gap_comparison.json", _jsonable(record))


def _fix(v: Any) -> Any:
    return None if isinstance(v, float) and np.isnan(v) else v


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """NaN to None in the per-class lists and the ratio (strict JSON)."""
    return {k: [_fix(x) for x in v] if isinstance(v, list) else _fix(v) for k, v in record.items()}
