"""Contract: every config key changes what it says, or is refused.

The walk covers every key ``classwise config-keys`` lists (:func:`classwise.config_keys.config_keys`):
each is in ``CHANGES`` (a change of it alone, on a tiny run of one or two epochs of two batches,
changes the trained weights, the metrics, the run's files or the evaluation results) or in
``EXEMPT`` with the reason a tiny run cannot show its effect. Keys whose effect needs another
setting (``train.beta`` needs TRADES, ``train.he.*`` HE-LIS or HE-CMP) are changed on top of
that setting, in both runs compared. Refused values are cases of tests/test_bad_inputs.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classwise.checkpoint import safe_load
from classwise.cli import main
from classwise.config_keys import config_keys

from cli_args import sets

pytestmark = pytest.mark.usefixtures("one_thread")

# Two batches of 10 mnist5k images, one epoch, PGD-1: about 0.25 s a run on one CPU thread.
BASE = ("data.train_examples=20", "train.epochs=1", "train.batch_size=10", "train.eps_warmup_epochs=0",
        "train.attack={name: pgd1, eps: 0.3, step_size: 0.1}", "train.monitor={name: pgd1, eps: 0.3, step_size: 0.1}",
        "train.monitor_examples=10", "eval.examples=20", "eval.attacks=[{name: fgsm, eps: 0.3}]")
TWO_EPOCHS = ("train.epochs=2",)
HE = ("model.head.name=he", "model.head.margin=0")
HE_CMP = (*HE, "train.method=he-cmp", *TWO_EPOCHS)
HE_LIS = (*HE, "train.method=he-lis", *TWO_EPOCHS)
FOLDER = ("data.name=imagefolder", "data.root={folder}")
PIECEWISE = ("train.schedule=piecewise", "train.lr_epochs=[0, 1]", "train.lr_values=[0.001, 0]")
# Clean training long enough that classes differ in accuracy and the monitor's small eps fools some images
LEARNS = ("train.method=standard", "data.train_examples=200", "train.batch_size=50", "train.epochs=2",
          "train.lr=0.01", "train.monitor.eps=0.1", "train.monitor.step_size=0.05", "train.monitor_examples=100")

# key -> (settings both runs share, the change, what it changes: weights, metrics, files or results)
CHANGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "seed": ((), ("seed=1",), "weights"),
    "data.name": ((), FOLDER, "weights"),
    "data.root": (FOLDER, ("data.root={folder2}",), "weights"),
    "data.image_size": (FOLDER, ("data.image_size=20",), "weights"),
    "data.train_examples": ((), ("data.train_examples=30",), "weights"),
    "data.remove_class": ((), ("data.remove_class=3",), "weights"),
    "data.stream": (FOLDER, ("data.stream=true", "data.workers=0"), "weights"),
    "model.name": ((), ("model.name=fastcnn",), "weights"),
    "model.kwargs": ((), ("model.kwargs={drop: 0.0}",), "weights"),
    "model.head.name": ((), HE, "weights"),
    "model.head.scale": (HE, ("model.head.scale=5",), "weights"),
    "model.head.margin": (("model.head.name=he", "train.method=he"), ("model.head.margin=0.5",), "weights"),
    "train.method": ((), ("train.method=standard",), "weights"),
    "train.epochs": ((), TWO_EPOCHS, "weights"),
    "train.batch_size": ((), ("train.batch_size=20",), "weights"),
    "train.optimizer": ((), ("train.optimizer=sgd",), "weights"),
    "train.lr": ((), ("train.lr=0.01",), "weights"),
    "train.momentum": ((), ("train.momentum=0.5",), "weights"),
    "train.weight_decay": ((), ("train.weight_decay=0.1",), "weights"),
    "train.milestones": (TWO_EPOCHS, ("train.milestones=[1]",), "weights"),
    "train.gamma": ((*TWO_EPOCHS, "train.milestones=[1]"), ("train.gamma=0.5",), "weights"),
    "train.eps_warmup_epochs": ((), ("train.eps_warmup_epochs=1",), "weights"),
    "train.attack.name": ((), ("train.attack.name=pgd2",), "weights"),
    "train.attack.eps": ((), ("train.attack.eps=0.2",), "weights"),
    "train.attack.step_size": ((), ("train.attack.step_size=0.05",), "weights"),
    "train.attack.norm": ((), ("train.attack={name: pgd1, eps: 1.0, norm: l2}",), "weights"),
    "train.attack.options": ((), ("train.attack.options={loss: cw}",), "weights"),
    "train.monitor.name": ((), ("train.monitor.name=fgsm",), "metrics"),
    "train.monitor.eps": ((), ("train.monitor.eps=0.05",), "metrics"),
    "train.monitor.step_size": ((), ("train.monitor.step_size=0.01",), "metrics"),
    "train.monitor.restarts": (LEARNS, ("train.monitor.restarts=3",), "metrics"),
    "train.monitor.norm": ((), ("train.monitor={name: pgd1, eps: 1.0, norm: l2}",), "metrics"),
    "train.monitor.options": (LEARNS, ("train.monitor.options={loss: cw}",), "metrics"),
    "train.monitor_examples": ((), ("train.monitor_examples=20",), "metrics"),
    "train.save_epochs": ((), ("train.save_epochs=[1]",), "files"),
    "train.beta": (("train.method=trades",), ("train.beta=1",), "weights"),
    "train.schedule": ((), ("train.schedule=cyclic",), "weights"),
    "train.lr_epochs": (PIECEWISE, ("train.lr_epochs=[0, 3]",), "weights"),
    "train.lr_values": (PIECEWISE, ("train.lr_values=[0.01, 0]",), "weights"),
    "train.he.scale_start": (HE_LIS, ("train.he.scale_start=5",), "weights"),
    "train.he.scale_end": (HE_LIS, ("train.he.scale_end=10",), "weights"),
    "train.he.pmax_start": (HE_CMP, ("train.he.pmax_start=0.5",), "weights"),
    "train.he.pmax_end": (HE_CMP, ("train.he.pmax_end=0.6",), "weights"),
    "train.he.pmax_ramp": ((*HE_CMP, "train.epochs=3"), ("train.he.pmax_ramp=0.1",), "weights"),
    "train.he.pmax_clip": (HE_CMP, ("train.he.pmax_clip=0.3",), "weights"),
    "train.he.scale_min": (HE_CMP, ("train.he.scale_min=100",), "weights"),
    "train.he.scale_max": (HE_CMP, ("train.he.scale_max=0.5",), "weights"),
    "train.he.probe_examples": (HE_CMP, ("train.he.probe_examples=10",), "weights"),
    "train.weight_norm_penalty": ((), ("train.weight_norm_penalty=1",), "weights"),
    "train.class_weight_gamma": (LEARNS, ("train.class_weight_gamma=2",), "weights"),
    "train.tensorboard": ((), ("train.tensorboard=true",), "files"),
    "perf.amp": ((), ("perf.amp=bf16",), "weights"),
    "eval.attacks": ((), ("eval.attacks=[{name: pgd2, eps: 0.3}]",), "results"),
    "eval.checkpoint": ((*TWO_EPOCHS, "train.save_epochs=[1]"), ("eval.checkpoint=epoch1",), "results"),
    "eval.examples": ((), ("eval.examples=30",), "results"),
}

# key -> why a tiny run cannot show its effect (each is still checked elsewhere, or refused when wrong)
EXEMPT = {
    "device": "this machine has one device kind (CPU): 'auto' and 'cpu' resolve to it; unknown or unavailable "
              "devices are refused (tests/test_bad_inputs.py)",
    "data.download": "the test data is on disk: download matters only when a dataset's files are missing",
    "data.workers": "DataLoader processes of a streamed folder: images and augmentation draws are seeded per "
                    "image, so results do not depend on it by design (tests/test_streaming.py); out of range "
                    "refused",
    "train.attack.restarts": "only 1 is accepted (training ascends one attack run's last iterate); others refused",
    "train.attack.examples_per_class": "an evaluation setting: only null is accepted for training attacks",
    "train.monitor.examples_per_class": "the monitor's sample is train.monitor_examples: only null is accepted",
    "train.checkpoint_every": "writes mid-epoch resumable states, which the epoch's end replaces; resuming from "
                              "them is tests/test_resume_kill.py",
    "train.sync_batchnorm": "applies when training on several GPUs under torchrun (tests/test_ddp.py); one CPU "
                            "process has no batch statistics to synchronise",
    "eval.batch_size": "images per forward pass: attacks sum per-example losses and draw per-example noise, so "
                       "results do not depend on it by design; speed and memory only",
    "perf.channels_last": "a memory format: the same numbers up to rounding (tests/test_perf_options.py)",
    "perf.compile": "torch.compile: the same numbers up to rounding, tens of seconds to start "
                    "(tests/test_perf_options.py)",
    "notes": "free text recorded in config.yaml and shown in the report; no number depends on it",
    "eval.save_adv_per_class": "adversarial images kept for the report's galleries: results do not depend on it; "
                               "the bound and the choice are tests/test_cli.py and tests/test_report_gallery.py",
    **{f"train.fair.{key}": "a fairness method's rule parameter (frl, dafa, wat, cfa; ignored by the others, which the "
                             "method's docs say): class weights update once per epoch from the validation split, "
                             "so a one-epoch run of two batches rarely shows it; each rule is checked on "
                             "hand-computed cases in tests/test_fair_objectives.py"
       for key in ("val_examples", "frl_tau_nat", "frl_tau_bndy", "frl_rate", "frl_rate_eps", "frl_rate_halving",
                   "frl_lim", "dafa_lambda", "dafa_warmup", "wat_eta", "cfa_ccm", "cfa_ccm_lambda", "cfa_ccr",
                   "cfa_ccr_lambda", "cfa_begin", "cfa_decay", "cfa_threshold")},
}


def test_every_config_key_has_a_contract():
    """A new config key must say what it changes (CHANGES) or why a tiny run cannot show it (EXEMPT)."""
    keys = [k.key for k in config_keys()]
    assert not set(CHANGES) & set(EXEMPT)
    assert sorted(keys) == sorted([*CHANGES, *EXEMPT])


def _folder(root: Path, seed: int) -> Path:
    """An image folder: 2 classes of 16x16 RGB PNGs, 10 training and 5 test images each."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", 10), ("test", 5)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contract-folders")
    return {"folder": str(_folder(root / "one", 0)), "folder2": str(_folder(root / "two", 1))}


@pytest.fixture
def no_report(monkeypatch):
    """Evaluations here write results and summary.json only: the report's figures are not compared (4 s each)."""
    monkeypatch.setattr("classwise.jobs.report.write_report", lambda *args, **kwargs: {})


def _train(out: Path, settings: tuple[str, ...], folders: dict[str, str]) -> Path:
    items = [s.replace("{folder}", folders["folder"]).replace("{folder2}", folders["folder2"])
             for s in (*BASE, *settings)]
    assert main(["train", "demo", "--out", str(out), "-q", *sets(items)]) == 0
    return out


def _observe(run: Path, what: str) -> object:
    """What a run shows: its final weights, metrics (without timings), file names, or evaluation results."""
    if what == "weights":
        tensors, _ = safe_load(run / "checkpoints" / "last.safetensors")
        return {k: hashlib.sha256(v.float().numpy().tobytes()).hexdigest() for k, v in sorted(tensors.items())}
    if what == "metrics":
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time_s", "train_s", "cpu_s")} for r in lines]
    if what == "files":
        return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert main(["evaluate", str(run), "-q"]) == 0
    with np.load(run / "results.npz") as npz:
        return {k: npz[k].tobytes() for k in sorted(npz.files)}


@pytest.mark.slow  # 56 tiny runs, about 100 s on 2 busy cores: beyond the default suite's budget
@pytest.mark.parametrize("key", sorted(CHANGES))
def test_changing_a_key_changes_the_run(tmp_path, folders, no_report, key):
    shared, change, what = CHANGES[key]
    before = _observe(_train(tmp_path / "before", shared, folders), what)
    after = _observe(_train(tmp_path / "after", (*shared, *change), folders), what)
    assert before != after, f"{key}: {change} changed no {what}"
    shutil.rmtree(tmp_path)
