"""Table 3: relative robustness (percentage points) of Temperature-PGD-20 against vanilla PGD-20.

One 1/T per defence as in the paper: Madry 2, TRADES 5, MART 5 (RST left out,
see table2.py). Total column: change (robustness under Temperature-PGD).
Paper: CIFAR-10, eps 0.031, step 0.003. ``--quick``: mnist5k, eps 0.3, step 0.03.

    python experiments/table3.py --quick
"""

from __future__ import annotations

from _common import csv_table, markdown_table, out_dir, parser, run_script, signed, temperature_sweep_of, write_text

from classwise.analysis import overall_accuracy
from classwise.analysis import relative_robustness
from classwise.attacks import tpgd_name

SETTINGS = {"madry": ("Madry", 2.0), "trades": ("TRADES", 5.0), "mart": ("MART", 5.0)}


def row(args, defence: str) -> list[str]:
    label, inv_t = SETTINGS[defence]
    res, _ = temperature_sweep_of(args, defence, (inv_t,))
    delta = relative_robustness(res)[tpgd_name(inv_t)]
    total = overall_accuracy(res.labels, res.adv_pred[tpgd_name(inv_t)])
    return [label, f"{inv_t:g}", f"{signed(delta[0])}({total:.1f})", *map(signed, delta[1:])], res.class_names


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "table3")
    rows, names = zip(*(row(args, d) for d in SETTINGS))
    header = ["Defense", "1/T", "Tot.", *names[0]]
    write_text(out / "table3.csv", csv_table(header, list(rows)))
    print(write_text(out / "table3.md", markdown_table(header, list(rows))).read_text())


if __name__ == "__main__":
    run_script(main)
