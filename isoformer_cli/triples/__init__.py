"""Pure-Python biology: from a parsed transcript and a genome to its DNA/RNA/protein triple.

Never imports torch. One module owns each convention: the TSS-centred DNA window (``dna_window``), the CDS in
transcript coordinates (``cds``), translation (``translation``), ORF calling (``orf``), sequence letters
(``sequence``); ``builder`` puts them together and ``source`` streams a run's triples.
"""
