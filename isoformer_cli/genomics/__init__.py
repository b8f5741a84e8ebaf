"""Readers of the user's inputs: GTF/GFF3 annotation, genome FASTA, contig-name aliases.

Never imports torch: the biology layers stay usable (and testable) without the model.
"""
