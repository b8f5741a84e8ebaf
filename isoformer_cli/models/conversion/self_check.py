"""Self-checks of a new checkpoint: each encoder against a reference built from the same source tensors.

After ``isoformer convert`` and ``isoformer init`` fill a model, every encoder that came from a source file is
run on a fixed random input (seeded, so every run checks the same thing) and compared with a reference
implementation loaded from the *source* tensors under their *source* names, not through our key mapping
(:meth:`~isoformer_cli.models.conversion.encoders.base.EncoderConversion.reference_encoder`):

* ESM-2: ``transformers.EsmModel`` with eager attention;
* Enformer: against its source layout. A new Enformer encoder, built with what the source states, loaded
  strictly with the source tensors under their own names (``_trunk.N`` duplicates folded onto the named
  modules; :mod:`isoformer_cli.models.conversion.encoders.enformer`). enformer-pytorch is not used at run time
  (a test oracle only): the trunk's arithmetic is checked against it by the tests, not here;
* NT-v2: our NT-v2 module filled directly from the source's names (NT-v2 has no implementation outside
  remote code).

What the comparison catches: a tensor mapped onto the wrong place (swapped layers, a wrong prefix), a
configuration field that changes the computation (heads, eps, token dropout, a wrong rotary base), a dtype
or save problem. Comparison: float32 on the CPU, over real (unpadded) positions, ``max |ours - reference|
<= ATOL + RTOL * max |reference|``. Both sides compute the same function, so they agree to rounding
(about 1e-6 relative); a misplaced tensor gives differences of order one. The command then fails and
writes nothing (:class:`CheckpointError`); the results go into the checkpoint's provenance either way.

The references are built with what the source states about itself (``reference_config``): for ``convert``,
the official config.json and the shapes, so a ``--set`` that departs from them fails the check; fields the
source does not state take the new model's values. ``init`` compares the folders' config.json field by
field before loading, and checks against its own configuration.
"""

import logging
import math
from dataclasses import dataclass

import torch

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.conversion.encoders import conversion_for

log = logging.getLogger(__name__)

#: Tolerance of the self-check: absolute part and part relative to the largest reference value.
ATOL = 1e-4
RTOL = 1e-3
#: Seed of the random inputs (fixed: every run checks the same inputs).
SEED = 20240614


@dataclass
class SelfCheck:
    """The result of one encoder's self-check."""

    component: str
    reference: str
    inputs: str
    max_difference: float
    bound: float

    @property
    def passed(self):
        return self.max_difference <= self.bound

    def describe(self):
        verdict = "passed" if self.passed else "FAILED"
        return (f"{verdict}: max |difference| {self.max_difference:.2e} (bound {self.bound:.2e}) against "
                f"{self.reference}, on {self.inputs}")


def _encode(model, modality, input_ids, attention_mask):
    """Our model's encoder output (B, N, D) and its mask of real positions (B, N) or None."""
    if modality == "dna":
        return model.encode_dna(input_ids, attention_mask)
    if modality == "rna":
        return model.encode_rna(input_ids, attention_mask), attention_mask
    return model.encode_protein(input_ids, attention_mask), attention_mask


def check_encoders(model, sources, reference_config=None):
    """Run every encoder of ``model`` named in ``sources`` against its reference; return the :class:`SelfCheck` list.

    Args:
        model: the new :class:`IsoformerModel` (eval mode; float32 is expected).
        sources: ``{modality: {name in the encoder's own layout: tensor}}``, the source tensors of each
            encoder that was filled from a file.
        reference_config: the configuration the references are built with: what the source itself states
            (so a setting that departs from it shows); default the model's own.

    Raises:
        CheckpointError: an encoder disagrees with its reference beyond the tolerance (all results in the
            message), or the source tensors do not load into the reference.
    """
    config = model.config
    reference_config = reference_config or config
    results = []
    for modality, tensors in sources.items():
        conversion = conversion_for(config.encoder(modality))
        reference = conversion.reference_encoder(reference_config, tensors)
        component = f"{modality}_encoder"
        if reference is None:
            log.info("self-check of the %s: no reference implementation, skipped", component)
            continue
        generator = torch.Generator().manual_seed(SEED)
        input_ids, attention_mask = conversion.check_inputs(config, generator)
        with torch.no_grad():
            ours, mask = _encode(model, modality, input_ids, attention_mask)
            theirs = reference.run(input_ids, attention_mask)
        if ours.shape != theirs.shape:
            raise CheckpointError(
                f"self-check of the {component}: output shape {tuple(ours.shape)} but the reference gives "
                f"{tuple(theirs.shape)}; nothing was written"
            )
        ours, theirs = ours.float(), theirs.float()
        if mask is not None:
            ours, theirs = ours[mask], theirs[mask]
        difference = float((ours - theirs).abs().max()) if ours.numel() else 0.0
        if math.isnan(difference):  # NaN on either side
            difference = float("inf")
        bound = ATOL + RTOL * float(theirs.abs().max()) if theirs.numel() else ATOL
        shape = "x".join(str(size) for size in input_ids.shape)
        result = SelfCheck(component, reference.description, f"random input ids {shape} (seed {SEED})", difference,
                           bound)
        log.info("self-check of the %s %s", component, result.describe())
        results.append(result)
    failed = [result for result in results if not result.passed]
    if failed:
        shown = "; ".join(f"{result.component} {result.describe()}" for result in failed)
        raise CheckpointError(
            f"self-check failed: {shown}. The new checkpoint's encoder does not compute what its source computes: "
            "a tensor is mapped to the wrong place or a --set/configuration value changes the architecture; "
            "nothing was written"
        )
    return results


def metadata_of(results):
    """``{"self_check_<component>": description}`` for a checkpoint's provenance header."""
    return {f"self_check_{result.component}": result.describe() for result in results}
