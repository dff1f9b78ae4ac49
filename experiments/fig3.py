"""Figure 3: misclassified confusion matrix and homing confusion matrix (section 3.1).

For each confound class j the PGD-AT model is retrained without the training
images of class j (it keeps all K outputs; class j just has no examples) and the
test images the original model flipped into j are attacked again; H[i, j] counts
those of class i that are now robust. Paper: CIFAR-10, every class removed
(10 retrains of 100 epochs; ``--jobs N`` runs N at once). ``--quick``: mnist5k,
3 epochs, only the 2 classes that receive the most flips (unless ``--classes``).

    python experiments/fig3.py --quick
    python experiments/fig3.py --data-root ~/data --jobs 2
"""

from __future__ import annotations

import numpy as np
from _common import copy, ensure_run, headline, out_dir, parser, run_script

from classwise.analysis import misclassified_confusion
from classwise.homing import homing_run
from classwise.results import EvalResults


def _top_confounds(run, n: int = 2) -> list[int]:
    """The n classes that receive the most flips under the headline attack."""
    res = EvalResults.load(run / "results.npz")
    flips = misclassified_confusion(res.labels, res.adv_pred[headline(run)], res.num_classes).sum(axis=0)
    return sorted(int(j) for j in np.argsort(-flips, kind="stable")[:n])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--classes", default=None, help="confound classes to remove, e.g. 3,5 (default: all; quick: top 2)")
    p.add_argument("--jobs", type=int, default=1, help="retrains in parallel processes")
    args = p.parse_args()
    out, run = out_dir(args, "fig3"), ensure_run(args)
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    classes = classes or (_top_confounds(run) if args.quick else None)
    record = homing_run(run, classes=classes, jobs=args.jobs)
    copy(run / "figures" / "homing.png", out / "fig3.png")
    copy(run / "homing" / "homing.json", out / "fig3.json")
    copy(run / "homing" / "homing.csv", out / "fig3_homing.csv")
    copy(run / "homing" / "misclassified.csv", out / "fig3_misclassified.csv")
    names = record["class_names"]
    for item in record["per_removed"]:
        print(f"removed {names[item['class']]}: {item['homed']} of {item['flipped']} flipped examples home")
    print(f"overall: {record['homed']} of {record['flipped']} home ({100 * (record['share'] or 0):.1f}%)")


if __name__ == "__main__":
    run_script(main)
