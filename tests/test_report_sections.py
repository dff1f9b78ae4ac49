"""Report sections as values: built from a summary in memory, nothing written until the writer runs."""

import numpy as np
import pytest
from summary_cases import NAMES, rich_kwargs, rich_results

from classwise.analysis import robustness_confusion, summarize
from classwise.report import build, figures
from classwise.report.build import (
    ReportContext,
    build_sections,
    render_markdown,
    write_sections,
)


def _boom(*args, **kwargs):
    raise AssertionError("building a section wrote a file")


@pytest.fixture(scope="module")
def sections():
    mp = pytest.MonkeyPatch()
    mp.setattr(build, "atomic_write", _boom)
    mp.setattr(figures, "_save", _boom)
    try:
        kw = rich_kwargs()
        ctx = ReportContext.build(rich_results(), head_weight=kw["head_weight"], superclasses=kw["superclasses"],
                                  checks_run=["headline-overstated"], sanity=kw["sanity"]["flags"])
        return ctx, {s.title: s for s in build_sections(ctx)}
    finally:
        mp.undo()


def _table_rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]


def test_summary_section_names_the_weakest_class(sections):
    ctx, by_title = sections
    pgd = ctx.summary.attacks["pgd20"]
    items = by_title["Statistical statements"].items
    assert f"least robust class: {NAMES[pgd.worst_class]} (" in "\n".join(items)
    assert any(i.startswith(f"weak class {NAMES[ctx.summary.claims.weakest[0].index]}:") for i in items)
    assert by_title["Warnings"].items[-1] == "headline-overstated [cat]: d; s"
    assert f"sanity flags: {len(by_title['Warnings'].items)} (see Warnings)" in items
    assert by_title["Sanity checks"].items == ("headline-overstated: 1 flags (see Warnings)",)
    w = pgd.worst_class_interval
    line = next(i for i in items if i.startswith("worst-class robust accuracy:"))
    assert f"{w.percent:.1f}% [{w.low:.1f}, {w.high:.1f}]" in line
    assert all(NAMES[c] in line for c in w.candidates)
    assert any(i.startswith(f"spread over classes: std {pgd.spread.std:.1f} points") for i in items)


def test_class_tables_have_one_row_per_class_or_attack(sections):
    ctx, by_title = sections
    table = _table_rows(by_title["Class-wise accuracy and robustness (table 2)"].table_md)
    assert [r[0] for r in table] == ["clean", *ctx.summary.attacks] and all(len(r) == 2 + len(NAMES) for r in table)
    curves = _table_rows(by_title["Robustness over eps under fmn30@norm=l2 (l2)"].table_md)
    assert [r[0] for r in curves] == NAMES
    assert [r[1] for r in curves] == [str(n) for n in ctx.summary.curves["fmn30@norm=l2"].n]
    norms = _table_rows(by_title["Class-wise L-inf against L2"].table_md)
    assert [r[2] for r in norms] == [str(v) for v in ctx.summary.norms.rank["linf"]]


def test_figures_carry_their_data_and_paths(sections):
    ctx, by_title = sections
    fig = by_title["Robustness confusion matrix under pgd20 (figure 2)"].figure
    res = rich_results()
    assert fig.path == "figures/confusion.png" and fig.key == "fig_confusion"
    assert np.allclose(fig.args[0], robustness_confusion(res.labels, res.adv_pred["pgd20"], len(NAMES)))
    assert np.allclose(np.diag(fig.args[0]), ctx.summary.attacks["pgd20"].per_class)
    bars = by_title["Class-wise bars"].figure
    worst_first = bars.args[1]
    assert worst_first[0] == NAMES[ctx.summary.attacks["pgd20"].worst_class]
    assert "![Class-wise bars](figures/classwise_bars.png)" in render_markdown(list(by_title.values()))


def test_files_belong_to_their_sections(sections):
    ctx, by_title = sections
    table_files = {f.key for f in by_title["Class-wise accuracy and robustness (table 2)"].files}
    assert table_files == {"table_csv", "table_ci_csv", "table_md", *(f"confusion_csv:{a}" for a in ctx.summary.attacks)}
    diff = by_title["Difference against pgd20 (tables 3, 4 and 6)"]
    assert [f.path for f in diff.files] == ["tables/difference.md", "tables/difference.csv",
                                            "tables/difference_tests.csv"]
    csv_rows = diff.files[1].text.splitlines()
    assert csv_rows[0] == "Attack - pgd20,Total," + ",".join(NAMES)
    # the attacks of pgd20's threat model only (L-inf, eps 0.031): the L2 fmn30 is no difference of attacks
    assert [r.split(",")[0] for r in csv_rows[1:]] == ["fgsm", "pgd10@target=all"]
    assert diff.files[0].text == diff.table_md


def test_writer_writes_exactly_the_sections_files(sections, tmp_path):
    _, by_title = sections
    chosen = [by_title["Difference against pgd20 (tables 3, 4 and 6)"],
              by_title["Number of classes per robustness interval under pgd20 (figure 6)"]]
    paths = write_sections(tmp_path, chosen)
    assert set(paths) == {"difference_md", "difference_csv", "difference_tests_csv", "intervals_csv", "fig_intervals"}
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["figures/robustness_intervals.png", "figures/robustness_intervals.svg",
                       "tables/difference.csv", "tables/difference.md", "tables/difference_tests.csv",
                       "tables/robustness_intervals.csv"]
    assert paths["difference_md"].read_text() == chosen[0].files[0].text


def test_context_reads_summary_json_into_the_typed_summary():
    res = rich_results()
    ctx = ReportContext(res, summarize(res))
    assert ctx.summary.attacks["pgd20"].worst_class == ReportContext.build(res).summary.attacks["pgd20"].worst_class
    assert ctx.protocol == "pgd20" and ctx.superclasses is None
