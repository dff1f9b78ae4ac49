"""The Python API for whole runs: train a run, evaluate it, write its report, outside models, the demo.

The CLI is a thin layer over these functions (``classwise.evaluate.evaluate`` is
the API for any model). Each job is its own module in :mod:`classwise.jobs`; this
module only re-exports them. Every file of a run folder is read and written
through :class:`classwise.runs.Run`; which results an evaluation keeps is
:mod:`classwise.identity`'s rule.
"""

from __future__ import annotations

from .jobs import (OutsideModel, create_outside_run, demo, eval_indices, evaluate_outside, evaluate_run,
                   outside_config, recipe_config, report_run, resumed_config, train_run)
from .runs import load_run_data

__all__ = ["OutsideModel", "create_outside_run", "demo", "eval_indices", "evaluate_outside", "evaluate_run",
           "load_run_data", "outside_config", "recipe_config", "report_run", "resumed_config", "train_run"]
