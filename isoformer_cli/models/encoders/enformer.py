"""Enformer as IsoFormer's DNA encoder (the official choice).

Input: the TSS-centred DNA window as one id per base, ``A0 C1 G2 T3 N4`` (N becomes an all-zero one-hot),
``-1`` for padding (one-hot 0.25 everywhere). Every window has the model's length, so batches are stacked
without a mask. Output: ``(B, target_length, 2 * enformer_dim)`` embeddings of 2**num_downsamples-bp bins
over the centre of the window (896 bins of 128 bp = 114,688 bp at full size; the TSS in bin 448).

State-dict spelling. ``enformer_pytorch.Enformer`` registers ``stem``, ``conv_tower``, ``transformer``,
``crop_final`` and ``final_pointwise`` and then registers the same modules again inside its ``_trunk``
``nn.Sequential``, so a plain ``state_dict()`` names every trunk tensor twice (``stem.0.weight`` and
``_trunk.1.0.weight``), which safetensors refuses (shared storage). :class:`EnformerDNAEncoder` keeps
``_trunk`` as a plain, unregistered attribute: ``Enformer.forward`` still runs through it, but every tensor is
registered, saved and loaded once, under the named spelling ``dna_encoder.enformer.{stem,conv_tower,
transformer,final_pointwise}.*``. :func:`enformer_key_rows` folds the ``_trunk.N.`` spelling and drops the
human/mouse output heads when another checkpoint is read.
"""

from __future__ import annotations

import torch
from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.models.encoders.base import LayerGroups, PretrainedFolder, SequenceEncoder
from isoformer_cli.models.key_mapping import IGNORE, MappingRow
from isoformer_cli.models.tokenizers import DnaTokenizer

#: Key prefixes (relative to an ``Enformer`` module) that our checkpoints never contain: the duplicate trunk
#: spelling and the original human/mouse output heads.
ENFORMER_DUPLICATE_KEY_PREFIXES: tuple[str, ...] = ("_trunk.", "_heads.")

# enformer-pytorch registers stem, conv_tower, transformer and final_pointwise, then registers them again
# inside its _trunk Sequential at these positions.
ENFORMER_TRUNK_POSITIONS = ((1, "stem"), (2, "conv_tower"), (4, "transformer"), (6, "final_pointwise"))

# (field of an enformer-pytorch config.json, is it part of the architecture?) for `isoformer init`.
ENFORMER_FOLDER_FIELDS = (
    ("dim", True),
    ("depth", True),
    ("heads", True),
    ("attn_dim_key", True),
    ("num_downsamples", True),
    ("dim_divisible_by", True),
    ("use_convnext", True),
    ("target_length", False),
    ("use_tf_gamma", False),
)


def library_config(config):
    """The `enformer_pytorch.EnformerConfig` of the trunk described by ``config`` (no output heads)."""
    from enformer_pytorch import EnformerConfig

    return EnformerConfig(
        dim=config.enformer_dim,
        depth=config.enformer_depth,
        heads=config.enformer_heads,
        output_heads={},
        target_length=config.enformer_target_length,
        attn_dim_key=config.enformer_attn_dim_key,
        dropout_rate=config.enformer_dropout_rate,
        attn_dropout=config.enformer_attn_dropout,
        pos_dropout=config.enformer_pos_dropout,
        use_checkpointing=config.enformer_use_checkpointing,
        num_downsamples=config.enformer_num_downsamples,
        dim_divisible_by=config.enformer_dim_divisible_by,
        use_tf_gamma=config.enformer_use_tf_gamma,
    )


class EnformerDNAEncoder(nn.Module):
    """Enformer trunk (``return_only_embeddings``, no output heads) over one-hot DNA.

    Attributes:
        enformer: the ``Enformer`` module; its ``_trunk`` is unregistered (see the module docstring).
        output_size: 2 x enformer_dim (3,072 at full size).
    """

    def __init__(self, config):
        super().__init__()
        from enformer_pytorch import Enformer

        enformer = Enformer(library_config(config))
        trunk = enformer._modules.pop("_trunk")
        # Same module objects as stem/conv_tower/...; kept reachable for Enformer.forward, not registered.
        object.__setattr__(enformer, "_trunk", trunk)
        self.enformer = enformer
        self.output_size = 2 * config.enformer_dim

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """input_ids (B, L) long with A0 C1 G2 T3 N4 (or -1 padding) -> ((B, bins, 2 x dim), None).

        ``attention_mask`` is not used (Enformer has no padding mask; every window has the full length).
        """
        from enformer_pytorch.data import seq_indices_to_one_hot

        if input_ids.dtype != torch.long:
            raise InputError(f"DNA input ids must be torch.long, got {input_ids.dtype}")
        if input_ids.numel() and (int(input_ids.min()) < -1 or int(input_ids.max()) > 4):
            raise InputError(
                "DNA input ids must be A0 C1 G2 T3 N4 (or -1 for padding); found values outside -1..4"
            )
        # One-hot here rather than inside Enformer so it follows the model dtype (bf16 weights work too).
        dtype = self.enformer.stem[0].weight.dtype
        one_hot = seq_indices_to_one_hot(input_ids).to(dtype)
        return self.enformer(one_hot, return_only_embeddings=True), None


class _DnaIdTokenizer:
    """One id per base (no special tokens, never truncated: the window has the model's length)."""

    def __init__(self):
        self._tokenizer = DnaTokenizer()

    def encode(self, sequence, name="DNA window"):
        return self._tokenizer.encode(sequence), False


def enformer_key_rows(source_prefix: str, target_prefix: str) -> tuple:
    """Rows for an enformer-pytorch ``Enformer`` state dict found under ``source_prefix`` (a regular expression).

    Drops the original human/mouse output heads and folds each ``_trunk.N.`` spelling onto its named module,
    so both spellings land on the same tensor of ours.
    """
    heads = "Enformer human/mouse output heads (not used by IsoFormer)"
    rows = [MappingRow(rf"^{source_prefix}_heads\.", IGNORE, heads)]
    for position, name in ENFORMER_TRUNK_POSITIONS:
        rows.append(MappingRow(rf"^{source_prefix}_trunk\.{position}\.", f"{target_prefix}{name}."))
    rows.append(MappingRow(rf"^{source_prefix}", target_prefix))
    return tuple(rows)


class Enformer(SequenceEncoder):
    """The Enformer DNA encoder (``dna_encoder_type="enformer"``); reads the ``enformer_*`` fields."""

    name = "enformer"
    modality = "dna"
    label = "Enformer"
    inner_prefix = "enformer."
    fixed_length = True
    summary_type = "enformer"

    def build(self, config):
        return EnformerDNAEncoder(config)

    def validate(self, config):
        downsample = 2**config.enformer_num_downsamples
        if config.dna_length % downsample:
            raise InputError(
                f"invalid IsoFormer configuration: dna_length={config.dna_length} is not a multiple of "
                f"2**enformer_num_downsamples={downsample}"
            )
        if config.enformer_target_length > config.dna_length // downsample:
            raise InputError(
                f"invalid IsoFormer configuration: enformer_target_length={config.enformer_target_length} exceeds "
                f"the {config.dna_length // downsample} bins of a {config.dna_length}-bp window"
            )

    def width(self, config):
        return 2 * config.enformer_dim

    def positions(self, config):
        if config.enformer_target_length == -1:
            return config.dna_length // 2**config.enformer_num_downsamples
        return config.enformer_target_length

    def max_input_length(self, config):
        return config.dna_length

    def output_length(self, config, input_length):
        return self.positions(config)

    def random_token_range(self, config):
        return 0, 4

    # Measured at the official size (benchmarks/memory_model.py): 13.8 kB per base (fp32) for a width of 1,536.
    bytes_per_position_and_width = {"fp32": 9.0, "bf16": 5.5}
    # The convolution tower at full resolution dominates, not the transformer's depth: one "layer". Measured
    # fp32 forward + backward: 41.4 B official, 67.2 B tiny (checkpointed transformer: 37.0 B, 54.1 B); the
    # larger figures are kept.
    training_bytes_per_position_and_width = (0.0, 67.2)
    checkpointed_bytes_per_position_and_width = (0.0, 54.1)

    def memory_width(self, config):
        return config.enformer_dim

    def tokenizer(self, config, truncation="keep_start"):
        return _DnaIdTokenizer()

    def pad_id(self, config):
        return -1

    def layer_groups(self, module):
        enformer = module.enformer
        return LayerGroups(before=[enformer.stem, enformer.conv_tower], layers=list(enformer.transformer),
                           after=[enformer.final_pointwise])

    def parameter_groups(self, module):
        def count(*modules):
            return sum(p.numel() for part in modules for p in part.parameters())

        enformer = module.enformer
        return {
            "stem_and_conv_tower": count(enformer.stem, enformer.conv_tower),
            "transformer": count(enformer.transformer),
            "final_pointwise": count(enformer.final_pointwise),
        }

    def summary(self, config):
        return {
            "type": self.summary_type,
            "dim": config.enformer_dim,
            "depth": config.enformer_depth,
            "heads": config.enformer_heads,
            "downsamples": config.enformer_num_downsamples,
            "bin_bp": 2**config.enformer_num_downsamples,
            "window_bp": config.dna_length,
            "positions": self.positions(config),
            "output_width": self.width(config),
        }

    def describe(self, summary):
        return (
            f"enformer (dim {summary['dim']}, depth {summary['depth']}, {summary['heads']} heads), "
            f"{summary['window_bp']:,} bp -> {summary['positions']} bins of {summary['bin_bp']} bp "
            f"x {summary['output_width']}"
        )

    def key_rows(self, source_prefix, target_prefix):
        return enformer_key_rows(source_prefix, target_prefix)

    def pretrained_folder(self, config):
        reference = library_config(config).to_dict()
        reference.setdefault("use_convnext", False)
        prefix = f"dna_encoder.{self.inner_prefix}"
        return PretrainedFolder(
            label="DNA (enformer-pytorch)", model_type="enformer", fields=ENFORMER_FOLDER_FIELDS,
            reference=reference, defaults={"use_convnext": False}, rows=self.key_rows("", prefix), prefix=prefix,
        )


ENFORMER = Enformer()
