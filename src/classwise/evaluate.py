"""Evaluation: clean and adversarial predictions per sample, for any model.

Works on any ``nn.Module`` that maps [0, 1] images (B, C, H, W) to logits
(B, K): a user's own model as well as ours. Each attack runs only on the
examples the model classifies correctly when clean (as AutoAttack does), so an
example counts as robust only if it is clean-correct and survives the attack.
:func:`evaluate` judges every attack on its own, or (``cascade=True``)
cascades them (each attack only on examples still robust) for the worst case;
:func:`temperature_sweep` runs the paper's Temperature-PGD sweep.
The (uint8) test images go to the device once, not batch by batch.

Randomness and sharding (docs/scale.md, "Sharded evaluation"): the evaluation
set is cut into batches of ``batch_size`` in test-set order, and every attack
draws the randomness of batch b from its own generator seeded with
:func:`batch_seed` (seed, b). An example's random start therefore depends on
the seed, the batch size and its position, never on the number of processes:
with ``EvalOptions(ranks=...)`` (``torchrun``) rank r attacks batches
r, r + world, ... and the per-batch outputs are gathered back in order, so
every rank returns the single-process results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .analysis import WORST
from .attacks import PAPER_INV_TEMPERATURES, PGD, Attack, CustomAttack, TemperaturePGD, create_attack, cross_entropy
from .attacks import make_threat
from .attacks import eval_mode, grad_and_logits, tpgd_name
from .attacks.cost import CostMeter
from .config import PerfConfig
from .data.bundle import as_float
from .errors import ClasswiseError, unknown_name
from .evalstate import EvalState, fingerprint
from .inputs import check_eps, check_eval_inputs, check_image_dtype, check_logits
from .models import normalized
from .perf import autocast, prepare_input, prepare_model
from .progress import log_line, progress_tasks
from .results import EvalResults

BatchFn = Callable[..., dict[str, torch.Tensor]]
RECORD = "record:"  # batch outputs "record:<kind>/<attack>" are per-example records, kept in extras
BatchParts = list[tuple[int, dict[str, torch.Tensor]]]  # (start in the set, outputs of that batch), by start
_SEED_STEP = 0x9E3779B97F4A7C15  # splitmix64's odd increment: batch b's seed is seed + b * step (mod 2**63)


class Ranks(Protocol):
    """The processes an evaluation is sharded over; :class:`classwise.train.distributed.Dist` is one."""

    @property
    def rank(self) -> int: ...

    @property
    def world(self) -> int: ...

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order, on every rank."""
        ...


def batch_seed(seed: int, batch: int) -> int:
    """The seed of every attack's generator on batch ``batch`` (0, 1, ...) of an evaluation.

    Batch 0 keeps ``seed`` itself; the others step along a Weyl sequence, so
    seeds of one evaluation never repeat. Depends on nothing but (seed, batch).
    """
    return (seed + batch * _SEED_STEP) % 2**63


def shard_starts(n: int, batch_size: int, ranks: Ranks | None = None) -> range:
    """Starts of this rank's batches of ``n`` examples: batches rank, rank + world, ... (all with one process)."""
    rank, world = (0, 1) if ranks is None else (ranks.rank, ranks.world)
    return range(rank * batch_size, n, world * batch_size)


def gather_parts(parts: BatchParts, ranks: Ranks | None = None) -> BatchParts:
    """Every rank's batch outputs, in order of their start (``parts`` as is with one process)."""
    if ranks is None or ranks.world == 1:
        return parts
    return sorted((part for rank_parts in ranks.gather(parts) for part in rank_parts), key=lambda p: p[0])


def _columns(parts: BatchParts, fills: Mapping[str, float] | None = None) -> dict[str, list[torch.Tensor]]:
    """Batch outputs regrouped per key: key -> its (B, ...) tensors in batch order.

    A batch without a record key (no example of it was attacked: all
    clean-misclassified, or all fooled earlier) gets that record's fill value
    from ``fills`` (record key -> value), shaped like the other batches' rows,
    so records stay aligned with the examples.
    """
    out: dict[str, list[torch.Tensor]] = {}
    records = {key: value for _, batch in parts for key, value in batch.items() if key.startswith(RECORD)}
    for _, batch in parts:
        rows = len(batch["clean"]) if "clean" in batch else None
        for key in (*batch, *[r for r in records if r not in batch]):
            value = batch.get(key)
            if value is None:
                if rows is None:  # every batch holds its clean logits
                    raise ValueError(f"a batch without clean logits: no rows to fill {key!r} with")
                like = records[key]
                value = like.new_full((rows, *like.shape[1:]), (fills or {}).get(key, 0))
            out.setdefault(key, []).append(value)
    return out


def record_fills(attacks: Mapping[str, Attack]) -> dict[str, float]:
    """Record key ("record:<kind>/<attack>") -> the value of rows the attack did not attack."""
    return {f"{RECORD}{kind}/{name}": fill for name, a in attacks.items() for kind, fill in a.record_fill.items()}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto"/None -> CUDA when present, else CPU; a named device must exist here (one clear error)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in _DEVICE_AVAILABLE:
        raise unknown_name("device", device, ("auto", "cpu", "cuda", "cuda:N", "mps"))
    if not _DEVICE_AVAILABLE[dev.type]():
        raise ClasswiseError(f"device {str(device)!r} is not available on this machine; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ClasswiseError(f"device {str(device)!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


_DEVICE_AVAILABLE = {"cpu": lambda: True, "cuda": lambda: torch.cuda.is_available(),
                     "mps": lambda: torch.backends.mps.is_available()}


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs (not what it measures).

    batch_size: images per batch. device: "auto" (CUDA when present), "cpu", "cuda:1"...
    seed: on batch b every attack draws its randomness from its own generator
    seeded with ``batch_seed(seed, b)`` (the same for 1 or N processes).
    keep_probs: also keep softmax probabilities (N, K) per attack.
    progress: show a progress bar. perf: speed options (channels_last, bf16
    autocast, compile; :mod:`classwise.perf`), applied to the model in place.
    adv_sink: receives the adversarial images of each attack (``--save-adv``).
    adv_sample: the sink keeps a sample only (the report's galleries), so a resumed
    evaluation may skip the images of its finished batches and ``state_dir`` still applies.
    zero_grad: also run the zero-gradient sanity pass (one input-gradient pass
    over every example, ``extras["zero_grad"]``); callers that never read it
    (the per-epoch monitor, re-attacks of a sample) turn it off.
    ranks: shard the batches over processes (``Dist`` of :func:`classwise.train.distributed.distributed`
    under ``torchrun``): each rank attacks its batches, the outputs are gathered,
    every rank returns the whole set's results. None: one process.
    state_dir: keep each finished batch's outputs in this folder (every
    ``state_every_s`` seconds, atomically) so that the same evaluation, killed and
    called again, continues where it stopped with the same results
    (:mod:`classwise.evalstate`); one process and no ``adv_sink`` (but an ``adv_sample`` one) only (else ignored).
    """

    batch_size: int = 256
    device: str | torch.device | None = "auto"
    seed: int = 0
    keep_probs: bool = False
    progress: bool = True
    perf: PerfConfig | None = None
    # Called as adv_sink(attack name, positions in ``images`` (B,) int64, adversarial images (B, C, H, W)
    # float on the CPU) for every attacked batch (only clean-correct examples are attacked).
    adv_sink: Callable[[str, np.ndarray, torch.Tensor], None] | None = None
    adv_sample: bool = False
    zero_grad: bool = True
    ranks: Ranks | None = None
    state_dir: Path | None = None
    state_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


AttackLike = Attack | str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_attacks(model: nn.Module, specs: Sequence[str] | Mapping[str, AttackLike], eps: float | None) -> dict[str, Attack]:
    """Attack objects by name.

    A sequence holds registry specs ("pgd20"); a mapping maps the name results
    are recorded under to an :class:`Attack`, a registry spec, or the user's own
    attack: a torchattacks object or any callable ``(x, y) -> x_adv``, wrapped in
    :class:`~classwise.attacks.CustomAttack` (outputs checked against ``eps``, or
    the object's own ``eps``).
    """
    items = specs.items() if isinstance(specs, Mapping) else ((s, s) for s in specs)
    return {name: _make_attack(model, name, value, eps) for name, value in items}


def _make_attack(model: nn.Module, name: str, value: AttackLike, eps: float | None) -> Attack:
    if isinstance(value, Attack):
        return value
    if isinstance(value, str):
        if eps is None:
            raise ValueError("eps is required when attacks are given by name")
        return create_attack(value, model, eps)
    if callable(value):
        return CustomAttack(model, value, name, eps)
    raise ValueError(f"attack {name!r} must be an Attack, a registry name or a callable (x, y) -> x_adv, "
                     f"got {type(value).__name__}")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on x (B, C, H, W) in [0, 1], in eval mode (mode restored)."""
    with eval_mode(model):
        return model(x)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[str] | Mapping[str, AttackLike] = ("pgd20",),
    *,
    eps: float | None = None,
    class_names: Sequence[str] | None = None,
    cascade: bool = False,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    options: EvalOptions | None = None,
    **option_values: Any,
) -> EvalResults:
    """Per-sample clean and adversarial predictions of ``model``.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) int.
        attacks: registry specs ("fgsm", "pgd20", ...) with ``eps``, or a
            mapping name -> :class:`Attack` already built on ``model``, registry
            spec, torchattacks object or callable ``(x, y) -> x_adv`` (recorded as
            family "custom" under that name; outputs must stay in the eps-ball
            and [0, 1], else one error; see :func:`make_attacks`).
        class_names: K names (default "0".."K-1").
        cascade: False judges every attack on its own. True is the cascade of
            AutoAttack: attacks run in the given order, each only on examples
            still robust, so ``adv_pred[name_k]`` is the worst case over attacks
            1..k (an example keeps the prediction of the first attack that fooled
            it) and ``adv_pred["worst"]`` the worst case over the suite. The
            cumulative columns are *not* each attack alone, and since attacks see
            fewer examples their random draws differ from the non-cascade run.
        mean, std: the input normalisation of a ``model`` that expects normalised
            inputs (1 value or C values; both or neither): it is evaluated as
            ``model((x - mean) / std)`` on [0, 1] images, as ``classwise evaluate
            --model ... --mean --std`` does; eps stays in [0, 1] pixel units.
        options: :class:`EvalOptions`; keyword arguments (``batch_size=``,
            ``device=``, ``seed=``, ``keep_probs=``, ``progress=``, ``perf=``)
            override its fields.

    Returns:
        :class:`EvalResults` with labels, clean_pred, adv_pred per attack and
        each attack's identity (:meth:`Attack.facts`) in ``facts``. Attacks
        with per-example records (:meth:`Attack.run`) add them to ``extras``
        as "<kind>/<attack>": "min_dist/fmn" (N,) float32 minimal distances
        (0: clean-misclassified, inf: none found), "target_hits/pgd20@target=all"
        (N, K) int8 (-1: not tried). Every attack adds its cost,
        "forwards/<attack>" and "backwards/<attack>" (N,) int64: the forward
        and input-gradient passes through ``model`` spent on each example by the
        attack and the forward that judges its images (0 for examples it did
        not attack; attribution rule: :mod:`classwise.attacks.cost`). The
        clean forward and the zero-gradient pass are shared and charged to none.
        ``extras["zero_grad"]`` (N,) flags examples whose input gradient is
        all zero, for :func:`classwise.analysis.sanity_report`.
    """
    opts = dataclasses.replace(options or EvalOptions(), **option_values)
    if cascade and WORST in list(attacks):
        raise ValueError(f"attack name {WORST!r} is reserved for the worst case of the cascade")
    dev = resolve_device(opts.device)
    k = check_eval_inputs(images, labels, class_names)
    check_eps(eps)
    model = _with_normalization(model, mean, std, images.shape[1])
    check_image_dtype(images, model)
    model = prepare_model(model.to(dev), opts.perf)
    probe = prepare_input(as_float(images[: opts.batch_size].to(dev)), opts.perf)
    check_logits(predict(model, probe), k, labels[: opts.batch_size])
    built = make_attacks(model, attacks, eps)
    state = _state(cascade, model, images, labels, built, opts, k)
    outs = _batches(_cascade_batch if cascade else _attack_batch, model, images, labels, built, opts, dev, k, state)
    results = _to_results(outs, labels, class_names, opts.keep_probs)
    if opts.zero_grad:
        results.extras["zero_grad"] = zero_gradient_mask(model, images, labels, batch_size=opts.batch_size,
                                                         device=dev, ranks=opts.ranks)
    results.facts.update({name: attack.facts() for name, attack in built.items()})
    if cascade:
        results.facts[WORST] = {"family": WORST, "cascade": True, "over": list(built)}
    return results


def _with_normalization(model: nn.Module, mean, std, channels: int) -> nn.Module:
    """``model`` behind ``(x - mean) / std`` when both are given (:func:`classwise.models.normalized`)."""
    if mean is None and std is None:
        return model
    if mean is None or std is None:
        raise ValueError("give both mean and std, or neither")
    return normalized(model, mean, std, channels)


def _batches(batch_fn: BatchFn, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             built: Mapping[str, Attack], opts: EvalOptions, dev: torch.device, k: int | None,
             state: EvalState | None = None) -> dict[str, list[torch.Tensor]]:
    """Run ``batch_fn`` over this rank's batches, gather all ranks'; logits per key on the CPU, in set order.

    Each batch's logits are checked to have K finite columns.
    """
    images, on_dev = to_device_once(images, dev), labels.to(dev)
    parts: BatchParts = state.load() if state else []
    done = {start for start, _ in parts}
    if done:
        log_line(f"evaluation: continuing an interrupted run, {sum(min(opts.batch_size, len(labels) - s) for s in done)}"
                 f" of {len(labels)} examples already attacked ({state.path if state else ''})")
    starts = shard_starts(len(labels), opts.batch_size, opts.ranks)
    total = sum(min(opts.batch_size, len(labels) - s) for s in starts)
    with progress_tasks(list(built), total, opts.progress, prefix="evaluating ") as advance, autocast(opts.perf, dev):
        for start in starts:
            end = start + opts.batch_size
            if start in done:  # finished before an interruption (evalstate)
                for name in built:
                    advance(name, min(end, len(labels)) - start)
                continue
            x = prepare_input(as_float(images[start:end].to(dev)), opts.perf)
            gens = {name: torch.Generator(dev).manual_seed(batch_seed(opts.seed, start // opts.batch_size))
                    for name in built}
            sink = None if opts.adv_sink is None else _sink(opts.adv_sink, start)
            out = batch_fn(model, x, on_dev[start:end], built, gens, sink)
            parts.append((start, {name: _to_cpu(name, t, k, labels[start:end]) for name, t in out.items()}))
            for name in out:
                advance(name, len(x))
            if state:
                state.save(parts)
    if state:
        state.remove()
    parts.sort(key=lambda part: part[0])
    return _columns(gather_parts(parts, opts.ranks), record_fills(built))


def _state(cascade: bool, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
           built: Mapping[str, Attack], opts: EvalOptions, k: int | None) -> EvalState | None:
    """The resumable state of this evaluation call, when ``opts.state_dir`` asks for one and it applies."""
    if opts.state_dir is None or opts.ranks is not None or (opts.adv_sink is not None and not opts.adv_sample):
        return None
    facts = {name: attack.facts() for name, attack in built.items()}
    settings = {"cascade": cascade, "batch_size": opts.batch_size, "seed": opts.seed, "classes": k,
                "perf": repr(opts.perf)}
    return EvalState(opts.state_dir, fingerprint(model, images, labels, facts, settings), opts.state_every_s)


def _to_cpu(name: str, t: torch.Tensor, k: int | None, labels: torch.Tensor) -> torch.Tensor:
    """A batch output on the CPU: records as they are, logits as float32 checked (B, K) finite."""
    if name.startswith(RECORD):
        return t.cpu()
    logits = t.float().cpu()
    check_logits(logits, k, labels, f"{name} images")
    return logits


def _sink(adv_sink: Callable[[str, np.ndarray, torch.Tensor], None], start: int) -> Callable:
    """adv_sink for one batch starting at ``start``: (name, mask (B,), x_adv) -> positions in the whole set."""
    def sink(name: str, mask: torch.Tensor, x_adv: torch.Tensor) -> None:
        adv_sink(name, start + mask.nonzero().flatten().cpu().numpy(), x_adv.detach().float().cpu())
    return sink


def to_device_once(images: torch.Tensor, device: torch.device, max_bytes: int = 2**31) -> torch.Tensor:
    """All images on ``device`` in one copy (kept uint8) when they take <= ``max_bytes``.

    Larger sets (ImageNet validation) stay where they are and go per batch.
    """
    return images.to(device) if images.numel() * images.element_size() <= max_bytes else images


def _attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                  gens: Mapping[str, torch.Generator], sink: Callable | None = None) -> dict[str, torch.Tensor]:
    """Clean logits and, per attack, logits on adversarial images (B, K), plus its records.

    Only clean-correct examples are attacked; the others keep their clean logits
    and the attack's fill value in each record ("record:min_dist/<attack>"...).
    """
    clean = predict(model, x)
    ok = clean.argmax(1) == y
    out = {"clean": clean}
    for name, attack in attacks.items():
        out[name], records = _attack_where(model, x, y, ok, clean, attack, gens[name], _named(sink, name),
                                           keep_records=True)
        out |= {f"{RECORD}{kind}/{name}": rec for kind, rec in records.items()}
    return out


def _cascade_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                   gens: Mapping[str, torch.Generator], sink: Callable | None = None) -> dict[str, torch.Tensor]:
    """Clean logits, per attack the worst-case logits so far, and "worst" (B, K)."""
    current = predict(model, x)
    out = {"clean": current}
    for name, attack in attacks.items():
        robust = current.argmax(1) == y  # clean-correct and not fooled by earlier attacks
        current, records = _attack_where(model, x, y, robust, current, attack, gens[name], _named(sink, name))
        out[name] = current
        out |= {f"{RECORD}{kind}/{name}": rec for kind, rec in records.items()}
    out[WORST] = current
    return out


def _named(sink: Callable | None, name: str) -> Callable | None:
    return None if sink is None else (lambda mask, x_adv: sink(name, mask, x_adv))


def _attack_where(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  logits: torch.Tensor, attack: Attack, gen: torch.Generator,
                  sink: Callable | None = None, keep_records: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``logits`` (B, K) with the rows in ``mask`` replaced by logits on attacked images (given to ``sink``).

    With ``keep_records``, also the attack's per-example records (B, ...), rows
    outside ``mask`` holding the attack's ``record_fill`` value. Always its cost:
    "forwards" and "backwards" (B,) int64, the passes through ``model`` spent
    on each row by the attack and the forward that judges its images
    (:class:`~classwise.attacks.cost.CostMeter`; 0 outside ``mask``).
    """
    with CostMeter(model, mask.nonzero().squeeze(1), len(y)) as meter:
        logits, records = _attack_rows(model, x, y, mask, logits, attack, gen, sink, keep_records)
    return logits, records | meter.records()


def _attack_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                 logits: torch.Tensor, attack: Attack, gen: torch.Generator,
                 sink: Callable | None, keep_records: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`_attack_where` without the cost meter."""
    logits, records = logits.clone(), {}
    if not mask.any():
        return logits, {}
    if keep_records:
        x_adv, part = attack.run(x[mask], y[mask], gen, clean_correct=True)  # mask is within the clean-correct
        for kind, rec in part.items():
            records[kind] = rec.new_full((len(y), *rec.shape[1:]), attack.record_fill[kind])
            records[kind][mask] = rec
    else:
        x_adv = attack(x[mask], y[mask], gen, clean_correct=True)
    logits[mask] = predict(model, x_adv).to(logits.dtype)
    if sink is not None:
        sink(mask, x_adv)
    return logits, records


def _to_results(outs: dict[str, list[torch.Tensor]], labels: torch.Tensor,
                class_names: Sequence[str] | None, keep_probs: bool) -> EvalResults:
    logits = {k: torch.cat(v) for k, v in outs.items()}
    extras = {k[len(RECORD):]: logits.pop(k).numpy() for k in [k for k in logits if k.startswith(RECORD)]}
    clean = logits.pop("clean")
    names = list(class_names) if class_names is not None else [str(i) for i in range(clean.shape[1])]
    probs = (lambda t: t.softmax(1).numpy().astype(np.float32)) if keep_probs else None
    return EvalResults(
        labels=labels.cpu().numpy().astype(np.int64),
        clean_pred=clean.argmax(1).numpy().astype(np.int64),
        adv_pred={k: v.argmax(1).numpy().astype(np.int64) for k, v in logits.items()},
        class_names=names,
        clean_probs=probs(clean) if probs else None,
        adv_probs={k: probs(v) for k, v in logits.items()} if probs else {},
        extras=extras,
    )


def zero_gradient_mask(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256,
                       device: str | torch.device | None = "auto", ranks: Ranks | None = None) -> np.ndarray:
    """(N,) bool: examples whose input gradient of the cross-entropy is exactly zero.

    A sanity check of AutoAttack: gradient-based attacks cannot move such
    examples (saturated softmax, non-differentiable layers: gradient masking).
    With ``ranks``, each rank checks its batches and every rank gets the whole mask.
    """
    dev = resolve_device(device)
    parts: BatchParts = []
    with eval_mode(model):
        for start in shard_starts(len(labels), batch_size, ranks):
            x = as_float(images[start : start + batch_size].to(dev))
            grad, _ = grad_and_logits(model, x, labels[start : start + batch_size].to(dev), cross_entropy)
            parts.append((start, {"zero": (grad.flatten(1) == 0).all(1).cpu()}))
    masks = _columns(gather_parts(parts, ranks)).get("zero")
    return torch.cat(masks).numpy() if masks else np.zeros(0, dtype=bool)


def temperature_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    inv_temps: Sequence[float] = PAPER_INV_TEMPERATURES,
    *,
    step_size: float | None = None,
    steps: int = 20,
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    progress: bool = False,
    norm: str = "linf",
) -> EvalResults:
    """Vanilla PGD and Temperature-PGD at each 1/T on the same examples and seed.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) int.
        eps: radius in the units of ``norm`` ("linf" or "l2"); step_size:
            default 2.5 eps / steps; steps: PGD steps.
        inv_temps: the 1/T values (default: the paper's 14).
        class_names, batch_size, device, seed, progress: as :func:`classwise.evaluate.evaluate`.

    Returns:
        :class:`~classwise.results.EvalResults` with adversarial predictions
        under ``f"pgd{steps}"`` (the baseline) and ``tpgd_name(x)`` per 1/T.
        1/T = 1 is vanilla PGD, so its column is the baseline's. Feed it to
        :func:`classwise.analysis.relative_robustness` for the paper's table 4.

    Example:
        >>> res = temperature_sweep(model, x, y, eps=0.031, step_size=0.003)
        >>> relative_robustness(res)["tpgd:5"]  # (K + 1,) total, then per class
    """
    threat = make_threat(norm, eps, 2.5 * eps / steps if step_size is None else step_size)
    baseline = f"pgd{steps}"
    attacks = {baseline: PGD(model, threat, steps)}
    attacks |= {tpgd_name(t): TemperaturePGD(model, threat, t, steps) for t in inv_temps if t != 1}
    results = evaluate(model, images, labels, attacks, class_names=class_names, batch_size=batch_size,
                       device=device, seed=seed, progress=progress)
    if any(t == 1 for t in inv_temps):
        results.adv_pred[tpgd_name(1)] = results.adv_pred[baseline].copy()
        results.facts[tpgd_name(1)] = results.facts[baseline] | {"family": "tpgd", "inv_temperature": 1.0}
    return results
