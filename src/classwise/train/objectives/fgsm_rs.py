"""FGSM adversarial training with a random start ("Fast is better than free")."""

from __future__ import annotations

from .pgd_at import PGDAT


class FGSMRS(PGDAT):
    """``CE(f(x'), y)`` with x' one FGSM step from a uniform random start.

    Paper: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial
    training", ICLR 2020. x' = Proj(x + delta + alpha * sign(grad)), delta ~
    U[-eps, eps], alpha = 1.25 eps unless ``cfg.attack.step_size`` is set. Pair
    it with ``schedule: cyclic`` (the paper's cyclic learning rate); the
    reference also uses mixed precision and early stopping, which we omit.

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    requires_attack = "fgsm-rs"


    attack_name = "fgsm-rs"
