"""Table 5 (appendix G): Madry, HE, HE-LIS and HE-CMP under vanilla PGD-20.

Natural and adversarial accuracy; per class, Madry's robustness and the change
of each HE variant against it (percentage points). The paper's HE code runs
PGD-20 on cos theta (without the scale s), classwise's models output s cos theta
(docs/training.md): the per-class cells and "Adv." use the paper's convention
(Temperature-PGD-20 at 1/T' = 1/s on an HE model, plain PGD-20 on Madry), "Adv.
(s cos)" the attack on the model's own logits, and "s" gives the scale.
Paper: CIFAR-10, ResNet-18, PGD-20 (eps 0.031, step 0.003 as in table 2).
``--quick``: mnist5k, 3 epochs per model, PGD-20 at eps 0.3.

    python experiments/table5.py --quick
"""

from __future__ import annotations

from _common import csv_table, markdown_table, out_dir, parser, run_script, signed, temperature_sweep_of, write_text

from classwise.analysis import classwise_accuracy, overall_accuracy
from classwise.attacks.tpgd import tpgd_name

DEFENCES = {"madry": "Madry", "he": "HE", "he-lis": "Ours(HE-LIS)", "he-cmp": "Ours(HE-CMP)"}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "table5")
    rows, base, names = [], None, []
    for d, label in DEFENCES.items():
        res, s = temperature_sweep_of(args, d, (1.0,), paper_axis=True)
        paper = res.adv_pred[tpgd_name(1 / s)]  # the sweep names 1/T' = 1 too (vanilla PGD-20)
        per_class = classwise_accuracy(res.labels, paper, res.num_classes)
        base = per_class if base is None else base
        names = res.class_names
        cells = [f"{v:.1f}" if d == "madry" else signed(v - b) for v, b in zip(per_class, base)]
        rows.append([label, f"{s:g}", f"{overall_accuracy(res.labels, res.clean_pred):.1f}",
                     f"{overall_accuracy(res.labels, paper):.1f}",
                     f"{overall_accuracy(res.labels, res.adv_pred['pgd20']):.1f}", *cells])
    header = ["Defense", "s", "Nat.", "Adv.", "Adv. (s cos)", *names]
    write_text(out / "table5.csv", csv_table(header, rows))
    print(write_text(out / "table5.md", markdown_table(header, rows)).read_text())


if __name__ == "__main__":
    run_script(main)
