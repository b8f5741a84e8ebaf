"""Our checkpoint format: a folder with ``config.json`` (an IsoformerConfig) and ``model.safetensors`` (every
parameter and persistent buffer of the model, one name per tensor).

* :mod:`.schema`: the file names and the fields ``config.json`` may hold (also ``--set KEY=VALUE``);
* :mod:`.check`: the folder checked without reading tensor data (:class:`~.check.CheckedCheckpoint`);
* :mod:`.load`: a checked folder loaded into a model; :mod:`.save`: a model written atomically;
* :mod:`.weights`: weight files (safetensors, torch pickles) and matching tensors to a module;
* :mod:`.summary`: what ``isoformer inspect`` prints.
"""
