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

``--robustbench`` evaluates the *released* models the paper used, as RobustBench
serves them (CIFAR-10, L-inf): Madry-style training ``Engstrom2019Robustness``,
TRADES ``Zhang2019Theoretically``, MART ``Wang2020Improving`` and RST
``Carmon2019Unlabeled``, with the same five attacks (eps 8/255; the transfer
attack's surrogate is RobustBench's ``Standard`` model). Weights are downloaded
into ``--model-dir`` (RobustBench's layout ``DIR/cifar10/Linf/<name>.pt``) or read
from there offline. A GPU job; ``--examples N`` evaluates a class-balanced sample,
``--quick`` only FGSM and PGD-20 (a smoke test):

    python experiments/table2.py --robustbench --model-dir models --data-root ~/data
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from _common import ensure_run, load, out_dir, parser, run_script, write_text

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


def stored_key(facts: dict[str, dict], cfg: AttackConfig) -> str | None:
    """The key the run keeps ``cfg``'s results under (its recorded config is ``cfg``), if it has them.

    Not ``cfg.name``: a preset's PGD-20 (step 0.007) holds "pgd20", and table 2's
    (step 0.003) is then kept beside it as "pgd20@step=0.003".
    """
    want = dataclasses.asdict(cfg)
    return next((key for key, f in facts.items() if f.get("config") == want), None)


def defence_blocks(args, defence: str, eps: float, step: float, surrogate) -> dict[str, dict]:
    """Attack name -> accuracy block of one defence, for the five attacks of table 2."""
    run = ensure_run(args, defence)
    wanted = full_set_attacks(eps, step, surrogate)
    missing = tuple(a for a in wanted if stored_key(read_json(run / "meta.json")["attacks"], a) is None)
    if missing:  # the run keeps what it has; only the missing attacks run
        evaluate_run(run, attacks=missing)
    summary, facts = read_json(run / "summary.json"), read_json(run / "meta.json")["attacks"]
    blocks = {a.name.split(":")[0]: summary["attacks"][stored_key(facts, a)] for a in wanted}
    return blocks | sample_blocks(run, eps, args.quick)


ROBUSTBENCH = {"Madry": "Engstrom2019Robustness", "TRADES": "Zhang2019Theoretically",
               "MART": "Wang2020Improving", "RST": "Carmon2019Unlabeled"}
SURROGATE = "Standard"  # RobustBench's standard-trained WideResNet-28-10: the transfer attack's surrogate


def robustbench_run(args, name: str, attacks: tuple[AttackConfig, ...]) -> Path:
    """The evaluated run of RobustBench model ``name`` (made, and attacked with what it lacks, as needed)."""
    from classwise.pipeline import OutsideModel, create_outside_run, outside_config
    from classwise.runs import Run

    folder = (args.runs or Path("runs/experiments/runs-robustbench")) / name
    model = OutsideModel(f"robustbench:{name}", model_dir=args.model_dir)
    sets = [f"data.root={args.data_root}"] if args.data_root else []
    sets += [f"device={args.device}"] if args.device else []
    if not (folder / "model.json").is_file():
        config = outside_config(model, args.dataset, [*sets, *args.sets])
        create_outside_run(model, config, folder, overwrite=folder.exists(), attacks=attacks)
    have = Run.open(folder).summary()["attacks"] if (folder / "summary.json").is_file() else {}
    missing = tuple(a for a in attacks if _key(have, a) is None)
    if missing:
        evaluate_run(folder, attacks=missing, examples=args.examples)
    return folder


def _key(attacks: dict, cfg: AttackConfig) -> str | None:
    """The summary key of ``cfg`` (its base name before ':' or '@'), if the run has it."""
    base = cfg.name.split(":")[0]
    return next((k for k in attacks if k.split("@")[0].split(":")[0] == base), None)


def robustbench_main(args) -> None:
    """Table 2 on the released models (see the module docstring)."""
    from classwise.compare import compare_table

    out = out_dir(args, "table2-robustbench")
    eps, step = 8 / 255, 0.003
    surrogate = robustbench_run(args, SURROGATE, (AttackConfig("fgsm", eps),))
    attacks = full_set_attacks(eps, step, surrogate)
    attacks += () if args.quick else (AttackConfig("cw-inf", eps), AttackConfig("nattack", eps))
    runs = {label: robustbench_run(args, name, attacks) for label, name in ROBUSTBENCH.items()}
    summaries = {label: read_json(run / "summary.json") for label, run in runs.items()}
    names = summaries["Madry"]["class_names"]
    rows = [(f"{label}({LABELS[a.name.split(':')[0]]})", summaries[label]["attacks"][_key(summaries[label]["attacks"], a)])
            for a in attacks for label in runs]
    write_text(out / "table2.csv", blocks_csv(rows, names, corner="defence(attack)"))
    compare_table(list(runs.values()), out / "compare")
    print(write_text(out / "table2.md", blocks_markdown(rows, names, corner="Defenses(Attacks)")).read_text())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--robustbench", action="store_true", help="the released RobustBench models the paper used")
    p.add_argument("--model-dir", default="models", help="RobustBench model_dir (DIR/cifar10/Linf/<name>.pt)")
    p.add_argument("--dataset", default="cifar10", help="with --robustbench: cifar10, or imagefolder with "
                   "--data-root pointing at a CIFAR-10 image folder (e.g. cifar10-jpeg75)")
    p.add_argument("--examples", type=int, default=None, help="with --robustbench: a class-balanced test sample")
    args = p.parse_args()
    if args.robustbench:
        robustbench_main(args)
        return
    out = out_dir(args, "table2")
    eps, step = (0.3, 0.03) if args.quick else (0.031, 0.003)
    surrogate = ensure_run(args, "standard")
    blocks = {d: defence_blocks(args, d, eps, step, surrogate) for d in DEFENCES}
    names = read_json(surrogate / "summary.json")["class_names"]
    rows = [(f"{DEFENCES[d]}({LABELS[a]})", blocks[d][a]) for a in LABELS for d in DEFENCES]
    write_text(out / "table2.csv", blocks_csv(rows, names, corner="defence(attack)"))
    print(write_text(out / "table2.md", blocks_markdown(rows, names, corner="Defenses(Attacks)")).read_text())


if __name__ == "__main__":
    run_script(main)
