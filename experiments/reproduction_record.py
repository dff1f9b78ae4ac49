"""docs/reproduction.md from the saved records: the paper's numbers beside ours, a verdict per claim.

Reads what ``experiments/reproduce.py`` copied into ``docs/reproduction/<preset>/``
(the runs' summary.json, metrics.jsonl, meta.json and the record's attack blocks)
and writes the Markdown record. Nothing in it is typed by hand except the
paper's own numbers (:data:`PAPER`, with the table or figure they come from) and
the rules that turn a measurement into a verdict (stated next to each verdict).
A preset without a record renders as "not yet run", with the command that makes it.

    python experiments/reproduction_record.py --doc      # write docs/reproduction.md
    python experiments/reproduction_record.py --check    # exit 1 if the file is not what the records give
    python experiments/reproduction_record.py --records RUNS/records --out record.md   # e.g. reproduce.py --quick's

Without ``--doc`` or ``--out`` the document is printed, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _common import run_script

from classwise.analysis.claims import superclass_of as class_superclasses
from classwise.analysis.verdicts import (
    HypothesisTest,
    drop_scale_test,
    equivalence_bound,
    extreme_vs_runner_up,
    gap_difference_test,
    heterogeneity_test,
    paired_equivalence,
    permutation_spearman,
    quasi_independence_null,
    symmetry_test,
    target_test,
)
from classwise.errors import ClasswiseError

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reproduction.md"  # written only with --doc

# The paper's numbers ("Intriguing class-wise properties of adversarial training", ICLR 2021 submission).
PAPER: dict[str, dict[str, Any]] = {
    "mnist": {
        "setting": "SmallCNN, PGD-40 training for 100 epochs, epoch-75 model, PGD-40 test (eps 0.3, step 0.01)",
        "fig1": "more than 95% overall robustness; largest class gap 6 points (figure 1a)",
        "fig1_gap": (6.0, 6.0), "fig1_overall": 95.0,
        "fig2": "flips between similar digits; matrix roughly symmetric (figure 2a)",
        "fig7": "class gaps larger in the robust model than in the standard model (appendix C; figure 7a gives no number)",
    },
    "cifar10": {
        "setting": "ResNet-18, PGD-10 training for 100 epochs, epoch-75 model, PGD-20 test (eps 0.031, step 0.007)",
        "fig1": "largest class gaps of 40-50 points (figure 1b)",
        "fig1_gap": (40.0, 50.0),
        "fig2": "cat and dog flip to each other most; few flips between superclasses (figure 2b)",
        "fig7": "largest gap 10.7 points standard (automobile - cat), 52.8 points robust (automobile - cat)",
        "fig7_gaps": (10.7, 52.8),
        # Table 2, Madry (WideResNet-32-10) rows: total, then classes 0-9.
        "table2": {
            "FGSM": [65.5, 73.7, 81.2, 51.9, 41.5, 54.2, 49.4, 73.9, 72.5, 78.5, 78.5],
            "PGD": [52.2, 63.8, 71.6, 39.1, 25.3, 36.7, 38.6, 57.4, 59.5, 63.1, 66.8],
            "CW-inf": [57.1, 67.5, 79.5, 43.0, 32.5, 41.5, 41.0, 59.5, 60.0, 71.5, 75.0],
            "Transfer": [80.3, 84.5, 87.7, 71.0, 68.3, 78.9, 69.2, 86.3, 82.9, 87.6, 86.4],
            "N-Attack": [56.1, 67.5, 77.7, 43.7, 31.4, 42.7, 49.0, 53.7, 60.1, 64.4, 71.1],
        },
        # Table 3, Madry row (1/T = 2): Temperature-PGD-20 minus PGD-20, total (and its robustness), classes 0-9.
        "table3": [-0.2, -0.4, +0.4, -0.3, +0.4, -2.8, +0.6, -0.8, +0.3, -0.1, +0.1], "table3_total": 52.0,
    },
}
PAPER_FIG4 = ("robustness rises with the class's classifier-weight norm in robust models (figure 4); "
              "no significant correlation with accuracy in standard training (section 3.2)")


@dataclass(frozen=True)
class Setting:
    """One row of the record: a preset on a dataset, the paper's setting it stands for, and how to make it."""

    preset: str
    paper: str
    dataset: str
    commands: tuple[str, ...]
    scale: str
    target: tuple[float, float] | None = None  # the CPU budget's aim: (worst-case robust %, minutes on 2 cores)


CPU = (
    Setting("mnist-fast", "mnist", "real MNIST (60,000 / 10,000)",
            ("python experiments/reproduce.py --preset mnist-fast --data-root ../shared/data --doc",),
            "CPU budget: PGD-3 training, 3 epochs, SmallCNN (FGSM-RS overfit: earlier attempts below)", (88.0, 45.0)),
    Setting("cifar10-cpu", "cifar10", "cifar10-jpeg75 (50,000 / 10,000; CIFAR-10 re-encoded as JPEG q75)",
            ("tar xzf ../shared/data/cifar10-jpeg75.tar.gz",
             "python experiments/reproduce.py --preset cifar10-cpu --data-root cifar10-jpeg75 --doc"),
            "CPU budget: FGSM-RS, 15 epochs, FastCNN at widths 48-96-192 (0.65 M parameters)", (35.0, 60.0)),
)
GPU = (
    Setting("mnist", "mnist", "MNIST", ("python experiments/fig1.py --preset mnist --data-root DATA", 
                                         "python experiments/fig2.py --preset mnist --data-root DATA",
                                         "python experiments/fig4.py --preset mnist --data-root DATA",
                                         "python experiments/fig7.py --preset mnist --data-root DATA"),
            "paper scale: the paper's recipe (configs/mnist.yaml), one GPU"),
    Setting("cifar10", "cifar10", "CIFAR-10", ("python experiments/fig1.py --data-root DATA",
                                               "python experiments/fig2.py --data-root DATA",
                                               "python experiments/fig4.py --data-root DATA",
                                               "python experiments/table2.py --data-root DATA",
                                               "python experiments/table3.py --data-root DATA",
                                               "python experiments/fig7.py --data-root DATA"),
            "paper scale: the paper's recipe (configs/cifar10.yaml), one GPU; table 2 on the released models: "
            "python experiments/table2.py --robustbench --model-dir models --data-root DATA"),
)


@dataclass(frozen=True)
class Record:
    """What reproduce.py saved for one preset."""

    robust: dict[str, Any]      # robust run's summary.json
    standard: dict[str, Any]    # standard run's summary.json
    epochs: list[dict[str, Any]]  # robust run's metrics.jsonl rows
    meta: dict[str, Any]        # robust run's meta.json
    extra: dict[str, Any]       # record.json: attack blocks, confusion counts, machine, train seconds
    standard_epochs: int        # the standard run's training epochs (its config.yaml)
    standard_curve: tuple[dict[str, Any], ...] = ()  # the standard run's metrics.jsonl rows

    @property
    def names(self) -> list[str]:
        return self.robust["class_names"]

    @property
    def device(self) -> str | None:
        """The accelerator the record was made on (record.json's machine), None for a CPU."""
        return self.extra.get("machine", {}).get("device")

    @property
    def protocol(self) -> dict[str, Any]:
        return self.robust["attacks"][self.robust["protocol"]]


def load_record(folder: Path) -> Record | None:
    """The record in ``folder``, or None when reproduce.py has not written it."""
    if not (folder / "record.json").is_file():
        return None
    read = lambda p: json.loads((folder / p).read_text())  # noqa: E731
    epochs = [json.loads(line) for line in (folder / "robust" / "metrics.jsonl").read_text().splitlines() if line]
    standard = yaml.safe_load((folder / "standard" / "config.yaml").read_text())
    curve = folder / "standard" / "metrics.jsonl"
    curve_rows = tuple(json.loads(line) for line in curve.read_text().splitlines() if line) if curve.is_file() else ()
    return Record(read("robust/summary.json"), read("standard/summary.json"), epochs, read("robust/meta.json"),
                  read("record.json"), int(standard["train"]["epochs"]), curve_rows)


# ---- formatting -------------------------------------------------------------------------------------------------

def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def with_ci(block: dict[str, Any], i: int | None = None) -> str:
    """"52.3 [49.1, 55.4]": overall (i None) or class i, with its 95% interval."""
    v, ci = (block["overall"], block["overall_ci95"]) if i is None else (block["per_class"][i], block["ci95"][i])
    return f"{pct(v)} [{pct(ci[0])}, {pct(ci[1])}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# ---- claims: each a stated test against a stated null, from integer counts ----------------------------------------

ALPHA = 0.05
EQUIVALENCE_MARGIN = 0.01  # table 3: "barely changes" = within 1 point (TOST margin, a fraction)
# The paper's attack budgets (appendix E; tables 2-3 run on the whole 10,000-image test set otherwise).
PAPER_BUDGET: dict[str, dict[str, Any]] = {
    "CW-inf": {"binary_search_steps": 5, "max_iterations": 1000, "per_class": 200},
    "N-Attack": {"population": 300, "max_iterations": 500, "per_class": 200},
}
WHOLE = "the whole test set"


@dataclass(frozen=True)
class Claim:
    """One row of the claims table: the paper's claim, our numbers, the test, the verdict and the rule giving it."""

    paper: str
    ours: str
    test: str
    verdict: str
    rule: str


def p_text(p: float) -> str:
    return "p -" if p != p else f"p {p:.2g}" if p >= 0.001 else f"p {p:.1e}"


def test_text(t: HypothesisTest) -> str:
    """"Spearman, permutation over classes; null: no association; rho 0.96, p 0.0002"."""
    stat = f"{t.effect_name} {t.effect:.2f}"
    return f"{t.test}; null: {t.null}; {stat}, {p_text(t.p)}"


def counts(block: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(block["count"], dtype=np.int64), np.asarray(block["n"], dtype=np.int64)


def separated(block: dict[str, Any]) -> bool:
    """Best class's 95% interval lies wholly above the worst class's."""
    best, worst = block["best_class"], block["worst_class"]
    return block["ci95"][best][0] > block["ci95"][worst][1]


def honest(rec: Record) -> tuple[str, dict[str, Any]]:
    """The honest worst case (the summary's headline: per example, the worst over the preset's attacks, ``strong``
    included) and its accuracy block: what every claim is judged by, the protocol attack shown beside it."""
    name = rec.robust["headline"]
    return name, rec.robust["attacks"][name]


def beside(rec: Record) -> bool:
    """Whether the protocol attack is shown beside the honest worst case (it is not the same block)."""
    return rec.robust["headline"] != rec.robust["protocol"]


def gap_text(rec: Record, label: str, block: dict[str, Any]) -> str:
    """"worst: 78.0% overall on 10,000 examples, largest gap 16.1 points (1 97.7 - 8 81.6)"."""
    names, best, worst = rec.names, block["best_class"], block["worst_class"]
    return (f"{label}: {pct(block['overall'])}% overall on {block['examples']:,} examples, largest gap "
            f"{pct(block['gap'])} points ({names[best]} {pct(block['per_class'][best])} - {names[worst]} "
            f"{pct(block['per_class'][worst])})")


def fig1_claim(rec: Record, paper: dict[str, Any]) -> Claim:
    name, block = honest(rec)
    lo, hi = paper["fig1_gap"]
    gap = block["gap"]
    t = heterogeneity_test(*counts(block))
    ours, tests = gap_text(rec, name, block), f"{name}: {test_text(t)}"
    if beside(rec):
        ours += "; protocol " + gap_text(rec, rec.robust["protocol"], rec.protocol)
        tests += f"<br>{rec.robust['protocol']}: {test_text(heterogeneity_test(*counts(rec.protocol)))}"
    sig = t.significant(ALPHA) and separated(block)
    verdict = "reproduced" if sig and lo - 5 <= gap <= hi + 5 else "partly" if sig else "not"
    span = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return Claim(paper["fig1"], ours, tests, verdict,
                 f"judged by the honest worst case ({name}): classes differ (p < {ALPHA:g}) with best and worst class "
                 f"intervals disjoint, and the gap within 5 points of the paper's {span}: reproduced; the difference "
                 "only: partly")


def flips(rec: Record, key: str = "confusion") -> list[list[int]]:
    """The record's confusion counts ``key`` ("confusion": the protocol attack's; "confusion_strong": strong's)
    with the diagonal zeroed: the flips."""
    counts = [row[:] for row in rec.extra[key]["counts"]]
    for i in range(len(counts)):
        counts[i][i] = 0
    return counts


def superclass_of(rec: Record, k: int) -> np.ndarray | None:
    """The record's robust run's superclass of each class (:func:`classwise.analysis.claims.superclass_of`)."""
    return class_superclasses(rec.robust.get("superclasses") or None, k)


def inside_share(of: np.ndarray) -> Any:
    """Share of a flip table's flips that stay inside the true class's superclass."""
    same = (of[:, None] == of[None, :]) & (of[:, None] >= 0) & ~np.eye(len(of), dtype=bool)
    return lambda c: float(c[same].sum() / max(c.sum(), 1))


def top_pair(rec: Record, counts: list[list[int]]) -> str:
    k = len(counts)
    i, j = max(((i, j) for i in range(k) for j in range(i + 1, k)), key=lambda p: counts[p[0]][p[1]] + counts[p[1]][p[0]])
    return f"{rec.names[i]} <-> {rec.names[j]} ({counts[i][j]} + {counts[j][i]} flips)"


def fig2_claim(rec: Record, paper: dict[str, Any]) -> Claim:
    """Judged on strong's flips when the record has them (the honest attack), the protocol attack's beside."""
    keys = ["confusion_strong", "confusion"] if rec.extra.get("confusion_strong") else ["confusion"]
    c = np.asarray(flips(rec, keys[0]))
    sym = symmetry_test(c)
    label = rec.extra[keys[0]]["attack"]
    ours = f"{label}: most exchanged pair {top_pair(rec, c.tolist())}; symmetry r = {sym.statistic:.2f}"
    tests = [f"{label}: {test_text(sym)}"]
    ok = sym.significant(ALPHA)
    of = superclass_of(rec, len(c))
    if of is not None:
        share = inside_share(of)
        null = quasi_independence_null(c, {"inside": share})["inside"]
        p = float((1 + np.sum(null >= share(c) - 1e-12)) / (1 + null.size))
        ours += (f"; {100 * share(c):.0f}% of flips stay inside the superclass (quasi-independence: "
                 f"{100 * float(np.median(null)):.0f}%)")
        tests.append(f"share inside superclasses, Monte Carlo under the same null; {p_text(p)}")
        ok = ok and p < ALPHA
    if len(keys) > 1:
        other = np.asarray(flips(rec, keys[1]))
        side = symmetry_test(other)
        ours += (f"; protocol {rec.extra[keys[1]]['attack']}: most exchanged pair {top_pair(rec, other.tolist())}; "
                 f"symmetry r = {side.statistic:.2f}")
        tests.append(f"{rec.extra[keys[1]]['attack']}: {test_text(side)}")
    return Claim(paper["fig2"], ours, "<br>".join(tests), "reproduced" if ok else "not",
                 f"judged on {label}'s flips: more symmetric than quasi-independence gives (p < {ALPHA:g}), and, with "
                 "superclasses, more flips inside them than it gives")


CONVERGED_POINTS = 1.0  # a standard run has converged when its last epoch moved neither accuracy by this much


def standard_convergence(rec: Record) -> tuple[bool, str]:
    """Has the standard run converged? A standard model stopped while still learning says nothing about standard
    training (figures 4 and 7). Converged: its last epoch raised neither the monitored clean test accuracy nor the
    training accuracy by ``CONVERGED_POINTS`` or more; one epoch or no curve: not shown. Returns (converged, why)."""
    rows = rec.standard_curve
    if len(rows) < 2:
        return False, f"standard model ({rec.standard_epochs} epochs): convergence not shown (no per-epoch curve)"
    last, before = rows[-1], rows[-2]
    clean = last["clean"]["overall"] - before["clean"]["overall"]
    train = (last.get("train_acc") or 0.0) - (before.get("train_acc") or 0.0)
    done = clean < CONVERGED_POINTS and train < CONVERGED_POINTS
    what = "converged" if done else "not trained to convergence"
    return done, (f"standard model ({rec.standard_epochs} epochs; the paper: 100) {what}: its last epoch moved clean "
                  f"accuracy {clean:+.1f} and training accuracy {train:+.1f} points")


def fig4_claim(rec: Record) -> Claim:
    robust = rec.robust["claims"].get("weight_norm")
    clean = rec.standard["claims"].get("weight_norm")
    if robust is None or clean is None:
        return Claim(PAPER_FIG4, "not computed", "-", "not", "needs both runs' weight-norm claims")
    rate = lambda b: np.asarray(b["count"]) / np.asarray(b["n"])  # noqa: E731
    name, block = honest(rec)
    pos = permutation_spearman(robust["norms"], rate(block), alternative="greater")
    flat = permutation_spearman(clean["norms"], rate(rec.standard["clean"]))
    side = permutation_spearman(robust["norms"], rate(rec.protocol), alternative="greater") if beside(rec) else None
    converged, why = standard_convergence(rec)
    if converged:
        verdict = "reproduced" if pos.significant(ALPHA) and not flat.significant(ALPHA) else (
            "partly" if pos.significant(ALPHA) or not flat.significant(ALPHA) else "not")
    else:  # the standard half is excluded: at most partly
        verdict = "partly" if pos.significant(ALPHA) else "not"
    protocol = f" (protocol {rec.robust['protocol']}: rho {side.statistic:.2f})" if side else ""
    ours = (f"robust model vs {name} robustness: rho {pos.statistic:.2f}{protocol}; {why}; "
            f"its rho vs clean accuracy {flat.statistic:.2f}" + ("" if converged else " (excluded from the verdict)"))
    tests = f"robust, {name} (one-sided): {test_text(pos)}"
    tests += f"<br>robust, {rec.robust['protocol']} (one-sided): {test_text(side)}" if side else ""
    return Claim(PAPER_FIG4, ours, f"{tests}<br>standard (two-sided): {test_text(flat)}",
                 verdict, f"robust rho > 0 under the honest worst case (p < {ALPHA:g}) and standard rho not "
                          "significant: reproduced; one of the two: partly; a standard model not trained to "
                          "convergence is excluded (then at most partly)")


def call_names(rec: Record, call: dict[str, Any]) -> str:
    """"cat" (a significant call) or "tied: cat, dog, bird +2" (the extreme class and those tied with it)."""
    if call["significant"]:
        return rec.names[call["class"]]
    tied = [rec.names[i] for i in [call["class"], *call["tied_with"]]]
    return "tied: " + ", ".join(tied[:3]) + (f" +{len(tied) - 3}" if len(tied) > 3 else "")


def end_status(calls: list[dict[str, Any]], want: int | None) -> str:
    """One end (best or worst) over the attacks: "reproduced" when every call is significant and names ``want``
    (None: the same class everywhere), "not" when a significant call names another class or ``want`` is not
    even tied, otherwise "tied"."""
    sig = [c["class"] for c in calls if c["significant"]]
    target = want if want is not None else (sig[0] if sig else None)
    if target is not None and (any(s != target for s in sig)
                               or any(target not in [c["class"], *c["tied_with"]] for c in calls)):
        return "not"
    return "reproduced" if len(sig) == len(calls) else "tied"


def combine(a: str, b: str) -> str:
    if a == b == "reproduced":
        return "reproduced"
    if "not" in (a, b):
        return "partly" if "reproduced" in (a, b) else "not"
    return "partly" if "reproduced" in (a, b) else "tied"


def budget(label: str, block: dict[str, Any], num_examples: int, paper_has: bool) -> str:
    """What ``block``'s attack ran with where it differs from the paper's (appendix E; else the whole test set).

    ``paper_has``: the paper reports this attack on this dataset; if not, the budget is stated without a comparison.
    """
    f, want = block.get("facts", {}), PAPER_BUDGET.get(label, {})
    per_class = min(block["n"])
    said = lambda ours, paper: ours + (f" (paper: {paper})" if paper_has else "")  # noqa: E731
    parts = []
    if "binary_search_steps" in f and (f["binary_search_steps"], f["max_iterations"]) != (
            want.get("binary_search_steps"), want.get("max_iterations")):
        parts.append(said(f"{f['binary_search_steps']} x {f['max_iterations']} iterations",
                          f"{want.get('binary_search_steps')} x {want.get('max_iterations')}"))
    if "population" in f and (f["population"], f["max_iterations"]) != (want.get("population"),
                                                                        want.get("max_iterations")):
        parts.append(said(f"population {f['population']}, {f['max_iterations']} iterations",
                          f"{want.get('population')}, {want.get('max_iterations')}"))
    if per_class != want.get("per_class") and block["examples"] < num_examples:
        parts.append(said(f"{per_class} per class", want.get("per_class", WHOLE)))
    return "; ".join(parts)


def table2_claim(rec: Record, paper: dict[str, Any]) -> Claim:
    name, head = honest(rec)
    blocks = {k: v for k, v in rec.extra["attacks"].items() if k != "Temperature-PGD"}
    blocks |= {f"worst case ({name}, every image)": head} if beside(rec) else {}
    want = (rec.names.index("automobile"), rec.names.index("cat")) if paper.get("table2") else (None, None)
    best = end_status([b["best_call"] for b in blocks.values()], want[0])
    worst = end_status([b["worst_call"] for b in blocks.values()], want[1])
    ours = "; ".join(f"{k}: {call_names(rec, b['best_call'])} / {call_names(rec, b['worst_call'])}"
                     for k, b in blocks.items())
    budgets = [f"{k} {t}" for k, b in blocks.items()
               if (t := budget(k, b, rec.robust["num_examples"], bool(paper.get("table2"))))]
    fisher = {k: (extreme_vs_runner_up(*counts(b), "best")[2], extreme_vs_runner_up(*counts(b), "worst")[2])
              for k, b in blocks.items()}
    tests = "; ".join(f"{k} {bt.effect:.1f} / {wt.effect:.1f} points, {p_text(bt.p)} / {p_text(wt.p)}"
                      for k, (bt, wt) in fisher.items())
    text = ("class 1 (automobile) most robust and class 3 (cat) most vulnerable under every attack (table 2)"
            if paper.get("table2") else
            "not in the paper for this dataset (table 2 is CIFAR-10); the same classes under every attack")
    return Claim(text, "most robust / most vulnerable: " + ours + ("<br>budget: " + "; ".join(budgets) if budgets else ""),
                 "a call is significant when its 95% Wilson interval is disjoint from every other class's (rank_call); "
                 f"gap to the runner-up and Fisher exact p (best / worst, not adjusted for picking the extreme): {tests}",
                 combine(best, worst),
                 "every attack's best and worst call significant and the same class (on CIFAR-10: automobile and cat): "
                 "reproduced; a significant call of another class, or the class not even tied: not; otherwise: tied "
                 f"(best {best}, worst {worst})")


def drop_tests(w: np.ndarray, s: np.ndarray, n: np.ndarray) -> tuple[HypothesisTest, HypothesisTest, HypothesisTest]:
    """Section 3.3's tests of weak -> strong robust counts (K,) of n (K,): logit, probit, and the absolute drop."""
    logit, probit = (drop_scale_test(w, s, n, scale=g) for g in ("logit", "probit"))
    return logit, probit, permutation_spearman(w / n, (w - s) / n, alternative="less")


def weak_hurt_claim(rec: Record) -> Claim | None:
    """FGSM -> the honest worst case (the strongest evaluation), judged on both scales; FGSM -> the protocol
    attack (the paper's pair) beside it."""
    claims = rec.robust["claims"].get("weak_hurt_more") or []
    c = next((c for c in claims if c["weaker"].startswith("fgsm")), None)
    if c is None:
        return None
    weak = c["weaker"]
    w, n = counts(rec.robust["attacks"][weak])
    head = rec.robust.get("headline") or c["stronger"]  # a summary without a headline: the claim's own pair
    strongs = [head] + ([c["stronger"]] if c["stronger"] != head else [])
    strongs = [k for k in strongs if np.array_equal(counts(rec.robust["attacks"][k])[1], n)]
    if not strongs:
        return None
    tests = {k: drop_tests(w, counts(rec.robust["attacks"][k])[0], n) for k in strongs}
    logit, probit, _ = tests[strongs[0]]
    both = logit.significant(ALPHA) and probit.significant(ALPHA)
    one = logit.significant(ALPHA) or probit.significant(ALPHA)
    verdict = "reproduced" if both else "inconclusive" if one else "not"
    ours = "; ".join(f"{weak} -> {k} on {int(n.sum()):,} examples: Spearman(robustness, drop) rho {lg.statistic:.2f} "
                     f"on the logit scale, {pb.statistic:.2f} on the probit scale ({ab.statistic:.2f} on the absolute "
                     "drop)" for k, (lg, pb, ab) in tests.items())
    return Claim("stronger attacks hurt vulnerable classes more (FGSM -> PGD, section 3.3)",
                 ours + " (floor and ceiling effects alone push the absolute drop's rho towards -1 near 100% and "
                        "towards +1 near 0%: docs/statistics.md)",
                 "<br>".join(f"{k}: {test_text(lg)}<br>{k}: {test_text(pb)}" for k, (lg, pb, _) in tests.items()),
                 verdict,
                 f"judged on {weak} -> {strongs[0]} (the honest worst case, the strongest evaluation): rho < 0 on both "
                 f"the logit and the probit scale (p < {ALPHA:g} each, so a shifted logistic or normal margin alone "
                 "rejects at most 5%): reproduced; on one scale only (the call then depends on the margin "
                 "distribution): inconclusive")


def table3_claim(rec: Record, paper: dict[str, Any]) -> Claim:
    tp, pgd = rec.extra["attacks"]["Temperature-PGD"], rec.extra["attacks"]["PGD"]
    margin = 100 * EQUIVALENCE_MARGIN
    paired = tp.get("paired")
    if paired and paired.get("against") == "PGD":
        only_pgd, only_tp = sum(paired["only_reference"]), sum(paired["only_attack"])
        tost, p = paired_equivalence(only_pgd, only_tp, tp["examples"], EQUIVALENCE_MARGIN)
        mcnemar = f"exact McNemar ({only_pgd} vs {only_tp} discordant); null: no difference; {p_text(p)}"
        differs = p < ALPHA
    else:
        tost, (p_lo, p_hi) = equivalence_bound(pgd["count"], tp["count"], tp["n"], EQUIVALENCE_MARGIN)
        mcnemar = (f"exact McNemar, pairing not recorded: {p_text(p_lo)} at the least, {p_text(p_hi)} at the most "
                   "discordant pairing the per-class counts allow")
        differs = p_hi < ALPHA
    verdict = "reproduced" if tost.significant(ALPHA) else "not" if differs else "inconclusive"
    text = (f"Temperature-PGD (1/T = 2) barely changes Madry's robustness: {paper['table3'][0]:+.1f} overall (table 3)"
            if "table3" in paper else "not in the paper for this dataset; table 3's Madry row: small change")
    per_class = min(tp["n"])
    ours = (f"{100 * tost.statistic:+.1f} overall ({pct(pgd['overall'])} -> {pct(tp['overall'])}, {tp['examples']} "
            f"examples: {per_class} per class; paper: {WHOLE})")
    return Claim(text, ours, f"{test_text(tost)}<br>{mcnemar}", verdict,
                 f"within {margin:g} point shown (TOST p < {ALPHA:g}): reproduced; a difference shown (McNemar p < "
                 f"{ALPHA:g}): not; neither: inconclusive")


def fig7_claim(rec: Record, paper: dict[str, Any]) -> Claim:
    std, names = rec.standard["clean"], rec.names
    name, rob = honest(rec)
    t = gap_difference_test(*counts(std), *counts(rob))
    converged, why = standard_convergence(rec)
    ours = (f"{why}; its clean gap {pct(std['gap'])} ({names[std['best_class']]} - {names[std['worst_class']]}); "
            f"robust ({name}) gap {pct(rob['gap'])} ({names[rob['best_class']]} - {names[rob['worst_class']]})")
    tests = f"{name}: {test_text(t)}"
    if beside(rec):
        p = rec.protocol
        ours += (f"; protocol ({rec.robust['protocol']}) gap {pct(p['gap'])} ({names[p['best_class']]} - "
                 f"{names[p['worst_class']]})")
        tests += f"<br>{rec.robust['protocol']}: {test_text(gap_difference_test(*counts(std), *counts(p)))}"
    verdict = ("reproduced" if t.significant(ALPHA) else "not") if converged else "inconclusive"
    return Claim(paper["fig7"], ours, tests, verdict,
                 f"robust gap under the honest worst case larger than the standard gap (p < {ALPHA:g}); a standard "
                 "model not trained to convergence is excluded: inconclusive")


def claims(rec: Record, paper: dict[str, Any]) -> list[tuple[str, Claim]]:
    out = [("Figure 1", fig1_claim(rec, paper)), ("Figure 2", fig2_claim(rec, paper)), ("Figure 4", fig4_claim(rec)),
           ("Table 2", table2_claim(rec, paper))]
    hurt = weak_hurt_claim(rec)
    out += [("Table 2", hurt)] if hurt else []
    return out + [("Table 3", table3_claim(rec, paper)), ("Figure 7", fig7_claim(rec, paper))]


# ---- sections -------------------------------------------------------------------------------------------------

def setup_section(s: Setting, rec: Record) -> str:
    cpu = rec.extra.get("cpu_seconds", {})
    evals = rec.meta.get("evaluations", [])
    rows = [["dataset", s.dataset], ["recipe", s.scale], ["notes", " ".join(rec.meta.get("notes", []))],
            ["training (robust run)", f"{minutes(rec.extra['train_seconds']['robust'])} wall"
             + (f", {minutes(cpu['robust_train'])} CPU" if "robust_train" in cpu else "")],
            ["evaluation (preset attacks)", "; ".join(f"{', '.join(e['attacks'])} on {e['examples']}: "
                                                      f"{minutes(e['seconds'])} wall, {minutes(e['cpu_seconds'])} CPU, "
                                                      f"{e['threads']} thread(s)" for e in evals if "cpu_seconds" in e)
             or "not recorded"],
            ["standard run (training)", minutes(rec.extra["train_seconds"]["standard"]) + " wall"],
            ["machine", ", ".join(filter(None, (rec.device, rec.extra["machine"]["cpu"],
                                                f"torch {rec.extra['machine']['torch']}")))],
            ["clean accuracy", with_ci(rec.robust["clean"]) + "%"],
            [f"{rec.robust['protocol']} (protocol attack)", with_ci(rec.protocol) + "%"],
            [f"headline ({rec.robust['headline']})", with_ci(rec.robust["attacks"][rec.robust["headline"]]) + "%"
             + f" on {rec.robust['attacks'][rec.robust['headline']]['examples']} examples"]]
    return table(["", ""], rows + ([target_row(s.target, rec)] if s.target else []))


def target_row(target: tuple[float, float], rec: Record) -> list[str]:
    """The CPU budget's aim, judged by the honest worst case (the summary's headline), not the protocol attack.

    Met: the headline's robust accuracy reaches the aim on the whole test set and the robust
    run's training plus its preset evaluation took no longer (wall time). Missed: it does not,
    or on a sample the exact one-sided binomial test (``target_test``) puts it significantly
    below the aim (p < 0.05), or the time was exceeded. Otherwise undecided: a sample cannot
    show a target met. The protocol attack's number stands beside it. The time is a CPU budget:
    a record made on an accelerator (its machine names a ``device``) says so and leaves the
    time unjudged.
    """
    aim, limit = target
    seconds = rec.extra["train_seconds"]["robust"] + sum(e["seconds"] for e in rec.meta.get("evaluations", []))
    name, head = honest(rec)
    count, n = int(sum(head["count"])), int(sum(head["n"]))
    whole = n == rec.robust["num_examples"]
    test = target_test(count, n, aim)
    device = rec.device
    in_time = device is not None or seconds <= 60 * limit
    if not in_time or (whole and 100 * count / n < aim) or (not whole and test.significant()):
        verdict = "missed"
    else:
        verdict = "met" if whole else "undecided"
        verdict += " in robustness (time not judged)" if device and whole else ""
    sample = "the whole test set" if whole else f"a sample of {n:,} of {rec.robust['num_examples']:,} test images"
    return ["target", f">= {aim:g}% robust under the honest worst case ({name}) on the whole test set within "
            f"{limit:g} min: **{verdict}** ({with_ci(head)}% on {sample}; {test.test}, null {test.null}, "
            f"{p_text(test.p)}; {minutes(seconds)} wall for training and the preset evaluation"
            + (f" on {device}, so the CPU time budget is not judged by this record" if device else "")
            + "; the protocol attack "
            f"{rec.robust['protocol']} gives {pct(rec.protocol['overall'])}% on {rec.protocol['examples']:,} examples)"]


def epochs_section(rec: Record) -> str:
    rows = [[str(r["epoch"]), pct(r["clean"]["overall"]), pct(r["robust"]["overall"]), pct(r["robust"]["gap"]),
             f"{rec.names[r['robust']['best_class']]} / {rec.names[r['robust']['worst_class']]}"] for r in rec.epochs]
    monitor = rec.epochs[-1].get("monitor", "monitor")
    return f"Per epoch, monitor attack {monitor} on {sum(rec.epochs[-1]['robust']['n'])} test images:\n\n" + table(
        ["epoch", "clean %", "robust %", "largest gap (points)", "best / worst class"], rows)


def per_class_section(rec: Record, paper: dict[str, Any]) -> str:
    header = ["attack", "examples", "budget", "total",
              *[n if n == str(i) else f"{i} {n}" for i, n in enumerate(rec.names)]]
    rows = []
    for label, b in rec.extra["attacks"].items():
        rows.append([f"{label} ({b['attack'].split(':')[0]})", str(b["examples"]),
                     budget(label, b, rec.robust["num_examples"], bool(paper.get("table2")))
                     or ("as the paper" if paper.get("table2") else WHOLE),
                     with_ci(b), *[with_ci(b, i) for i in range(len(rec.names))]])
        if label in paper.get("table2", {}):
            p = paper["table2"][label]
            rows.append([f"paper: Madry {label}", "10,000" if label in ("FGSM", "PGD", "Transfer") else "2,000", "",
                         pct(p[0]), *[pct(v) for v in p[1:]]])
    name, head = honest(rec)
    if beside(rec):  # the honest worst case the claims are judged by
        over = rec.robust.get("headline_basis", {}).get("over") or ["the preset's attacks"]
        rows.append([f"worst case ({name} over {', '.join(over)})",
                     str(head["examples"]), WHOLE if head["examples"] == rec.robust["num_examples"] else "sampled",
                     with_ci(head), *[with_ci(head, i) for i in range(len(rec.names))]])
    if "table3" in paper:
        rows.append(["paper: Temperature-PGD minus PGD", "10,000", "", f"{paper['table3'][0]:+.1f}",
                     *[f"{v:+.1f}" for v in paper["table3"][1:]]])
    return table(header, rows)


def claims_section(rec: Record, paper: dict[str, Any]) -> str:
    rows = [[where, c.paper, c.ours, c.test, f"**{c.verdict}**", c.rule] for where, c in claims(rec, paper)]
    return table(["", "paper", "ours", "test: null, effect, p", "verdict", "rule"], rows)


def attempts_section(folder: Path) -> str:
    """Earlier recipes that failed, from their saved metrics (reproduce.py --attempt): why the preset is what it is."""
    parts = []
    for attempt in sorted(p for p in (folder / "attempts").glob("*") if (p / "metrics.jsonl").is_file()):
        rows = [json.loads(line) for line in (attempt / "metrics.jsonl").read_text().splitlines() if line]
        body = table(["epoch", "training-attack accuracy %", "clean %", "monitor robust %"],
                     [[str(r["epoch"]), pct(r.get("train_acc")), pct(r["clean"]["overall"]), pct(r["robust"]["overall"])]
                      for r in rows])
        parts.append(f"Attempt `{attempt.name}` ({rows[-1].get('monitor', 'monitor')} monitor; config in "
                     f"`docs/reproduction/{folder.name}/attempts/{attempt.name}/config.yaml`):\n\n{body}")
    return "\n### Earlier attempts\n\n" + "\n".join(parts) if parts else ""


def cpu_section(s: Setting, rec: Record | None, folder: Path) -> str:
    head = f"## {s.dataset}: preset `{s.preset}`\n\n"
    cmds = "```\n" + "\n".join([*s.commands, "python experiments/reproduction_record.py --doc"]) + "\n```\n\n"
    if rec is None:
        return head + "**not yet run.** Make it with:\n\n" + cmds
    paper = PAPER[s.paper]
    device = rec.device
    made = (f" This record was made on one {device} by `benchmarks/gpu_records.sh` (the commands below with "
            "`--device cuda`: the CPU recipe unchanged, on every test image); its wall times are that machine's, "
            "so the CPU time budget is not judged here." if device else "")
    return (head + f"Paper setting: {paper['setting']}. Ours: {s.scale}.{made}\n\n" + setup_section(s, rec)
            + "\n### Claims\n\n" + claims_section(rec, paper)
            + "\n### Figure 1: class-wise robustness over epochs\n\n" + epochs_section(rec)
            + "\n### Table 2 and table 3: per class, with 95% intervals\n\n" + per_class_section(rec, paper)
            + attempts_section(folder) + f"\nRun summaries: `docs/reproduction/{s.preset}/`. Made with:\n\n" + cmds)


def gpu_section() -> str:
    rows = [[s.dataset, s.scale, "<br>".join(f"`{c}`" for c in s.commands), "not yet run"] for s in GPU]
    return "## Paper scale (GPU)\n\n" + table(["dataset", "setting", "commands", "result"], rows)


def render(records: Path) -> str:
    intro = ("# Reproduction on real data\n\n"
             "Generated by `experiments/reproduction_record.py` from the records in `docs/reproduction/` "
             "(made by `experiments/reproduce.py`); do not edit by hand. Every number of ours carries a 95% "
             "interval (Wilson per class, docs/statistics.md). The CPU presets are far below the paper's "
             "budget (a few epochs instead of 100, small networks, PGD-3 or FGSM-RS instead of PGD-10/40 training), so "
             "absolute numbers are lower than the paper's; the verdicts are about the class-wise claims, "
             "each a test against a stated null from the recorded integer counts (test, effect size and p-value "
             "in the row; docs/statistics.md, \"Verdicts of the reproduction record\") turned into a verdict by "
             "the rule written beside it. Attack budgets that differ from the paper's are stated with the rows.\n\n")
    parts = [cpu_section(s, load_record(records / s.preset), records / s.preset) for s in CPU]
    return intro + "\n".join(parts) + "\n" + gpu_section()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=Path, default=DOC.parent / "reproduction",
                   help="folder of the records, one per preset (default docs/reproduction of the source tree)")
    p.add_argument("--out", type=Path, default=None, help="write the document here (default: print it)")
    p.add_argument("--doc", action="store_true", help=f"write the source tree's {DOC.relative_to(ROOT)}")
    p.add_argument("--check", action="store_true",
                   help=f"compare with --out (default {DOC.relative_to(ROOT)}) instead of writing; exit 1 if it differs")
    args = p.parse_args(argv)
    if args.doc and args.out:
        raise ClasswiseError("--doc writes docs/reproduction.md: it excludes --out")
    out = DOC if args.doc or (args.check and args.out is None) else args.out
    text = render(args.records)
    if args.check:
        same = out.is_file() and out.read_text() == text
        print(f"{out} {'matches' if same else 'differs from'} the records")
        return 0 if same else 1
    if out is None:
        print(text, end="")
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_script(main)
