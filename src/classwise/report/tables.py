"""Class-wise tables in the layout of the paper's table 2, as CSV, Markdown and HTML.

One row for clean accuracy and one per attack; columns: Total, then each class.
In Markdown and HTML the most robust class of each row is underlined and the most
vulnerable is bold, as in table 2. The functions return text; the caller writes it.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

import numpy as np

FOOTNOTE = ("Values are accuracy (%) on the test set; Total is over all examples. "
            "Underlined: the most robust class of the row; bold: the most vulnerable class.")


def table_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(row name, accuracy block)]: "clean" first, then each attack in summary order."""
    return [("clean", summary["clean"]), *summary["attacks"].items()]


def _fmt(x: float | None, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _marked(block: dict[str, Any], i: int, text: str, under: str, bold: str) -> str:
    """Wrap cell i of a row: ``under`` % text for the best class, ``bold`` % text for the worst."""
    if i == block["best_class"]:
        text = under % text
    if i == block["worst_class"]:
        text = bold % text
    return text


def classwise_csv(summary: dict[str, Any], digits: int = 2) -> str:
    """CSV text: header ``attack,total,<class names>``; one row per table row; NaN empty."""
    return blocks_csv(table_rows(summary), summary["class_names"], digits)


def blocks_csv(rows: list[tuple[str, dict[str, Any]]], class_names: list[str], digits: int = 2,
               corner: str = "attack") -> str:
    """CSV of named accuracy blocks ({"overall", "per_class"}): ``corner,total,<class names>``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([corner, "total", *class_names])
    for name, block in rows:
        writer.writerow([name, _fmt(block["overall"], digits), *(_fmt(v, digits) for v in block["per_class"])])
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def classwise_markdown(summary: dict[str, Any], digits: int = 1) -> str:
    """Markdown table 2: best class ``<u>x</u>``, worst class ``**x**``, footnote below."""
    return blocks_markdown(table_rows(summary), summary["class_names"], digits)


def blocks_markdown(rows: list[tuple[str, dict[str, Any]]], class_names: list[str], digits: int = 1,
                    corner: str = "Attack") -> str:
    """Markdown of named accuracy blocks (:func:`classwise.analysis.accuracy_block`), table 2 marks."""
    head = [corner, "Total", *map(_md_cell, class_names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, block in rows:
        cells = [_marked(block, i, _fmt(v, digits), "<u>%s</u>", "**%s**")
                 for i, v in enumerate(block["per_class"])]
        lines.append("| " + " | ".join([_md_cell(name), _fmt(block["overall"], digits), *cells]) + " |")
    return "\n".join(lines) + f"\n\n{FOOTNOTE}\n"


def classwise_html(summary: dict[str, Any], digits: int = 1) -> str:
    """HTML table 2 (escaped): best class ``<u>``, worst class ``<strong>``, footnote below."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ["Attack", "Total", *summary["class_names"]])
    rows = []
    for name, block in table_rows(summary):
        cells = [_marked(block, i, _fmt(v, digits), "<u>%s</u>", "<strong>%s</strong>")
                 for i, v in enumerate(block["per_class"])]
        tds = "".join(f"<td>{c}</td>" for c in [esc(name), _fmt(block["overall"], digits), *cells])
        rows.append(f"<tr>{tds}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p class=\"note\">{esc(FOOTNOTE)}</p>")


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
    """A plain HTML table of text cells (escaped)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _signed(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:+.{digits}f}"


def difference_rows(summary: dict[str, Any], reference: str) -> list[list[str]]:
    """Per attack, robustness minus ``reference``'s, total then per class (tables 3, 4, 6).

    Negative numbers: the attack is stronger than the reference on that class. Classes
    without examples under either attack stay empty.
    """
    ref = summary["attacks"][reference]
    rows = []
    for name, block in summary["attacks"].items():
        if name == reference:
            continue
        diffs = [None if a is None or r is None else a - r for a, r in zip(block["per_class"], ref["per_class"])]
        total = None if block["overall"] is None else block["overall"] - ref["overall"]
        rows.append([name, _signed(total), *(_signed(d) for d in diffs)])
    return rows


def difference_header(summary: dict[str, Any], reference: str) -> list[str]:
    return [f"Attack - {reference}", "Total", *summary["class_names"]]


def text_csv(header: list[str], rows: list[list[str]]) -> str:
    """CSV of text cells (quoted where needed)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([header, *rows])
    return buf.getvalue()
