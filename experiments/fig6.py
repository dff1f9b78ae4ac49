"""Figure 6 (appendix A): number of classes per 10% robustness interval.

Paper: CIFAR-100 (epoch-75 PGD-AT ResNet-18) and ImageNet (``--preset imagenet``).
``--quick``: mnist5k, 3 epochs (10 classes).

    python experiments/fig6.py --quick
    python experiments/fig6.py --data-root ~/data          # cifar100
"""

from __future__ import annotations

import numpy as np
from _common import ensure_run, headline, out_dir, parser, run_script, write_text

from classwise.analysis import INTERVAL_LABELS, robustness_intervals
from classwise.report import figures
from classwise.fileio import read_json


def main() -> None:
    args = parser(__doc__.splitlines()[0], preset="cifar100").parse_args()
    out, run = out_dir(args, "fig6"), ensure_run(args)
    head = headline(run)
    per_class = read_json(run / "summary.json")["attacks"][head]["per_class"]
    counts = robustness_intervals(np.array([np.nan if v is None else v for v in per_class]))
    figures.plot_robustness_intervals(counts, list(INTERVAL_LABELS), out / "fig6.png", title=f"{head}")
    write_text(out / "fig6.csv", "interval,classes\n" + "".join(f"{a},{c}\n" for a, c in zip(INTERVAL_LABELS, counts)))
    print(f"classes per robustness interval under {head}: " +
          ", ".join(f"{a}: {c}" for a, c in zip(INTERVAL_LABELS, counts)))


if __name__ == "__main__":
    run_script(main)
