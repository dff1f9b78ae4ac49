"""The scale phases of benchmarks/gpu_check.py: streaming data, batch compaction, sharded evaluation.

Each phase returns a JSON-ready dict and never raises: a path that this checkout
lacks is reported as skipped, with one line saying why, and a failure is recorded
as ``{"error": ...}`` so that the rest of the GPU check still measures.

* ``streaming``: an ImageNet-style ImageFolder of synthetic JPEGs (made here), read
  by torchvision's ImageFolder + DataLoader ("reference", the decode throughput of
  this machine: random-resized-crop 224 + flip for training, resize 256 + centre crop
  224 for evaluation, as torchvision's ImageNet reference scripts), and by classwise's
  streaming loader (``classwise.data.streaming.make_loader``, the path a streamed run uses).
* ``compaction``: on CUDA, ``benchmarks/bench_compaction.py --json`` when present.
* ``sharded``: a tiny demo run evaluated once in one process and once under
  ``torchrun --nproc_per_node=1``; per-sample results compared.

Example (the phases alone, no CIFAR data needed):
    PYTHONPATH=src python benchmarks/gpu_check.py --phases streaming,compaction,sharded --smoke
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def guarded(name: str, phase: Callable[[], dict]) -> dict:
    """Run ``phase``; an exception becomes ``{"error": "<type>: <first line>"}`` (printed too)."""
    try:
        return phase()
    except Exception as e:  # a benchmark phase must not stop the others
        line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"{name}: failed: {line}", flush=True)
        return {"error": line}


# --------------------------------------------------------------------------- streaming

def make_jpegs(root: Path, per_class: int, classes: int = 10, size: int = 320, seed: int = 0) -> Path:
    """ImageFolder ``root/{train,val}/class_<k>/<i>.jpg`` of smooth random RGB JPEGs (quality 90)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    for split in ("train", "val"):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                low = torch.rand(1, 3, 12, 12, generator=gen)  # (1, 3, 12, 12), upsampled: JPEG-like content
                img = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
                pixels = (img[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()  # (size, size, 3)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def reference_loader(folder: Path, train: bool, batch_size: int, workers: int, pin: bool):
    """torchvision ImageFolder + DataLoader with the ImageNet transforms, uint8 (B, 3, 224, 224) batches."""
    from torchvision import datasets, transforms as T

    ops = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    data = datasets.ImageFolder(str(folder), T.Compose([*ops, T.PILToTensor()]))
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=train, num_workers=workers,
                                       pin_memory=pin, drop_last=False)


def throughput(batches: Iterable, device: torch.device) -> dict:
    """Images per second over one pass (worker start-up included) and after the first batch (steady)."""
    start = time.perf_counter()
    first, images = None, 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch["image"] if isinstance(batch, dict) else batch
        x.to(device, non_blocking=True)
        images += len(x)
        if first is None:
            first, first_n = time.perf_counter(), len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    steady = None if first is None or images == first_n else (images - first_n) / (time.perf_counter() - first)
    return {"images": images, "seconds": round(total, 3), "images_per_s": round(images / total, 1),
            "steady_images_per_s": None if steady is None else round(steady, 1)}


def classwise_loader(root: Path, train: bool, batch_size: int, workers: int, device: torch.device):
    """classwise's streaming DataLoader over ``root`` (train/ and val/): the path a streamed run trains and evaluates with."""
    from classwise.data.streaming import make_loader, open_stream

    bundle = open_stream(root, image_size=224, workers=workers)
    return make_loader(bundle.train if train else bundle.test, image_size=224, batch_size=batch_size, train=train,
                       workers=workers, pin_memory=device.type == "cuda")


def streaming_phase(device: torch.device, work: Path, smoke: bool, workers: int | None = None) -> dict:
    """Decode throughput of synthetic 224-px ImageNet-style JPEGs: torchvision reference and classwise's path."""
    per_class, batch = (4, 16) if smoke else (200, 256)
    workers = workers if workers is not None else 0 if smoke else min(8, len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    root = make_jpegs(work / "jpegs", per_class)
    out: dict[str, Any] = {"images_per_split": 10 * per_class, "source_px": 320, "crop_px": 224,
                           "batch_size": batch, "workers": workers, "make_s": round(time.perf_counter() - start, 2)}
    pin = device.type == "cuda"
    out["reference"] = {split: throughput(reference_loader(root / split, split == "train", batch, workers, pin), device)
                        for split in ("train", "val")}
    out["classwise"] = {"entry_point": "classwise.data.streaming.make_loader", **{
        split: guarded(f"streaming classwise ({split})", lambda s=split: throughput(
            classwise_loader(root, s == "train", batch, workers, device), device)) for split in ("train", "val")}}
    print(f"streaming: reference {out['reference']}; classwise {out['classwise']}", flush=True)
    return out


# --------------------------------------------------------------------------- compaction

def compaction_phase(device: torch.device, out: Path, timeout: int = 180) -> dict:
    """``bench_compaction.py --json`` on CUDA, when the script exists; else one line saying why not."""
    script = ROOT / "benchmarks" / "bench_compaction.py"
    if not script.is_file():
        return _skipped("compaction", "benchmarks/bench_compaction.py is not in this checkout")
    if device.type != "cuda":
        return _skipped("compaction", "no CUDA: measured on a GPU (run benchmarks/bench_compaction.py directly on CPU)")
    if importlib.util.find_spec("torchattacks") is None:  # its reference candidate (lent machines lack it)
        return _skipped("compaction", "torchattacks is not installed: pip install torchattacks, or carry its wheel")
    path = out / "compaction.json"
    proc = _python([str(script), "--json", str(path)], cwd=script.parent, timeout=timeout)
    result = {"returncode": proc.returncode, "output_tail": proc.stdout[-2000:] + proc.stderr[-2000:]}
    if path.is_file():
        result["result"] = json.loads(path.read_text())
    print(f"compaction: {result.get('result', result)}", flush=True)
    return result


def _skipped(name: str, why: str) -> dict:
    print(f"{name}: skipped: {why}", flush=True)
    return {"skipped": why}


def _python(args: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "CLASSWISE_PROGRESS": "0"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- sharded evaluation

def _checked(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what} exited {proc.returncode}: {tail[0]}")


def sharded_phase(work: Path, smoke: bool) -> dict:
    """A tiny demo run evaluated in one process and under ``torchrun --nproc_per_node=1``: time, agreement."""
    train_n, test_n = (200, 60) if smoke else (2000, 1000)
    run = work / "shard_run"
    sets = ["train.epochs=1", f"data.train_examples={train_n}", "train.monitor_examples=20",
            "eval.attacks=[{name: fgsm, eps: 0.3}, {name: pgd10, eps: 0.3, step_size: 0.075}]"]
    _checked(_python(["-m", "classwise", "train", "demo", "--out", str(run), "-q",
                      *(a for s in sets for a in ("--set", s))]), "classwise train")
    seconds = {}
    for name, launcher in (("single", ["-m", "classwise"]),
                           ("torchrun", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                                         "-m", "classwise"])):
        copy = shutil.copytree(run, work / f"shard_{name}")
        start = time.perf_counter()
        _checked(_python([*launcher, "evaluate", str(copy), "--examples", str(test_n), "-q"]), f"{name} evaluate")
        seconds[name] = round(time.perf_counter() - start, 2)
    out = {"examples": test_n, "seconds": seconds, **compare_results(work / "shard_single", work / "shard_torchrun")}
    print(f"sharded evaluation (torchrun, 1 process) vs one process: {out}", flush=True)
    return out


def compare_results(a: Path, b: Path) -> dict:
    """Per-sample agreement of two runs' results.npz: labels, clean and adversarial predictions."""
    from classwise.results import EvalResults

    ra, rb = EvalResults.load(a / "results.npz"), EvalResults.load(b / "results.npz")
    same_set = np.array_equal(ra.labels, rb.labels)
    agree = {name: float(np.mean(ra.adv_pred[name] == rb.adv_pred[name])) if same_set else None
             for name in ra.attacks if name in rb.adv_pred}
    equal = same_set and np.array_equal(ra.clean_pred, rb.clean_pred) and all(v == 1.0 for v in agree.values())
    return {"same_examples": same_set, "per_sample_equal": bool(equal), "adv_agreement": agree}


def scale_phases(phases: set[str], device: torch.device, out: Path, work: Path, smoke: bool) -> dict:
    """The requested phases among streaming, compaction and sharded, each guarded."""
    results = {}
    if "streaming" in phases:
        results["streaming"] = guarded("streaming", lambda: streaming_phase(device, work, smoke))
    if "compaction" in phases:
        results["compaction"] = guarded("compaction", lambda: compaction_phase(device, out))
    if "sharded" in phases:
        results["sharded_eval"] = guarded("sharded evaluation", lambda: sharded_phase(work, smoke))
    return results
