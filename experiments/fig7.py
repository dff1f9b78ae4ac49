"""Figure 7 (appendix C): class-wise accuracy of a standard model beside class-wise robustness of a robust one.

The largest class gap of each is hatched and named. Paper: standard and PGD-AT
models of section 3 (``--preset``: mnist, cifar10, cifar100, svhn, stl10). The
same comparison for any two evaluated runs: ``classwise compare STANDARD ROBUST``.
``--quick``: mnist5k, 3 epochs each.

    python experiments/fig7.py --quick
"""

from __future__ import annotations

from _common import copy, ensure_run, out_dir, parser, run_script

from classwise.compare import compare_runs


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "fig7")
    standard, robust = ensure_run(args, "standard"), ensure_run(args, "madry")
    rec = compare_runs(standard, robust, out)
    copy(out / "gap_comparison.png", out / "fig7.png")
    names = rec["class_names"]
    for key, what in (("standard", "standard model, clean accuracy"), ("robust", f"robust model, {rec['attack']}")):
        b = rec[key]
        print(f"{what}: largest gap {b['gap']:.1f} points ({names[b['best']]} - {names[b['worst']]})")


if __name__ == "__main__":
    run_script(main)
