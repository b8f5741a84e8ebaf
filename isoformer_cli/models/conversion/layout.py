"""Find the components of an IsoFormer-format state dict by their key signatures and shapes.

The official ``pytorch_model.bin`` is a flat ``{key: tensor}`` dictionary whose top-level names have never
been documented. Rather than trusting one guessed table, :func:`detect_layout` recognises each component by
what its tensors look like, under whatever prefix the file uses:

* the encoders, by asking each encoder's conversion
  (:meth:`~isoformer_cli.models.conversion.encoders.base.EncoderConversion.find_in_checkpoint`): ESM-2 and
  NT-v2 by their ``[esm.]embeddings.word_embeddings.weight`` anchor and ``encoder.layer.N`` stack (NT-v2's
  gated feed-forward tells the two apart), Enformer by its stem convolution over the 4-letter one-hot in
  either spelling (named modules and/or enformer-pytorch's ``_trunk.N`` duplicates), with or without the
  human/mouse output heads; masked-LM heads, contact heads and species heads are recognised and ignored;
* the two cross-attention blocks: ``query``/``key``/``value``/``dense`` linears with biases under one prefix,
  ``query`` and ``dense`` square at the DNA width D, ``key``/``value`` reading width E. E says which block
  reads the RNA (NT-v2 width) and which the protein (ESM-2 width); when both widths are equal, a name that
  says ``rna``/``nt``/``nucleotide`` or ``prot``/``esm`` decides, and otherwise the file is refused with the
  rows to add by hand;
* the head: the one chain of two biased linears D -> H -> T left over (T, the number of tissues).

Each component becomes :class:`~isoformer_cli.models.conversion.key_mapping.MappingRow` rows onto our names, ordered
most specific prefix first, plus configuration fields read off its shapes (widths, depths, heads where a
tensor reveals them). Keys that no component claims are reported as unmatched by the conversion plan.
Rows from a ``--mapping`` file are tried before these; the keys they claim are left out of the detection,
and a component they fill is not searched for.
"""

import re
from dataclasses import dataclass, field

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.conversion.encoders import conversion_for
from isoformer_cli.models.conversion.encoders.base import FoundComponent
from isoformer_cli.models.conversion.key_mapping import MappingRow, map_key
from isoformer_cli.models.network.encoders import DNA_ENCODERS, PROTEIN_ENCODER, RNA_ENCODER

#: The components of the official architecture, in report order, with the prefix of our keys they fill.
COMPONENT_TARGETS = {
    "dna_encoder": "dna_encoder.",
    "rna_encoder": "rna_encoder.",
    "protein_encoder": "protein_encoder.",
    "rna_cross_attention": "aggregation.rna_cross_attention.",
    "protein_cross_attention": "aggregation.protein_cross_attention.",
    "head": "head.",
}
_CROSS_ATTENTION_PARTS = ("query", "key", "value", "dense")
_NAME_HINTS = {
    "rna_cross_attention": re.compile(r"rna|(^|[._])nt([._]|$)|nucleotide", re.IGNORECASE),
    "protein_cross_attention": re.compile(r"prot|esm|amino", re.IGNORECASE),
}


@dataclass
class Layout:
    """What :func:`detect_layout` found.

    Attributes:
        components: ``{kind: FoundComponent}`` (kinds of :data:`COMPONENT_TARGETS`) whose rows are used.
        user_filled: kinds the ``--mapping`` rows fill.
        fields: configuration fields read off the shapes (``dna_encoder_type`` and ``n_tissues`` included).
        sources: ``{encoder kind: FoundComponent}`` of every encoder found, also those the rows map: where the
            self-check references read the source tensors from.
    """

    components: dict = field(default_factory=dict)
    user_filled: tuple = ()
    fields: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    @property
    def rows(self):
        """The detected mapping rows, most specific (longest) prefix first."""
        ordered = sorted(self.components.values(), key=lambda component: -len(component.root))
        return tuple(row for component in ordered for row in component.rows)

    def missing(self):
        """Kinds of the architecture neither detected nor left to the user's rows (without a DNA encoder, only
        it: the aggregation blocks and the head are recognised by its width)."""
        missing = [kind for kind in COMPONENT_TARGETS if kind not in self.components and kind not in self.user_filled]
        if "dna_encoder" in missing and "dna_encoder_type" not in self.fields:
            return [kind for kind in missing if kind.endswith("_encoder")]
        return missing

    def report(self):
        """One line per component: what was found where."""
        lines = []
        for kind in COMPONENT_TARGETS:
            if kind in self.components:
                component = self.components[kind]
                where = f"'{component.root}'" if component.root else "the top level"
                lines.append(f"{kind}: {component.label} at {where} ({component.details})")
            elif kind in self.user_filled:
                lines.append(f"{kind}: from your --mapping rows")
        return lines

    def mapping_text(self):
        """The detected rows in ``--mapping`` file format (tab-separated; ``-`` ignores), for editing."""
        lines = ["# rows found by isoformer convert; a --mapping file with edited rows takes precedence"]
        for row in self.rows:
            lines.append(f"{row.pattern}\t{'-' if row.replacement is None else row.replacement}")
        return "\n".join(lines) + "\n"


def _user_filled(shapes, user_rows):
    """(keys claimed by the user's rows, kinds their targets fill, ``{our key: shape}`` of what they map)."""
    claimed, kinds, mapped = set(), set(), {}
    for key in shapes:
        target, _ = map_key(key, user_rows)
        if target is False:
            continue
        claimed.add(key)
        if target:
            mapped[target] = tuple(shapes[key])
            for kind, prefix in COMPONENT_TARGETS.items():
                if target.startswith(prefix):
                    kinds.add(kind)
    return claimed, kinds, mapped


def _single(kind, candidates):
    if len(candidates) > 1:
        where = ", ".join(f"'{c.root}'" for c in candidates)
        raise CheckpointError(
            f"found {len(candidates)} candidates for the {kind} ({where}); say which one with --mapping rows "
            f"(see --list-keys)"
        )
    return candidates[0] if candidates else None


def detect_layout(shapes, user_rows=()):
    """Find every component of ``shapes`` (``{key: shape}``); returns a :class:`Layout`.

    With ``user_rows`` (a ``--mapping`` file): they are tried first, so they decide where the keys they
    claim go. Components are still searched among all keys, so their sizes and the source names the
    self-check references read stay those of the file; only when that search is ambiguous (what the rows
    are usually for) is it repeated without the keys the rows claim, leaving the components they fill to
    them.

    Raises:
        CheckpointError: a component is ambiguous (two candidates, or two cross-attention blocks that cannot be
            told apart); what is missing is left to the caller (:meth:`Layout.missing`).
    """
    user_rows = tuple(user_rows)
    claimed, user_kinds, user_mapped = _user_filled(shapes, user_rows)
    shapes = {key: tuple(shape) for key, shape in shapes.items()}
    try:
        found = _find_components(shapes)
    except CheckpointError:
        if not user_rows:
            raise
        found = None
    if found is None:
        # Sizes of what the rows fill, read off the same signatures under our own names.
        try:
            theirs = _find_components(user_mapped, skip=set(COMPONENT_TARGETS) - user_kinds)
        except CheckpointError:
            theirs = {}
        remaining = {key: shape for key, shape in shapes.items() if key not in claimed}
        found = _find_components(remaining, skip=user_kinds,
                                 widths={kind: component.width for kind, component in theirs.items()})
        extra_fields = {}
        for component in theirs.values():
            extra_fields.update(component.fields)
        if "head" in user_kinds and "dna_encoder" in {**found, **theirs}:
            head = _find_head(user_mapped, {**theirs, **found}["dna_encoder"].width)
            if head is not None:
                extra_fields.update(head.fields)
        if "dna_encoder" in theirs:
            extra_fields["dna_encoder_type"] = theirs["dna_encoder"].encoder.name
    else:
        extra_fields = {}
    # A component whose every key the rows claim is theirs in the report (its sizes still count).
    by_rows = {kind for kind, component in found.items() if component.keys and set(component.keys) <= claimed}
    layout = Layout(user_filled=tuple(sorted(user_kinds - (set(found) - by_rows))))
    for component in found.values():
        layout.fields.update(component.fields)
        if component.kind not in by_rows:
            layout.components[component.kind] = component
    layout.sources = {kind: component for kind, component in found.items() if kind.endswith("_encoder")}
    if "dna_encoder" in found:
        layout.fields["dna_encoder_type"] = found["dna_encoder"].encoder.name
    layout.fields.update(extra_fields)
    return layout


def _find_components(shapes, skip=(), widths=None):
    """``{kind: FoundComponent}`` of the components in ``shapes`` (``{key: shape}``), kinds in ``skip`` left out.

    ``widths`` gives the widths of components found elsewhere (``{kind: width}``), for the blocks that need them.
    """
    remaining = dict(shapes)
    found = {}
    widths = dict(widths or {})

    def take(component):
        found[component.kind] = component
        widths[component.kind] = component.width
        for key in component.keys:
            remaining.pop(key, None)

    if "dna_encoder" not in skip:
        candidates = [c for encoder in DNA_ENCODERS.values()
                      for c in conversion_for(encoder).find_in_checkpoint(remaining)]
        component = _single("DNA encoder", candidates)
        if component is not None:
            take(component)
    for kind, encoder in (("rna_encoder", RNA_ENCODER), ("protein_encoder", PROTEIN_ENCODER)):
        if kind not in skip:
            component = _single(f"{encoder.label} encoder", conversion_for(encoder).find_in_checkpoint(remaining))
            if component is not None:
                take(component)
    dna_width = widths.get("dna_encoder")
    if dna_width is None:
        return found
    wanted = [kind for kind in ("rna_cross_attention", "protein_cross_attention") if kind not in skip]
    if wanted:
        for component in _find_cross_attention(remaining, dna_width, widths, wanted):
            take(component)
    if "head" not in skip:
        # Groups shaped like a cross-attention block (even one missing a tensor) are no head candidates.
        blocks = {key[: -len("query.weight")] for key in remaining if key.endswith("query.weight")
                  and key[: -len("query.weight")] + "key.weight" in remaining}
        candidates = {key: shape for key, shape in remaining.items()
                      if not any(key.startswith(root) for root in blocks)}
        component = _find_head(candidates, dna_width)
        if component is not None:
            take(component)
    return found


def _linears(shapes):
    """``{root: (out, in)}`` of every ``root + weight`` (2-D) with a ``root + bias`` of matching size."""
    found = {}
    for key, shape in shapes.items():
        if key.endswith("weight") and len(shape) == 2:
            root = key[: -len("weight")]
            if shapes.get(root + "bias") == (shape[0],):
                found[root] = shape
    return found


def _cross_attention_blocks(shapes, query_width):
    """``[(root, context width)]`` of every group of ``query``/``key``/``value``/``dense`` biased linears under one
    prefix, with ``query`` and ``dense`` square at ``query_width`` and ``key``/``value`` reading the same width."""
    linears = _linears(shapes)
    blocks = []
    for root in sorted({key[: -len("query.")] for key in linears if key.endswith("query.")}):
        parts = {part: linears.get(f"{root}{part}.") for part in _CROSS_ATTENTION_PARTS}
        if any(shape is None for shape in parts.values()):
            continue
        if parts["query"] != (query_width, query_width) or parts["dense"] != (query_width, query_width):
            continue
        context = parts["key"][1]
        if parts["key"][0] != query_width or parts["value"] != (query_width, context):
            continue
        blocks.append((root, context))
    return blocks


def _find_cross_attention(shapes, query_width, context_widths, wanted):
    """Cross-attention blocks reading the DNA stream (width ``query_width``), assigned to RNA or protein."""
    blocks = _cross_attention_blocks(shapes, query_width)
    rna_width, protein_width = context_widths.get("rna_encoder"), context_widths.get("protein_encoder")
    assigned = {}
    for root, context in blocks:
        candidates = (("rna_cross_attention", rna_width), ("protein_cross_attention", protein_width))
        kinds = [kind for kind, width in candidates if width == context and kind in wanted]
        if len(kinds) > 1:
            named = [kind for kind in kinds if _NAME_HINTS[kind].search(root)]
            kinds = named if len(named) == 1 else kinds
        if len(kinds) != 1:
            if len(kinds) > 1:
                raise CheckpointError(
                    f"cannot tell whether the cross-attention block '{root}' attends to the RNA or to the protein: "
                    f"both encoders are {context} wide and its name does not say; add --mapping rows such as "
                    f"'^{re.escape(root)}<TAB>aggregation.rna_cross_attention.'"
                )
            continue
        assigned.setdefault(kinds[0], []).append((root, context))
    found = []
    for kind, items in assigned.items():
        if len(items) > 1:
            raise CheckpointError(
                f"found {len(items)} cross-attention blocks for the {kind.split('_')[0].upper()} "
                f"({', '.join(repr(root) for root, _ in items)}); say which one with --mapping rows"
            )
        root, context = items[0]
        keys = tuple(f"{root}{part}.{suffix}" for part in _CROSS_ATTENTION_PARTS for suffix in ("weight", "bias"))
        source = "RNA" if kind == "rna_cross_attention" else "protein"
        found.append(FoundComponent(
            kind=kind, label="cross-attention", root=root, keys=keys,
            rows=(MappingRow(rf"^{re.escape(root)}(?=(?:{'|'.join(_CROSS_ATTENTION_PARTS)})\.)",
                             COMPONENT_TARGETS[kind]),),
            width=query_width, details=f"DNA {query_width} <- {source} {context}",
        ))
    return found


def _find_head(shapes, query_width):
    """The one chain of two biased linears ``query_width -> H -> T``, or None; CheckpointError when several."""
    linears = _linears(shapes)
    chains = [(first, second) for first, (hidden, width) in linears.items() if width == query_width
              for second, (_, width_in) in linears.items() if second != first and width_in == hidden]
    if not chains:
        return None
    if len(chains) > 1:
        shown = ", ".join(f"'{a}' -> '{b}'" for a, b in chains[:4])
        raise CheckpointError(f"found {len(chains)} candidate heads ({shown}); say which with --mapping rows")
    first, second = chains[0]
    hidden, tissues = linears[first][0], linears[second][0]
    keys = (first + "weight", first + "bias", second + "weight", second + "bias")
    root = _common_prefix(first, second) or first
    return FoundComponent(
        kind="head", label="MLP head", root=root, keys=keys,
        rows=(MappingRow(rf"^{re.escape(first)}(?=(?:weight|bias)$)", "head.dense."),
              MappingRow(rf"^{re.escape(second)}(?=(?:weight|bias)$)", "head.output.")),
        fields={"head_hidden_size": hidden, "n_tissues": tissues}, width=query_width,
        details=f"'{first}' {query_width} -> {hidden}, '{second}' {hidden} -> {tissues}",
    )


def _common_prefix(first, second):
    prefix = []
    for a, b in zip(first.split("."), second.split(".")):
        if a != b:
            break
        prefix.append(a)
    return ".".join(prefix) + ("." if prefix else "")
