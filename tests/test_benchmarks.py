"""The benchmark scripts run end to end on tiny settings (no timings are asserted).

Speed is measured by the scripts themselves (BENCHMARKS.md); these tests only keep
them working as the library changes: each writes its JSON, with the bound first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
                   cwd=ROOT / "benchmarks", env=env, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.read_text())


@pytest.mark.slow  # a benchmark script's smoke run (subprocess): `make test-slow`
def test_pgd_step_benchmark_runs(tmp_path):
    result = _bench("bench_pgd_step.py", tmp_path, "--model", "smallcnn", "--batch-size", "4", "--steps", "2",
                    "--reps", "1")
    names = list(result["ms_per_step"])
    assert names[0].startswith("bound") and any("clean_correct=True" in n for n in names)
    assert all(ms > 0 for ms in result["ms_per_step"].values())


@pytest.mark.slow  # a benchmark script's smoke run (subprocess): `make test-slow`
def test_adversarial_training_step_benchmark_runs(tmp_path):
    result = _bench("bench_adv_train_step.py", tmp_path, "--model", "smallcnn", "--batch-size", "4",
                    "--steps", "2", "--reps", "1")
    names = list(result["ms"])
    assert names[0].startswith("bound") and any("Trainer step" in n for n in names)
    assert all(ms > 0 for ms in result["ms"].values())


@pytest.mark.slow  # a benchmark script's smoke run (subprocess): `make test-slow`
def test_eval_suite_benchmark_runs(tmp_path):
    result = _bench("bench_eval_suite.py", tmp_path, "--examples", "40", "--train-steps", "30", "--attacks",
                    "fgsm,pgd5", "--eps", "0.2")
    assert set(result["seconds"]) == {"evaluate (each attack alone)", "evaluate(cascade=True)"}
    alone, cascade = result["attacked"]["pgd5"]
    assert cascade <= alone == result["attacked"]["fgsm"][0]  # the cascade attacks only what is still robust
    acc = result["accuracy"]
    assert acc["worst case (cascade)"] <= acc["pgd5 alone"] <= acc["clean"]


@pytest.mark.slow  # a benchmark script's smoke run (subprocess): `make test-slow`
def test_compaction_benchmark_runs(tmp_path):
    result = _bench("bench_compaction.py", tmp_path, "--examples", "40", "--train-steps", "30", "--steps", "3",
                    "--reps", "1", "--eps", "0.2", "--batch-size", "20")
    ours, off, theirs = result["seconds"]
    assert ours.endswith("(compaction)") and off.endswith("(compact_every=0)") and theirs.startswith("torchattacks")
    rows = result["forwarded"]
    assert rows[ours] <= rows[off] and rows[off] > 0  # compaction forwards no more images than the full batch
    acc = result["accuracy"]
    assert acc[ours] == acc[off] and len(acc[theirs]["per_class"]) == 10  # compaction changes no result
    assert result["speedup_vs_torchattacks"] > 0 and 0 <= result["max_class_diff"] <= 100


@pytest.mark.slow  # 10 s: the default suite is at its 10-minute budget; make test-slow runs it
def test_strong_benchmark_runs(tmp_path):
    result = _bench("bench_strong.py", tmp_path, "--examples", "20", "--train-steps", "30", "--steps", "3",
                    "--eps", "0.2")
    rows = result["rows"]
    assert list(rows) == ["official APGD-CE + APGD-T", "classwise strong", "pgd40"] and result["examples"] == 20
    assert all(len(r["per_class"]) == 10 for r in rows.values()) and len(result["mcnemar"]) == 10
    assert all(r["backwards"] > 0 and r["forwards"] > r["backwards"] and r["seconds"] > 0 for r in rows.values())
    official, strong = rows["official APGD-CE + APGD-T"], rows["classwise strong"]
    assert result["ratios"]["backwards"] == pytest.approx(strong["backwards"] / official["backwards"], abs=1e-3)
    gained = sum(m["strong_only"] - m["official_only"] for m in result["mcnemar"])  # discordant pairs, per class
    assert gained == pytest.approx((official["robust"] - strong["robust"]) * 20 / 100, abs=1e-6)


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_phase(tmp_path):
    """benchmarks/gpu_check.sh --smoke (tiny CPU run) on the real cifar10-jpeg75 archive."""
    data = Path(os.environ.get("CLASSWISE_SHARED_DATA") or ROOT.parent / "shared" / "data")
    archive = data / "cifar10-jpeg75.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent (set CLASSWISE_SHARED_DATA)")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "CIFAR_TAR": str(archive)}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke"], cwd=ROOT, env=env, check=True,
                   capture_output=True, text=True, timeout=900)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["smoke"] and result["training_path"].startswith("library Trainer")
    assert len(result["final"]["pgd20"]["per_class"]) == 10 and result["pgd10_epoch"]["seconds"] > 0
    assert result["host_sync"]["host_syncs"] and result["attack_speed"]["ratio_to_bound"]
    assert "total_s" in result
    assert result["streaming"]["reference"]["train"]["images"] > 0 and result["sharded_eval"]["per_sample_equal"]
    assert "compaction" in result


@pytest.mark.slow  # a benchmark script's smoke run (subprocess): `make test-slow`
def test_streaming_benchmark_runs(tmp_path):
    result = _bench("bench_streaming.py", tmp_path, "--images", "40", "--size", "32", "--workers", "1",
                    "--batch-size", "8")
    modes = {r["mode"]: r for r in result["rows"]}
    assert list(modes) == ["baseline", "stream", "memory"] and modes["stream"]["images"] == 24  # 30 train: 3 full batches
    assert all(r["peak_rss_mb"] > 0 for r in result["rows"]) and modes["stream"]["worker_peak_rss_mb"] > 0


def test_gpu_check_scale_phases_skip_cleanly(tmp_path, monkeypatch):
    """gpu_check's streaming phase measures the reference loader and classwise's own;
    the compaction phase is skipped with its reason on CPU or without its script (no CIFAR data needed)."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from gpu_check_scale import scale_phases

    result = scale_phases({"streaming", "compaction"}, torch.device("cpu"), tmp_path, tmp_path, smoke=True)
    assert set(result) == {"streaming", "compaction"}  # only the phases asked for
    ref = result["streaming"]["reference"]
    assert ref["train"]["images"] == ref["val"]["images"] == result["streaming"]["images_per_split"] == 40
    own = result["streaming"]["classwise"]
    assert own["entry_point"] == "classwise.data.streaming.make_loader" and own["train"]["images"] > 0
    assert own["val"]["images"] == 40  # every val image, the last batch partial
    assert result["compaction"]["skipped"]
    json.dumps(result)  # what gpu_check.py saves


@pytest.mark.slow  # a benchmark script's smoke run (subprocess, two tiny trainings): `make test-slow`
def test_gpu_fairness_smoke_archive_feeds_the_fairness_table(tmp_path):
    """benchmarks/gpu_fairness.py --smoke on real MNIST: each run trained and evaluated, the archive holds the
    evaluated checkpoint and experiments/fairness_table.py reads the unpacked runs."""
    import tarfile

    data = Path(os.environ.get("CLASSWISE_SHARED_DATA") or ROOT.parent / "shared" / "data")
    if not (data / "MNIST" / "raw").is_dir():
        pytest.skip(f"{data / 'MNIST' / 'raw'} is absent (set CLASSWISE_SHARED_DATA)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_fairness.py"), "--recipe", "mnist", "--data-root",
                    str(data), "--smoke", "--methods", "trades,dafa", "--out", str(tmp_path / "out"), "--work",
                    str(tmp_path / "work")], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600)
    with tarfile.open(tmp_path / "out" / "fair_mnist_s0.tgz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert "runs_mnist_s0/trades-s0/checkpoints/last.safetensors" in names
    assert not any(n.endswith(".state.safetensors") or "/figures" in n for n in names)
    runs = tmp_path / "unpacked" / "runs_mnist_s0"
    log = json.loads((runs / "fairness_runs.json").read_text())
    assert all(r["train_exit"] == 0 and r["evaluate_exit"] == 0 for r in log.values()) and len(log) == 2
    table = subprocess.run([sys.executable, str(ROOT / "experiments" / "fairness_table.py"), "--section", "s",
                            "--caption", "smoke", "--group", f"trades={runs / 'trades-s0'}", "--group",
                            f"dafa={runs / 'dafa-s0'}"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert "| trades | worst | 50 |" in table.stdout and "- dafa against trades:" in table.stdout
