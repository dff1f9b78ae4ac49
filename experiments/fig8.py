"""Figure 8 (appendix D): t-SNE of penultimate features of natural and adversarial test images.

Features: ``model.features`` (input of the classifier head) of the PGD-AT
model; adversarial images from its headline attack (PGD-20), every sampled
image attacked. Paper: CIFAR-10 (transportation vs animals separate, animals
mixed). A class-balanced sample of ``--per-class`` images (default 100; quick 30).

    python experiments/fig8.py --quick
"""

from __future__ import annotations

import numpy as np
from _common import ensure_run, headline_attack_config, load, out_dir, parser, run_script, write_text

from classwise.analysis import tsne_2d
from classwise.data import class_balanced_indices
from classwise.attacks import build_attack
from classwise.probes import adversarial_images, penultimate_features
from classwise.report import figures


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=None, help="test images per class (default 100; quick 30)")
    args = p.parse_args()
    out, run = out_dir(args, "fig8"), ensure_run(args)
    config, data, model, x, y = load(run)
    idx = class_balanced_indices(y, args.per_class or (30 if args.quick else 100), seed=config.seed)
    x, y = x[idx], y[idx]
    x_adv = adversarial_images(build_attack(headline_attack_config(run), model), x, y, seed=config.seed)
    natural = tsne_2d(penultimate_features(model, x), seed=config.seed)
    adversarial = tsne_2d(penultimate_features(model, x_adv), seed=config.seed)
    figures.plot_tsne(natural, adversarial, y.numpy(), data.class_names, out / "fig8.png")
    rows = np.column_stack([y.numpy(), natural, adversarial])
    write_text(out / "fig8.csv", "label,natural_x,natural_y,adversarial_x,adversarial_y\n"
               + "\n".join(",".join(f"{v:.5g}" for v in r) for r in rows) + "\n")
    print(f"t-SNE of {len(y)} natural and adversarial test images: {out / 'fig8.png'}")


if __name__ == "__main__":
    run_script(main)
