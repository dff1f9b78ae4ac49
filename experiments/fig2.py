"""Figure 2: robustness confusion matrix (rows: true class, columns: prediction under attack, % of row).

Also folded into superclasses where the dataset has them (CIFAR-10 and STL-10:
transportation / animals; CIFAR-100: its 20 coarse labels). Paper: PGD-AT of
section 3, test attack PGD-20 (MNIST: PGD-40). ``--quick``: mnist5k, 3 epochs.

    python experiments/fig2.py --quick
    python experiments/fig2.py --preset stl10 --data-root ~/data
"""

from __future__ import annotations

from _common import copy, ensure_run, headline, out_dir, parser, run_script

from classwise.report.section import slug


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out, run = out_dir(args, "fig2"), ensure_run(args)
    head = headline(run)
    copy(run / "figures" / "confusion.png", out / "fig2.png")
    copy(run / "tables" / f"confusion_{slug(head)}.csv", out / "fig2.csv")
    if (run / "figures" / "superclass_confusion.png").is_file():
        copy(run / "figures" / "superclass_confusion.png", out / "fig2_superclass.png")
        copy(run / "tables" / "superclass_confusion.csv", out / "fig2_superclass.csv")
    rows = (out / "fig2.csv").read_text().splitlines()
    print(f"robustness confusion under {head} (% of row), written to {out}:")
    print("\n".join(rows))


if __name__ == "__main__":
    run_script(main)
