"""Regenerate the golden files of tests/test_oracle.py from example_data/ with gffread and samtools.

Run from the repository root:  python tests/golden/make_golden.py
Needs gffread 0.12.7 and samtools (apt-get install -y gffread samtools). Only the standard
library is used, and the transcription start sites are taken straight from the GTF exon lines
here, so the golden windows do not depend on isoformer's own code.
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile

GOLDEN = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(GOLDEN, "..", "..", "example_data")
DATASETS = {
    # name: (FASTA, GTF) in example_data/
    "hg38_chr16": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf"),
    "mm10_chr9": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"),
}
WINDOW = 2000  # golden DNA windows: --dna-length 2000


def decompressed_copy(name, folder):
    """gffread reads neither BGZF FASTA nor gzipped GTF: write a plain copy into ``folder``."""
    source = os.path.join(EXAMPLES, name)
    target = os.path.join(folder, name[:-3] if name.endswith(".gz") else name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def tss_table(gtf):
    """transcript_id -> (contig, strand, TSS 1-based) from the exon lines of a GTF."""
    spans = {}
    with open(gtf) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(fields) < 9 or fields[2] != "exon":
                continue
            tid = re.search(r'transcript_id "([^"]+)"', fields[8]).group(1)
            start, end = int(fields[3]), int(fields[4])
            contig, strand, low, high = spans.get(tid, (fields[0], fields[6], start, end))
            spans[tid] = (contig, strand, min(low, start), max(high, end))
    return {tid: (contig, strand, low if strand == "+" else high) for tid, (contig, strand, low, high) in spans.items()}


def contig_lengths(fasta):
    lengths, name = {}, None
    with open(fasta) as handle:
        for line in handle:
            if line.startswith(">"):
                name = line[1:].split()[0]
                lengths[name] = 0
            else:
                lengths[name] += len(line.strip())
    return lengths


def golden_windows(name, fasta, gtf):
    """samtools faidx windows of WINDOW bases around each TSS (-i on '-'), windows inside the contig only.

    '+': TSS at 1-based t -> [t - W/2, t + W/2 - 1]; '-': -> [t - W/2 + 1, t + W/2], reverse-complemented.
    """
    lengths = contig_lengths(fasta)
    half = WINDOW // 2
    records = []
    for tid, (contig, strand, tss) in sorted(tss_table(gtf).items()):
        first, last = (tss - half, tss + half - 1) if strand == "+" else (tss - half + 1, tss + half)
        if first < 1 or last > lengths[contig]:
            continue
        command = ["samtools", "faidx", fasta, f"{contig}:{first}-{last}"] + (["-i"] if strand == "-" else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        sequence = "".join(output.splitlines()[1:])
        records.append(f">{tid} {contig}:{first}-{last}({strand})\n{sequence}\n")
    with open(os.path.join(GOLDEN, f"{name}.windows{WINDOW}.fa"), "w") as out:
        out.writelines(records)


def main():
    version = subprocess.run(["gffread", "--version"], capture_output=True, text=True).stdout.strip()
    if version != "0.12.7":
        sys.exit(f"needs gffread 0.12.7, found {version or 'none'}")
    with tempfile.TemporaryDirectory() as work:
        for name, (fasta_name, gtf_name) in DATASETS.items():
            fasta = decompressed_copy(fasta_name, work)
            gtf = decompressed_copy(gtf_name, work)
            out = os.path.join(GOLDEN, name)
            subprocess.run(["gffread", "-w", f"{out}.rna.fa", "-x", f"{out}.cds.fa", "-y", f"{out}.protein.fa",
                            "-g", fasta, gtf], check=True)
            golden_windows(name, fasta, gtf)
            # The same transcripts as GFF3, where CDS lines include the stop codon (gffread merges
            # the GTF stop_codon into the CDS). Relative paths keep gffread's header comment stable.
            subprocess.run(["gffread", os.path.basename(gtf), "-o", f"{name}.gff3"], cwd=work, check=True)
            shutil.copy(os.path.join(work, f"{name}.gff3"), os.path.join(GOLDEN, f"{name}.gff3"))


if __name__ == "__main__":
    main()
