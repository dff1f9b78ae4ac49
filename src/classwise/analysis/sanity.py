"""Sanity checks over per-sample results (AutoAttack's checks, class-wise).

Each check returns :class:`SanityFlag` items, one per class (and "overall")
where something looks wrong, with one line saying what it suggests. They are
pure functions of the evaluation's arrays; :func:`zero_gradient_share` takes
the per-sample zero-gradient flags computed during evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..results import EvalResults

MASKING = "suggests gradient masking: white-box attacks are not finding the worst case"


@dataclass(frozen=True)
class SanityFlag:
    """One failed check: which check, where (a class name or "overall"), what it suggests."""

    check: str
    scope: str
    detail: str
    suggests: str

    def line(self) -> str:
        return f"{self.check} [{self.scope}]: {self.detail}; {self.suggests}"


def _scopes(results: EvalResults) -> list[tuple[str, np.ndarray]]:
    """("overall", all examples) then (class name, its examples) for each class."""
    return [("overall", np.ones_like(results.labels, dtype=bool))] + [
        (name, results.labels == k) for k, name in enumerate(results.class_names)
    ]


def robust_above_clean(results: EvalResults) -> list[SanityFlag]:
    """Examples robust under an attack but misclassified when clean: impossible here, a bug."""
    clean = results.correct()
    flags = []
    for attack in results.attacks:
        bad = results.correct(attack) & ~clean
        for scope, mask in _scopes(results):
            if (bad & mask).any():
                flags.append(SanityFlag("robust-above-clean", scope, f"{attack}: {int((bad & mask).sum())} examples "
                                        "correct under attack but wrong when clean", "suggests a bug in the attack "
                                        "or the evaluation"))
    return flags


def black_box_beats_white_box(results: EvalResults, is_black_box: Callable[[str], bool]) -> list[SanityFlag]:
    """Examples fooled by a black-box attack that survived every white-box attack."""
    white = [a for a in results.attacks if not is_black_box(a)]
    black = [a for a in results.attacks if is_black_box(a)]
    if not white or not black:
        return []
    survives_white = np.all([results.correct(a) for a in white], axis=0)
    white_seen = np.all([results.evaluated(a) for a in white], axis=0)
    flags = []
    for attack in black:
        beaten = survives_white & white_seen & results.evaluated(attack) & ~results.correct(attack)
        for scope, mask in _scopes(results):
            n = int((beaten & mask).sum())
            if n:
                flags.append(SanityFlag("black-box-beats-white-box", scope,
                                        f"{attack} fooled {n} examples that every white-box attack missed", MASKING))
    return flags


def _steps_and_restarts(name: str) -> tuple[str, int, int] | None:
    """("pgd", K, R) for names like "pgd20" or "pgd20-r5"; None for other attacks."""
    match = re.fullmatch(r"(pgd|cw-margin)(\d+)(?:-r(\d+))?", name)
    return None if match is None else (match.group(1), int(match.group(2)), int(match.group(3) or 1))


def more_budget_raises_robustness(results: EvalResults, tolerance: float = 0.0) -> list[SanityFlag]:
    """A PGD run with more steps or restarts leaving MORE examples robust than a weaker one.

    Comparable pairs: same attack family, steps and restarts both >= (one >).
    ``tolerance`` is in percentage points (random starts differ between runs).
    """
    parsed = {a: _steps_and_restarts(a) for a in results.attacks}
    runs = [(a, p) for a, p in parsed.items() if p is not None]
    flags = []
    for weak, (fam_w, k_w, r_w) in runs:
        for strong, (fam_s, k_s, r_s) in runs:
            if fam_w == fam_s and k_s >= k_w and r_s >= r_w and (k_s, r_s) != (k_w, r_w):
                flags += _budget_flags(results, weak, strong, tolerance)
    return flags


def _budget_flags(results: EvalResults, weak: str, strong: str, tolerance: float) -> list[SanityFlag]:
    flags = []
    both = results.evaluated(weak) & results.evaluated(strong)
    for scope, mask in _scopes(results):
        mask = mask & both
        if not mask.any():
            continue
        rw, rs = (100.0 * results.correct(a)[mask].mean() for a in (weak, strong))
        if rs > rw + tolerance:
            flags.append(SanityFlag("more-budget-raises-robustness", scope,
                                    f"{strong} leaves {rs:.1f}% robust, {weak} {rw:.1f}%",
                                    "suggests gradient masking or too large a step size"))
    return flags


SINGLE_STEP = re.compile(r"fgsm(-rs)?")  # single-step attacks (FGSM, FGSM with a random start)


def single_step_far_weaker(results: EvalResults, threshold: float = 15.0) -> list[SanityFlag]:
    """A single-step attack leaving far more examples robust than an iterative one (> threshold points).

    Per class and overall, on the examples both attacks saw: FGSM (or FGSM-RS)
    robustness minus PGD / CW-margin robustness above ``threshold`` percentage
    points is the signature of gradient masking or of catastrophic overfitting
    of single-step adversarial training (the model is robust only to the step
    it was trained against).
    """
    single = [a for a in results.attacks if SINGLE_STEP.fullmatch(a)]
    iterative = [a for a in results.attacks if _steps_and_restarts(a) is not None]
    flags = []
    for one in single:
        for many in iterative:
            both = results.evaluated(one) & results.evaluated(many)
            for scope, mask in _scopes(results):
                flags += _gap_flag(results, one, many, scope, mask & both, threshold)
    return flags


def _gap_flag(results: EvalResults, one: str, many: str, scope: str, mask: np.ndarray,
              threshold: float) -> list[SanityFlag]:
    if not mask.any():
        return []
    r1, rn = (100.0 * results.correct(a)[mask].mean() for a in (one, many))
    if r1 - rn <= threshold:
        return []
    return [SanityFlag("single-step-far-weaker", scope, f"{one} leaves {r1:.1f}% robust, {many} {rn:.1f}% "
                       f"({r1 - rn:.1f} points apart, threshold {threshold:g})",
                       "suggests gradient masking or catastrophic overfitting of single-step training: "
                       "trust the iterative attack, and train with PGD or FGSM-RS with a smaller step")]


def zero_gradient_share(zero_grad: np.ndarray, results: EvalResults, threshold: float = 0.0) -> list[SanityFlag]:
    """Share of clean-correct examples whose input gradient of the loss is exactly zero.

    zero_grad: (N,) bool per example. A share above ``threshold`` (fraction)
    is flagged: attacks that follow the gradient cannot move those examples.
    """
    clean = results.correct()
    flags = []
    for scope, mask in _scopes(results):
        pool = mask & clean
        share = float(zero_grad[pool].mean()) if pool.any() else 0.0
        if share > threshold:
            flags.append(SanityFlag("zero-gradient", scope, f"{100 * share:.1f}% of correctly classified examples "
                                    "have an all-zero input gradient", "suggests gradient masking (saturated softmax "
                                    "or non-differentiable layers): try cw-margin, tpgd or a black-box attack"))
    return flags


def sanity_checks(results: EvalResults, is_black_box: Callable[[str], bool],
                  zero_grad: np.ndarray | None = None) -> tuple[list[str], list[SanityFlag]]:
    """Run every applicable check: (names of checks run, flags raised)."""
    ran: list[str] = ["robust-above-clean"]
    flags = robust_above_clean(results)
    if any(is_black_box(a) for a in results.attacks) and any(not is_black_box(a) for a in results.attacks):
        ran.append("black-box-beats-white-box")
        flags += black_box_beats_white_box(results, is_black_box)
    if sum(_steps_and_restarts(a) is not None for a in results.attacks) >= 2:
        ran.append("more-budget-raises-robustness")
        flags += more_budget_raises_robustness(results)
    if any(SINGLE_STEP.fullmatch(a) for a in results.attacks) and any(
            _steps_and_restarts(a) is not None for a in results.attacks):
        ran.append("single-step-far-weaker")
        flags += single_step_far_weaker(results)
    if zero_grad is not None:
        ran.append("zero-gradient")
        flags += zero_gradient_share(zero_grad, results)
    return ran, flags


def flags_to_json(flags: Sequence[SanityFlag]) -> list[dict[str, str]]:
    return [f.__dict__.copy() for f in flags]
