"""Table 6 (appendix G): total robustness of Madry, HE, HE-LIS, HE-CMP under Temperature-PGD-20 per 1/T.

1/T in {1, 5, 10, 50, 75, 100, 125, 150, 200, 300} (1 = vanilla PGD-20) on the
paper's axis: its HE code attacks cos theta / T, classwise attacks s cos theta / T',
so an HE model is attacked at 1/T' = (1/T) / s (docs/training.md); the table
gives each row's s and hence both axes. Paper: CIFAR-10, eps 0.031, step 0.003.
``--quick``: mnist5k, 3 epochs per model, eps 0.3, step 0.03.

    python experiments/table6.py --quick
"""

from __future__ import annotations

from _common import csv_table, markdown_table, out_dir, parser, run_script, temperature_sweep_of, write_text

from classwise.analysis import overall_accuracy
from classwise.attacks.tpgd import tpgd_name

DEFENCES = {"madry": "Madry", "he": "HE", "he-lis": "Ours(HE-LIS)", "he-cmp": "Ours(HE-CMP)"}
INV_TEMPS = (1.0, 5.0, 10.0, 50.0, 75.0, 100.0, 125.0, 150.0, 200.0, 300.0)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "table6")
    rows = []
    for d, label in DEFENCES.items():
        res, s = temperature_sweep_of(args, d, INV_TEMPS, paper_axis=True)
        rows.append([label, f"{s:g}",
                     *(f"{overall_accuracy(res.labels, res.adv_pred[tpgd_name(t / s)]):.1f}" for t in INV_TEMPS)])
    header = ["Defense", "s (classwise 1/T' = 1/T / s)", *(f"1/T={t:g}" for t in INV_TEMPS)]
    write_text(out / "table6.csv", csv_table(header, rows))
    print(write_text(out / "table6.md", markdown_table(header, rows)).read_text())


if __name__ == "__main__":
    run_script(main)
