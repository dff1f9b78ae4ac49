"""The answer first: the report's headline card and its one per-class table, weakest class first.

The card says how robust the model is overall (clean and honest robust accuracy,
95% Wilson intervals), which classes are weakest and strongest (with their
intervals, or "tied" when the intervals overlap), the attack suite with its cost
where the summary records one, and the sanity flags as short badges. The table
shows per class its clean accuracy, the paper's protocol attack and the honest
worst case (the summary's headline), each with its 95% interval drawn inline.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..analysis import confusion_counts
from ..analysis.schema import AccuracyBlock, RankCall, Summary
from ..results import EvalResults
from . import tables
from .render import picker_html
from .section import Section, pct

MAX_NAMED = 5  # "tied with" lists name at most this many classes


def ci(ci: tuple | None) -> str:
    """" [lo, hi]" of a 95% interval, "" when undefined."""
    return "" if not ci or ci[0] is None else f" [{ci[0]:.1f}, {ci[1]:.1f}]"


def names_of(indices: tuple[int, ...], names: tuple[str, ...]) -> str:
    """Class names, at most :data:`MAX_NAMED` of them, then "and N more"."""
    shown = ", ".join(names[i] for i in indices[:MAX_NAMED])
    return shown + (f" and {len(indices) - MAX_NAMED} more" if len(indices) > MAX_NAMED else "")


def weakest_first(summary: Summary) -> list[int]:
    """Classes worst first under the headline attack (clean accuracy without one); empty classes last."""
    v = np.array([np.inf if x is None else x for x in summary.block(summary.headline).per_class])
    return [int(i) for i in np.argsort(v, kind="stable")]


def _class_call(block: AccuracyBlock, call: RankCall | None, names: tuple[str, ...]) -> str:
    """"cat 30.0% [10.8, 60.3]" when significant, else "tied: cat 30.0% [...] with ship, car"."""
    if call is None:
        return all_tied(block) or "n/a"
    own = f"{names[call.index]} {pct(block.per_class[call.index])}{ci(block.ci95[call.index])}"
    return own if call.significant else f"tied: {own} with {names_of(call.tied_with, names)} (intervals overlap)"


def all_tied(block: AccuracyBlock) -> str | None:
    """"none: all 10 classes tied at 0.0%" when every class has the same value (gap 0), else None."""
    values = [v for v in block.per_class if v is not None]
    if block.gap != 0 or not values:
        return None
    return f"none: all {len(values)} classes tied at {pct(values[0])}"


def cost_text(name: str, block: AccuracyBlock) -> str:
    """"strong: 214 gradient passes per example" when the block records its cost, else the name."""
    cost = getattr(block, "cost", None)
    if cost is None:
        return name
    return f"{name}: {cost.per_example} gradient passes per example"


def _badges(sanity: list[str | dict[str, str]], warns: int) -> tuple[str, ...]:
    """Sanity flags as short badges: one per check and scope (text flags by their first words)."""
    out: list[str] = []
    for flag in sanity:
        badge = f"{flag['check']}: {flag['scope']}" if isinstance(flag, dict) else " ".join(flag.split()[:4])
        out += [] if badge in out else [badge]
    extra = warns - len(sanity)
    return tuple(out + ([f"{extra} more warnings"] if extra > 0 else [])) or ("no sanity flags",)


def is_worst_case(summary: Summary, name: str) -> bool:
    """Whether attack entry ``name`` is a per-example worst case over other entries (not an attack run)."""
    basis = summary.headline_basis
    return (basis is not None and name == basis.attack and len(basis.over) > 1) or name.split("@")[0] == "worst"


def headline_card(summary: Summary, sanity: list[str | dict[str, str]], warns: int) -> Section:
    """The answer first: overall accuracy, weakest and strongest class, the attack suite, sanity badges."""
    names, clean, head = summary.class_names, summary.clean, summary.headline
    block = summary.attacks[head] if head else clean
    items = [f"clean accuracy: {pct(clean.overall)}{ci(clean.overall_ci95)}"]
    if head:
        basis = summary.headline_basis
        over = f" (worst case per example over {', '.join(basis.over)})" if basis and len(basis.over) > 1 else ""
        items.append(f"robust accuracy: {pct(block.overall)}{ci(block.overall_ci95)} under {head}{over}")
    items += [f"weakest class: {_class_call(block, block.worst_call, names)}",
              f"strongest class: {_class_call(block, block.best_call, names)}"]
    suite = [cost_text(a, b) for a, b in summary.attacks.items() if not is_worst_case(summary, a)]
    items.append("attack suite: " + ("; ".join(suite) if suite else "none (clean accuracy only)"))
    return Section("At a glance", f"{summary.num_examples} test examples, {len(names)} classes; "
                   "95% intervals in brackets.", items=tuple(items), kind="card", badges=_badges(sanity, warns))


def _columns(summary: Summary) -> list[tuple[str, AccuracyBlock]]:
    """clean, the protocol attack, the honest worst case (the headline), each once."""
    cols = [("clean", summary.clean)]
    for name in (summary.protocol, summary.headline):
        if name is not None and name not in [c for c, _ in cols]:
            label = "honest worst case: " + name if name == summary.headline and name != summary.protocol else name
            cols.append((label, summary.attacks[name]))
    return cols


def _bar(v: Any, lo: Any, hi: Any) -> str:
    """An inline interval bar: the 95% interval as a band, the value as a tick, on a 0-100 scale."""
    if v is None or lo is None:
        return ""
    return (f'<span class="ci" title="{v:.1f} [{lo:.1f}, {hi:.1f}]"><i style="left:{lo:.1f}%;width:{hi - lo:.1f}%">'
            f'</i><b style="left:{v:.1f}%"></b></span>')


def _cell_html(block: AccuracyBlock, i: int) -> str:
    v, (lo, hi) = block.per_class[i], block.ci95[i]
    key = "" if v is None else f' data-v="{v:.4f}"'
    return f"<td{key}>{pct(v)}{html.escape(ci((lo, hi)))} {_bar(v, lo, hi)}</td>"


def confounds(results: EvalResults, attack: str, k: int, top: int = 2) -> list[str]:
    """Per class (K,): its ``top`` confound classes under ``attack``, "dog 40.0%, bird 8.0%" (share of the class)."""
    seen = results.evaluated(attack)
    counts = confusion_counts(results.labels[seen], results.adv_pred[attack][seen], k)
    rows = np.maximum(counts.sum(axis=1), 1)
    np.fill_diagonal(counts, 0)
    order = np.argsort(-counts, axis=1, kind="stable")[:, :top]
    return [", ".join(f"{results.class_names[j]} {100 * counts[i, j] / rows[i]:.1f}%" for j in order[i]
                      if counts[i, j] > 0) for i in range(k)]


def class_table(summary: Summary, flips: list[str] | None = None) -> Section:
    """One row per class, weakest first: n, clean, protocol and honest worst case with interval bars.

    ``flips``: per class (K,) its confound classes under the protocol attack (:func:`confounds`), or None.
    """
    cols, names = _columns(summary), summary.class_names
    order = weakest_first(summary)
    under = f" (flips under {summary.protocol})" if flips is not None else ""
    header = ["class", "n", *(c for c, _ in cols), *(["confounds" + under] if flips is not None else [])]
    extra = (lambda i: [flips[i] or "none"]) if flips is not None else (lambda i: [])
    rows_md = [[names[i], str(summary.clean.n[i]), *(pct(b.per_class[i]) + ci(b.ci95[i]) for _, b in cols),
                *extra(i)] for i in order]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f'<tr data-class="{html.escape(names[i])}"><td>{html.escape(names[i])}</td>'
                   f'<td data-v="{summary.clean.n[i]}">{summary.clean.n[i]}</td>'
                   + "".join(_cell_html(b, i) for _, b in cols)
                   + "".join(f"<td>{html.escape(e)}</td>" for e in extra(i)) + "</tr>" for i in order)
    table_html = (picker_html(names) + f'<div class="scroll"><table class="classes"><thead><tr>{head}</tr></thead>'
                  f"<tbody>{body}</tbody></table></div>")
    return Section("Class by class", f"Accuracy (%) of each class with its 95% interval (bar: the interval on "
                   f"0-100, tick: the value), weakest first under {summary.headline or 'clean'}; click a column "
                   "to sort by it.", table_md=tables.simple_markdown(header, rows_md), table_html=table_html)
