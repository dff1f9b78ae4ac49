"""The measured table of docs/fairness.md, generated from saved (evaluated) runs, never typed by hand.

Each ``--group NAME=RUN,RUN,...`` is one recipe (the first is the baseline), one run
per seed. The table (:func:`classwise.compare.fairness_markdown`) gives per run clean,
average robust accuracy with its 95% interval, worst-class robust accuracy with its
simultaneous 95% interval and NSD, and per group mean +- std over seeds; below it one
verdict per method against the baseline says whether the difference is significant:

* several seeds in both groups: Welch's t-test over seeds at 5% (``classwise.compare.seed_test``);
* one run each: the intervals must be disjoint (a conservative reading: overlapping
  intervals are reported as "not significant at this scale").

The text goes between ``<!-- fairness-table:SECTION:start -->`` and ``...:end -->`` of
the document ``--doc`` names (``--doc`` alone: the source tree's docs/fairness.md);
``--out FILE`` writes the section's text alone; without either it is printed and nothing
is written. ``--check`` only compares with the document and exits 1 on a difference.

    python experiments/fairness_table.py --section cifar10-cpu --caption "..." \\
        --group trades=runs/f/trades-s0 --group dafa=runs/f/dafa-s0 --doc
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from _common import run_script

from classwise.compare import fairness_markdown, fairness_record, parse_groups
from classwise.errors import ClasswiseError
from classwise.fileio import atomic_write

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "fairness.md"  # written only with --doc
ALPHA = 0.05


def verdict(record: dict[str, Any], name: str) -> str:
    """One line: is group ``name`` different from the first group, on average and on worst-class robustness?"""
    s, base = record["groups"][name], next(iter(record["groups"]))
    parts = []
    for key, what in (("robust", "average robust"), ("worst", "worst-class robust")):
        p = s["vs"][f"p_{key}"]
        diff = s[key]["mean"] - record["groups"][base][key]["mean"]
        if p is not None:
            call = "significant" if p < ALPHA else "not significant"
            parts.append(f"{what} {diff:+.1f} points, {call} (Welch over seeds, p = {p:.3f})")
            continue
        a, b = record["runs"][base], record["runs"][name]
        if len(a) == 1 and len(b) == 1:
            lo, hi = ("robust_ci95", None) if key == "robust" else ("worst_low", "worst_high")
            ia = a[0][lo] if hi is None else (a[0][lo], a[0][hi])
            ib = b[0][lo] if hi is None else (b[0][lo], b[0][hi])
            disjoint = bool(ia and ib) and (ia[1] < ib[0] or ib[1] < ia[0])
            call = "significant (intervals disjoint)" if disjoint else "not significant at this scale (intervals overlap)"
            parts.append(f"{what} {diff:+.1f} points, {call}")
        else:
            parts.append(f"{what} {diff:+.1f} points, untested (a group has one seed)")
    return f"- {name} against {base}: " + "; ".join(parts) + "."


def render(record: dict[str, Any], caption: str) -> str:
    lines = [caption, "", fairness_markdown(record).rstrip("\n")]
    others = list(record["groups"])[1:]
    if others:
        lines += ["", *[verdict(record, name) for name in others]]
    return "\n".join(lines) + "\n"


def replace_section(doc: str, section: str, body: str) -> str:
    """``doc`` with the text between the section's markers replaced by ``body``; a missing section is an error."""
    start, end = f"<!-- fairness-table:{section}:start -->", f"<!-- fairness-table:{section}:end -->"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        raise ClasswiseError(f"no {start} ... {end} section in the document")
    return pattern.sub(lambda _: f"{start}\n{body}{end}", doc, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", required=True, help="NAME=RUN,RUN,... (first: baseline)")
    parser.add_argument("--section", required=True, help="the table's section name in the document")
    parser.add_argument("--caption", default="", help="what was measured: data, recipe, machine, attack")
    parser.add_argument("--attack", default=None, help="robustness entry (default: each run's headline worst case)")
    parser.add_argument("--doc", type=Path, nargs="?", const=DOC, default=None,
                        help=f"replace the section in this document (alone: {DOC.relative_to(ROOT)})")
    parser.add_argument("--out", type=Path, default=None, help="write the section's text to this file")
    parser.add_argument("--check", action="store_true",
                        help=f"only compare with --doc (default {DOC.relative_to(ROOT)}); exit 1 if it differs")
    args = parser.parse_args(argv)
    body = render(fairness_record(parse_groups(args.group), args.attack), args.caption)
    if args.out:
        atomic_write(args.out, body)
    if args.doc is None and not args.check:
        print(body, end="")
        return 0
    path = args.doc or DOC
    if not path.is_file():
        raise ClasswiseError(f"no document {path}")
    doc = path.read_text()
    new = replace_section(doc, args.section, body)
    if args.check:
        same = new == doc
        print("up to date" if same else f"{path} differs from the saved runs' table")
        return 0 if same else 1
    atomic_write(path, new)
    print(body, end="")
    return 0


if __name__ == "__main__":
    run_script(main)
