"""Run configuration: frozen dataclasses loaded from YAML, validated with clear errors.

A preset (``configs/*.yaml``) gives the defaults, ``--set key=value`` flags
override single fields, and the resolved config is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ClasswiseError, did_you_mean, unknown_name
from .spec import NORMS, AttackSpec, number_from_text, parse_number  # noqa: F401 (parse_number: re-exported)

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cyclic", "piecewise")
HEADS = ("linear", "he")
MAX_WORKERS = 256  # DataLoader worker processes: more is a fork bomb, not a speed-up
MAX_IMAGE_SIZE = 4096  # pixels per side: larger sizes would allocate terabytes for a dataset


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ClasswiseError(message)


def _check_known(kind: str, name: str, known: tuple[str, ...]) -> None:
    """Refuse a name outside ``known`` with a "did you mean" suggestion."""
    if name not in known:
        raise unknown_name(kind, name, known)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and where its files are (``root`` None = default cache).

    ``name``: a dataset of the registry (``classwise list``). ``download``: fetch
    the official files into ``root`` when they are missing. ``image_size``: resize
    images to this many pixels a side (image folders; null keeps their size).
    ``train_examples`` keeps a class-balanced sample of the training set (quick runs).
    ``remove_class`` drops the training examples of that class (after the
    sampling); test set, class names and the model's K outputs are unchanged
    (the homing experiment, section 3.1; checked against K when data load).
    ``stream`` (image folders): true reads images from files in DataLoader workers
    (``workers`` processes, null: one per CPU, at most 8), false decodes the whole
    tree into memory, null decides by size (docs/scale.md, "Streaming data"); a new
    run saves the decision, so a resumed run reads its data the same way.
    """

    name: str = "mnist5k"
    root: str | None = None
    download: bool = True
    image_size: int | None = None
    train_examples: int | None = None
    remove_class: int | None = None
    stream: bool | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        _check(self.image_size is None or self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
        _check(self.train_examples is None or self.train_examples >= 1, "data.train_examples must be >= 1")
        _check(self.remove_class is None or self.remove_class >= 0,
               f"data.remove_class must be a class index >= 0, got {self.remove_class}")
        _check(self.workers is None or 0 <= self.workers <= MAX_WORKERS,
               f"data.workers must be in [0, {MAX_WORKERS}], got {self.workers}")
        _check(self.image_size is None or self.image_size <= MAX_IMAGE_SIZE,
               f"data.image_size must be <= {MAX_IMAGE_SIZE}, got {self.image_size}")


@dataclass(frozen=True)
class HeadConfig:
    """The model's last layer: "linear" (``nn.Linear``) or "he" (hypersphere embedding).

    ``name``: the kind of last layer, "linear" or "he".
    ``scale`` (s = 1/T) and ``margin`` (angular margin m) apply to "he" only
    (Pang et al. 2020 use s = 15, m = 0.2 on CIFAR-10; HE-LIS/HE-CMP use m = 0
    and overwrite s every epoch).
    """

    name: str = "linear"
    scale: float = 15.0
    margin: float = 0.2

    def __post_init__(self) -> None:
        _check_known("model.head.name", self.name, HEADS)
        _check(self.scale > 0, f"model.head.scale must be > 0, got {self.scale}")
        _check(self.margin >= 0, f"model.head.margin must be >= 0, got {self.margin}")


@dataclass(frozen=True)
class ModelConfig:
    """Registry name of the model, extra constructor arguments, and its head.

    ``name``: a model of the registry, torchvision:NAME or timm:NAME (``classwise list``).
    ``kwargs``: extra keyword arguments of its constructor (e.g. ``{depth: 34}``).
    """

    name: str = "smallcnn"
    kwargs: dict = field(default_factory=dict)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class AttackConfig:
    """An attack spec of the registry ("fgsm", "pgd40", ...), its threat model, budget and options.

    ``name``: the attack spec (``pgd40``, ``fgsm``, ``classwise list`` has them).
    ``eps``: the radius of the threat model (8/255 may be written as such).
    ``step_size``: the step of iterative attacks (null: the attack's default, 2.5 eps / steps for PGD).
    ``restarts``: random restarts; an example counts as robust only if it survives all.
    ``norm``: the threat model, "linf" (eps in [0, 1]) or "l2" (eps >= 0 in
    L2 units, e.g. 0.5 on CIFAR-10 as RobustBench; radii > 1 are meaningful
    on large images). ``options`` are further keyword arguments of the attack
    class (e.g. ``{loss: cw}`` for pgd, ``{target: 3}``). On the command line
    one attack is written ``name[@key=value...]``: ``pgd20@step=0.003@restarts=5``,
    ``pgd20@norm=l2@eps=0.5`` (:class:`classwise.spec.AttackSpec`); a YAML ``name:``
    may carry the same settings, which are moved into the fields.
    ``examples_per_class``: the class-balanced sample an evaluation attacks
    (null: the attack's default, 200 for cw-inf and nattack, else every
    example); a sample as large as the smallest class means every example.
    """

    name: str = "pgd40"
    eps: float = 0.3
    step_size: float | None = None
    restarts: int = 1
    norm: str = "linf"
    options: dict = field(default_factory=dict)
    examples_per_class: int | None = None

    def __post_init__(self) -> None:
        self._take_spec_settings()
        _check(self.norm in NORMS, f"unknown attack norm '{self.norm}' (known: {', '.join(NORMS)})")
        if self.norm == "linf":
            _check(0.0 <= self.eps <= 1.0, f"eps must be in [0, 1], got {self.eps}")
        else:
            _check(0.0 <= self.eps < float("inf"), f"L2 eps must be a finite number >= 0, got {self.eps}")
        _check(self.step_size is None or 0 <= self.step_size < float("inf"),
               f"step_size must be a finite number >= 0, got {self.step_size}")
        _check(self.restarts >= 1, f"restarts must be >= 1, got {self.restarts}")
        _check(self.examples_per_class is None or self.examples_per_class >= 1,
               f"examples_per_class must be >= 1 or null, got {self.examples_per_class}")

    def _take_spec_settings(self) -> None:
        """A name with settings ("pgd20@step=0.003", as on the command line) moves them into the fields."""
        spec = AttackSpec.parse(self.name)
        _check(spec.examples is None, f"'{self.name}': @n= names the examples of a stored result, not an attack "
                                      "setting; choose examples with examples_per_class or --examples")
        clash = sorted(set(spec.option_dict) & set(self.options))
        _check(not clash, f"attack '{self.name}' sets {', '.join(clash)} both in its name and in options")
        for key, value in (("eps", spec.eps), ("step_size", spec.step_size), ("restarts", spec.restarts),
                           ("norm", spec.norm)):
            if value is not None:
                object.__setattr__(self, key, value)
        object.__setattr__(self, "name", spec.name)
        object.__setattr__(self, "options", spec.option_dict | dict(self.options))

    @property
    def spec(self) -> AttackSpec:
        """The attack as an :class:`AttackSpec`: name, eps and step, restarts > 1, norm l2, options."""
        return AttackSpec(self.name, self.eps, self.step_size, self.restarts if self.restarts > 1 else None,
                          self.norm if self.norm != "linf" else None, options=tuple(sorted(self.options.items())))

    @classmethod
    def from_text(cls, text: str, eps: float, step_size: float | None = None, norm: str = "linf") -> AttackConfig:
        """``name[@key=value...]`` (:class:`AttackSpec` grammar); its settings override eps, step_size and norm."""
        return cls(text, eps, step_size, norm=norm)

    def to_text(self) -> str:
        """The attack's spec text (:meth:`AttackSpec.format`), the inverse of :meth:`from_text`."""
        return self.spec.format()


def parse_value(text: str) -> Any:
    """A YAML scalar or collection from ``text`` (one clear error when malformed)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ClasswiseError(f"cannot parse value {text!r}: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class TemperatureConfig:
    """Schedules of s = 1/T for HE-LIS and HE-CMP (appendix G, equations 5 and 6).

    HE-LIS: s rises linearly per epoch from ``scale_start`` (first epoch) to
    ``scale_end`` (last epoch). HE-CMP: each epoch s is solved so that the mean
    maximum softmax probability over ``probe_examples`` fixed, class-balanced
    clean training images equals a target that rises linearly from
    ``pmax_start`` to ``pmax_end`` over the first ``pmax_ramp`` fraction of the
    epochs, then stays at ``pmax_end``. Targets are clipped to ``pmax_clip``
    (probability 1 is unreachable) and s to [``scale_min``, ``scale_max``].
    """

    scale_start: float = 1.0
    scale_end: float = 75.0
    pmax_start: float = 0.2
    pmax_end: float = 1.0
    pmax_ramp: float = 0.9
    pmax_clip: float = 0.999
    scale_min: float = 0.01
    scale_max: float = 200.0
    probe_examples: int = 1000

    def __post_init__(self) -> None:
        _check(0 < self.scale_start and 0 < self.scale_end, "train.he.scale_start and scale_end must be > 0")
        _check(0 < self.pmax_start <= 1 and 0 < self.pmax_end <= 1, "train.he.pmax_start and pmax_end must be in (0, 1]")
        _check(0 < self.pmax_ramp <= 1, f"train.he.pmax_ramp must be in (0, 1], got {self.pmax_ramp}")
        _check(0 < self.pmax_clip < 1, f"train.he.pmax_clip must be in (0, 1), got {self.pmax_clip}")
        _check(0 < self.scale_min < self.scale_max, "train.he needs 0 < scale_min < scale_max")
        _check(self.probe_examples >= 1, "train.he.probe_examples must be >= 1")


@dataclass(frozen=True)
class FairnessConfig:
    """Hyper-parameters of the robust-fairness methods frl, dafa, wat and cfa (docs/fairness.md).

    Defaults are the reference codes' (FRL: hannxu123/fair_robust frlrmrw.py; DAFA:
    rucy74/DAFA; WAT: its training script; CFA: PKU-ML/CFA train.py).
    The split: ``val_examples`` class-balanced training images (about that many) drawn
    with the run's seed, removed from training, recorded in ``<run>/validation.json``.
    FRL tolerances: ``frl_tau_nat`` (bound0) and ``frl_tau_bndy`` (bound1), how far a
    class's clean and boundary error may exceed the average.
    FRL step: ``frl_rate`` (rate1) for the loss-weight multipliers, halved every
    ``frl_rate_halving`` epochs.
    FRL re-margin step: ``frl_rate_eps`` (rate2; 0 turns re-margining off).
    FRL cap: ``frl_lim``, the largest sum of each multiplier vector (< 1 keeps weights > 0).
    DAFA: ``dafa_lambda``, the scale of the class-weight moves (in [0, 1]).
    DAFA warm-up: ``dafa_warmup`` epochs of TRADES before the weights are computed.
    WAT: ``wat_eta``, the Hedge learning rate.
    CFA margin (CCM): ``cfa_ccm`` turns the class-wise radius eps_y = (cfa_ccm_lambda + t_y) * eps
    on, t_y class y's robust training accuracy in the previous epoch.
    CFA margin offset: ``cfa_ccm_lambda`` (lambda_1; > 0, so every radius is > 0).
    CFA regularisation (CCR): ``cfa_ccr`` turns the class-wise TRADES weight b_y = beta_y / (1 + beta_y),
    beta_y = (cfa_ccr_lambda + t_y) * beta, on.
    CFA regularisation offset: ``cfa_ccr_lambda`` (lambda_2).
    CFA start: ``cfa_begin``, the epochs of uniform eps and beta before the class-wise ones.
    CFA averaging (FAWA): ``cfa_decay``, the decay of the weight average saved as checkpoint "fawa".
    FAWA threshold: ``cfa_threshold``, the worst-class robust accuracy on the validation split
    (in [0, 1]) an epoch's model needs to enter the average.
    """

    val_examples: int = 1000
    frl_tau_nat: float = 0.1
    frl_tau_bndy: float = 0.1
    frl_rate: float = 0.05
    frl_rate_eps: float = 0.1
    frl_rate_halving: int = 40
    frl_lim: float = 0.5
    dafa_lambda: float = 1.0
    dafa_warmup: int = 70
    wat_eta: float = 0.1
    cfa_ccm: bool = True
    cfa_ccm_lambda: float = 0.5
    cfa_ccr: bool = True
    cfa_ccr_lambda: float = 0.5
    cfa_begin: int = 10
    cfa_decay: float = 0.88
    cfa_threshold: float = 0.24

    def __post_init__(self) -> None:
        _check(self.val_examples >= 1, f"train.fair.val_examples must be >= 1, got {self.val_examples}")
        _check(self.frl_rate >= 0 and self.frl_rate_eps >= 0, "train.fair.frl_rate and frl_rate_eps must be >= 0")
        _check(self.frl_rate_halving >= 1, f"train.fair.frl_rate_halving must be >= 1, got {self.frl_rate_halving}")
        _check(0 < self.frl_lim < 1, f"train.fair.frl_lim must be in (0, 1) (class weights stay > 0), got {self.frl_lim}")
        _check(0 <= self.dafa_lambda <= 1, f"train.fair.dafa_lambda must be in [0, 1] (weights stay > 0), "
                                           f"got {self.dafa_lambda}")
        _check(self.dafa_warmup >= 0, f"train.fair.dafa_warmup must be >= 0, got {self.dafa_warmup}")
        _check(self.wat_eta >= 0, f"train.fair.wat_eta must be >= 0, got {self.wat_eta}")
        _check(self.cfa_ccm_lambda > 0, f"train.fair.cfa_ccm_lambda must be > 0 (every radius > 0), "
                                        f"got {self.cfa_ccm_lambda}")
        _check(self.cfa_ccr_lambda >= 0, f"train.fair.cfa_ccr_lambda must be >= 0, got {self.cfa_ccr_lambda}")
        _check(self.cfa_begin >= 0, f"train.fair.cfa_begin must be >= 0, got {self.cfa_begin}")
        _check(0 <= self.cfa_decay < 1, f"train.fair.cfa_decay must be in [0, 1), got {self.cfa_decay}")
        _check(0 <= self.cfa_threshold <= 1, f"train.fair.cfa_threshold must be in [0, 1] (an accuracy), "
                                             f"got {self.cfa_threshold}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and objective (section 3 / appendix E of the paper).

    ``epochs``: passes over the training set. ``batch_size``: training images a step.
    ``optimizer``: "sgd" (with ``momentum``) or "adam"; ``lr`` its learning rate and
    ``weight_decay`` its L2 penalty. ``attack``: the attack that makes the training
    examples of adversarial methods. ``save_epochs``: epochs whose checkpoint is kept
    as ``epochN`` beside ``last`` (for ``evaluate --checkpoint``).
    ``eps_warmup_epochs`` > 0 ramps the training eps linearly from 0 to the
    attack's eps over that many epochs (a deviation from the paper, used by
    the quick demo). ``monitor`` is the attack logged per epoch on the test set
    (figure 1); ``monitor_examples`` caps how many test images it attacks.

    ``method`` names an objective of ``classwise.train.objectives`` (standard,
    pgd-at, fgsm-rs, trades, mart, he, he-lis, he-cmp, frl, dafa, wat, cfa); ``beta``
    weighs the TRADES / MART regulariser; ``he`` holds the HE-LIS / HE-CMP
    schedules, ``fair`` the robust-fairness methods' settings.
    ``schedule``: "step" (lr x ``gamma`` at ``milestones``, per epoch),
    "cyclic" (0 -> ``lr`` -> 0, linear, stepped per batch; Wong et al. 2020),
    "piecewise" (linear through (``lr_epochs``, ``lr_values``), per batch).
    Defences from the paper's guidelines (docs/training.md):
    ``weight_norm_penalty`` lambda adds lambda * Var_c(|w_c|) over the rows of
    ``head.weight``; ``class_weight_gamma`` gamma > 0 weighs each example's
    loss by w_c proportional to (1 - r_c)^gamma, r_c the class's robust
    training accuracy in the previous epoch (mean weight 1).
    ``checkpoint_every`` > 0 also writes the resumable state every that many
    batches (0: at epoch ends only; docs/training.md, "Resume").
    ``tensorboard`` mirrors each epoch's metrics, class by class, as TensorBoard
    scalars in ``<run>/tensorboard`` (needs the tensorboard package).
    ``sync_batchnorm`` uses SyncBatchNorm when training on several GPUs
    (default: per-process BatchNorm statistics).
    """

    method: str = "pgd-at"
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    milestones: tuple[int, ...] = (55, 75, 90)
    gamma: float = 0.1
    eps_warmup_epochs: int = 0
    attack: AttackConfig = field(default_factory=lambda: AttackConfig("pgd40", 0.3, 0.01))
    monitor: AttackConfig = field(default_factory=lambda: AttackConfig("pgd10", 0.3, None))
    monitor_examples: int | None = 1000
    save_epochs: tuple[int, ...] = ()
    beta: float = 6.0
    schedule: str = "step"
    lr_epochs: tuple[float, ...] = ()
    lr_values: tuple[float, ...] = ()
    he: TemperatureConfig = field(default_factory=TemperatureConfig)
    fair: FairnessConfig = field(default_factory=FairnessConfig)
    weight_norm_penalty: float = 0.0
    class_weight_gamma: float = 0.0
    checkpoint_every: int = 0
    sync_batchnorm: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _check_known("optimizer", self.optimizer, OPTIMIZERS)
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.eps_warmup_epochs >= 0, "eps_warmup_epochs must be >= 0")
        _check(self.monitor_examples is None or self.monitor_examples >= 1, "monitor_examples must be >= 1")
        _check(self.beta >= 0, f"train.beta must be >= 0, got {self.beta}")
        _check(self.weight_norm_penalty >= 0, f"train.weight_norm_penalty must be >= 0, got {self.weight_norm_penalty}")
        _check(self.class_weight_gamma >= 0, f"train.class_weight_gamma must be >= 0, got {self.class_weight_gamma}")
        _check(self.checkpoint_every >= 0, f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        _check(self.gamma > 0, f"train.gamma must be > 0 (the lr is multiplied by it), got {self.gamma}")
        _check(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _check(all(m >= 1 for m in self.milestones), f"train.milestones must be epochs >= 1, got {list(self.milestones)}")
        _check(all(e >= 1 for e in self.save_epochs), f"train.save_epochs must be epochs >= 1, got {list(self.save_epochs)}")
        self._check_training_attacks()
        self._check_schedule()

    def _check_training_attacks(self) -> None:
        """Refuse attack settings that training and the monitor would ignore.

        Training ascends the last iterate of one run of ``attack`` (no restarts, no
        best-iterate keeping); the monitor attacks ``monitor_examples`` images, so
        neither takes ``examples_per_class``.
        """
        a = self.attack
        _check(a.restarts == 1, f"train.attack.restarts must be 1, got {a.restarts}: training ascends the last "
                                "iterate of one attack run (restarts apply to evaluation attacks)")
        _check("keep_best" not in a.options, "train.attack.options.keep_best is not a training setting: training "
                                             "always ascends the attack's last iterate")
        for key, cfg in (("attack", a), ("monitor", self.monitor)):
            _check(cfg.examples_per_class is None, f"train.{key}.examples_per_class is an evaluation setting; "
                                                   "the monitor's sample is train.monitor_examples")

    def _check_schedule(self) -> None:
        _check_known("train.schedule", self.schedule, LR_SCHEDULES)
        _check(not self.milestones or self.schedule == "step",
               f"train.milestones apply to the step schedule, not {self.schedule}; set train.milestones=[]")
        _check(self.gamma == _DEFAULT_GAMMA or (bool(self.milestones) and self.schedule == "step"),
               "train.gamma multiplies the lr at train.milestones of the step schedule; without milestones it "
               "changes nothing")
        _check(self.schedule == "piecewise" or not (self.lr_epochs or self.lr_values),
               f"train.lr_epochs and lr_values apply to the piecewise schedule, not {self.schedule}")
        if self.schedule != "piecewise":
            return
        xs, ys = self.lr_epochs, self.lr_values
        _check(len(xs) >= 2 and len(xs) == len(ys),
               "train.schedule piecewise needs lr_epochs and lr_values of equal length >= 2")
        _check(all(a < b for a, b in zip(xs, xs[1:])) and xs[0] >= 0, "train.lr_epochs must increase from >= 0")
        _check(all(v >= 0 for v in ys), "train.lr_values must be >= 0")


_DEFAULT_GAMMA = next(f.default for f in fields(TrainConfig) if f.name == "gamma")


@dataclass(frozen=True)
class EvalConfig:
    """Final evaluation: attacks, which checkpoint, how many test images.

    ``attacks``: the suite, each an attack with its threat model. ``checkpoint``:
    "last" or a kept ``epochN``. ``examples``: a class-balanced test sample of this
    size (null: the whole test set). ``batch_size``: test images attacked at once.
    ``save_adv_per_class``: adversarial images each attack keeps per class in
    RUN/adv/ for the report's galleries, fooled ones first, a seeded choice (0 keeps
    none, and evaluate --save-adv keeps all).
    """

    attacks: tuple[AttackConfig, ...] = (AttackConfig("fgsm", 0.3, None), AttackConfig("pgd40", 0.3, 0.01))
    checkpoint: str = "last"
    examples: int | None = None
    batch_size: int = 256
    save_adv_per_class: int = 8

    def __post_init__(self) -> None:
        _check(len(self.attacks) >= 1, "eval.attacks needs at least one attack")
        _check(self.save_adv_per_class >= 0, "eval.save_adv_per_class must be >= 0")
        _check(self.examples is None or self.examples >= 1, "eval.examples must be >= 1")
        _check(self.batch_size >= 1, "eval.batch_size must be >= 1")


AMP_MODES = ("none", "bf16")


@dataclass(frozen=True)
class PerfConfig:
    """Speed options for training and evaluation (see ``classwise.perf``).

    ``channels_last``: NHWC weights and batches; null (the default) turns it
    on where the run's device is CUDA and off on a CPU. ``amp``: "none" or
    "bf16" (forward passes under ``torch.autocast``). ``compile``:
    ``torch.compile`` the model in place (slow to start; worth it for long GPU
    runs). Both are off by default.
    """

    channels_last: bool | None = None
    amp: str = "none"
    compile: bool = False

    def __post_init__(self) -> None:
        _check_known("perf.amp", self.amp, AMP_MODES)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; saved resolved as ``config.yaml`` in the run folder.

    ``seed``: seeds data order, sampling, initialisation and attacks' random starts.
    ``device``: "auto" (a GPU when there is one), "cpu", "cuda", "cuda:1" ...
    ``notes``: free text shown in the report (presets say how their recipe differs
    from the paper's; a run that changes its preset's recipe adds a note saying so).
    """

    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    notes: tuple[str, ...] = ()


def preset_names() -> list[str]:
    """Names of the presets shipped in ``configs/`` (= ``classwise/presets``)."""
    return sorted(p.name[:-5] for p in resources.files("classwise.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a preset name or YAML path, apply ``key.sub=value`` overrides, validate."""
    raw = _read_yaml(source) if source is not None else {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw, "")


def load_run_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A run folder's config.yaml, then ``overrides``: like :func:`load_config`, but every key must be there.

    classwise writes a run's config resolved, every key included (:func:`dump_config`); a missing key means the
    file was edited by hand or cut short, and filling it with today's default could change what the run was.
    """
    raw = _read_yaml(path)
    missing = _missing_key(RunConfig, raw, "")
    if missing is not None:
        raise ClasswiseError(f"{path} has no key '{missing}' (classwise writes every key into a run's config: was it "
                             "edited by hand?); add it back (`classwise config-keys` lists each key) or make the run again")
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw, "")


def _missing_key(cls: type, raw: Any, where: str) -> str | None:
    """The first field of dataclass ``cls`` (nested ones and lists of them included) that ``raw`` lacks."""
    if not isinstance(raw, dict):
        return None  # not a mapping: from_dict says so
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = _join(where, f.name)
        if f.name not in raw:
            return key
        hint, value = hints[f.name], raw[f.name]
        if typing.get_origin(hint) is tuple and isinstance(value, list):
            hint, items = typing.get_args(hint)[0], [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(key, value)]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            for at, item in items:
                missing = _missing_key(hint, item, at)
                if missing is not None:
                    return missing
    return None


def _read_yaml(source: str | Path) -> dict:
    path = Path(source)
    if not path.is_file() and str(source) in preset_names():  # a folder named like a preset (a run) does not shadow it
        path = Path(str(resources.files("classwise.presets") / f"{source}.yaml"))
    if not path.is_file():
        raise ClasswiseError(f"config '{source}' is neither a file nor a preset{did_you_mean(source, preset_names())} "
                             f"(presets: {', '.join(preset_names())})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ClasswiseError(f"cannot parse config {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ClasswiseError(f"config {path} must be a mapping at the top level")
    return data


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ClasswiseError(f"override '{item}' must look like key.sub=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ClasswiseError(f"override '{item}': '{part}' is not a section")
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError as e:  # malformed ([1,2), or a tag safe_load refuses (!!python/...)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ClasswiseError(f"override '{item}': the value is not valid YAML ({problem}); "
                             "quote text and write lists as [1, 2]") from None


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a plain mapping, recursively, with clear errors."""
    if not isinstance(raw, dict):
        raise ClasswiseError(f"config section '{where or 'top'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClasswiseError(f"unknown config key '{_join(where, unknown[0])}'{did_you_mean(unknown[0], known)} "
                             f"(known: {', '.join(sorted(known))})")
    values = {k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()}
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(hint: Any, value: Any, where: str, nullable: bool = False) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where, type(None) in args)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
    return _scalar(hint, value, where, nullable)


def _scalar(hint: Any, value: Any, where: str, nullable: bool) -> Any:
    if hint in (int, float) and isinstance(value, str):
        number = number_from_text(value)  # "1e-3", "8/255" (YAML 1.1 strings); other text is refused below
        value = value if number is None else number
    expected = _mismatch(hint, value)
    if expected is not None:
        if nullable:  # "true or false" -> "true, false or null"; "a number" -> "a number or null"
            expected = expected.replace(" or ", ", ") + " or null"
        raise ClasswiseError(f"config key '{where}' must be {expected}, got {value!r}")
    if hint is dict or typing.get_origin(hint) is dict:
        return dict(value)
    return hint(value) if hint in (int, float) else value


def _mismatch(hint: Any, value: Any) -> str | None:
    """What a value of type ``hint`` must be, when ``value`` is not that; else None."""
    if hint is dict or typing.get_origin(hint) is dict:
        return None if isinstance(value, dict) else "a mapping"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        if not math.isfinite(value):
            return "a finite number"
        return "an integer" if hint is int and float(value) != int(value) else None
    if hint is str and not isinstance(value, str):
        return "a string"
    return None


def to_dict(config: Any) -> Any:
    """Plain, YAML-ready form of a config (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in fields(config)}
    if isinstance(config, (tuple, list)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
