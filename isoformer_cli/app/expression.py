"""``isoformer expression`` as a plain function: a sample sheet of quantifications aggregated into one matrix.

The sheet and its files are read by :mod:`isoformer_cli.genomics.sample_sheet` (formats recognised from
content by :mod:`isoformer_cli.genomics.quantifications`); the matrix of mean TPM per transcript and
condition is written, with the samples and their checksums in its provenance, by
:mod:`isoformer_cli.formats.expression_matrix`, atomically. ``--expression`` of ``finetune`` and ``evaluate``
reads it back to the same table the sheet gives.

Nothing on this path imports torch.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

from isoformer_cli.formats.atomic import STDOUT, check_writable
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.expression_matrix import UNITS, write_expression_matrix
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.provenance import build_provenance, sha256_file
from isoformer_cli.genomics.sample_sheet import SheetExpression, read_sample_sheet, read_sheet_expression

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpressionConfig:
    """Options of ``isoformer expression``.

    Attributes:
        sheet: the sample sheet (TSV or CSV: sample, path, tissue/condition).
        output: the matrix path (``.gz`` compresses), ``-`` for standard output.
        condition_column: the sheet's condition column (default ``tissue``, else ``condition``).
        command_args: the command line after the program name, for the provenance.
    """

    sheet: str
    output: str = STDOUT
    condition_column: Optional[str] = None
    command_args: Tuple[str, ...] = ()


def run_expression(config: ExpressionConfig) -> SheetExpression:
    """Read every sample of the sheet, aggregate per condition and write the matrix; returns the aggregate."""
    samples = read_sample_sheet(config.sheet, config.condition_column)
    inputs = [("SHEET", config.sheet)] + [(f"sample {entry.sample}", entry.path) for entry in samples]
    refuse_shared_files(inputs, {"-o/--output": config.output})
    check_writable(config.output)
    with lock_outputs(config.output):
        sheet = read_sheet_expression(config.sheet, condition_column=config.condition_column)
        for note in sheet.notes:
            (log.warning if note.startswith("WARNING: ") else log.info)("%s", note.removeprefix("WARNING: "))
        provenance = build_provenance(config.command_args, None, {"sample_sheet": config.sheet}, units=UNITS)
        provenance["samples"] = [
            {"sample": entry.sample, "condition": entry.condition, "format": sheet.formats[entry.sample],
             "path": entry.written_path, "sha256": sha256_file(entry.path)}
            for entry in sheet.samples
        ]
        per_condition = {condition: sum(entry.condition == condition for entry in sheet.samples)
                         for condition in sheet.conditions}
        write_expression_matrix(config.output, sheet.ids, sheet.conditions, sheet.mean_tpm, provenance, per_condition)
    if config.output != STDOUT:
        log.info("wrote %s: %d transcripts x %d conditions", config.output, len(sheet.ids), len(sheet.conditions))
    return sheet
