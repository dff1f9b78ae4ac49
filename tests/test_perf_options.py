"""Speed options (channels_last, bf16 autocast, compile): same code path on CPU, finite numbers.

No timings here: speed is measured by the scripts in benchmarks/.
"""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from classwise.attacks import create_attack
from classwise.config import PerfConfig, load_config
from classwise.errors import ClasswiseError
from classwise.evaluate import evaluate
from classwise.models import create_model
from classwise.perf import autocast, channels_last_on, prepare_input, prepare_model
from classwise.runs import load_run_data
from classwise.fileio import read_jsonl
from classwise.checkpoint import build_model
from classwise.train.loop import Trainer

from attack_models import small_cnn

OPTIONS = [
    PerfConfig(channels_last=True),
    PerfConfig(amp="bf16"),
    PerfConfig(channels_last=True, amp="bf16"),
]


def _record_output_dtypes(model: torch.nn.Module) -> list[tuple[bool, torch.dtype]]:
    """A list that fills, per forward pass of ``model``, with (model.training, dtype of the logits)."""
    seen: list[tuple[bool, torch.dtype]] = []
    model.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    return seen


def _dynamo_counters() -> dict:
    """torch.compile's counters, cleared with its caches: after a compiled call they count the frames compiled."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    return counters


def _model_and_batch(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = create_model("preact_resnet18", num_classes=10, in_channels=3, image_size=32)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return model, x, torch.tensor([0, 1, 2, 3])


def test_perf_config_validates_and_loads_from_overrides():
    with pytest.raises(ClasswiseError, match="perf.amp"):
        PerfConfig(amp="fp16")
    cfg = load_config(None, ["perf.channels_last=true", "perf.amp=bf16"])
    assert cfg.perf == PerfConfig(channels_last=True, amp="bf16", compile=False)
    with pytest.raises(ClasswiseError, match="must be true or false"):
        load_config(None, ["perf.compile=3"])


@pytest.mark.parametrize("perf", OPTIONS, ids=str)
def test_training_step_gives_finite_loss_and_grads(perf):
    model, x, y = _model_and_batch()
    model = prepare_model(model, perf).train()
    with autocast(perf, "cpu"):
        x_adv = create_attack("pgd2", model, 8 / 255, keep_best=False)(prepare_input(x, perf), y)
        loss = F.cross_entropy(model(prepare_input(x_adv, perf)), y)
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_channels_last_defaults_to_on_for_cuda_and_off_for_cpu():
    perf = load_config(None, []).perf
    assert perf.channels_last is None and load_config(None, ["perf.channels_last=null"]).perf == perf
    with pytest.raises(ClasswiseError, match="must be true, false or null, got 'auto'"):
        load_config(None, ["perf.channels_last=auto"])
    assert channels_last_on(perf, torch.device("cuda")) and not channels_last_on(perf, torch.device("cpu"))
    assert channels_last_on(PerfConfig(channels_last=True), torch.device("cpu"))
    assert not channels_last_on(PerfConfig(channels_last=False), torch.device("cuda"))
    assert not channels_last_on(None, torch.device("cuda"))  # evaluate(perf=None) leaves a user's model alone
    model, x, _ = _model_and_batch()
    prepare_model(model, perf)  # a CPU model: left in NCHW
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous() and prepare_input(x, perf) is x


def test_channels_last_changes_memory_format_not_values():
    model, x, _ = _model_and_batch()
    reference = model.eval()(x)
    prepare_model(model, PerfConfig(channels_last=True))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = model(prepare_input(x, PerfConfig(channels_last=True)))
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_runs_forward_passes_and_evaluation():
    model, x, y = _model_and_batch()
    with autocast(PerfConfig(amp="bf16"), "cpu"):
        logits = model.eval()(x)
    assert logits.dtype == torch.bfloat16
    y = logits.argmax(1)  # every example clean-correct: the attack runs on all of them
    seen = _record_output_dtypes(model)
    res = evaluate(model, x, y, ("fgsm",), eps=8 / 255, device="cpu", progress=False, perf=PerfConfig(amp="bf16"))
    assert res.adv_pred["fgsm"].shape == (4,)
    # The batch's forward passes (clean logits, FGSM's gradient, the adversarial logits) run in bf16; the input
    # check before them and the zero-gradient sanity check after them are not under autocast.
    assert [dtype for _, dtype in seen].count(torch.bfloat16) >= 3, seen


def test_compile_keeps_the_module_its_attributes_and_state_dict_keys():
    model, _, _ = _model_and_batch()
    keys = list(model.state_dict())
    assert model._compiled_call_impl is None
    same = prepare_model(model, PerfConfig(compile=True))  # lazy: nothing compiles until a call
    assert same is model and hasattr(model, "head") and list(model.state_dict()) == keys
    assert model._compiled_call_impl is not None  # calls now go through torch.compile
    assert prepare_model(model, PerfConfig(compile=True)) is model  # idempotent


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch.compile of a model takes minutes on a CPU (C++ code generation); "
                           "exercised on GPU by benchmarks/gpu_check.sh")
def test_compiled_model_matches_eager_on_gpu():
    model, x, y = _model_and_batch()
    model, x = model.cuda().eval(), x.cuda()
    reference = model(x)
    prepare_model(model, PerfConfig(compile=True))
    torch.testing.assert_close(model(x), reference, atol=1e-3, rtol=1e-3)


_NO_CXX = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                             reason="torch.compile on a CPU generates C++ and needs a compiler (g++ or $CXX)")


@_NO_CXX
def test_compiled_model_runs_the_attack_loop_on_cpu():
    """A small model (compiles in seconds on a CPU): same logits, and PGD through it as through eager."""
    torch.manual_seed(0)
    model = small_cnn().eval()
    x, y = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.arange(8)
    reference_logits = model(x)
    reference = create_attack("pgd3", model, 0.1)(x, y, torch.Generator().manual_seed(0))
    counters = _dynamo_counters()
    prepare_model(model, PerfConfig(compile=True))
    torch.testing.assert_close(model(x), reference_logits, atol=1e-4, rtol=1e-4)
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["unique_graphs"] >= 1  # the compiled path ran
    x_adv = create_attack("pgd3", model, 0.1)(x, y, torch.Generator().manual_seed(0))
    assert model._compiled_call_impl is not None and (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert (x_adv != reference).float().mean() < 0.01  # sign steps agree but where a gradient is ~0


@pytest.mark.slow
@_NO_CXX
def test_trainer_trains_and_checkpoints_a_compiled_model(tmp_path):
    overrides = ["data.train_examples=80", "train.epochs=1", "train.batch_size=40", "train.eps_warmup_epochs=0",
                 "train.attack={name: pgd2, eps: 0.3, step_size: 0.15}", "train.monitor.name=pgd2",
                 "train.monitor_examples=20", "perf.compile=true"]
    config = load_config("demo", overrides)
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    eager_keys = list(build_model(config.model, trainer.data).state_dict())
    counters = _dynamo_counters()
    trainer.fit()
    assert trainer.module._compiled_call_impl is not None
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["unique_graphs"] >= 1  # the compiled path ran
    (record,) = read_jsonl(tmp_path / "metrics.jsonl")
    assert math.isfinite(record["train_loss"])
    weights = load_file(tmp_path / "checkpoints" / "last.safetensors")
    assert sorted(weights) == sorted(eager_keys)  # no "_orig_mod." prefixes: checkpoints load into eager models


def test_trainer_runs_with_channels_last_and_bf16(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.epochs=1", "perf.channels_last=true", "perf.amp=bf16"]
    config = load_config(None, overrides)
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    seen = _record_output_dtypes(trainer.module)
    conv = next(m for m in trainer.module.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    trainer.fit()
    (record,) = read_jsonl(tmp_path / "metrics.jsonl")
    assert math.isfinite(record["train_loss"])
    assert (tmp_path / "checkpoints" / "last.safetensors").is_file()
    trained = [dtype for training, dtype in seen if training]  # the training step's forward passes
    assert trained and set(trained) == {torch.bfloat16}, seen
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", ["autoattack", "torchattacks"])
@pytest.mark.parametrize("spec", ["apgd-t", "apgd-ce", "fab-t", "square"])
def test_library_attacks_run_on_a_channels_last_model(spec, backend):
    """AutoAttack and torchattacks .view() input gradients: a channels_last model (perf.channels_last) must not break
    them, and gives the images the same model in NCHW gives (the same arithmetic up to layout: a tight tolerance)."""
    from classwise.attacks import create_attack
    from classwise.models import create_model

    torch.manual_seed(0)
    nchw = create_model("fastcnn", 10, 3, 16, widths=(8, 16)).eval()
    nhwc = create_model("fastcnn", 10, 3, 16, widths=(8, 16)).eval()
    nhwc.load_state_dict(nchw.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    x = torch.rand(6, 3, 16, 16)
    y = nchw(x).argmax(1)
    budget = {"n_queries": 50} if spec == "square" else {"steps": 3}
    ref = create_attack(spec, nchw, 8 / 255, backend=backend, **budget)(x, y, torch.Generator().manual_seed(1))
    got = create_attack(spec, nhwc, 8 / 255, backend=backend, **budget)(
        x.contiguous(memory_format=torch.channels_last), y, torch.Generator().manual_seed(1))
    assert got.shape == ref.shape
    torch.testing.assert_close(got.contiguous(), ref, atol=1e-4, rtol=0)
