"""Transcript selection shared by ``isoformer triples`` and ``isoformer predict``.

    selection = TranscriptSelection.from_options(
        transcripts="ENST0001,ENST0002",   # or "@ids.txt"
        genes=None,                        # gene ids or gene names, same syntax
        region="chr1:1,000-2,000",         # samtools style, 1-based inclusive
        biotypes=["protein_coding"],       # one or several (items may be comma-separated)
        coding_only=False,
    )
    for transcript in selection.filter(reader, aliases=aliases): ...
    selection.report_unmatched()           # error when no value of a kind is there, else a warning

Every filter given must hold (they combine with AND); no filter selects everything. Transcript ids,
genes or biotypes of which the annotation holds none are an error naming them (a typo, the wrong
annotation): every command that selects reports them through :meth:`TranscriptSelection.report_unmatched`.
A region without transcripts is not an error (a pipeline may scatter by region).

Identifiers match with or without a version suffix: ``ENST0001`` matches ``ENST0001.5`` and
``ENST0001.5`` matches an annotation that writes ``ENST0001`` (Ensembl GTF), but ``ENST0001.4``
does not match ``ENST0001.5``. NCBI GFF3 prefixes (``rna-``, ``gene-``) may be left out:
``NM_000014.6`` matches ``rna-NM_000014.6``. ``--genes`` matches gene ids and gene names.

Regions are 1-based inclusive like samtools (``chr1:1,000-2,000``, ``chr1:1000`` = from 1000 to the
contig end, ``chr1`` = the whole contig) and are stored 0-based half-open; a transcript is selected
when its span (first exon start to last exon end) overlaps the region. The region's contig is
compared through the contig alias layer (``1`` selects ``chr1``).

Parse errors raise InputError (no click here; the CLI maps them to usage errors).
"""

import logging
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Union

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.contigs import ContigAliases, builtin_alternatives
from isoformer_cli.genomics.records import Transcript

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^(.+)\.(\d+)$")
_ID_PREFIXES = ("rna-", "gene-", "transcript:", "gene:")
_SPAN = re.compile(r"^[0-9][0-9,]*(-[0-9][0-9,]*)?-?$")


@dataclass(frozen=True)
class Region:
    """A genomic region: ``contig`` as the user wrote it, ``start``/``end`` 0-based half-open
    (``end`` None = to the end of the contig)."""

    contig: str
    start: int
    end: Optional[int]

    def __str__(self):
        if self.end is None:
            return f"{self.contig}:{self.start + 1:,}" if self.start else self.contig
        return f"{self.contig}:{self.start + 1:,}-{self.end:,}"

    def overlaps(self, start, end) -> bool:
        """True when the 0-based half-open ``[start, end)`` shares at least one base."""
        return end > self.start and (self.end is None or start < self.end)


def parse_region(text) -> Region:
    """``chr:start-end`` / ``chr:start`` / ``chr`` (1-based inclusive, commas allowed) -> Region."""
    if text is None or not str(text).strip():
        raise InputError("--region: empty region; write it as CHROM:START-END, e.g. chr1:1,000,000-2,000,000")
    text = str(text).strip()
    contig, sep, span = text.rpartition(":")
    if not sep or not _SPAN.match(span):
        if sep and re.search(r"[0-9]", span) and "-" in span:
            raise InputError(
                f"--region {text!r}: START-END must be whole numbers, e.g. chr1:1,000,000-2,000,000"
            )
        return Region(text, 0, None)  # a whole contig (its name may contain ':')
    if not contig:
        raise InputError(f"--region {text!r}: the contig name is missing; write CHROM:START-END")
    begin_text, _, end_text = span.partition("-")
    begin = int(begin_text.replace(",", ""))
    if begin < 1:
        raise InputError(f"--region {text!r}: START must be at least 1 (regions are 1-based, like samtools)")
    if not end_text:
        return Region(contig, begin - 1, None)
    end = int(end_text.replace(",", ""))
    if end < begin:
        raise InputError(f"--region {text!r}: END {end:,} is before START {begin:,}")
    return Region(contig, begin - 1, end)


def parse_id_list(text, option="--transcripts") -> List[str]:
    """Ids from ``"A,B,C"`` or ``"@FILE"`` (one id per line: the first whitespace-separated word;
    blank lines and ``#`` lines skipped), de-duplicated in order; InputError when none."""
    if text is None:
        return []
    text = str(text).strip()
    if text.startswith("@"):
        path = text[1:]
        if not path:
            raise InputError(f"{option} @FILE: the file name is missing after '@'")
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                ids = [line.split()[0] for line in handle if line.strip() and not line.lstrip().startswith("#")]
        except FileNotFoundError:
            raise InputError(f"{option} @{path}: file not found") from None
        except IsADirectoryError:
            raise InputError(f"{option} @{path}: is a folder, not a file of ids") from None
        except PermissionError:
            raise InputError(f"{option} @{path}: permission denied") from None
        if not ids:
            raise InputError(f"{option} @{path}: the file holds no ids (one id per line expected)")
    else:
        ids = [item.strip() for item in text.split(",") if item.strip()]
        if not ids:
            raise InputError(f"{option}: no ids given; write ID1,ID2 or @FILE with one id per line")
    return list(dict.fromkeys(ids))


def parse_biotypes(values: Union[None, str, Sequence[str]]) -> List[str]:
    """Biotypes from one string or several (each may be comma-separated)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    biotypes = [item.strip() for value in values for item in str(value).split(",") if item.strip()]
    if not biotypes and values:
        raise InputError("--biotype: empty value; give a biotype such as protein_coding")
    return list(dict.fromkeys(biotypes))


def _few(values, limit=5) -> str:
    """``"A, B, C, D, E and 3 more"``: the first few of ``values``, for messages."""
    return ", ".join(values[:limit]) + (f" and {len(values) - limit} more" if len(values) > limit else "")


def strip_version(identifier) -> str:
    """``ENST0001.5`` -> ``ENST0001``; unchanged without a numeric ``.N`` suffix."""
    match = _VERSION.match(identifier)
    return match.group(1) if match else identifier


def _strip_prefixes(identifier) -> str:
    for prefix in _ID_PREFIXES:
        if identifier.startswith(prefix) and len(identifier) > len(prefix):
            return identifier[len(prefix):]
    return identifier


class _IdMatcher:
    """Which of the requested ids an annotation id stands for (version- and prefix-tolerant)."""

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        self.found: Set[str] = set()
        self._exact: Dict[str, List[str]] = {}
        self._unversioned_query: Dict[str, List[str]] = {}   # query without version -> queries
        self._by_base: Dict[str, List[str]] = {}             # base of a versioned query -> queries
        for query in self.ids:
            self._exact.setdefault(query, []).append(query)
            base = strip_version(query)
            if base == query:
                self._unversioned_query.setdefault(query, []).append(query)
            else:
                self._by_base.setdefault(base, []).append(query)

    def match(self, identifier) -> bool:
        if not identifier:
            return False
        hits = []
        bare = _strip_prefixes(identifier)
        for candidate in {identifier, bare}:
            hits += self._exact.get(candidate, ())
        base = strip_version(bare)
        if base != bare:
            hits += self._unversioned_query.get(base, ())
        else:
            hits += self._by_base.get(bare, ())
        if hits:
            self.found.update(hits)
            return True
        return False

    @property
    def missing(self) -> List[str]:
        return [query for query in self.ids if query not in self.found]


class TranscriptSelection:
    """The transcript filters of one run (all given filters must hold).

    Args:
        transcripts: transcript ids (list) or None.
        genes: gene ids or gene names (list) or None.
        region: a :class:`Region` or None.
        biotypes: biotypes (list, compared case-insensitively) or None.
        coding_only: keep only transcripts with an annotated CDS.
    """

    def __init__(self, transcripts=None, genes=None, region: Optional[Region] = None,
                 biotypes=None, coding_only=False):
        self._transcripts = _IdMatcher(transcripts) if transcripts else None
        self._genes = _IdMatcher(genes) if genes else None
        self._gene_names = {name.lower(): name for name in genes} if genes else {}
        self.region = region
        self.biotypes = list(biotypes) if biotypes else []
        self._biotypes = {b.lower() for b in self.biotypes}
        self._biotypes_seen: Dict[str, int] = {}
        self._biotypes_found: Set[str] = set()
        self.coding_only = bool(coding_only)

    @classmethod
    def from_options(cls, transcripts: Optional[str] = None, genes: Optional[str] = None,
                     region: Optional[str] = None, biotypes=None, coding_only=False) -> "TranscriptSelection":
        """Build from the raw option strings of the CLI (InputError on a bad value)."""
        return cls(
            transcripts=parse_id_list(transcripts, "--transcripts") if transcripts is not None else None,
            genes=parse_id_list(genes, "--genes") if genes is not None else None,
            region=parse_region(region) if region is not None else None,
            biotypes=parse_biotypes(biotypes) or None,
            coding_only=coding_only,
        )

    @property
    def selects_all(self) -> bool:
        """True when no filter is set."""
        return not (self._transcripts or self._genes or self.region or self._biotypes or self.coding_only)

    def check_region(self, aliases: ContigAliases):
        """InputError when the region's contig is not in the genome, even through aliases."""
        if self.region is not None and aliases.resolve(self.region.contig) is None:
            raise InputError(
                f"--region {self.region}: contig {self.region.contig!r} is not in the {aliases.target_label} "
                f"(it has {', '.join(aliases.target_contigs[:5])}{', ...' if len(aliases.target_contigs) > 5 else ''})"
            )

    def matches(self, transcript: Transcript, aliases: Optional[ContigAliases] = None) -> bool:
        """True when ``transcript`` passes every filter. Also records which requested ids and
        biotypes the annotation holds, for :meth:`report_unmatched`."""
        keep = True
        if self._transcripts is not None and not self._transcripts.match(transcript.transcript_id):
            keep = False
        if self._genes is not None:
            gene_hit = self._genes.match(transcript.gene_id)
            name = self._gene_names.get(transcript.gene_name.lower()) if transcript.gene_name else None
            if name is not None:
                self._genes.found.add(name)
                gene_hit = True
            keep = keep and gene_hit
        if self._biotypes:
            biotype = transcript.biotype
            self._biotypes_seen[biotype] = self._biotypes_seen.get(biotype, 0) + 1
            if biotype.lower() in self._biotypes:
                self._biotypes_found.add(biotype.lower())
            else:
                keep = False
        if not keep:
            return False
        if self.coding_only and not transcript.cds:
            return False
        if self.region is not None:
            if not self._same_contig(self.region.contig, transcript.chrom, aliases):
                return False
            if not self.region.overlaps(transcript.start, transcript.end):
                return False
        return True

    @staticmethod
    def _same_contig(region_contig, chrom, aliases):
        if region_contig == chrom:
            return True
        if aliases is not None:
            return aliases.same(region_contig, chrom)
        return chrom in builtin_alternatives(region_contig)

    def filter(self, transcripts: Iterable[Transcript], aliases: Optional[ContigAliases] = None
               ) -> Iterator[Transcript]:
        """The transcripts that pass (lazy; the input order is kept)."""
        if self.selects_all:
            yield from transcripts
            return
        for transcript in transcripts:
            if self.matches(transcript, aliases):
                yield transcript

    def unmatched(self) -> Dict[str, List[str]]:
        """Requested values the annotation does not hold: ``{"transcripts": [...], "genes": [...],
        "biotypes": [...]}`` (only kinds that were requested)."""
        missing = {}
        if self._transcripts is not None:
            missing["transcripts"] = self._transcripts.missing
        if self._genes is not None:
            missing["genes"] = self._genes.missing
        if self._biotypes:
            missing["biotypes"] = [b for b in self.biotypes if b.lower() not in self._biotypes_found]
        return missing

    def report_unmatched(self, annotation_label="the annotation") -> Dict[str, List[str]]:
        """Check the requested values against what went through the filter; returns :meth:`unmatched`.
        Call after the whole annotation went through the filter.

        A kind of request (transcript ids, genes, biotypes) none of whose values the annotation holds selects
        nothing by mistake, not by design: InputError naming them (one line for every such kind). A kind with
        only some values absent logs one warning with their count and the first few.
        """
        missing = self.unmatched()
        errors = []
        for kind, values in missing.items():
            if not values:
                continue
            asked = {"transcripts": self._transcripts, "genes": self._genes}.get(kind)
            total = len(asked.ids) if asked is not None else len(self.biotypes)
            shown = _few(values)
            if len(values) == total:
                errors.append(self._nothing_matched(kind, total, shown, annotation_label))
                continue
            extra = self._biotypes_present() if kind == "biotypes" else ""
            noun = {"transcripts": "transcript ids", "genes": "genes", "biotypes": "biotypes"}[kind]
            log.warning("%d of %d requested %s not found in %s: %s%s",
                        len(values), total, noun, annotation_label, shown, extra)
        if errors:
            raise InputError("; ".join(errors))
        return missing

    def _nothing_matched(self, kind, total, shown, annotation_label):
        if kind == "biotypes":
            return (f"--biotype: none of the {total} requested biotypes is in {annotation_label}: {shown}"
                    f"{self._biotypes_present()}")
        option, noun, fix = {
            "transcripts": ("--transcripts", "transcript ids", "transcript ids"),
            "genes": ("--genes", "genes", "gene ids or gene names"),
        }[kind]
        return (f"{option}: none of the {total} requested {noun} is in {annotation_label}: {shown}; check the "
                f"ids ({fix}; a version suffix and rna-/gene- prefixes may be left out)")

    def _biotypes_present(self):
        if not self._biotypes_seen:
            return ""
        common = sorted(self._biotypes_seen, key=lambda b: -self._biotypes_seen[b])[:8]
        return f" (biotypes present: {', '.join(b or '(none)' for b in common)})"

    def describe(self) -> str:
        """Short text of the active filters, for logs (``"all transcripts"`` when none)."""
        parts = []
        if self._transcripts is not None:
            parts.append(f"{len(self._transcripts.ids)} transcript ids")
        if self._genes is not None:
            parts.append(f"{len(self._genes.ids)} genes")
        if self.region is not None:
            parts.append(f"region {self.region}")
        if self.biotypes:
            parts.append("biotype " + "/".join(self.biotypes))
        if self.coding_only:
            parts.append("coding only")
        return ", ".join(parts) if parts else "all transcripts"
