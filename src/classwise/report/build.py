"""Write a run's class-wise report: tables, figures, report.md and a self-contained report.html.

Layout written into ``run_dir``::

    figures/*.png and *.svg       classwise_bars, confusion, misclassified, robustness_intervals,
                                  [epochs], [weight_norms], [superclass_confusion], [homing],
                                  [probability_variance]; PNG at 150 dpi, SVG beside each
    tables/classwise.{csv,md}     table 2 layout: clean and every attack (by class above 20 classes)
    tables/classwise_ci.csv       every row and class: n, count, percent, 95% Wilson interval
    tables/difference.{csv,md}, difference_tests.csv   tables 3, 4, 6 with exact McNemar tests
    tables/confusion_<attack>.csv robustness confusion (percent of row) per attack
    tables/misclassified_<attack>.csv, robustness_intervals.csv, [homing.csv], [probability_variance.csv],
    [superclass_robustness.csv]
    figures/gallery/*.png, figures/pairs/*.png   gallery thumbnails (with saved adversarial images)
    report.md, report.html        card, class table, statements, notes, warnings, galleries, each table and figure

The answer comes first (:mod:`classwise.report.glance`): a card with the overall
numbers and their intervals, the weakest and strongest class (or "tied"), the
attack suite and the sanity badges, then one table per class, weakest first.
The full statements follow, collapsed in HTML: overall numbers with their 95% intervals, best and
worst class (significant, or "tied with"), largest gap, why the weakest classes
are weak (confound classes, superclass share, gap to clean), the tested claims
(stronger attacks hurt weak classes more; weight norm vs robustness and vs clean
accuracy) and the number of sanity flags. With saved adversarial images
(:class:`~classwise.report.gallery.GalleryData`) the per-class galleries and the
most exchanged pairs follow. Every later section starts with one
sentence saying what it shows. With more than 20 classes the tables start with
the superclass view (when superclasses exist), then the 10 weakest and 10
strongest classes, then the full table by class in a scroll container; per-class
line figures (1 and 4) show a seeded sample of 12 classes, as the paper does.

Everything is computed once, by :func:`classwise.analysis.build_summary` (the
typed :class:`~classwise.analysis.schema.Summary`), and handed over in a
:class:`ReportContext`; "the" robustness of the report is the summary's
"headline": the per-example worst case over the whole suite when the run has
one (the summary says so), and the paper's protocol attack (the summary's
"protocol", PGD with the most steps) is reported beside it under its own name
and draws the per-example figures (confusion, superclasses, homing, intervals,
probabilities). :func:`build_sections` turns the context into
:class:`~classwise.report.section.Section` values and writes nothing;
:func:`write_report` then writes their files and figures
(:func:`write_sections`) and renders them to report.md and report.html. Every
file is written to a temporary name and renamed, report.html last, and an old
report.md / report.html is removed first, so a crash never leaves a report that
looks complete.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import (
    build_summary,
    confusion_counts,
    fold_superclasses,
    robustness_confusion,
    row_percent,
    sanity_warnings,
)
from ..analysis.schema import (
    AccuracyBlock, Correlation, Curves, NormComparison, RankCall, Summary, Targeted, WeakHurtMore,
)
from ..analysis.stats import classwise_interval
from ..results import EvalResults
from ..spec import format_number
from . import diagnosis, figures, gallery, glance, render, tables
from .diagnosis import per_class_array
from .gallery import GalleryData
from .glance import MAX_NAMED
from .glance import ci as _ci
from .glance import names_of as _names
from .glance import weakest_first as _order
from .section import MAX_SHOWN_CLASSES, Figure, File, Section, pct, sampled_note, shown_classes, slug
from ..fileio import atomic_write, check_replaceable
from ..runfiles import RunFiles

TITLE = "Class-wise robustness report"
STATEMENTS = "Statistical statements"
EXTREMES = 10  # with more than MAX_SHOWN_CLASSES classes: the 10 weakest and the 10 strongest


@dataclass(frozen=True)
class ReportContext:
    """Everything a report shows, computed beforehand: the per-sample results and their summary.

    summary: :func:`classwise.analysis.build_summary` of ``results`` (its
    headline, superclasses and claims drive the report); its JSON form
    (summary.json) is read into the typed value. metrics: per-epoch training-log
    dicts with "robust": {"overall", "per_class"} and "monitor" (figure 1).
    head_weight: (K, D) classifier weight (figure 4). meta: shown first (dataset,
    model, eps). notes: shown after the summary. homing: the homing.json of
    :func:`classwise.homing.homing_run` (figure 3b). sanity: extra sanity flags,
    listed under Warnings: lines, or dicts with "check", "scope", "detail",
    "suggests" (:func:`classwise.analysis.sanity.flags_to_json`). checks_run:
    names of the sanity checks that ran (a "Sanity checks" section). gallery:
    saved adversarial examples of one attack (:class:`~classwise.report.gallery.GalleryData`)
    for the per-class gallery and the most exchanged pairs; None: no gallery.
    Probabilities in ``results`` (clean_probs, adv_probs[headline]) add figure 5a.
    """

    results: EvalResults
    summary: Summary
    metrics: list[dict] | None = None
    head_weight: np.ndarray | None = None
    meta: dict[str, Any] | None = None
    notes: list[str] | None = None
    homing: dict[str, Any] | None = None
    sanity: list[str | dict[str, str]] | None = None
    checks_run: list[str] | None = None
    gallery: GalleryData | None = None

    def __post_init__(self) -> None:
        if isinstance(self.summary, dict):  # summary.json as read back
            object.__setattr__(self, "summary", Summary.from_dict(self.summary))

    @classmethod
    def build(cls, results: EvalResults, *, headline: str | None = None, head_weight: np.ndarray | None = None,
              superclasses: dict[str, list[int]] | None = None, **rest: Any) -> "ReportContext":
        """Summarise ``results`` (one :func:`build_summary` call) and bundle it with the rest."""
        summary = build_summary(results, headline=headline, head_weight=head_weight, superclasses=superclasses)
        return cls(results, summary, head_weight=head_weight, **rest)

    @property
    def headline(self) -> str | None:
        return self.summary.headline

    @property
    def protocol(self) -> str | None:
        """The attack of the per-example figures (the paper's protocol attack)."""
        return self.summary.protocol or self.headline

    @property
    def superclasses(self) -> dict[str, tuple[int, ...]] | None:
        return dict(self.summary.superclasses) if self.summary.superclasses else None


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    """Dataset, model and eps first, then any other meta entries."""
    keys = [k for k in ("dataset", "model", "eps") if k in meta]
    keys += [k for k in meta if k not in keys]
    return [f"{k}: {eps_text(meta[k]) if k == 'eps' else meta[k]}" for k in keys]


def eps_text(eps: Any) -> str:
    """A run's eps as written: "8/255", or per attack grouped by value: "8/255 (fgsm, pgd20); 0.5 (pgd20@norm=l2)"."""
    if isinstance(eps, dict):
        groups: dict[str, list[str]] = {}
        for attack, value in eps.items():
            groups.setdefault(eps_text(value), []).append(attack)
        return "; ".join(f"{value} ({', '.join(attacks)})" for value, attacks in groups.items())
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        return format_number(float(eps))
    return "n/a" if eps is None else str(eps)


def _call_text(block: AccuracyBlock, call: RankCall, names: tuple[str, ...]) -> str:
    """"car (80.0% [49.0, 94.3]); significant" or "...; tied with ship, cat (intervals overlap)"."""
    i = call.index
    text = f"{names[i]} ({pct(block.per_class[i])}{_ci(block.ci95[i])})"
    if call.significant:
        return text + "; significant (its 95% interval is disjoint from every other class's)"
    return text + f"; tied with {_names(call.tied_with, names)} (95% intervals overlap)"


def _headline_lines(summary: Summary) -> list[str]:
    """Clean and robust overall with intervals, most and least robust class (tested), the largest gap."""
    names, clean, head = summary.class_names, summary.clean, summary.headline
    lines = [f"test examples: {summary.num_examples}, classes: {len(names)}",
             f"clean accuracy: {pct(clean.overall)}{_ci(clean.overall_ci95)}"]
    block, what = (summary.attacks[head], "robust") if head else (clean, "accurate")
    if head:
        lines.append(f"robust accuracy under {head}: {pct(block.overall)}{_ci(block.overall_ci95)}"
                     f"{_basis(summary)}")
    if block.best_call is not None and block.worst_call is not None:
        lines += [f"most {what} class: {_call_text(block, block.best_call, names)}",
                  f"least {what} class: {_call_text(block, block.worst_call, names)}",
                  f"largest class gap: {block.gap:.1f} percentage points"]
    elif glance.all_tied(block):
        lines.append(f"most and least {what} class: {glance.all_tied(block)}")
    return lines + _cost_lines(summary) + _worst_class_lines(block, what, names) + _protocol_line(summary)


def _cost_lines(summary: Summary) -> list[str]:
    """What each attack spent, e.g. "cost: pgd40 40 k gradient passes, 40 per example; ..." (schema 3)."""
    spent = [f"{name} {block.cost.text}" for name, block in summary.attacks.items() if block.cost is not None]
    return [f"cost: {'; '.join(spent)}"] if spent else []


def _worst_class_lines(block: AccuracyBlock, what: str, names: tuple[str, ...]) -> list[str]:
    """Worst-class accuracy with its simultaneous interval, the possible worst classes, and the spread."""
    w, spread = block.worst_class_interval, block.spread
    if w is None or spread is None:
        return []  # a summary written before schema 2
    shown = [names[c] for c in w.candidates[:MAX_NAMED]]
    could = ", ".join(shown) + (f" and {len(w.candidates) - MAX_NAMED} more" if len(w.candidates) > MAX_NAMED else "")
    nsd = "n/a" if spread.nsd is None else f"{spread.nsd:.2f}"
    who = f"only {could} can be the worst" if w.significant else f"could be the worst: {could}"
    return [f"worst-class {what} accuracy: {w.percent:.1f}% [{w.low:.1f}, {w.high:.1f}] (simultaneous 95% "
            f"interval over classes; {who})",
            f"spread over classes: std {spread.std:.1f} points, NSD {nsd}, mean of the {spread.k} weakest "
            f"{spread.worst_k_mean:.1f}%"]


def _basis(summary: Summary) -> str:
    """" (worst case per example over ...)" when the headline is the suite's worst case."""
    basis = summary.headline_basis
    return f" ({basis.text})" if basis and len(basis.over) > 1 else ""


def _overstated_lines(sanity: list[str | dict[str, str]]) -> list[str]:
    """The overall headline-overstated flags, in the summary itself (all flags are under Warnings)."""
    return [f"the protocol attack overstates robustness: {f['detail']}" for f in sanity
            if isinstance(f, dict) and f["check"] == "headline-overstated" and f["scope"] == "overall"]


def _protocol_line(summary: Summary) -> list[str]:
    """The paper's protocol attack under its own name, when the headline is another entry."""
    protocol = summary.protocol
    if protocol is None or protocol == summary.headline:
        return []
    block = summary.attacks[protocol]
    return [f"robust accuracy under {protocol} (the paper's protocol; the figures below use it) on its "
            f"{block.examples} examples: {pct(block.overall)}{_ci(block.overall_ci95)}"]


def _weakest_lines(summary: Summary) -> list[str]:
    """One line per weakest class under the headline attack: why it is weak."""
    names, head, groups = summary.class_names, summary.headline, summary.superclasses or {}
    out = []
    for w in summary.claims.weakest:
        text = f"weak class {names[w.index]}: {pct(w.robust)}{_ci(w.ci95)} robust under {head}"
        text += f", clean {pct(w.clean)} (gap {w.gap_to_clean:.1f} points)"
        if w.confounds:
            text += "; flipped to " + ", ".join(f"{names[c.index]} {100 * c.share:.0f}%" for c in w.confounds)
        if w.within_superclass is not None:
            group = next(g for g, members in groups.items() if w.index in members)
            text += f"; {100 * w.within_superclass:.0f}% of its flips stay within {group}"
        out.append(text)
    return out


def _claim_lines(summary: Summary) -> list[str]:
    """The tested claims: significant paired drops, weak-hurt-more rho, weight-norm rho."""
    claims, k = summary.claims, summary.num_classes
    out = []
    paired = claims.paired
    for attack, c in paired.attacks.items():
        out.append(f"{attack} vs {paired.reference}: {sum(c.significant)} of {k} classes differ significantly "
                   f"(exact McNemar, Holm-adjusted, p < {c.alpha:g}); overall {c.overall.diff:+.1f} points "
                   f"(p = {c.overall.p:.3g})")
    for w in claims.weak_hurt_more:
        out.append(f"stronger attacks hurt weak classes more? {w.stronger} vs {w.weaker}: Spearman rho of "
                   f"{w.weaker} robustness and the drop = {_rho(w)}; negative means the weak classes lose more "
                   f"(p: Spearman's test over the {k} classes; 95% interval: the classes resampled)")
    norm = claims.weight_norm
    if norm:
        out.append(f"Spearman rho of classifier weight norm and class robustness under {norm.attack}: "
                   f"{_rho(norm.robust)}; against clean accuracy: {_rho(norm.clean)} (p: Spearman's test over "
                   f"the {k} classes, whose accuracies it takes as exact; 95% interval: the test examples of each "
                   "class resampled, the weight norms fixed, so it shows the test-set noise only)")
    return out


def _rho(c: Correlation | WeakHurtMore) -> str:
    if c.rho is None:
        return "n/a (too few classes or a constant value)"
    ci = "" if c.ci[0] is None else f", 95% CI [{c.ci[0]:.2f}, {c.ci[1]:.2f}]"
    p = "p < 1e-300" if c.p == 0 else f"p = {c.p:.3g}"
    return f"{c.rho:.2f} ({p}{ci})"


def _bars(summary: Summary, classes: list[int], split: int | None, title: str) -> Figure:
    """The class-wise bars (clean and every attack, 95% whiskers) of ``classes``."""
    nan = float("nan")
    rows = summary.rows()
    bars = {name: np.array([nan if b.per_class[i] is None else b.per_class[i] for i in classes]) for name, b in rows}
    errors = {name: np.array([[nan if v is None else v for v in b.ci95[i]] for i in classes]) for name, b in rows}
    return Figure("fig_classwise_bars", figures.path_of("classwise_bars.png"), figures.plot_classwise_bars,
                  (bars, [summary.class_names[i] for i in classes]), {"errors": errors, "split": split, "title": title})


def _table_files(ctx: ReportContext, order: list[int], full_md: str) -> tuple[File, ...]:
    """tables/classwise.{csv,md}, classwise_ci.csv and one robustness confusion CSV per attack."""
    summary, results = ctx.summary, ctx.results
    names = list(summary.class_names)
    files = [File("table_csv", tables.path_of("classwise.csv"), tables.classwise_csv(summary)),
             File("table_ci_csv", tables.path_of("classwise_ci.csv"), tables.classwise_ci_csv(summary)),
             File("table_md", tables.path_of("classwise.md"), full_md)]
    for attack, pred in results.adv_pred.items():
        m = results.evaluated(attack)
        matrix = robustness_confusion(results.labels[m], pred[m], len(names))
        files.append(File(f"confusion_csv:{attack}", tables.path_of(f"confusion_{slug(attack)}.csv"),
                          tables.matrix_csv(matrix, names, names)))
    return tuple(files)


def _table_sections(ctx: ReportContext) -> list[Section]:
    """Table 2 (all classes, or the extremes above 20 classes) and the bar figure, with the table files."""
    summary = ctx.summary
    many = summary.num_classes > MAX_SHOWN_CLASSES
    order = _order(summary)
    full_md = tables.classwise_markdown(summary, classes=order if many else None, by_class=many)
    files = _table_files(ctx, order, full_md)
    return _extremes_sections(summary, order, files) if many else _all_classes_sections(summary, order, full_md, files)


def _all_classes_sections(summary: Summary, order: list[int], md: str, files: tuple[File, ...]) -> list[Section]:
    head = summary.headline or "clean accuracy"
    figure = _bars(summary, order, None, f"classes sorted by {head}, worst first")
    return [
        Section("Class-wise accuracy and robustness (table 2)",
                "Accuracy (%) per class on clean test images and under each attack, in the layout "
                "of the paper's table 2, each with its 95% interval in brackets.",
                table_md=md, table_html=tables.classwise_html(summary), files=files),
        Section("Class-wise bars", f"The same numbers as bars, classes sorted worst first under {head}: per "
                "class, clean accuracy beside robustness under each attack, with 95% interval whiskers.",
                figure=figure),
    ]


def _extremes_sections(summary: Summary, order: list[int], files: tuple[File, ...]) -> list[Section]:
    """Above 20 classes: the 10 weakest and 10 strongest (table and bars), then the full table by class."""
    k, head = len(order), summary.headline or "clean accuracy"
    filled = [i for i in order if summary.clean.n[i] > 0]
    picked = filled[:EXTREMES] + filled[-EXTREMES:] if len(filled) > 2 * EXTREMES else filled
    figure = _bars(summary, picked, min(EXTREMES, len(picked)),
                   f"{EXTREMES} weakest | {EXTREMES} strongest of {k} classes under {head}")
    return [
        Section(f"The {EXTREMES} weakest and {EXTREMES} strongest classes (table 2)",
                f"Accuracy (%) of the {EXTREMES} least and the {EXTREMES} most robust of the {k} classes under "
                f"{head}, weakest first, each with its 95% interval in brackets; the full table follows.",
                table_md=tables.classwise_markdown(summary, classes=picked, by_class=True),
                table_html=tables.classwise_html(summary, classes=picked, by_class=True), files=files),
        Section("Class-wise bars", "The same classes as bars (weakest left of the dashed line, strongest right): "
                "clean accuracy beside robustness under each attack, with 95% interval whiskers.", figure=figure),
        Section(f"All {k} classes", f"Every class, sorted worst first under {head} (scroll inside the table); "
                f"{tables.path_of('classwise.csv')} and {tables.path_of('classwise_ci.csv')} hold the same numbers "
                "in full.", table_md=f"See {tables.path_of('classwise.md')} (one row per class).\n",
                table_html=tables.classwise_html(summary, classes=order, by_class=True)),
    ]


def _superclass_view(ctx: ReportContext) -> list[Section]:
    """Robustness per superclass (clean and every attack), with intervals: the first view of many classes."""
    results, groups = ctx.results, ctx.superclasses
    of = np.full(ctx.summary.num_classes, -1)
    for g, members in enumerate(groups.values()):
        of[list(members)] = g
    rows = {"clean": (results.labels, results.correct())}
    rows |= {a: (results.labels[results.evaluated(a)], results.correct(a)[results.evaluated(a)])
             for a in results.attacks}
    header = ["superclass", *rows]
    cis = {name: classwise_interval(of[lab], ok, len(groups)) for name, (lab, ok) in rows.items()}
    table = [[g, *(tables.ci_text(ci.percent[j], ci.ci[j]) for ci in cis.values())] for j, g in enumerate(groups)]
    csv = File("superclass_robustness_csv", tables.path_of("superclass_robustness.csv"), tables.text_csv(header, table))
    return [Section("Superclass view", f"Accuracy (%) per superclass ({len(groups)} groups of classes) on clean "
                    "images and under each attack, with the 95% interval in brackets: where the weakness "
                    "lives before looking at single classes.", table_md=tables.simple_markdown(header, table),
                    table_html=tables.simple_html(header, table), files=(csv,))]


def _difference_section(summary: Summary) -> list[Section]:
    """tables/difference.{csv,md} and difference_tests.csv: each attack minus the reference, tested."""
    ref = summary.claims.paired.reference
    if ref is None or len(summary.attacks) < 2:
        return []
    header, rows = tables.difference_header(summary), tables.difference_rows(summary)
    if summary.num_classes > MAX_SHOWN_CLASSES:
        order = [0, 1, *(2 + i for i in _order(summary))]
        header, rows = tables.transpose([header[i] for i in order], [[r[i] for i in order] for r in rows])
    md = tables.simple_markdown(header, rows) + f"\n{tables.DIFF_FOOTNOTE}\n"
    files = (File("difference_md", tables.path_of("difference.md"), md),
             File("difference_csv", tables.path_of("difference.csv"), tables.text_csv(header, rows)),
             File("difference_tests_csv", tables.path_of("difference_tests.csv"), tables.difference_tests_csv(summary)))
    note = f'<p class="note">{html.escape(tables.DIFF_FOOTNOTE)}</p>'
    return [Section(f"Difference against {ref} (tables 3, 4 and 6)",
                    f"Robustness under each attack minus robustness under {ref}, in percentage points, per "
                    "class, on the examples both attacks saw; negative: the attack is stronger on that class (the "
                    "paper finds stronger attacks gain most on the vulnerable classes).", table_md=md,
                    table_html=tables.simple_html(header, rows) + note, files=files)]


def _epoch_section(metrics: list[dict], names: tuple[str, ...]) -> list[Section]:
    """Figure 1 from the training log's per-epoch robust class-wise accuracy (skipped if absent)."""
    rows = [(m.get("epoch", i + 1), m["robust"]) for i, m in enumerate(metrics) if m.get("robust")]
    if not rows:
        return []
    monitor = next((m["monitor"] for m in reversed(metrics) if m.get("monitor")), None)
    under = f"under {monitor}" if monitor else "under the monitor attack"
    nan = float("nan")
    per_class = np.array([[nan if v is None else v for v in r["per_class"]] for _, r in rows], dtype=np.float64)
    overall = np.array([nan if r.get("overall") is None else r["overall"] for _, r in rows], dtype=np.float64)
    idx = shown_classes(len(names))
    figure = Figure("fig_epochs", figures.path_of("epochs.png"), figures.plot_classwise_epochs,
                    (np.array([e for e, _ in rows]), per_class[:, idx], overall, [names[i] for i in idx]),
                    {"ylabel": f"test robust accuracy {under} (%)"})
    return [Section("Class-wise robustness during training (figure 1)",
                    f"Test robustness {under} of each class at each evaluated epoch; the shaded band is the gap "
                    "between the best and the worst class, the dashed line the overall robustness."
                    + sampled_note(len(names)), figure=figure)]


def _confusion_section(results: EvalResults, head: str, names: list[str]) -> list[Section]:
    """Figure 2: the robustness confusion matrix of the headline attack."""
    matrix = robustness_confusion(results.labels, results.adv_pred[head], len(names))
    figure = Figure("fig_confusion", figures.path_of("confusion.png"), figures.plot_confusion, (matrix, names, names),
                    {"title": f"{head}: % of true class"})
    return [Section(f"Robustness confusion matrix under {head} (figure 2)",
                    "Row i, column j: the percentage of test images of class i predicted as class j under "
                    "attack; the diagonal is each class's robustness.", figure=figure)]


def _superclass_section(results: EvalResults, head: str, names: list[str],
                        groups: dict[str, tuple[int, ...]]) -> list[Section]:
    """Figure 2 folded into superclasses (table 1 groups)."""
    counts = confusion_counts(results.labels, results.adv_pred[head], len(names))
    matrix = row_percent(fold_superclasses(counts, {g: list(m) for g, m in groups.items()}))
    labels = list(groups)
    csv = File("superclass_csv", tables.path_of("superclass_confusion.csv"), tables.matrix_csv(matrix, labels, labels))
    figure = Figure("fig_superclass_confusion", figures.path_of("superclass_confusion.png"), figures.plot_confusion,
                    (matrix, labels, labels), {"title": f"{head}: superclasses",
                                               "xlabel": "predicted superclass (under attack)",
                                               "ylabel": "true superclass"})
    return [Section(f"Superclass confusion under {head}",
                    "The confusion matrix folded into superclasses, in percent of the true superclass: "
                    "off-diagonal cells show how often attacks cross superclass borders.",
                    figure=figure, files=(csv,))]


def classifier_sentence(meta: dict[str, Any] | None) -> str:
    """Which layer figure 4 reads, when it is not the model's ``head`` (outside models): one sentence."""
    where = (meta or {}).get("classifier")
    return "" if where in (None, "head") else f" The model has no head: the classifier is its {where}."


def _norm_section(summary: Summary, note: str = "") -> list[Section]:
    """Figure 4: classifier weight norm per class against robustness, with Spearman rho and its CI."""
    names, norm = summary.class_names, summary.claims.weight_norm
    head, rob = norm.attack, norm.robust
    rho = np.nan if rob.rho is None else rob.rho
    robust = per_class_array(summary.attacks[head])
    idx = shown_classes(len(names))
    figure = Figure("fig_weight_norms", figures.path_of("weight_norms.png"), figures.plot_norm_vs_robustness,
                    (np.asarray(norm.norms)[idx], robust[idx], [names[i] for i in idx], rho))
    title = "n/a" if np.isnan(rho) else f"{rho:.2f}"
    return [Section(f"Classifier weight norm and robustness (figure 4): Spearman rho = {title}",
                    f"Per class, the L2 norm of its classifier weight row and its robustness under {head}, "
                    f"both min-max normalised; Spearman rank correlation over all {len(names)} classes "
                    f"rho = {_rho(rob)}, against clean accuracy {_rho(norm.clean)}; the intervals come from "
                    "resampling the test examples of each class." + note + sampled_note(len(names)),
                    figure=figure)]


def _flag_line(flag: str | dict[str, str]) -> str:
    """A sanity flag as one line (a :class:`classwise.analysis.sanity.SanityFlag` as JSON, or text)."""
    if isinstance(flag, str):
        return flag
    return f"{flag['check']} [{flag['scope']}]: {flag['detail']}; {flag['suggests']}"


def _checks_section(checks_run: list[str], flags: list[str | dict[str, str]]) -> Section:
    """Which sanity checks ran and how many flags each raised (the flags are under Warnings)."""
    count = {c: sum(isinstance(f, dict) and f["check"] == c for f in flags) for c in checks_run}
    items = tuple(f"{c}: {'passed' if n == 0 else f'{n} flags (see Warnings)'}" for c, n in count.items())
    return Section("Sanity checks", "Checks over the per-sample results, as AutoAttack runs them: "
                   "a flag names the class and what it suggests.", items=items)


def _diagnosis_lines(summary: Summary, homing: dict[str, Any] | None, warns: list[str]) -> list[str]:
    """Summary lines after the headline numbers: weakest classes explained, claims, homing, sanity flags."""
    lines = _weakest_lines(summary) + _claim_lines(summary)
    lines += diagnosis.homing_lines(homing) if homing else []
    lines.append(f"sanity flags: {len(warns)} (see Warnings)" if warns else "sanity flags: none")
    return lines


def _head_sections(ctx: ReportContext, head: str) -> list[Section]:
    """Figures 2, 3, 6 and 5a for the protocol attack (figure 3b when a homing experiment exists).

    They are drawn over the examples that attack saw (a run may hold other samples too).
    """
    names, results = list(ctx.summary.class_names), ctx.results.restricted(ctx.results.evaluated(head))
    out = _confusion_section(results, head, names)
    if ctx.superclasses and len(names) <= MAX_SHOWN_CLASSES:
        out += _superclass_section(results, head, names, ctx.superclasses)
    out += diagnosis.misclassified_section(results, head, names)
    out += diagnosis.homing_section(ctx.homing, names) if ctx.homing else []
    out += diagnosis.intervals_section(ctx.summary.attacks[head], head)
    return out + diagnosis.variance_section(results, head, names)


def render_markdown(sections: list[Section]) -> str:
    """report.md text (:func:`classwise.report.render.render_markdown`)."""
    return render.render_markdown(sections, TITLE)


def render_html(sections: list[Section], run_dir: Path) -> str:
    """The self-contained report.html (:func:`classwise.report.render.render_html`)."""
    return render.render_html(sections, run_dir, TITLE)


def _summary_sections(ctx: ReportContext) -> list[Section]:
    """Partial model (first, when partial), Summary, Notes, Warnings and the sanity checks that ran."""
    summary = ctx.summary
    warns = sanity_warnings(summary) + [_flag_line(f) for f in ctx.sanity or []]
    lines = _meta_lines(ctx.meta or {}) + _headline_lines(summary) + _overstated_lines(ctx.sanity or [])
    lines += _diagnosis_lines(summary, ctx.homing, warns)
    sections = [Section("Partial model", text=summary.partial)] if summary.partial else []
    head = ctx.protocol
    flips = glance.confounds(ctx.results, head, summary.num_classes) if head else None
    sections += [glance.headline_card(summary, ctx.sanity or [], len(warns)), glance.class_table(summary, flips)]
    sections += [Section(STATEMENTS, "Every statistical statement behind the card, one sentence each.",
                         items=tuple(lines), kind="details")]
    sections += [Section("Notes", items=tuple(ctx.notes))] if ctx.notes else []
    sections += [Section("Warnings", items=tuple(warns))] if warns else []
    return sections + ([_checks_section(ctx.checks_run, ctx.sanity or [])] if ctx.checks_run else [])


def build_sections(ctx: ReportContext) -> list[Section]:
    """Every section in order, as values (nothing is written): summary first; above 20 classes the superclass
    view before the class tables."""
    summary, head = ctx.summary, ctx.protocol  # the per-example figures' attack
    names = summary.class_names
    sections = _summary_sections(ctx)
    sections += _gallery_sections(ctx)
    if summary.num_classes > MAX_SHOWN_CLASSES and ctx.superclasses:
        sections += _superclass_view(ctx)
        on_head = ctx.results.restricted(ctx.results.evaluated(head)) if head else None
        sections += _superclass_section(on_head, head, list(names), ctx.superclasses) if head else []
    sections += _table_sections(ctx)
    sections += _difference_section(summary)
    sections += _epoch_section(ctx.metrics, names) if ctx.metrics else []
    if head is not None:
        sections += _head_sections(ctx, head)
        sections += _norm_section(summary, classifier_sentence(ctx.meta)) if summary.claims.weight_norm else []
    return sections + threat_model_sections(summary)


def _gallery_sections(ctx: ReportContext) -> list[Section]:
    """The per-class gallery and the most exchanged pairs, from the saved adversarial examples (when any)."""
    data = ctx.gallery
    if data is None or data.attack not in ctx.results.adv_pred:
        return []
    out = [gallery.gallery_section(data, ctx.results, ctx.summary),
           gallery.confound_section(data, ctx.results, ctx.summary)]
    homed = gallery.homing_section(data, ctx.results, ctx.summary, ctx.homing) if ctx.homing else None
    return out + ([homed] if homed else [])


def write_sections(run_dir: Path, sections: list[Section]) -> dict[str, Path]:
    """Write every section's files, draw its figure and write its gallery thumbnails into ``run_dir``.

    Returns key -> path (a gallery's thumbnails under "gallery:<title>", its first PNG).
    """
    paths: dict[str, Path] = {}
    for s in sections:
        if s.gallery:
            written = render.write_tiles(run_dir, s.gallery)
            paths |= {f"gallery:{s.title}": written[0]} if written else {}
        for f in s.files:
            paths[f.key] = atomic_write(run_dir / f.path, f.text)
        if s.figure:
            paths[s.figure.key] = s.figure.render(run_dir)
    return paths


def write_report(run_dir: Path, ctx: ReportContext) -> dict[str, Path]:
    """Write figures, tables, report.md and report.html into ``run_dir``; return name -> path.

    ``ctx`` carries the per-sample results, their already computed summary and
    the rest (:class:`ReportContext`; ``ReportContext.build`` summarises for you).
    """
    files = RunFiles(Path(run_dir))
    for old in (files.report_md, files.report_html, *files.gallery.glob("*.png"), *files.pairs.glob("*.png")):
        check_replaceable(old)  # only what classwise wrote
        old.unlink(missing_ok=True)  # thumbnails of an earlier report may show other examples
    sections = build_sections(ctx)
    paths = write_sections(files.root, sections)
    paths["report_md"] = atomic_write(files.report_md, render_markdown(sections))
    paths["report_html"] = atomic_write(files.report_html, render_html(sections, files.root))
    return paths


def threat_model_sections(summary: Summary) -> list[Section]:
    """Robustness curves per class, targeted success matrices, and L-inf beside L2 (where present).

    Reads the summary's ``curves``, ``targeted`` and ``norms`` (see
    :func:`classwise.analysis.build_summary`); their files are
    figures/curves_<attack>.png, figures/targeted_<attack>.png,
    tables/targeted_<attack>.csv and tables/norms.{csv,md}. Self-contained:
    nothing else in the report depends on it.
    """
    names = list(summary.class_names)
    out = [_curves_section(attack, c, names) for attack, c in (summary.curves or {}).items()]
    out += [_targeted_section(attack, t, names) for attack, t in (summary.targeted or {}).items()]
    return out + ([_norms_section(summary.norms, names)] if summary.norms else [])


def _nan_grid(rows: tuple[tuple[float | None, ...], ...]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _curves_section(attack: str, c: Curves, names: list[str]) -> Section:
    """Robustness over eps per class (figure) and the median distance per class (table)."""
    overall = np.array([np.nan if v is None else v for v in c.overall], dtype=float)
    figure = Figure(f"fig_curves:{attack}", figures.path_of(f"curves_{slug(attack)}.png"),
                    figures.plot_robustness_curves, (np.array(c.eps), _nan_grid(c.per_class), overall, names),
                    {"norm": c.norm, "title": f"{attack}: robust accuracy over eps"})
    header = ["class", "n", "median distance", "95% interval", "eps at 50%"]
    med = c.median.per_class
    rows = [[n, str(c.n[i]), _dist(med[i].median), f"{_dist(med[i].low)} .. {_dist(med[i].high)}",
             _dist(c.eps50.per_class[i])] for i, n in enumerate(names)]
    return Section(f"Robustness over eps under {attack} ({c.norm})",
                   "Robust accuracy of each class at every radius, from each example's minimal adversarial "
                   "distance found by the minimum-norm attack (robust at eps when the distance exceeds "
                   "eps); below, the median distance per class with a 95% order-statistic interval and "
                   "the eps at which the class falls to 50%.",
                   table_md=tables.simple_markdown(header, rows), table_html=tables.simple_html(header, rows),
                   figure=figure)


def _targeted_section(attack: str, t: Targeted, names: list[str]) -> Section:
    """The class-by-class success matrix of one targeted attack (figure and CSV)."""
    matrix = _nan_grid(t.success)
    csv = File(f"targeted_csv:{attack}", tables.path_of(f"targeted_{slug(attack)}.csv"),
               tables.matrix_csv(matrix, names, names))
    figure = Figure(f"fig_targeted:{attack}", figures.path_of(f"targeted_{slug(attack)}.png"), figures.plot_confusion,
                    (matrix, names, names), {"title": f"{attack}: % reaching the target", "xlabel": "target class"})
    return Section(f"Targeted success under {attack}",
                   "Row i, column j: the percentage of the attacked test images of class i that the attack "
                   "toward class j pushed into class j (blank: never tried). Read it beside the "
                   "untargeted robustness confusion matrix.", figure=figure, files=(csv,))


def _dist(v: float | str | None) -> str:
    return "n/a" if v is None else "none found" if v == "inf" else f"{float(v):.4g}"


def _norms_section(cmp: NormComparison, names: list[str]) -> Section:
    """L-inf beside L2: per class robustness and rank (1 = weakest) under each norm, with Spearman's rho."""
    a = cmp.attacks
    header = ["class", f"L-inf: {a['linf']}", "rank", f"L2: {a['l2']}", "rank"]
    rows = [[n, pct(cmp.per_class["linf"][i]), str(cmp.rank["linf"][i]),
             pct(cmp.per_class["l2"][i]), str(cmp.rank["l2"][i])] for i, n in enumerate(names)]
    md = tables.simple_markdown(header, rows)
    files = (File("norms_md", tables.path_of("norms.md"), md),
             File("norms_csv", tables.path_of("norms.csv"), tables.text_csv(header, rows)))
    rho, p = cmp.spearman.rho, cmp.spearman.p
    agree = "n/a (too few classes or a constant ranking)" if rho is None else f"{rho:.2f} (p = {p:.3g})"
    weak = {n: names[i] if i is not None else "n/a" for n, i in cmp.weakest.items()}
    return Section("Class-wise L-inf against L2",
                   f"Which classes are weak under each threat model: robustness per class under {a['linf']} "
                   f"(L-inf) and {a['l2']} (L2), rank 1 = the weakest class. Weakest: {weak['linf']} (L-inf), "
                   f"{weak['l2']} (L2); Spearman rank correlation of the two class rankings: {agree}.",
                   table_md=md, table_html=tables.simple_html(header, rows), files=files)
