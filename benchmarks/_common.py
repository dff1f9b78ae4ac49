"""Helpers shared by the benchmark scripts: device, model, batch, interleaved timing.

Timings on a shared machine drift, so every script measures its candidates in
one run, interleaved repetition by repetition, and reports medians and ratios;
on a CPU it times the process's CPU time (one torch thread by default), which
other jobs on the machine barely disturb.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from classwise.data import as_float, load_data
from classwise.evaluate import resolve_device
from classwise.models import create_model
from classwise.runs import Run

SHAPES = {"smallcnn": (1, 28), "mnist": (1, 28)}  # model -> (channels, size); default (3, 32)


def base_parser(description: str, model: str, batch_size: int) -> argparse.ArgumentParser:
    """Arguments every benchmark takes: --device, --model, --batch-size, --reps, --threads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--model", default=model, help="registry name (smallcnn, resnet18, preact_resnet18 ...)")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions (median reported)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: stable ratios on a shared CPU; 0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Seed, set CPU threads, resolve the device."""
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def make_model(name: str, device: torch.device, num_classes: int = 10) -> nn.Module:
    """A randomly initialised registry model in eval mode, with its input shape's (C, H)."""
    channels, size = SHAPES.get(name, (3, 32))
    model = create_model(name, num_classes=num_classes, in_channels=channels, image_size=size)
    return model.to(device).eval()


def input_shape(name: str) -> tuple[int, int, int]:
    """(C, H, W) of the images the model ``name`` is benchmarked on."""
    channels, size = SHAPES.get(name, (3, 32))
    return channels, size, size


def random_batch(name: str, batch_size: int, device: torch.device, num_classes: int = 10,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) uniform in [0, 1] and labels (B,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, *input_shape(name)), generator=g)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    return x.to(device), y.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """The timer: process CPU time on a CPU device, wall time (after a sync) on a GPU.

    On a CPU shared with other jobs, wall time mostly measures waiting for a
    core; the CPU time this process spent is what the code itself costs.
    """
    return time.process_time if device.type == "cpu" else time.perf_counter


def time_interleaved(candidates: Mapping[str, Callable[[], object]], reps: int,
                     device: torch.device, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each candidate (see :func:`clock`), repetitions interleaved."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    now = clock(device)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            sync(device)
            start = now()
            fn()
            sync(device)
            times[name].append(now() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def machine(device: torch.device) -> str:
    """One line naming the CPU (lscpu model name) or the GPU, threads and the clock."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, wall time"
    return f"{_cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, process CPU time"


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def print_table(title: str, rows: list[tuple[str, float, float]]) -> None:
    """Rows of (name, ms, ratio to the bound) as a Markdown table."""
    print(f"\n{title}\n\n| candidate | ms per call | ratio to bound |\n|---|---:|---:|")
    for name, ms, ratio in rows:
        print(f"| {name} | {ms:.2f} | {ratio:.3f} |")


def pgd_parser(description: str, steps_help: str) -> argparse.ArgumentParser:
    """The parser of the PGD benchmarks: base options plus --steps, --eps and --json."""
    p = base_parser(description, model="resnet18", batch_size=16)
    p.add_argument("--steps", type=int, default=10, help=steps_help)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(reps=5)
    return p


def time_on_random_batch(args: argparse.Namespace, candidates) -> tuple[torch.device, dict[str, float]]:
    """Median seconds of each candidate built by ``candidates(model, x, y, steps, eps)``."""
    device = setup(args)
    model = make_model(args.model, device)
    x, y = random_batch(args.model, args.batch_size, device, seed=args.seed)
    return device, time_interleaved(candidates(model, x, y, args.steps, args.eps), args.reps, device)


def eval_parser(description: str, eps: float, examples: int) -> argparse.ArgumentParser:
    """The parser of the evaluation benchmarks: base options plus --eps, --examples, --train-steps, --run, --json."""
    p = base_parser(description, model="smallcnn", batch_size=250)
    p.add_argument("--eps", type=float, default=eps)
    p.add_argument("--examples", type=int, default=examples, help="test images evaluated")
    p.add_argument("--train-steps", type=int, default=150, help="Adam steps of the quick model (no --run)")
    p.add_argument("--run", default=None, help="a classwise run folder to evaluate instead")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(reps=3)
    return p


def quick_model(name: str, steps: int, device: torch.device, seed: int):
    """``name`` trained ``steps`` Adam steps (batch 128) on mnist5k; returns model and test set."""
    data = load_data("mnist5k")
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, in_channels=1, image_size=28, mean=data.mean, std=data.std)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.train_x.to(device), data.train_y.to(device)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,), device=device)
        loss = F.cross_entropy(model(as_float(x[idx])), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), data.test_x, data.test_y


def run_model(run_dir: str, device: torch.device):
    """A classwise run's last checkpoint and its test set."""
    run = Run.open(run_dir)
    data = run.data()
    return run.model("last", device), data.test_x, data.test_y


def eval_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model of an evaluation benchmark (``--run`` or the quick model) and ``--examples`` test images.

    The images are a random subset (seeded by ``--seed``), in test-set order: an
    ImageFolder test set is sorted by class, so its first N would be one class.
    """
    model, x, y = run_model(args.run, device) if args.run else quick_model(args.model, args.train_steps, device, args.seed)
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))[: args.examples].sort().values
    return model, x[pick], y[pick]
