"""Converting the Nucleotide Transformer v2 (RNA, and DNA when it is the DNA encoder): NT-v2 folders, finding
NT-v2 in a foreign file (ESM-style names with a gated feed-forward) and the reference of its self-check
(:class:`NucleotideTransformerRNAConversion`, :class:`NucleotideTransformerDNAConversion`, registered under the
encoders' names).
"""

from __future__ import annotations

import torch

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.conversion.encoders.base import EncoderConversion, FoundComponent, PretrainedFolder, ReferenceEncoder
from isoformer_cli.models.conversion.encoders.esm import ESM_FOLDER_FIELDS, esm_style_key_rows, find_esm_style_encoders
from isoformer_cli.models.network.build import skip_weight_initialisation
from isoformer_cli.models.network.encoders.nt_network import NucleotideTransformer, load_hf_nt_state_dict
from isoformer_cli.models.network.encoders.nucleotide_transformer import dna_network_config, rna_network_config
from isoformer_cli.models.network.tokenizers import RNA_CLS_ID, RNA_FIRST_KMER_ID, RNA_FIRST_SINGLE_BASE_ID

# (field of an NT-v2 config.json, is it part of the architecture?) for `isoformer init`.
NT_FOLDER_FIELDS = ESM_FOLDER_FIELDS[:7] + (("add_bias_fnn", True), ("pad_token_id", True), ("layer_norm_eps", False))
# What NT-v2's code assumes when its config.json leaves a field out.
NT_FOLDER_DEFAULTS = {"add_bias_fnn": True, "emb_layer_norm_before": None}


class NucleotideTransformerRNAConversion(EncoderConversion):
    """NT-v2 as the RNA encoder: NT-v2 folders, its signature in a foreign file, the reference of its self-check."""

    def find_in_checkpoint(self, shapes):
        # NT-v2 mirrors ESM's names; its gated feed-forward (input projection twice the hidden FFN width)
        # tells it apart from ESM-2.
        found = []
        for encoder in find_esm_style_encoders(shapes):
            if not encoder.gated:
                continue
            fields = {
                "nt_vocab_size": encoder.vocab,
                "nt_hidden_size": encoder.hidden,
                "nt_num_hidden_layers": encoder.layers,
                "nt_intermediate_size": encoder.intermediate,
                "nt_add_bias_fnn": encoder.ffn_bias,
                "nt_emb_layer_norm_before": encoder.layer_norm_before,
            }
            if encoder.positions is not None:
                fields["nt_max_position_embeddings"] = encoder.positions
            if encoder.heads is not None:
                fields["nt_num_attention_heads"] = encoder.heads
            found.append(FoundComponent(
                kind="rna_encoder", label=self.encoder.label, root=encoder.root, keys=encoder.keys,
                rows=encoder.rows("rna_encoder.", "NT-v2 masked-LM head (not used by IsoFormer)"),
                fields=fields, width=encoder.hidden, sub_keys=encoder.sub_keys(),
                details=encoder.details("masked-LM head"), encoder=self.encoder,
            ))
        return found

    def reference_encoder(self, config, tensors):
        # NT-v2's own implementation is remote code, which this tool never runs: the reference is our NT-v2
        # module filled straight from the source's EsmModel-style names (no key mapping involved).
        with skip_weight_initialisation():  # every tensor is loaded next
            module = NucleotideTransformer(rna_network_config(config)).eval()
        try:
            load_hf_nt_state_dict(module, tensors, prefix="")
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"NT-v2 reference: {exc.args[0] if exc.args else exc}") from exc
        return ReferenceEncoder(
            lambda input_ids, attention_mask: module(input_ids, attention_mask),
            "this tool's NT-v2 module loaded directly from the source tensors (no other NT-v2 implementation "
            "runs without remote code)",
        )

    def check_inputs(self, config, generator):
        tokens = min(config.max_rna_tokens, 20)
        lengths = (tokens, max(1, tokens // 2))
        ids = torch.full((len(lengths), tokens + 1), config.nt_pad_token_id, dtype=torch.long)
        for row, length in enumerate(lengths):
            ids[row, 0] = RNA_CLS_ID
            last = min(RNA_FIRST_SINGLE_BASE_ID, config.nt_vocab_size)
            ids[row, 1 : length + 1] = torch.randint(RNA_FIRST_KMER_ID, last, (length,), generator=generator)
        return ids, ids != config.nt_pad_token_id

    def pretrained_folder(self, config):
        return PretrainedFolder(
            label="RNA (Nucleotide Transformer v2)", model_type="esm", fields=NT_FOLDER_FIELDS,
            reference=rna_network_config(config).to_dict(), defaults=NT_FOLDER_DEFAULTS,
            rows=esm_style_key_rows("rna_encoder."), prefix="rna_encoder.",
        )


class NucleotideTransformerDNAConversion(EncoderConversion):
    """NT-v2 as the DNA encoder: NT-v2 folders (it is not searched for in foreign files)."""

    def pretrained_folder(self, config):
        prefix = f"dna_encoder.{self.encoder.inner_prefix}"
        return PretrainedFolder(
            label="DNA (Nucleotide Transformer v2)", model_type="esm", fields=NT_FOLDER_FIELDS,
            reference=dna_network_config(config).to_dict(), defaults=NT_FOLDER_DEFAULTS,
            rows=esm_style_key_rows(prefix), prefix=prefix,
        )
