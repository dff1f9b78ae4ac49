"""The jobs, each a few calls through :class:`classwise.runs.Run`: train a run, evaluate it, report it,
make a run of an outside model, and the demo.

One module per job, each readable top to bottom:

    train.py      train_run: check the config, make or reopen the folder, fit, record the state
    resume.py     resumed_config: which config changes --resume (and evaluate --set) may make
    evaluate.py   evaluate_run: attack, merge with earlier results, save, report
    attacking.py  what an evaluation attacks: examples, samples, cascade, ranks, adversarial images
    report.py     report_run: summary.json and the report from saved results (the gallery from saved images)
    show.py       show_class: one class of an evaluated run in the terminal
    outside.py    OutsideModel, create_outside_run, evaluate_outside: models classwise did not train
    demo.py       demo: the robust SmallCNN on mnist5k, trained, evaluated, reported

``classwise.pipeline`` re-exports the public names (the Python API for whole runs);
``classwise.evaluate.evaluate`` is the API for any model.
"""

from .attacking import eval_indices
from .demo import demo
from .evaluate import evaluate_run
from .outside import OutsideModel, create_outside_run, evaluate_outside, outside_config
from .report import report_run
from .resume import recipe_config, resumed_config
from .train import check_config, decide_stream, train_run

__all__ = ["OutsideModel", "check_config", "create_outside_run", "decide_stream", "demo", "eval_indices",
           "evaluate_outside", "evaluate_run", "outside_config", "recipe_config", "report_run", "resumed_config",
           "train_run"]
