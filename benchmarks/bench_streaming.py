"""Peak resident memory of the streaming path against the decoded size of the data.

Makes a synthetic ImageFolder of JPEGs (or reuses ``--folder``), then measures, each
in a fresh process so that one does not inherit the other's memory:

- baseline: the process after importing torch and classwise (nothing read);
- stream: one training epoch of ``classwise.data.make_loader`` (random-resized crop +
  flip, ``--workers`` processes), every batch consumed as uint8, plus its images/s;
- memory: ``load_data(..., stream=False)``, the in-memory path, decoding everything.

Peak RSS of the main process comes from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
Workers are read from /proc at the end of the epoch, before they exit: their peak RSS
(``VmHWM``) and their private memory (``Private_*`` of ``smaps_rollup``). Forked workers
share the parent's pages copy-on-write and RSS counts shared pages, so only the private
part adds to the main process's. The decoded size is files x 3 x S x S bytes, what the
in-memory path holds.

Example (CPU, a couple of minutes):
    python benchmarks/bench_streaming.py --images 2000 --size 224 --workers 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 10


def make_folder(root: Path, images: int, size: int, seed: int = 0) -> Path:
    """``images`` JPEGs (quality 90) of about (size + 32) x size px in train/ (90%) and val/ (10%), 10 classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (CLASSES, 8, 8, 3)).astype(np.uint8)  # smooth class patterns
    for i in range(images):
        split, c = ("val" if (i // CLASSES) % 10 == 0 else "train"), i % CLASSES
        folder = root / split / f"c{c}"
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(base[c]).resize((size + 32, size), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 21, (size, size + 32, 3))
        Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def peak_mb() -> float:
    """Peak RSS in MB of this process (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker_mb(pids: list[int]) -> dict[str, float]:
    """The largest worker's peak RSS and the workers' summed private memory, MB, from /proc."""
    peak, private = 0.0, 0.0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:  # the worker has exited
            continue
        peak = max(peak, next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)
        private += sum(int(line.split()[1]) for line in rollup if line.startswith("Private_")) / 1024
    return {"worker_peak_rss_mb": round(peak, 1), "workers_private_mb": round(private, 1)}


def child(mode: str, folder: Path, size: int, workers: int, batch_size: int) -> dict:
    """One measurement (run in its own process)."""
    import torch

    from classwise.data import load_data, open_stream
    from classwise.data.streaming import make_loader

    torch.set_num_threads(1)
    out: dict = {"mode": mode}
    if mode == "stream":
        files = open_stream(folder, size, workers=workers).train
        start, seen, workers_seen = time.perf_counter(), 0, {"worker_peak_rss_mb": 0.0, "workers_private_mb": 0.0}
        batches = iter(make_loader(files, image_size=size, batch_size=batch_size, train=True, workers=workers))
        for x, _ in batches:
            seen += len(x)
            int(x[:, :, 0, 0].sum())  # touch every batch
            now = worker_mb([w.pid for w in getattr(batches, "_workers", [])])  # while they live
            workers_seen = {k: max(v, now[k]) for k, v in workers_seen.items()}
        out |= {"images": seen, "images_per_s": round(seen / (time.perf_counter() - start), 1)} | workers_seen
    elif mode == "memory":
        data = load_data("imagefolder", folder, image_size=size, stream=False)
        out |= {"images": len(data.train_y) + len(data.test_y)}
    return out | {"peak_rss_mb": peak_mb()}


def measure(mode: str, args: argparse.Namespace, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--size", str(args.size),
           "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs in the synthetic folder")
    p.add_argument("--size", type=int, default=224, help="image side (the loader's crop, and the JPEG height)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--folder", type=Path, default=None, help="reuse this ImageFolder instead of making one")
    p.add_argument("--skip-memory", action="store_true", help="do not run the in-memory load (huge folders)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.size, args.workers, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or make_folder(Path(tmp) / "folder", args.images, args.size)
        files = sum(1 for f in folder.rglob("*.jpg"))
        rows = [measure(m, args, folder) for m in ("baseline", "stream", *(() if args.skip_memory else ("memory",)))]
    decoded = files * 3 * args.size * args.size / 2**20
    result = {"files": files, "size": args.size, "workers": args.workers, "batch_size": args.batch_size,
              "decoded_mb": round(decoded, 1), "rows": rows}
    print(f"{files} JPEGs at {args.size} px: decoded size {decoded:.0f} MB; workers {args.workers}\n")
    print("| mode | peak RSS, main (MB) | worker peak RSS (MB) | workers' private (MB) | images/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['peak_rss_mb']:.0f} | {r.get('worker_peak_rss_mb', '')} | "
              f"{r.get('workers_private_mb', '')} | {r.get('images_per_s', '')} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
