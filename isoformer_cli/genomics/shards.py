"""``--shard K/N``: a stable split of an annotation by gene, for scatter/gather pipelines.

Shard ``K`` of ``N`` (1-based, ``1 <= K <= N``) holds every transcript whose gene key falls in it. The gene
key is the ``gene_id``, or the ``transcript_id`` for a transcript without one (the same key the gene summary
groups by), so a gene's isoforms always share a shard: gene summaries and isoform-share scores stay whole.

A gene's shard is ``1 + (H mod N)`` where ``H`` is the first 8 bytes of the SHA-256 of its key (UTF-8), read
big-endian. It depends only on the key and ``N``: not on the machine, Python's hash seed, the order of the
annotation, which other genes are present, or which selection options ran before it.
"""

import hashlib
import re
from dataclasses import dataclass

from isoformer_cli.errors import InputError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def gene_key(gene_id, transcript_id):
    """The key a transcript is sharded (and summarised) by: its gene id, else its transcript id."""
    return gene_id or transcript_id


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self):
        return f"{self.index}/{self.count}"

    def holds(self, key):
        """True when the gene key ``key`` belongs to this shard."""
        return shard_of(key, self.count) == self.index


def shard_of(key, count):
    """The 1-based shard of gene key ``key`` among ``count`` shards."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def parse_shard(text):
    """``"K/N"`` -> :class:`Shard`; InputError naming the fix for anything else."""
    match = _SHARD.match(str(text))
    if not match:
        raise InputError(f"--shard {text!r}: write it as K/N, e.g. --shard 2/8 for the second of eight shards")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text}: K must be between 1 and N (and N at least 1), e.g. --shard 1/{max(count, 1)}")
    return Shard(index, count)
