"""Table 5 (appendix G): Madry, HE, HE-LIS and HE-CMP under vanilla PGD-20.

Natural and adversarial accuracy; per class, Madry's robustness and the change
of each HE variant against it (percentage points). Paper: CIFAR-10, ResNet-18,
PGD-20 (eps 0.031, step 0.007 as in the presets). ``--quick``: mnist5k, 3 epochs
per model, PGD-20 at eps 0.3.

    python experiments/table5.py --quick
"""

from __future__ import annotations

from _common import csv_table, ensure_run, headline, markdown_table, out_dir, parser, signed, write_text

from classwise.fileio import read_json

DEFENCES = {"madry": "Madry", "he": "HE", "he-lis": "Ours(HE-LIS)", "he-cmp": "Ours(HE-CMP)"}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "table5")
    summaries = {d: read_json(ensure_run(args, d) / "summary.json") for d in DEFENCES}
    heads = {d: headline(ensure_run(args, d)) for d in DEFENCES}
    base = summaries["madry"]["attacks"][heads["madry"]]["per_class"]
    rows = []
    for d, label in DEFENCES.items():
        s, adv = summaries[d], summaries[d]["attacks"][heads[d]]
        cells = [f"{v:.1f}" if d == "madry" else signed(v - b) for v, b in zip(adv["per_class"], base)]
        rows.append([label, f"{s['clean']['overall']:.1f}", f"{adv['overall']:.1f}", *cells])
    header = ["Defense", "Nat.", "Adv.", *summaries["madry"]["class_names"]]
    write_text(out / "table5.csv", csv_table(header, rows))
    print(write_text(out / "table5.md", markdown_table(header, rows)).read_text())


if __name__ == "__main__":
    main()
