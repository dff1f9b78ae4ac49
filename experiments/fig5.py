"""Figure 5: class-wise variance of the predicted probabilities, and one image's probabilities during PGD.

(a) Madry, TRADES, MART: per class, the mean over its test images of the
variance of the (clean) predicted probability vector. (b-d) one image of class 3
at PGD steps 1, 10, 20 for Madry and MART. (e) the same as (a) for HE, HE-LIS,
HE-CMP; (f-h) one image of class 3 under PGD with 1/T = 1 and Temperature-PGD
with 1/T = 10 on HE (probabilities as the attack sees them, softmax(logits / T)).
Paper: CIFAR-10, ResNet-18, PGD-20 (eps 0.031). ``--quick``: mnist5k, 3 epochs
per model (6 models; ``--part a`` or ``--part e`` trains only 3).

    python experiments/fig5.py --quick --part a
"""

from __future__ import annotations

import numpy as np
import torch
from _common import ensure_run, headline_attack_config, load, out_dir, parser, run_script, write_text

from classwise.analysis import classwise_probability_variance
from classwise.attacks import create_attack
from classwise.attacks import build_attack
from classwise.errors import ClasswiseError
from classwise.probes import probability_trajectory
from classwise.report import figures
from classwise.results import EvalResults

PARTS = {"a": ("madry", "trades", "mart"), "e": ("he", "he-lis", "he-cmp")}
STEPS = (1, 10, 20)


def variance_panel(runs: dict, out, name: str) -> None:
    """(a) / (e): per class mean variance of the clean predicted probabilities, one bar per model."""
    results = {d: EvalResults.load(r / "results.npz") for d, r in runs.items()}
    names = next(iter(results.values())).class_names
    per_model = {d: classwise_probability_variance(r.labels, r.clean_probs, r.num_classes) for d, r in results.items()}
    figures.plot_probability_variance(per_model, names, out / f"{name}.png", title="clean test images")
    lines = ["model," + ",".join(names)]
    lines += [f"{d}," + ",".join(f"{v:.5g}" for v in vals) for d, vals in per_model.items()]
    write_text(out / f"{name}.csv", "\n".join(lines) + "\n")
    for d, vals in per_model.items():
        print(f"{name} {d}: mean variance {np.nanmean(vals):.4f}, lowest class {names[int(np.nanargmin(vals))]}")


def pick_image(loaded: list, image_class: int) -> int:
    """Index (in the evaluation set) of the first image of ``image_class`` every model gets right clean."""
    _, _, _, x, y = loaded[0]
    ok = (y == image_class).clone()
    for _, _, model, *_ in loaded:
        with torch.no_grad():
            ok &= model(x.float().div(255)).argmax(1).cpu() == y
    if not ok.any():
        raise ClasswiseError(f"no image of class {image_class} is classified correctly by every model "
                             "(--image-class picks another class)")
    return int(torch.nonzero(ok)[0])


def trajectory_panel(run, loaded, idx: int, attack, out, name: str, attack_view: bool = False) -> None:
    """(b-d) / (f-h): probabilities of image ``idx`` after PGD steps 1, 10, 20."""
    _, data, _, x, y = loaded
    probs = probability_trajectory(loaded[2], x[idx : idx + 1], y[idx : idx + 1], attack, STEPS,
                                   torch.Generator(x.device).manual_seed(0), attack_view=attack_view)[:, 0]
    figures.plot_probability_trajectory(probs, list(STEPS), data.class_names, int(y[idx]), out / f"{name}.png",
                                        title=f"{run.name}, image {idx} (class {data.class_names[int(y[idx])]})")
    print(f"{name}: p(true class) at steps {STEPS}: " + ", ".join(f"{p:.3f}" for p in probs[:, int(y[idx])]))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=["a", "e", "all"], default="all")
    p.add_argument("--image-class", type=int, default=3, help="class of the image followed in (b-d), (f-h)")
    args = p.parse_args()
    out = out_dir(args, "fig5")
    for part in ("a", "e") if args.part == "all" else (args.part,):
        runs = {d: ensure_run(args, d) for d in PARTS[part]}
        variance_panel(runs, out, f"fig5{part}")
        shown = ("madry", "mart") if part == "a" else ("he",)
        loaded = {d: load(runs[d]) for d in shown}
        idx = pick_image(list(loaded.values()), args.image_class)
        for d in shown:
            spec, model = headline_attack_config(runs[d]), loaded[d][2]
            trajectory_panel(runs[d], loaded[d], idx, build_attack(spec, model), out, f"fig5_{part}_{d}_T1")
        if part == "e":
            spec, model = headline_attack_config(runs["he"]), loaded["he"][2]
            tpgd = create_attack("tpgd:10", model, spec.eps, step_size=spec.step_size)
            trajectory_panel(runs["he"], loaded["he"], idx, tpgd, out, "fig5_e_he_T10", attack_view=True)


if __name__ == "__main__":
    run_script(main)
