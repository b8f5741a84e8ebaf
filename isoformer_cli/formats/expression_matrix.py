"""The expression matrix written by ``isoformer expression``: a sample sheet aggregated once, for reuse.

Layout (UTF-8, ``\\n``, gzip when the name ends in ``.gz``)::

    # isoformer expression matrix, format 1
    # values: mean TPM over each condition's samples; --expression reads them as log(mean TPM + 1)
    # samples per condition: Liver 2, Brain 1
    # provenance: {"format_version": 1, ..., "inputs": {"sample_sheet": "sha256:..."},
    #              "samples": [{"sample": "liver_1", "condition": "Liver", "format": "salmon quant.sf",
    #                           "path": "salmon/liver_1/quant.sf", "sha256": "sha256:..."}, ...], "units": "TPM"}
    transcript_id  Liver  Brain
    ENST00000456328.2  12.5  0

It is the matrix layout :mod:`isoformer_cli.genomics.expression` reads (``#`` lines before the header are
comments, every column after the id is a condition, values are TPM), so ``--expression matrix.tsv`` gives
exactly the table the sheet gives: each mean is printed with Python's shortest round-trip representation
(``repr``), so the float64 read back is the one computed. ``path`` is as written in the sheet (relative to it).
"""

from typing import Dict, List, Sequence

import numpy as np

from isoformer_cli.formats.atomic import atomic_text_output
from isoformer_cli.formats.provenance import FORMAT_VERSION
from isoformer_cli.formats.streaming import canonical_json

TITLE = "isoformer expression matrix"
ID_COLUMN = "transcript_id"
UNITS = "TPM"
GZIP_LEVEL = 6  # as the prediction tables: large tables write far faster than at 9


def write_expression_matrix(target: str, ids: Sequence[str], conditions: Sequence[str], mean_tpm: np.ndarray,
                            provenance: Dict, samples_per_condition: Dict[str, int]) -> None:
    """Write the matrix (layout in the module docstring) atomically to ``target`` (``-``: standard output).

    Args:
        ids: transcript ids (n,).
        conditions: column names (C,).
        mean_tpm: float64 (n, C) mean TPM.
        provenance: the run's provenance, with its ``samples`` list.
        samples_per_condition: condition -> number of samples (for the comment line).
    """
    values = np.asarray(mean_tpm, dtype=np.float64)
    if values.shape != (len(ids), len(conditions)):
        raise ValueError(f"values have shape {values.shape}; expected ({len(ids)}, {len(conditions)})")
    counts = ", ".join(f"{condition} {samples_per_condition[condition]}" for condition in conditions)
    header: List[str] = [
        f"# {TITLE}, format {FORMAT_VERSION}",
        "# values: mean TPM over each condition's samples (a transcript absent from a sample's file is 0 there); "
        "--expression reads them as log(mean TPM + 1)",
        f"# samples per condition: {counts}",
        f"# provenance: {canonical_json(provenance)}",
        "\t".join([ID_COLUMN, *conditions]),
    ]
    with atomic_text_output(target, compresslevel=GZIP_LEVEL) as stream:
        stream.write("\n".join(header) + "\n")
        for identifier, row in zip(ids, values.tolist()):
            stream.write(identifier + "\t" + "\t".join(_cell(value) for value in row) + "\n")


def _cell(value: float) -> str:
    # Shortest text that reads back as the same float64; whole numbers without ".0".
    return "0" if value == 0 else repr(value)
