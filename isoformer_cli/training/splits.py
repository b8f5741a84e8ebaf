"""Train / validation / test split of the transcripts of a fine-tuning run, and its file.

Two ways, both deterministic and independent of the order of the input:

* **by gene** (default): every gene is hashed, ``sha256("<seed>:<gene id>")``, to a number u in [0, 1);
  ``u < test_fraction`` -> test, ``u < test_fraction + val_fraction`` -> validation, else train. All isoforms
  of a gene share its gene id, so they always land in the same split (the paper's gene-level split); a
  transcript without a gene id is its own gene. Adding or removing other genes never moves a gene.
* **by chromosome** (``val_chroms`` / ``test_chroms``): transcripts on the named contigs go to validation /
  test, everything else to train. Contig names compare through the built-in alias rules (``chr1`` = ``1``,
  ``chrM`` = ``MT``), against both the annotation's and the genome's spelling.

The split is written to the run folder as ``split.tsv``: a header ``transcript_id gene_id chrom split``,
then one row per transcript, in input order.
"""

import hashlib
from dataclasses import dataclass
from typing import List, Sequence

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.contigs import builtin_alternatives
from isoformer_cli.formats.atomic import atomic_text_output

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("transcript_id", "gene_id", "chrom", "split")


@dataclass(frozen=True)
class SplitSpec:
    """How to split (plain values, recorded in the run configuration).

    Attributes:
        val_fraction, test_fraction: fractions of genes (gene split).
        val_chroms, test_chroms: contig names (chromosome split; either given switches to it).
        seed: mixed into the gene hash, so another seed gives another gene split.
    """

    val_fraction: float = 0.05
    test_fraction: float = 0.05
    val_chroms: tuple = ()
    test_chroms: tuple = ()
    seed: int = 0

    @property
    def by_chromosome(self):
        return bool(self.val_chroms or self.test_chroms)

    def check(self):
        """InputError for fractions outside [0, 1), a sum of 1 or more, or a contig named twice."""
        if self.by_chromosome:
            both = set(self.val_chroms) & set(self.test_chroms)
            if both:
                raise InputError(f"contig {sorted(both)[0]} is in both --val-chroms and --test-chroms")
            return
        for name, value in (("--val-fraction", self.val_fraction), ("--test-fraction", self.test_fraction)):
            if not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be at least 0 and below 1, not {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise InputError("--val-fraction plus --test-fraction must be below 1 (nothing would be left to train on)")


@dataclass(frozen=True)
class SplitMember:
    """The identity of one transcript for splitting: its id, gene id and contig names."""

    transcript_id: str
    gene_id: str
    chrom: str
    genome_chrom: str = ""


def gene_fraction(gene_id, seed):
    """The gene's deterministic position u in [0, 1) (first 8 bytes of ``sha256("<seed>:<gene>")``)."""
    digest = hashlib.sha256(f"{seed}:{gene_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _contig_keys(name):
    """A contig name and its built-in alternative spellings (chr1 <-> 1, the mitochondrion)."""
    return {name, *builtin_alternatives(name)}


def assign_splits(members: Sequence[SplitMember], spec: SplitSpec) -> List[str]:
    """``"train"`` / ``"val"`` / ``"test"`` for every member, in order (see the module docstring).

    Raises InputError when a named contig holds no transcript (a typo would otherwise silently give an
    empty split).
    """
    spec.check()
    if spec.by_chromosome:
        return _chromosome_split(members, spec)
    splits = []
    for member in members:
        position = gene_fraction(member.gene_id or member.transcript_id, spec.seed)
        if position < spec.test_fraction:
            splits.append("test")
        elif position < spec.test_fraction + spec.val_fraction:
            splits.append("val")
        else:
            splits.append("train")
    return splits


def _chromosome_split(members, spec):
    present = set()
    for member in members:
        present |= _contig_keys(member.chrom) | (_contig_keys(member.genome_chrom) if member.genome_chrom else set())
    for option, names in (("--val-chroms", spec.val_chroms), ("--test-chroms", spec.test_chroms)):
        for name in names:
            if not _contig_keys(name) & present:
                known = sorted({member.chrom for member in members})
                raise InputError(
                    f"{option} {name}: no selected transcript lies on this contig (contigs with transcripts: "
                    f"{', '.join(known[:10])}{' ...' if len(known) > 10 else ''})"
                )
    val_keys = set().union(*(_contig_keys(name) for name in spec.val_chroms)) if spec.val_chroms else set()
    test_keys = set().union(*(_contig_keys(name) for name in spec.test_chroms)) if spec.test_chroms else set()
    splits = []
    for member in members:
        names = {member.chrom, member.genome_chrom} - {""}
        if names & test_keys:
            splits.append("test")
        elif names & val_keys:
            splits.append("val")
        else:
            splits.append("train")
    return splits


def write_split(path, members: Sequence[SplitMember], splits: Sequence[str]):
    """Write ``split.tsv`` atomically (layout in the module docstring)."""
    with atomic_text_output(path) as stream:
        stream.write("\t".join(SPLIT_COLUMNS) + "\n")
        for member, split in zip(members, splits):
            stream.write(f"{member.transcript_id}\t{member.gene_id}\t{member.chrom}\t{split}\n")


def read_split(path) -> List[tuple]:
    """``[(transcript_id, split), ...]`` from a ``split.tsv``; InputError naming the line when malformed."""
    rows = []
    try:
        with open(path, encoding="utf-8") as stream:
            header = stream.readline().rstrip("\n").split("\t")
            if tuple(header) != SPLIT_COLUMNS:
                raise InputError(f"{path}:1: not a split file (expected the header {' '.join(SPLIT_COLUMNS)})")
            for number, line in enumerate(stream, 2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) != len(SPLIT_COLUMNS) or fields[3] not in SPLITS:
                    raise InputError(f"{path}:{number}: expected {len(SPLIT_COLUMNS)} fields ending in one of "
                                     f"{', '.join(SPLITS)}")
                rows.append((fields[0], fields[3]))
    except FileNotFoundError:
        raise InputError(f"{path}: split file not found") from None
    return rows


def split_counts(splits: Sequence[str]):
    """``{"train": n, "val": n, "test": n}`` transcripts per split."""
    return {name: sum(1 for split in splits if split == name) for name in SPLITS}
