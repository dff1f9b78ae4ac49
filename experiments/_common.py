"""What the experiment scripts share: arguments, the defences, quick settings, cached runs.

Every script reproduces one table or figure of the paper. Without ``--quick`` it
uses the paper's setup (a preset of ``configs/``, e.g. ResNet-18 on CIFAR-10 for
100 epochs: a GPU job). With ``--quick`` it swaps in a small recipe on the
embedded ``mnist5k`` sample (or ``--preset mnist --data-root ../shared/data``)
that finishes on a laptop CPU in minutes: same code path, much smaller numbers.

Trained runs are cached in ``--runs`` (default ``runs/experiments/runs[-quick]``)
and shared by all scripts: fig2 reuses the run fig1 trained. A cached run made
with another config is refused, never silently reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classwise.config import RunConfig, load_config
from classwise.errors import ClasswiseError
from classwise.fileio import atomic_write
from classwise.pipeline import evaluate_run, train_run
from classwise.runs import Run

# The quick recipe (MNIST-like data, eps 0.3): Adam, 3 epochs on 2,000 images, PGD-5
# training after a 1-epoch eps warm-up, PGD-20 testing on 500 class-balanced test images.
QUICK = (
    "data.train_examples=2000",
    "train.epochs=3",
    "train.batch_size=64",
    "train.optimizer=adam",
    "train.lr=0.001",
    "train.weight_decay=0.0",
    "train.milestones=[]",
    "train.eps_warmup_epochs=1",
    "train.attack={name: pgd5, eps: 0.3, step_size: 0.1}",
    "train.monitor={name: pgd10, eps: 0.3, step_size: 0.075}",
    "train.monitor_examples=300",
    "train.save_epochs=[]",
    "eval.checkpoint=last",
    "eval.examples=500",
    "eval.attacks=[{name: fgsm, eps: 0.3}, {name: pgd20, eps: 0.3, step_size: 0.03}]",
    'notes=["Quick experiment recipe (--quick), not the paper\'s: '
    '3 epochs of PGD-5 training with Adam on 2000 images."]',
)


@dataclass(frozen=True)
class Defence:
    """A training recipe: its CIFAR-10 preset, and the overrides its quick version needs."""

    preset: str
    quick: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # applied in both modes


DEFENCES = {
    "madry": Defence("cifar10"),  # PGD-AT; its preset follows --preset (the dataset)
    "standard": Defence("cifar10", overrides=("train.method=standard",)),
    "trades": Defence("trades-cifar10", quick=("train.method=trades", "train.beta=6.0")),
    "mart": Defence("mart-cifar10", quick=("train.method=mart", "train.beta=6.0")),
    "he": Defence("he-cifar10", quick=("train.method=he", "model.head={name: he, scale: 15.0, margin: 0.2}")),
    "he-lis": Defence("he-lis-cifar10", quick=("train.method=he-lis",
                                               "model.head={name: he, scale: 1.0, margin: 0.0}")),
    "he-cmp": Defence("he-cmp-cifar10", quick=("train.method=he-cmp", "model.head={name: he, scale: 1.0, margin: 0.0}",
                                               "train.he.probe_examples=500")),
}


def parser(description: str, preset: str = "cifar10") -> argparse.ArgumentParser:
    """Arguments of every experiment script."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small CPU recipe on mnist5k (minutes), not the paper's")
    p.add_argument("--preset", default=None, help=f"dataset preset of the PGD-AT model (default {preset}; "
                   "quick: demo = mnist5k)")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (e.g. ../shared/data)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda ...")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/experiments/<script>)")
    p.add_argument("--runs", type=Path, default=None, help="cache of trained runs shared by the scripts")
    p.add_argument("--set", dest="sets", action="append", default=[], help="config override key=value (repeatable)")
    p.set_defaults(default_preset=preset)
    return p


def run_script(main: Callable[[], int | None]) -> None:
    """Run a script's ``main`` and exit with its code; a user error prints one ``error:`` line and exits 2.

    User errors are what the CLI turns into one line (``classwise.cli.main``):
    :class:`ClasswiseError` (missing weights, a refused cache, a bad preset) and
    ``ValueError``; ``CLASSWISE_DEBUG=1`` shows the traceback instead.
    """
    try:
        code = main()
    except (ClasswiseError, ValueError) as e:
        if os.environ.get("CLASSWISE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)


def out_dir(args: argparse.Namespace, name: str) -> Path:
    """The script's output folder, created."""
    folder = args.out or Path("runs/experiments") / (f"{name}-quick" if args.quick else name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def config_for(args: argparse.Namespace, defence: str = "madry") -> RunConfig:
    """The run config of ``defence``: its paper preset, or the quick recipe with ``--quick``."""
    d = DEFENCES[defence]
    extra = [f"data.root={args.data_root}"] if args.data_root else []
    extra += [f"device={args.device}"] if args.device else []
    if args.quick:
        return load_config(args.preset or "demo", [*QUICK, *d.quick, *d.overrides, *extra, *args.sets])
    preset = (args.preset or args.default_preset) if d.preset == "cifar10" else d.preset
    return load_config(preset, [*d.overrides, *extra, *args.sets])


def run_key(args: argparse.Namespace, defence: str) -> str:
    """Folder name of a cached run: "<dataset preset>-<defence>" or the defence's own preset."""
    d = DEFENCES[defence]
    if args.quick or d.preset == "cifar10":
        return f"{args.preset or ('demo' if args.quick else args.default_preset)}-{defence}"
    return d.preset


def ensure_run(args: argparse.Namespace, defence: str = "madry") -> Path:
    """A trained and evaluated run of ``defence`` from the cache, trained or finished as needed."""
    runs = args.runs or Path("runs/experiments") / ("runs-quick" if args.quick else "runs")
    return ensure_config_run(config_for(args, defence), runs / run_key(args, defence))


def ensure_config_run(config: RunConfig, folder: Path) -> Path:
    """``folder`` trained with ``config`` and evaluated (cached; a run made with another config is refused).

    ``data.stream`` left undecided (null) matches what the cached run decided when it was made.
    """
    if (folder / "config.yaml").is_file():
        saved = Run.open(folder).config
        if config.data.stream is None:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, stream=saved.data.stream))
        if saved != config:
            raise ClasswiseError(f"cached run {folder} was made with another config: delete it or pass --runs")
    if not (folder / "config.yaml").is_file() or not Run(folder).trained:
        resumable = (folder / "checkpoints" / "last.state.safetensors").is_file()
        train_run(config, folder, resume=resumable, overwrite=not resumable and folder.exists())
    if Run(folder).state != "complete":
        evaluate_run(folder)
    return folder


def headline(run: Path) -> str:
    """The run's protocol attack (the one its report draws the per-example figures with)."""
    from classwise.analysis import protocol_attack

    return protocol_attack(list(Run.open(run).summary()["attacks"]))


def copy(src: Path, dst: Path) -> Path:
    """Copy a file the pipeline wrote into the experiment's output folder."""
    shutil.copyfile(src, dst)
    return dst


def write_text(path: Path, text: str) -> Path:
    atomic_write(path, text)
    print(f"wrote {path}")
    return path


def per_class_line(names: list[str], values: list[Any]) -> str:
    """"name value" pairs, for printing a per-class row."""
    return ", ".join(f"{n}: {'-' if v is None else f'{v:.1f}'}" for n, v in zip(names, values))


def load(run: Path) -> tuple[Any, Any, Any, Any, Any]:
    """(config, data, model, x, y): the run's evaluated model and its evaluation set (as evaluate_run built it)."""
    from classwise.evaluate import resolve_device
    from classwise.homing import evaluation_inputs

    folder = Run.open(run)
    data, x, y = evaluation_inputs(folder, folder.require_results())
    model = folder.model(folder.meta().get("checkpoint", "last"), resolve_device(folder.config.device))
    return folder.config, data, model, x, y


def headline_attack_config(run: Path) -> Any:
    """The AttackConfig of the run's headline attack, as evaluate_run ran it."""
    from classwise.config import AttackConfig, from_dict

    return from_dict(AttackConfig, Run.open(run).require_results().facts[headline(run)]["config"], "attack")


def head_scale(model: Any) -> float:
    """s of a hypersphere-embedding head (logits s cos theta), 1 for any other head.

    The paper's HE code attacks cos theta / T, classwise attacks s cos theta / T'
    (docs/training.md), so the paper's 1/T is s times ours: 1/T' = (1/T) / s.
    """
    from classwise.models import unwrap
    from classwise.models.he import HEHead

    head = getattr(unwrap(model), "head", None)
    return float(head.scale) if isinstance(head, HEHead) else 1.0


def temperature_sweep_of(args: argparse.Namespace, defence: str, inv_temps: tuple[float, ...],
                         paper_axis: bool = False) -> Any:
    """Vanilla PGD-20 and Temperature-PGD-20 at each 1/T on ``defence``'s evaluation set (tables 3, 4, 6).

    Paper: eps 0.031, step 0.003 (table 2's PGD); quick: eps 0.3, step 0.03.
    ``paper_axis``: ``inv_temps`` are on the paper's axis (cos theta / T for HE
    models), each run as 1/T' = (1/T) / s (:func:`head_scale`; s = 1 without an HE head).
    Returns (:class:`classwise.results.EvalResults` with "pgd20" and
    ``tpgd_name(1/T')`` per 1/T, s).
    """
    from classwise.evaluate import temperature_sweep

    run = ensure_run(args, defence)
    config, data, model, x, y = load(run)
    s = head_scale(model) if paper_axis else 1.0
    eps, step = (0.3, 0.03) if args.quick else (0.031, 0.003)
    res = temperature_sweep(model, x, y, eps, tuple(t / s for t in inv_temps), step_size=step, steps=20,
                            class_names=data.class_names, batch_size=config.eval.batch_size, device=config.device,
                            seed=config.seed)
    return res, s


def signed(v: float) -> str:
    """+1.2 / -0.4: a change in percentage points, as tables 3-5 print it."""
    return f"{v:+.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    from classwise.report.tables import simple_markdown

    return simple_markdown(header, rows)


def csv_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"
