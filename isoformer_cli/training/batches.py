"""Training examples of ``isoformer finetune``: lazily fetched, tokenised micro-batches, and the batch plan.

Memory: a run holds its triples (coordinates, RNA and protein strings) and the target matrix, never the DNA
windows: each micro-batch fetches its windows from the indexed genome when it is prepared (in DataLoader
workers with ``--num-workers``), so a 196,608-bp window exists only while its batch is in flight.

Batch plan (what makes runs reproducible across process counts and interruptions): epoch ``e`` visits the
training rows in the order of a permutation drawn from ``derive_seed(seed, "order", e)``; optimiser step ``s``
of the epoch takes the ``batch_size`` rows at positions ``[s * batch_size, (s + 1) * batch_size)`` (the
remainder of the epoch, fewer than ``batch_size`` rows, is left out: a different remainder each epoch). With
``world_size`` processes, process ``r`` takes the r-th equal slice of those rows, cut into micro-batches of
``micro_batch_size``. Micro-batch ``k`` of the step (counted across processes) draws its dropout masks after
``torch.manual_seed(derive_seed(seed, "dropout", step, k))``, so one process and N processes, or a run and
its resumed continuation, see the same batches with the same masks.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from isoformer_cli.errors import InputError, IsoformerError
from isoformer_cli.inference.prepare import prepare_chunk
from isoformer_cli.runtime.determinism import derive_seed




@dataclass
class TrainingBatch:
    """Model inputs and targets of one micro-batch (B rows).

    Attributes:
        rows: (B,) indices into the run's examples.
        inputs: keyword arguments of ``IsoformerModel.forward``: dna_input_ids (B, L_dna) long (plus
            dna_attention_mask for the NT DNA encoder), rna_input_ids / rna_attention_mask (B, L_rna),
            has_rna (B,), protein_input_ids / protein_attention_mask (B, L_prot), has_protein (B,); a row
            without RNA (protein) holds a placeholder (``<cls>``; ``<cls><eos>``) and has_rna (has_protein)
            False.
        labels: (B, T) float32 targets, T = the expression table's tissues.
        error: a typed error raised while preparing (in a worker); the batch is otherwise empty.
    """

    rows: np.ndarray
    inputs: dict = field(default_factory=dict)
    labels: Optional[torch.Tensor] = None
    error: Optional[IsoformerError] = None

    def to(self, device):
        """The inputs and labels moved to ``device`` (returns self)."""
        self.inputs = {key: value.to(device) for key, value in self.inputs.items()}
        self.labels = self.labels.to(device)
        return self


class MicroBatches(Dataset):
    """Map-style dataset whose items are micro-batches: ``dataset[list of row indices]`` -> TrainingBatch.

    Args:
        triples: the run's :class:`~isoformer_cli.genomics.records.Triple` objects (no DNA held).
        targets: (n, T) float32.
        genome: the genome the windows come from (anything with the
            :class:`~isoformer_cli.genomics.genome.Genome` interface that pickles; each DataLoader worker
            uses its own copy).
        settings: :class:`~isoformer_cli.inference.prepare.TokenizerSettings` of the model.
        model_config: the model's `IsoformerConfig` (its encoders collate the batches).
    """

    def __init__(self, triples, targets, genome, settings, model_config):
        self.triples = triples
        self.targets = np.asarray(targets, dtype=np.float32)
        self.genome = genome
        self.settings = settings
        self.model_config = model_config

    def __len__(self):
        return len(self.triples)

    def __getitem__(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        try:
            chunk = prepare_chunk(0, [self.triples[row] for row in rows], self.genome, self.settings,
                                  dedupe=False)
        except IsoformerError as error:
            # Passed back as a value: DataLoader would wrap it in a multi-line worker traceback.
            return TrainingBatch(rows=rows, error=error)
        return TrainingBatch(rows=rows, inputs=self._inputs(chunk), labels=torch.from_numpy(self.targets[rows]))

    def _inputs(self, chunk):
        config = self.model_config
        inputs = {}
        if config.has_dna:
            ids, mask = config.encoder("dna").collate(chunk.dna_tokens, config)
            inputs["dna_input_ids"] = ids
            if mask is not None:
                inputs["dna_attention_mask"] = mask
        for name, of_row, tokens, tokenizer in (
            ("rna", chunk.rna_of_row, chunk.rna_tokens, self.settings.rna),
            ("protein", chunk.protein_of_row, chunk.protein_tokens, self.settings.protein),
        ):
            if name not in config.modalities:
                continue
            # The tokens of an empty sequence: only the special tokens (<cls>; <cls><eos>).
            placeholder, _ = tokenizer.encode("", "placeholder")
            # Rows without the modality get a placeholder sequence, flagged absent by has_<name>: the model
            # ignores it, but every encoder runs in every step, so every trainable parameter takes part in
            # every backward pass (what DistributedDataParallel expects without find_unused_parameters).
            present = of_row >= 0
            ids, mask = config.encoder(name).collate([tokens[i] if i >= 0 else placeholder for i in of_row], config)
            inputs[f"has_{name}"] = torch.from_numpy(present)
            inputs[f"{name}_input_ids"] = ids
            inputs[f"{name}_attention_mask"] = mask
        return inputs


def check_batch_division(batch_size, micro_batch_size, world_size):
    """InputError when ``batch_size`` rows per step cannot be shared out evenly among ``world_size`` processes
    and then into micro-batches of ``micro_batch_size`` rows."""
    per_process, remainder = divmod(batch_size, world_size)
    if remainder or per_process == 0:
        raise InputError(f"--batch-size {batch_size} must be a multiple of the number of processes ({world_size})")
    if per_process % micro_batch_size:
        raise InputError(f"--batch-size {batch_size} over {world_size} process(es) gives {per_process} rows each, "
                         f"not a multiple of --micro-batch-size {micro_batch_size}")


@dataclass(frozen=True)
class BatchPlan:
    """Which rows each process trains on, step by step (see the module docstring).

    Attributes:
        train_rows: indices of the training examples.
        batch_size: rows per optimiser step, across processes.
        micro_batch_size: rows per forward/backward pass of one process.
        world_size: number of processes.
        seed: the run seed.
    """

    train_rows: tuple
    batch_size: int
    micro_batch_size: int
    world_size: int
    seed: int

    def __post_init__(self):
        check_batch_division(self.batch_size, self.micro_batch_size, self.world_size)
        if len(self.train_rows) < self.batch_size:
            raise InputError(f"the training split has {len(self.train_rows)} transcripts, fewer than --batch-size "
                             f"{self.batch_size}; lower --batch-size or give more transcripts")

    @property
    def steps_per_epoch(self):
        return len(self.train_rows) // self.batch_size

    @property
    def accumulation(self):
        """Micro-batches per process per step."""
        return self.batch_size // self.world_size // self.micro_batch_size

    def epoch_order(self, epoch):
        """The training rows in epoch ``epoch``'s order (int64 array)."""
        generator = np.random.Generator(np.random.PCG64(derive_seed(self.seed, "order", epoch)))
        return np.asarray(self.train_rows, dtype=np.int64)[generator.permutation(len(self.train_rows))]

    def micro_batches(self, epoch, rank, first_step=0):
        """``[(step_in_epoch, micro_index, rows)]`` of process ``rank`` from ``first_step`` to the epoch's end.

        ``micro_index`` counts the step's micro-batches across processes (rank r's j-th is
        ``r * accumulation + j``), the number that seeds its dropout.
        """
        order = self.epoch_order(epoch)
        per_process = self.batch_size // self.world_size
        items = []
        for step in range(first_step, self.steps_per_epoch):
            start = step * self.batch_size + rank * per_process
            mine = order[start:start + per_process]
            for j in range(self.accumulation):
                rows = mine[j * self.micro_batch_size:(j + 1) * self.micro_batch_size]
                items.append((step, rank * self.accumulation + j, rows))
        return items
