"""The null simulations behind the record's tests (docs/statistics.md quotes their output).

For each test of ``classwise.analysis.verdicts``: what the statistic does when the
null holds, at the class rates and counts of the saved records (docs/reproduction/).

1. Section 3.3 (weak classes hurt more): every class with the same margin
   distribution, shifted (logistic or normal), FGSM's per-class robustness as
   observed, the stronger attack's overall as observed. Mean null rho of the
   absolute drop, the relative loss and the logit and probit drops against the weaker
   robustness, and how often each one-sided permutation test rejects at 0.05;
   and how often both scales reject when weaker classes do lose more (power).
2. Figure 2 (symmetry): tables drawn from the quasi-independence fit of each
   record's flips; how often the symmetry test rejects at 0.05 (its size), and
   with a symmetric pair affinity on top of the fit (its power).
3. Figure 4 (correlation over classes): y unrelated to x; size of the permutation test.
4. Table 3 (equivalence): paired TOST at the margin (true difference = margin),
   its rejection rate (size), and at difference 0 (power).

    python experiments/null_simulations.py            # about 40 s of CPU on one core
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from classwise.analysis.verdicts import (
    empirical_logit,
    drop_scale_test,
    empirical_probit,
    paired_equivalence,
    permutation_spearman,
    quasi_independence,
    shifted_margin_null,
    symmetry_r,
    symmetry_test,
)

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("mnist-fast", "cifar10-cpu")


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.stats import spearmanr

    return np.array([spearmanr(a, b).statistic if np.ptp(a) and np.ptp(b) else np.nan for a, b in zip(x, y)])


def floor_ceiling(summary: dict, reps: int, n_perm: int) -> list[str]:
    """Section 3.3 under the shifted-margin null, at ``summary``'s FGSM rates and protocol attack's overall."""
    weak, strong = summary["attacks"]["fgsm"], summary["attacks"][summary["protocol"]]
    n = np.asarray(weak["n"])
    rate = np.asarray(weak["count"]) / n
    lines = []
    for family in ("logistic", "normal"):
        sim = shifted_margin_null(rate, strong["overall"] / 100, n, family=family, reps=reps, seed=1)
        w, s = sim["weak"], sim["strong"]
        absolute = _spearman_rows(w / n, (w - s) / n)
        relative = _spearman_rows(w / n, (w - s) / np.maximum(w, 1))
        lw = empirical_logit(w, n)
        logodds = _spearman_rows(lw, lw - empirical_logit(s, n))
        rej = {scale: np.mean([drop_scale_test(a, b, n, scale=scale, n_perm=n_perm, seed=i).p < 0.05
                               for i, (a, b) in enumerate(zip(w[:200], s[:200]))]) for scale in ("logit", "probit")}
        both = np.mean([max(drop_scale_test(a, b, n, scale=c, n_perm=n_perm, seed=i).p for c in ("logit", "probit"))
                        < 0.05 for i, (a, b) in enumerate(zip(w[:200], s[:200]))])
        pw = empirical_probit(w, n)
        probit = _spearman_rows(pw, pw - empirical_probit(s, n))
        rej_rel = np.mean([permutation_spearman(a / n, (a - b) / np.maximum(a, 1), alternative="less",
                                                n_perm=n_perm, seed=i).p < 0.05
                           for i, (a, b) in enumerate(zip(w[:200], s[:200]))])
        lines.append(f"  {family} margins: mean null rho absolute drop {np.nanmean(absolute):+.2f}, relative loss "
                     f"{np.nanmean(relative):+.2f} (rejects {100 * rej_rel:.0f}%), logit drop "
                     f"{np.nanmean(logodds):+.2f} (rejects {100 * rej['logit']:.0f}%), probit drop "
                     f"{np.nanmean(probit):+.2f} (rejects {100 * rej['probit']:.0f}%); both tests reject "
                     f"{100 * both:.0f}% (one-sided permutation tests at 0.05)")
    return lines


def weak_hurt_power(summary: dict, n_perm: int, reps: int = 200) -> str:
    """How often both scales reject when weaker classes lose more log-odds: drop_k = d (1 + c z_k), z = weakness."""
    from scipy.special import expit, logit

    weak, strong = summary["attacks"]["fgsm"], summary["attacks"][summary["protocol"]]
    n = np.asarray(weak["n"])
    w_rate = np.clip(np.asarray(weak["count"]) / n, 1e-4, 1 - 1e-4)
    mu = logit(w_rate)
    d = float(np.median(empirical_logit(weak["count"], n) - empirical_logit(strong["count"], n)))
    z = (mu.mean() - mu) / mu.std()
    rng = np.random.default_rng(5)
    out = []
    for c in (0.25, 0.5):
        s_rate = expit(mu - d * (1 + c * z))
        w = rng.binomial(n, w_rate, size=(reps, n.size))
        s = rng.binomial(w, s_rate / w_rate)
        both = np.mean([max(drop_scale_test(a, b, n, scale=g, n_perm=n_perm, seed=i).p for g in ("logit", "probit"))
                        < 0.05 for i, (a, b) in enumerate(zip(w, s))])
        out.append(f"c = {c:g}: both tests reject {100 * both:.0f}%")
    return f"  power, logit drop {d:.2f} x (1 + c z), z the class's standardised weakness: " + "; ".join(out)


def symmetry_size(counts: np.ndarray, reps: int) -> str:
    """How often the symmetry test rejects tables drawn from the quasi-independence fit of ``counts``."""
    e = quasi_independence(counts)
    rng = np.random.default_rng(2)
    draws = rng.multinomial(int(round(e.sum())), (e / e.sum()).ravel(), size=reps).reshape(reps, *e.shape)
    rej = np.mean([symmetry_test(d, reps=199, seed=i).p < 0.05 for i, d in enumerate(draws)])
    null_r = np.array([symmetry_r(d) for d in draws])
    affinity = np.exp(rng.normal(0.0, 1.0, size=e.shape))
    sym = e * (affinity + affinity.T) / 2  # a pair-specific affinity, the same both ways
    alt = rng.multinomial(int(round(e.sum())), (sym / sym.sum()).ravel(), size=reps).reshape(reps, *e.shape)
    power = np.mean([symmetry_test(d, reps=199, seed=i).p < 0.05 for i, d in enumerate(alt)])
    lo, hi = np.nanpercentile(null_r, [2.5, 97.5])
    return (f"  null r {np.nanmedian(null_r):.2f} [{lo:.2f}, {hi:.2f}] (observed {symmetry_r(counts):.2f}); "
            f"the test rejects {100 * rej:.1f}% of {reps} null tables at 0.05 and {100 * power:.1f}% of {reps} tables "
            f"with a symmetric pair affinity (lognormal, sd 1)")


def correlation_size(k: int, reps: int, n_perm: int) -> str:
    rng = np.random.default_rng(3)
    rej = np.mean([permutation_spearman(rng.random(k), rng.random(k), n_perm=n_perm, seed=i).p < 0.05
                   for i in range(reps)])
    return f"  K = {k}, y independent of x: rejects {100 * rej:.1f}% of {reps} at 0.05 (two-sided)"


def tost_size(n: int, discordant: float, margin: float, reps: int) -> str:
    """Paired TOST at the margin (size) and at 0 (power), discordant pairs at rate ``discordant``."""
    rng = np.random.default_rng(4)
    out = []
    for diff in (margin, -margin, 0.0):
        p_b, p_a = (discordant + diff) / 2, (discordant - diff) / 2
        cells = rng.multinomial(n, [p_a, p_b, 1 - p_a - p_b], size=reps)
        rej = np.mean([paired_equivalence(int(a), int(b), n, margin)[0].p < 0.05 for a, b, _ in cells])
        out.append(f"difference {100 * diff:+.1f} points: rejects {100 * rej:.1f}%")
    return f"  n {n}, discordant {100 * discordant:.0f}%, margin {100 * margin:g} points: " + "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=Path, default=ROOT / "docs" / "reproduction")
    p.add_argument("--reps", type=int, default=1000)
    args = p.parse_args(argv)
    for preset in PRESETS:
        folder = args.records / preset
        if not (folder / "record.json").is_file():
            continue
        summary = json.loads((folder / "robust" / "summary.json").read_text())
        counts = np.asarray(json.loads((folder / "record.json").read_text())["confusion"]["counts"])
        np.fill_diagonal(counts, 0)
        print(f"{preset}: section 3.3, shifted-margin null ({args.reps} draws; tests on 200, 999 permutations)")
        print("\n".join(floor_ceiling(summary, args.reps, 999)))
        print(weak_hurt_power(summary, 999))
        print(f"{preset}: figure 2, quasi-independence null (200 tables, 199 draws each)")
        print(symmetry_size(counts, 200))
    print("figure 4: permutation test over classes")
    print(correlation_size(10, args.reps, 999))
    print("table 3: paired TOST")
    for n, disc in ((1000, 0.03), (1000, 0.10), (200, 0.05)):
        print(tost_size(n, disc, 0.01, args.reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
