"""Every hint names something that exists: each ``--option`` a message mentions is an option of a command."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import typer

from classwise.cli import app

SRC = Path(__file__).resolve().parents[1] / "src" / "classwise"
OTHER_TOOLS = {"--nproc"}  # torchrun's, in the documented torchrun command lines


def _options() -> dict[str, set[str]]:
    """command name -> its option names (the group's own included under "")."""
    group = typer.main.get_command(app)
    out = {"": {o for p in group.params for o in p.opts}}
    for name, command in group.commands.items():
        out[name] = {o for p in command.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    return out


def _mentioned() -> dict[str, set[str]]:
    """--option -> the files whose string literals mention it (docstrings left out: they are not messages)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    found.setdefault(option, set()).add(path.name)
    return found


def test_every_option_a_message_names_exists():
    known = set().union(*_options().values()) | OTHER_TOOLS | {"--help"}
    missing = {o: sorted(files) for o, files in _mentioned().items() if o not in known}
    assert not missing, f"messages name options no command has: {missing}"


def _commands_named() -> dict[str, set[str]]:
    """```classwise CMD ... --opt``` in a message (from the backtick to the next one or the text's end) -> files."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for command in re.findall(r"`(classwise [a-z][a-z-]*[^`]*)", node.value):
                    found.setdefault(command.strip(), set()).add(path.name)
    return found


def test_every_command_a_message_names_exists_with_the_options_it_names():
    """'run `classwise homing RUN --collect`': homing is a command and --collect one of its options."""
    options = _options()
    checked = 0
    for text, files in _commands_named().items():
        command = text.split()[1]
        assert command in options, f"{sorted(files)}: `{text}` names no command of classwise"
        unknown = [o for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text) if o not in options[command] | {"--help"}]
        assert not unknown, f"{sorted(files)}: `{text}` names {unknown}, not options of `classwise {command}`"
        checked += 1
    assert checked >= 8  # the hints really were found



def test_the_run_folder_hints_hold_for_every_command_that_makes_a_run():
    """'pass --resume to continue it or --overwrite' is said by every command that creates a run folder."""
    options = _options()
    for command in ("train", "demo"):
        assert {"--resume", "--overwrite", "--out"} <= options[command], command
    assert "--version" in options[""]


def _flat(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(_flat(v, f"{prefix}{k}.") for k, v in node.items()))
    return {prefix[:-1]}


def test_config_keys_are_every_set_key_and_their_defaults_load(capsys):
    from classwise.cli import main
    from classwise.config import RunConfig, load_config, to_dict
    from classwise.config_keys import config_keys

    keys = config_keys()
    assert {k.key for k in keys} == _flat(to_dict(RunConfig()))
    vague = [k.key for k in keys if k.key.split(".")[-1] not in k.meaning]  # a class's first line is no meaning
    assert not vague, f"document these fields by name in their config class's docstring: {vague}"
    for k in keys:
        if k.type.split(" or ")[0] in ("int", "float", "str", "bool"):
            loaded, default = load_config(None, [f"{k.key}={k.default}"]), RunConfig()
            for part in k.key.split("."):
                loaded, default = getattr(loaded, part), getattr(default, part)
            assert loaded == default, k.key
    assert main(["config-keys"]) == 0
    out = capsys.readouterr().out
    assert "train.attack.eps  (float, default 0.3)" in out and "perf.amp  (str, default none)" in out


def test_version_and_usage_errors_are_one_line(capsys):
    from classwise import __version__
    from classwise.cli import main

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"classwise {__version__}"
    assert main(["list"]) == 0 and capsys.readouterr().out.startswith("datasets: ")
    assert main(["evaluate", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No such option: --no-such-flag")


def test_long_work_prints_plain_progress_lines_off_a_terminal(capsys, monkeypatch):
    """Off a terminal: a start line, lines with the share done and time left, an end line; no control characters."""
    from classwise import progress

    clock = iter(range(0, 1000, 20))  # each reading 20 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv("CLASSWISE_PROGRESS", "1")
    seconds = {"fgsm": 0.0, "pgd40": 0.0}
    with progress.progress_tasks(["fgsm", "pgd40"], 100, prefix="evaluating ", seconds=seconds) as advance:
        for _ in range(4):
            seconds["fgsm"] += 3.0
            seconds["pgd40"] += 30.0
            advance("fgsm", 25)
            advance("pgd40", 25)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "evaluating fgsm, pgd40: 100 images"
    assert any("% done" in line and "left" in line for line in lines[1:-3])
    assert lines[-3:-1] == ["evaluating fgsm: 100 images in 0:12", "evaluating pgd40: 100 images in 2:00"]
    assert lines[-1].startswith("evaluating fgsm, pgd40: done in ") and "\x1b" not in "".join(lines)
    progress.phase_line("report: writing")
    assert capsys.readouterr().out == "report: writing\n"
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    progress.phase_line("report: writing")  # a terminal has its bars
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv("CLASSWISE_PROGRESS", "0")
    with progress.progress_tasks(["fgsm"], 10) as advance:
        advance("fgsm", 10)
    assert capsys.readouterr().out == ""


def test_an_evaluation_off_a_terminal_prints_a_line_per_attack_with_its_time(capsys, monkeypatch):
    import torch
    from torch import nn

    from classwise import progress
    from classwise.evaluate import evaluate

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv("CLASSWISE_PROGRESS", "1")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    images, labels = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    evaluate(model, images, labels, ["fgsm", "pgd2"], eps=0.1, batch_size=4, device="cpu", progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "evaluating fgsm, pgd2: 6 images"
    assert [line.rsplit(" in ", 1)[0] for line in lines[1:3]] == ["evaluating fgsm: 6 images",
                                                                   "evaluating pgd2: 6 images"]
    assert lines[3].startswith("evaluating fgsm, pgd2: done in ")


def test_an_existing_run_folder_is_refused_with_a_hint_the_command_can_follow(tmp_path):
    """train and demo have --resume; evaluate --model has not, so it is told to evaluate the run instead."""
    import pytest

    from classwise.config import load_config
    from classwise.errors import ClasswiseError
    from classwise.runs import OutsideWeights, Run

    Run.create(tmp_path / "run", load_config("demo"))
    with pytest.raises(ClasswiseError, match="pass --resume to continue it or pass --overwrite"):
        Run.create(tmp_path / "run", load_config("demo"))
    with pytest.raises(ClasswiseError) as e:
        Run.create(tmp_path / "run", load_config("demo"), origin=OutsideWeights.origin)
    assert "--resume" not in str(e.value) and f"`classwise evaluate {tmp_path / 'run'}`" in str(e.value)
    assert "--resume" not in _options()["evaluate"]


def test_help_renders_every_syntax_literally_and_flags_take_no_value():
    from typer.testing import CliRunner

    runner = CliRunner()
    text = runner.invoke(app, ["evaluate", "--help"], terminal_width=200).output
    assert "name[@key=value...]" in text and "fgsm,pgd20@step=0.003" in text and "8/255" in text
    for command in ("train", "evaluate", "compare", "demo", "homing", "report"):
        out = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "<bool>" not in out and "[bold" not in out and "[/" not in out, command


@pytest.mark.parametrize("command", ["train", "demo"])
def test_an_interrupted_run_says_how_to_continue_with_a_command_that_exists(command, tmp_path, monkeypatch, capsys):
    """Ctrl-C (and SIGTERM, its subclass) in train or demo: exit 130 and `classwise CMD --out RUN --resume`."""
    from classwise import pipeline
    from classwise.cli import main
    from classwise.config import load_config
    from classwise.runs import Run

    def interrupted(config, run_dir, **kwargs):
        Run.create(run_dir, load_config("demo"))
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_run", interrupted)
    monkeypatch.setattr(sys.modules["classwise.jobs.demo"], "train_run", interrupted)
    out = tmp_path / "run"
    assert main([command, "--out", str(out)]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err == [f"to continue: `classwise {command} --out {out} --resume`", "interrupted"]
    hinted = err[0].split("`")[1].split()
    assert hinted[1] == command and {o for o in hinted if o.startswith("--")} <= _options()[command]
