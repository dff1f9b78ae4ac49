"""Class-wise tables in the layout of the paper's table 2, as CSV, Markdown and HTML.

One row for clean accuracy and one per attack; columns: Total, then each class
(with more than 20 classes the report transposes them: one row per class). In
Markdown and HTML each cell reads ``47.0 [37.5, 56.7]``: the value and its 95%
Wilson interval (asymmetric near 0 and 100, so never written as ``±``); the most robust class of each row is underlined and the
most vulnerable is bold, as in table 2. ``classwise_ci_csv`` has the exact
bounds, n and counts. The functions return text; the caller writes it.

A summary is the typed :class:`~classwise.analysis.schema.Summary`; an accuracy
block is its :class:`~classwise.analysis.schema.AccuracyBlock` or the same
block as JSON (compare and the experiments read summary.json files of any age,
whose blocks may lack intervals or best and worst class).
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from pathlib import Path

import numpy as np

from ..analysis.schema import AccuracyBlock, Summary
from ..runfiles import RunFiles

Block = AccuracyBlock | dict[str, Any]  # a typed block or its JSON form


def path_of(name: str) -> str:
    """Where the report's table ``name`` lives, relative to the run folder (under :attr:`RunFiles.tables`).

    Report files are named relative to the run folder (report.md links them so);
    the folder is the run layout's, never spelled here.
    """
    return (RunFiles(Path()).tables / name).as_posix()


FOOTNOTE = ("Values are accuracy (%) on the test set with the 95% Wilson interval in brackets "
            f"(n and counts in {path_of('classwise_ci.csv')}); Total is over all examples. "
            "Underlined: the most robust class of the row; bold: the most vulnerable class.")
COMPARE_FOOTNOTE = ("Values are accuracy (%) on each run's test examples (n: how many, per row) with the 95% Wilson "
                    "interval in brackets; Total is over all examples. Underlined: the most robust class of the row; "
                    "bold: the most vulnerable class.")
DIFF_FOOTNOTE = ("* marks a per-class difference that is significant: exact McNemar test on the examples both "
                 f"attacks saw, Holm-adjusted over the classes, p < 0.05 ({path_of('difference_tests.csv')} has the "
                 "p-values).")


def table_rows(summary: Summary | dict[str, Any]) -> list[tuple[str, Block]]:
    """[(row name, accuracy block)]: "clean" first, then each attack in summary order."""
    if isinstance(summary, Summary):
        return list(summary.rows())
    return [("clean", summary["clean"]), *summary["attacks"].items()]


def _names(summary: Summary | dict[str, Any]) -> list[str]:
    return list(summary.class_names if isinstance(summary, Summary) else summary["class_names"])


def at(block: Block, key: str) -> Any:
    """A block's entry ``key`` (None when a JSON block lacks it)."""
    return block.get(key) if isinstance(block, dict) else getattr(block, key)


def _fmt(x: float | None, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _marked(block: Block, i: int, text: str, under: str, bold: str) -> str:
    """Wrap cell i of a row: ``under`` % text for the best class, ``bold`` % text for the worst."""
    if i == at(block, "best_class"):
        text = under % text
    if i == at(block, "worst_class"):
        text = bold % text
    return text


def classwise_csv(summary: Summary | dict[str, Any], digits: int = 2) -> str:
    """CSV text: header ``attack,total,<class names>``; one row per table row; NaN empty."""
    return blocks_csv(table_rows(summary), _names(summary), digits)


def blocks_csv(rows: list[tuple[str, Block]], class_names: list[str], digits: int = 2,
               corner: str = "attack") -> str:
    """CSV of named accuracy blocks ({"overall", "per_class"}): ``corner,total,<class names>``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([corner, "total", *class_names])
    for name, block in rows:
        writer.writerow([name, _fmt(at(block, "overall"), digits), *(_fmt(v, digits) for v in at(block, "per_class"))])
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _ci_cell(value: float | None, ci: list | None, digits: int) -> str:
    """``47.0 [37.5, 56.7]`` (the value and its interval), or the value alone without an interval."""
    if value is None:
        return ""
    if not ci or ci[0] is None or ci[1] is None:
        return _fmt(value, digits)
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def ci_text(value: float, ci) -> str:
    """``47.0 [37.5, 56.7]`` from a value and a [lo, hi] pair that may hold NaN (then empty / value only)."""
    fin = lambda v: None if v is None or np.isnan(v) else float(v)  # noqa: E731
    return _ci_cell(fin(value), [fin(ci[0]), fin(ci[1])], 1)


def _block_cells(block: Block, digits: int, classes: list[int], marks: tuple[str, str]) -> list[str]:
    """Total then the chosen classes' cells of one row, best / worst marked."""
    per_class = at(block, "per_class")
    ci = at(block, "ci95") or [None] * len(per_class)
    cells = [_marked(block, i, _ci_cell(per_class[i], ci[i], digits), *marks) for i in classes]
    return [_ci_cell(at(block, "overall"), at(block, "overall_ci95"), digits), *cells]


def blocks_grid(rows: list[tuple[str, Block]], class_names: list[str], digits: int = 1,
                corner: str = "Attack", classes: list[int] | None = None, esc=lambda t: t,
                marks: tuple[str, str] = ("<u>%s</u>", "**%s**")) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a table-2 grid: one row per block, Total then one column per class.

    Names pass through ``esc``; cells are already marked up (``marks``: best, worst).
    """
    classes = list(range(len(class_names))) if classes is None else list(classes)
    header = [esc(corner), "Total", *(esc(class_names[i]) for i in classes)]
    return header, [[esc(name), *_block_cells(block, digits, classes, marks)] for name, block in rows]


def transpose(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Swap rows and columns of a (header, rows) grid: the corner stays, row names become the header."""
    grid = [header, *rows]
    cols = [list(c) for c in zip(*grid)]
    return cols[0], cols[1:]


def grid_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells that are already escaped and marked up."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def grid_html(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table, in a scroll container, of cells already escaped and marked up."""
    head = "".join(f"<th>{c}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def classwise_markdown(summary: Summary | dict[str, Any], digits: int = 1, classes: list[int] | None = None,
                       by_class: bool = False) -> str:
    """Markdown table 2: best class ``<u>x</u>``, worst class ``**x**``, footnote below.

    classes: the class columns to show (default all); by_class: one row per class.
    """
    return blocks_markdown(table_rows(summary), _names(summary), digits, classes=classes,
                           by_class=by_class)


def blocks_markdown(rows: list[tuple[str, Block]], class_names: list[str], digits: int = 1,
                    corner: str = "Attack", classes: list[int] | None = None, by_class: bool = False,
                    footnote: str = FOOTNOTE) -> str:
    """Markdown of named accuracy blocks (:func:`classwise.analysis.accuracy_block`), table 2 marks."""
    grid = blocks_grid(rows, class_names, digits, corner, classes, _md_cell)
    return grid_markdown(*(transpose(*grid) if by_class else grid)) + f"\n{footnote}\n"


def classwise_html(summary: Summary | dict[str, Any], digits: int = 1, classes: list[int] | None = None,
                   by_class: bool = False) -> str:
    """HTML table 2 (escaped, scrollable): best class ``<u>``, worst class ``<strong>``, footnote below."""
    grid = blocks_grid(table_rows(summary), _names(summary), digits, "Attack", classes, html.escape,
                       ("<u>%s</u>", "<strong>%s</strong>"))
    return grid_html(*(transpose(*grid) if by_class else grid)) + f'<p class="note">{html.escape(FOOTNOTE)}</p>'


def classwise_ci_csv(summary: Summary, digits: int = 3) -> str:
    """Long CSV of every row and class: attack,class,n,count,percent,ci95_lo,ci95_hi ("total" rows too)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["attack", "class", "n", "count", "percent", "ci95_lo", "ci95_hi"])
    for name, b in summary.rows():
        lo, hi = b.overall_ci95
        writer.writerow([name, "total", sum(b.n), sum(b.count), _fmt(b.overall, digits),
                         _fmt(lo, digits), _fmt(hi, digits)])
        for i, cls in enumerate(summary.class_names):
            lo, hi = b.ci95[i]
            writer.writerow([name, cls, b.n[i], b.count[i], _fmt(b.per_class[i], digits),
                             _fmt(lo, digits), _fmt(hi, digits)])
    return buf.getvalue()


def matrix_csv(matrix: np.ndarray, row_labels: list[str], col_labels: list[str], digits: int = 2) -> str:
    """CSV of a (R, C) matrix with a header of column labels and a label per row; NaN empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true \\ predicted", *col_labels])
    for label, row in zip(row_labels, np.asarray(matrix, dtype=np.float64)):
        writer.writerow([label, *("" if np.isnan(v) else f"{v:.{digits}f}" for v in row)])
    return buf.getvalue()


def rows_csv(rows: dict[str, np.ndarray], col_labels: list[str], corner: str = "", digits: int = 4) -> str:
    """CSV of named rows of numbers: header ``corner,<col labels>``, one line per row; NaN empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([corner, *col_labels])
    for name, row in rows.items():
        writer.writerow([name, *("" if np.isnan(v) else f"{v:.{digits}g}" for v in np.asarray(row, np.float64))])
    return buf.getvalue()


def simple_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A plain Markdown table of text cells (``|`` escaped)."""
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def simple_html(header: list[str], rows: list[list[str]]) -> str:
    """A plain HTML table of text cells (escaped), in a scroll container."""
    esc = html.escape
    return grid_html([esc(c) for c in header], [[esc(c) for c in r] for r in rows])


def _signed(x: float | None, digits: int = 1, star: bool = False) -> str:
    return "" if x is None else f"{x:+.{digits}f}" + ("*" if star else "")


def difference_rows(summary: Summary) -> list[list[str]]:
    """Per attack, robustness minus the reference's, total then per class (tables 3, 4, 6).

    Negative numbers: the attack is stronger than the reference on that class.
    Computed on the examples both attacks saw (``summary.claims.paired``); a
    ``*`` marks a significant per-class difference (:data:`DIFF_FOOTNOTE`).
    Classes without examples under either attack stay empty.
    """
    rows = []
    for name, cmp in summary.claims.paired.attacks.items():
        cells = [_signed(d, star=s) for d, s in zip(cmp.diff, cmp.significant)]
        rows.append([name, _signed(cmp.overall.diff, star=cmp.overall.p < cmp.alpha), *cells])
    return rows


def difference_header(summary: Summary) -> list[str]:
    return [f"Attack - {summary.claims.paired.reference}", "Total", *summary.class_names]


def difference_tests_csv(summary: Summary) -> str:
    """Long CSV of the paired tests: attack,reference,class,n,diff,p,p_holm,significant."""
    paired = summary.claims.paired
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["attack", "reference", "class", "n", "diff", "p", "p_holm", "significant"])
    for name, c in paired.attacks.items():
        writer.writerow([name, paired.reference, "total", sum(c.n), _fmt(c.overall.diff, 3),
                         f"{c.overall.p:.4g}", "", int(c.overall.p < c.alpha)])
        for i, cls in enumerate(summary.class_names):
            p, ph = c.p[i], c.p_holm[i]
            writer.writerow([name, paired.reference, cls, c.n[i], _fmt(c.diff[i], 3),
                             "" if p is None else f"{p:.4g}", "" if ph is None else f"{ph:.4g}",
                             int(c.significant[i])])
    return buf.getvalue()


def text_csv(header: list[str], rows: list[list[str]]) -> str:
    """CSV of text cells (quoted where needed)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([header, *rows])
    return buf.getvalue()
