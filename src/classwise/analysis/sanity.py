"""Sanity checks over per-sample results (AutoAttack's checks, class-wise).

Each check returns :class:`SanityFlag` items, one per class (and "overall")
where something looks wrong, with one line saying what it suggests. They are
pure functions of the evaluation's arrays; :func:`zero_gradient_share` takes
the per-sample zero-gradient flags computed during evaluation.
:func:`sanity_report` runs every check that applies, as ``classwise evaluate``
does, for results of :func:`classwise.evaluate.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..results import EvalResults
from .claims import paired_block
from .classwise import WORST, classwise_accuracy
from .facts import budget, is_single_step, same_threat_model
from .stats import weak_hurt_more
from .summary import protocol_attack

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
    white = [a for a in results.attacks if not is_black_box(a) and a != WORST]  # "worst" holds black boxes too
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


def more_budget_raises_robustness(results: EvalResults, tolerance: float = 0.0) -> list[SanityFlag]:
    """A PGD run with more steps or restarts leaving MORE examples robust than a weaker one.

    Comparable pairs: the same recorded family, norm, eps, loss, temperature
    and target (:func:`classwise.analysis.facts.budget`), steps and restarts
    both >= (one >). ``tolerance`` is in percentage points (random starts
    differ between runs).
    """
    runs = [(a, b) for a in results.attacks if (b := budget(results, a)) is not None]
    flags = []
    for weak, (same_w, k_w, r_w) in runs:
        for strong, (same_s, k_s, r_s) in runs:
            if same_w == same_s and k_s >= k_w and r_s >= r_w and (k_s, r_s) != (k_w, r_w):
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



def single_step_far_weaker(results: EvalResults, threshold: float = 15.0, alpha: float = 0.05) -> list[SanityFlag]:
    """A single-step attack leaving far more examples robust than an iterative one: gap and paired test.

    Per class and overall, on the examples both attacks saw and for attacks of
    one threat model only (same norm and eps): FGSM (or FGSM-RS) robustness
    minus PGD / CW-margin robustness above ``threshold`` percentage points is
    the signature of gradient masking or of catastrophic overfitting of
    single-step adversarial training (the model is robust only to the step it
    was trained against). A gap is flagged only when the paired test agrees:
    exact McNemar on the examples one attack left robust and the other did
    not, p < ``alpha`` (Holm-adjusted over the classes for the class scopes,
    :func:`~.claims.paired_block`), so a few images of a small class cannot
    raise the flag by chance.
    """
    single = [a for a in results.attacks if is_single_step(results, a)]
    iterative = [a for a in results.attacks if budget(results, a) is not None]
    flags = []
    for one in single:
        for many in (m for m in iterative if same_threat_model(results, one, m)):
            flags += _gap_flags(results, one, many, threshold, alpha)
    return flags


def _gap_flags(results: EvalResults, one: str, many: str, threshold: float, alpha: float) -> list[SanityFlag]:
    """The scopes ("overall", then each class) where ``one`` beats ``many`` by > threshold points, significantly."""
    both = results.evaluated(one) & results.evaluated(many)
    block = paired_block(results, many, one, alpha)  # exact McNemar on the examples both saw
    tests = [block["overall"]["p"], *block["p_holm"]]
    flags = []
    for (scope, mask), p in zip(_scopes(results), tests):
        mask = mask & both
        if not mask.any() or p is None:
            continue
        r1, rn = (100.0 * results.correct(a)[mask].mean() for a in (one, many))
        if r1 - rn > threshold and p < alpha:
            flags.append(SanityFlag("single-step-far-weaker", scope, f"{one} leaves {r1:.1f}% robust, {many} "
                                    f"{rn:.1f}% ({r1 - rn:.1f} points apart, threshold {threshold:g}; exact McNemar "
                                    f"p = {p:.2g})", "suggests gradient masking or catastrophic overfitting of "
                                    "single-step training: trust the iterative attack, and train with PGD or FGSM-RS "
                                    "with a smaller step"))
    return flags


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


def clean_predictions_collapse(results: EvalResults, share: float = 0.9) -> list[SanityFlag]:
    """One class receiving at least ``share`` of the clean predictions while it holds less than
    half of the labels: a collapsed (diverged or untrained) model, whose robustness means nothing."""
    n, k = len(results.labels), max(results.num_classes, 1)
    if n == 0:
        return []
    counts = np.bincount(results.clean_pred, minlength=k)
    top = int(counts.argmax())
    got, true = counts[top] / n, float((results.labels == top).mean())
    if got < share or true >= 0.5:
        return []
    name = results.class_names[top] if top < len(results.class_names) else str(top)
    return [SanityFlag("clean-collapse", "overall", f"{100 * got:.1f}% of clean predictions are class {name} "
                       f"(its share of the labels: {100 * true:.1f}%)", "suggests a collapsed model (diverged or "
                       "untrained): its robustness numbers are not meaningful")]


OVERSTATED = "headline-overstated"
MAX_LISTED = 10  # classes named in one flag line, then "and N more"


def headline_overstated(results: EvalResults, reference: str | None = None,
                        alpha: float = 0.05) -> list[SanityFlag]:
    """Attacks that beat the protocol attack by more than noise allows, overall or on a class.

    ``reference`` (default :func:`~classwise.analysis.summary.protocol_attack`,
    the paper's protocol PGD, which a report would otherwise headline) is
    compared with every other attack on the examples both saw, paired per
    example: exact McNemar, overall at ``alpha`` and per class with Holm's
    correction over the classes (:func:`~classwise.analysis.claims.paired_block`),
    so independent random starts of equally strong attacks stay quiet. The
    overall flag says by how much, which classes change rank and, per class
    (weakest under ``reference`` first), how much robustness each loses with
    the Spearman rho of robustness against that loss (paper section 3.3:
    stronger attacks hurt the weak classes most when rho < 0).
    """
    ref = reference or protocol_attack(results.attacks, results.facts)
    if ref is None or ref == WORST:
        return []
    flags = []
    for attack in results.attacks:
        if attack not in (ref, WORST):
            flags += _overstated_by(results, ref, attack, alpha)
    return flags


def _overstated_by(results: EvalResults, ref: str, attack: str, alpha: float) -> list[SanityFlag]:
    block = paired_block(results, ref, attack, alpha)
    flags = []
    overall = block["overall"]
    if overall["diff"] is not None and overall["diff"] < 0 and overall["p"] < alpha:
        flags.append(SanityFlag(OVERSTATED, "overall", _overall_detail(results, ref, attack, block), _advice(ref)))
    for k, name in enumerate(results.class_names):
        if block["significant"][k] and block["diff"][k] < 0:
            ra, rr = _pair_robust(results, ref, attack, results.labels == k)
            flags.append(SanityFlag(OVERSTATED, name, f"{attack} leaves {ra:.1f}% robust where {ref} leaves "
                                    f"{rr:.1f}% on the same {block['n'][k]} examples ({block['diff'][k]:+.1f} "
                                    f"points, Holm-adjusted McNemar p={block['p_holm'][k]:.2g})", _advice(ref)))
    return flags


def _advice(ref: str) -> str:
    return (f"suggests {ref} overstates robustness: quote the worst case over the suite "
            "(the summary's headline), not the single attack")


def _pair_robust(results: EvalResults, ref: str, attack: str, mask: np.ndarray) -> tuple[float, float]:
    """Robustness (percent) under ``attack`` and ``ref`` on the examples of ``mask`` both saw."""
    m = mask & results.evaluated(ref) & results.evaluated(attack)
    return 100.0 * results.correct(attack)[m].mean(), 100.0 * results.correct(ref)[m].mean()


def _overall_detail(results: EvalResults, ref: str, attack: str, block: dict) -> str:
    ra, rr = _pair_robust(results, ref, attack, np.ones_like(results.labels, dtype=bool))
    n = sum(block["n"])
    return (f"{attack} leaves {ra:.1f}% robust where {ref} leaves {rr:.1f}% on the same {n} examples "
            f"({block['overall']['diff']:+.1f} points, exact McNemar p={block['overall']['p']:.2g}); "
            + "; ".join(_class_effects(results, ref, attack)))


def class_drops(results: EvalResults, ref: str, attack: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-class robustness (percent, (K,)) under ``ref`` and ``attack`` on the examples both saw."""
    m = results.evaluated(ref) & results.evaluated(attack)
    k = len(results.class_names)
    return (classwise_accuracy(results.labels[m], results.adv_pred[ref][m], k),
            classwise_accuracy(results.labels[m], results.adv_pred[attack][m], k))


def rank_changes(before: np.ndarray, after: np.ndarray) -> list[tuple[int, int, int]]:
    """(class, rank before, rank after) for classes whose rank changes; rank 1 = least robust.

    before, after: (K,) percent (NaN: no examples, ranked last). Ties share the lowest rank.
    """
    from scipy.stats import rankdata

    rb = rankdata(np.nan_to_num(before, nan=np.inf), method="min").astype(int)
    ra = rankdata(np.nan_to_num(after, nan=np.inf), method="min").astype(int)
    return [(k, int(rb[k]), int(ra[k])) for k in range(len(before)) if rb[k] != ra[k]]


def _listed(items: list[str]) -> str:
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def _class_effects(results: EvalResults, ref: str, attack: str) -> list[str]:
    """Rank changes, per-class losses weakest first, and the weak-hurt-more rho, as phrases."""
    names = results.class_names
    before, after = class_drops(results, ref, attack)
    moved = rank_changes(before, after)
    ranks = _listed([f"{names[k]} {b}->{a}" for k, b, a in moved]) if moved else "none"
    order = [k for k in np.argsort(np.nan_to_num(before, nan=np.inf), kind="stable") if not np.isnan(before[k])]
    losses = _listed([f"{names[k]} {after[k] - before[k]:+.1f}" for k in order])
    corr = weak_hurt_more(before, after)
    rho = "n/a" if np.isnan(corr.rho) else f"{corr.rho:+.2f} (p={corr.p:.2g})"
    return [f"classes changing rank (1 = least robust): {ranks}",
            f"per class, weakest under {ref} first: {losses} points",
            f"Spearman rho of robustness under {ref} and its loss: {rho} (negative: the weak classes lose most)"]


def sanity_checks(results: EvalResults, is_black_box: Callable[[str], bool],
                  zero_grad: np.ndarray | None = None) -> tuple[list[str], list[SanityFlag]]:
    """Run every applicable check: (names of checks run, flags raised)."""
    ran: list[str] = ["robust-above-clean", "clean-collapse"]
    flags = robust_above_clean(results) + clean_predictions_collapse(results)
    if any(is_black_box(a) for a in results.attacks) and any(not is_black_box(a) for a in results.attacks):
        ran.append("black-box-beats-white-box")
        flags += black_box_beats_white_box(results, is_black_box)
    if sum(budget(results, a) is not None for a in results.attacks) >= 2:
        ran.append("more-budget-raises-robustness")
        flags += more_budget_raises_robustness(results)
    if any(is_single_step(results, a) for a in results.attacks) and any(
            budget(results, a) is not None for a in results.attacks):
        ran.append("single-step-far-weaker")
        flags += single_step_far_weaker(results)
    if zero_grad is not None:
        ran.append("zero-gradient")
        flags += zero_gradient_share(zero_grad, results)
    attacked = [a for a in results.attacks if a != WORST]
    if protocol_attack(results.attacks, results.facts) not in (None, WORST) and len(attacked) >= 2:
        ran.append(OVERSTATED)
        flags += headline_overstated(results)
    return ran, flags


@dataclass(frozen=True)
class SanityReport:
    """The checks that ran and the flags they raised; ``str()`` gives one line each."""

    checks: tuple[str, ...]
    flags: tuple[SanityFlag, ...]

    @property
    def ok(self) -> bool:
        return not self.flags

    def lines(self) -> list[str]:
        return [f.line() for f in self.flags]

    def to_json(self) -> dict[str, list]:
        return {"checks": list(self.checks), "flags": flags_to_json(self.flags)}

    def __str__(self) -> str:
        head = f"sanity checks run: {', '.join(self.checks)}; flags: {len(self.flags)}"
        return "\n".join([head, *self.lines()])


def recorded_black_box(results: EvalResults) -> Callable[[str], bool]:
    """Whether an attack of ``results`` is black-box, by its recorded facts (worst cases: white-box)."""
    return lambda name: bool(results.facts.get(name, {}).get("black_box"))


def sanity_report(results: EvalResults, *, zero_grad: np.ndarray | None = None,
                  is_black_box: Callable[[str], bool] | None = None) -> SanityReport:
    """Every sanity check that applies to ``results``, as ``classwise evaluate`` runs them.

    results: per-sample results, e.g. of :func:`classwise.evaluate.evaluate`.
    zero_grad: (N,) bool, default ``results.extras["zero_grad"]`` (evaluate()
    records it). is_black_box: default, the attacks' recorded facts
    (``results.facts[name]["black_box"]``; attacks without facts count as white-box).
    Checks: robust above clean, black box beating white box, more budget
    raising robustness, single-step far weaker, zero gradients and the
    headline overstated by the protocol attack (:func:`headline_overstated`).
    """
    zero_grad = results.extras.get("zero_grad") if zero_grad is None else zero_grad
    ran, flags = sanity_checks(results, is_black_box or recorded_black_box(results), zero_grad)
    return SanityReport(tuple(ran), tuple(flags))


def flags_to_json(flags: Sequence[SanityFlag]) -> list[dict[str, str]]:
    return [f.__dict__.copy() for f in flags]
