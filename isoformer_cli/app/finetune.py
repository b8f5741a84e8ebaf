"""``isoformer finetune`` for the command line: its configuration and run function.

Fine-tuning is a layer of its own (:mod:`isoformer_cli.training`: trainer, state, splits, run folder), whose
:func:`~isoformer_cli.training.finetune.run_finetune` is the command's one run function; this module is where the
command line, which imports only ``app``, finds it.
"""

from isoformer_cli.training.config import FinetuneConfig, TrainingSettings
from isoformer_cli.training.finetune import run_finetune
from isoformer_cli.training.splits import SplitSpec

__all__ = ["FinetuneConfig", "SplitSpec", "TrainingSettings", "run_finetune"]
