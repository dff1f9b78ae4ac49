"""Streaming data: an ImageFolder read by DataLoader workers, trained on, evaluated, resumed exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from classwise.checkpoint import load_state
from classwise.config import load_config
from classwise.data import load_data, make_loader, open_stream
from classwise.data import streaming
from classwise.errors import ClasswiseError
from classwise.pipeline import evaluate_run, train_run

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("ant", "bee", "cow")


def make_folder(root: Path, per_class: dict[str, int], size: tuple[int, int] = (40, 34), seed: int = 0) -> Path:
    """JPEGs ROOT/<split>/<class>/<i>.jpg, each class its own colour plus noise, sizes jittered by a few px."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = size[0] + int(rng.integers(0, 5)), size[1] + int(rng.integers(0, 5))
                base = np.zeros((h, w, 3)) + 60 + 60 * np.eye(3)[c] * 1.5
                pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:04d}.jpg", quality=85)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """60 small JPEGs: 3 classes x (12 train + 8 test)."""
    return make_folder(tmp_path_factory.mktemp("stream"), {"train": 12, "test": 8})


def streamed_config(root: Path, *extra: str):
    return load_config("demo", ["data.name=imagefolder", f"data.root={root}", "data.stream=true",
                                "data.image_size=16", "data.workers=0", "train.epochs=1", "train.batch_size=6",
                                "train.eps_warmup_epochs=0", "train.attack={name: pgd2, eps: 0.03, step_size: 0.02}",
                                "train.monitor={name: pgd2, eps: 0.03, step_size: 0.02}", "train.monitor_examples=9",
                                "eval.attacks=[{name: fgsm, eps: 0.03}, {name: pgd3, eps: 0.03, step_size: 0.02}]",
                                *extra])


def epoch_batches(files, **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    args = {"image_size": 16, "batch_size": 6, "train": True, "epoch": 1, "seed": 3} | kw
    return list(make_loader(files, **args))


def test_a_small_folder_stays_in_memory_and_a_huge_one_streams(folder):
    assert not load_data("imagefolder", folder, image_size=16).streamed  # the default where it fits
    assert load_data("imagefolder", folder, image_size=16, stream=True).streamed
    assert streaming.too_large(1_281_167, 224, 224, available=64 * 2**30)  # ImageNet: 193 GB > 32 GB
    assert not streaming.too_large(60_000, 32, 32, available=8 * 2**30)  # CIFAR-10: 184 MB
    assert streaming.too_large(60_000, 32, 32, available=2**28, copies=2)  # two ranks, 256 MB free
    with pytest.raises(ClasswiseError, match="ImageFolder"):
        load_data("mnist5k", stream=True)


def test_loader_batches_do_not_depend_on_workers_and_resume_where_they_stopped(folder):
    files = open_stream(folder, 16, workers=0).train  # 36 files: 6 batches of 6
    one = epoch_batches(files, workers=0)
    two = epoch_batches(files, workers=2)
    assert len(one) == 6 and one[0][0].shape == (6, 3, 16, 16) and one[0][0].dtype == torch.uint8
    for (xa, ya), (xb, yb) in zip(one, two):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    tail = epoch_batches(files, workers=2, start_batch=4)
    assert len(tail) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(one[4:], tail))
    other = epoch_batches(files, workers=0, epoch=2)
    assert not torch.equal(one[0][1], other[0][1]) or not torch.equal(one[0][0], other[0][0])  # a new order


def test_two_ranks_take_the_shards_of_the_one_process_global_batch(folder):
    files = open_stream(folder, 16, workers=0).train
    whole = epoch_batches(files, batch_size=6)
    ranks = [epoch_batches(files, batch_size=3, rank=r, world=2) for r in (0, 1)]
    for b, (x, y) in enumerate(whole):
        for r in (0, 1):
            assert torch.equal(ranks[r][b][0], x[r::2]) and torch.equal(ranks[r][b][1], y[r::2])


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory) -> Path:
    """One streamed epoch of the demo SmallCNN (6 batches of 6), not yet evaluated."""
    return train_run(streamed_config(folder), tmp_path_factory.mktemp("trained") / "run", progress=False)


def copied(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_train_and_evaluate_through_the_streaming_path(trained, tmp_path):
    run = copied(trained, tmp_path)
    record = (run / "metrics.jsonl").read_text().splitlines()
    assert len(record) == 1 and '"train_loss"' in record[0]
    results = evaluate_run(run, progress=False)
    assert len(results.labels) == 24 and set(results.attacks) >= {"fgsm", "pgd3"}
    assert "stream: true" in (run / "config.yaml").read_text()


def test_examples_decode_only_the_chosen_test_files(trained, tmp_path, monkeypatch):
    run = copied(trained, tmp_path)
    decoded: list[str] = []
    real = streaming.decode
    monkeypatch.setattr(streaming, "decode", lambda path: decoded.append(path) or real(path))
    results = evaluate_run(run, examples=6, progress=False)  # 2 per class
    # the report's gallery decodes some of them again (its clean images); no other file is ever read
    assert len(set(decoded)) == 6 and all("/test/" in p for p in decoded)
    chosen = sorted(str(p).rsplit("/", 2)[-2] for p in set(decoded))
    assert chosen == sorted(list(CLASSES) * 2) and len(results.labels) == 6


@pytest.mark.parametrize("stream", ["true", "false"], ids=["streamed-2-workers", "in-memory"])
def test_resume_mid_epoch_continues_the_same_order_with_two_workers(folder, tmp_path, monkeypatch, stream):
    """In process: stop in epoch 2 after 2 of 6 batches (state written after every batch), resume, compare weights."""
    sets = ("data.workers=2", "train.checkpoint_every=1", "train.epochs=2", f"data.stream={stream}")
    straight = train_run(streamed_config(folder, *sets), tmp_path / "straight", progress=False)
    from classwise.train import loop

    real, calls = loop.Trainer._step, {"n": 0}

    def stop_after_four(self, *args):
        if calls["n"] == 8:  # epoch 2, after 2 of its 6 batches
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, *args)

    monkeypatch.setattr(loop.Trainer, "_step", stop_after_four)
    with pytest.raises(KeyboardInterrupt):
        train_run(streamed_config(folder, *sets), tmp_path / "killed", progress=False)
    state = load_state(tmp_path / "killed" / "checkpoints" / "last.state.safetensors")
    assert (int(state["epoch"]), int(state["batch"])) == (1, 2)
    monkeypatch.setattr(loop.Trainer, "_step", real)
    resumed = train_run(streamed_config(folder, *sets), tmp_path / "killed", resume=True, progress=False)
    a, b = (load_file(r / "checkpoints" / "last.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_val_only_folder_is_evaluated_with_an_outside_model(tmp_path):
    from safetensors.torch import save_file

    from classwise.cli import main
    from classwise.models import create_model

    root = make_folder(tmp_path / "imagenet", {"val": 4})
    net = create_model("smallcnn", num_classes=3, in_channels=3, image_size=16, mean=(0.5,), std=(0.25,))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    code = main(["evaluate", "--model", "smallcnn", "--weights", str(tmp_path / "w.safetensors"), "--dataset",
                 "imagefolder", "--data-root", str(root), "--out", str(tmp_path / "run"), "--attacks", "fgsm",
                 "--eps", "0.03", "--set", "data.image_size=16", "--set", "data.workers=0", "-q"])
    assert code == 0
    assert (tmp_path / "run" / "results.npz").is_file()
    with np.load(tmp_path / "run" / "results.npz") as saved:
        assert len(saved["labels"]) == 12
    assert main(["train", "--out", str(tmp_path / "t"), "--set", "data.name=imagefolder", "--set",
                 f"data.root={root}", "--set", "data.image_size=16", "-q"]) == 2  # val/ alone: no training


def _cli_train(run: Path, root: Path, *extra: str) -> subprocess.Popen:
    sets = ["data.name=imagefolder", f"data.root={root}", "data.stream=true", "data.image_size=16",
            "data.workers=2", "train.epochs=2", "train.batch_size=6", "train.eps_warmup_epochs=0",
            "train.attack={name: pgd2, eps: 0.03, step_size: 0.02}", "train.checkpoint_every=1",
            "train.monitor={name: pgd2, eps: 0.03, step_size: 0.02}", "train.monitor_examples=9"]
    args = ["--resume"] if "--resume" in extra else [i for s in sets for i in ("--set", s)] + list(extra)
    env = {"CLASSWISE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "classwise", "train", "--out", str(run), "-q", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact_with_two_workers(folder, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _cli_train(straight, folder, "--set", "train.checkpoint_every=0").wait(timeout=300) == 0
    proc = _cli_train(killed, folder)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = load_state(killed / "checkpoints" / "last.state.safetensors")
        except ClasswiseError:
            state = {"epoch": -1}
        if int(state["epoch"]) == 1 and int(state.get("batch", 0)) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    final = _cli_train(killed, folder, "--resume")
    assert final.wait(timeout=300) == 0, final.stderr.read()
    a, b = (load_file(r / "checkpoints" / "last.safetensors") for r in (straight, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_few_thousand_224px_jpegs_train_and_evaluate_streamed(tmp_path):
    root = make_folder(tmp_path / "big", {"train": 800, "val": 200}, size=(240, 224))  # 3,000 JPEGs
    config = load_config("demo", ["data.name=imagefolder", f"data.root={root}", "data.stream=true",
                                  "data.image_size=224", "data.workers=2", "model.name=fastcnn",
                                  "model.kwargs={widths: [8, 16]}", "train.epochs=1",  # the data path, not the model
                                  "train.batch_size=60", "train.method=standard", "train.monitor_examples=30",
                                  "train.monitor={name: fgsm, eps: 0.007}", "eval.examples=60",
                                  "eval.attacks=[{name: fgsm, eps: 0.007}]"])
    run = train_run(config, tmp_path / "run", progress=False)
    results = evaluate_run(run, progress=False)
    assert len(results.labels) == 60
