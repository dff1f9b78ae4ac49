"""Write a run's class-wise report: tables, figures, report.md and a self-contained report.html.

Layout written into ``run_dir``::

    figures/*.png                 classwise_bars, confusion, misclassified, robustness_intervals,
                                  [epochs], [weight_norms], [superclass_confusion], [homing],
                                  [probability_variance]
    tables/classwise.{csv,md}     table 2 layout: clean and every attack
    tables/confusion_<attack>.csv robustness confusion (percent of row) per attack
    tables/misclassified_<attack>.csv, robustness_intervals.csv, [homing.csv], [probability_variance.csv]
    report.md, report.html        summary, notes, warnings, each table and figure

The summary comes first: overall numbers, best and worst class, largest gap,
Spearman rho of weight norms (with a head weight), homing share (with a homing
experiment) and the number of sanity flags. Every later section starts with
one sentence saying what it shows. With more than 20 classes, per-class line
figures (1 and 4) show a seeded sample of 12 classes, as the paper does.

The headline numbers (overall robustness, most and least robust class) are
those of :func:`classwise.analysis.headline_attack`: the per-example worst
case over the whole suite ("worst") when the run has one, and the summary
says so; the paper's protocol attack (:func:`classwise.analysis.protocol_attack`,
the PGD attack with the most steps) is reported beside it under its own
name and draws the per-example figures (confusion, superclasses, homing,
intervals, probabilities, weight norms). ``headline`` overrides both.
Every file is written to a temporary name and renamed, report.html last, and an
old report.md / report.html is removed first, so a crash never leaves a report
that looks complete.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import (
    confusion_counts,
    fold_superclasses,
    headline_attack,
    norm_robustness_correlation,
    protocol_attack,
    robustness_confusion,
    row_percent,
    sanity_warnings,
    summarize,
    weight_norms,
)
from ..results import EvalResults
from . import diagnosis, figures, tables
from .section import Section, pct, sampled_note, shown_classes, slug
from ..fileio import atomic_write

TITLE = "Class-wise robustness report"
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}.note{color:#555;font-size:.85em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    """Dataset, model and eps first, then any other meta entries."""
    keys = [k for k in ("dataset", "model", "eps") if k in meta]
    keys += [k for k in meta if k not in keys]
    return [f"{k}: {meta[k]}" for k in keys]


def _headline_lines(summary: dict[str, Any], head: str | None) -> list[str]:
    """Clean and robust overall, most and least robust class and the largest gap."""
    names, clean = summary["class_names"], summary["clean"]
    lines = [f"test examples: {summary['num_examples']}, classes: {len(names)}",
             f"clean accuracy: {pct(clean['overall'])}"]
    block, what = (summary["attacks"][head], "robust") if head else (clean, "accurate")
    if head:
        lines.append(f"robust accuracy under {head}: {pct(block['overall'])}{_how(summary, head)}")
    if block["best_class"] is not None:
        best, worst = block["best_class"], block["worst_class"]
        lines += [f"most {what} class: {names[best]} ({pct(block['per_class'][best])})",
                  f"least {what} class: {names[worst]} ({pct(block['per_class'][worst])})",
                  f"largest class gap: {block['gap']:.1f} percentage points"]
    return lines


def _how(summary: dict[str, Any], head: str) -> str:
    """" (worst case per example over ...)" when ``head`` is the summary's headline entry."""
    info = summary.get("headline")
    return f" ({info['text']})" if info and info["attack"] == head and len(info["over"]) > 1 else ""


def _protocol_line(summary: dict[str, Any], head: str | None, protocol: str | None) -> list[str]:
    """The paper's protocol attack under its own name, when the headline is another entry."""
    if protocol is None or protocol == head:
        return []
    block = summary["attacks"][protocol]
    return [f"robust accuracy under {protocol} (the paper's protocol, figures below) on its "
            f"{block['examples']} examples: {pct(block['overall'])}"]


def _table_sections(run_dir: Path, summary: dict[str, Any], results: EvalResults,
                    paths: dict[str, Path]) -> list[Section]:
    """tables/classwise.{csv,md}, one confusion CSV per attack, and the bar figure."""
    names = summary["class_names"]
    paths["table_csv"] = atomic_write(run_dir / "tables/classwise.csv", tables.classwise_csv(summary))
    paths["table_md"] = atomic_write(run_dir / "tables/classwise.md", tables.classwise_markdown(summary))
    for attack, pred in results.adv_pred.items():
        m = results.evaluated(attack)
        matrix = robustness_confusion(results.labels[m], pred[m], len(names))
        paths[f"confusion_csv:{attack}"] = atomic_write(
            run_dir / f"tables/confusion_{slug(attack)}.csv", tables.matrix_csv(matrix, names, names))
    bars = {name: np.array(b["per_class"], dtype=np.float64) for name, b in tables.table_rows(summary)}
    paths["fig_classwise_bars"] = figures.plot_classwise_bars(bars, names, run_dir / "figures/classwise_bars.png")
    return [
        Section("Class-wise accuracy and robustness (table 2)",
                "Accuracy (%) per class on clean test images and under each attack, in the layout "
                "of the paper's table 2.",
                table_md=tables.classwise_markdown(summary), table_html=tables.classwise_html(summary)),
        Section("Class-wise bars", "The same numbers as bars: per class, clean accuracy beside "
                "robustness under each attack.", image=paths["fig_classwise_bars"]),
    ]


def difference_reference(attacks: list[str], head: str | None) -> str | None:
    """The reference of the difference table: PGD-20 (the paper's), else the given (protocol) attack."""
    return "pgd20" if "pgd20" in attacks else head


def _difference_section(run_dir: Path, summary: dict[str, Any], head: str | None,
                        paths: dict[str, Path]) -> list[Section]:
    """tables/difference.{csv,md}: each attack's class-wise robustness minus the reference's."""
    ref = difference_reference(list(summary["attacks"]), head)
    if ref is None or len(summary["attacks"]) < 2:
        return []
    header, rows = tables.difference_header(summary, ref), tables.difference_rows(summary, ref)
    md = tables.simple_markdown(header, rows)
    paths["difference_md"] = atomic_write(run_dir / "tables/difference.md", md)
    paths["difference_csv"] = atomic_write(run_dir / "tables/difference.csv", tables.text_csv(header, rows))
    return [Section(f"Difference against {ref} (tables 3, 4 and 6)",
                    f"Robustness under each attack minus robustness under {ref}, in percentage points, per "
                    "class; negative: the attack is stronger on that class (the paper finds stronger attacks "
                    "gain most on the vulnerable classes).", table_md=md,
                    table_html=tables.simple_html(header, rows))]


def _epoch_section(run_dir: Path, metrics: list[dict], names: list[str], paths: dict[str, Path]) -> list[Section]:
    """Figure 1 from the training log's per-epoch robust class-wise accuracy (skipped if absent)."""
    rows = [(m.get("epoch", i + 1), m["robust"]) for i, m in enumerate(metrics) if m.get("robust")]
    if not rows:
        return []
    nan = float("nan")
    per_class = np.array([[nan if v is None else v for v in r["per_class"]] for _, r in rows], dtype=np.float64)
    overall = np.array([nan if r.get("overall") is None else r["overall"] for _, r in rows], dtype=np.float64)
    idx = shown_classes(len(names))
    paths["fig_epochs"] = figures.plot_classwise_epochs(
        np.array([e for e, _ in rows]), per_class[:, idx], overall, [names[i] for i in idx],
        run_dir / "figures/epochs.png")
    return [Section("Class-wise robustness during training (figure 1)",
                    "Test robustness of each class at each evaluated epoch; the shaded band is the gap "
                    "between the best and the worst class, the dashed line the overall robustness."
                    + sampled_note(len(names)), image=paths["fig_epochs"])]


def _confusion_section(run_dir: Path, results: EvalResults, head: str, names: list[str],
                       paths: dict[str, Path]) -> list[Section]:
    """Figure 2: the robustness confusion matrix of the headline attack."""
    matrix = robustness_confusion(results.labels, results.adv_pred[head], len(names))
    paths["fig_confusion"] = figures.plot_confusion(
        matrix, names, names, run_dir / "figures/confusion.png", title=f"{head}: % of true class")
    return [Section(f"Robustness confusion matrix under {head} (figure 2)",
                    "Row i, column j: the percentage of test images of class i predicted as class j under "
                    "attack; the diagonal is each class's robustness.", image=paths["fig_confusion"])]


def _superclass_section(run_dir: Path, results: EvalResults, head: str, names: list[str],
                        groups: dict[str, list[int]], paths: dict[str, Path]) -> list[Section]:
    """Figure 2 folded into superclasses (table 1 groups)."""
    counts = confusion_counts(results.labels, results.adv_pred[head], len(names))
    matrix = row_percent(fold_superclasses(counts, groups))
    labels = list(groups)
    paths["superclass_csv"] = atomic_write(run_dir / "tables/superclass_confusion.csv",
                                            tables.matrix_csv(matrix, labels, labels))
    paths["fig_superclass_confusion"] = figures.plot_confusion(
        matrix, labels, labels, run_dir / "figures/superclass_confusion.png", title=f"{head}: superclasses",
        xlabel="predicted superclass (under attack)", ylabel="true superclass")
    return [Section(f"Superclass confusion under {head}",
                    "The confusion matrix folded into superclasses, in percent of the true superclass: "
                    "off-diagonal cells show how often attacks cross superclass borders.",
                    image=paths["fig_superclass_confusion"])]


def _norm_stats(summary: dict[str, Any], head: str, weight: np.ndarray) -> dict[str, Any]:
    """Per-class weight norms (K,), robustness (K,) and their Spearman (rho, p) over all classes."""
    names = summary["class_names"]
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[0] != len(names):
        raise ValueError(f"head_weight must be (K={len(names)}, D) like nn.Linear.weight, got {weight.shape}")
    norms = weight_norms(weight)
    robust = np.array([np.nan if v is None else v for v in summary["attacks"][head]["per_class"]])
    rho, p = norm_robustness_correlation(norms, robust)
    return {"norms": norms, "robust": robust, "rho": rho, "p": p}


def _norm_section(run_dir: Path, names: list[str], head: str, stats: dict[str, Any],
                  paths: dict[str, Path]) -> list[Section]:
    """Figure 4: classifier weight norm per class against robustness, with Spearman rho."""
    idx, rho, p = shown_classes(len(names)), stats["rho"], stats["p"]
    paths["fig_weight_norms"] = figures.plot_norm_vs_robustness(
        stats["norms"][idx], stats["robust"][idx], [names[i] for i in idx], rho, run_dir / "figures/weight_norms.png")
    return [Section(f"Classifier weight norm and robustness (figure 4): Spearman rho = {rho:.2f}",
                    f"Per class, the L2 norm of its classifier weight row and its robustness under {head}, "
                    f"both min-max normalised; Spearman rank correlation over all {len(names)} classes "
                    f"rho = {rho:.3f} (p = {p:.3g})." + sampled_note(len(names)),
                    image=paths["fig_weight_norms"])]


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


def _diagnosis_lines(stats: dict[str, Any] | None, homing: dict[str, Any] | None, warns: list[str]) -> list[str]:
    """Summary lines after the headline numbers: Spearman rho, homing share, sanity flags."""
    lines = [f"Spearman rho of classifier weight norm and class robustness: {stats['rho']:.2f}"] if stats else []
    lines += diagnosis.homing_lines(homing) if homing else []
    lines.append(f"sanity flags: {len(warns)} (see Warnings)" if warns else "sanity flags: none")
    return lines


def _head_sections(run_dir: Path, summary: dict[str, Any], results: EvalResults, head: str,
                   superclasses: dict[str, list[int]] | None, homing: dict[str, Any] | None,
                   paths: dict[str, Path]) -> list[Section]:
    """Figures 2, 3, 6 and 5a for the headline attack (figure 3b when a homing experiment exists)."""
    names = summary["class_names"]
    out = _confusion_section(run_dir, results, head, names, paths)
    out += _superclass_section(run_dir, results, head, names, superclasses, paths) if superclasses else []
    out += diagnosis.misclassified_section(run_dir, results, head, names, paths)
    out += diagnosis.homing_section(run_dir, homing, names, paths) if homing else []
    out += diagnosis.intervals_section(run_dir, summary, head, paths)
    return out + diagnosis.variance_section(run_dir, results, head, names, paths)


def render_markdown(sections: list[Section], run_dir: Path) -> str:
    """report.md text; images are linked relative to ``run_dir``."""
    out = [f"# {TITLE}\n"]
    for s in sections:
        out.append(f"## {s.title}\n")
        out += [f"{s.text}\n"] if s.text else []
        out += ["\n".join(f"- {item}" for item in s.items) + "\n"] if s.items else []
        out += [s.table_md] if s.table_md else []
        out += [f"![{s.title}]({s.image.relative_to(run_dir).as_posix()})\n"] if s.image else []
    return "\n".join(out)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(sections: list[Section]) -> str:
    """A self-contained HTML page: inline CSS, PNGs as base64 data URIs, all text escaped."""
    esc = html.escape
    body = [f"<h1>{esc(TITLE)}</h1>"]
    for s in sections:
        body.append(f"<h2>{esc(s.title)}</h2>")
        body += [f"<p>{esc(s.text)}</p>"] if s.text else []
        body += ["<ul>" + "".join(f"<li>{esc(i)}</li>" for i in s.items) + "</ul>"] if s.items else []
        body += [s.table_html] if s.table_html else []
        body += [f'<img src="{_data_uri(s.image)}" alt="{esc(s.title)}">'] if s.image else []
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(TITLE)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(run_dir: Path, results: EvalResults, *, metrics: list[dict] | None = None,
                 head_weight: np.ndarray | None = None, superclasses: dict[str, list[int]] | None = None,
                 meta: dict | None = None, notes: list[str] | None = None,
                 headline: str | None = None, homing: dict[str, Any] | None = None,
                 sanity: list[str | dict[str, str]] | None = None,
                 checks_run: list[str] | None = None) -> dict[str, Path]:
    """Write figures, tables, report.md and report.html into ``run_dir``; return name -> path.

    metrics: per-epoch training-log dicts with "robust": {"overall", "per_class"} (figure 1).
    head_weight: (K, D) classifier weight (figure 4). superclasses: name -> class indices.
    meta: shown first (dataset, model, eps). notes: shown after the summary.
    headline: the attack used for headline numbers and figures 2 and 4 (default: see module doc).
    homing: the homing.json of :func:`classwise.homing.homing_run` (figure 3b).
    sanity: extra sanity flags, listed under Warnings: lines, or dicts with "check",
    "scope", "detail", "suggests" (:func:`classwise.analysis.sanity.flags_to_json`).
    checks_run: names of the sanity checks that ran (a "Sanity checks" section).
    Probabilities in ``results`` (clean_probs, adv_probs[headline]) add figure 5a.
    """
    run_dir = Path(run_dir)
    for old in ("report.md", "report.html"):
        (run_dir / old).unlink(missing_ok=True)
    summary = summarize(results)
    names, head = summary["class_names"], headline or headline_attack(results.attacks)
    if head is not None and head not in results.adv_pred:
        raise ValueError(f"headline attack {head!r} not among {results.attacks}")
    fig = headline or protocol_attack(results.attacks)  # the attack of the per-example figures
    paths: dict[str, Path] = {}
    stats = _norm_stats(summary, fig, head_weight) if fig is not None and head_weight is not None else None
    warns = sanity_warnings(summary) + [_flag_line(f) for f in sanity or []]
    lines = _meta_lines(meta or {}) + _headline_lines(summary, head) + _protocol_line(summary, head, fig)
    lines += _diagnosis_lines(stats, homing, warns)
    sections = [Section("Summary", items=tuple(lines))]
    sections += [Section("Notes", items=tuple(notes))] if notes else []
    sections += [Section("Warnings", items=tuple(warns))] if warns else []
    sections += [_checks_section(checks_run, sanity or [])] if checks_run else []
    sections += _table_sections(run_dir, summary, results, paths)
    sections += _difference_section(run_dir, summary, fig, paths)
    sections += _epoch_section(run_dir, metrics, names, paths) if metrics else []
    if fig is not None:
        sections += _head_sections(run_dir, summary, results, fig, superclasses, homing, paths)
        sections += _norm_section(run_dir, names, fig, stats, paths) if stats else []
    paths["report_md"] = atomic_write(run_dir / "report.md", render_markdown(sections, run_dir))
    paths["report_html"] = atomic_write(run_dir / "report.html", render_html(sections))
    return paths
