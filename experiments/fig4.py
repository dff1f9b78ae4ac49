"""Figure 4: L2 norm of each class's classifier weight row against its robustness (section 3.2).

Both min-max normalised; Spearman rank correlation over all classes. Paper:
PGD-AT on MNIST, CIFAR-10, CIFAR-100, SVHN, STL-10, ImageNet (``--preset``); with
more than 20 classes the figure shows a seeded sample of 12. ``--quick``: mnist5k.

    python experiments/fig4.py --quick
    python experiments/fig4.py --preset svhn --data-root ~/data
"""

from __future__ import annotations

import numpy as np
from _common import ensure_run, headline, load, out_dir, parser, run_script, write_text

from classwise.analysis import norm_robustness_correlation, weight_norms
from classwise.report import figures
from classwise.report.section import shown_classes
from classwise.fileio import read_json


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out, run = out_dir(args, "fig4"), ensure_run(args)
    summary, (_, _, model, _, _) = read_json(run / "summary.json"), load(run)
    names, head = summary["class_names"], headline(run)
    norms = weight_norms(model.head.weight.detach().cpu().numpy())
    robust = np.array([np.nan if v is None else v for v in summary["attacks"][head]["per_class"]])
    rho, p = norm_robustness_correlation(norms, robust)
    idx = shown_classes(len(names))
    figures.plot_norm_vs_robustness(norms[idx], robust[idx], [names[i] for i in idx], rho, out / "fig4.png")
    rows = [f"{names[i]},{norms[i]:.6g},{robust[i]:.2f}" for i in range(len(names))]
    write_text(out / "fig4.csv", "class,weight_norm,robustness\n" + "\n".join(rows) + "\n")
    print(f"Spearman rho (weight norm vs robustness under {head}) = {rho:.3f} (p = {p:.3g})")


if __name__ == "__main__":
    run_script(main)
