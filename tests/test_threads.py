"""The thread policy (issue 14, item 5): default = the CPUs this process may use; ``--threads N`` everywhere."""

from __future__ import annotations

import os

import pytest
import torch
import typer

from classwise import perf
from classwise.cli import app, main

TORCH_COMMANDS = {"train", "evaluate", "report", "homing", "compare", "demo"}  # every command that runs torch


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_every_torch_command_takes_threads():
    commands = typer.main.get_command(app).commands
    assert TORCH_COMMANDS <= set(commands)
    for name in TORCH_COMMANDS:
        assert any("--threads" in p.opts for p in commands[name].params), name
    assert set(commands) - TORCH_COMMANDS == {"list", "config-keys", "show"}  # a new command must say whether it runs torch


def test_threads_flag_sets_torch_threads_in_process(monkeypatch, tmp_path):
    """``report RUN --threads N`` sets N before the job runs (the job is stubbed: only the wiring is tested)."""
    seen = []
    monkeypatch.setattr("classwise.pipeline.report_run",
                        lambda run: seen.append(torch.get_num_threads()) or {"report_html": tmp_path / "r.html"})
    for n in (1, 2):
        assert main(["report", str(tmp_path), "--threads", str(n)]) == 0
    assert seen == [1, 2] and torch.get_num_threads() == 2


@pytest.mark.parametrize("value", ["0", "-3", "100000"])
def test_bad_thread_count_is_one_error_line(value, capsys, tmp_path):
    assert main(["report", str(tmp_path), "--threads", value]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --threads must be an integer in [1, 1024], got {value}\n"


def test_non_integer_thread_count_is_a_usage_error(capsys, tmp_path):
    assert main(["report", str(tmp_path), "--threads", "many"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_default_is_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert perf.available_cpus() == perf.default_threads() == 3
    assert perf.set_threads() == 3 and torch.get_num_threads() == 3


def test_default_falls_back_to_cpu_count_and_honours_omp_num_threads(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert perf.default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's choice for several processes per node
    assert perf.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert perf.default_threads() == 2
