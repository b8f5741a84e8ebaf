"""Foreign weight files into our checkpoint format.

* :mod:`.layout`: find each component of a foreign state dict by its key signature and shapes;
* :mod:`.key_mapping`: table-driven renaming of every tensor, with every unmatched key reported;
* :mod:`.convert`: the official InstaDeepAI/isoformer release; :mod:`.pretrained`: ``isoformer init`` from
  the encoders' own folders;
* :mod:`.self_check`: each converted encoder against a reference built from the source tensors;
* :mod:`.encoders`: per encoder (by name), its key rows, pretrained-folder fields, key signature and reference.
"""
