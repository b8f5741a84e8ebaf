"""The one chunk loop of every command that runs IsoFormer over a stream of triples (``predict``, ``embed``,
``variants``, whose rows are VCF records).

One pass: triples stream from the source (an annotation built on the fly, or a triples table) in chunks of
``chunk_size`` transcripts; DataLoader workers fetch the DNA windows from the genome and tokenise
(:mod:`~isoformer_cli.inference.prepare`); the engine encodes each distinct input once and fuses per isoform
(:mod:`~isoformer_cli.inference.engine`); the command's writer receives the results chunk by chunk in input
order. A writer that already holds rows (``--resume`` after a kill) says how many in ``completed_rows``; the
loop starts after them.

Under ``torchrun`` chunk ``i`` belongs to rank ``i % world_size``; after each round of one chunk per rank the
results are exchanged and rank 0 writes them in chunk order, so the output equals a single-process run's.
An error on any rank (or in a worker) stops every rank with the same message.

The runner opens the genome of its source (``source.genome``, the path ``--genome`` gave) once, as a
:class:`~isoformer_cli.genomics.genome.Genome`, which pickles (DataLoader workers each get a copy): callers keep
the path and use ``runner.genome``.
"""

import logging
import os

from torch.utils.data import DataLoader

from isoformer_cli.genomics.genome import Genome
from isoformer_cli.inference.engine import ChunkPredictor
from isoformer_cli.inference.memory_plan import check_fits, plan_memory
from isoformer_cli.inference.prepare import ChunkDataset, TokenizerSettings
from isoformer_cli.models.checkpoint.check import CheckedCheckpoint
from isoformer_cli.models.checkpoint.load import load_checked
from isoformer_cli.models.distribution.locate import is_demo_checkpoint, is_demo_derived
from isoformer_cli.runtime import distributed
from isoformer_cli.runtime.memory import memory_budget
from isoformer_cli.runtime.progress import progress
from isoformer_cli.runtime.setup import RunContext
from isoformer_cli.triples.source import TripleSource

log = logging.getLogger(__name__)


class ModelRunner:
    """A loaded checkpoint, ready to run over a triple stream on one process of a run.

    Args:
        context: the :class:`~isoformer_cli.runtime.setup.RunContext` (device, process group, precision).
        checked: the model, located and checked once by the command
            (:func:`~isoformer_cli.models.distribution.locate.locate_checkpoint`).
        source: a :class:`~isoformer_cli.triples.source.TripleSource`; its window length becomes the model's and
            its genome is opened here (see the module docstring).
        rna_truncation, protein_truncation: tokenizer policies for inputs longer than the model maximum.
        max_tokens: ``--max-tokens``, one budget of padded input positions for every batch, or None to derive
            the batches from the memory there is (:mod:`~isoformer_cli.inference.memory_plan`).
        chunk_size: transcripts per chunk (the unit of sharing, writing and resuming), or None for the default;
            made smaller when a chunk's outputs would not fit in memory.
        num_workers: DataLoader worker processes preparing chunks (0: in the main process).
        dedupe: encode each distinct input once (off only for checks and benchmarks).
        records_per_chunk: for ``variants``, whose chunks are this many VCF records (``chunk_size`` is then None
            and the plan's chunk size counts the isoform rows of one model call); only for the log.

    Attributes:
        checkpoint_dir, demo, demo_derived (fine-tuned from the demo: random-weight encoders), model, source,
        genome, settings, plan (the memory plan), predictor.

    Raises:
        DeviceError: the memory of the device (or ``--max-memory``) cannot hold the model and one full-length
            isoform; checked before the weights are read.
    """

    def __init__(self, context: RunContext, checked: CheckedCheckpoint, source: TripleSource, rna_truncation: str,
                 protein_truncation: str, max_tokens: int | None = None, chunk_size: int | None = None,
                 num_workers: int = 0, dedupe: bool = True, records_per_chunk: int | None = None) -> None:
        self.context = context
        self.group = context.group
        self.checkpoint_dir = checked.folder
        self.demo = is_demo_checkpoint(self.checkpoint_dir)
        self.demo_derived = not self.demo and is_demo_derived(self.checkpoint_dir)
        # A run that cannot fit is refused here, with the figures, rather than killed by the kernel later.
        check_fits(checked.config, context.precision, memory_budget(context.device, context.max_memory),
                   weights_bytes=os.path.getsize(checked.weights))
        self.model = load_checked(checked, device=context.device)
        # The one warning of a run (the outputs carry it in their headers).
        if self.demo and self.group.is_main:
            log.warning("using the bundled DEMO checkpoint: random weights, its numbers are NOT "
                        "biological predictions")
        elif self.demo_derived and self.group.is_main:
            log.warning("%s was fine-tuned from the bundled DEMO checkpoint: its encoders have random weights, its "
                        "numbers are NOT biological predictions", self.checkpoint_dir)
        model_config = self.model.config
        # The checkpoint decides the window length, whatever length a triples table was built with.
        self.source = source.with_dna_length(model_config.dna_length)
        self.genome = Genome(source.genome)
        self.settings = TokenizerSettings.for_model_config(model_config, rna_truncation, protein_truncation)
        budget = memory_budget(context.device, context.max_memory)
        self.plan = plan_memory(model_config, context.device, context.precision, budget, chunk_size, max_tokens)
        if self.group.is_main:
            log.info("memory: %s for the run; %s", budget.describe(), self.plan.describe(records_per_chunk))
        self.predictor = ChunkPredictor(self.model, context.device, context.precision, self.plan)
        self.chunk_size = self.plan.chunk_size
        self.num_workers = num_workers
        self.dedupe = dedupe

    def chunks(self, start_row, dataset_class=None):
        """This rank's prepared chunks after ``start_row``, in order (errors from workers re-raised later).

        ``dataset_class`` (default :class:`ChunkDataset`) is called with the runner and the start row and
        returns the dataset; ``isoformer variants`` passes its own, whose rows are VCF records.
        """
        if dataset_class is not None:
            dataset = dataset_class(self, start_row)
        else:
            dataset = ChunkDataset(self.source, self.genome, self.settings, self.chunk_size, start_row=start_row,
                                   rank=self.group.rank, world_size=self.group.world_size, dedupe=self.dedupe)
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers, collate_fn=lambda chunk: chunk)
        yield from loader

    def rounds(self, start_row, compute, dataset_class=None):
        """Apply ``compute`` to every chunk and yield ``(chunk, result)`` in chunk order, on every rank.

        Distributed: each round, every rank computes its next chunk and all results are exchanged, so
        rank 0 can write them in order. An error on any rank is raised on all.
        """
        mine = iter(self.chunks(start_row, dataset_class))
        while True:
            chunk = next(mine, None)
            outcome = None
            if chunk is not None:
                if chunk.error is not None:
                    outcome = ("error", chunk.error)
                else:
                    outcome = ("ok", chunk, compute(chunk))
            gathered = distributed.all_gather(self.group, outcome)
            if all(item is None for item in gathered):
                return
            for item in gathered:
                if item is not None and item[0] == "error":
                    raise item[1]
            for item in sorted((item for item in gathered if item is not None), key=lambda item: item[1].index):
                yield item[1], item[2]

    def run(self, writer, compute, write, label, dataset_class=None, unit=" transcripts"):
        """The chunk loop: ``write(writer, chunk, compute(chunk))`` for every chunk after the writer's completed
        rows, with a progress bar; returns the number of rows the output holds at the end. ``dataset_class``:
        see :meth:`chunks`; ``unit`` names the rows on the progress bar.

        ``writer`` is None on ranks other than 0 (they compute, rank 0 writes); its life cycle (finish, keep
        for ``--resume``, remove) belongs to the caller.
        """
        start_row = distributed.broadcast_from_main(self.group, writer.completed_rows if writer else 0)
        if start_row:
            log.info("resuming after the %d rows already written", start_row)
        rows = start_row
        with progress(desc=label, unit=unit, initial=start_row) as bar:
            for chunk, result in self.rounds(start_row, compute, dataset_class):
                if writer is not None:
                    write(writer, chunk, result)
                rows += len(chunk)
                bar.update(len(chunk))
        return rows
