"""Shared fixtures: tiny run settings and a trained tiny run (built once per session)."""

from __future__ import annotations

import os
import pytest

os.environ.setdefault("CLASSWISE_PROGRESS", "0")

# A run small enough for CI: 500 training images, 2 epochs, PGD-3, 100 test images.
TINY = (
    "data.train_examples=500",
    "train.epochs=2",
    "train.batch_size=50",
    "train.attack={name: pgd3, eps: 0.3, step_size: 0.1}",
    "train.monitor={name: pgd3, eps: 0.3, step_size: 0.1}",
    "train.monitor_examples=100",
    "eval.examples=100",
    "eval.attacks=[{name: fgsm, eps: 0.3}, {name: pgd5, eps: 0.3, step_size: 0.1}]",
)


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    return TINY


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory):
    """One tiny run trained, evaluated (fgsm, pgd5 at eps 0.3 on 100 test images) and reported by ``demo``,
    shared by the modules that check what commands do to a run: never modify it, copy it."""
    from classwise.cli import main
    from classwise.runs import Run

    run = tmp_path_factory.mktemp("tiny-demo") / "run"
    assert main(["demo", "--out", str(run), "-q", *[x for o in TINY for x in ("--set", o)]]) == 0
    assert Run(run).state == "complete"
    return run


# What a training method needs beyond the demo config (its attack, schedule or head).
_METHOD_NEEDS = {"fgsm-rs": ["train.attack.name=fgsm-rs", "train.schedule=cyclic"],
                 "he": ["model.head.name=he"], "he-lis": ["model.head.name=he", "model.head.margin=0"],
                 "he-cmp": ["model.head.name=he", "model.head.margin=0"],
                 **{m: ["data.train_examples=100", "train.fair.val_examples=20", "train.fair.dafa_warmup=0",
                        "train.fair.cfa_begin=0", "train.fair.cfa_threshold=0"]  # cfa: calibrated, averaged
                    for m in ("frl", "dafa", "wat", "cfa")}}  # 20 held out, 80 left


def one_epoch_overrides(method: str) -> list[str]:
    """Overrides of the demo config for one 2-batch epoch of ``method`` (80 images, PGD-2), both defences on."""
    return ["data.train_examples=80", f"train.method={method}", "train.epochs=1", "train.batch_size=40",
            "train.eps_warmup_epochs=0", "train.attack.name=pgd2", "train.monitor.name=pgd2",
            "train.monitor_examples=10", "train.weight_norm_penalty=0.1", "train.class_weight_gamma=1",
            *_METHOD_NEEDS.get(method, [])]


@pytest.fixture(scope="session")
def method_overrides():
    """:func:`one_epoch_overrides`, for tests that train every method for one short epoch."""
    return one_epoch_overrides


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models gain nothing from threads, and busy
    2-core machines oversubscribe. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_mlp():
    """A user's own plain model (no classwise interfaces) briefly trained on mnist5k,
    with 300 test images and labels: (model, x uint8 (300, 1, 28, 28), y (300,))."""
    import torch
    from torch import nn

    from classwise.data import load_data

    data = load_data("mnist5k")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data.train_x.float() / 255, data.train_y
    for i in range(0, 2000, 100):
        loss = nn.functional.cross_entropy(model(x[i : i + 100]), y[i : i + 100])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, data.test_x[:300], data.test_y[:300]
