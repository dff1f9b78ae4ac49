"""Sanity checks against small hand-made per-sample results."""

from __future__ import annotations

import numpy as np

from classwise.analysis.sanity import (
    black_box_beats_white_box,
    clean_predictions_collapse,
    more_budget_raises_robustness,
    robust_above_clean,
    sanity_checks,
    zero_gradient_share,
)
from classwise.attacks import attack_is_black_box
from classwise.results import EvalResults

A = np.array


def results(**adv) -> EvalResults:
    # 6 examples, classes a (0) and b (1); clean: example 5 wrong.
    return EvalResults(labels=A([0, 0, 0, 1, 1, 1]), clean_pred=A([0, 0, 0, 1, 1, 0]),
                       adv_pred={k: A(v) for k, v in adv.items()}, class_names=["a", "b"])


def test_registry_knows_which_attacks_are_black_box():
    assert attack_is_black_box("nattack") and attack_is_black_box("square") and attack_is_black_box("transfer:x")
    assert not attack_is_black_box("pgd20") and not attack_is_black_box("cw-inf") and not attack_is_black_box("tpgd:5")


def test_robust_above_clean_flags_the_class_and_overall():
    assert robust_above_clean(results(pgd20=[0, 1, 0, 1, 0, 0])) == []
    flags = robust_above_clean(results(pgd20=[0, 1, 0, 1, 0, 1]))  # example 5: wrong clean, right adv
    assert {f.scope for f in flags} == {"overall", "b"} and all("bug" in f.suggests for f in flags)


def test_black_box_beating_white_box_is_counted_per_class():
    r = results(pgd20=[0, 1, 0, 1, 1, 0], nattack=[0, 1, 1, 0, 1, 0])
    flags = black_box_beats_white_box(r, attack_is_black_box)
    # survive pgd20: examples 0, 2, 3, 4; nattack fools 2 (class a) and 3 (class b)
    by_scope = {f.scope: f.detail for f in flags}
    assert set(by_scope) == {"overall", "a", "b"}
    assert "fooled 2 examples" in by_scope["overall"] and "fooled 1 examples" in by_scope["a"]
    assert all("gradient masking" in f.suggests for f in flags)


def test_more_steps_or_restarts_raising_robustness_is_flagged():
    ok = results(pgd10=[0, 0, 0, 1, 1, 0], pgd20=[0, 1, 0, 1, 1, 0])
    assert more_budget_raises_robustness(ok) == []
    bad = results(pgd10=[1, 1, 0, 1, 1, 0], pgd20=[0, 1, 0, 1, 1, 0])  # pgd20 leaves more robust in class a
    flags = more_budget_raises_robustness(bad)
    assert {f.scope for f in flags} == {"overall", "a"} and "pgd20 leaves" in flags[0].detail
    restarts = results(**{"pgd20": [0, 0, 0, 1, 1, 0], "pgd20@restarts=5": [1, 1, 0, 1, 1, 0]})  # 5/6 -> 3/6
    assert more_budget_raises_robustness(restarts) == []
    restarts_bad = results(**{"pgd20": [1, 1, 0, 1, 1, 0], "pgd20@restarts=5": [0, 0, 0, 1, 1, 0]})  # 3/6 -> 5/6
    assert {f.scope for f in more_budget_raises_robustness(restarts_bad)} == {"overall", "a"}
    older = results(**{"pgd20": [1, 1, 0, 1, 1, 0], "pgd20-r5": [0, 0, 0, 1, 1, 0]})  # a key of older results
    assert {f.scope for f in more_budget_raises_robustness(older)} == {"overall", "a"}


def test_zero_gradient_share_only_counts_clean_correct_examples():
    r = results(pgd20=[0, 0, 0, 1, 1, 0])
    zero = A([False, False, False, False, False, True])  # only the clean-wrong example
    assert zero_gradient_share(zero, r) == []
    zero = A([True, False, False, False, False, False])
    flags = zero_gradient_share(zero, r)
    assert {f.scope: f.detail.split("%")[0] for f in flags} == {"overall": "20.0", "a": "33.3"}


def test_sanity_checks_lists_the_checks_it_ran():
    ran, flags = sanity_checks(results(fgsm=[0, 0, 0, 1, 1, 0]), attack_is_black_box)
    assert ran == ["robust-above-clean", "clean-collapse"] and flags == []
    ran, _ = sanity_checks(results(pgd10=[0] * 6, pgd20=[0] * 6, square=[0] * 6), attack_is_black_box,
                           zero_grad=np.zeros(6, bool))
    assert ran == ["robust-above-clean", "clean-collapse", "black-box-beats-white-box",
                   "more-budget-raises-robustness", "zero-gradient", "headline-overstated"]


def _two_class(fgsm_robust: list[int], pgd_robust: list[int], n: int = 20) -> EvalResults:
    """n examples per class, all clean-correct; the first r of class k robust under each attack."""
    labels = np.repeat([0, 1], n)
    preds = {}
    for name, robust in (("fgsm", fgsm_robust), ("pgd40", pgd_robust)):
        pred = 1 - labels
        for k, r in enumerate(robust):
            pred[np.flatnonzero(labels == k)[:r]] = k
        preds[name] = pred
    return EvalResults(labels, labels.copy(), preds, ["a", "b"])


def test_single_step_far_weaker_flags_the_class_over_15_points():
    from classwise.analysis.sanity import single_step_far_weaker

    # class a: FGSM 90%, PGD 50% (40 points); class b: 60% vs 50% (10 points); overall 75 vs 50 (25)
    flags = single_step_far_weaker(_two_class([18, 12], [10, 10]))
    assert {f.scope for f in flags} == {"overall", "a"}
    a = next(f for f in flags if f.scope == "a")
    assert "fgsm leaves 90.0% robust, pgd40 50.0%" in a.detail and "catastrophic overfitting" in a.suggests
    assert single_step_far_weaker(_two_class([13, 13], [10, 10])) == []  # exactly 15 points: not flagged


def test_single_step_gap_must_pass_a_paired_test_and_share_the_threat_model():
    """Ten images a class: 3 more left robust by FGSM is 30 points, but exact McNemar p = 0.25, not a flag."""
    from classwise.analysis.sanity import single_step_far_weaker

    noise = _two_class([5, 5], [2, 5], n=10)
    assert single_step_far_weaker(noise) == []
    strong = _two_class([10, 5], [2, 5], n=10)  # 8 discordant, all one way: p = 0.0078, Holm 0.016
    assert {f.scope for f in single_step_far_weaker(strong)} == {"overall", "a"}
    strong.facts = {"fgsm": {"family": "fgsm", "norm": "linf", "eps": 8 / 255},
                    "pgd40": {"family": "pgd", "steps": 40, "norm": "l2", "eps": 0.5}}
    assert single_step_far_weaker(strong) == []  # L-inf FGSM against L2 PGD: not comparable


def test_single_step_check_runs_only_with_both_kinds():
    ran, flags = sanity_checks(_two_class([18, 12], [10, 10]), attack_is_black_box)
    assert "single-step-far-weaker" in ran and any(f.check == "single-step-far-weaker" for f in flags)
    only = _two_class([18, 12], [10, 10])
    del only.adv_pred["pgd40"]
    assert "single-step-far-weaker" not in sanity_checks(only, attack_is_black_box)[0]



def test_clean_collapse_flags_a_model_that_predicts_one_class():
    labels = np.repeat(np.arange(4), 25)  # 100 examples, 4 balanced classes
    names = ["a", "b", "c", "d"]
    collapsed = np.where(np.arange(100) < 92, 2, labels)  # 92 of 100 predicted "c"
    flags = clean_predictions_collapse(EvalResults(labels, collapsed, class_names=names))
    assert [(f.check, f.scope) for f in flags] == [("clean-collapse", "overall")] and "92.0%" in flags[0].detail
    healthy = np.where(np.arange(100) < 40, 2, labels)  # a poor but not collapsed model
    assert clean_predictions_collapse(EvalResults(labels, healthy, class_names=names)) == []
    skewed = np.r_[np.full(95, 1), np.arange(5) % 4]  # the labels are 95% one class: predicting it is fine
    assert clean_predictions_collapse(EvalResults(skewed, np.full(100, 1), class_names=names)) == []


# --- the headline overstated by its protocol attack ------------------------------------------


def _pair(flip_ref_only: dict[int, int], flip_att_only: dict[int, int], per_class: int = 20,
          base_robust: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.7, 0.8, 0.8, 0.9, 0.9)) -> EvalResults:
    """10 classes of ``per_class`` clean-correct examples; pgd40 (the protocol) robust on a
    ``base_robust`` share of each class. ``flip_ref_only[k]`` examples of class k that pgd40 leaves
    robust are fooled by apgd-t only; ``flip_att_only[k]`` that pgd40 fools survive apgd-t."""
    labels = np.repeat(np.arange(10), per_class)
    ref, att = labels.copy(), labels.copy()
    wrong = (labels + 1) % 10
    for k, share in enumerate(base_robust):
        idx = np.flatnonzero(labels == k)
        robust = int(round(share * per_class))
        ref[idx[robust:]] = wrong[idx[robust:]]  # pgd40 fools the tail of the class
        att[idx[robust:]] = wrong[idx[robust:]]
        assert flip_ref_only.get(k, 0) <= robust and flip_att_only.get(k, 0) <= per_class - robust
        att[idx[robust - flip_ref_only.get(k, 0):robust]] = wrong[idx[0]]  # apgd-t fools more
        att[idx[robust:robust + flip_att_only.get(k, 0)]] = k  # and misses a few pgd40 found
    return EvalResults(labels=labels, clean_pred=labels.copy(), adv_pred={"pgd40": ref, "apgd-t": att},
                       class_names=[f"c{k}" for k in range(10)])


def test_overstatement_fires_on_a_constructed_pair_and_says_where():
    from classwise.analysis import headline_overstated

    # apgd-t fools 5 more examples in each of the 3 weakest classes and 1 more in one strong class
    res = _pair({0: 5, 1: 5, 2: 5, 8: 1}, {})
    flags = headline_overstated(res)
    overall = [f for f in flags if f.scope == "overall"]
    assert len(overall) == 1 and overall[0].check == "headline-overstated"
    detail = overall[0].detail
    assert "apgd-t leaves 58.0% robust where pgd40 leaves 66.0% on the same 200 examples (-8.0 points" in detail
    assert "c0 -25.0, c1 -25.0, c2 -25.0" in detail  # per class, weakest first: the weak classes lose most
    assert "rho of robustness under pgd40 and its loss: -" in detail
    assert "classes changing rank (1 = least robust): c9 9->10" in detail  # c8 no longer ties with c9
    assert "pgd40 overstates robustness" in overall[0].suggests
    # 5 of 20 in one class (b = 5, c = 0, p = 0.0625) is not significant per class after Holm; 10 of 20 is
    assert {f.scope for f in flags} == {"overall"}
    strong = headline_overstated(_pair({0: 6, 4: 10}, {}))
    assert {f.scope for f in strong} == {"overall", "c4"}
    assert "apgd-t leaves 20.0% robust where pgd40 leaves 70.0% on the same 20 examples (-50.0 points, Holm" in next(
        f for f in strong if f.scope == "c4").detail
    assert "c4 5->2" in next(f for f in strong if f.scope == "overall").detail  # c4 falls to second weakest


def test_overstatement_stays_quiet_on_noise_level_differences():
    from classwise.analysis import headline_overstated

    # equally strong attacks with different random starts: each misses what the other finds
    assert headline_overstated(_pair({0: 2, 3: 2, 5: 2, 7: 2}, {1: 2, 4: 2, 6: 2, 8: 2})) == []
    # a slightly stronger attack: 8 more fooled, 3 fewer (2.5 points of 200, McNemar p = 0.23)
    assert headline_overstated(_pair({0: 2, 2: 2, 4: 2, 6: 2}, {1: 1, 5: 1, 9: 1})) == []
    # the protocol attack stronger than the other: never an overstatement
    assert headline_overstated(_pair({}, {0: 5, 1: 5, 2: 5, 3: 5})) == []


def test_sanity_report_runs_every_applicable_check_from_python(mnist_mlp):
    from classwise.analysis import sanity_report
    from classwise.evaluate import evaluate

    model, x, y = mnist_mlp
    res = evaluate(model, x[:100], y[:100], ["fgsm", "pgd10", "square"], eps=0.1, device="cpu", progress=False)
    assert res.extras["zero_grad"].shape == (100,)
    report = sanity_report(res)
    assert {"robust-above-clean", "black-box-beats-white-box", "zero-gradient", "headline-overstated"} <= set(
        report.checks)
    ran, flags = sanity_checks(res, attack_is_black_box, res.extras["zero_grad"])
    assert report.checks == tuple(ran) and report.flags == tuple(flags)  # what `classwise evaluate` runs
    assert str(report).splitlines()[0].startswith("sanity checks run: robust-above-clean")
    assert report.to_json()["checks"] == list(report.checks)


def test_report_summary_says_when_the_protocol_attack_overstates(tmp_path):
    from classwise.analysis import headline_overstated
    from classwise.analysis.sanity import flags_to_json
    from classwise.report.build import ReportContext, write_report

    res = _pair({0: 6, 4: 10}, {})
    flags = headline_overstated(res)
    write_report(tmp_path, ReportContext.build(res, sanity=flags_to_json(flags), checks_run=["headline-overstated"]))
    md = (tmp_path / "report.md").read_text()
    card, summary_part = md.split("## At a glance")[1].split("## ")[0], md.split("## Statistical statements")[1].split("## ")[0]
    assert "`headline-overstated: overall`" in card  # a badge on the card, spelt out below
    assert "the protocol attack overstates robustness: apgd-t leaves 58.0% robust where pgd40 leaves 66.0%" in (
        summary_part)
    assert "robust accuracy under pgd40" in summary_part
