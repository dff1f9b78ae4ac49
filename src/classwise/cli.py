"""Command line: each command parses flags and calls one library function.

Errors from bad input print one line (``error: ...``) and exit with status 2;
set CLASSWISE_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ClasswiseError, Terminated
from .fileio import user_os_error
from .runfiles import RunFiles

INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT)
TERMINATED = 143  # exit status after SIGTERM (128 + SIGTERM)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Class-wise diagnosis of adversarial robustness: train, attack, report per class.")

# Options that several commands share, declared once.
Sets = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config field, e.g. --set train.epochs=3 (repeatable).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Threads = Annotated[int | None, typer.Option(
    "--threads", help="Torch CPU threads (default: the CPUs this process may use, or OMP_NUM_THREADS).")]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 ... (default: the config's).")]
Dataset = Annotated[str | None, typer.Option(help="Dataset name (a registry name, see `classwise list`).")]
DataRoot = Annotated[str | None, typer.Option("--data-root", help="Folder holding the dataset files.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out run folder.")]
EvaluatedRun = Annotated[Path, typer.Argument(help="Evaluated run folder.")]


def _threads(threads: int | None) -> None:
    """Apply the thread policy of :func:`classwise.perf.set_threads` (``--threads`` or the default)."""
    from .perf import set_threads

    set_threads(threads)


def _overrides(sets: list[str] | None, **flags) -> list[str]:
    """``--set`` items plus shortcut flags turned into ``key=value`` overrides."""
    items = list(sets or [])
    items += [f"{key}={value}" for key, value in flags.items() if value is not None]
    return items


@app.command()
def train(
    config: Annotated[str, typer.Argument(help="Preset name (see `classwise list`) or YAML file.")] = "demo",
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")] = Path("runs/train"),
    sets: Sets = None,
    dataset: Dataset = None,
    model: Annotated[str | None, typer.Option(help="Model name (overrides the config).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    data_root: DataRoot = None,
    image_size: Annotated[int | None, typer.Option(
        "--image-size", help="Resize images to this size (imagefolder).")] = None,
    device: Device = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Train a model (standard or adversarial) into a run folder, logging class-wise metrics per epoch.

    With --resume the run's saved config is used; --set may then change only what
    does not change the run (more epochs, device, perf, checkpointing, eval).
    """
    _threads(threads)
    from .config import load_config
    from .pipeline import resumed_config, train_run

    items = _overrides(sets, **{"data.name": dataset, "model.name": model, "train.epochs": epochs,
                                "data.root": data_root, "data.image_size": image_size, "device": device})
    cfg = resumed_config(out, items) if resume and not overwrite else load_config(config, items)
    run = train_run(cfg, out, resume=resume, overwrite=overwrite, progress=not quiet)
    if os.environ.get("RANK", "0") == "0":  # torchrun: one line, from rank 0
        typer.echo(f"trained: {run} (next: classwise evaluate {run})")


@app.command()
def evaluate(
    run: Annotated[Path | None, typer.Argument(
        help="Run folder made by `classwise train` (or by `evaluate --model`).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Evaluate a model classwise did not train: a registry name, torchvision:NAME, timm:NAME or "
                        "robustbench:NAME (needs --dataset and --out); NAME@pretrained (torchvision also "
                        "NAME@weights=ENUM) takes the library's weights, e.g. timm:resnet18.a1_in1k@pretrained.")] = None,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="Its weights: .safetensors, or a .pt/.pth/.bin state dict (never unpickled); "
                          "not with @pretrained.")] = None,
    dataset: Dataset = None,
    data_root: DataRoot = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder to create for --model.")] = None,
    threat_model: Annotated[str, typer.Option(
        "--threat-model", help="RobustBench threat model: Linf, L2 or corruptions.")] = "Linf",
    model_dir: Annotated[Path, typer.Option(
        "--model-dir", help="RobustBench model_dir: weights in DIR/<dataset>/<threat>/<name>.pt "
                            "(downloaded when absent).")] = Path("models"),
    mean: Annotated[str | None, typer.Option(
        help="Input normalisation of --model, e.g. 0.4914,0.4822,0.4465 (default: the dataset's).")] = None,
    std: Annotated[str | None, typer.Option(help="Input normalisation std of --model (with --mean).")] = None,
    no_normalize: Annotated[bool, typer.Option(
        "--no-normalize", help="--model normalises its inputs itself (or needs none).")] = False,
    overwrite: Overwrite = False,
    attacks: Annotated[str | None, typer.Option(
        help="Comma-separated attacks, each name[@key=value...], e.g. fgsm,pgd20@step=0.003 "
             "(default: the config's).")] = None,
    eps: Annotated[str | None, typer.Option(
        help="Budget for --attacks in the --norm's units, e.g. 0.031 or 8/255 (L-inf in [0, 1], L2 >= 0; "
             "default: the config's).")] = None,
    step_size: Annotated[str | None, typer.Option(
        "--step-size", help="PGD step size for --attacks (default 2.5*eps/steps).")] = None,
    norm: Annotated[str | None, typer.Option(
        help="Threat model of --attacks: linf (default) or l2; eps in its units.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint name: last, epoch75 ...")] = None,
    examples: Annotated[int | None, typer.Option(help="Class-balanced test sample of this size (default: all).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Images per batch (default: the config's eval.batch_size).")] = None,
    sets: Sets = None,
    save_adv: Annotated[bool, typer.Option(
        "--save-adv", help="Save each attack's adversarial images and their test-set indices to "
                           "RUN/adv/<attack>.safetensors.")] = False,
    device: Device = None,
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Only the worst case: each attack runs on the examples still robust.")] = False,
    allow_partial: Annotated[bool, typer.Option(
        "--allow-partial", help="Evaluate a run whose training did not finish (said so in the report).")] = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Attack a run class-wise (or any model, with --model); write per-sample results, summary.json and the report.

    With --model a run folder (--out) is made for a model classwise did not train, then
    evaluated and reported like a trained run. --set changes the config (any key with
    --model; eval.*, device and perf.* for an existing run).
    """
    _threads(threads)
    from .pipeline import evaluate_outside, evaluate_run

    how: dict[str, Any] = dict(checkpoint=checkpoint, examples=examples, device=device, cascade=cascade,
                               progress=not quiet, allow_partial=allow_partial, batch_size=batch_size, save_adv=save_adv)
    if model is not None:
        if dataset is None or out is None:
            raise ClasswiseError("--model needs --dataset NAME and --out RUN (the run folder to create)")
        outside, config, specs = _outside_spec(model, weights, dataset, data_root, threat_model, model_dir,
                                               mean, std, no_normalize, sets, attacks, eps, step_size, norm)
        run = evaluate_outside(outside, config, out, overwrite=overwrite, attacks=specs, **how)[0]
    else:
        if run is None:
            raise ClasswiseError("give a run folder, or --model SPEC --dataset NAME --out RUN for any model")
        _refuse_outside_flags(weights=weights, dataset=dataset, out=out, mean=mean, std=std)
        specs = _attack_configs(_first_attack(run), attacks, eps, step_size, norm)
        evaluate_run(run, attacks=specs, overrides=tuple(sets or ()), **how)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 alone speaks
        _print_summary(run)
        typer.echo(f"report: {RunFiles(Path(run)).report_html}")


def _refuse_outside_flags(**flags) -> None:
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
    if given:
        raise ClasswiseError(f"{', '.join(given)} go with --model (evaluating a model classwise did not train)")


def _outside_spec(spec, weights, dataset, data_root, threat_model, model_dir, mean, std, no_normalize,
                  sets, attacks, eps, step_size, norm):
    """What ``--model`` evaluates: (the outside model, its run config, the attack configs for it)."""
    from .pipeline import OutsideModel, outside_config

    outside = OutsideModel(spec, weights, threat_model, model_dir, _floats(mean, "--mean"), _floats(std, "--std"),
                           not no_normalize)
    items = _overrides(sets, **{"data.root": data_root})
    config = outside_config(outside, dataset, items)
    return outside, config, _attack_configs(config.eval.attacks[0], attacks, eps, step_size, norm)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    from .config import parse_number

    return None if text is None else tuple(parse_number(v.strip(), flag) for v in text.split(",") if v.strip())


def _first_attack(run: Path):
    """The run's first configured attack: its eps and norm are the defaults of --attacks."""
    from .runs import Run

    return Run.open(run).config.eval.attacks[0]


def _attack_configs(first, attacks: str | None, eps: str | None, step_size: str | None, norm: str | None = None):
    """AttackConfigs for ``--attacks``; None keeps the run's configured attacks."""
    from .config import AttackConfig, parse_number

    if attacks is None:
        if eps is not None or step_size is not None or norm is not None:
            raise ClasswiseError("--eps, --step-size and --norm need --attacks")
        return None
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    if not names:
        raise ClasswiseError("--attacks needs at least one attack name")
    norm = first.norm if norm is None else norm.strip().lower()
    if eps is None and norm != first.norm:
        raise ClasswiseError(f"--norm {norm} needs --eps in its units (the config's eps is for {first.norm})")
    eps_value = first.eps if eps is None else parse_number(eps, "--eps")
    step = None if step_size is None else parse_number(step_size, "--step-size")
    return tuple(AttackConfig.from_text(n, eps_value, step, norm) for n in names)


@app.command()
def report(run: EvaluatedRun, threads: Threads = None) -> None:
    """Re-render tables, figures, summary.json and the report from saved per-sample results."""
    _threads(threads)
    from .pipeline import report_run

    paths = report_run(run)
    typer.echo(f"report: {paths['report_html']}")


@app.command()
def show(run: EvaluatedRun, class_name: Annotated[str, typer.Option(
        "--class", help="Class name, as the report names it.")]) -> None:
    """One class of an evaluated run: its numbers, 95% intervals, confound classes and gallery images."""
    from .jobs.show import show_class

    for line in show_class(run, class_name):
        typer.echo(line)


@app.command()
def homing(
    run: EvaluatedRun,
    classes: Annotated[str | None, typer.Option(
        help="Confound classes to remove, e.g. 3,5 (default: all that received flips).")] = None,
    jobs: Annotated[int, typer.Option(
        help="Retrains in parallel processes: one per visible GPU on CUDA, else spread over the CPU cores.")] = 1,
    attack: Annotated[str | None, typer.Option(help="Which of the run's attacks (default: the headline PGD).")] = None,
    device: Device = None,
    no_collect: Annotated[bool, typer.Option(
        "--no-collect", help="Only retrain (idempotent; one scheduler job per class, see docs/homing-cluster.md).")] = False,
    collect: Annotated[bool, typer.Option(
        "--collect", help="Only assemble the retrains that are complete (says which are missing).")] = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Homing (figure 3b): retrain without each confound class, re-attack the examples flipped into it.

    On a cluster: one `--classes J --no-collect` job per class, then one `--collect`.
    """
    _threads(threads)
    from .homing import homing_collect, homing_retrain, homing_run

    picked = None if classes is None else _int_list(classes, "--classes")
    if collect and (no_collect or jobs != 1):
        raise ClasswiseError(f"--collect retrains nothing: it excludes {'--no-collect' if no_collect else '--jobs'}")
    if no_collect:
        done = homing_retrain(run, classes=picked, jobs=jobs, attack=attack, device=device, progress=not quiet)
        for j, how in done.items():
            typer.echo(f"retrain without class {j}: {how} ({RunFiles(Path(run)).homing_retrain(j)})")
        typer.echo(f"next, when every retrain is done: classwise homing {run} --collect")
        return
    rec = (homing_collect(run, classes=picked, attack=attack, device=device) if collect else
           homing_run(run, classes=picked, jobs=jobs, attack=attack, device=device, progress=not quiet))
    _print_homing(run, rec)


def _print_homing(run: Path, rec: dict) -> None:
    from .homing import missing_states

    share = "n/a" if rec["share"] is None else f"{100 * rec['share']:.1f}%"
    typer.echo(f"homing: {rec['homed']} of {rec['flipped']} flipped examples home ({share}); "
               f"see {RunFiles(Path(run)).homing_json} and {RunFiles(Path(run)).report_html}")
    missing = rec.get("missing") or []
    if missing:
        states = ", ".join(f"{j} ({state})" for j, state in missing_states(run, missing).items())
        typer.echo(f"missing retrains: {states}; run `classwise homing {run} --classes "
                   f"{','.join(map(str, missing))} --no-collect`, then --collect again")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ClasswiseError(f"{flag} must be comma-separated class indices, got {text!r}") from None


@app.command()
def compare(
    runs: Annotated[list[Path] | None, typer.Argument(
        help="Evaluated run folders (with --figure7: STANDARD ROBUST).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: LAST_RUN/compare).")] = None,
    attack: Annotated[str | None, typer.Option(
        help="Only this attack's row of each run (with --figure7: the robust run's attack, default its headline "
             "PGD).")] = None,
    figure7: Annotated[bool, typer.Option(
        "--figure7", help="Figure 7 instead of the table: a standard run's accuracy beside a robust run's "
                          "robustness.")] = False,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="NAME=RUN,RUN,...: runs of one recipe with different seeds, compared as one group "
                        "(mean +- std over seeds; repeat for each recipe, the first is the baseline).")] = None,
    threads: Threads = None,
) -> None:
    """One class-wise table of any number of evaluated runs (rows run x attack), as Markdown, CSV and a figure,
    and their clean, average and worst-class robust accuracy with intervals and NSD.

    With --group: the same figures per run and, per group, mean +- std over seeds with a test
    against the first group. With --figure7 and two runs (standard, then robust): figure 7 of the paper.
    """
    _threads(threads)
    from .compare import compare_fairness, compare_runs, compare_table, parse_groups, run_label

    runs = runs or []
    if group:
        if runs or figure7:
            raise ClasswiseError("give either run folders or --group NAME=RUN,..., not both (and no --figure7)")
        groups = parse_groups(group)
        out = out or RunFiles(next(iter(groups.values()))[-1]).compare
        compare_fairness(groups, out, attack=attack)
        typer.echo((out / "fairness.md").read_text())
        typer.echo(f"table: {out / 'fairness.md'}, {out / 'fairness.csv'}, {out / 'fairness.json'}")
        return
    if not runs:
        raise ClasswiseError("compare needs evaluated run folders, or --group NAME=RUN,RUN,...")
    out = out or RunFiles(Path(runs[-1])).compare
    if not figure7:
        paths: list[str | Path] = list(runs)
        rec = compare_table(paths, out, attack=attack)
        typer.echo((out / "compare.md").read_text())
        try:
            compare_fairness({run_label(r, runs): [r] for r in runs}, out, attack=attack)
            typer.echo((out / "fairness.md").read_text())
            worst = f"; worst class: {out / 'fairness.md'}"
        except ClasswiseError as e:  # the class-wise table stands; say why the worst-class one is missing
            worst = f"; no worst-class table: {e}"
        typer.echo(f"{len(rec['rows'])} rows; table: {out / 'compare.md'}, {out / 'compare.csv'}; figure: "
                   f"{out / 'compare.png'}{worst}")
        return
    if len(runs) != 2:
        raise ClasswiseError(f"--figure7 compares two runs (STANDARD ROBUST), got {len(runs)}")
    fig = compare_runs(runs[0], runs[1], out, attack=attack)
    typer.echo(f"largest gap: standard {fig['standard']['gap']:.1f} points, robust {fig['robust']['gap']:.1f} "
               f"points ({fig['attack']}); figure: {out / 'gap_comparison.png'}")


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/demo-<time>).")] = None,
    sets: Sets = None,
    overwrite: Overwrite = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted demo in --out.")] = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Train a robust SmallCNN on the embedded MNIST sample, attack it and write the class-wise report."""
    _threads(threads)
    from .pipeline import demo as run_demo

    if resume and out is None:
        raise ClasswiseError("demo --resume needs --out RUN, the interrupted demo's folder")
    out = out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    start = time.perf_counter()
    run = run_demo(out, overrides=tuple(sets or ()), overwrite=overwrite, progress=not quiet, resume=resume)
    _print_summary(run)
    typer.echo(f"done in {time.perf_counter() - start:.0f} s; open {RunFiles(Path(run)).report_html}")


def _print_summary(run: Path) -> None:
    """The headline numbers of summary.json: one row per class, one column per attack."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from .runs import Run

    s = Run.open(run).summary()
    blocks = {"clean": s["clean"], **s["attacks"]}
    table = Table(title=f"class-wise accuracy (%): {run}", box=box.SIMPLE)
    table.add_column("class")
    for name in blocks:
        table.add_column(name, justify="right")
    table.add_row("total", *(_pct(b["overall"]) for b in blocks.values()), style="bold")
    for i in _shown_classes(len(s["class_names"]), list(blocks.values())[-1]["per_class"]):
        table.add_row(s["class_names"][i], *(_pct(b["per_class"][i]) for b in blocks.values()))
    Console().print(table)
    for line in _worst_lines(Run.open(run).meta().get("attacks", {}), list(blocks)):
        typer.echo(line)


def _worst_lines(facts: dict[str, Any], shown: list[str]) -> list[str]:
    """One line per worst case shown, naming exactly the attacks it covers (from its recorded facts)."""
    lines = []
    for name in shown:
        f = facts.get(name)
        if isinstance(f, dict) and f.get("family") == "worst" and isinstance(f.get("over"), list):
            how = "cascade (each attack on the examples still robust) of" if f.get("cascade") else "per-example worst case over"
            lines.append(f"{name}: {how} {', '.join(map(str, f['over']))}")
    return lines


def _shown_classes(k: int, robust: list, limit: int = 20) -> list[int]:
    """All classes when few; else the 10 least and 10 most robust (by the last attack)."""
    if k <= limit:
        return list(range(k))
    order = sorted(range(k), key=lambda i: -1.0 if robust[i] is None else robust[i])
    return order[: limit // 2] + order[-limit // 2 :]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print classwise's version and exit.")] = False,
) -> None:
    """Class-wise diagnosis of adversarial robustness: train, attack, report per class."""
    if version:
        from . import __version__

        typer.echo(f"classwise {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command("config-keys")
def config_keys_command() -> None:
    """Print every --set key: its type, default and meaning (from the config dataclasses)."""
    from .config_keys import config_keys

    for k in config_keys():
        typer.echo(f"{k.key}  ({k.type}, default {k.default})\n    {k.meaning}")


@app.command("list")
def list_names() -> None:
    """List the registered datasets, models, training methods, attacks and presets."""
    from .attacks import attack_usage
    from .config import preset_names
    from .data import dataset_names
    from .models import model_names, outside_kinds
    from .train.objectives import OBJECTIVES

    for title, names in (("datasets", dataset_names()), ("models", model_names() + outside_kinds()),
                         ("methods", list(OBJECTIVES)), ("presets", preset_names())):
        typer.echo(f"{title}: {', '.join(names)}")
    typer.echo("attacks:")
    for usage in attack_usage().values():
        typer.echo(f"  {usage}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit 2."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    received: list[int] = []
    previous = _on_sigterm(received)
    try:
        code = app(args=argv, standalone_mode=False)  # Ctrl-C comes back as the exit code 130
    except (ClasswiseError, ValueError) as e:
        if os.environ.get("CLASSWISE_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        return 2
    except KeyboardInterrupt:
        code = INTERRUPTED
    except OSError as e:  # a full disk or an unwritable folder outside classwise's own writes
        mapped = None if os.environ.get("CLASSWISE_DEBUG") else user_os_error(e)
        if mapped is None:
            raise
        typer.echo(f"error: {mapped}", err=True)
        return 2
    except Exception as e:  # usage errors of the (vendored) click parser: one line, with the command's name
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {e.format_message()}{where}", err=True)
            return int(e.exit_code)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code == INTERRUPTED and received:
        code = TERMINATED
    if code in (INTERRUPTED, TERMINATED):
        typer.echo("interrupted" + (" (SIGTERM)" if received else ""), err=True)
    return code if isinstance(code, int) else 0


def _on_sigterm(received: list[int]) -> Any:
    """Handle SIGTERM as Ctrl-C (raise :class:`Terminated` where the command is); return the old handler.

    Only in the main thread (signal handlers cannot be set elsewhere); None there.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry: exit with :func:`main`'s status."""
    sys.exit(main())
