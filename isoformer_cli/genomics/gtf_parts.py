"""Cut a plain annotation file into parts that start where the contig changes, for reading in parallel.

A part is a byte range ``[start, end)`` of the file: ``start`` is the first byte of a data line (not a
comment, not blank) whose contig (column 1) differs from the contig of the data line before it, or 0;
``end`` is the next part's start, or the file size. Each line belongs to exactly one part. The reader
groups transcripts per contig block (:mod:`isoformer_cli.genomics.annotation`), and a block never
crosses a part boundary, so reading the parts one after the other sees the same transcripts as reading
the file. (A file whose records of one transcript are split over two contig blocks is not grouped and
fails either way: the caller checks transcript ids across parts and reads the file as a whole then.)

Finding a boundary reads a few lines at O(log(file size)) offsets (exponential then binary search on
"the contig of the first data line at or after this offset"), never the whole file.
"""

import os
from typing import BinaryIO, List, Optional, Tuple

# Below this distance the search reads lines one after the other.
_SCAN_BYTES = 1 << 16


def _data_line_at(handle: BinaryIO, offset: int, size: int) -> Tuple[int, Optional[bytes]]:
    """``(position, contig)`` of the first data line that starts at or after byte ``offset``;
    ``(size, None)`` when there is none."""
    if offset <= 0:
        handle.seek(0)
        position = 0
    else:
        handle.seek(offset - 1)
        position = offset - 1 + len(handle.readline())  # the rest of the line holding byte offset - 1
    while position < size:
        line = handle.readline()
        if not line:
            break
        if line[0] != 35 and line.strip():  # not '#', not blank
            return position, line.split(b"\t", 1)[0]
        position += len(line)
    return size, None


def _next_contig_start(handle: BinaryIO, offset: int, size: int) -> int:
    """Start of the first data line after ``offset`` whose contig differs from that of the first
    data line at or after ``offset`` (``size`` when none)."""
    low, contig = _data_line_at(handle, offset, size)
    if contig is None:
        return size
    # Exponential search for a data line on another contig (or the end of the file) ...
    step = _SCAN_BYTES
    while True:
        high, other = _data_line_at(handle, low + step, size)
        if other != contig:
            break
        low, step = high, step * 2
    # ... then binary search between a line on `contig` (low) and one that is not (high).
    while high - low > _SCAN_BYTES:
        position, other = _data_line_at(handle, (low + high) // 2, size)
        if position >= high:
            break
        if other == contig:
            low = position
        else:
            high = position
    # The last stretch line by line from `low`.
    handle.seek(low)
    position = low
    for line in handle:
        if position >= high:
            return high
        if line[0] != 35 and line.strip() and line.split(b"\t", 1)[0] != contig:
            return position
        position += len(line)
    return size


def contig_parts(path, parts: int) -> List[Tuple[int, int]]:
    """About ``parts`` byte ranges of the plain file ``path`` that cover it, each starting at a contig
    change (fewer when contigs are few or large; one for a file of one contig)."""
    size = os.path.getsize(path)
    starts = {0}
    with open(path, "rb") as handle:
        for index in range(1, max(1, parts)):
            starts.add(_next_contig_start(handle, size * index // parts, size))
    bounds = sorted(start for start in starts if start < size) + [size]
    return [(start, end) for start, end in zip(bounds, bounds[1:])]
