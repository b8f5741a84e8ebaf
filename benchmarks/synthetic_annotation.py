"""A GENCODE-scale synthetic genome + GTF, for benchmarks of the annotation reader and of
``isoformer triples`` against gffread.

    from benchmarks.synthetic_annotation import write_synthetic_dataset
    dataset = write_synthetic_dataset("/tmp/synth")   # the issue's 202,100 transcripts
    dataset.fasta, dataset.gtf, dataset.n_transcripts, dataset.n_lines

Shape (close to GENCODE v44 human, ~13.5 lines per transcript):

* genes carry 1-12 isoforms (mean ~4); a gene model has a lognormal exon count (median ~8,
  long tail to 60), exons of lognormal length (median ~150 bp) and introns of lognormal length
  (median ~1.5 kb, tail to 50 kb); each isoform keeps the first and last exon of a random
  sub-range of the gene's exons and skips some internal ones (alternative splicing);
* both strands; ~60% of genes are coding: their isoforms get a CDS (a whole number of codons,
  ATG-initiated and stop-terminated in the written genome), ``start_codon``/``stop_codon`` and
  ``UTR`` lines, the stop codon excluded from the CDS lines as in GENCODE (and split by an intron
  when it falls across one);
* GENCODE attributes (gene_id, transcript_id, gene_type, gene_name, transcript_type, tags,
  exon_number, exon_id, level ...), so lines have realistic lengths;
* genes are laid out on several contigs with overlapping loci (start spacing ~6 kb, genes nest
  in introns, exons of different genes never overlap), and the
  genome FASTA (random A/C/G/T, 60 bases per line) is written beside the GTF, with the coding
  sequences written into it so proteins are real ORFs.

Run as a script to write a dataset and time the annotation reader on it::

    python benchmarks/synthetic_annotation.py --out /tmp/synth      # 202,100 transcripts, the issue's set
"""

import argparse
import gzip
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

# The size of the set issue 20 measures isoformer triples against gffread on (the default of both scripts).
ISSUE_TRANSCRIPTS = 202_100

_CODONS_STOP = ("TAA", "TAG", "TGA")
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass
class SyntheticDataset:
    """Paths and sizes of a written dataset."""

    fasta: str
    gtf: str
    n_transcripts: int
    n_coding: int
    n_lines: int
    genome_size: int
    contigs: tuple


def _isoform_exons(rng, gene_exons):
    """A sub-range of the gene's exons with some internal exons skipped (>= 1 exon)."""
    n = len(gene_exons)
    if n == 1:
        return list(gene_exons)
    first = int(rng.integers(0, max(1, n // 4) + 1)) if rng.random() < 0.4 else 0
    last = n - 1 - (int(rng.integers(0, max(1, n // 4) + 1)) if rng.random() < 0.4 else 0)
    if last < first:
        first, last = 0, n - 1
    kept = [gene_exons[first]]
    for index in range(first + 1, last):
        if rng.random() > 0.15:
            kept.append(gene_exons[index])
    if last != first:
        kept.append(gene_exons[last])
    return kept


def _transcript_to_genome(exons, strand):
    """List of (genomic start, end) exons in transcript order (5'->3')."""
    return exons if strand == "+" else list(reversed(exons))


def _segments(exons_tx_order, strand, tx_start, tx_end):
    """Genomic 0-based half-open pieces of transcript interval [tx_start, tx_end)."""
    pieces = []
    offset = 0
    for start, end in exons_tx_order:
        length = end - start
        lo, hi = max(tx_start, offset), min(tx_end, offset + length)
        if lo < hi:
            if strand == "+":
                pieces.append((start + lo - offset, start + hi - offset))
            else:
                pieces.append((end - (hi - offset), end - (lo - offset)))
        offset += length
    return pieces


def write_synthetic_dataset(folder, n_transcripts=ISSUE_TRANSCRIPTS, seed=0, n_contigs=12, gzip_gtf=False,
                            gene_spacing=6_000):
    """Write ``genome.fa`` and ``annotation.gtf[.gz]`` into ``folder``; returns SyntheticDataset.

    Deterministic for a given ``seed``; exactly ``n_transcripts`` transcripts. At 202,100 transcripts:
    2,776,033 GTF lines (816 MB plain), a 697 MB genome FASTA, about a minute to write on one core.
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    genes = []  # (contig index, strand, exons (genomic, ascending), coding)
    produced = 0
    while produced < n_transcripts:
        n_isoforms = int(min(12, 1 + rng.geometric(0.3) - 1))
        n_isoforms = max(1, min(n_isoforms, n_transcripts - produced))
        n_exons = int(min(60, max(1, round(rng.lognormal(np.log(8), 0.7)))))
        exon_lengths = np.clip(rng.lognormal(np.log(150), 0.6, n_exons), 40, 3000).astype(int)
        coding = rng.random() < 0.6
        strand = "+" if rng.random() < 0.5 else "-"
        if coding:
            # Whole codons in every exon but the 5'-most: skipping an exon keeps the reading frame,
            # and codons (stop codons included) still straddle introns.
            first = 0 if strand == "+" else n_exons - 1
            keep = exon_lengths[first]
            exon_lengths = exon_lengths // 3 * 3
            exon_lengths[first] = keep
        intron_lengths = np.clip(rng.lognormal(np.log(1500), 1.0, max(0, n_exons - 1)), 80, 50_000).astype(int)
        genes.append((n_exons, exon_lengths, intron_lengths, n_isoforms, coding, strand))
        produced += n_isoforms
    genes_per_contig = -(-len(genes) // n_contigs)

    # Lay genes out: each gene starts ~gene_spacing after the previous one of its contig, so loci
    # overlap and genes nest in introns, but is shifted until its exons touch no exon of another
    # gene (each gene writes its own ORF into the genome; shared bases would break it).
    contig_names = tuple(f"chr{i + 1}" for i in range(n_contigs))
    contig_lengths = [0] * n_contigs
    capacity = genes_per_contig * gene_spacing * 4 + 1_000_000
    occupied = [np.zeros(capacity, dtype=bool) for _ in range(n_contigs)]
    next_start = [10_000] * n_contigs
    placed = []
    for index, (n_exons, exon_lengths, intron_lengths, n_isoforms, coding, strand) in enumerate(genes):
        contig = index // genes_per_contig
        start = next_start[contig] + int(rng.integers(0, gene_spacing))
        offsets = []
        position = 0
        for k in range(n_exons):
            offsets.append((position, position + int(exon_lengths[k])))
            position += int(exon_lengths[k]) + (int(intron_lengths[k]) if k < n_exons - 1 else 0)
        mask = occupied[contig]
        while start + position + 10_000 >= len(mask):
            mask = occupied[contig] = np.concatenate([mask, np.zeros(len(mask), dtype=bool)])
        while any(mask[start + a:start + b].any() for a, b in offsets):
            start += int(rng.integers(200, 2_000))
            while start + position + 10_000 >= len(mask):
                mask = occupied[contig] = np.concatenate([mask, np.zeros(len(mask), dtype=bool)])
        exons = [(start + a, start + b) for a, b in offsets]
        for a, b in exons:
            mask[a:b] = True
        next_start[contig] = start + gene_spacing // 2
        contig_lengths[contig] = max(contig_lengths[contig], start + position + 10_000)
        placed.append((contig, strand, exons, n_isoforms, coding))
    del occupied

    # Genome: random bases; coding sequences are written in after the transcripts are drawn.
    genome = [_BASES[rng.integers(0, 4, length, dtype=np.uint8)] for length in contig_lengths]

    gtf_path = os.path.join(folder, "annotation.gtf" + (".gz" if gzip_gtf else ""))
    opener = (lambda p: gzip.open(p, "wt", compresslevel=3)) if gzip_gtf else (lambda p: open(p, "w", buffering=1 << 20))
    n_lines = 0
    n_coding = 0
    transcript_serial = 0
    exon_serial = 0
    with opener(gtf_path) as out:
        out.write("##description: synthetic GENCODE-like annotation (isoformer benchmark)\n"
                  "##provider: isoformer benchmarks/synthetic_annotation.py\n")
        n_lines += 2
        for gene_index, (contig, strand, gene_exons, n_isoforms, coding) in enumerate(placed):
            chrom = contig_names[contig]
            gene_id = f"ENSG{gene_index:011d}.{1 + gene_index % 9}"
            gene_name = f"SYN{gene_index}"
            gene_type = "protein_coding" if coding else "lncRNA"
            isoforms = [_isoform_exons(rng, gene_exons) for _ in range(n_isoforms)]
            gene_start = min(e[0][0] for e in isoforms)
            gene_end = max(e[-1][1] for e in isoforms)
            common = f'gene_id "{gene_id}"; gene_type "{gene_type}"; gene_name "{gene_name}"; level 2;'
            out.write(f"{chrom}\tHAVANA\tgene\t{gene_start + 1}\t{gene_end}\t.\t{strand}\t.\t{common}\n")
            n_lines += 1
            orf = _gene_orf(genome[contig], rng, gene_exons, strand) if coding else None
            for iso_index, exons in enumerate(isoforms):
                transcript_serial += 1
                tid = f"ENST{transcript_serial:011d}.{1 + transcript_serial % 5}"
                exons_tx = _transcript_to_genome(exons, strand)
                tx_length = sum(e - s for s, e in exons)
                cds_tx = _isoform_cds(orf, exons_tx, strand) if orf else None
                ttype = "protein_coding" if cds_tx else ("lncRNA" if not coding else "retained_intron")
                tags = 'tag "basic"; tag "CCDS";' if cds_tx and iso_index == 0 else 'tag "basic";'
                attrs = (f'gene_id "{gene_id}"; transcript_id "{tid}"; gene_type "{gene_type}"; '
                         f'gene_name "{gene_name}"; transcript_type "{ttype}"; '
                         f'transcript_name "{gene_name}-{201 + iso_index}"; level 2; '
                         f'transcript_support_level "1"; {tags}')
                out.write(f"{chrom}\tHAVANA\ttranscript\t{exons[0][0] + 1}\t{exons[-1][1]}\t.\t{strand}\t.\t{attrs}\n")
                n_lines += 1
                for number, (start, end) in enumerate(exons_tx, 1):
                    exon_serial += 1
                    out.write(f"{chrom}\tHAVANA\texon\t{start + 1}\t{end}\t.\t{strand}\t.\t{attrs} "
                              f'exon_number {number}; exon_id "ENSE{exon_serial:011d}.1";\n')
                    n_lines += 1
                if cds_tx is None:
                    continue
                n_coding += 1
                cds_pieces = _segments(exons_tx, strand, cds_tx[0], cds_tx[1])
                stop_pieces = _segments(exons_tx, strand, cds_tx[1], cds_tx[1] + 3)
                start_pieces = _segments(exons_tx, strand, cds_tx[0], cds_tx[0] + 3)
                done = 0
                for start, end in cds_pieces:
                    phase = (3 - done % 3) % 3
                    out.write(f"{chrom}\tHAVANA\tCDS\t{start + 1}\t{end}\t.\t{strand}\t{phase}\t{attrs}\n")
                    done += end - start
                    n_lines += 1
                for start, end in start_pieces:
                    out.write(f"{chrom}\tHAVANA\tstart_codon\t{start + 1}\t{end}\t.\t{strand}\t0\t{attrs}\n")
                    n_lines += 1
                for start, end in stop_pieces:
                    out.write(f"{chrom}\tHAVANA\tstop_codon\t{start + 1}\t{end}\t.\t{strand}\t0\t{attrs}\n")
                    n_lines += 1
                utrs = (_segments(exons_tx, strand, 0, cds_tx[0])
                        + _segments(exons_tx, strand, cds_tx[1] + 3, tx_length))
                for start, end in utrs:
                    out.write(f"{chrom}\tHAVANA\tUTR\t{start + 1}\t{end}\t.\t{strand}\t.\t{attrs}\n")
                    n_lines += 1

    fasta_path = os.path.join(folder, "genome.fa")
    with open(fasta_path, "wb") as out:
        for name, sequence in zip(contig_names, genome):
            out.write(f">{name}\n".encode())
            full = len(sequence) // 60 * 60
            if full:
                block = np.empty((full // 60, 61), dtype=np.uint8)
                block[:, :60] = sequence[:full].reshape(-1, 60)
                block[:, 60] = ord("\n")
                out.write(block.tobytes())
            if len(sequence) > full:
                out.write(sequence[full:].tobytes() + b"\n")
    return SyntheticDataset(fasta_path, gtf_path, transcript_serial, n_coding, n_lines,
                            sum(contig_lengths), contig_names)


_COMPLEMENT = np.zeros(256, dtype=np.uint8)
for _a, _b in zip(b"ACGT", b"TGCA"):
    _COMPLEMENT[_a] = _b


def _gene_orf(sequence, rng, gene_exons, strand):
    """Write one ORF over a coding gene's exons, in the gene's 5'->3' frame: ATG in the first or
    second exon, sense codons everywhere (in every exon, so that isoforms skipping exons keep an
    open frame), one stop codon in the last or second-to-last exon. Returns the genomic 0-based
    start of the ATG and of the stop codon (first base in transcript direction), or None when the
    gene is too short. Exon lengths are multiples of 3."""
    exons_tx = _transcript_to_genome(gene_exons, strand)
    length = sum(e - s for s, e in exons_tx)
    if length < 30:
        return None
    first_exon = exons_tx[0] if len(exons_tx) == 1 or rng.random() < 0.6 else exons_tx[1]
    offset_first = 0 if first_exon is exons_tx[0] else exons_tx[0][1] - exons_tx[0][0]
    last_index = len(exons_tx) - 1 if len(exons_tx) < 3 or rng.random() < 0.7 else len(exons_tx) - 2
    offset_last = sum(e - s for s, e in exons_tx[:last_index])
    start_tx = offset_first + int(rng.integers(0, max(1, (first_exon[1] - first_exon[0]) // 2)))
    last_length = exons_tx[last_index][1] - exons_tx[last_index][0]
    low = max(start_tx + 9, offset_last + last_length // 2)
    high = offset_last + last_length - 3
    if high < low:
        return None
    stop_tx = start_tx + 3 * ((int(rng.integers(low, high + 1)) - start_tx) // 3)
    if stop_tx < low - 2 or stop_tx + 3 > length:
        return None
    # Sense codons in the ATG's frame everywhere, so no isoform sees a premature stop.
    sense = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in _CODONS_STOP]
    lead = start_tx % 3
    codons = rng.integers(0, len(sense), (length - lead) // 3 + 1)
    text = ("C" * lead + "".join(sense[i] for i in codons))[:length]
    text = (text[:start_tx] + "ATG" + text[start_tx + 3:stop_tx]
            + _CODONS_STOP[int(codons[0]) % 3] + text[stop_tx + 3:])
    bases = np.frombuffer(text.encode(), dtype=np.uint8)
    if strand == "-":
        bases = _COMPLEMENT[bases[::-1]]
    offset = 0
    for start, end in gene_exons:  # genomic order; bases are in genomic order too now
        sequence[start:end] = bases[offset:offset + end - start]
        offset += end - start
    genomic_start = _segments(exons_tx, strand, start_tx, start_tx + 1)[0][0]
    genomic_stop = _segments(exons_tx, strand, stop_tx, stop_tx + 1)[0][0]
    return genomic_start, genomic_stop


def _isoform_cds(orf, exons_tx, strand):
    """CDS (start, end) in transcript coordinates (stop codon excluded, it follows at end) when
    the isoform holds both the gene's start and stop codons, else None."""
    atg, stop = orf
    offset = 0
    start_tx = stop_tx = None
    for start, end in exons_tx:
        if start <= atg < end:
            start_tx = offset + (atg - start if strand == "+" else end - 1 - atg)
        if start <= stop < end:
            stop_tx = offset + (stop - start if strand == "+" else end - 1 - stop)
        offset += end - start
    if start_tx is None or stop_tx is None or stop_tx <= start_tx or (stop_tx - start_tx) % 3:
        return None
    return start_tx, stop_tx


def _peak_rss_mb():
    """Peak resident memory of this process in MB (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transcripts", type=int, default=ISSUE_TRANSCRIPTS,
                        help="transcripts in the synthetic set (default: %(default)s, the set of issue 20)")
    parser.add_argument("--out", default="synthetic_annotation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gzip", action="store_true", help="write annotation.gtf.gz")
    parser.add_argument("--time-reader", metavar="ANNOTATION",
                        help="do not write anything: time read_annotation on ANNOTATION in this process")
    args = parser.parse_args(argv)
    if args.time_reader:
        time_reader(args.time_reader)
        return
    began = time.perf_counter()
    dataset = write_synthetic_dataset(args.out, args.transcripts, seed=args.seed, gzip_gtf=args.gzip)
    print(f"wrote {dataset.n_transcripts:,} transcripts ({dataset.n_coding:,} coding), {dataset.n_lines:,} GTF lines, "
          f"{dataset.genome_size / 1e6:.0f} Mb genome in {time.perf_counter() - began:.1f} s")
    # A fresh process, so that the peak RSS is the reader's alone.
    subprocess.run([sys.executable, os.path.abspath(__file__), "--time-reader", dataset.gtf], check=True)


def time_reader(path):
    """Print transcripts, lines, seconds, lines/s and peak RSS of one read_annotation pass."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from isoformer_cli.genomics.annotation import read_annotation

    rss_before = _peak_rss_mb()
    began = time.perf_counter()
    cpu_began = time.process_time()
    reader = read_annotation(path)
    count = sum(1 for _ in reader)
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    print(f"read_annotation {path}: {count:,} transcripts, {reader.summary.lines:,} lines in {elapsed:.2f} s wall, "
          f"{cpu:.2f} s CPU ({reader.summary.lines / elapsed / 1e6:.2f} M lines/s); peak RSS {_peak_rss_mb():.0f} MB "
          f"(interpreter and imports: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
