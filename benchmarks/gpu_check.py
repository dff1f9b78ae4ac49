"""GPU check: fast FGSM-RS adversarial training, class-wise PGD-20, one PGD-10 epoch.

Phases (each written to ``OUT/gpu_check.json`` as soon as it ends):

1. load cifar10-jpeg75 (ImageFolder tree) into uint8 tensors;
2. FGSM-RS training of a PreAct ResNet-18 (Wong et al., "Fast is better than
   free", ICLR 2020: eps 8/255, step 10/255, cyclic lr up to 0.2, SGD
   momentum 0.9, wd 5e-4, 15 epochs), monitoring PGD-20 (step 2/255) robust
   accuracy on a class-balanced test subset after every epoch; reports the
   training time (monitor excluded) until the monitor first reaches
   ``--target`` percent;
3. class-wise clean and PGD-20 accuracy of the final model on the whole test set;
4. the time of one PGD-10 adversarial-training epoch of a ResNet-18 (step 2/255);
5. a host-synchronisation check (on CUDA: one PGD-20 call and one PGD-10
   training step under ``torch.cuda.set_sync_debug_mode("error")``) and the
   PGD step against its bound (``bench_pgd_step.py``'s candidates, ResNet-18,
   batch 512, PGD-10, with the run's perf options);
6. streaming throughput of synthetic ImageNet-style JPEGs (torchvision reference and
   classwise's streaming loader when present), the compaction speed-up on CUDA
   (``bench_compaction.py`` when present) and a ``torchrun --nproc_per_node=1``
   sharded-evaluation smoke against one process (``gpu_check_scale.py``).

``--phases`` picks among cifar (phases 1-5), streaming, compaction and sharded
(default: all); the scale phases never stop the check (a missing path is "skipped").

Training uses the library's ``Trainer`` and its "fgsm-rs" objective with the
"cyclic" schedule when the library has them; otherwise a clearly labelled
local loop built from our models, attacks, augmentation and perf options
(``--local`` forces it). On CUDA the defaults are bf16 autocast and
channels_last (``--no-amp``, ``--no-channels-last``; ``--compile`` adds
torch.compile). ``--smoke`` shrinks everything to run on a CPU in minutes.

Example:
    PYTHONPATH=src python benchmarks/gpu_check.py --data-root .data/cifar10-jpeg75 --out runs/gpu_check
    PYTHONPATH=src python benchmarks/gpu_check.py --data-root .data/cifar10-jpeg75 --smoke
    PYTHONPATH=src python benchmarks/gpu_check.py --phases streaming,compaction,sharded --smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from classwise.analysis import accuracy_block
from classwise.attacks import build_attack, create_attack
from classwise.config import AttackConfig, PerfConfig, RunConfig, TrainConfig, load_config
from classwise.data import DataBundle, as_float, class_balanced_indices, load_data, subsample_train
from classwise.evaluate import evaluate, resolve_device
from classwise.perf import autocast, prepare_input, prepare_model
from classwise.fileio import read_jsonl
from classwise.train.augment import AUGMENTATIONS
from classwise.checkpoint import build_model
from classwise.train.loop import Trainer
from classwise.train.objectives import create_objective

from _common import make_model, random_batch, sync, time_interleaved
from bench_pgd_step import candidates as pgd_step_candidates
from bench_strong import compare as compare_strong
from gpu_check_scale import scale_phases

EPS, ALPHA, PGD_STEP = 8 / 255, 10 / 255, 2 / 255
PHASES = ("cifar", "streaming", "compaction", "sharded")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=".data/cifar10-jpeg75", help="ImageFolder root with train/ and test/")
    p.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check", help="folder for the JSON results")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2, help="peak of the cyclic learning rate")
    p.add_argument("--target", type=float, default=45.0, help="PGD-20 robust accuracy (%%) to time")
    p.add_argument("--monitor-examples", type=int, default=1000)
    p.add_argument("--pgd10-examples", type=int, default=None, help="cap the PGD-10 epoch (default: all)")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--local", action="store_true", help="use the local FGSM-RS loop even if the library has one")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run: 256 train / 100 test images, 1 epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, among {', '.join(PHASES)}")
    args = p.parse_args()
    args.phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    if not args.phases <= set(PHASES):
        p.error(f"--phases: unknown {sorted(args.phases - set(PHASES))}; choose among {', '.join(PHASES)}")
    return args


def smoke_args(args: argparse.Namespace) -> argparse.Namespace:
    """--smoke: few images, one epoch, small batches (checks the code path, not the numbers)."""
    return argparse.Namespace(**{**vars(args), "epochs": 1, "batch_size": 64, "monitor_examples": 50,
                                 "pgd10_examples": 128, "train_examples": 256, "test_examples": 100})


def load_cifar(args: argparse.Namespace) -> DataBundle:
    """cifar10-jpeg75 as a DataBundle (subsampled under --smoke)."""
    data = dataclasses.replace(load_data("imagefolder", args.data_root, download=False), name="cifar10-jpeg75")
    if not args.smoke:
        return data
    data = subsample_train(data, args.train_examples, args.seed)
    idx = class_balanced_indices(data.test_y, args.test_examples // data.num_classes, args.seed)
    return dataclasses.replace(data, test_x=data.test_x[idx], test_y=data.test_y[idx])


def perf_config(args: argparse.Namespace, device: torch.device) -> PerfConfig:
    """bf16 + channels_last on CUDA unless switched off; plain float32 NCHW on CPU."""
    gpu = device.type == "cuda"
    return PerfConfig(channels_last=gpu and not args.no_channels_last,
                      amp="bf16" if gpu and not args.no_amp else "none", compile=args.compile)


def run_config(args: argparse.Namespace, device: torch.device, model: str, overrides: list[str]) -> RunConfig:
    """A RunConfig for the Trainer: common settings plus ``overrides`` (key=value strings)."""
    base = [f"seed={args.seed}", f"device={device}", f"model.name={model}", f"train.batch_size={args.batch_size}",
            "train.momentum=0.9", "train.weight_decay=0.0005", "train.optimizer=sgd"]
    config = load_config(None, base + overrides)
    return dataclasses.replace(config, perf=perf_config(args, device))


def fgsm_rs_overrides(args: argparse.Namespace) -> list[str]:
    return ["train.method=fgsm-rs", f"train.attack={{name: fgsm-rs, eps: {EPS}, step_size: {ALPHA}}}",
            "train.schedule=cyclic", "train.milestones=[]", f"train.lr={args.lr}", f"train.epochs={args.epochs}",
            f"train.monitor={{name: pgd20, eps: {EPS}, step_size: {PGD_STEP}}}",
            f"train.monitor_examples={args.monitor_examples}"]


def library_has_fgsm_rs() -> bool:
    """True when the objectives registry has "fgsm-rs" and the config a "cyclic" schedule."""
    try:
        from classwise.config import LR_SCHEDULES
        from classwise.train.objectives import OBJECTIVES
    except ImportError:
        return False
    return "fgsm-rs" in OBJECTIVES and "cyclic" in LR_SCHEDULES


# ---------------------------------------------------------------- library path

def fit_with_trainer(config: RunConfig, data: DataBundle, run_dir: Path, device: torch.device):
    """Trainer.fit with the per-epoch monitor timed apart; returns (model, epoch records)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, data, run_dir, progress=False)
    monitor_s: list[float] = []
    inner = trainer._monitor  # wrapped (benchmark only) to subtract its time from the epoch time

    def timed_monitor(*a):
        sync(device)
        start = time.perf_counter()
        out = inner(*a)
        monitor_s.append(time.perf_counter() - start)
        print(f"  epoch {len(monitor_s)}: clean {out['clean']['overall']:.1f}%, "
              f"{out['monitor']} {out['robust']['overall']:.1f}%", flush=True)
        return out

    trainer._monitor = timed_monitor
    trainer.fit()
    records = [{"epoch": r["epoch"], "train_s": r["time_s"] - m, "monitor_s": m, "lr": r["lr"],
                "clean": r["clean"]["overall"], "robust": r["robust"]["overall"], "train_loss": r["train_loss"]}
               for r, m in zip(read_jsonl(run_dir / "metrics.jsonl"), monitor_s)]
    return trainer.model, records


# ----------------------------------------------------------------- local path

def fit_local(config: RunConfig, data: DataBundle, device: torch.device):
    """LOCAL FALLBACK, not the library's Trainer: FGSM-RS with a per-batch cyclic lr.

    Uses our models, FGSM-RS attack (keep_best=False), tensor augmentation and
    perf options; returns (model, epoch records) like :func:`fit_with_trainer`.
    """
    cfg, perf = config.train, config.perf
    torch.manual_seed(config.seed)
    model = prepare_model(build_model(config.model, data).to(device), perf)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = max(1, len(data.train_y) // cfg.batch_size)
    cycle = lambda s: float(np.interp(s / steps, [0, cfg.epochs / 2, cfg.epochs], [0, 1, 0]))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cycle)
    x, y = data.train_x.to(device), data.train_y.to(device)
    mx, my = monitor_set(data, cfg.monitor_examples, config.seed)
    gen = torch.Generator(device).manual_seed(config.seed)
    records = []
    for epoch in range(cfg.epochs):
        sync(device)
        start = time.perf_counter()
        loss = local_epoch(model, opt, sched, x, y, config, gen, device)
        train_s = time.perf_counter() - start
        clean, robust = local_monitor(model, mx, my, config, device)
        records.append({"epoch": epoch + 1, "train_s": train_s, "monitor_s": time.perf_counter() - start - train_s,
                        "lr": opt.param_groups[0]["lr"], "clean": clean, "robust": robust, "train_loss": loss})
        print(f"  epoch {epoch + 1}: clean {clean:.1f}%, {cfg.monitor.name} {robust:.1f}% (local loop)", flush=True)
    return model, records


def local_epoch(model, opt, sched, x, y, config: RunConfig, gen: torch.Generator, device: torch.device) -> float:
    """One FGSM-RS epoch (drops the last partial batch); returns the mean loss."""
    cfg, perf, bs = config.train, config.perf, config.train.batch_size
    augment = AUGMENTATIONS["crop_flip"]
    order = torch.randperm(len(y), generator=gen, device=device)
    model.train()
    total = torch.zeros((), device=device)
    steps = max(1, len(y) // bs)
    for b in range(steps):
        idx = order[b * bs : (b + 1) * bs]
        xb, yb = prepare_input(as_float(augment(x[idx], generator=gen)), perf), y[idx]
        with autocast(perf, device):
            attack = create_attack("fgsm-rs", model, cfg.attack.eps, step_size=cfg.attack.step_size, keep_best=False)
            loss = F.cross_entropy(model(attack(xb, yb, gen)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach()
    return total.item() / steps


def monitor_set(data: DataBundle, examples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if examples is None or examples >= len(data.test_y):
        return data.test_x, data.test_y
    idx = class_balanced_indices(data.test_y, max(1, examples // data.num_classes), seed)
    return data.test_x[idx], data.test_y[idx]


def local_monitor(model, x, y, config: RunConfig, device: torch.device) -> tuple[float, float]:
    """(clean %, robust %) under the configured monitor attack."""
    m = config.train.monitor
    res = evaluate(model, x, y, {m.name: build_attack(m, model)}, device=device, seed=config.seed,
                   progress=False, perf=config.perf)
    return 100 * float(res.correct().mean()), 100 * float(res.correct(m.name).mean())


# ------------------------------------------------------------------ phases

def time_to_target(records: list[dict], target: float) -> dict:
    """Training seconds (monitor excluded) until the monitor first reaches ``target`` %."""
    elapsed = 0.0
    for r in records:
        elapsed += r["train_s"]
        if r["robust"] >= target:
            return {"reached": True, "epoch": r["epoch"], "train_s": round(elapsed, 2)}
    return {"reached": False, "epoch": None, "train_s": None, "train_s_all_epochs": round(elapsed, 2)}


def final_eval(model, data: DataBundle, perf: PerfConfig, device: torch.device, seed: int) -> dict:
    """Class-wise clean and PGD-20 (eps 8/255, step 2/255) accuracy on the whole test set."""
    attack = create_attack("pgd20", model, EPS, step_size=PGD_STEP)
    sync(device)
    start = time.perf_counter()
    res = evaluate(model, data.test_x, data.test_y, {"pgd20": attack}, class_names=data.class_names,
                   batch_size=1000 if device.type == "cuda" else 100, device=device, seed=seed,
                   progress=False, perf=perf)
    sync(device)
    k = data.num_classes
    return {"seconds": round(time.perf_counter() - start, 2), "examples": len(res.labels),
            "class_names": data.class_names, "clean": accuracy_block(res.labels, res.clean_pred, k),
            "pgd20": accuracy_block(res.labels, res.adv_pred["pgd20"], k)}


def strong_phase(model, data: DataBundle, device: torch.device, seed: int, smoke: bool) -> dict:
    """The FGSM-RS model on 1,000 class-balanced test images (10 in a smoke run): the official APGD-CE + APGD-T
    cascade, classwise ``strong`` and PGD-20, interleaved (benchmarks/bench_strong.py): robust accuracy overall
    and per class, gradient passes, wall seconds after synchronisation, per-class paired McNemar."""
    from classwise.evaluate import EvalOptions

    per_class = 1 if smoke else 100
    idx = torch.as_tensor(class_balanced_indices(data.test_y, per_class, seed))
    opts = EvalOptions(batch_size=1000 if device.type == "cuda" else 100, device=device, seed=seed, progress=False,
                       zero_grad=False)
    short = {"steps": 3, "target_steps": 3} if smoke else {}
    return compare_strong(model, data.test_x[idx], data.test_y[idx], EPS, opts, protocol="pgd20@step=2/255",
                          strong=short, official_steps=3 if smoke else 100)


def pgd10_epoch(args: argparse.Namespace, data: DataBundle, device: torch.device, work: Path) -> dict:
    """Seconds of one PGD-10 (step 2/255) adversarial-training epoch of ResNet-18, batch 128."""
    if args.pgd10_examples is not None:
        data = subsample_train(data, args.pgd10_examples, args.seed)
    overrides = ["train.method=pgd-at", f"train.attack={{name: pgd10, eps: {EPS}, step_size: {PGD_STEP}}}",
                 "train.lr=0.1", "train.epochs=1", "train.batch_size=128",
                 f"train.monitor={{name: fgsm, eps: {EPS}}}", "train.monitor_examples=10"]
    config = run_config(args, device, "resnet18", overrides)
    _, records = fit_with_trainer(config, data, work / "pgd10", device)
    return {"seconds": round(records[0]["train_s"], 2), "train_examples": len(data.train_y),
            "batch_size": 128, "perf": dataclasses.asdict(config.perf)}


def resnet18_and_batch(perf: PerfConfig, device: torch.device, batch: int):
    """A random ResNet-18 (eval mode) and a random batch (B, 3, 32, 32), labels (B,), in ``perf``'s format."""
    model = prepare_model(make_model("resnet18", device), perf)
    x, y = random_batch("resnet18", batch, device)
    return model, prepare_input(x, perf), y


def host_sync_check(perf: PerfConfig, device: torch.device, batch: int = 256) -> dict:
    """One PGD-20 call and one PGD-10 training step with CUDA's sync debug mode set to "error".

    Both run once before (warm-up: cuDNN autotuning and allocator growth may
    synchronise); the checked repetition raises at the first host
    synchronisation, whose message is recorded.
    """
    model, x, y = resnet18_and_batch(perf, device, batch)
    attack = create_attack("pgd20", model, EPS, step_size=PGD_STEP)
    attack.compact_every = 0  # compaction syncs on purpose, once per 4 steps (tests/test_host_sync.py bounds it)
    objective = create_objective(TrainConfig(method="pgd-at", attack=AttackConfig("pgd10", EPS, PGD_STEP)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator(device).manual_seed(0)

    def work() -> None:
        with autocast(perf, device):
            attack(x, y, gen, clean_correct=True)
            loss, _ = objective(model.train(), x, y, EPS, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()

    work()
    if device.type != "cuda":  # --smoke on a CPU: the code path only
        return {"host_syncs": "not checked (no CUDA)"}
    sync(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        work()
        return {"host_syncs": "none"}
    except RuntimeError as err:
        return {"host_syncs": str(err).splitlines()[0]}
    finally:
        torch.cuda.set_sync_debug_mode(0)


def attack_speed(perf: PerfConfig, device: torch.device, steps: int = 10, batch: int = 512) -> dict:
    """Per-step time of our PGD against forward + input-gradient backward (benchmark 1), on the GPU."""
    model, x, y = resnet18_and_batch(perf, device, batch)
    runs = {k: _under_autocast(fn, perf, device) for k, fn in pgd_step_candidates(model, x, y, steps, EPS).items()}
    times = time_interleaved(runs, reps=5, device=device)
    bound = next(iter(times.values()))
    return {"model": "resnet18", "batch": batch, "steps": steps, "perf": dataclasses.asdict(perf),
            "ms_per_step": {k: round(1e3 * t / steps, 3) for k, t in times.items()},
            "ratio_to_bound": {k: round(t / bound, 3) for k, t in times.items()}}


def _under_autocast(fn, perf: PerfConfig, device: torch.device):
    def run():
        with autocast(perf, device):
            return fn()
    return run


def save(out: Path, results: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1))


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return f"{name}; torch {torch.__version__}"


def main() -> None:
    args = parse_args()
    args = smoke_args(args) if args.smoke else args
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))  # checkpoints stay out of OUT
    results: dict = {"machine": machine(device), "args": {**vars(args), "phases": sorted(args.phases)},
                     "smoke": args.smoke}
    start = time.perf_counter()
    if "cifar" in args.phases:
        cifar_phases(args, device, out, work, results)
    results |= scale_phases(args.phases, device, out, work, args.smoke)
    results["total_s"] = round(time.perf_counter() - start, 2)
    save(out, results)
    print(f"total {results['total_s']} s; results in {out / 'gpu_check.json'}")


def cifar_phases(args: argparse.Namespace, device: torch.device, out: Path, work: Path, results: dict) -> None:
    """Phases 1-5 on cifar10-jpeg75, each saved into ``results`` (and OUT/gpu_check.json) as it ends."""
    start = time.perf_counter()
    data = load_cifar(args)
    results["data_load_s"] = round(time.perf_counter() - start, 2)
    print(f"{results['machine']}: data loaded in {results['data_load_s']} s "
          f"({len(data.train_y)} train, {len(data.test_y)} test)", flush=True)
    save(out, results)
    config = run_config(args, device, "preact_resnet18", fgsm_rs_overrides(args) if library_has_fgsm_rs() else [])
    results |= train_phase(args, config, data, device, work)
    model = results.pop("_model")
    results["target"] = {"percent": args.target, **time_to_target(results["epochs"], args.target)}
    print(f"time to {args.target}% PGD-20 (monitor set): {results['target']}", flush=True)
    save(out, results)
    results["final"] = final_eval(model, data, config.perf, device, args.seed)
    print_final(results["final"])
    save(out, results)
    results["strong"] = strong_phase(model, data, device, args.seed, args.smoke)
    print(f"strong vs the official APGD-CE + APGD-T: {results['strong']['rows']}", flush=True)
    save(out, results)
    results["pgd10_epoch"] = pgd10_epoch(args, data, device, work)
    print(f"one PGD-10 AT epoch of ResNet-18: {results['pgd10_epoch']}", flush=True)
    save(out, results)
    small = {"batch": 8} if args.smoke else {}
    results["host_sync"] = host_sync_check(config.perf, device, **small)
    print(f"host synchronisation in PGD-20 and a PGD-10 training step: {results['host_sync']}", flush=True)
    save(out, results)
    results["attack_speed"] = attack_speed(config.perf, device, **({"steps": 2, **small} if args.smoke else {}))
    print(f"PGD step / bound: {results['attack_speed']['ratio_to_bound']}", flush=True)
    save(out, results)


def train_phase(args, config: RunConfig, data: DataBundle, device: torch.device, work: Path) -> dict:
    """FGSM-RS training by the library's Trainer, or the local fallback loop."""
    use_library = library_has_fgsm_rs() and not args.local
    if not use_library:
        train = dataclasses.replace(config.train, attack=AttackConfig("fgsm-rs", EPS, ALPHA), lr=args.lr,
                                    epochs=args.epochs, monitor=AttackConfig("pgd20", EPS, PGD_STEP),
                                    monitor_examples=args.monitor_examples)
        config = dataclasses.replace(config, train=train)
    path = ("library Trainer, fgsm-rs objective, cyclic schedule" if use_library
            else "LOCAL fallback loop (not the library Trainer)")
    print(f"FGSM-RS training: {path}; perf {config.perf}", flush=True)
    model, records = (fit_with_trainer(config, data, work / "fgsm_rs", device) if use_library
                      else fit_local(config, data, device))
    return {"training_path": path, "perf": dataclasses.asdict(config.perf), "epochs": records,
            "train_s_total": round(sum(r["train_s"] for r in records), 2), "_model": model}


def print_final(final: dict) -> None:
    print(f"\nfinal model, {final['examples']} test images ({final['seconds']} s):")
    print("| class | clean % | PGD-20 % |\n|---|---:|---:|")
    for name, c, r in zip(final["class_names"], final["clean"]["per_class"], final["pgd20"]["per_class"]):
        print(f"| {name} | {c:.1f} | {r:.1f} |")
    print(f"| all | {final['clean']['overall']:.1f} | {final['pgd20']['overall']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
