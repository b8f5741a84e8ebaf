"""What kind of identifiers a table holds, for messages when they match none of the annotation.

A quantification run against the wrong reference (gene-level output, a RefSeq transcriptome next
to a GENCODE annotation, a de-novo StringTie assembly) gives ids that match nothing; saying which
kind was found tells the user which file to fix. :func:`describe_id_kind` looks at the ids'
shapes only (no lookup), and names the most common kind among them with an example.

This module never imports torch.
"""

import re
from collections import Counter
from typing import Iterable, List, Tuple

# (kind, pattern), the first match wins; patterns look at the id without a version suffix mattering.
_KINDS: List[Tuple[str, "re.Pattern[str]"]] = [
    ("Ensembl transcript ids (ENST...)", re.compile(r"^ENS[A-Z]*T\d{6,}")),
    ("Ensembl gene ids (ENSG...)", re.compile(r"^ENS[A-Z]*G\d{6,}")),
    ("Ensembl protein ids (ENSP...)", re.compile(r"^ENS[A-Z]*P\d{6,}")),
    ("RefSeq transcript ids (NM_/NR_/XM_/XR_)", re.compile(r"^[NX][MR]_\d+")),
    ("RefSeq protein ids (NP_/XP_)", re.compile(r"^[NXYW]P_\d+")),
    ("StringTie novel transcripts (MSTRG.*/STRG.*)", re.compile(r"^M?STRG\.\d+\.\d+$")),
    ("StringTie novel genes (MSTRG.*/STRG.*)", re.compile(r"^M?STRG\.\d+$")),
    ("IsoQuant novel transcripts (transcriptN.*)", re.compile(r"^transcript\d+\.")),
    ("IsoQuant novel genes (novel_gene_*)", re.compile(r"^novel_gene")),
    ("numeric ids (Entrez gene ids?)", re.compile(r"^\d+$")),
    ("gene symbols", re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$")),
]
_SAMPLE = 2000


def id_kind(identifier: str) -> str:
    """The kind of one id (one of the names in ``_KINDS``), or ``"other ids"``."""
    for kind, pattern in _KINDS:
        if pattern.match(identifier):
            return kind
    return "other ids"


def describe_id_kind(ids: Iterable[str], example: bool = True) -> str:
    """``"Ensembl gene ids (ENSG...), e.g. ENSG00000141510.17"``: the most common kind among the first ids
    (without the example when ``example`` is False)."""
    counts: Counter = Counter()
    examples = {}
    for position, identifier in enumerate(ids):
        if position >= _SAMPLE:
            break
        kind = id_kind(identifier)
        counts[kind] += 1
        examples.setdefault(kind, identifier)
    if not counts:
        return "no ids"
    kind, _ = counts.most_common(1)[0]
    return f"{kind}, e.g. {examples[kind]}" if example else kind


def is_stringtie_novel(identifier: str) -> bool:
    """True for StringTie's own transcript ids (``MSTRG.12.1``, ``STRG.3.2``), which no reference annotation has."""
    return bool(_KINDS[5][1].match(identifier))
