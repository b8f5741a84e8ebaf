"""What the command line needs from the layers below to declare and build its options: the choices and
defaults of the options, the value objects the option groups become, and the progress-bar switch of ``-q``.

The command line (``isoformer_cli.cli``) imports only ``app`` and ``errors``; this module is how it reaches the
owners of these values without a second copy of any of them. It is light to import (no torch, no
transformers), so ``isoformer --help`` and ``isoformer triples`` start in a fraction of a second.
"""

from isoformer_cli.genomics.expression import VALUE_KINDS, ExpressionInput
from isoformer_cli.genomics.flags import ON_INVALID_CHOICES
from isoformer_cli.inference.memory_plan import DEFAULT_CHUNK_ROWS
from isoformer_cli.models.network.tokenizers import TRUNCATION_POLICIES
from isoformer_cli.runtime.options import PRECISION_CHOICES, RuntimeOptions
from isoformer_cli.runtime.progress import configure_progress
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH, ORF_CHOICES
from isoformer_cli.triples.source import TripleSource

#: ``isoformer models calibrate --min-spearman``: below this pooled Spearman the best candidate is refused. The
#: paper reports a Spearman of 0.72 on its test split; weights whose architecture is rebuilt right reproduce their
#: own training labels far above 0.3, while a wrong reconstruction scores near 0 (random weights: about 0).
DEFAULT_MIN_SPEARMAN = 0.3

__all__ = [
    "DEFAULT_MIN_SPEARMAN",
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_DNA_LENGTH",
    "DEFAULT_MIN_ORF_LENGTH",
    "ON_INVALID_CHOICES",
    "ORF_CHOICES",
    "PRECISION_CHOICES",
    "TRUNCATION_POLICIES",
    "VALUE_KINDS",
    "ExpressionInput",
    "RuntimeOptions",
    "TripleSource",
    "configure_progress",
]
