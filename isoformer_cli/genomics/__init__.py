"""Readers of the user's inputs: GTF/GFF3 annotation, genome FASTA, contig-name aliases.

Never imports torch (see DESIGN.md section 4).
"""
