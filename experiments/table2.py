"""Table 2: class-wise robustness of Madry, TRADES and MART under FGSM, PGD-20, CW-inf, transfer and N-Attack.

Paper (CIFAR-10, eps 0.031): FGSM with random start (step eps here; the paper
gives no step), PGD-20 step 0.003 with random start, CW-inf (tau search, 5
binary-search steps, up to 1000 iterations, lr 0.005, c0 0.01, tau x0.9), a
transfer attack (PGD-20 crafted on a standard-trained model of the same
architecture), and N-Attack (population 300, sigma 0.1, lr 0.02). CW-inf and
N-Attack run on a class-balanced sample of 200 test images per class. RST
(Carmon et al.) needs 500k extra unlabeled images and is left out. The paper's
Madry model is a WideResNet-32-10: add ``--set model.name=wideresnet --set
model.kwargs={depth: 34, width: 10}`` for the WRN setting (same for all rows).
``--quick``: mnist5k, 3 epochs per model, eps 0.3, PGD step 0.03; CW-inf with
2 binary-search steps of up to 100 iterations and N-Attack with population 100
and 10 iterations, both on 5 images per class.

    python experiments/table2.py --quick
"""

from __future__ import annotations

from _common import ensure_run, load, out_dir, parser, write_text

from classwise.analysis import accuracy_block
from classwise.attacks import create_attack
from classwise.config import AttackConfig
from classwise.data import class_balanced_indices
from classwise.evaluate import evaluate
from classwise.pipeline import evaluate_run
from classwise.report.tables import blocks_csv, blocks_markdown
from classwise.fileio import read_json

DEFENCES = {"madry": "Madry", "trades": "TRADES", "mart": "MART"}
LABELS = {"fgsm-rs": "FGSM", "pgd20": "PGD", "cw-inf": "CW-inf", "transfer": "Transfer-based attack",
          "nattack": "N-Attack"}


def full_set_attacks(eps: float, step: float, surrogate) -> tuple[AttackConfig, ...]:
    """FGSM (random start), PGD-20 and the transfer attack: run on the whole evaluation set."""
    return (AttackConfig("fgsm-rs", eps, eps), AttackConfig("pgd20", eps, step),
            AttackConfig(f"transfer:{surrogate}", eps, step))


def sample_blocks(run, eps: float, quick: bool) -> dict[str, dict]:
    """CW-inf and N-Attack on a class-balanced sample (200 per class; quick 5): accuracy blocks."""
    config, data, model, x, y = load(run)
    idx = class_balanced_indices(y, 5 if quick else 200, seed=config.seed)
    cw = {"binary_search_steps": 2, "max_iterations": 100} if quick else {}
    na = {"population": 100, "max_iterations": 10} if quick else {}
    attacks = {"cw-inf": create_attack("cw-inf", model, eps, **cw),
               "nattack": create_attack("nattack", model, eps, **na)}
    res = evaluate(model, x[idx], y[idx], attacks, class_names=data.class_names, device=config.device,
                   seed=config.seed, batch_size=config.eval.batch_size)
    res.save(run / "table2_sample.npz")
    return {name: accuracy_block(res.labels, res.adv_pred[name], res.num_classes) for name in attacks}


def defence_blocks(args, defence: str, eps: float, step: float, surrogate) -> dict[str, dict]:
    """Attack name -> accuracy block of one defence, for the five attacks of table 2."""
    run = ensure_run(args, defence)
    wanted = full_set_attacks(eps, step, surrogate)
    if not all(a.name in read_json(run / "summary.json")["attacks"] for a in wanted):
        evaluate_run(run, attacks=wanted)
    summary = read_json(run / "summary.json")
    blocks = {a.name.split(":")[0]: summary["attacks"][a.name] for a in wanted}
    return blocks | sample_blocks(run, eps, args.quick)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    out = out_dir(args, "table2")
    eps, step = (0.3, 0.03) if args.quick else (0.031, 0.003)
    surrogate = ensure_run(args, "standard")
    blocks = {d: defence_blocks(args, d, eps, step, surrogate) for d in DEFENCES}
    names = read_json(surrogate / "summary.json")["class_names"]
    rows = [(f"{DEFENCES[d]}({LABELS[a]})", blocks[d][a]) for a in LABELS for d in DEFENCES]
    write_text(out / "table2.csv", blocks_csv(rows, names, corner="defence(attack)"))
    print(write_text(out / "table2.md", blocks_markdown(rows, names, corner="Defenses(Attacks)")).read_text())


if __name__ == "__main__":
    main()
