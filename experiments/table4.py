"""Table 4 (appendix F): relative robustness of Temperature-PGD-20 against PGD-20 for 1/T in {2, 3, 4, 7, 10}.

Per defence (Madry, TRADES, MART; RST left out) and 1/T: the change of total
and per-class robustness in percentage points. Paper: CIFAR-10, eps 0.031, step
0.003. ``--quick``: mnist5k, eps 0.3, step 0.03. ``--inv-temps`` changes the sweep.

    python experiments/table4.py --quick
"""

from __future__ import annotations

from _common import csv_table, markdown_table, out_dir, parser, run_script, temperature_sweep_of, write_text

from classwise.analysis import relative_robustness
from classwise.attacks import tpgd_name

DEFENCES = {"madry": "Madry", "trades": "TRADES", "mart": "MART"}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--inv-temps", default="2,3,4,7,10", help="comma-separated 1/T values")
    args = p.parse_args()
    out = out_dir(args, "table4")
    inv_temps = tuple(float(v) for v in args.inv_temps.split(","))
    rows, names = [], []
    for d, label in DEFENCES.items():
        res, _ = temperature_sweep_of(args, d, inv_temps)
        rel, names = relative_robustness(res), res.class_names
        rows += [[f"{label}(1/T = {t:g})", *(f"{v:+.2f}" for v in rel[tpgd_name(t)])] for t in inv_temps]
    header = ["Defense", "Tot.", *names]
    write_text(out / "table4.csv", csv_table(header, rows))
    print(write_text(out / "table4.md", markdown_table(header, rows)).read_text())


if __name__ == "__main__":
    run_script(main)
