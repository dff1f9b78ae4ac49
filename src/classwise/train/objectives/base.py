"""The objective base class: per-example losses -> one training loss, plus defences.

An objective is called once per batch as ``objective(model, x, y, eps, generator)``
with x (B, C, H, W) in [0, 1], y (B,), the current training eps and the
epoch's generator; it returns (loss scalar, logits (B, K)), the logits being
those it trained on (adversarial for attack-based objectives), which the loop
uses for the training accuracy. Subclasses implement :meth:`Objective.losses`
(per-example losses (B,)); the base class reduces them with the optional
class weights and adds the optional weight-norm penalty (see ``defences``).
The loop calls :meth:`Objective.begin_epoch` before every epoch and
:meth:`Objective.end_epoch` after it; :meth:`Objective.extra_checkpoints`
names further weights (an average) it saves beside ``last`` at epoch ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ...attacks import Attack, create_attack
from ...config import AttackConfig, TrainConfig
from ...models import unwrap
from .defences import ClassTally, class_weights, norm_spread_penalty, weighted_mean


def training_attack(attack: AttackConfig, model: nn.Module, eps: float, name: str | None = None) -> Attack:
    """The training attack at the current ``eps``, returning its last iterate.

    The step size scales with eps / ``attack.eps``, so an eps warm-up keeps the
    configured ratio step/eps. ``name`` overrides ``attack.name``; the options of
    the config's spec apply (``keep_best`` is always off, hence one restart). The attack
    runs on the module behind a DDP wrapper: it needs input gradients only, and
    forwards through DDP would expect a gradient synchronisation.
    """
    step = None if attack.step_size is None else attack.step_size * eps / max(attack.eps, 1e-12)
    options = {k: v for k, v in attack.options.items() if k != "keep_best"}
    spec = attack.spec.replace(name=name or attack.name, eps=None, step_size=None, restarts=None, options=options)
    return create_attack(spec, unwrap(model), eps, step_size=step, norm=attack.norm, keep_best=False)


class Objective(ABC):
    """One training objective; the constructor only stores the config.

    Args:
        cfg: the run's :class:`TrainConfig` (method, attack, beta, defences...).
    """

    # The method's rules, checked once by :func:`check_method` where an objective is created:
    requires_head: str | None = None  # model.head.name the method needs (HE methods: "he")
    requires_attack: str | None = None  # train.attack family the method needs (fgsm-rs: "fgsm-rs")
    tallies: bool = False  # the method reads the epoch's class tally (always kept; else only for the defence)

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.tally = ClassTally()  # per-class training accuracy of this epoch
        self.weights: torch.Tensor | None = None  # (K,) class weights in use
        self.validation: tuple[torch.Tensor, torch.Tensor] | None = None  # held-out (x uint8, y), if the method uses one

    def validation_size(self) -> int:
        """Training images the method holds out as its validation split (0: none); the loop sets ``validation``."""
        return 0

    @abstractmethod
    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses (B,) and the logits (B, K) trained on."""

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss of one batch (scalar) and the logits (B, K) trained on."""
        losses, logits = self.losses(model, x, y, eps, generator)
        if self.cfg.class_weight_gamma > 0 or self.tallies:
            self.tally.add(logits, y)
        loss = weighted_mean(losses, y, self.weights)
        if self.cfg.weight_norm_penalty > 0:
            loss = loss + self.cfg.weight_norm_penalty * norm_spread_penalty(_head_weight(model))
        return loss, logits

    def begin_epoch(self, epoch: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Prepare 0-based ``epoch``; x (N, C, H, W) uint8 and y (N,) are the training set.

        Here: class weights from the previous epoch's tally (class-aware defence).
        Subclasses that override it call ``super().begin_epoch`` first.
        """
        tally = self.tally
        if self.cfg.class_weight_gamma > 0 and tally.correct is not None and tally.total is not None:
            self.weights = class_weights(tally.correct, tally.total, self.cfg.class_weight_gamma).to(y.device)
        tally.reset()

    def end_epoch(self, epoch: int, model: nn.Module) -> None:  # noqa: B027 (optional hook)
        """After 0-based ``epoch``'s last step (the tally summed over processes); here nothing."""

    def extra_checkpoints(self) -> dict[str, dict[str, torch.Tensor]]:
        """Weights to save beside ``last`` at epoch ends, by checkpoint name (here none)."""
        return {}

    def epoch_metrics(self) -> dict:
        """Extra numbers for the epoch's metrics line (class weights, temperature...)."""
        return {} if self.weights is None else {"class_weights": [round(w, 4) for w in self.weights.tolist()]}

    def state_dict(self) -> dict:
        """What resuming needs beyond model and optimiser (saved in the training state)."""
        return {"tally": self.tally.state_dict(), "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.tally.load_state_dict(state.get("tally", {}))
        self.weights = state.get("weights")


def _head_weight(model: nn.Module) -> torch.Tensor:
    """The classifier weight (K, D) of the model's head; a head without one is a clear error."""
    head = getattr(unwrap(model), "head", None)
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight_norm_penalty needs a head with a weight (K, D), the model has {type(head).__name__}")
    return weight
