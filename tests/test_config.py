"""Config contracts: presets load, overrides apply, bad values give one clear error."""

from __future__ import annotations

import pytest

from classwise.config import AttackConfig, RunConfig, dump_config, from_dict, load_config, preset_names
from classwise.errors import ClasswiseError


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_paper_presets_follow_the_paper():
    mnist = load_config("mnist").train
    assert (mnist.lr, mnist.milestones, mnist.epochs, mnist.attack.name, mnist.attack.eps, mnist.attack.step_size) == (
        0.01, (55, 75, 90), 100, "pgd40", 0.3, 0.01)
    cifar = load_config("cifar10")
    assert (cifar.train.lr, cifar.train.milestones, cifar.train.attack.name, cifar.train.attack.step_size) == (
        0.1, (75, 90), "pgd10", 0.007)
    protocol = [a for a in cifar.eval.attacks if a.name == "pgd20"]
    assert len(protocol) == 1 and protocol[0].step_size == 0.007 and cifar.eval.checkpoint == "epoch75"
    assert load_config("svhn").train.lr == load_config("stl10").train.lr == 0.01


def test_cpu_presets_evaluate_the_issue_protocols_on_the_full_test_set():
    """mnist-fast: PGD-40 (eps 0.3, step 0.01); cifar10-cpu: PGD-20 at eps 8/255; both on every test image."""
    for name, attack, eps, step in (("mnist-fast", "pgd40", 0.3, 0.01), ("cifar10-cpu", "pgd20", 8 / 255, 2 / 255)):
        cfg = load_config(name)
        pgd = next(a for a in cfg.eval.attacks if a.name == attack)
        assert (pgd.eps, pgd.step_size, pgd.examples_per_class, cfg.eval.examples) == (eps, step, None, None), name
    assert load_config("cifar10-cpu").model.name == "fastcnn"


def test_overrides_parse_yaml_values():
    cfg = load_config("demo", ["train.epochs=3", "train.milestones=[1, 2]", "data.root=/x", "seed=7"])
    assert (cfg.train.epochs, cfg.train.milestones, cfg.data.root, cfg.seed) == (3, (1, 2), "/x", 7)


def test_a_run_whose_recipe_differs_from_its_preset_says_so_in_its_notes():
    from classwise.pipeline import recipe_config

    preset = load_config("demo")
    assert recipe_config("demo") == preset
    assert recipe_config("demo", ["device=cpu", "perf.amp=none", "data.root=/x"]).notes == preset.notes
    cfg = recipe_config("demo", ["train.epochs=1", "data.train_examples=500"])
    assert cfg.notes[:-1] == preset.notes and cfg.train.epochs == 1
    assert cfg.notes[-1].startswith("Not the demo recipe: this run sets data.train_examples=500 (demo: None), "
                                    "train.epochs=1 (demo: 5)")


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("train.epochs=abc", "must be a number"),
    ("train.epochs=2.5", "must be an integer"),
    ("train.lr=0", "lr must be > 0"),
    ("train.optimizer=rmsprop", "unknown optimizer"),
    ("train.attack.eps=1.01", "eps must be in [0, 1]"),
    ("train.attack.restarts=0", "restarts must be >= 1"),
    ("data.download=maybe", "must be true or false"),
    ("novalue", "must look like key.sub=value"),
])
def test_bad_values_raise_one_clear_error(override, message):
    with pytest.raises(ClasswiseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("demo", [override])


def test_unknown_preset_lists_presets():
    with pytest.raises(ClasswiseError, match="demo"):
        load_config("nope")


def test_section_must_be_a_mapping():
    with pytest.raises(ClasswiseError, match="must be a mapping"):
        from_dict(RunConfig, {"train": 3}, "")


def test_a_folder_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    """`classwise train mnist-fast` beside a run folder named mnist-fast still loads the preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist-fast").mkdir()
    assert load_config("mnist-fast") == load_config(str(preset_path("mnist-fast")))


def preset_path(name: str):
    from importlib import resources

    return resources.files("classwise.presets") / f"{name}.yaml"


@pytest.mark.parametrize("text, eps", [
    ("pgd20", 0.031),
    ("pgd20@step=0.003", 0.031),
    ("pgd20@step=0.003@restarts=3@loss=cw@temperature=0.5", 0.031),
    ("fmn100@norm=l2", 1.5),
    ("pgd10@norm=l2@step=0.25", 0.5),
    ("pgd10@targets=[1, 2]@keep_best=false", 0.1),
    ("apgd-t@n_target_classes=3@backend=torchattacks", 0.3),
])
def test_attack_config_to_text_is_the_inverse_of_from_text(text, eps):
    cfg = AttackConfig.from_text(text, eps)
    back = AttackConfig.from_text(cfg.to_text(), eps=0.9)  # the eps written in the text wins over the default
    assert back == cfg
    assert back.to_text() == cfg.to_text() and cfg.to_text().startswith(f"{cfg.name}@eps=")


def test_attack_config_text_keeps_every_digit_of_eps():
    cfg = AttackConfig.from_text("pgd20", 8 / 255)
    assert AttackConfig.from_text(cfg.to_text(), eps=0.9) == cfg
