"""The report job: summary.json and the report from a run's saved per-sample results; no attacking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..analysis import summarize
from ..analysis.sanity import flags_to_json, recorded_black_box, sanity_checks
from ..errors import ClasswiseError
from ..fileio import read_json, write_json
from ..data import as_float
from ..report import ReportContext, write_report
from ..report.gallery import GalleryData, positions
from ..results import EvalResults
from ..runfiles import check_meta, check_metrics
from ..runs import Run


def report_run(run_dir: str | Path) -> dict[str, Path]:
    """(Re-)write summary.json and the report from saved per-sample results; no attacking."""
    run = Run.open(run_dir)
    with run.lock():
        if not run.files.results.is_file():
            run.require_results()  # one error saying what to run first; the run is left as it is
        stale = run.stale_results()
        if stale:  # results of another model: refused, and the run no longer claims to be complete
            if run.state == "complete":
                run.set_status("trained", stale=stale)
            run.refuse_stale()
        return write_run_report(run)


def write_run_report(run: Run, meta: dict | None = None) -> dict[str, Path]:
    """Under the run's lock: summary.json and the report; status "reporting", then "complete".

    ``meta``: meta.json as an evaluation just wrote it (None: read it). A damaged
    file leaves the run failed, never complete.
    """
    with run.guarded("reporting"):
        results = run.require_results()
        meta = check_meta(run.meta() if meta is None else meta, run.files.meta, results.num_classes,
                          results.attacks)
        paths = _write_report(run, results, meta)
    run.set_status("complete")
    return paths


def _write_report(run: Run, results: EvalResults, meta: dict) -> dict[str, Path]:
    """summary.json (the model's partial state first, when partial) and the report of ``results``."""
    head = run.head_weight(meta.get("checkpoint", "last"))
    head = None if head is None else head.float().numpy()
    homing = _read_optional(run.files.homing_json)
    extra = {k: meta[k] for k in ("dataset", "model", "checkpoint", "eps") if k in meta}
    keys = ("attack", "removed", "flipped", "homed", "share")
    extra |= {"homing": {**{k: homing[k] for k in keys}, "missing": homing.get("missing", [])}} if homing else {}
    ran, flags = sanity_checks(results, recorded_black_box(results), results.extras.get("zero_grad"))
    extra |= {"sanity": {"checks": ran, "flags": flags_to_json(flags)}}
    summary = summarize(results, head_weight=head, superclasses=meta.get("superclasses") or None, **extra)
    summary = ({"partial": meta["partial"]} if meta.get("partial") else {}) | summary
    write_json(run.files.summary, summary)
    notes = list(meta.get("notes") or [])
    shown = {k: meta[k] for k in ("dataset", "model", "checkpoint", "eps", "train_method", "classifier")
             if meta.get(k) is not None}
    metrics = check_metrics(run.metrics(), run.files.metrics, results.num_classes)
    _ = run.config  # read here: a damaged config.yaml is one error, not a gallery left out below
    try:
        gallery = gallery_data(run, results, summary, meta.get("checkpoint", "last"))
    except (ClasswiseError, OSError) as e:  # e.g. the dataset is no longer where the run found it
        gallery = None
        notes.append(f"no gallery: the saved adversarial images could not be shown ({e})")
    return write_report(run.path, ReportContext(
        results, summary, metrics=metrics or None, head_weight=head, meta=shown, notes=notes or None,
        homing=homing, sanity=flags_to_json(flags), checks_run=ran, gallery=gallery))


def gallery_data(run: Run, results: EvalResults, summary: dict, checkpoint: str) -> GalleryData | None:
    """The saved adversarial examples of the headline attack with their clean images.

    A worst case has no images of its own: then those of the strongest attack it covers
    (fewest robust examples) that kept images, else the protocol attack's. None when
    none has saved images (RUN/adv/). The confidence is the model's softmax
    probability of the recorded prediction on each adversarial image.
    """
    basis, attacks = summary.get("headline_basis") or {}, summary.get("attacks", {})
    strongest = sorted(basis.get("over") or [], key=lambda a: attacks.get(a, {}).get("overall") or 0.0)
    names = [a for a in (summary.get("headline"), *strongest, summary.get("protocol")) if a in results.adv_pred]
    saved = next(((a, s) for a in names if (s := run.load_adv(a)) is not None), None)
    if saved is None:
        return None
    attack, (index, adv) = saved
    clean = as_float(run.data().test_images(index)).numpy()
    pos = positions(results, index)
    pred = torch.as_tensor(results.adv_pred[attack][np.maximum(pos, 0)])
    model = run.model(checkpoint)
    with torch.no_grad():
        probs = torch.cat([model(adv[i:i + 256]).softmax(1) for i in range(0, len(adv), 256)])
    confidence = probs.gather(1, pred.clamp(min=0)[:, None])[:, 0].numpy()
    return GalleryData(attack, index, clean, adv.numpy(), confidence)


def _read_optional(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None
