"""Converting Enformer: enformer-pytorch's key layout and config fields, finding an Enformer in a foreign state
dict, and the source-layout reference of its self-check (:class:`EnformerConversion`, registered as
``"enformer"``).

All of it works on enformer-pytorch's state-dict layout, which is also ours (``stem``, ``conv_tower``,
``transformer``, ``final_pointwise``), possibly with each trunk tensor named a second time under ``_trunk.N.``
and with human/mouse output heads under ``_heads.``. Every key is first brought to the named spelling by
:func:`enformer_key_rows`, so nothing here depends on the positions
inside ``_trunk`` or on the library itself: enformer-pytorch is a test oracle, never imported at run time.

Finding (:func:`find_enformer`): anchored on the stem's first convolution, the only Enformer tensor that reads
the 4-letter one-hot (``(dim/2, 4, 15)``); the sizes come from the shapes (dim from the stem, heads and key
width from the first attention's ``rel_content_bias``, depth and downsamplings from the block counts).

Reference (:func:`source_layout_reference`): "Enformer against its source layout". A fresh Enformer encoder is
built with the configuration the *source* states and filled strictly with the source tensors under their own
names (only the ``_trunk.N.`` duplicates folded onto the named modules they duplicate), not through the
conversion's key mapping. Disagreement with the converted encoder means that mapping put a tensor in the wrong
place, or that a ``--set``/configuration value changed the computation. It does not re-derive the trunk's
arithmetic: that is tested against enformer-pytorch in the test suite.
"""

import re

import torch

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.checkpoint.weights import fill_module
from isoformer_cli.models.conversion.encoders.base import (
    EncoderConversion,
    FoundComponent,
    PretrainedFolder,
    ReferenceEncoder,
)
from isoformer_cli.models.conversion.key_mapping import IGNORE, MappingRow, map_key
from isoformer_cli.models.network.build import skip_weight_initialisation

#: Positions of the named trunk modules inside enformer-pytorch's ``_trunk`` ``nn.Sequential``: a key
#: ``_trunk.{position}.rest`` is the same tensor as ``{name}.rest``. Positions 0, 3 and 5 (layout changes
#: and the crop) hold no tensors.
TRUNK_SEQUENTIAL_POSITIONS: dict[int, str] = {1: "stem", 2: "conv_tower", 4: "transformer", 6: "final_pointwise"}

#: Key prefix of enformer-pytorch's human/mouse output heads, which the trunk does not have.
OUTPUT_HEADS_PREFIX = "_heads."

#: Key prefixes (relative to an enformer-pytorch ``Enformer`` module) that our checkpoints never contain:
#: the duplicate trunk spelling and the original human/mouse output heads.
ENFORMER_DUPLICATE_KEY_PREFIXES: tuple[str, ...] = ("_trunk.", OUTPUT_HEADS_PREFIX)

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


def library_fields(config) -> dict:
    """The trunk described by ``config`` in the field names of an enformer-pytorch ``config.json`` (the
    values a pretrained folder is compared with; ``use_convnext``: our trunk is the original, conv-block one)."""
    return {
        "dim": config.enformer_dim,
        "depth": config.enformer_depth,
        "heads": config.enformer_heads,
        "output_heads": {},
        "target_length": config.enformer_target_length,
        "attn_dim_key": config.enformer_attn_dim_key,
        "dropout_rate": config.enformer_dropout_rate,
        "attn_dropout": config.enformer_attn_dropout,
        "pos_dropout": config.enformer_pos_dropout,
        "use_checkpointing": config.enformer_use_checkpointing,
        "use_convnext": False,
        "num_downsamples": config.enformer_num_downsamples,
        "dim_divisible_by": config.enformer_dim_divisible_by,
        "use_tf_gamma": config.enformer_use_tf_gamma,
    }


def enformer_key_rows(source_prefix: str, target_prefix: str) -> tuple:
    """Rows for an enformer-pytorch ``Enformer`` state dict found under ``source_prefix`` (a regular expression).

    Drops the original human/mouse output heads and folds each ``_trunk.N.`` spelling onto its named module,
    so both spellings land on the same tensor of ours.
    """
    heads = "Enformer human/mouse output heads (not used by IsoFormer)"
    rows = [MappingRow(rf"^{source_prefix}_heads\.", IGNORE, heads)]
    for position, name in TRUNK_SEQUENTIAL_POSITIONS.items():
        rows.append(MappingRow(rf"^{source_prefix}_trunk\.{position}\.", f"{target_prefix}{name}."))
    rows.append(MappingRow(rf"^{source_prefix}", target_prefix))
    return tuple(rows)


#: The modules of the trunk that hold tensors, in the named spelling (ours and enformer-pytorch's).
NAMED_MODULES = ("stem", "conv_tower", "transformer", "final_pointwise")
# Every first key component an Enformer owns: the named modules, the duplicate spelling and the species heads.
_OWNED = (*NAMED_MODULES, "_trunk", "_heads")
# The stem's first convolution, in either spelling ("stem.0.weight" or "_trunk.<position>.0.weight").
_STEM_KEY = re.compile(r"^(?P<root>.*?)(?:stem|_trunk\.\d+)\.0\.weight$")


def enformer_layout_rows(root, target_prefix):
    """Mapping rows for an Enformer whose keys start with the literal ``root`` (which may be empty).

    The rows of :func:`enformer_key_rows`, restricted to the keys an Enformer owns (so an Enformer at the top
    level of a file claims nothing of its neighbours): species heads ignored, ``_trunk.N.`` folded onto the
    named modules, the named modules mapped under ``target_prefix``.
    """
    owned = "|".join(re.escape(name) for name in _OWNED)
    return enformer_key_rows(rf"{re.escape(root)}(?=(?:{owned})\.)", target_prefix)


def named_spelling(keys, root=""):
    """``{key: the key's name in the named spelling, relative to root}`` for the keys under ``root`` that an
    Enformer owns; the species heads map to None."""
    rows = enformer_layout_rows(root, "")
    names = {}
    for key in keys:
        target, _ = map_key(key, rows)
        if target is not False:
            names[key] = None if target is IGNORE else target
    return names


def _block_count(names, module):
    pattern = re.compile(rf"^{module}\.(\d+)\.")
    return len({match.group(1) for name in names if name and (match := pattern.match(name))})


def find_enformer(shapes):
    """Every Enformer trunk in ``shapes`` (``{key: shape}``), in either spelling, with or without species heads.

    Returns a list of dicts: ``root``, ``keys`` (every key it owns, heads included), ``spellings``
    (``"named"`` and/or ``"_trunk.N"``), ``species`` (names of the output heads) and ``fields`` (the
    ``enformer_*`` configuration fields its shapes reveal).
    """
    roots = sorted({match["root"] for key, shape in shapes.items()
                    if (match := _STEM_KEY.match(key)) and len(shape) == 3 and shape[1] == 4})
    found = []
    for root in roots:
        names = named_spelling(shapes, root)
        by_name = {name: shapes[key] for key, name in names.items() if name}
        stem = by_name.get("stem.0.weight")
        bias = by_name.get("transformer.0.0.fn.1.rel_content_bias")  # (1, heads, 1, key width)
        depth = _block_count(by_name, "transformer")
        if stem is None or len(stem) != 3 or stem[1] != 4 or bias is None or len(bias) != 4 or not depth:
            continue  # a 4-channel convolution that is not an Enformer stem
        keys = tuple(names)
        spellings = [spelling for spelling, present in (
            ("named", any(key.startswith(f"{root}stem.") for key in keys)),
            ("_trunk.N", any(key.startswith(f"{root}_trunk.") for key in keys))) if present]
        species = sorted({match.group(1) for key in keys
                          if (match := re.match(rf"^{re.escape(root)}_heads\.(\w+)\.", key))})
        found.append({
            "root": root, "keys": keys, "spellings": spellings, "species": species,
            "fields": {
                "enformer_dim": 2 * stem[0],
                "enformer_depth": depth,
                "enformer_heads": bias[1],
                "enformer_attn_dim_key": bias[3],
                # The stem halves the length once, every conv-tower stage once more.
                "enformer_num_downsamples": _block_count(by_name, "conv_tower") + 1,
            },
        })
    return found


def found_components(encoder, shapes):
    """:class:`FoundComponent` of every Enformer in ``shapes``, mapped under ``dna_encoder.<inner_prefix>``."""
    components = []
    for item in find_enformer(shapes):
        fields, root = item["fields"], item["root"]
        heads = f"; {'/'.join(item['species'])} output heads ignored" if item["species"] else ""
        components.append(FoundComponent(
            kind="dna_encoder", label=encoder.label, root=root, keys=item["keys"],
            rows=enformer_layout_rows(root, f"dna_encoder.{encoder.inner_prefix}"),
            fields=fields, width=2 * fields["enformer_dim"],
            sub_keys={key[len(root):]: key for key in item["keys"]},
            details=(f"dim {fields['enformer_dim']}, {fields['enformer_depth']} layers, "
                     f"{fields['enformer_heads']} heads, {' and '.join(item['spellings'])} spelling{heads}"),
            encoder=encoder,
        ))
    return components


def source_layout_reference(encoder, config, tensors):
    """The self-check reference: a new Enformer encoder built with ``config`` (what the source states) and filled,
    all or nothing, from ``tensors`` (``{name in enformer-pytorch's layout: tensor}``, either spelling).

    Raises:
        CheckpointError: the source tensors do not fill the reference exactly (a tensor missing, extra or of
            another shape).
    """
    names = named_spelling(tensors)
    named = {}
    for key, tensor in tensors.items():
        if key not in names:
            name = key  # not an Enformer name: left as it is, so that fill_module reports it as unexpected
        elif names[key] is None:
            continue  # species heads
        else:
            name = names[key]
        # Both spellings of one tensor carry the same values (the conversion plan refuses it otherwise).
        named[f"{encoder.inner_prefix}{name}"] = tensor
    with skip_weight_initialisation():  # every tensor is loaded next
        module = encoder.build(config).eval()
    fill_module(module, named, "Enformer self-check reference (source tensors in their own layout)")

    def run(input_ids, attention_mask):
        return module(input_ids, attention_mask)[0]

    return ReferenceEncoder(
        run, "a new Enformer built from the source's configuration and loaded with the source tensors under their "
             "own names (enformer-pytorch layout, _trunk.N folded)")


class EnformerConversion(EncoderConversion):
    """Enformer's conversion: enformer-pytorch folders, its signature in a foreign file, its reference."""

    def pretrained_folder(self, config):
        reference = library_fields(config)
        prefix = f"dna_encoder.{self.encoder.inner_prefix}"
        return PretrainedFolder(
            label="DNA (enformer-pytorch)", model_type="enformer", fields=ENFORMER_FOLDER_FIELDS,
            reference=reference, defaults={"use_convnext": False}, rows=enformer_key_rows("", prefix), prefix=prefix,
        )

    def find_in_checkpoint(self, shapes):
        return found_components(self.encoder, shapes)

    def reference_encoder(self, config, tensors):
        return source_layout_reference(self.encoder, config, tensors)

    def check_inputs(self, config, generator):
        # The shortest window that still fills the cropped output: target_length bins (or 4 without a crop).
        bins = config.enformer_target_length if config.enformer_target_length > 0 else 4
        length = bins * 2**config.enformer_num_downsamples
        return torch.randint(0, 5, (1, length), generator=generator), None


def trunk_key(key: str) -> str | None:
    """The `EnformerTrunk` key of one enformer-pytorch ``Enformer`` state-dict key.

    ``_trunk.{1,2,4,6}.rest`` -> ``{stem,conv_tower,transformer,final_pointwise}.rest``; ``_heads.*`` -> None
    (no counterpart); any other key is returned unchanged. Raises `CheckpointError` for a ``_trunk.N`` key
    at a position that holds no tensors.
    """
    if key.startswith(OUTPUT_HEADS_PREFIX):
        return None
    if key.startswith("_trunk."):
        position, _, rest = key[len("_trunk.") :].partition(".")
        name = TRUNK_SEQUENTIAL_POSITIONS.get(int(position)) if position.isdigit() else None
        if name is None or not rest:
            raise CheckpointError(
                f"{key}: not an Enformer trunk tensor (expected _trunk.N. with N in "
                f"{sorted(TRUNK_SEQUENTIAL_POSITIONS)})"
            )
        return f"{name}.{rest}"
    return key


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device == b.device and a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b.to(a.device))


def enformer_state_dict_to_trunk(state_dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The `EnformerTrunk` state dict inside an enformer-pytorch (or IsoFormer) state dict.

    Keys that do not start with ``prefix`` are skipped (``prefix="dna_encoder.enformer."`` selects the trunk
    of an IsoFormer checkpoint); the rest lose the prefix, output heads (``_heads.*``) are dropped and
    ``_trunk.N.`` spellings are renamed with `trunk_key`. When a tensor is spelled both ways the two must be
    equal, else `CheckpointError`. The result loads with ``EnformerTrunk.load_state_dict(..., strict=True)``.
    """
    converted: dict[str, torch.Tensor] = {}
    source_key: dict[str, str] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        ours = trunk_key(key[len(prefix) :])
        if ours is None:
            continue
        if ours in converted:
            if not _same_tensor(converted[ours], tensor):
                raise CheckpointError(
                    f"{source_key[ours]} and {key} are two spellings of the Enformer tensor {ours} "
                    "but hold different values; the checkpoint is inconsistent"
                )
            continue
        converted[ours] = tensor
        source_key[ours] = key
    return converted
