"""Contract: every bad input is one `error:` line and exit status 2, never a traceback,
and the run folder is left untouched or marked `failed` (issue "results you can trust").

The CLI runs in-process (``classwise.cli.main``) to keep this suite fast; one tiny
evaluated run is built per module and copied for each case that touches a run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classwise.cli import main
from classwise.config import RunConfig, load_config
from classwise.errors import ClasswiseError
from classwise.evaluate import evaluate
from classwise.models import create_model
from classwise.results import EvalResults
from classwise.fileio import MANIFEST
from classwise.runfiles import LOCK, READ_BACK, RunFiles
from classwise.runs import Run
from classwise.checkpoint import safe_load, save_model

from cli_args import sets

pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(capsys, args: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of ``classwise ARGS`` run in this process."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one `error:` line, no traceback; the line holds every needle."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder`` ({} when absent)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tiny_run(tiny_demo_run) -> Path:
    """One trained and evaluated tiny run (never modified: cases copy it)."""
    return tiny_demo_run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


# --- config overrides and names: nothing is created -----------------------------------------

CONFIG_CASES = [
    (["--set", "train.milestones=[1,2"], "not valid YAML"),
    (["--set", "train.lr=!!python/object/apply:os.system ['true']"], "not valid YAML"),
    (["--set", "train.lr=!!binary aGVsbG8="], "must be a number"),
    (["--set", "train.epochs=.inf"], "finite number"),
    (["--set", "train.lr=.nan"], "finite number"),
    (["--set", "train.lr=-.inf"], "finite number"),
    (["--set", "train.lr=1/0"], "must be a number"),
    (["--set", "train.lr=abc"], "must be a number"),
    (["--set", "train.epochs=2.5"], "an integer"),
    (["--set", "train.epoch=3"], "did you mean 'epochs'"),
    (["--set", "trian.epochs=3"], "did you mean 'train'"),
    (["--set", "train.method=pgdat"], "did you mean 'pgd-at'"),
    (["--set", "train.optimizer=adamw"], "did you mean 'adam'"),
    (["--set", "train.schedule=stepp"], "did you mean 'step'"),
    (["--set", "model.name=smalcnn"], "did you mean 'smallcnn'"),
    (["--set", "train.attack.name=pdg3"], "did you mean 'pgd3'"),
    (["--set", "train.attack.eps=2"], "eps must be in [0, 1]"),
    (["--set", "train=5"], "must be a mapping"),
    (["--set", "train.lr"], "key.sub=value"),
    (["--set", "data.train_examples=0"], "train_examples"),
    (["--set", "train.gamma=-1"], "train.gamma"),
    (["--set", "train.milestones=[1]", "--set", "train.gamma=0"], "train.gamma must be > 0"),
    (["--set", "train.gamma=0.5"], "without milestones it changes nothing"),
    (["--set", "train.schedule=cyclic", "--set", "train.milestones=[1]"], "milestones apply to the step schedule"),
    (["--set", "train.lr_epochs=[0, 1]", "--set", "train.lr_values=[1, 0]"], "apply to the piecewise schedule"),
    (["--set", "train.momentum=1"], "train.momentum must be in [0, 1)"),
    (["--set", "train.momentum=-0.1"], "train.momentum must be in [0, 1)"),
    (["--set", "train.weight_decay=-1e-4"], "train.weight_decay must be >= 0"),
    (["--set", "train.lr=-0.1"], "lr must be > 0"),
    (["--set", "train.save_epochs=[0]"], "train.save_epochs"),
    (["--set", "train.batch_size=0"], "batch_size must be >= 1"),
    (["--set", "eval.batch_size=0"], "eval.batch_size"),
    (["--set", "data.workers=100000"], "data.workers must be in [0, 256]"),
    (["--set", "data.image_size=1000000"], "data.image_size must be <= 4096"),
    (["--set", "train.attack.step_size=1e400"], "finite number"),
    (["--set", "train.attack.restarts=5"], "train.attack.restarts must be 1"),
    (["--set", "train.attack.options={keep_best: true}"], "keep_best is not a training setting"),
    (["--set", "train.attack.examples_per_class=5"], "evaluation setting"),
    (["--set", "train.monitor.examples_per_class=5"], "train.monitor_examples"),
    (["--threads", "100000"], "--threads must be an integer in [1, 1024]"),
    (["--threads", "0"], "--threads must be an integer in [1, 1024]"),
    (["--dataset", "mnist7"], "did you mean"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "mps"], "not available"),
]


@pytest.mark.parametrize("extra, needle", CONFIG_CASES, ids=[" ".join(c[0])[:40] for c in CONFIG_CASES])
def test_bad_config_is_one_error_and_creates_nothing(capsys, tmp_path, extra, needle):
    out = tmp_path / "run"
    code, err = run_cli(capsys, ["train", "demo", "--out", out, "-q", *extra])
    assert_one_error(code, err, needle)
    assert not out.exists()


def test_unknown_preset_suggests_the_closest(capsys, tmp_path):
    code, err = run_cli(capsys, ["train", "demoo", "--out", tmp_path / "run", "-q"])
    assert_one_error(code, err, "did you mean 'demo'")


def test_cuda_without_cuda_is_one_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run_cli(capsys, ["train", "demo", "--out", tmp_path / "run", "-q", "--device", "cuda"])
    assert_one_error(code, err, "'cuda' is not available")
    assert not (tmp_path / "run").exists()


def test_yaml_1_1_numbers_and_fractions_are_numbers():
    cfg = load_config("demo", ["train.lr=1e-3", "train.epochs=1e1", "train.attack.eps=8/255",
                               "eval.attacks=[{name: fgsm, eps: 8/255}]"])
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 10 and isinstance(cfg.train.epochs, int)
    assert cfg.train.attack.eps == pytest.approx(8 / 255) and cfg.eval.attacks[0].eps == pytest.approx(8 / 255)


# --- data files: corrupt, not "not found" ------------------------------------------------------


def _idx(path: Path, magic: int, dims: tuple[int, ...], values: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + values.astype(np.uint8).tobytes())


def _mnist_root(tmp_path: Path, *, magic: int = 2051, bad_label: int | None = None, cut: int | None = None) -> Path:
    """A tiny MNIST raw folder (20 train, 10 test images) with one chosen defect."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        labels = np.arange(n) % 10
        if bad_label is not None:
            labels[3] = bad_label
        _idx(raw / f"{prefix}-images-idx3-ubyte", magic, (n, 28, 28), np.zeros((n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, (n,), labels)
        if cut is not None:
            images = raw / f"{prefix}-images-idx3-ubyte"
            images.write_bytes(images.read_bytes()[:cut])
    return tmp_path / "data"


@pytest.mark.parametrize("defect, needle", [({"magic": 1234}, "corrupt or truncated"),
                                            ({"bad_label": 200}, "include 200"),
                                            ({"cut": 1000}, "corrupt or truncated")],
                         ids=["bad-magic", "label-200", "truncated"])
def test_damaged_mnist_files_are_reported_as_corrupt(capsys, tmp_path, defect, needle):
    root = _mnist_root(tmp_path, **defect)
    out = tmp_path / "run"
    code, err = run_cli(capsys, ["train", "demo", "--out", out, "-q", "--dataset", "mnist", "--data-root", root])
    line = assert_one_error(code, err, needle)
    assert "not found" not in line and not out.exists()


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """split -> class -> number of 8x8 PNGs."""
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(root / split / name / f"{i}.png")
    return root


IMAGEFOLDER_CASES = [
    ({"train": {"a": 2, "b": 2}, "test": {"a": 2, "b": 0}}, "no images of class b"),
    ({"train": {"a": 2, "b": 0}, "test": {"a": 2, "b": 2}}, "no images of class b"),
    ({"train": {"a": 2, "b": 2}, "test": {"a": 2}}, "no images of class b"),
    ({"train": {"a": 3}, "test": {"a": 2}}, "at least 2 classes"),
]


@pytest.mark.parametrize("layout, needle", IMAGEFOLDER_CASES, ids=["empty-test", "empty-train", "missing-test",
                                                                   "one-class"])
def test_imagefolder_class_problems_are_one_error(capsys, tmp_path, layout, needle):
    root = _tree(tmp_path / "images", layout)
    code, err = run_cli(capsys, ["train", "demo", "--out", tmp_path / "run", "-q", "--dataset", "imagefolder",
                                 "--data-root", root])
    assert_one_error(code, err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("limit", [40, 20], ids=["bomb-warning", "bomb-error"])
def test_decompression_bomb_image_is_one_error(capsys, tmp_path, monkeypatch, limit):
    """PIL warns above MAX_IMAGE_PIXELS and refuses above twice that; both are an error here."""
    root = _tree(tmp_path / "images", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # the 8x8 images hold 64 pixels
    code, err = run_cli(capsys, ["train", "demo", "--out", tmp_path / "run", "-q", "--dataset", "imagefolder",
                                 "--data-root", root])
    assert_one_error(code, err, "decompression bomb")
    assert "warning" not in err


def test_unreadable_image_is_one_error(capsys, tmp_path):
    root = _tree(tmp_path / "images", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (root / "train" / "a" / "0.png").write_bytes(b"\x89PNG not really")
    code, err = run_cli(capsys, ["train", "demo", "--out", tmp_path / "run", "-q", "--dataset", "imagefolder",
                                 "--data-root", root])
    assert_one_error(code, err, "cannot read image", "0.png")


# --- evaluate / report on a damaged or misused run ----------------------------------------------


def _damage_results_truncated(run: Path) -> None:
    p = run / "results.npz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _damage_results_keyless(run: Path) -> None:
    np.savez(run / "results.npz", clean_pred=np.zeros(3, np.int64))


def _damage_results_shapes(run: Path) -> None:
    res = EvalResults.load(run / "results.npz")
    np.savez(run / "results.npz", labels=res.labels, clean_pred=res.clean_pred[:-1],
             class_names=np.array(json.dumps(res.class_names)))


def _write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


def _metrics_middle_garbage(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")


def _meta_without(key: str):
    def damage(run: Path) -> None:
        meta = json.loads((run / "meta.json").read_text())
        del meta[key]
        (run / "meta.json").write_text(json.dumps(meta))
    return damage


REPORT_CASES = [
    (_damage_results_truncated, "results.npz"),
    (_damage_results_keyless, "no labels"),
    (_damage_results_shapes, "clean_pred"),
    (_metrics_middle_garbage, "line 2"),
    (_write("metrics.jsonl", "[1, 2]\n{}\n"), "line 1"),
    (_write("metrics.jsonl", '{"epoch": 1, "robust": 5}\n'), "'robust'"),
    (_write("meta.json", "{not json"), "meta.json"),
    (_write("meta.json", "[1, 2]"), "JSON object"),
    (_meta_without("eps"), "no eps"),
    (_write("meta.json", '{"dataset": "d", "model": "m", "checkpoint": 3, "eps": 0.3, "superclasses": {}, '
                         '"train_method": "x", "attacks": {}}'), "'checkpoint'"),
]


@pytest.mark.parametrize("damage, needle", REPORT_CASES, ids=[
    "results-truncated", "results-keyless", "results-shapes", "metrics-garbage-line", "metrics-not-objects",
    "metrics-bad-block", "meta-not-json", "meta-list", "meta-missing-key", "meta-bad-type"])
def test_report_on_damaged_files_is_one_error_and_run_failed(capsys, run_copy, damage, needle):
    damage(run_copy)
    code, err = run_cli(capsys, ["report", run_copy])
    assert_one_error(code, err, needle)
    assert Run(run_copy).state == "failed"


def _nan_weights(path: Path) -> None:
    tensors, metadata = safe_load(path)
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata)


def test_checkpoint_with_nan_weights_is_refused_by_evaluate(capsys, run_copy):
    _nan_weights(run_copy / "checkpoints" / "last.safetensors")
    before = snapshot(run_copy / "checkpoints")
    code, err = run_cli(capsys, ["evaluate", run_copy, "--attacks", "fgsm"])
    assert_one_error(code, err, "non-finite weights")
    assert Run(run_copy).state == "failed" and snapshot(run_copy / "checkpoints") == before


def test_truncated_checkpoint_is_one_error(capsys, run_copy):
    ckpt = run_copy / "checkpoints" / "last.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    code, err = run_cli(capsys, ["evaluate", run_copy, "--attacks", "fgsm"])
    assert_one_error(code, err, "corrupt or truncated")
    assert Run(run_copy).state == "failed"


EVAL_FLAG_CASES = [
    (["--attacks", "fgsm", "--eps", "abc"], "--eps must be a finite number"),
    (["--attacks", "fgsm", "--eps", "8/0"], "--eps must be a finite number"),
    (["--attacks", "fgsm", "--eps", "2"], "eps must be in [0, 1]"),
    (["--attacks", "fgsm", "--step-size", "x/2"], "--step-size"),
    (["--attacks", "pdg5"], "did you mean 'pgd5'"),
    (["--attacks", "fgsm", "--device", "foo"], "unknown device"),
]


@pytest.mark.parametrize("flags, needle", EVAL_FLAG_CASES, ids=[" ".join(c[0][2:]) or c[0][1] for c in EVAL_FLAG_CASES])
def test_bad_evaluate_flags_leave_the_run_untouched(capsys, run_copy, flags, needle):
    before = snapshot(run_copy)
    code, err = run_cli(capsys, ["evaluate", run_copy, *flags])
    assert_one_error(code, err, needle)
    assert snapshot(run_copy) == before


def _surrogate(tmp_path: Path, num_classes: int = 10, channels: int = 1, size: int = 28, meta: dict | None = None) -> Path:
    model = create_model("smallcnn", num_classes=num_classes, in_channels=channels, image_size=size)
    meta = {"model": "smallcnn", "kwargs": {}, "num_classes": num_classes, "in_channels": channels,
            "image_size": size, "mean": [0.0] * channels, "std": [1.0] * channels} | (meta or {})
    path = tmp_path / "surrogate.safetensors"
    save_model(model, path, meta)
    return path


@pytest.mark.parametrize("kwargs, needle", [
    ({"num_classes": 5}, "has 5 classes but the model 10"),
    ({"channels": 3, "size": 32}, "another dataset"),
    ({"meta": {"kwargs": [1, 2]}}, "damaged model metadata"),
    ({"meta": {"num_classes": "ten"}}, "damaged model metadata"),
], ids=["class-count", "other-dataset", "kwargs-list", "sizes-text"])
def test_surrogate_that_does_not_fit_is_one_error(capsys, run_copy, tmp_path, kwargs, needle):
    path = _surrogate(tmp_path, **kwargs)
    code, err = run_cli(capsys, ["evaluate", run_copy, "--attacks", f"transfer:{path}"])
    assert_one_error(code, err, needle)
    assert Run(run_copy).state in ("complete", "failed")  # refused before or while attacking: never complete anew


def test_surrogate_with_nan_weights_is_refused(capsys, run_copy, tmp_path):
    path = _surrogate(tmp_path)
    _nan_weights(path)
    before = snapshot(run_copy)
    code, err = run_cli(capsys, ["evaluate", run_copy, "--attacks", f"transfer:{path}"])
    assert_one_error(code, err, "non-finite weights")
    assert snapshot(run_copy) == before


# --- the disk: read-only folders and a full disk ------------------------------------------------


def _failing_replace(error: int, inside: Path):
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).is_relative_to(inside):
            raise OSError(error, os.strerror(error), str(dst))
        return real(src, dst, *args, **kwargs)
    return replace


@pytest.mark.parametrize("error, needle", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")],
                         ids=["read-only", "no-permission"])
def test_unwritable_run_folder_is_one_error_and_untouched(capsys, run_copy, monkeypatch, error, needle):
    before = snapshot(run_copy)
    monkeypatch.setattr(os, "replace", _failing_replace(error, run_copy))
    code, err = run_cli(capsys, ["report", run_copy])
    assert_one_error(code, err, needle, str(run_copy))
    assert snapshot(run_copy) == before


def test_unwritable_parent_folder_is_one_error(capsys, tmp_path, monkeypatch):
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.is_relative_to(tmp_path / "locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, err = run_cli(capsys, ["train", "demo", "--out", tmp_path / "locked" / "run", "-q"])
    assert_one_error(code, err, "permission denied")


def test_full_disk_while_training_is_one_error_and_run_failed(capsys, tmp_path, monkeypatch, tiny_overrides):
    out = tmp_path / "run"
    monkeypatch.setattr(os, "replace", _failing_replace(errno.ENOSPC, out / "checkpoints"))
    code, err = run_cli(capsys, ["train", "demo", "--out", out, "-q", *sets(tiny_overrides), "--set", "train.epochs=1"])
    assert_one_error(code, err, "the disk is full", "checkpoints")
    assert Run(out).state == "failed" and not list((out / "checkpoints").glob("*"))  # no half-written file


# --- divergence ---------------------------------------------------------------------------------


def test_divergence_stops_training_failed_with_the_last_good_checkpoint(capsys, tmp_path, tiny_overrides):
    """Epoch 1 trains normally; lr x 1e30 from epoch 2 on must end the run, keeping epoch 1."""
    out = tmp_path / "run"
    code, err = run_cli(capsys, ["train", "demo", "--out", out, "-q", *sets(tiny_overrides),
                                 "--set", "train.method=standard", "--set", "train.milestones=[1]",
                                 "--set", "train.gamma=1e30", "--set", "train.epochs=3"])
    assert_one_error(code, err, "training diverged", "epoch 2, step")
    assert Run(out).state == "failed"
    assert "diverged" in json.loads((out / "status.json").read_text())["error"]
    tensors, metadata = safe_load(out / "checkpoints" / "last.safetensors")
    assert json.loads(metadata["classwise"])["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]


def test_epoch_metrics_average_over_examples_not_batches(tmp_path):
    """100 examples with batch 128: one batch of 100, so accuracy is correct / 100 (not / 128)."""
    from classwise.pipeline import load_run_data
    from classwise.train.loop import Trainer

    config = load_config("demo", ["data.train_examples=100", "train.batch_size=128", "train.epochs=1",
                                  "train.method=standard", "train.monitor_examples=10"])
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    spy = trainer.objective = ObjectiveSpy(trainer.objective)
    trainer.fit()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert spy.seen == 100
    assert record["train_acc"] == pytest.approx(100 * spy.correct / 100)
    assert record["train_loss"] == pytest.approx(spy.loss_sum / 100, rel=1e-5)


class ObjectiveSpy:
    """Wraps a training objective; counts the examples, correct logits and loss it returned."""

    def __init__(self, inner) -> None:
        self.inner, self.seen, self.correct, self.loss_sum = inner, 0, 0, 0.0

    def __call__(self, model, x, y, eps, generator):
        loss, logits = self.inner(model, x, y, eps, generator)
        self.seen += len(y)
        self.correct += int((logits.argmax(1) == y).sum())
        self.loss_sum += float(loss) * len(y)
        return loss, logits

    def __getattr__(self, name):
        return getattr(self.inner, name)


# --- the Python API: evaluate() refuses what it cannot measure ----------------------------------


class Scale(torch.nn.Module):
    """Multiplies the logits by a constant (NaN: a model whose outputs are NaN)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


def _api_case(name: str):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    nan_model = torch.nn.Sequential(model, Scale(float("nan")))
    cases = {
        "3d-images": (model, x[:, 0], y, {}),
        "float-0-255": (model, x * 255, y, {}),
        "nan-images": (model, x.masked_fill(x > 0.9, float("nan")), y, {}),
        "int32-images": (model, (x * 255).int(), y, {}),
        "label-out-of-range": (model, x, torch.tensor([0, 1, 2, 0, 1, 5]), {"class_names": ["a", "b", "c"]}),
        "negative-label": (model, x, torch.tensor([0, 1, 2, 0, 1, -1]), {}),
        "float-labels": (model, x, y.float(), {}),
        "k-mismatch-names": (model, x, y, {"class_names": ["a", "b", "c", "d"]}),
        "k-below-labels": (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)), x, y, {}),
        "nan-logits": (nan_model, x, y, {}),
        "length-mismatch": (model, x, y[:5], {}),
        "empty-set": (model, x[:0], y[:0], {}),
        "2d-labels": (model, x, y[:, None], {}),
        "tuple-outputs": (TupleOut(model), x, y, {}),
        "int64-logits": (torch.nn.Sequential(model, Rounded()), x, y, {}),
        "float64-images": (model, x.double(), y, {}),
        "meta-images": (model, x.to("meta"), y, {}),
        "meta-labels": (model, x, y.to("meta"), {}),
        "eps-as-text": (model, x, y, {"eps": "8/255"}),
        "eps-nan": (model, x, y, {"eps": float("nan")}),
    }
    return cases[name]


class TupleOut(torch.nn.Module):
    """A model returning (logits, features), as many research models do."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner(z), z


class Rounded(torch.nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.round().long()


API_CASES = {"3d-images": "(N, C, H, W)", "float-0-255": "[0, 1]", "nan-images": "[0, 1]", "int32-images": "uint8",
             "label-out-of-range": "[0, 3)", "negative-label": ">= 0", "float-labels": "integer",
             "k-mismatch-names": "4 classes", "k-below-labels": "2 logits", "nan-logits": "NaN or Inf logits",
             "length-mismatch": "differ in length", "empty-set": "empty", "2d-labels": "(N,)",
             "tuple-outputs": "got a tuple", "int64-logits": "floating logits", "float64-images": "images.to(",
             "meta-images": "meta device", "meta-labels": "meta device", "eps-as-text": "eps=8/255",
             "eps-nan": "finite number"}


@pytest.mark.parametrize("case", list(API_CASES))
def test_evaluate_refuses_what_it_cannot_measure(case):
    model, x, y, kwargs = _api_case(case)
    with pytest.raises(ValueError) as error:
        evaluate(model, x, y, ["fgsm"], **({"eps": 0.1, "device": "cpu", "progress": False} | kwargs))
    message = str(error.value)
    assert API_CASES[case] in message and "\n" not in message


def test_evaluate_float_images_in_range_still_work():
    model, x, y, _ = _api_case("3d-images")
    res = evaluate(model, x[:, None], y, ["fgsm"], eps=0.1, device="cpu", progress=False, class_names=["a", "b", "c"])
    assert len(res.labels) == 6 and res.class_names == ["a", "b", "c"]


# --- property-based: overrides and corrupted files ----------------------------------------------

KEYS = ["train.lr", "train.epochs", "train.milestones", "train.attack.eps", "train.attack", "model.kwargs",
        "data.name", "eval.attacks", "seed", "device", "perf.channels_last", "train.he.pmax_clip", "notes",
        "train.nonsense", "train"]
VALUES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(["[1,2", "{a: 1", "!!python/name:os.system", "!!binary AAAA", "!!set {a}", ".inf", "-.nan",
                     "1e-3", "1e9", "8/255", "1/0", "0x10", "0o7", "1_000", "~", "null", "[]", "{}", "- 1",
                     "'quoted'", "&a [*a]", "2020-01-01", "yes", "[.inf]", "{name: pgd3, eps: 8/255}", "1e400"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_override_is_a_config_or_one_clear_error(key, value):
    try:
        cfg = load_config("demo", [f"{key}={value}"])
    except (ClasswiseError, ValueError) as e:
        assert "\n" not in str(e).strip()
        return
    assert isinstance(cfg, RunConfig)


def _corrupt(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data if cut is None else data[: cut % max(1, len(data))])
    for pos, xor in flips:
        if out:
            out[pos % len(out)] ^= xor
    return bytes(out)


CORRUPTION = dict(cut=st.one_of(st.none(), st.integers(0, 10**6)),
                  flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))


@pytest.mark.parametrize("name", ["results.npz", "metrics.jsonl"])
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(**CORRUPTION)
def test_report_on_corrupted_file_never_tracebacks_nor_completes_damage(capsys, tiny_run, tmp_path, name, cut, flips):
    run = tmp_path / f"case-{abs(hash((name, cut, tuple(flips))))}"
    shutil.copytree(tiny_run, run)
    original = (run / name).read_bytes()
    damaged = _corrupt(original, cut, flips)
    (run / name).write_bytes(damaged)
    code, err = run_cli(capsys, ["report", run])
    if code == 0:  # still readable: then it must read back as the same content (a flip in slack bytes)
        assert Run(run).state == "complete" and _same_content(name, tiny_run / name, run / name)
    else:
        assert_one_error(code, err)
        assert Run(run).state == "failed"
    shutil.rmtree(run)


def _same_content(name: str, a: Path, b: Path) -> bool:
    if name == "results.npz":
        ra, rb = EvalResults.load(a), EvalResults.load(b)
        return (np.array_equal(ra.labels, rb.labels) and ra.adv_pred.keys() == rb.adv_pred.keys()
                and all(np.array_equal(ra.adv_pred[k], rb.adv_pred[k]) for k in ra.adv_pred))
    from classwise.fileio import read_jsonl

    return all(isinstance(r, dict) and "epoch" in r for r in read_jsonl(b))  # a flipped digit cannot be seen


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(**CORRUPTION)
def test_corrupted_checkpoint_is_refused_or_loads_finite(tiny_run, tmp_path, cut, flips):
    """A damaged checkpoint is one clear error, or (a flip inside the weights) loads finite weights."""
    from classwise.checkpoint import build_model, load_model
    from classwise.runs import load_run_data

    config = load_config(tiny_run / "config.yaml")
    path = tmp_path / "last.safetensors"
    path.write_bytes(_corrupt((tiny_run / "checkpoints" / "last.safetensors").read_bytes(), cut, flips))
    model = build_model(config.model, _tiny_data(config, load_run_data))
    try:
        load_model(model, path)
    except ClasswiseError as e:
        assert "\n" not in str(e)
        return
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


_DATA: dict = {}


def _tiny_data(config, loader):
    if "data" not in _DATA:
        _DATA["data"] = loader(config)
    return _DATA["data"]


# --- symbolic links planted in a run folder: nothing is written through them ------------------

@pytest.mark.parametrize("link", [".classwise.lock", "tables", "train.log"])
def test_no_write_follows_a_symbolic_link(capsys, run_copy, tmp_path, tiny_overrides, link):
    """A link to a user's file or folder is refused with one error; the target is untouched."""
    victim = tmp_path / "victim"
    if link == "tables":
        victim.mkdir()
        (victim / "classwise.csv").write_text("my own table\n")
        shutil.rmtree(run_copy / "tables")
    else:
        victim.write_text("my own notes\n")
        (run_copy / link).unlink(missing_ok=True)
    (run_copy / link).symlink_to(victim, target_is_directory=link == "tables")
    before = snapshot(tmp_path / "victim") if link == "tables" else victim.read_text()
    if link == "train.log":
        args = ["train", "--resume", "--out", run_copy, *sets(["train.epochs=3"])]
    else:
        args = ["report", run_copy]
    code, err = run_cli(capsys, args)
    assert_one_error(code, err, "symbolic link")
    assert (snapshot(victim) if link == "tables" else victim.read_text()) == before
    if link == "train.log":  # training stopped before the model changed: the results set aside are back
        assert (run_copy / "results.npz").is_file() and not (run_copy / "superseded").exists()


# --- settings the run must honour ---------------------------------------------------------------


def test_metrics_log_the_lr_each_epoch_used(tmp_path):
    """Step schedule, lr x 0.5 at epoch 1: epoch 1 trained at the base lr, epoch 2 at half of it."""
    out = tmp_path / "run"
    assert main(["train", "demo", "--out", out, "-q", *sets([
        "data.train_examples=20", "train.batch_size=10", "train.epochs=2", "train.method=standard",
        "train.milestones=[1]", "train.gamma=0.5", "train.monitor_examples=10", "train.monitor.name=fgsm"])]) == 0
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    base = load_config("demo").train.lr
    assert lrs == [base, base * 0.5]


# --- hand-edited run files: every command that reads them ends in one error, never a traceback ---

DEEP = "[" * 100_000 + "]" * 100_000  # nested deeper than Python's stack (RecursionError when parsed)
RUN_FILE_DAMAGE = {
    "summary-list": ("summary.json", "[1, 2]"), "summary-deep": ("summary.json", DEEP),
    "status-list": ("status.json", "[1]"), "status-deep": ("status.json", DEEP), "status-folder": ("status.json", None),
    "status-bad-state": ("status.json", '{"state": ["complete"]}'),
    "marker-list": ("classwise-run.json", "[1]"), "marker-deep": ("classwise-run.json", DEEP),
    "meta-deep": ("meta.json", DEEP), "metrics-deep": ("metrics.jsonl", DEEP + "\n"),
}
COMMANDS = {"report": lambda run: ["report", run],
            "compare": lambda run: ["compare", run, run, "--out", run.parent / "cmp"],
            "evaluate": lambda run: ["evaluate", run, "--attacks", "fgsm", "-q"],
            "resume": lambda run: ["train", "--resume", "--out", run, "-q", "--set", "train.epochs=2"]}


@pytest.mark.slow  # 40 cases, about 100 s on 2 busy cores (reports are re-rendered)
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", list(RUN_FILE_DAMAGE))
def test_damaged_run_file_is_one_error_or_rewritten(capsys, run_copy, damage, command):
    """A command either ends in one error line (exit 2) or does not need the file (then exit 0);
    never a traceback, and no file of the run is deleted."""
    name, text = RUN_FILE_DAMAGE[damage]
    path = run_copy / name
    path.unlink()
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    before = set(snapshot(run_copy))
    code, err = run_cli(capsys, COMMANDS[command](run_copy))
    if code != 0:
        assert_one_error(code, err, name if name != "status.json" or text is not None else "status.json")
    assert "Traceback" not in err and before <= set(snapshot(run_copy))


def _forged_results(run: Path, member: str, header: dict, body: bytes = b"") -> None:
    import io
    import zipfile

    with zipfile.ZipFile(run / "results.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header)
    members[member] = head.getvalue() + body
    with zipfile.ZipFile(run / "results.npz", "w") as z:
        for k, v in members.items():
            z.writestr(k, v)


def test_results_with_an_absurd_shape_are_refused_before_allocating(capsys, run_copy):
    """labels claiming 2**40 x 100 int64 (880 TB) in 64 bytes: refused from the header, nothing allocated."""
    _forged_results(run_copy, "labels.npy", {"descr": "<i8", "fortran_order": False, "shape": (2**40, 100)},
                    b"\0" * 64)
    code, err = run_cli(capsys, ["report", run_copy])
    assert_one_error(code, err, "labels.npy claims shape")
    assert Run(run_copy).state == "failed"


def test_report_from_nan_probabilities_is_refused_not_complete(capsys, run_copy):
    res = EvalResults.load(run_copy / "results.npz")
    k = len(res.class_names)
    probs = np.full((len(res.labels), k), np.nan, np.float32)
    EvalResults(res.labels, res.clean_pred, res.adv_pred, res.class_names, probs, dict(res.adv_probs),
                res.extras, res.facts).save(run_copy / "results.npz")
    code, err = run_cli(capsys, ["report", run_copy])
    assert_one_error(code, err, "clean_probs", "finite probabilities")
    assert Run(run_copy).state == "failed"


# --- property-based: malformed versions of every run file a command reads back -------------------
# The files are runfiles.READ_BACK (RunFiles accessors); each is damaged in its own format (bytes cut or
# flipped; a value anywhere in it replaced or dropped; the whole file another JSON value) and a reading
# command runs on the copy: one error line and exit 2, or exit 0 when the command does not need the file;
# never a traceback, and no file of the run is lost.

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2**40, 10**30, 0.5, "complete", "last"]),
                      st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
NPY_VALUE = st.sampled_from([np.zeros(0, np.int64), np.zeros((3, 4), np.float32), np.full(5, 2**40, np.int64),
                             np.full(100, -1, np.int64), np.full((100, 10), np.nan, np.float32), np.array("text"),
                             np.array([b"\xff\xfe"]), np.arange(101), np.array(1.5)])
MALFORM = st.one_of(
    st.tuples(st.just("bytes"), CORRUPTION["cut"], CORRUPTION["flips"]),
    st.tuples(st.just("replace"), st.integers(0, 10**6), JSON_VALUE),
    st.tuples(st.just("drop"), st.integers(0, 10**6)),
    st.tuples(st.just("whole"), JSON_VALUE),
    st.tuples(st.just("array"), st.integers(0, 10**6), NPY_VALUE),
)


def _paths(node, prefix=()) -> list[tuple]:
    """Every path (keys and indices) into a parsed JSON/YAML value, parents before children."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [prefix] + [p for k, v in items for p in _paths(v, (*prefix, k))]


def _edit(tree, pick: int, value=None, drop: bool = False):
    """``tree`` with the node at path number ``pick`` replaced by ``value`` (or removed); the root is replaced."""
    path = _paths(tree)[pick % len(_paths(tree))]
    if not path:
        return value if not drop else {}
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


def _text_codec(name: str):
    """(parse, dump) of a run file's text format: JSON, JSON lines (a list of records) or YAML."""
    import yaml

    if name.endswith(".jsonl"):
        return (lambda b: [json.loads(line) for line in b.decode().splitlines()],
                lambda v: "".join(json.dumps(r) + "\n" for r in (v if isinstance(v, list) else [v])).encode())
    if name.endswith(".yaml"):
        return lambda b: yaml.safe_load(b), lambda v: yaml.safe_dump(v).encode()
    return lambda b: json.loads(b), lambda v: json.dumps(v).encode()


def _npz_members(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _npz(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return out.getvalue()


def malformed(name: str, original: bytes, op: tuple) -> bytes:
    """``original`` (the bytes of run file ``name``) damaged by ``op`` (a draw of :data:`MALFORM`)."""
    kind, *args = op
    if kind == "bytes":
        return _corrupt(original, *args)
    if name.endswith(".npz"):
        members = _npz_members(original)
        key = sorted(members)[args[0] % len(members)] if kind in ("replace", "drop", "array") else None
        if kind == "drop":
            del members[key]
        elif kind == "array":
            import io

            buf = io.BytesIO()
            np.save(buf, args[1])
            members[key] = buf.getvalue()
        else:
            return _text_codec(".json")[1](args[-1])  # not a zip archive at all
        return _npz(members)
    parse, dump = _text_codec(name)
    if kind == "whole":
        return dump(args[0])
    if kind == "array":  # the array's values as JSON (byte strings as text)
        return dump(json.loads(json.dumps(args[1].tolist(), default=lambda b: b.decode("latin-1"))))
    return dump(_edit(parse(original), args[0], *(args[1:] or [None]), drop=kind == "drop"))


def _as_outside_run(tiny_run: Path, folder: Path) -> Path:
    """A copy of the tiny run made an outside-model run of its own weights (marker origin "outside", model.json as
    `evaluate --model` writes it, pointing at the copy's checkpoint): model.json's readers, without a second evaluation."""
    from classwise.checkpoint import file_sha256, read_meta
    from classwise.fileio import write_json

    run = folder / "outside"
    shutil.copytree(tiny_run, run)
    files = RunFiles(run)
    weights = files.checkpoint()
    record = read_meta(safe_load(weights)[1], weights) | {
        "normalization": "the dataset's", "weights": str(weights), "sha256": file_sha256(weights), "classifier": "head"}
    Run(run).save_outside_meta(record)
    write_json(files.marker, json.loads(files.marker.read_text()) | {"origin": "outside"})
    return run


@pytest.fixture(scope="module")
def read_back_runs(tiny_demo_run, tmp_path_factory) -> dict[str, Path]:
    """The run each damaged file lives in: model.json in an outside-model run, every other file in the tiny run."""
    outside = _as_outside_run(tiny_demo_run, tmp_path_factory.mktemp("outside"))
    assert Run.open(outside).origin == "outside" and Run.open(outside).stale_results() is None
    return {name: outside if name == "model_json" else tiny_demo_run for name in READ_BACK}


READERS = {"compare": lambda run: ["compare", run, "--out", run.parent / "cmp"],
           "show": lambda run: ["show", run, "--class", "3"],
           "resume": lambda run: ["train", "--resume", "--out", run, "-q", "--set", "train.epochs=2"],
           "report": lambda run: ["report", run],
           "evaluate": lambda run: ["evaluate", run, "--attacks", "fgsm", "-q", "--set", "eval.examples=50"]}
CHEAP_READERS = ("compare", "show")  # well under a second each; resume loads the data, report and evaluate render


def _lost(before: dict[str, str], run: Path) -> list[str]:
    """Files of ``before`` that are gone from ``run`` (moved aside into superseded/ counts as kept)."""
    after = snapshot(run)
    aside = {p.split("/", 2)[2] for p in after if p.startswith("superseded/") and p.count("/") >= 2}
    return [p for p in before if p not in after and p not in aside]


def _read_malformed(capsys, base: Path, folder: Path, name: str, op: tuple, command: str) -> None:
    run = folder / "run"
    shutil.copytree(base, run)
    path = getattr(RunFiles(run), name)
    path.write_bytes(malformed(path.name, path.read_bytes(), op))
    before = snapshot(run)
    code, err = run_cli(capsys, READERS[command](run))
    assert "Traceback" not in err, err
    if code != 0:
        assert_one_error(code, err)
        after = snapshot(run)
        changed = [p for p in before if p in after and after[p] != before[p]]
        assert set(changed) <= {"status.json", LOCK, MANIFEST}, changed  # a failed command marks the run, no more
    assert not _lost(before, run)


def _case_folder(tmp_path: Path, *key) -> Path:
    folder = tmp_path / f"case-{hashlib.sha256(repr(key).encode()).hexdigest()[:12]}"
    folder.mkdir()
    return folder


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(READ_BACK), op=MALFORM, command=st.sampled_from(CHEAP_READERS))
def test_malformed_run_file_is_one_error_never_a_traceback(capsys, read_back_runs, tmp_path, name, op, command):
    folder = _case_folder(tmp_path, name, op, command)
    _read_malformed(capsys, read_back_runs[name], folder, name, op, command)
    shutil.rmtree(folder)


@pytest.mark.slow  # every reader, report and evaluate included: about 3 minutes on 2 busy cores
@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(READ_BACK), op=MALFORM, command=st.sampled_from(list(READERS)))
def test_malformed_run_file_any_reader_is_one_error(capsys, read_back_runs, tmp_path, name, op, command):
    folder = _case_folder(tmp_path, name, op, command)
    _read_malformed(capsys, read_back_runs[name], folder, name, op, command)
    shutil.rmtree(folder)


# --- cases the property test found, kept as fixed cases -----------------------------------------


def test_checkpoint_claiming_absurd_sizes_is_refused_before_building(capsys, run_copy, monkeypatch):
    """num_classes 2**40 in a checkpoint's metadata: one error from the metadata, no layer ever allocated."""
    from safetensors.torch import save_file

    import classwise.checkpoint

    path = run_copy / "checkpoints" / "last.safetensors"
    tensors, metadata = safe_load(path)
    meta = json.loads(metadata["classwise"])
    save_file(tensors, str(path), {"classwise": json.dumps(meta | {"num_classes": 2**40})})
    monkeypatch.setattr(classwise.checkpoint, "create_model", lambda *a, **k: pytest.fail("a model was built"))
    code, err = run_cli(capsys, ["evaluate", run_copy, "--attacks", "fgsm", "-q"])
    assert_one_error(code, err, "last.safetensors", "'num_classes' must be an integer in [1, 100000]")


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["attacks"]["fgsm"].update(per_class=[1.0]), "attacks.fgsm.per_class': expected 10 entries"),
    (lambda s: s["clean"].update(worst_class=99), "clean.worst_class': 99 is not a class index"),
    (lambda s: s["clean"].update(overall=float("inf")), "expected a finite number"),
    (lambda s: s.pop("clean"), "field 'clean': missing"),
], ids=["short-per-class", "worst-class-99", "overall-inf", "no-clean"])
def test_compare_on_a_damaged_summary_is_one_error(capsys, run_copy, tmp_path, edit, needle):
    summary = json.loads((run_copy / "summary.json").read_text())
    edit(summary)
    (run_copy / "summary.json").write_text(json.dumps(summary))
    before = snapshot(run_copy)
    code, err = run_cli(capsys, ["compare", run_copy, "--out", tmp_path / "cmp"])
    assert_one_error(code, err, "summary.json", needle)
    assert snapshot(run_copy) == before and not (tmp_path / "cmp" / "compare.md").exists()


@pytest.mark.parametrize("origin", ["[1]", "{}"], ids=["list", "object"])
def test_marker_with_an_origin_of_the_wrong_type_is_one_error(capsys, run_copy, tmp_path, origin):
    marker = json.loads((run_copy / "classwise-run.json").read_text())
    (run_copy / "classwise-run.json").write_text(json.dumps(marker | {"origin": json.loads(origin)}))
    code, err = run_cli(capsys, ["compare", run_copy, "--out", tmp_path / "cmp"])
    assert_one_error(code, err, "classwise-run.json", "unknown origin")


def _config_without(run: Path, path: list) -> None:
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("command", ["resume", "evaluate"])
@pytest.mark.parametrize("key", [["train", "optimizer"], ["eval", "attacks", 0, "norm"], ["seed"]],
                         ids=["train.optimizer", "eval.attacks[0].norm", "seed"])
def test_run_config_missing_a_key_is_one_error_not_a_default(capsys, run_copy, key, command):
    """classwise writes every key into a run's config.yaml: a missing one is named, never filled with a default."""
    _config_without(run_copy, key)
    before = snapshot(run_copy)
    code, err = run_cli(capsys, READERS[command](run_copy))
    name = ".".join(str(k) for k in key).replace(".0.", "[0].")
    assert_one_error(code, err, "config.yaml", f"no key '{name}'")
    assert set(before) <= set(snapshot(run_copy))


def test_a_config_file_given_to_train_may_leave_keys_out(tmp_path):
    """Only a run's own config.yaml must be complete: a user's config file gives just the keys it changes."""
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochs: 3\n")
    assert load_config(path).train.epochs == 3
