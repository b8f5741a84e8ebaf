"""Independent oracles for `isoformer variants`: bcftools csq, and bcftools consensus + chain + CrossMap + gffread.

Nothing here uses isoformer's variant code. The pieces:

* :func:`ensembl_gff3`: the gffread GFF3 of a dataset (tests/golden/NAME.gff3) rewritten the way
  `bcftools csq` reads annotations (Ensembl style: ``ID=gene:``/``ID=transcript:``, ``biotype=``, UTR
  features, which csq needs to call 5'/3' UTR variants);
* :func:`pick_variants`: SNVs and indels of every consequence class on both strands, positions chosen
  from the annotation's own coordinates (only the picking reads isoformer's triples, to find codons);
* :func:`csq_consequences`: ``bcftools csq -l`` per (variant, transcript);
* :func:`consensus_sequences`: per (variant, transcript), the alternative RNA and protein written by
  ``bcftools consensus -c CHAIN`` + ``CrossMap bed`` + ``gffread --adj-stop -w -y``; variants are applied in
  batches in which no transcript holds two of them, so each transcript sees exactly one.
"""

import collections
import gzip
import os
import random
import subprocess

from cli_helpers import tool_path

TOOLS = ("bcftools", "tabix", "bgzip", "gffread", "CrossMap")
#: Bases around a transcript within which the consensus pipeline's RNA and protein are read for a variant
#: (upstream-only variants picked up to this far from the TSS are compared: both sides must leave them as they are).
NEAR = 1000
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


Model = collections.namedtuple("Model", "transcript_id strand exons rna cds_start cds_end protein incomplete")


def models_from_triples(triples):
    """:class:`Model` records of isoformer Triples (exons turned 1-based closed)."""
    return [Model(t.transcript.transcript_id, t.transcript.strand, [(s + 1, e) for s, e in t.transcript.exons],
                  t.rna, t.cds_start, t.cds_end, t.protein,
                  any(flag.startswith("cds_") for flag in t.flags)) for t in triples]


def revcomp(sequence):
    return sequence.translate(COMPLEMENT)[::-1]


def read_fasta(path):
    """name -> sequence (upper case) of a plain FASTA file."""
    records, name, parts = {}, None, []
    with open(path) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if name is not None:
                    records[name] = "".join(parts).upper()
                name, parts = line[1:].split()[0], []
            else:
                parts.append(line)
    if name is not None:
        records[name] = "".join(parts).upper()
    return records


def _attributes(text):
    return dict(item.split("=", 1) for item in text.strip().split(";") if item)


def read_gff3(path):
    """transcript id -> {"line": fields, "attrs": ..., "exons": [(s, e)], "cds": [(s, e, phase)]} (1-based)."""
    transcripts = collections.OrderedDict()
    with open(path) as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            attrs = _attributes(fields[8])
            if fields[2] == "transcript":
                transcripts[attrs["ID"]] = {"line": fields, "attrs": attrs, "exons": [], "cds": []}
            elif fields[2] == "exon":
                transcripts[attrs["Parent"]]["exons"].append((int(fields[3]), int(fields[4])))
            elif fields[2] == "CDS":
                transcripts[attrs["Parent"]]["cds"].append((int(fields[3]), int(fields[4]), fields[7]))
    return transcripts


def gtf_biotypes(gtf_path):
    """transcript id -> transcript_type of a GTF (GENCODE); {} when it has none."""
    opener = gzip.open if gtf_path.endswith(".gz") else open
    biotypes = {}
    with opener(gtf_path, "rt") as handle:
        for line in handle:
            if "\ttranscript\t" not in line or "transcript_type" not in line:
                continue
            tid = line.split('transcript_id "', 1)[1].split('"', 1)[0]
            biotypes[tid] = line.split('transcript_type "', 1)[1].split('"', 1)[0]
    return biotypes


def ensembl_gff3(gffread_gff3, output, biotypes):
    """Write ``output``: the gffread GFF3 in the Ensembl layout bcftools csq reads (gene, transcript,
    exon, CDS and UTR lines; each gene written once, spanning its transcripts)."""
    transcripts = read_gff3(gffread_gff3)
    genes = collections.OrderedDict()
    for tid, item in transcripts.items():
        genes.setdefault(item["attrs"].get("geneID", tid), []).append(tid)
    with open(output, "w") as out:
        out.write("##gff-version 3\n")
        for gene, tids in genes.items():
            items = [transcripts[tid] for tid in tids]
            first = items[0]["line"]
            name = items[0]["attrs"].get("gene_name", gene)
            types = [biotypes.get(tid) or ("protein_coding" if transcripts[tid]["cds"] else "lincRNA") for tid in tids]
            gene_type = "protein_coding" if "protein_coding" in types else types[0]
            low = min(int(item["line"][3]) for item in items)
            high = max(int(item["line"][4]) for item in items)
            out.write("\t".join(first[:2] + ["gene", str(low), str(high), ".", first[6], ".",
                                             f"ID=gene:{gene};Name={name};biotype={gene_type}"]) + "\n")
            for tid, item, biotype in zip(tids, items, types):
                fields = item["line"]
                base = fields[:2]
                out.write("\t".join(base + ["transcript"] + fields[3:8]
                                    + [f"ID=transcript:{tid};Parent=gene:{gene};Name={tid};biotype={biotype}"]) + "\n")
                for start, end in item["exons"]:
                    out.write("\t".join(base + ["exon", str(start), str(end), ".", fields[6], ".",
                                                f"Parent=transcript:{tid}"]) + "\n")
                for start, end, phase in item["cds"]:
                    out.write("\t".join(base + ["CDS", str(start), str(end), ".", fields[6], phase,
                                                f"Parent=transcript:{tid}"]) + "\n")
                if item["cds"]:
                    low_cds = min(start for start, _, _ in item["cds"])
                    high_cds = max(end for _, end, _ in item["cds"])
                    for start, end in item["exons"]:
                        for piece_start, piece_end, lower in ((start, min(end, low_cds - 1), True),
                                                              (max(start, high_cds + 1), end, False)):
                            if piece_start <= piece_end:
                                kind = "five_prime_UTR" if lower == (fields[6] == "+") else "three_prime_UTR"
                                out.write("\t".join(base + [kind, str(piece_start), str(piece_end), ".", fields[6],
                                                            ".", f"Parent=transcript:{tid}"]) + "\n")
            out.write("###\n")


# ------------------------------------------------------------------------------------ picking


def _tx_to_genome(exons, strand, position):
    """1-based genomic position of 0-based transcript ``position`` (exons 1-based closed, ascending)."""
    ordered = exons if strand == "+" else exons[::-1]
    for start, end in ordered:
        length = end - start + 1
        if position < length:
            return start + position if strand == "+" else end - position
        position -= length
    raise ValueError("outside the transcript")


def _far_from_boundaries(exons, strand, position, margin=10):
    """True when transcript ``position`` lies at least ``margin`` bases inside its exon."""
    ordered = exons if strand == "+" else exons[::-1]
    for start, end in ordered:
        length = end - start + 1
        if position < length:
            return margin <= position < length - margin
        position -= length
    return False


def pick_variants(genome_seq, contig, triples, per_strand=3, seed=7):
    """SNVs and indels of every class, as ``(class, pos 1-based, ref, alt, transcript id)`` (unnormalised).

    ``triples``: :class:`Model` records (exons 1-based closed, ascending; RNA, CDS span and protein from
    isoformer's triples, used only to find codons); at most ``per_strand`` coding transcripts per strand.
    """
    rng = random.Random(seed)
    picked = []
    by_strand = collections.defaultdict(list)
    for triple in triples:
        if triple.cds_start is not None and triple.protein.startswith("M") and "*" not in triple.protein \
                and not triple.incomplete:
            by_strand[triple.strand].append(triple)
    for strand, items in sorted(by_strand.items()):
        for triple in items[:per_strand]:
            picked += _coding_variants(genome_seq, contig, triple, rng)
    all_exonic = set()
    for triple in triples:
        for start, end in triple.exons:
            all_exonic.update(range(start, end + 1))
    spans = [(triple.exons[0][0], triple.exons[-1][1]) for triple in triples]
    for strand, items in sorted(by_strand.items()):
        for triple in items[:per_strand]:
            picked += _noncoding_variants(genome_seq, triple, rng, all_exonic, spans)
    non_coding = collections.defaultdict(list)
    for triple in triples:
        if triple.cds_start is None and len(triple.exons) > 1:
            non_coding[triple.strand].append(triple)
    for strand, items in sorted(non_coding.items()):
        for triple in items[:per_strand]:
            picked += _noncoding_variants(genome_seq, triple, rng, all_exonic, spans)
    return picked


def _snv(genome_seq, position, wanted):
    ref = genome_seq[position - 1]
    for alt in "ACGT":
        if alt != ref and wanted(alt):
            return ref, alt
    return None


def _coding_variants(genome_seq, contig, triple, rng):
    exons, strand = triple.exons, triple.strand
    rna, cds_start, cds_end = triple.rna, triple.cds_start, triple.cds_end
    cds = rna[cds_start:cds_end]
    n_codons = len(cds) // 3
    variants = []

    def genomic(offset):
        return _tx_to_genome(exons, strand, cds_start + offset)

    def codon_change(offset, alt_base):
        codon_index = offset // 3
        codon = list(cds[3 * codon_index:3 * codon_index + 3])
        codon[offset % 3] = alt_base if strand == "+" else revcomp(alt_base)
        return translate("".join(codon)), translate(cds[3 * codon_index:3 * codon_index + 3])

    interior = [offset for offset in range(9, 3 * (n_codons - 3))
                if _far_from_boundaries(exons, strand, cds_start + offset, 12)]
    rng.shuffle(interior)
    wanted = {"missense": lambda new, old: new not in (old, "*"),
              "synonymous": lambda new, old: new == old,
              "stop_gained": lambda new, old: new == "*" and old != "*"}
    for klass, test in wanted.items():
        for offset in interior:
            position = genomic(offset)
            choice = _snv(genome_seq, position, lambda alt: test(*codon_change(offset, alt)))
            if choice:
                variants.append((klass, position, choice[0], choice[1], triple.transcript_id))
                break
    # start lost: a base of the ATG; stop lost: a base of the stop codon.
    for klass, base_offsets in (("start_lost", (0, 1, 2)), ("stop_lost", (len(cds) - 3, len(cds) - 2, len(cds) - 1))):
        for offset in base_offsets:
            if not _far_from_boundaries(exons, strand, cds_start + offset, 4):
                continue
            position = genomic(offset)
            if klass == "start_lost":
                test = lambda alt, o=offset: codon_change(o, alt)[0] != "M"
            else:
                test = lambda alt, o=offset: codon_change(o, alt)[0] != "*"
            choice = _snv(genome_seq, position, test)
            if choice:
                variants.append((klass, position, choice[0], choice[1], triple.transcript_id))
                break
    # Indels inside the CDS (VCF style: the base before, then the change).
    for klass, deleted, inserted in (("frameshift", 1, ""), ("frameshift", 0, "A"), ("inframe_deletion", 3, ""),
                                     ("inframe_insertion", 0, "GCA")):
        for offset in interior[3:]:
            anchor = genomic(offset)
            ref = genome_seq[anchor - 1:anchor + deleted]
            alt = genome_seq[anchor - 1] + inserted
            variants.append((klass, anchor, ref, alt, triple.transcript_id))
            break
    return variants


def _noncoding_variants(genome_seq, triple, rng, all_exonic, spans):
    exons, strand = triple.exons, triple.strand
    rna, cds_start, cds_end = triple.rna, triple.cds_start, triple.cds_end
    variants = []
    regions = ((("5_prime_utr", range(0, cds_start)), ("3_prime_utr", range(cds_end, len(rna))))
               if cds_start is not None else (("non_coding", range(len(rna))),))
    for klass, positions in regions:
        good = [p for p in positions if _far_from_boundaries(exons, strand, p, 10)]
        if good:
            middle = good[len(good) // 2]
            position = _tx_to_genome(exons, strand, middle)
            ref = genome_seq[position - 1]
            variants.append((klass, position, ref, "A" if ref != "A" else "G", triple.transcript_id))
            # A 2-base deletion too, when the region holds the bases around it (VCF style: anchor first).
            if middle - 4 in positions and middle + 4 in positions:
                variants.append((klass, position, genome_seq[position - 1:position + 2], ref, triple.transcript_id))
    for (_, end), (start, _) in zip(exons, exons[1:]):
        if start - end > 40:
            position = (start + end) // 2
            ref = genome_seq[position - 1]
            if ref in "ACGT":
                variants.append(("intron", position, ref, "T" if ref != "T" else "C", triple.transcript_id))
                variants.append(("intron", position + 5, genome_seq[position + 4], genome_seq[position + 4] + "TG",
                                 triple.transcript_id))
                break
    tss = exons[0][0] if strand == "+" else exons[-1][1]
    for distance in range(300, NEAR - 100, 100):
        position = tss - distance if strand == "+" else tss + distance
        if position < 1 or any(low - 10 <= position <= high + 10 for low, high in spans):
            continue
        ref = genome_seq[position - 1]
        if ref in "ACGT":
            variants.append(("upstream", position, ref, "C" if ref != "C" else "G", triple.transcript_id))
            variants.append(("upstream", position + 3, genome_seq[position + 2:position + 5], genome_seq[position + 2],
                             triple.transcript_id))
            break
    return variants


_CODE = None


def translate(codon):
    global _CODE
    if _CODE is None:
        bases = "TCAG"
        amino = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
        _CODE = {a + b + c: amino[16 * i + 4 * j + k] for i, a in enumerate(bases) for j, b in enumerate(bases)
                 for k, c in enumerate(bases)}
    return "".join(_CODE.get(codon[i:i + 3], "X") for i in range(0, len(codon) - len(codon) % 3, 3))


# ------------------------------------------------------------------------------------ running tools


def write_vcf(path, contig, length, variants):
    """A sorted VCF of ``(id, pos, ref, alt)`` records."""
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write(f"##contig=<ID={contig},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for variant_id, pos, ref, alt in sorted(variants, key=lambda item: (item[1], item[0])):
            out.write(f"{contig}\t{pos}\t{variant_id}\t{ref}\t{alt}\t.\t.\t.\n")


def _run(*args, cwd=None):
    args = [tool_path(args[0]) or args[0], *args[1:]]
    subprocess.run([str(arg) for arg in args], check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def normalise_vcf(genome, vcf, output):
    """``bcftools norm -f``: left-aligned, split; returns ``(id, pos, ref, alt)`` records."""
    subprocess.run(["bcftools", "norm", "-f", str(genome), "-m-", "-Ov", "-o", str(output), str(vcf)],
                   check=True, stderr=subprocess.DEVNULL)
    records = []
    with open(output) as handle:
        for line in handle:
            if not line.startswith("#"):
                fields = line.split("\t")
                records.append((fields[2], int(fields[1]), fields[3], fields[4]))
    return records


def csq_consequences(genome, ens_gff3, vcf, workdir):
    """``{(variant id, transcript or gene): (consequence terms set, amino-acid change)}`` from csq -l.

    Entries without a transcript (csq writes none for intronic variants) are keyed by gene name.
    """
    output = os.path.join(workdir, "csq.vcf")
    _run("bcftools", "csq", "-f", genome, "-g", ens_gff3, "-l", "-Ov", "-o", output, vcf)
    result = collections.defaultdict(lambda: [set(), ""])
    with open(output) as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            info = dict(item.split("=", 1) if "=" in item else (item, "") for item in fields[7].split(";"))
            for entry in filter(None, info.get("BCSQ", "").split(",")):
                parts = entry.split("|")
                key = (fields[2], parts[2] or parts[1])
                result[key][0].update(parts[0].split("&"))
                if len(parts) > 5 and parts[5]:
                    result[key][1] = parts[5]
    return {key: (terms, amino) for key, (terms, amino) in result.items()}


def _batches(variants, gff):
    """Split variants into batches where each transcript holds at most one of them."""
    spans = {tid: (min(s for s, _ in item["exons"]), max(e for _, e in item["exons"])) for tid, item in gff.items()}
    batches = []
    for variant in sorted(variants, key=lambda item: item[1]):
        _, pos, ref, _ = variant
        touched = {tid for tid, (low, high) in spans.items()
                   if pos <= high + NEAR and pos + len(ref) - 1 >= low - NEAR}
        for batch in batches:
            if not touched & batch[1]:
                batch[0].append(variant)
                batch[1].update(touched)
                break
        else:
            batches.append([[variant], set(touched)])
    return [batch for batch, _ in batches]


def consensus_sequences(genome, contig, length, gffread_gff3, variants, workdir):
    """``{(variant id, transcript id): (alternative RNA, alternative protein)}`` from the consensus pipeline.

    Per batch: ``bcftools consensus -c`` writes the alternative genome and its chain; ``CrossMap bed``
    lifts every exon and CDS segment (the pieces of a split feature merged again: lowest start,
    highest end; a feature that does not map is dropped); ``gffread --adj-stop -w -y`` writes the RNA
    and the protein (terminal stop dropped, '.' for internal stops turned into '*').
    """
    gff = read_gff3(gffread_gff3)
    results = {}
    for number, batch in enumerate(_batches(variants, gff)):
        folder = os.path.join(workdir, f"batch{number}")
        os.makedirs(folder, exist_ok=True)
        vcf = os.path.join(folder, "v.vcf")
        write_vcf(vcf, contig, length, batch)
        _run("bgzip", "-f", vcf)
        _run("tabix", "-f", "-p", "vcf", vcf + ".gz")
        alt_fa = os.path.join(folder, "alt.fa")
        chain = os.path.join(folder, "v.chain")
        _run("bcftools", "consensus", "-f", genome, "-c", chain, "-o", alt_fa, vcf + ".gz")
        bed = os.path.join(folder, "features.bed")
        with open(bed, "w") as out:
            for tid, item in gff.items():
                strand = item["line"][6]
                for index, (start, end) in enumerate(item["exons"]):
                    out.write(f"{contig}\t{start - 1}\t{end}\t{tid}|exon|{index}|.\t0\t{strand}\n")
                for index, (start, end, phase) in enumerate(item["cds"]):
                    out.write(f"{contig}\t{start - 1}\t{end}\t{tid}|CDS|{index}|{phase}\t0\t{strand}\n")
        lifted_bed = os.path.join(folder, "lifted.bed")
        _run("CrossMap", "bed", chain, bed, lifted_bed)
        pieces = collections.OrderedDict()
        with open(lifted_bed) as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                name = fields[3]
                start, end = int(fields[1]), int(fields[2])
                if name in pieces:
                    old = pieces[name]
                    pieces[name] = (fields[0], min(old[1], start), max(old[2], end), fields[5])
                else:
                    pieces[name] = (fields[0], start, end, fields[5])
        lifted = collections.OrderedDict()
        for name, (chrom, start, end, strand) in pieces.items():
            tid, kind, _, phase = name.split("|")
            lifted.setdefault(tid, {"strand": strand, "exon": [], "CDS": []})[kind].append((start + 1, end, phase))
        gff_out = os.path.join(folder, "lifted.gff3")
        with open(gff_out, "w") as out:
            out.write("##gff-version 3\n")
            for tid, item in lifted.items():
                if not item["exon"]:
                    continue
                low = min(s for s, _, _ in item["exon"])
                high = max(e for _, e, _ in item["exon"])
                out.write(f"{contig}\toracle\ttranscript\t{low}\t{high}\t.\t{item['strand']}\t.\tID={tid}\n")
                for start, end, _ in sorted(item["exon"]):
                    out.write(f"{contig}\toracle\texon\t{start}\t{end}\t.\t{item['strand']}\t.\tParent={tid}\n")
                for start, end, phase in sorted(item["CDS"]):
                    out.write(f"{contig}\toracle\tCDS\t{start}\t{end}\t.\t{item['strand']}\t{phase}\tParent={tid}\n")
        rna_fa, protein_fa = os.path.join(folder, "rna.fa"), os.path.join(folder, "protein.fa")
        _run("gffread", "-g", alt_fa, "--adj-stop", "-w", rna_fa, "-y", protein_fa, gff_out, cwd=folder)
        rnas, proteins = read_fasta(rna_fa), read_fasta(protein_fa)
        for variant_id, pos, ref, _ in batch:
            for tid in gff:
                low, high = (min(s for s, _ in gff[tid]["exons"]), max(e for _, e in gff[tid]["exons"]))
                if pos <= high + NEAR and pos + len(ref) - 1 >= low - NEAR:
                    results[(variant_id, tid)] = (rnas.get(tid, ""), proteins.get(tid, "").replace(".", "*"))
    return results
