"""The protein of a CDS: one rule for the reference triple and for an allele's alternative triple.

Coordinates: ``CdsLayout`` spans are 0-based half-open on the spliced RNA (5'->3'); *coding offsets* count
bases of the in-frame coding sequence (:meth:`~isoformer_cli.triples.cds.CdsLayout.sequence`, phase removed).

**Reference** (:func:`translate_layout`): the annotated coding sequence translated from its first complete
codon to the annotated end; the terminal stop is dropped, Sec codons become U, any other stop stays in the
protein as ``*`` (flagged ``internal_stop`` by the builder). Translation does not stop at an internal stop: the
annotation says the CDS goes on.

**Alternative** (:func:`alternative_protein`): the same rule on the lifted CDS of the alternative RNA, so only
the allele's own change differs from the reference:

* a stop codon that the reference has as an internal stop, at a codon the allele leaves in place (before the
  changed bases, or after them when the frame is kept), is read through as the reference reads it;
* any other stop (one the allele creates, or one in a shifted frame) ends the protein (stop gained);
* the protein ends at the annotated end, as the reference does, unless the allele reaches it: when it shifts
  the frame or removes the terminal stop, translation reads on into the 3' UTR to the first such stop, or to
  the end of the RNA when none comes (stop lost, frameshift).
"""

from isoformer_cli.triples.translation import translate_cds


def translate_layout(layout, rna, code, extra=""):
    """The :class:`~isoformer_cli.triples.translation.Translation` of ``layout`` on ``rna`` (module
    docstring), with ``extra`` bases appended after the annotated coding sequence (the 3' UTR read on)."""
    return translate_cds(layout.sequence(rna) + extra, code, selenocysteine_codons=layout.selenocysteine_codons,
                         five_prime_complete=layout.five_prime_complete)


def _common_prefix(left, right):
    limit = min(len(left), len(right))
    index = 0
    while index < limit and left[index] == right[index]:
        index += 1
    return index


def alternative_protein(reference_layout, reference_rna, layout, rna, code):
    """``(protein, coding length)`` of the alternative CDS ``layout`` on ``rna`` (module docstring).

    Args:
        reference_layout, reference_rna: the reference transcript's CDS layout and spliced RNA.
        layout, rna: the lifted CDS layout on the alternative RNA (same start codon), and that RNA.
        code: the genetic code.

    Returns the protein (no terminal stop) and the number of coding bases it spans, its stop included when one
    ends it (the end of the RNA bounds it when translation reads on without one).
    """
    reference_cds = reference_layout.sequence(reference_rna)
    cds = layout.sequence(rna)
    reference = translate_layout(reference_layout, reference_rna, code)
    reference_residues = reference.protein  # internal stops as '*', terminal one dropped
    annotated = translate_layout(layout, rna, code)
    change = len(cds) - len(reference_cds)
    frame_kept = change % 3 == 0
    read_on = not frame_kept or (reference.terminal_stop and not annotated.terminal_stop)
    extra = rna[layout.end:] if read_on else ""
    translation = translate_layout(layout, rna, code, extra) if read_on else annotated
    residues = translation.protein + ("*" if translation.terminal_stop else "")
    # Codons the allele leaves in place: those inside the bases before its change, and (frame kept) inside
    # the bases after it, which sit ``change`` bases later than in the reference.
    prefix = _common_prefix(reference_cds, cds)
    suffix = _common_prefix(reference_cds[::-1], cds[::-1]) if frame_kept else 0
    suffix = min(suffix, len(cds) - prefix, len(reference_cds) - prefix)

    def reference_codon(index):
        """The reference codon index of alternative codon ``index`` when the allele leaves it in place."""
        start = 3 * index
        if start + 3 <= prefix:
            return index
        if suffix and start >= len(cds) - suffix and start + 3 <= len(cds):
            return index - change // 3
        return None

    end = len(residues)
    stop = residues.find("*")
    while stop != -1:
        old = reference_codon(stop)
        if old is None or old >= len(reference_residues) or reference_residues[old] != "*":
            end = stop
            break
        stop = residues.find("*", stop + 1)
    protein = residues[:end]
    coding = 3 * (end + 1) if end < len(residues) else 3 * len(residues)
    return protein, min(coding, len(cds) + len(extra))
