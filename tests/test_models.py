"""Contracts of the model registry (classwise.models).

Every registered model maps [0, 1] images (B, C, H, W) to logits (B, K),
normalises inside with ``mean``/``std`` buffers, and exposes ``features``
(B, D) and a linear ``head`` with forward == head(features).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classwise.errors import ClasswiseError
from classwise.models import create_model, model_kwargs, model_names

SMALL = {"wideresnet": {"depth": 10, "width": 1}}  # keep the WRN tiny in tests
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def build(name: str, **kwargs) -> nn.Module:
    """Seeded model in eval mode; the head is randomised because SmallCNN's
    reference init zeroes it (constant logits would make the tests vacuous)."""
    torch.manual_seed(0)
    model = create_model(name, **{**SMALL.get(name, {}), **kwargs})
    nn.init.normal_(model.head.weight, std=0.1)
    return model.eval()


def images(channels: int = 3, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_the_paper_models():
    assert set(model_names()) == {"smallcnn", "resnet18", "preact_resnet18", "wideresnet", "resnet50", "fastcnn"}


@pytest.mark.parametrize("name", model_names())
def test_shapes_and_forward_is_head_of_features(name):
    model = build(name, num_classes=7)
    x = images()
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert isinstance(model.head, nn.Linear)
    assert logits.shape == (2, 7) and logits.dtype == torch.float32
    assert feats.shape == (2, model.head.in_features)
    assert model.head.weight.shape == (7, model.head.in_features)
    torch.testing.assert_close(logits, model.head(feats))


@pytest.mark.parametrize("name", model_names())
def test_normalisation_is_saved_and_applied(name):
    model = build(name, mean=MEAN, std=STD)
    state = model.state_dict()
    torch.testing.assert_close(state["normalize.mean"], torch.tensor(MEAN).view(1, 3, 1, 1))
    torch.testing.assert_close(state["normalize.std"], torch.tensor(STD).view(1, 3, 1, 1))
    plain = create_model(name, **SMALL.get(name, {})).eval()  # mean 0, std 1
    plain.load_state_dict({**state, "normalize.mean": torch.zeros(1, 3, 1, 1),
                           "normalize.std": torch.ones(1, 3, 1, 1)})
    x, m, s = images(), torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain((x - m) / s))
        before = model(x)
        model.normalize.mean.fill_(0.9)
        assert not torch.allclose(before, model(x))
    reloaded = create_model(name, **SMALL.get(name, {}))
    reloaded.load_state_dict(state)
    torch.testing.assert_close(reloaded.normalize.mean, state["normalize.mean"])


@pytest.mark.parametrize("name", model_names())
def test_input_gradient_flows_per_sample(name):
    model = build(name)
    x = images().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0].sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all()
    assert grad[0].abs().sum() > 0
    assert grad[1].abs().sum() == 0  # eval mode: samples do not interact
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", model_names())
def test_grayscale_input(name):
    model = build(name, in_channels=1, image_size=28, mean=0.1307, std=0.3081)
    x = images(channels=1, size=28)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    assert model.normalize.mean.shape == (1, 1, 1, 1)


def test_unknown_name_lists_known_models():
    with pytest.raises(ClasswiseError, match="unknown model 'vgg16'.*smallcnn.*resnet50"):
        create_model("vgg16")


@pytest.mark.parametrize("name, kwargs, match", [
    ("resnet18", {"depth": 34}, "unknown argument.*depth.*accepted: none"),
    ("wideresnet", {"widen": 2}, "widen.*accepted: depth, width, dropout"),
    ("wideresnet", {"depth": 11}, "6n \\+ 4"),
    ("wideresnet", {"depth": 10, "width": 0}, "width"),
    ("smallcnn", {"drop": 1.0}, "drop"),
    ("smallcnn", {"image_size": 8}, "image_size >= 10"),
    ("fastcnn", {"widths": (32, 0)}, "widths must be positive"),
    ("fastcnn", {"image_size": 4}, "image_size >= 8"),
    ("resnet18", {"num_classes": 0}, "num_classes"),
    ("resnet18", {"mean": (0.5, 0.5)}, "mean needs 1 or 3"),
    ("resnet18", {"std": (0.0,)}, "std must be > 0"),
])
def test_bad_arguments_raise_value_error(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


def test_fastcnn_is_small_and_keeps_its_stages():
    model = create_model("fastcnn", image_size=32)
    assert n_params(model) == 288_746  # the size the cifar10-cpu preset and README state
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    narrow = create_model("fastcnn", image_size=16, widths=(8, 16))
    with torch.no_grad():
        assert narrow.features(images(size=16)).shape == (2, 16)


def test_smallcnn_is_the_trades_mnist_network():
    model = create_model("smallcnn", in_channels=1, image_size=28)
    # conv 1*32*9+32, 32*32*9+32, 32*64*9+64, 64*64*9+64; fc 1024*200+200, 200*200+200, 200*10+10
    assert n_params(model) == 320 + 9248 + 18496 + 36928 + 205000 + 40200 + 2010 == 312202
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.padding) for c in convs] == [((3, 3), (0, 0))] * 4
    assert model.backbone.fc1.in_features == 64 * 4 * 4 and model.head.in_features == 200
    assert model.backbone.drop.p == 0.5
    assert model.head.weight.abs().sum() == 0 and model.head.bias.abs().sum() == 0  # reference init
    assert create_model("smallcnn", image_size=32).backbone.fc1.in_features == 64 * 5 * 5


def test_smallcnn_dropout_is_active_only_in_training():
    model, x = build("smallcnn"), images()
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.features(x))
        model.train()
        assert not torch.allclose(model.features(x), model.features(x))


@pytest.mark.parametrize("name, kwargs, count", [
    ("resnet18", {}, 11_173_962),        # kuangliu/pytorch-cifar ResNet18
    ("preact_resnet18", {}, 11_172_170),  # fast_adversarial PreActResNet18 (final BN)
    ("wideresnet", {}, 46_160_474),       # TRADES/MART WRN-34-10 (defaults)
    ("wideresnet", {"depth": 16, "width": 2}, 691_674),
    ("resnet50", {}, 23_528_522),         # torchvision resnet50, 10 classes
])
def test_reference_parameter_counts(name, kwargs, count):
    assert n_params(create_model(name, **kwargs)) == count


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "wideresnet"])
def test_cifar_stem_keeps_resolution(name):
    model = create_model(name, **SMALL.get(name, {}))
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_head_is_replaceable():
    model, x = build("resnet18"), images()
    model.head = nn.Linear(model.head.in_features, 3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_model_kwargs_reports_defaults():
    assert model_kwargs("wideresnet") == {"depth": 34, "width": 10, "dropout": 0.0}
    assert model_kwargs("smallcnn") == {"drop": 0.5}
    assert model_kwargs("resnet50") == {}
