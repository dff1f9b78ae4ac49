"""Any model through the command line: outside weights, torchvision, timm, RobustBench; custom attacks.

Every file is made in the test (random weights, a 20-image CIFAR-10-named image
folder); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classwise.cli import main
from classwise.data import load_data
from classwise.errors import ClasswiseError
from classwise.models.outside import KINDS
from classwise.runs import Run

pytestmark = pytest.mark.usefixtures("one_thread")

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _has_robustbench() -> bool:
    try:
        from classwise.models.outside import robustbench

        robustbench()
        return True
    except ClasswiseError:
        return False


needs_robustbench = pytest.mark.skipif(not _has_robustbench(), reason="the robustbench extra is not installed "
                                       "(pip install 'classwise[robustbench]')")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """An image folder with CIFAR-10's class names: 2 train and 2 test 32x32 RGB images per class."""
    root = tmp_path_factory.mktemp("cifar-like")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CIFAR10:
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def _evaluate(folder: Path, out: Path, *args: str) -> int:
    return main(["evaluate", *args, "--dataset", "imagefolder", "--data-root", str(folder), "--out", str(out),
                 "--attacks", "fgsm,pgd2@step=0.01", "--eps", "8/255", "-q"])


def _resnet18_file(path: Path, wrap=lambda sd: sd) -> tuple[torch.nn.Module, Path]:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(wrap(net.state_dict()), path)
    return net, path


def _clean_pred(net: torch.nn.Module, run: Run, mean, std) -> np.ndarray:
    """The network's own predictions on the run's evaluated images, normalised by hand."""
    idx = run.results().extras["index"]
    x = run.data().test_x[idx].float() / 255
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        return net((x - m) / s).argmax(1).numpy()


@pytest.fixture(scope="module")
def tv_run(folder, tmp_path_factory) -> tuple[Path, torch.nn.Module, Path]:
    """torchvision:resnet18 from a plain torch.save(state_dict), evaluated with --save-adv."""
    tmp = tmp_path_factory.mktemp("tv")
    net, weights = _resnet18_file(tmp / "resnet18.pt")
    assert _evaluate(folder, tmp / "run", "--model", "torchvision:resnet18", "--weights", str(weights),
                     "--save-adv") == 0
    return tmp / "run", net, weights


def test_torchvision_model_from_a_plain_state_dict(tv_run, folder):
    path, net, weights = tv_run
    run = Run.open(path)
    assert run.origin == "outside" and run.state == "complete" and run.trained
    meta, data = run.meta(), load_data("imagefolder", folder)
    assert meta["model"] == "torchvision:resnet18" and meta["origin"] == "outside"
    assert meta["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["outside"]["weights"] == str(weights.resolve())
    assert meta["outside"]["normalization"] == "the dataset's (imagefolder)"
    assert meta["outside"]["mean"] == pytest.approx(list(data.mean))
    # the results are those of the user's network, normalised with the dataset's mean and std
    results = run.results()
    assert len(results.labels) == 20
    assert np.array_equal(results.clean_pred, _clean_pred(net, run, data.mean, data.std))
    for name in ("summary.json", "report.html", "figures/weight_norms.png", "tables/classwise.csv"):
        assert (path / name).is_file(), name
    assert meta["classifier"] == "last nn.Linear 'net.fc'"
    assert "The model has no head: the classifier is its last nn.Linear 'net.fc'" in (path / "report.md").read_text()


def test_wrapped_state_dict_loads_the_same_weights(tv_run, folder, tmp_path):
    _, net, _ = tv_run
    _, weights = _resnet18_file(tmp_path / "ckpt.pth", lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()},
                                                                   "epoch": 7})
    assert _evaluate(folder, tmp_path / "run", "--model", "torchvision:resnet18", "--weights", str(weights),
                     "--no-normalize") == 0
    run = Run.open(tmp_path / "run")
    assert run.meta()["outside"]["normalization"] == "none"
    assert np.array_equal(run.results().clean_pred, _clean_pred(net, run, [0.0], [1.0]))


def test_saved_adversarial_examples_are_the_evaluated_ones(tv_run):
    from safetensors.torch import load_file

    path, _, _ = tv_run
    run = Run.open(path)
    results, model = run.results(), run.model()
    x_all = run.data().test_x.float() / 255
    assert sorted(p.name for p in (path / "adv").iterdir()) == ["fgsm.safetensors", "pgd2.safetensors"]
    for attack, eps in (("fgsm", 8 / 255), ("pgd2", 8 / 255)):
        saved = load_file(path / "adv" / f"{attack}.safetensors")
        index, images = saved["index"].numpy(), saved["images"]
        pos = np.searchsorted(results.extras["index"], index)
        # exactly the clean-correct examples were attacked, each inside the eps-ball and [0, 1]
        assert np.array_equal(pos, np.flatnonzero(results.clean_pred == results.labels))
        assert float((images - x_all[index]).abs().max()) <= eps + 1e-6 and images.min() >= 0 and images.max() <= 1
        with torch.no_grad():
            assert np.array_equal(model(images).argmax(1).numpy(), results.adv_pred[attack][pos])


def test_pickle_payload_is_refused_and_never_runs(folder, tmp_path, capsys):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, bad)
    assert _evaluate(folder, tmp_path / "run", "--model", "torchvision:resnet18", "--weights", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refusing") and "never unpickles" in err[0]
    assert not marker.exists() and not (tmp_path / "run").exists()
    torch.load(bad, weights_only=False)  # the payload is real: full unpickling would have run it
    assert marker.exists()


def test_weights_that_do_not_fit_list_the_keys(folder, tmp_path, capsys):
    _, weights = _resnet18_file(tmp_path / "r18.pt")
    assert _evaluate(folder, tmp_path / "run", "--model", "torchvision:resnet34", "--weights", str(weights)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit the model" in err[0] and "missing keys" in err[0] and "layer1.2" in err[0]


def test_weights_changed_after_the_run_are_refused(folder, tmp_path):
    _, weights = _resnet18_file(tmp_path / "r18.pt")
    assert _evaluate(folder, tmp_path / "run", "--model", "torchvision:resnet18", "--weights", str(weights)) == 0
    _resnet18_file(weights, lambda sd: {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()})
    with pytest.raises(ClasswiseError, match="changed since the run was made"):
        Run.open(tmp_path / "run").model()


@pytest.mark.parametrize("args, message", [
    (["--model", "torchvision:resnet18"], "needs --weights"),
    (["--model", "nope:resnet18", "--weights", "x.pt"], "unknown model kind"),
    (["--model", "torchvision:nonexistent_net", "--weights", "x.pt"], "torchvision has no model"),
    (["--model", "timm:nonexistent_net", "--weights", "x.pt"], "timm has no model"),
    (["--model", "torchvision:resnet18", "--weights", "missing.pt"], "does not exist"),
    (["--model", "torchvision:resnet18", "--weights", "x.pt", "--mean", "0.5"], "both --mean and --std"),
    (["--model", "torchvision:resnt18", "--weights", "x.pt"], "(did you mean 'resnet18'?)"),
    (["--model", "timm:resnett18", "--weights", "x.pt"], "(did you mean 'resnet18'?)"),
    (["--model", "timm:resnet18.a1_in1kk@pretrained"], "(did you mean 'resnet18.a1_in1k'?)"),
    (["--model", "torchvision:resnet18@weights=IMAGENET1K_V9"], "(did you mean 'IMAGENET1K_V1'?)"),
    (["--model", "timm:resnet18@weights=X"], "'@weights=X' is not understood"),
    (["--model", "robustbench:Wong2020Fast@pretrained"], "always load their weights"),
    (["--model", "torchvision:resnet18@pretrained", "--weights", "x.pt"], "drop --weights"),
    (["--model", "torchvision:resnet18"], "or @pretrained"),
])
def test_bad_outside_input_is_one_error_line(folder, tmp_path, capsys, args, message):
    (tmp_path / "x.pt").write_bytes(b"")
    args = [a if not a.endswith(".pt") else str(tmp_path / a) for a in args]
    assert _evaluate(folder, tmp_path / "run", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_evaluate_set_changes_only_eval_keys(tv_run, capsys):
    path, _, _ = tv_run
    assert main(["evaluate", str(path), "--set", "model.name=smallcnn", "-q"]) == 2
    assert "only eval.*" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--set", "eval.batch_size=7", "--attacks", "fgsm@eps=0.01", "-q"]) == 0
    assert "fgsm" in Run.open(path).summary()["attacks"]


# -- registry-driven: every model spec kind builds, evaluates and reports -------------------------


def _registry_weights(tmp: Path, data) -> tuple[str, list[str]]:
    from classwise.checkpoint import save_model
    from classwise.models import create_model

    net = create_model("smallcnn", num_classes=10, in_channels=3, image_size=32, mean=data.mean, std=data.std)
    save_model(net, tmp / "smallcnn.safetensors")
    return "smallcnn", ["--weights", str(tmp / "smallcnn.safetensors")]


def _torchvision_weights(tmp: Path, data) -> tuple[str, list[str]]:
    _, path = _resnet18_file(tmp / "tv.pt")
    return "torchvision:resnet18", ["--weights", str(path)]


def _timm_weights(tmp: Path, data) -> tuple[str, list[str]]:
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    torch.save(net.state_dict(), tmp / "timm.bin")
    return "timm:resnet10t", ["--weights", str(tmp / "timm.bin")]


def _robustbench_weights(tmp: Path, data) -> tuple[str, list[str]]:
    if not _has_robustbench():
        pytest.skip("the robustbench extra is not installed (pip install 'classwise[robustbench]')")
    from classwise.models.outside import robustbench_architecture

    torch.manual_seed(0)
    (tmp / "models/cifar10/Linf").mkdir(parents=True)
    torch.save(robustbench_architecture("Wong2020Fast").state_dict(), tmp / "models/cifar10/Linf/Wong2020Fast.pt")
    return "robustbench:Wong2020Fast", ["--model-dir", str(tmp / "models"), "--threat-model", "Linf"]


KIND_EXAMPLES = {"registry": _registry_weights, "torchvision": _torchvision_weights, "timm": _timm_weights,
                 "robustbench": _robustbench_weights}


@pytest.mark.parametrize("kind", ["registry", *KINDS])
def test_every_model_spec_kind_builds_evaluates_and_reports(kind, folder, tmp_path):
    data = load_data("imagefolder", folder)
    spec, args = KIND_EXAMPLES[kind](tmp_path, data)  # a new kind needs an example here
    assert _evaluate(folder, tmp_path / "run", "--model", spec, *args) == 0
    run = Run.open(tmp_path / "run")
    summary, meta = run.summary(), run.meta()
    assert summary["num_examples"] == 20 and list(summary["attacks"]) == ["fgsm", "pgd2", "worst"]
    for block in summary["attacks"].values():
        assert block["overall"] <= summary["clean"]["overall"]
    assert meta["model"] == spec and (tmp_path / "run/report.html").is_file()
    assert (tmp_path / "run/figures/weight_norms.png").is_file()  # figure 4 from the head or the last nn.Linear


@needs_robustbench
def test_robustbench_model_end_to_end_from_model_dir(folder, tmp_path):
    from robustbench.utils import load_model

    spec, args = _robustbench_weights(tmp_path, None)
    assert _evaluate(folder, tmp_path / "run", "--model", spec, *args) == 0
    run = Run.open(tmp_path / "run")
    meta = run.meta()
    rb = meta["outside"]["robustbench"]
    assert rb["version"] == importlib.metadata.version("robustbench")
    assert rb["dataset"] == "cifar10" and rb["threat_model"] == "Linf"  # CIFAR-10 told by the class names
    assert meta["outside"]["normalization"] == "inside the model (RobustBench)"
    assert meta["sha256"] == hashlib.sha256((tmp_path / "models/cifar10/Linf/Wong2020Fast.pt").read_bytes()).hexdigest()
    # the predictions are those of RobustBench's own loader
    net = load_model("Wong2020Fast", model_dir=str(tmp_path / "models"), dataset="cifar10", threat_model="Linf")
    x = run.data().test_x[run.results().extras["index"]].float() / 255
    with torch.no_grad():
        assert np.array_equal(net(x).argmax(1).numpy(), run.results().clean_pred)


@needs_robustbench
def test_robustbench_pickle_payload_is_refused(folder, tmp_path, capsys):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "models/cifar10/Linf").mkdir(parents=True)
    torch.save({"state_dict": Payload()}, tmp_path / "models/cifar10/Linf/Wong2020Fast.pt")
    assert _evaluate(folder, tmp_path / "run", "--model", "robustbench:Wong2020Fast", "--model-dir",
                     str(tmp_path / "models")) == 2
    assert "never unpickles" in capsys.readouterr().err and not marker.exists()


@needs_robustbench
def test_robustbench_misspelt_name_gets_a_suggestion(folder, tmp_path, capsys):
    assert _evaluate(folder, tmp_path / "run", "--model", "robustbench:Wong2020Fas", "--model-dir",
                     str(tmp_path / "models")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cifar10 Linf model 'Wong2020Fas' (did you mean 'Wong2020Fast'?)" in err[0], err


@pytest.mark.skipif(_has_robustbench(), reason="checks the message shown without the robustbench extra")
def test_robustbench_absent_is_one_clear_error(folder, tmp_path, capsys):
    assert _evaluate(folder, tmp_path / "run", "--model", "robustbench:Wong2020Fast") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'classwise[robustbench]'" in err[0]


# -- probes on a model without features/head ----------------------------------------------------


def test_penultimate_features_of_a_model_without_features(tv_run):
    from classwise.probes import penultimate_features

    run = Run.open(tv_run[0])
    model, x = run.model(), run.data().test_x[:4]
    feats = penultimate_features(model, x)
    net = model.net
    with torch.no_grad():
        h = net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(
            model.normalize(x.float() / 255))))))))))
    assert feats.shape == (4, 512) and np.allclose(feats, torch.flatten(h, 1).numpy(), atol=1e-5)
    assert run.head_weight().shape == (10, 512)


# -- bring your own attack ----------------------------------------------------------------------


def test_torchattacks_and_callables_run_beside_registry_attacks(mnist_mlp):
    torchattacks = pytest.importorskip("torchattacks")
    from classwise.evaluate import evaluate

    model, x, y = mnist_mlp
    eps = 0.1
    attacks = {"fgsm": "fgsm", "ta-fgsm": torchattacks.FGSM(model, eps=eps),
               "noise": lambda xb, yb: (xb + eps * torch.sign(torch.randn_like(xb))).clamp(0, 1)}
    res = evaluate(model, x, y, attacks, eps=eps, progress=False, device="cpu")
    assert res.facts["ta-fgsm"]["family"] == "custom" and res.facts["ta-fgsm"]["attack_class"].endswith("FGSM")
    assert res.facts["ta-fgsm"]["eps"] == eps and res.facts["noise"]["family"] == "custom"
    # torchattacks' FGSM and ours compute the same step: the same predictions but for float rounding
    assert (res.adv_pred["ta-fgsm"] == res.adv_pred["fgsm"]).mean() >= 0.99
    assert res.correct("fgsm").mean() < res.correct("noise").mean() <= res.correct().mean()


@pytest.mark.parametrize("fn, message", [
    (lambda x, y: (x + 0.2).clamp(0, 1), "left the threat model"),
    (lambda x, y: x - 0.05, "left the \\[0, 1\\] image range"),
    (lambda x, y: x[:, :, :2], "not images of shape"),
])
def test_custom_attack_outside_the_threat_model_is_one_error(mnist_mlp, fn, message):
    from classwise.evaluate import evaluate

    model, x, y = mnist_mlp
    with pytest.raises(ClasswiseError, match=message):
        evaluate(model, x[:50], y[:50], {"mine": fn}, eps=0.1, progress=False, device="cpu")


def test_custom_attack_needs_a_budget(mnist_mlp):
    from classwise.evaluate import evaluate

    model, x, y = mnist_mlp
    with pytest.raises(ClasswiseError, match="give eps="):
        evaluate(model, x[:10], y[:10], {"mine": lambda a, b: a}, progress=False, device="cpu")


# -- the libraries' own weights by name (offline: a cached file, or one error) --------------------


def _cached_torchvision(monkeypatch, tmp_path: Path, name: str = "squeezenet1_1") -> dict[str, torch.Tensor]:
    """A state dict of ``name`` placed where torch's hub cache keeps its DEFAULT weights (TORCH_HOME=tmp_path);
    a download attempt fails as it does offline."""
    import urllib.error

    import torchvision

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    (tmp_path / "torch-home/hub/checkpoints").mkdir(parents=True)
    torch.manual_seed(1)
    state = torchvision.models.get_model(name).state_dict()
    torch.save(state, tmp_path / "torch-home/hub/checkpoints" / Path(url).name)
    return state


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_torchvision_weights_by_name_come_from_torch_cache(monkeypatch, tmp_path):
    from classwise.models import create_model

    state = _cached_torchvision(monkeypatch, tmp_path)
    for spec in ("torchvision:squeezenet1_1@pretrained", "torchvision:squeezenet1_1@weights=IMAGENET1K_V1"):
        net = create_model(spec, num_classes=1000, mean=(0.5,), std=(0.25,))
        assert _same_state(net.net.state_dict(), state), spec
        assert net.normalize.std.flatten().tolist() == [0.25] * 3
    assert not _same_state(create_model("torchvision:squeezenet1_1", num_classes=1000).net.state_dict(), state)


def test_library_weights_bring_their_normalisation():
    """Pretrained weights are evaluated with the normalisation they were trained with (ViTs: 0.5, not ImageNet's),
    unless --mean/--std say otherwise; fresh architectures keep the dataset's."""
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from classwise.jobs.outside import OutsideModel, _normalisation
    from classwise.models.outside import library_normalization

    def flat(pair):
        return [*pair[0], *pair[1]]

    imagenet = [0.485, 0.456, 0.406, 0.229, 0.224, 0.225]
    assert flat(library_normalization("torchvision:resnet18@pretrained")) == pytest.approx(imagenet)
    assert flat(library_normalization("timm:resnet18.a1_in1k@pretrained")) == pytest.approx(imagenet)
    assert flat(library_normalization("timm:test_vit.r160_in1k@pretrained")) == pytest.approx([0.5] * 6)
    assert library_normalization("timm:test_vit.r160_in1k") is None
    mean, std, how = _normalisation(OutsideModel("timm:test_vit.r160_in1k@pretrained"), None)
    assert flat((mean, std)) == pytest.approx([0.5] * 6) and "pretrained" in how
    given = OutsideModel("timm:test_vit.r160_in1k@pretrained", mean=(0.1,), std=(0.2,))
    assert _normalisation(given, None) == ((0.1,), (0.2,), "--mean/--std")


def test_library_weights_offline_and_not_cached_is_one_error_line(folder, monkeypatch, tmp_path, capsys):
    _cached_torchvision(monkeypatch, tmp_path)
    code = _evaluate(folder, tmp_path / "run", "--model", "torchvision:resnet18@pretrained")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "ResNet18_Weights.IMAGENET1K_V1 is not in torch's cache" in lines[0] and "resnet18-f37072fd.pth" in lines[0]
    assert not (tmp_path / "run").exists()


def test_library_weights_keep_their_classifier(folder, monkeypatch, tmp_path, capsys):
    """ImageNet weights on a 10-class dataset are refused, never given a fresh random classifier."""
    _cached_torchvision(monkeypatch, tmp_path)
    assert _evaluate(folder, tmp_path / "run", "--model", "torchvision:squeezenet1_1@pretrained") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classifies into 1000 classes, the dataset has 10" in err[0], err


def test_timm_pretrained_tag_loads_timm_weights(tmp_path):
    """``timm:NAME.TAG@pretrained`` is timm's create_model(pretrained=True); a local file stands in for the hub."""
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    from safetensors.torch import save_file

    from classwise.models import create_model

    torch.manual_seed(2)
    state = timm.create_model("test_vit.r160_in1k").state_dict()
    save_file(state, str(tmp_path / "w.safetensors"))
    net = create_model("timm:test_vit.r160_in1k@pretrained", num_classes=1000,
                       pretrained_cfg_overlay={"file": str(tmp_path / "w.safetensors")})
    assert _same_state(net.net.state_dict(), state)
    with pytest.raises(ClasswiseError, match=r"test_vit.r160_in1k@pretrained: timm could not load the weights"):
        create_model("timm:test_vit.r160_in1k@pretrained", num_classes=1000,
                     pretrained_cfg_overlay={"file": str(tmp_path / "absent.safetensors")})


def test_library_import_noise_is_silenced_and_nothing_else(tmp_path, monkeypatch):
    """The import warnings of timm (torch's jit deprecation) and robustbench (pkg_resources) are dropped, by message;
    another warning raised during the same import still shows."""
    from classwise.models.outside import _quiet_import

    (tmp_path / "noisy_library.py").write_text(
        "import warnings\n"
        "warnings.warn('`torch.jit.interface` is deprecated. Please use `torch.compile` instead.', FutureWarning)\n"
        "warnings.warn('pkg_resources is deprecated as an API. See https://setuptools.pypa.io', UserWarning)\n"
        "warnings.warn('this one is about your model', FutureWarning)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "noisy_library", raising=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _quiet_import("noisy_library")
    assert [str(w.message) for w in shown] == ["this one is about your model"]


@pytest.mark.slow
def test_timm_import_prints_no_deprecation_warning():
    """The real thing, in a fresh interpreter: building a timm model shows no FutureWarning."""
    pytest.importorskip("timm", reason="the timm extra is not installed")
    import subprocess

    code = "import torch; from classwise.models import create_model; create_model('timm:resnet10t', num_classes=10)"
    done = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0 and "jit" not in done.stderr, done.stderr


def test_robustbench_without_autoattack_names_the_fix(monkeypatch):
    """PyPI's robustbench imports AutoAttack as ``autoattack``; when it cannot, the error says how to fix it."""
    pytest.importorskip("robustbench", reason="the robustbench extra is not installed")
    from classwise.models import outside

    def missing(module):
        raise ModuleNotFoundError("No module named 'autoattack'", name="autoattack")

    monkeypatch.setattr(outside, "_quiet_import", missing)
    with pytest.raises(ClasswiseError, match="cannot be imported") as caught:
        outside.robustbench()
    assert "pip install git+https://github.com/fra31/auto-attack" in str(caught.value)
    assert "sys.modules['autoattack'] = pyautoattack" in str(caught.value)


@pytest.mark.slow
@needs_robustbench
def test_the_documented_autoattack_alias_makes_robustbench_importable():
    """The one-line fix of the README: after it, a plain ``import robustbench`` (and its eval module) works."""
    import subprocess

    from classwise.models.outside import AUTOATTACK_FIX

    alias = AUTOATTACK_FIX.split("before importing robustbench: ")[1]
    code = f"{alias}; import robustbench, robustbench.eval; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.strip() == "ok", done.stderr


def test_list_names_outside_kinds(capsys):
    assert main(["list"]) == 0
    assert "torchvision:NAME" in capsys.readouterr().out



def test_classwise_state_dict_brings_its_own_normalisation(folder, tmp_path):
    """A registry model's weights file carries normalize.mean/std buffers: they are used, and recorded as such."""
    from safetensors.torch import save_file

    from classwise.models import create_model

    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)  # not imagefolder's
    torch.manual_seed(0)
    net = create_model("smallcnn", num_classes=10, in_channels=3, image_size=32, mean=mean, std=std).eval()
    torch.nn.init.normal_(net.head.weight)  # the reference initialisation zeroes the head: make logits depend on x
    weights = tmp_path / "smallcnn.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    assert _evaluate(folder, tmp_path / "run", "--model", "smallcnn", "--weights", str(weights)) == 0
    run = Run.open(tmp_path / "run")
    meta, data = run.meta(), load_data("imagefolder", folder)
    assert not np.allclose(mean, data.mean)
    assert meta["outside"]["normalization"] == "the weights file (normalize buffers)"
    assert meta["outside"]["mean"] == pytest.approx(mean) and meta["outside"]["std"] == pytest.approx(std)
    # the evaluation's clean probabilities are the network's with its own buffers, not with the dataset's
    results = run.results()
    x = run.data().test_x[results.extras["index"]].float() / 255
    m, s = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    with torch.no_grad():
        own = net(x).softmax(1).numpy()
        by_dataset = net.head(net.backbone((x - m) / s)).softmax(1).numpy()
    assert results.clean_probs is not None
    np.testing.assert_allclose(results.clean_probs, own, atol=1e-5)
    assert not np.allclose(results.clean_probs, by_dataset, atol=1e-3)


def test_mean_std_that_differ_from_the_weights_file_are_refused(folder, tmp_path, capsys):
    """--mean/--std would be silently replaced by the normalize buffers of a classwise weights file: refused."""
    from safetensors.torch import save_file

    from classwise.models import create_model

    net = create_model("smallcnn", num_classes=10, in_channels=3, image_size=32, mean=(0.1,) * 3, std=(0.5,) * 3)
    weights = tmp_path / "smallcnn.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    code = _evaluate(folder, tmp_path / "run", "--model", "smallcnn", "--weights", str(weights),
                     "--mean", "0.2,0.2,0.2", "--std", "0.3,0.3,0.3")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "differ from the normalisation stored" in lines[0], err
    assert not (tmp_path / "run").exists()
