"""Figure 1: class-wise robustness on the test set at every epoch of adversarial training.

Paper: PGD-AT of section 3 on MNIST, CIFAR-10, CIFAR-100, SVHN, STL-10 (and
ImageNet); one dataset per call (``--preset cifar10``, ``mnist``, ``cifar100``,
``svhn``, ``stl10``, ``imagenet``). With more than 20 classes the figure shows a
seeded sample of 12 classes, as the paper does. ``--quick``: mnist5k, 3 epochs.

    python experiments/fig1.py --quick
    python experiments/fig1.py --preset cifar100 --data-root ~/data
"""

from __future__ import annotations

from _common import copy, ensure_run, out_dir, parser, per_class_line, run_script, write_text

from classwise.fileio import read_json, read_jsonl


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out, run = out_dir(args, "fig1"), ensure_run(args)
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("robust")]
    names = read_json(run / "summary.json")["class_names"]
    lines = ["epoch,overall," + ",".join(names)]
    lines += [f"{r['epoch']},{r['robust']['overall']}," + ",".join(str(v) for v in r["robust"]["per_class"])
              for r in rows]
    write_text(out / "fig1.csv", "\n".join(lines) + "\n")
    copy(run / "figures" / "epochs.png", out / "fig1.png")
    last = rows[-1]["robust"]
    print(f"epoch {rows[-1]['epoch']} ({rows[-1]['monitor']}): overall {last['overall']:.1f}%, "
          f"largest gap {last['gap']:.1f} points")
    print(per_class_line(names, last["per_class"]))


if __name__ == "__main__":
    run_script(main)
