"""One contig-name alias layer for genome FASTA, annotation and (later) VCF.

    aliases = ContigAliases(genome.contigs, alias_file=None)
    aliases.resolve("1")        # -> "chr1" when the FASTA says chr1; None when nothing matches
    mapping = check_contigs({"chr1": 120, "chrUn": 3}, aliases, annotation_label="a.gtf")
    matcher = ContigMatcher(aliases, annotation_label="a.gtf")   # streaming variant:
    matcher.resolve(t.chrom) for each transcript; matcher.finish() at the end
    is_mitochondrial("MT")      # True

Resolution order for a name: the name itself when the FASTA has it; then the user alias file;
then the built-in rules: ``chr`` prefix added or removed (chr1<->1, chrX<->X, chr2_KI270..<->...),
and the mitochondrion under any of chrM, chrMT, M, MT.

Alias file (``--contig-alias FILE``), the layout of UCSC ``chromAlias.txt`` files: one line per
sequence, holding the tab-separated names that sequence goes by (any number of columns, empty
cells allowed), for example::

    # ucsc	assembly	genbank	refseq
    chr1	1	CM000663.2	NC_000001.11
    chrM	MT	J01415.2	NC_012920.1

Lines starting with ``#`` and blank lines are skipped. A name found on a line resolves to
whichever name of that line the FASTA has. A name may appear on one line only.
"""

import logging
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from isoformer_cli.errors import ContigError, InputError

log = logging.getLogger(__name__)

_MITO_NAMES = ("chrM", "chrMT", "M", "MT")
_MITO_LOWER = frozenset(name.lower() for name in _MITO_NAMES)


def is_mitochondrial(name) -> bool:
    """True for chrM, chrMT, M, MT (any case) — contigs translated with the mitochondrial code."""
    return name.lower() in _MITO_LOWER


def builtin_alternatives(name) -> List[str]:
    """Other spellings of ``name`` under the built-in rules, most likely first."""
    if is_mitochondrial(name):
        return [other for other in _MITO_NAMES if other != name]
    if name.startswith("chr") and len(name) > 3:
        return [name[3:]]
    return ["chr" + name]


def read_alias_file(path) -> List[Tuple[str, ...]]:
    """The name groups of an alias file (see the module docstring); InputError naming file and
    line for a line with fewer than two names or a name already given on another line."""
    groups: List[Tuple[str, ...]] = []
    seen: Dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            for lineno, line in enumerate(handle, 1):
                text = line.rstrip("\r\n")
                if not text.strip() or text.lstrip().startswith("#"):
                    continue
                names = tuple(dict.fromkeys(cell.strip() for cell in text.split("\t") if cell.strip()))
                if len(names) < 2:
                    hint = " (spaces instead of tabs?)" if len(text.split()) >= 2 else ""
                    raise InputError(
                        f"{path}:{lineno}: an alias line needs at least two tab-separated names of the same "
                        f"sequence, found {len(names)}{hint}"
                    )
                for name in names:
                    if name in seen:
                        raise InputError(
                            f"{path}:{lineno}: contig name {name!r} is already on line {seen[name]}; "
                            "each name may belong to one sequence only"
                        )
                    seen[name] = lineno
                groups.append(names)
    except FileNotFoundError:
        raise InputError(f"{path}: contig alias file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a contig alias file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied reading the contig alias file") from None
    if not groups:
        raise InputError(f"{path}: the contig alias file holds no alias lines")
    return groups


class ContigAliases:
    """Resolves contig names of another input to the names of the target (the genome FASTA).

    Args:
        target_contigs: the names to resolve to (e.g. ``Genome.contigs``).
        alias_file: optional alias file path (see the module docstring).
        target_label: how the target is named in messages.
    """

    def __init__(self, target_contigs: Iterable[str], alias_file=None, target_label="genome FASTA"):
        self.target_contigs: Tuple[str, ...] = tuple(target_contigs)
        self.target_label = target_label
        self._targets = frozenset(self.target_contigs)
        self._user: Dict[str, str] = {}
        self.alias_file = alias_file
        if alias_file is not None:
            for names in read_alias_file(alias_file):
                present = [name for name in names if name in self._targets]
                if present:
                    for name in names:
                        self._user[name] = present[0]
        self._cache: Dict[str, Optional[str]] = {}

    def resolve(self, name) -> Optional[str]:
        """The target contig that ``name`` stands for, or None."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        resolved = self._resolve(name)
        self._cache[name] = resolved
        return resolved

    def _resolve(self, name):
        if name in self._targets:
            return name
        if name in self._user:
            return self._user[name]
        for other in builtin_alternatives(name):
            if other in self._targets:
                return other
            if other in self._user:
                return self._user[other]
        return None

    def same(self, first, second) -> bool:
        """True when two names (of any input) stand for the same contig: equal, or both resolve
        to the same target, or built-in alternatives of each other."""
        if first == second:
            return True
        resolved = self.resolve(first)
        if resolved is not None and resolved == self.resolve(second):
            return True
        return second in builtin_alternatives(first)


def check_contigs(contig_counts: Mapping[str, int], aliases: ContigAliases, *,
                  annotation_label="annotation", genome_label=None,
                  what="transcripts") -> Dict[str, Optional[str]]:
    """Resolve every annotation contig against the genome.

    Logs ONE warning listing the annotation contigs missing from the genome with their counts
    (``contig_counts``: annotation contig -> number of ``what``), and raises ContigError naming
    a few names of each side when none match. Returns annotation contig -> genome contig
    (None when missing).
    """
    genome_label = genome_label or aliases.target_label
    mapping = {contig: aliases.resolve(contig) for contig in contig_counts}
    missing = [(contig, contig_counts[contig]) for contig, target in mapping.items() if target is None]
    if contig_counts and len(missing) == len(mapping):
        raise ContigError(
            f"no contig of {annotation_label} ({_few(list(contig_counts))}) is in {genome_label} "
            f"({_few(aliases.target_contigs)}), even through the chr1<->1 / chrM<->MT rules; "
            "check that both are from the same assembly or give --contig-alias FILE"
        )
    if missing:
        missing.sort(key=lambda item: -item[1])
        total = sum(count for _, count in missing)
        listed = ", ".join(f"{contig} ({count})" for contig, count in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        log.warning(
            "%d contigs of %s are not in %s; their %d %s are skipped: %s%s",
            len(missing), annotation_label, genome_label, total, what, listed, more,
        )
    return mapping


def _few(names: Sequence[str], limit=5) -> str:
    names = list(names)
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f", ... ({len(names)} in all)"
    return text or "none"


class ContigMatcher:
    """Streaming form of :func:`check_contigs` for a single pass over an annotation.

    Call :meth:`resolve` for each transcript (it counts them per annotation contig) and
    :meth:`finish` once at the end: it logs the warning listing the contigs missing from the
    genome and raises ContigError when none matched. Nothing is extracted for a missing contig,
    so failing at the end costs only the parse, and atomic outputs leave no partial file.
    """

    def __init__(self, aliases: ContigAliases, *, annotation_label="annotation", what="transcripts"):
        self.aliases = aliases
        self.annotation_label = annotation_label
        self.what = what
        self.counts: Dict[str, int] = {}

    def resolve(self, contig) -> Optional[str]:
        """Genome contig for an annotation contig (None when missing); counts one record."""
        self.counts[contig] = self.counts.get(contig, 0) + 1
        return self.aliases.resolve(contig)

    def finish(self) -> Dict[str, Optional[str]]:
        """Report as :func:`check_contigs` does; returns annotation contig -> genome contig."""
        return check_contigs(self.counts, self.aliases, annotation_label=self.annotation_label, what=self.what)
