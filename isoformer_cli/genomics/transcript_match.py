"""Which expression-table row each transcript is: exact ids, then ids without version suffixes.

Used by ``finetune`` (training examples) and ``evaluate`` (predictions against observed values) alike,
over any table :func:`isoformer_cli.genomics.expression.read_expression` returns. Never imports torch.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.expression import ExpressionTable
from isoformer_cli.genomics.id_kinds import describe_id_kind
from isoformer_cli.genomics.selection import strip_version


@dataclass
class TranscriptMatch:
    """Which expression row (if any) each transcript corresponds to.

    Attributes:
        rows: int64 (n_transcripts,) row of the expression table, -1 where none matched.
        matched: number of transcripts with a row.
        by_version: how many of them matched only after dropping version suffixes.
        unmatched_transcripts: ids of transcripts without a row (in input order).
        unmatched_rows: number of expression rows that no transcript matched (skipped rows included).
    """

    rows: np.ndarray
    matched: int
    by_version: int
    unmatched_transcripts: List[str]
    unmatched_rows: int

    def describe(self, transcripts_label="transcripts", table_label="expression rows"):
        """One line for the log: counts and a few unmatched ids."""
        text = f"{self.matched:,} of {len(self.rows):,} {transcripts_label} matched the expression table"
        if self.by_version:
            text += f" ({self.by_version:,} after dropping version suffixes)"
        if self.unmatched_transcripts:
            text += (f"; {len(self.unmatched_transcripts):,} without expression "
                     f"(e.g. {', '.join(self.unmatched_transcripts[:3])}) are left out")
        if self.unmatched_rows:
            text += f"; {self.unmatched_rows:,} {table_label} matched no transcript"
        return text


def match_transcripts(transcript_ids: Sequence[str], table: ExpressionTable) -> TranscriptMatch:
    """Match ``transcript_ids`` (annotation or prediction ids) to the rows of ``table``.

    Exact ids first; then ids without a numeric ``.N`` version on both sides, used only when the
    unversioned id belongs to exactly one expression row and one transcript (``MSTRG.1.1`` and
    ``MSTRG.1.2`` both strip to ``MSTRG.1``, which is then not used). A transcript id given twice is an
    InputError (the caller's table would be ambiguous).
    """
    exact = {identifier: row for row, identifier in enumerate(table.ids)}
    by_base: Dict[str, List[int]] = {}
    for row, identifier in enumerate(table.ids):
        by_base.setdefault(strip_version(identifier), []).append(row)
    query_bases: Dict[str, int] = {}
    seen = set()
    for identifier in transcript_ids:
        if identifier in seen:
            raise InputError(f"transcript {identifier} appears twice among the transcripts to match; ids must be "
                             "unique")
        seen.add(identifier)
        base = strip_version(identifier)
        query_bases[base] = query_bases.get(base, 0) + 1
    rows = np.full(len(transcript_ids), -1, dtype=np.int64)
    by_version, unmatched = 0, []
    used = set()
    for position, identifier in enumerate(transcript_ids):
        row = exact.get(identifier)
        if row is None:
            base = strip_version(identifier)
            candidates = by_base.get(base, [])
            if len(candidates) == 1 and query_bases[base] == 1 and table.ids[candidates[0]] not in seen:
                row = candidates[0]
                by_version += 1
        if row is None or row in used:
            unmatched.append(identifier)
            continue
        used.add(row)
        rows[position] = row
    matched = len(used)
    return TranscriptMatch(rows=rows, matched=matched, by_version=by_version, unmatched_transcripts=unmatched,
                           unmatched_rows=len(table.ids) - matched + table.skipped_rows)


def require_overlap(match: TranscriptMatch, table: ExpressionTable, transcript_ids, transcripts_label):
    """InputError when no transcript matched, naming examples from both sides."""
    if match.matched:
        return
    ours = list(transcript_ids)
    theirs = table.ids + table.skipped_examples
    rows = len(table.ids) + table.skipped_rows
    raise InputError(
        f"no transcript of {transcripts_label} is in the expression table {table.source} ({rows:,} rows; e.g. "
        f"{', '.join(ours[:3]) or 'none'} vs {', '.join(theirs[:3]) or 'none'}: "
        f"{describe_id_kind(ours, example=False)} vs {describe_id_kind(theirs, example=False)}); "
        "the ids must be the same kind (Ensembl ENST..., RefSeq NM_..., or your assembler's), with or without "
        "version suffixes"
    )
